"""Propensity-score weighting: balance, weighted estimates and E-values."""

from __future__ import annotations

import re

import pandas as pd

from hospstudy.report import figures as F
from hospstudy.report.format import absent, fmt_ci, fmt_num
from hospstudy.report.labels import label, level_label
from hospstudy.report.results import MODEL_LABELS
from hospstudy.report.sections import Context, SectionSpec, from_results
from hospstudy.report.sections._results import estimate_table, nice_column, result_rows
from hospstudy.report.tables import ReportTable


@from_results("weight", "iptw", "overlap")
def build(ctx: Context, r) -> list[str]:
    blocks = []
    bal = r.extra("balance", "balance_table")
    if isinstance(bal, dict) and "rows" in bal:
        bal = bal["rows"]
    if isinstance(bal, dict):  # column-oriented
        bal = pd.DataFrame(bal).to_dict("records")
    if bal:
        frame = pd.DataFrame(bal)
        cov = next((c for c in ("covariate", "term", "variable") if c in frame.columns), frame.columns[0])
        methods = [c for c in frame.columns if c != cov and pd.api.types.is_numeric_dtype(frame[c])]
        names = {m: _method_name(m) for m in methods}
        frame[cov] = [_covariate_label(str(c)) for c in frame[cov]]
        rows = [{"covariate": str(x[cov]), **{names[m]: x[m] for m in methods}} for _, x in frame.iterrows()]
        blocks.append(ctx.add_figure("love_plot", F.love_plot(rows, list(names.values())),
                                      "Love plot: absolute standardized mean differences before and after weighting (dashed line 0.1)."))
        show = frame[[cov] + methods].copy()
        for m in methods:
            show[m] = show[m].map(lambda v: fmt_num(abs(v), 3) if pd.notna(v) else "")
        show.columns = ["Covariate"] + [f"|SMD|, {_method_name(m).lower() if m in ('before', 'unweighted') else _method_name(m)}"
                                        for m in methods]
        blocks.append(ctx.add_table(ReportTable("balance", "Covariate balance", show)))
    else:
        blocks.append(absent("No balance diagnostics in the results (weighting not run)."))
    diag = _weights_table(ctx, r.extra("weights"))
    if diag is not None:
        blocks.append(ctx.add_table(diag))
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
        for c in ("outcome", "exposure", "analysis"):
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


_METHOD_NAMES = {"iptw": "IPTW", "overlap": "Overlap weights", "before": "Before weighting", "unweighted": "Before weighting"}


def _covariate_label(c: str) -> str:
    """A balance row readable: ``bmi_group: >=30`` or ``sex[M]`` → "BMI group, kg/m²: 30 or more"."""
    m = re.match(r"^([^:\[]+?)(?::\s*|\[)(.*?)\]?$", c)
    if m is None or not m.group(2):
        return label(c)
    col, level = m.group(1).strip(), m.group(2)
    return f"{label(col)}: {level_label(col, level)}"


def _method_name(m: str) -> str:
    return _METHOD_NAMES.get(str(m), label(str(m)))


def _weights_table(ctx: Context, weights) -> ReportTable | None:
    """The weighting model's diagnostics per method and exposure group: effective sample size
    (Kish), the largest weight and the range of weights and propensity scores."""
    if not isinstance(weights, list) or not weights:
        return None
    exposure = (ctx.analyses.get("weighting") or {}).get("exposure", ctx.binary_exposure or "cancer_center")
    rows = []
    for w in weights:
        if not isinstance(w, dict):
            continue
        method = _method_name(str(w.get("method")))
        if w.get("estimand"):
            method += f" ({w['estimand']}{', stabilized' if w.get('stabilized') else ''})"
        for g in w.get("groups") or []:
            level = 1 if g.get("group") == "treated" else 0 if g.get("group") == "control" else g.get("group")
            rows.append({"Weighting": method, "Group": level_label(exposure, level),
                         "Effective sample size": fmt_num(g.get("ess"), 1),
                         "Largest weight": fmt_num(g.get("weight_max"), 2),
                         "Weights, range": f"{fmt_num(g.get('weight_min'), 2)}–{fmt_num(g.get('weight_max'), 2)}",
                         "Propensity score, range": f"{fmt_num(g.get('ps_min'), 3)}–{fmt_num(g.get('ps_max'), 3)}"})
    if not rows:
        return None
    return ReportTable("weights", "Propensity-score weights: effective sample size and largest weight", pd.DataFrame(rows),
                       ["Effective sample size (Kish): (sum of weights)² / sum of squared weights, per group; far below the "
                        "group's size, a few patients carry the weighted analysis."
                        + (" Weights before trimming." if any(isinstance(w, dict) and w.get("trim") for w in weights) else "")])
