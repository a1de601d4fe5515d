"""Length of stay until discharge home: cumulative incidence and hazard ratios."""

from __future__ import annotations

from hospstudy.report import figures as F
from hospstudy.report.format import absent, array, failed
from hospstudy.report.labels import label
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.sections._results import estimate_table, result_rows


def build(ctx: Context) -> list[str]:
    r = ctx.inp.results
    if r is None:
        return [absent("No results: the analyses stage did not run.")]
    blocks = [failed(m) for m in r.failed("compet", "fine", "cause")]
    cif = r.extra("cumulative_incidence", "cif", "competing_risks")
    step = cif.get("min_events_per_step", 10) if isinstance(cif, dict) else ctx.t
    if isinstance(step, (int, float)) and step < ctx.t:
        # the analyses grouped the curves with a smaller threshold than this report's (a
        # re-render with a stricter one): the steps cannot be regrouped without the counts
        blocks.append(absent("The cumulative incidence curves were grouped with a smaller disclosure threshold than this "
                             "report's and are not drawn; re-run the analyses with the current threshold "
                             "(`hospstudy run`) to draw them."))
        cif = None
    curves = []
    if isinstance(cif, dict):
        cif = cif.get("curves", cif.get("groups", [cif]))
    cif = [c for c in (cif or []) if isinstance(c, dict)]
    exposures = [c.get("exposure") for c in cif if c.get("exposure")]
    if exposures:
        first = ctx.binary_exposure if ctx.binary_exposure in exposures else exposures[0]
        cif = [c for c in cif if c.get("exposure") in (None, first)]
    for c in cif:
        t = array(c, "time", "t", "days")
        group = str(c.get("group", c.get("label", "")))
        if t is None:
            continue
        for key, name, ls in (("cif_event", "discharge home", "-"), ("cif", "discharge home", "-"),
                              ("cif_competing", "in-hospital death", "--")):
            y = array(c, key)
            if y is not None and len(y) == len(t):
                if c.get("event") is not None and key == "cif":
                    name = "discharge home" if int(c["event"]) == 1 else "in-hospital death"
                    ls = "-" if int(c["event"]) == 1 else "--"
                curves.append({"label": f"{_group_label(group)}: {name}", "time": t, "cif": y, "linestyle": ls})
    if curves:
        blocks.append(ctx.add_figure("cif", F.cif_plot(curves),
                                      "Cumulative incidence of discharge home (solid) with in-hospital death as a competing event (dashed), by exposure group; "
                                      f"for disclosure control each step groups at least {step} events and curves end where fewer than {step} patients remain at risk."))
    else:
        blocks.append(absent("No cumulative incidence curves in the results (competing-risks analysis absent or not run)."))
    rows = result_rows(ctx, "competing")
    if not rows.empty:
        t = estimate_table(ctx, rows, "competing", "Discharge home: cause-specific and Fine–Gray hazard ratios", ratio_name="HR")
        t.notes = ["Cause-specific hazard ratios (Cox, in-hospital death censored) and Fine–Gray subdistribution hazard "
                   "ratios (in-hospital death as a competing event). HR > 1: earlier discharge home."]
        blocks.append(ctx.add_table(t))
    else:
        blocks.append(absent("No cause-specific or Fine–Gray estimates in the results."))
    return blocks


SECTION = SectionSpec("los", "Length of stay until discharge home", build, record=())


def _group_label(g: str) -> str:
    if "=" in g:
        col, lvl = g.split("=", 1)
        if col == "cancer_center":
            return "Cancer center" if lvl in ("1", "True", "true") else "Other hospital"
        return f"{label(col)} {lvl}"
    return {"True": "Cancer center", "False": "Other hospital", "1": "Cancer center", "0": "Other hospital"}.get(g, g)
