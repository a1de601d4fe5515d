"""Adjusted odds ratios of every exposure on every binary outcome: the primary model first,
the other models as sensitivity analyses, every term of the primary model in a supplementary
table, and the forest plot."""

from __future__ import annotations

import pandas as pd

from hospstudy.report import figures as F
from hospstudy.report.format import absent, fmt_ci, ratio
from hospstudy.report.labels import label
from hospstudy.report.sections import Context, SectionSpec, from_results
from hospstudy.report.sections._results import adjustment, estimate_table, model_label, result_rows, term_label
from hospstudy.report.tables import ReportTable


@from_results()
def build(ctx: Context, r) -> list[str]:
    rows = result_rows(ctx, "adjusted")
    blocks = []
    if rows.empty:
        return blocks + [absent("No adjusted model results in results.json.")]
    primary = (list(ctx.analyses.get("models", [])) or [str(rows["model"].iloc[0])])[0]
    main = rows[rows["model"].astype(str) == primary]
    if main.empty:
        main, primary = rows, str(rows["model"].iloc[0])
    others = rows[rows["model"].astype(str) != primary]
    blocks.append(ctx.add_table(estimate_table(ctx, main, "adjusted", "Adjusted odds ratios, primary model")))
    if not others.empty:
        blocks.append(ctx.add_table(estimate_table(
            ctx, others, "adjusted_sensitivity", "Sensitivity analyses: the same odds ratios by the other models",
            with_p=False, counts=False,
            notes=["Same patients, outcomes and covariates as the primary table; see its note for what each model estimates."])))
    supp = _all_terms(ctx, primary)
    if supp is not None:
        blocks.append(ctx.add_table(supp))
    forest = []
    for _, x in main.iterrows():
        est, lo, hi = ratio(x)
        adj = adjustment(str(x["analysis"]), str(x["model"]))
        forest.append({"label": f"{label(str(x['outcome']))}: {term_label(str(x['term']), str(x['exposure']))} ({adj})",
                       "estimate": est, "conf_low": lo, "conf_high": hi, "group": adj})
    blocks.append(ctx.add_figure("forest", F.forest_plot(forest),
                                 f"Adjusted odds ratios (95% CI, log scale) of each exposure by outcome, primary model "
                                 f"({model_label(primary)}); colors: adjustment set."))
    return blocks


def _all_terms(ctx: Context, primary: str) -> ReportTable | None:
    """Every term of the primary model's mutually adjusted fit (else the first adjustment set),
    one column per outcome: the supplementary table of covariate odds ratios."""
    t = ctx.inp.results.table
    outs = [o for o in ctx.binary_outcomes if o in set(t["outcome"])]
    fits = t[(t["model"] == primary) & t["outcome"].isin(outs) & (t["term"] != "Intercept")]
    if fits.empty:
        return None
    analysis = "mutual" if (fits["analysis"] == "mutual").any() else str(fits["analysis"].iloc[0])
    fits = fits[fits["analysis"] == analysis]
    terms = list(dict.fromkeys(fits["term"].astype(str)))
    frame = pd.DataFrame({"Term": [term_label(x, "") for x in terms]})
    for o in outs:
        f = fits[fits["outcome"] == o].set_index("term")
        frame[label(o)] = [fmt_ci(*ratio(f.loc[x])) if x in f.index else "" for x in terms]
    frame = frame.loc[:, [c for c in frame.columns if c == "Term" or (frame[c] != "").any()]]
    return ReportTable("supp_all_terms", f"Supplementary: every term of the primary model ({model_label(primary)}, "
                       f"{label(analysis)}), odds ratio (95% CI)", frame,
                       ["Reference levels as in Methods. 'not estimable': no finite estimate (e.g. a level with no events)."])


SECTION = SectionSpec("adjusted", "Adjusted results", build)
