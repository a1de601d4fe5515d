"""Crude outcomes by exposure group, with tests."""

from __future__ import annotations

from hospstudy.report.format import absent
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.tables import crude_outcomes


def build(ctx: Context) -> list[str]:
    df = ctx.inp.analytic
    if df is None:
        return [absent("No analytic dataset: no crude comparisons.")]
    blocks = []
    for by in (ctx.binary_exposure, ctx.quartile_col):
        if by and by in df.columns:
            blocks.append(ctx.add_table(crude_outcomes(df, by, ctx.binary_outcomes, ctx.t)))
    return blocks or [absent("No exposure column found for crude comparisons.")]


SECTION = SectionSpec("crude", "Crude outcomes", build, record=())
