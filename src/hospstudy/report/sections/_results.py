"""Reading the analyses' result rows for the sections: estimate tables, primary estimates,
readable terms and adjustment sets."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hospstudy.privacy import fmt_count
from hospstudy.report.format import fmt_ci, fmt_p, ratio, to_int
from hospstudy.report.labels import label, level_label
from hospstudy.report.results import MODEL_LABELS, SCALE_LABELS, Results, classify, exposure_term_mask
from hospstudy.report.tables import ReportTable


def exposure_rows(results: Results) -> pd.DataFrame:
    """The results' exposure rows with their kind (``_kind``), computed once per results object:
    the sections and the published comparison look rows up many times."""
    cached = getattr(results, "_exposure_rows", None)
    if cached is None:
        t = results.table
        cached = t[exposure_term_mask(t)].assign(_kind=classify(t)[exposure_term_mask(t)])
        results._exposure_rows = cached
    return cached


def result_rows(ctx, kind: str) -> pd.DataFrame:
    """The exposure rows of one kind of analysis (``adjusted``, ``quartile``, ``weighted``,
    ``competing``)."""
    r = ctx.inp.results
    if r is None or r.table.empty:
        return pd.DataFrame()
    e = exposure_rows(r)
    return e[e["_kind"] == kind].drop(columns="_kind")


def term_label(term: str, exposure: str) -> str:
    """``cancer_center`` → Cancer center; ``volume_quartile[T.3]`` → Q3 vs Q1; ``sex[T.M]`` → Sex: Male."""
    if term == exposure:
        return label(exposure)
    if "[T." in term:
        col, lvl = term.split("[T.", 1)
        lvl = lvl.rstrip("]")
        col = col.split("(", 1)[1].split(",", 1)[0] if col.startswith("C(") else col
        if exposure.endswith("quartile") or col.endswith("quartile"):
            return f"Q{lvl} vs Q1"
        return f"{label(col)}: {level_label(col, lvl)}"
    return label(term)


def adjustment(analysis: str, model: str) -> str:
    """The adjustment set of a result row, readable: the analysis name without its model's name
    (``cause_specific_mutual`` → exposures mutually adjusted; ``cause_specific`` → alone)."""
    rest = analysis.replace(model, "").strip("_ ")
    return label(rest or "alone")


def model_label(model: str) -> str:
    return MODEL_LABELS.get(model, label(model))


def estimate_table(ctx, rows: pd.DataFrame, key: str, title: str, ratio_name: str = "OR", with_p: bool = True,
                   counts: bool = True, notes: list[str] | None = None) -> ReportTable:
    """One row per outcome × exposure term × adjustment set; per model a column of the ratio
    with its CI (and its p when ``with_p``). One model: short headers and the model with its
    scale (conditional / marginal / ...) in the title; several: the model in each header.
    Columns that would repeat one value on every row (a single outcome or adjustment set) go
    into the title instead."""
    rows = rows.copy()
    rows["adjustment"] = [adjustment(str(a), str(m)) for a, m in zip(rows["analysis"], rows["model"])]
    models = list(dict.fromkeys(rows["model"].astype(str)))
    scales = {m: str(rows.loc[rows["model"].astype(str) == m, "scale"].iloc[0]) for m in models}
    heads = {m: f"{model_label(m)}, {SCALE_LABELS.get(scales[m], scales[m])}" for m in models}
    one = len(models) == 1
    rec = []
    for (outcome, exposure, adj, term), g in rows.groupby(["outcome", "exposure", "adjustment", "term"], sort=False, dropna=False):
        first = g.iloc[0]
        line = {"Outcome": label(str(outcome)), "Exposure": term_label(str(term), str(exposure)), "Adjustment": str(adj)}
        if counts:
            line.update({"N": fmt_count(to_int(first["n"]), ctx.t), "Events": fmt_count(to_int(first["events"]), ctx.t)})
        for m in models:
            h = g[g["model"].astype(str) == m]
            est_col = f"{ratio_name} (95% CI)" if one else f"{model_label(m)}: {ratio_name} (95% CI)"
            line[est_col] = fmt_ci(*ratio(h.iloc[0])) if len(h) else "not run"
            if with_p and (one or m == models[0]):
                line["p" if one else f"{model_label(m)}: p"] = fmt_p(h.iloc[0]["p_value"]) if len(h) else ""
        rec.append(line)
    frame = pd.DataFrame(rec).fillna("")
    frame = frame.loc[:, [c for c in frame.columns if not (c in ("N", "Events") and (frame[c] == "").all())]]
    extra = []
    for col in ("Outcome", "Adjustment"):
        if col in frame.columns and frame[col].nunique() == 1 and len(frame) > 1:
            extra.append(frame[col].iloc[0] if col == "Outcome" else f"adjustment: {frame[col].iloc[0]}")
            frame = frame.drop(columns=col)
    if one:
        extra.append(heads[models[0]])
    if extra:
        title = f"{title} ({'; '.join(extra)})"
    if notes is None:
        notes = [f"Adjustment '{label('alone')}': each exposure with the covariates; '{label('mutual')}': the exposures together. "
                 "Random-intercept (mixed) models give conditional odds ratios: the effect for patients within the "
                 "same hospital. GEE and weighted models give marginal (population-averaged) odds ratios; plain "
                 "logistic regression ignores clustering. Marginal ORs are closer to 1 than conditional ones when "
                 "hospitals vary. 'not estimable': the model did not give a finite estimate and interval (e.g. separation)."]
    return ReportTable(key, title, frame, notes)


def primary_row(results: Results | None, outcome: str, exposure: str, analyses: dict, kind: str = "adjusted") -> pd.Series | None:
    """The primary estimate of an outcome × exposure: the first model of ``[analyses] models``
    (``cause_specific`` for competing risks), mutually adjusted when that analysis exists."""
    if results is None or results.table.empty:
        return None
    e = exposure_rows(results)
    rows = e[(e["_kind"] == kind) & (e["outcome"] == outcome) & (e["exposure"] == exposure)]
    if rows.empty:
        return None
    models = (["cause_specific", "fine_gray"] if kind == "competing"
              else list(analyses.get("models", [])) or ["mixed_logit", "gee_logit", "logit"])
    for m in models:
        h = rows[rows["model"] == m]
        if len(h):
            mutual = h[h["analysis"].astype(str).str.contains("mutual")]
            return (mutual if len(mutual) else h).iloc[0]
    return rows.iloc[0]


def finite(*xs) -> bool:
    return bool(np.isfinite(np.asarray(xs, dtype=float)).all())


def nice_column(c: str) -> str:
    return {"mor": "MOR", "icc": "ICC", "evalue": "E-value (estimate)", "odds_ratio": "OR", "random_sd": "Random-intercept SD", "evalue_estimate": "E-value (estimate)", "evalue_ci": "E-value (CI limit)",
            "mor_low": "MOR lower", "mor_high": "MOR upper", "clusters": "Hospitals", "n": "N", "outcome": "Outcome", "model": "Model", "exposure": "Exposure",
            "analysis": "Adjustment", "conversion": "OR to RR conversion", "variance": "Random-intercept variance"}.get(c, c.replace("_", " "))
