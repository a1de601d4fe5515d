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
            blocks.append(ctx.add_table(table1(df, by, table1_variables(ctx), ctx.t, categorical=cats, orders=orders,
                                               missing_levels=missing, hospital_col=hosp, volume_col=ctx.volume_col)))
        elif by:
            blocks.append(absent(f"The analytic dataset has no column {by!r}: no Table 1 by it."))
    return blocks


SECTION = SectionSpec("table1", "Baseline characteristics", build, record=("19.1",))


def table1_variables(ctx: Context) -> list[str]:
    """Table 1's variables: each shown once. A study's ``cut`` covariate and the column it cuts
    (bmi_group of bmi) are one variable; ``[report] table1_variables`` picks its form: the one
    ``[analyses] covariates`` use (default ``as_modelled``; the group when both or neither are),
    ``continuous``, ``grouped`` or ``both``; or lists the variables outright."""
    from hospstudy.report.spec import report_settings

    choice = report_settings(ctx.inp.study).table1_variables
    df = ctx.inp.analytic
    if isinstance(choice, tuple):
        return [c for c in choice if df is not None and c in df.columns]
    cuts = {name: d["of"] for name, d in (ctx.inp.study.get("covariates") or {}).items()
            if isinstance(d, dict) and d.get("kind") == "cut" and isinstance(d.get("of"), str)}
    modelled = set(ctx.analyses.get("covariates") or [])
    drop = set()
    for cut, source in cuts.items():
        if cut not in ctx.covariates or source not in ctx.covariates or choice == "both":
            continue
        continuous = choice == "continuous" or (choice == "as_modelled" and source in modelled and cut not in modelled)
        drop.add(cut if continuous else source)
    return [c for c in ctx.covariates if c not in drop]


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
