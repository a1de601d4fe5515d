"""Crude outcomes by exposure group, with tests and each outcome's denominator."""

from __future__ import annotations

from hospstudy.report.format import absent, is_bool
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.tables import crude_outcomes

HOME = "discharged_home"


def outcome_lists(ctx: Context) -> tuple[list[str], list]:
    """The binary and continuous rows of the crude table: the analysed binary outcomes, discharge
    home (whether or not it is analysed as a binary outcome), the length of stay and, where
    discharge home is known, the time to discharge home among the patients discharged home."""
    df = ctx.inp.analytic
    binary = list(ctx.binary_outcomes)
    if HOME in df.columns and is_bool(df[HOME]) and HOME not in binary:
        binary.append(HOME)
    continuous: list = ["postop_los"]
    los = next((c for c in ("los_to_home", "postop_los") if c in df.columns), None)
    if los is not None and HOME in binary:
        continuous.append(("time_to_home", los, HOME, "Time to discharge home, days"))
    return binary, continuous


def build(ctx: Context) -> list[str]:
    df = ctx.inp.analytic
    if df is None:
        return [absent("No analytic dataset: no crude comparisons.")]
    binary, continuous = outcome_lists(ctx)
    blocks = []
    for by in (ctx.binary_exposure, ctx.quartile_col):
        if by and by in df.columns:
            blocks.append(ctx.add_table(crude_outcomes(df, by, binary, ctx.t, continuous=continuous)))
    return blocks or [absent("No exposure column found for crude comparisons.")]


SECTION = SectionSpec("crude", "Crude outcomes", build, record=())
