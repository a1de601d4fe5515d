"""Propensity-score weighting: balance, weighted estimates and E-values."""

from __future__ import annotations

import pandas as pd

from hospstudy.report import figures as F
from hospstudy.report.format import absent, failed, fmt_ci, fmt_num
from hospstudy.report.labels import label
from hospstudy.report.results import MODEL_LABELS
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.sections._results import estimate_table, nice_column, result_rows
from hospstudy.report.tables import ReportTable


def build(ctx: Context) -> list[str]:
    r = ctx.inp.results
    if r is None:
        return [absent("No results: the analyses stage did not run.")]
    blocks = [failed(m) for m in r.failed("weight", "iptw", "overlap")]
    bal = r.extra("balance", "balance_table")
    if isinstance(bal, dict) and "rows" in bal:
        bal = bal["rows"]
    if isinstance(bal, dict):  # column-oriented
        bal = pd.DataFrame(bal).to_dict("records")
    if bal:
        frame = pd.DataFrame(bal)
        cov = next((c for c in ("covariate", "term", "variable") if c in frame.columns), frame.columns[0])
        methods = [c for c in frame.columns if c != cov and pd.api.types.is_numeric_dtype(frame[c])]
        rows = [{"covariate": str(x[cov]), **{m: x[m] for m in methods}} for _, x in frame.iterrows()]
        blocks.append(ctx.add_figure("love_plot", F.love_plot(rows, methods),
                                      "Love plot: absolute standardized mean differences before and after weighting (dashed line 0.1)."))
        show = frame[[cov] + methods].copy()
        for m in methods:
            show[m] = show[m].map(lambda v: fmt_num(abs(v), 3) if pd.notna(v) else "")
        show.columns = ["Covariate"] + [f"|SMD| {m}" for m in methods]
        blocks.append(ctx.add_table(ReportTable("balance", "Covariate balance", show)))
    else:
        blocks.append(absent("No balance diagnostics in the results (weighting not run)."))
    rows = result_rows(ctx, "weighted")
    if not rows.empty:
        blocks.append(ctx.add_table(estimate_table(ctx, rows, "weighted", "Propensity-score weighted odds ratios")))
    else:
        blocks.append(absent("No weighted estimates in the results."))
    ev = r.extra("evalues", "e_values", "evalue")
    if ev:
        frame = pd.DataFrame(ev if isinstance(ev, list) else [ev])
        if {"odds_ratio", "conf_low", "conf_high"} <= set(frame.columns):
            frame["OR (95% CI)"] = [fmt_ci(a, b, c) for a, b, c in zip(frame["odds_ratio"], frame["conf_low"], frame["conf_high"])]
        for c in ("outcome", "exposure"):
            if c in frame.columns:
                frame[c] = frame[c].map(lambda v: label(str(v)))
        if "model" in frame.columns:
            frame["model"] = frame["model"].map(lambda v: MODEL_LABELS.get(str(v), str(v)))
        wanted = [c for c in ("outcome", "exposure", "analysis", "model", "OR (95% CI)", "evalue", "evalue_estimate",
                              "evalue_ci", "conversion") if c in frame.columns]
        keep = {c: nice_column(c) for c in (wanted or [c for c in frame.columns if c != "hospital_id"])}
        frame = frame[list(keep)].rename(columns=keep)
        for c in frame.columns:
            if pd.api.types.is_float_dtype(frame[c]):
                frame[c] = frame[c].map(lambda v: fmt_num(v, 2))
        blocks.append(ctx.add_table(ReportTable("evalues", "E-values (VanderWeele & Ding 2017)", frame.astype(str),
                                                 ["The E-value is the minimum strength of association, on the risk-ratio scale, that an unmeasured "
                                                  "confounder would need with both exposure and outcome to explain away the estimate (or its CI limit)."])))
    else:
        blocks.append(absent("No E-values in the results."))
    return blocks


SECTION = SectionSpec("weighting", "Propensity-score weighting", build, record=("19.1",))
