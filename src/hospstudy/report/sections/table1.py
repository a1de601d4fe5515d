"""Table 1: baseline characteristics by exposure group."""

from __future__ import annotations

from hospstudy.report.format import absent
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.tables import table1


def build(ctx: Context) -> list[str]:
    df = ctx.inp.analytic
    if df is None:
        return [absent("No analytic dataset: Table 1 cannot be built.")]
    blocks = []
    cats = ["fiscal_year"] + list(ctx.analyses.get("categorical", [])) + _scale_levels(ctx.inp.study)
    orders = _level_orders(ctx.inp.study)
    missing = _missing_levels(ctx.inp.study)
    hosp = next((c for c in (ctx.analyses.get("cluster"), "hospital_id") if c and c in df.columns), None)
    for by in (ctx.binary_exposure, ctx.quartile_col):
        if by and by in df.columns:
            blocks.append(ctx.add_table(table1(df, by, ctx.covariates, ctx.t, categorical=cats, orders=orders,
                                               missing_levels=missing, hospital_col=hosp, volume_col=ctx.volume_col)))
        elif by:
            blocks.append(absent(f"The analytic dataset has no column {by!r}: no Table 1 by it."))
    return blocks


SECTION = SectionSpec("table1", "Baseline characteristics", build, record=("19.1",))


def _level_orders(study: dict) -> dict[str, list]:
    """Level order of categorical columns as the study file defines them: the labels of a
    'cut' (then its missing label), the values of a 'case' in order (then its default)."""
    out: dict[str, list] = {}
    for sec in ("exposures", "covariates", "outcomes"):
        for name, d in (study.get(sec) or {}).items():
            if not isinstance(d, dict):
                continue
            if d.get("labels"):
                out[name] = list(d["labels"]) + ([d["missing_label"]] if d.get("missing_label") else [])
            elif d.get("cases"):
                vals = [c.get("value") for c in d["cases"] if isinstance(c, dict)]
                out[name] = list(dict.fromkeys(vals + ([d["default"]] if d.get("default") is not None else [])))
    return out


def _scale_levels(study: dict) -> list[str]:
    """Covariates that are a few ordered levels, shown as categories rather than a median: the
    single ADL items (walking level 0-3 and the like; the Barthel total stays numeric)."""
    return [name for name, d in (study.get("covariates") or {}).items()
            if isinstance(d, dict) and d.get("kind") == "adl" and d.get("measure") not in (None, "barthel")]


def _missing_levels(study: dict) -> dict[str, object]:
    """The level a study's grouped covariate gives its missing patients (``missing_label``)."""
    out: dict[str, object] = {}
    for sec in ("exposures", "covariates"):
        for name, d in (study.get(sec) or {}).items():
            if isinstance(d, dict) and d.get("missing_label") is not None:
                out[name] = d["missing_label"]
    return out
