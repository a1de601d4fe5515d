"""Cohort flow: the flow diagram and the attrition table."""

from __future__ import annotations

from hospstudy.report import figures as F
from hospstudy.report.format import absent
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.tables import attrition_table, safe_attrition


def build(ctx: Context) -> list[str]:
    if ctx.inp.attrition is None:
        return [absent("No attrition table: the cohort stage did not run.")]
    safe = safe_attrition(ctx.inp.attrition, ctx.t)
    steps = safe.to_dict("records")
    fig = F.flow_diagram(steps)
    return [ctx.add_figure("flow", fig, "Cohort flow diagram: admissions and patients remaining after each step, and those excluded."),
            ctx.add_table(attrition_table(ctx.inp.attrition, ctx.t))]


SECTION = SectionSpec("cohort-flow", "Cohort flow", build, record=("6.1", "12.2", "13.1"))
