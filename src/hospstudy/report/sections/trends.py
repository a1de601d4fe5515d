"""Trends by fiscal year: counts, proportions and trend tests."""

from __future__ import annotations

import numpy as np

from hospstudy.report import figures as F
from hospstudy.privacy import suppress_table
from hospstudy.report.format import absent
from hospstudy.report.labels import label
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.tables import as_bool, trends_table


def build(ctx: Context) -> list[str]:
    df = ctx.inp.analytic
    if df is None or "fiscal_year" not in df.columns:
        return [absent("No analytic dataset with fiscal years: no trends.")]
    r = ctx.inp.results
    tests = {}
    tr = r.extra("trends", "trend_tests") if r else None
    if isinstance(tr, dict) and "tests" in tr:
        tr = tr["tests"]
    if isinstance(tr, dict):
        tr = [{"outcome": k, **(v if isinstance(v, dict) else {"p_value": v})} for k, v in tr.items()]
    for x in tr or []:
        if isinstance(x, dict):
            key = x.get("outcome", x.get("column", x.get("variable")))
            tests[key] = {"p_value": x.get("p_value"), "test": x.get("test", x.get("method", ""))}
    tspec = ctx.analyses.get("trends", {}) or {}
    props = [c for c in tspec.get("proportions", ["death_30d", "in_hospital_death"]) if c in df.columns]
    cont = [c for c in tspec.get("continuous", ["postop_los"]) if c in df.columns]
    t = trends_table(df, "fiscal_year", props, cont, tests, ctx.t)
    blocks = [ctx.add_table(t)]
    if not tests:
        blocks.append(absent("No trend tests in the results (trends analysis absent or not run)."))
    years = sorted(df["fiscal_year"].dropna().unique().tolist())
    counts = np.array([(df["fiscal_year"] == y).sum() for y in years])
    shown_counts = [None if 0 < c < ctx.t else int(c) for c in counts]
    series = {}
    for out in props:
        ev = np.array([as_bool(df.loc[df["fiscal_year"] == y, out]).sum() for y in years])
        hide = suppress_table(np.vstack([ev, counts - ev]), ctx.t)
        series[label(out)] = [None if hide[0, i] or shown_counts[i] is None or counts[i] == 0 else ev[i] / counts[i]
                              for i in range(len(years))]
    blocks.append(ctx.add_figure("trends", F.trends_plot([int(y) for y in years], shown_counts, series),
                                  "Patients per fiscal year (bars, left axis) and the percentage of them with each outcome (lines, right axis); "
                                  "suppressed values are not drawn."))
    return blocks


SECTION = SectionSpec("trends", "Trends by fiscal year", build, record=())
