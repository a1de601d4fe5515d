"""Adjusted odds ratios of every exposure on every binary outcome, and their forest plot."""

from __future__ import annotations

from hospstudy.report import figures as F
from hospstudy.report.format import absent, failed, ratio
from hospstudy.report.labels import label
from hospstudy.report.results import MODEL_LABELS
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.sections._results import estimate_table, result_rows, term_label


def build(ctx: Context) -> list[str]:
    r = ctx.inp.results
    if r is None:
        return [absent("No results: the analyses stage did not run.")]
    rows = result_rows(ctx, "adjusted")
    blocks = [failed(m) for m in r.failed()] if r.failures else []
    if rows.empty:
        return blocks + [absent("No adjusted model results in results.json.")]
    blocks.append(ctx.add_table(estimate_table(ctx, rows, "adjusted", "Adjusted odds ratios: primary and sensitivity models")))
    forest = []
    primary = (list(ctx.analyses.get("models", [])) or [str(rows["model"].iloc[0])])[0]
    main = rows[rows["model"].astype(str) == primary]
    for _, x in (main if len(main) else rows).iterrows():
        est, lo, hi = ratio(x)
        forest.append({"label": f"{label(str(x['outcome']))} — {term_label(str(x['term']), str(x['exposure']))} ({x['analysis']})",
                       "estimate": est, "conf_low": lo, "conf_high": hi,
                       "group": f"{x['analysis']}"})
    blocks.append(ctx.add_figure("forest", F.forest_plot(forest),
                                  f"Forest plot of the adjusted odds ratios (95% CI) of each exposure by outcome, primary model "
                                  f"({MODEL_LABELS.get(primary, primary)}); colours: adjustment set."))
    return blocks


SECTION = SectionSpec("adjusted", "Adjusted results", build, record=())
