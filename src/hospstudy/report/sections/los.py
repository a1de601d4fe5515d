"""Length of stay until discharge home: cumulative incidence and hazard ratios."""

from __future__ import annotations

import pandas as pd

from hospstudy.report import figures as F
from hospstudy.privacy import fmt_count
from hospstudy.report.format import absent, array, to_int
from hospstudy.report.labels import label
from hospstudy.report.sections import Context, SectionSpec, from_results
from hospstudy.report.sections._results import estimate_table, result_rows
from hospstudy.report.tables import ReportTable


@from_results("compet", "fine", "cause")
def build(ctx: Context, r) -> list[str]:
    blocks = []
    cif = r.extra("cumulative_incidence", "cif", "competing_risks")
    step = cif.get("min_events_per_step", 10) if isinstance(cif, dict) else ctx.t
    if isinstance(step, (int, float)) and step < ctx.t:
        # the analyses grouped the curves with a smaller threshold than this report's (a
        # re-render with a stricter one): the steps cannot be regrouped without the counts
        blocks.append(absent("The cumulative incidence curves were grouped with a smaller disclosure threshold than this "
                             "report's and are not drawn; re-run the analyses with the current threshold "
                             "(`hospstudy run`) to draw them."))
        cif = None
    meta = cif if isinstance(cif, dict) else {}
    curves = []
    if isinstance(cif, dict):
        cif = cif.get("curves", cif.get("groups", [cif]))
    cif = [c for c in (cif or []) if isinstance(c, dict)]
    exposures = [c.get("exposure") for c in cif if c.get("exposure")]
    if exposures:
        first = ctx.binary_exposure if ctx.binary_exposure in exposures else exposures[0]
        cif = [c for c in cif if c.get("exposure") in (None, first)]
    styles = ["-", "--", ":", "-."]
    names = [s.get("label", "") for s in meta.get("states", [])] or [meta.get("event_label") or "discharge home",
                                                                   meta.get("competing_label") or "in-hospital death"]
    at_risk = []
    for gi, c in enumerate(cif):
        t = array(c, "time", "t", "days")
        group = _group_label(str(c.get("group", c.get("label", ""))))
        if t is None:
            continue
        states = c.get("states") or [{"label": names[0], "cif": c.get("cif_event", c.get("cif"))},
                                     {"label": names[1] if len(names) > 1 else "competing event", "cif": c.get("cif_competing")}]
        for si, st in enumerate(states):
            y = array(st, "cif")
            if y is not None and len(y) == len(t):
                curves.append({"label": f"{group}: {st.get('label', '')}", "time": t, "cif": y,
                               "linestyle": styles[si % len(styles)], "colour": gi})
        grid, n = c.get("at_risk_time"), c.get("n_at_risk")
        if grid and n and len(grid) == len(n):
            at_risk.append((group, grid, n))
    if curves:
        state_words = ", ".join(f"{st} ({w})" for st, w in zip(names, ("solid", "dashed", "dotted", "dash-dot")))
        blocks.append(ctx.add_figure("cif", F.cif_plot(curves, ylabel="Patients who left hospital in each state, %\n(cumulative incidence)"),
                                     f"Cumulative incidence of each state a patient leaves hospital in: {state_words}, by "
                                     "exposure group (Aalen–Johansen; the states compete, none is censored, so at the end of "
                                     "follow-up the curves reach the observed proportions). For disclosure control each step "
                                     f"groups at least {step} events and curves end where fewer than {step} patients remain in hospital."))
        if at_risk:
            blocks.append(ctx.add_table(_at_risk_table(at_risk, ctx.t)))
    else:
        blocks.append(absent("No cumulative incidence curves in the results (competing-risks analysis absent or not run)."))
    rows = result_rows(ctx, "competing")
    if not rows.empty:
        t = estimate_table(ctx, rows, "competing", "Discharge home: cause-specific and Fine–Gray hazard ratios", ratio_name="HR")
        others = " and ".join(names[1:]) or "the competing events"
        t.notes = [f"Cause-specific hazard ratios of {names[0]} (Cox; patients leaving by {others} are censored at that time) and "
                   f"Fine–Gray subdistribution hazard ratios of {names[0]} ({others} competing: those patients stay in the "
                   f"risk set with decreasing weights). HR > 1: earlier {names[0]}."]
        blocks.append(ctx.add_table(t))
    else:
        blocks.append(absent("No cause-specific or Fine–Gray estimates in the results."))
    return blocks


SECTION = SectionSpec("los", "Length of stay until discharge home", build)


def _group_label(g: str) -> str:
    if "=" in g:
        col, lvl = g.split("=", 1)
        if col == "cancer_center":
            return "Cancer center" if lvl in ("1", "True", "true") else "Other hospital"
        return f"{label(col)} {lvl}"
    return {"True": "Cancer center", "False": "Other hospital", "1": "Cancer center", "0": "Other hospital"}.get(g, g)


def _at_risk_table(at_risk: list, threshold: int) -> ReportTable:
    """Numbers still in hospital under the curves; counts below the threshold as <10."""
    grid = at_risk[0][1]
    rows = [[g] + [fmt_count(to_int(v), threshold) if isinstance(v, (int, float)) else "—" if v is None else str(v) for v in n]
            for g, _, n in at_risk]
    frame = pd.DataFrame(rows, columns=["Group"] + [f"Day {int(x)}" for x in grid])
    return ReportTable("cif_at_risk", "Numbers at risk (patients still in hospital)", frame,
                       [f"Counts of 1–{threshold - 1} are shown as <{threshold}; “—” hides a count that would reveal "
                        f"fewer than {threshold} patients leaving hospital since the previous count shown."])
