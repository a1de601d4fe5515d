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
    cats = ["fiscal_year"] + list(ctx.analyses.get("categorical", []))
    orders = _level_orders(ctx.inp.study)
    for by in (ctx.binary_exposure, ctx.quartile_col):
        if by and by in df.columns:
            blocks.append(ctx.add_table(table1(df, by, ctx.covariates, ctx.t, categorical=cats, orders=orders)))
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
