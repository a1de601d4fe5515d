"""Published vs this run, and planted vs estimated on a synthetic database."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pandas as pd

from hospstudy.privacy import DEFAULT_THRESHOLD, fmt_count
from hospstudy.report.format import absent, fmt_ci, fmt_p, ratio
from hospstudy.report.labels import label, prose
from hospstudy.report.results import Results
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.sections._results import adjustment, exposure_rows, model_label, primary_row
from hospstudy.report.tables import ReportTable, as_bool


def build(ctx: Context) -> list[str]:
    blocks = []
    if ctx.inp.published is not None and _names_published(ctx.inp.study):
        blocks.append(ctx.add_table(published_vs_run(ctx.inp.published, ctx.inp.analytic, ctx.inp.results, ctx.analyses, ctx.t,
                                                     ctx.inp.study)))
    else:
        blocks.append(absent("The study file names no published reference: no published-vs-this-run comparison."))
    if ctx.inp.truth is not None:
        t = planted_vs_estimated(ctx.inp.truth, ctx.inp.results, ctx.analyses)
        blocks.append(ctx.add_table(t) if not t.frame.empty else absent("truth.json holds no planted effect that matches an estimate of this run."))
    else:
        blocks.append(absent("Not a synthetic database (no truth.json): no planted-vs-estimated comparison."))
    return blocks


SECTION = SectionSpec("reference", "Published figures and planted effects", build, record=())


def _names_published(study: dict) -> bool:
    refs = (study.get("study") or {}).get("references", ()) or ()
    text = json.dumps(study.get("study", {})) + " ".join(map(str, refs))
    return "published" in text.lower() or bool(refs)



def _doi(citation: str) -> str:
    m = re.search(r"doi:\s*(\S+?)\.?$", citation or "")
    return m.group(1) if m else ""


def _short(citation: str) -> str:
    """'Yamada K, Toba M, ... Clin Spine Surg 2025. doi:...' → 'Yamada 2025'; a citation without
    authors → its journal and year ('J Orthop Sci 2021')."""
    c = citation or ""
    j = re.search(r"([A-Z][A-Za-z ]+?) ((?:19|20)\d\d)[;.]\s*(?:\d|doi)", c)
    a = re.match(r"^([A-Z][a-z]+) [A-Z]{1,2}[,.]", c)
    if a and j:
        return f"{a.group(1)} {j.group(2)}"
    if j:
        return f"{j.group(1).strip()} {j.group(2)}"
    return c.split(" ", 1)[0] or "published"


def verdict_ratio(pub: tuple[float, float, float] | None, run: tuple[float, float, float]) -> str:
    """A plain verdict on a published ratio (estimate, CI) beside this run's; ``pub`` None for a
    published null finding (no association reported)."""
    est, lo, hi = run
    if not all(np.isfinite([est, lo, hi])):
        return "not estimable here"
    run_sig = not lo <= 1 <= hi
    if pub is None:
        return "contradicts: association here (p < 0.05)" if run_sig else "agrees (no association)"
    p_est, p_lo, p_hi = pub
    pub_sig = not p_lo <= 1 <= p_hi
    if lo <= p_est <= hi:
        if run_sig == pub_sig:
            return "agrees"
        return "CI wider: consistent, not significant here" if pub_sig else "agrees; significant here"
    if run_sig and (est - 1) * (p_est - 1) < 0:
        return "contradicts: opposite direction"
    return "differs in size (CIs overlap)" if lo <= p_hi and p_lo <= hi else "contradicts: CIs do not overlap"


def verdict_rate(pub: float, k: int, n: int) -> str:
    """Published proportion against this run's 95% Wilson interval."""
    if n <= 0:
        return ""
    z = 1.959963984540054
    ph = k / n
    centre = (ph + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    if centre - half <= pub <= centre + half:
        return "agrees"
    return f"differs ({100 * (ph - pub):+.1f} percentage points)"


def published_vs_run(published: dict, df: pd.DataFrame | None, results: Results | None, analyses: dict,
                     threshold: int = DEFAULT_THRESHOLD, study: dict | None = None) -> ReportTable:
    """Every figure of the published reference beside this run's, with a verdict per row.

    Rates are compared with this run's 95% Wilson interval, ratios by their intervals (the
    paper's null findings against this run's interval around 1), counts not at all (they depend
    on the database's size). Definitions that differ between the paper and this study are named
    in the row's last column.
    """
    src = (published.get("source") or {})
    inst = src.get("institutional_function", {})
    trends = src.get("trends", {})
    risk = src.get("risk_score_30d", {})
    study = study or {}
    rows = []
    have = df is not None
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731

    def add(source, figure, pub, run, verdict="", diff=""):
        rows.append({"Source": source, "Figure": figure, "Published": pub, "This run": run, "Verdict": verdict,
                     "Definition difference": diff})

    def safe_rate(flags, pub=None):
        """A proportion (and its verdict), unless it and its denominator would reveal a small
        count of patients with or without the event."""
        flags = np.asarray(flags, dtype=bool)
        if not len(flags):
            return "no data", ""
        k = int(flags.sum())
        if 0 < k < threshold or 0 < len(flags) - k < threshold or len(flags) < threshold:
            return f"suppressed (a count below {threshold})", ""
        return pct(k / len(flags)), (verdict_rate(pub, k, len(flags)) if pub is not None else "")

    def rate(col, pub, frame=None):
        frame = df if frame is None else frame
        if not have or col not in frame.columns:
            return "not computed", ""
        return safe_rate(frame[col].dropna().astype(bool), pub)

    def ratio_row(source, figure, outcome, exposure, pub, kind="adjusted", model=None, term=None, diff=""):
        row = _estimate_row(results, outcome, exposure, analyses, kind, model, term)
        pub_text = "no association reported" if pub is None else f"{pub[0]:.3f} ({pub[1]:.3f}–{pub[2]:.3f})" + (
            f"; p {pub[3]}" if len(pub) > 3 else "")
        if row is None:
            add(source, figure, pub_text, "not estimated", "", diff)
            return
        est = ratio(row)
        run = f"{fmt_ci(*est, digits=3)}; p {fmt_p(row['p_value'])}"
        add(source, figure, pub_text, run, verdict_ratio(None if pub is None else pub[:3], est), diff)

    ia = _short(inst.get("citation", "")) or "Yamada 2025"
    cohort, outs, adj = inst.get("cohort", {}), inst.get("outcomes", {}), inst.get("adjusted", {})
    size = "not compared: depends on the database's size"
    if cohort:
        add(ia, "Patients", f"{cohort.get('patients', ''):,}", fmt_count(len(df), threshold) if have else "not computed", size)
        if "patients_cancer_center" in cohort:
            run = "not computed"
            if have and "cancer_center" in df.columns:
                run = _count_with_complement(as_bool(df["cancer_center"]), threshold)
                share = as_bool(df["cancer_center"]).mean()
                run += "" if run in ("—",) or run.startswith("<") else f" ({pct(share)})"
            add(ia, "Patients at cancer centers", f"{cohort['patients_cancer_center']:,} "
                f"({pct(cohort['patients_cancer_center'] / cohort['patients'])})" if cohort.get("patients") else
                f"{cohort['patients_cancer_center']:,}", run, size)
        if "median_annual_spine_surgery_volume" in cohort:
            run = "not computed"
            if have and "volume" in df.columns:
                keys = [c for c in ("hospital_id", "fiscal_year") if c in df.columns]
                med = float(df.drop_duplicates(keys)["volume"].median())
                # a median volume is one hospital-year's count of patients: below the threshold it is hidden
                run = f"{med:.0f}" if med >= threshold else f"<{threshold}"
            add(ia, "Median annual spine-surgery volume per hospital", str(cohort["median_annual_spine_surgery_volume"]), run,
                "", "paper: per hospital; this run: per hospital-year of the cohort's hospitals")
    amb_diff, def_notes = "", []
    if trends.get("unfavorable_ambulatory_definition"):
        ours = ((study.get("outcomes") or {}).get("unfavorable_ambulatory") or {}).get("description", "")
        amb_diff = "defined differently (see the note below)"
        def_notes.append(f"Unfavorable ambulatory status: the paper counts {trends['unfavorable_ambulatory_definition']}; "
                         f"this study counts {prose(ours) or 'its own definition (see Methods)'}.")
    mapping = [("in_hospital_mortality", "In-hospital mortality", "in_hospital_death", ""),
               ("mortality_30d", "30-day mortality", "death_30d", ""),
               ("discharged_home", "Discharged home", "discharged_home", ""),
               ("postoperative_complications", "Postoperative complications", "complication", ""),
               ("unfavorable_ambulatory_status", "Unfavorable ambulatory status", "unfavorable_ambulatory", amb_diff)]
    for key, name, col, diff in mapping:
        if key in outs:
            run, verdict = rate(col, outs[key])
            add(ia, name, pct(outs[key]), run, verdict, diff)
    if "median_postoperative_los_days" in outs:
        run, verdict = "not computed", ""
        if have and "postop_los" in df.columns:
            m = float(df["postop_los"].median())
            run = f"{m:.0f}"
            verdict = "agrees" if abs(m - outs["median_postoperative_los_days"]) <= 1 else f"differs ({m - outs['median_postoperative_los_days']:+.0f} days)"
        add(ia, "Median postoperative length of stay, days", str(outs["median_postoperative_los_days"]), run, verdict)
    for exp, pre, name in (("cancer_center", "cancer_center", "30-day mortality OR, cancer center"),
                           ("volume_per50", "volume_per_50", "30-day mortality OR, per 50 cases of volume")):
        if f"{pre}_or" in adj:
            ci = adj.get(f"{pre}_ci", [float("nan")] * 2)
            ratio_row(ia, name, "death_30d", exp, (adj[f"{pre}_or"], ci[0], ci[1], adj.get(f"{pre}_p", "")))
    nulls = {"length of stay until discharge home": ("los_to_home", "competing"),
             "postoperative complications": ("complication", "adjusted"),
             "unfavorable ambulatory status": ("unfavorable_ambulatory", "adjusted")}
    for null in adj.get("null_outcomes", []):
        outcome, kind = nulls.get(null, (null.replace(" ", "_"), "adjusted"))
        for exp, ename in (("cancer_center", "cancer center"), ("volume_per50", "per 50 cases of volume")):
            diff = amb_diff if outcome == "unfavorable_ambulatory" else ""
            if kind == "competing":
                diff = ("this study: discharge home with in-hospital death and discharge elsewhere as competing states")
                for model, mname in (("cause_specific", "cause-specific HR"), ("fine_gray", "Fine–Gray HR")):
                    ratio_row(ia, f"{null.capitalize()}, {mname}, {ename}", outcome, exp, None, kind, model, diff=diff)
            else:
                ratio_row(ia, f"{null.capitalize()} OR, {ename}", outcome, exp, None, kind, diff=diff)
    ta = _short(trends.get("citation", "")) or "Yamada 2024"
    if trends and have and "fiscal_year" in df.columns:
        for y in (2012, 2020):
            sub = df[df["fiscal_year"] == y]
            if f"surgeries_{y}" in trends:
                add(ta, f"Surgeries, fiscal {y}", f"{trends[f'surgeries_{y}']:,}", fmt_count(len(sub), threshold) if len(sub) else "no data", size)
            if f"fusion_share_{y}" in trends and "surgery_type" in sub.columns:
                run, verdict = safe_rate(sub["surgery_type"] == "fusion", trends[f"fusion_share_{y}"])
                add(ta, f"Fusion share, fiscal {y}", pct(trends[f"fusion_share_{y}"]), run, verdict)
            if f"in_hospital_mortality_{y}" in trends and "in_hospital_death" in sub.columns:
                run, verdict = rate("in_hospital_death", trends[f"in_hospital_mortality_{y}"], sub)
                add(ta, f"In-hospital mortality, fiscal {y}", pct(trends[f"in_hospital_mortality_{y}"]), run, verdict)
            if f"los_days_{y}" in trends and "postop_los" in sub.columns:
                add(ta, f"Length of stay, fiscal {y}, days", str(trends[f"los_days_{y}"]),
                    f"{sub['postop_los'].median():.0f}" if len(sub) >= threshold else "no data", "",
                    "paper: length of stay; this run: postoperative stay (median)")
    ra = _short(risk.get("citation", "")) or "risk score"
    if risk:
        diff = "another cohort (see the note below)"
        def_notes.append(f"{_short(risk.get('citation', ''))}: another cohort ({risk.get('period', '')}, {risk.get('patients', 0):,} "
                         f"patients, 30-day mortality {pct(risk.get('mortality_30d', 0))}); its non-skeletal metastasis is "
                         "visceral or brain metastasis, compared here with visceral metastasis.")
        for key, name, term in (("or_male", "Male sex", "sex[T.M]"), ("or_emergency_admission", "Emergency admission", "emergency"),
                                ("or_rapid_growth_tumor", "Rapid-growth tumor (Katagiri)", "katagiri_group[T.rapid]"),
                                ("or_non_skeletal_metastasis", "Visceral metastasis", "visceral_mets")):
            if key in risk:
                ratio_row(ra, f"30-day mortality OR, {name.lower()}", "death_30d", None, tuple(risk[key]), "covariate",
                          term=term, diff=diff)
    notes = []
    for name, cit in ((ia, inst.get("citation")), (ta, trends.get("citation")), (ra, risk.get("citation"))):
        if cit:
            notes.append(f"{name}: {cit}")
    prim = (list(analyses.get("models", [])) or ["mixed_logit"])[0]
    notes.append(f"This run's ratios: the primary model ({model_label(prim)}; cause-specific Cox and Fine–Gray for the length of "
                 "stay), exposures mutually adjusted where run, with 95% CI. Verdicts: a rate agrees when the published value lies "
                 "inside this run's 95% Wilson interval; a ratio agrees when the published estimate lies inside this run's CI "
                 "(\"CI wider\": consistent but not significant here); a published null finding is contradicted when this run's "
                 "CI excludes 1. Counts depend on the database's size and are not compared.")
    notes += def_notes
    notes.append("Published figures copied into hospstudy (report/published.toml). On synthetic data the agreement shows "
                 "calibration, not a replication.")
    return ReportTable("published_vs_run", "Published vs this run", pd.DataFrame(rows), notes)


def _estimate_row(results, outcome, exposure, analyses, kind, model=None, term=None):
    """The primary row of an outcome × exposure; for ``kind="covariate"`` the ``term`` of the
    primary model's mutually adjusted fit of the outcome."""
    if results is None or results.table.empty:
        return None
    t = results.table
    if kind == "covariate":
        models = list(analyses.get("models", [])) or ["mixed_logit", "gee_logit", "logit"]
        for m in models:
            h = t[(t["outcome"] == outcome) & (t["model"] == m) & (t["term"] == term)]
            if len(h):
                mutual = h[h["analysis"].astype(str) == "mutual"]
                return (mutual if len(mutual) else h).iloc[0]
        return None
    if model is not None:
        e = exposure_rows(results)
        rows = e[(e["outcome"] == outcome) & (e["exposure"] == exposure) & (e["model"] == model)]
        if rows.empty:
            return None
        mutual = rows[rows["analysis"].astype(str).str.contains("mutual")]
        return (mutual if len(mutual) else rows).iloc[0]
    return primary_row(results, outcome, exposure, analyses, kind)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


def planted_vs_estimated(truth: dict, results: Results | None, analyses: dict) -> ReportTable:
    """Planted effects of the synthetic database beside this run's primary estimates.

    A planted effect is a number of ``truth.json`` at ``effects.<outcome>.<exposure>_or`` (odds
    ratio; ``_log_or`` for a log odds ratio) or ``..._hr`` (hazard ratio, matched to the
    cause-specific model), for every outcome × exposure the results estimate. Planted nulls
    (OR 1) are listed too: the pipeline should not find effects that were not planted.
    """
    effects = truth.get("effects", {}) if isinstance(truth, dict) else {}
    rows = []
    if results is None or results.table.empty or not isinstance(effects, dict):
        return ReportTable("planted_vs_estimated", "Planted vs estimated", pd.DataFrame())
    pairs = exposure_rows(results)[["outcome", "exposure"]].drop_duplicates().astype(str)
    for outcome, exposure in pairs.itertuples(index=False):
        planted_block = effects.get(outcome)
        if not isinstance(planted_block, dict):
            continue
        for suffix, kind, rname in (("_or", "adjusted", "OR"), ("_log_or", "adjusted", "OR"), ("_hr", "competing", "HR")):
            value = planted_block.get(exposure + suffix)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            planted = math.exp(value) if suffix == "_log_or" else float(value)
            row = primary_row(results, outcome, exposure, analyses, kind)
            if row is None:
                continue
            est, lo, hi = ratio(row)
            covered = bool(lo <= planted <= hi) if np.isfinite([lo, hi]).all() else None
            rows.append({"Outcome": label(outcome), "Exposure": label(exposure), "Planted": f"{rname} {planted:.3f}",
                         "Estimated (95% CI)": fmt_ci(est, lo, hi, 3),
                         "Model": f"{model_label(str(row['model']))} ({row['scale']}, {adjustment(str(row['analysis']), str(row['model']))})",
                         "Planted value inside CI": "" if covered is None else ("yes" if covered else "no")})
    notes = ["Planted values are conditional (within-hospital) effects of the data-generating model (truth.json, "
             "effects.<outcome>.<exposure>_or); the random-intercept model estimates the same quantity, GEE and "
             "weighted models a marginal one closer to 1. A 95% CI misses the planted value in 1 run of 20 by design."]
    return ReportTable("planted_vs_estimated", "Planted vs estimated (synthetic database)", pd.DataFrame(rows), notes)


def _count_with_complement(flags: np.ndarray, threshold: int) -> str:
    """A count published beside its total: hidden when it or the rest of the total is small."""
    k, n = int(np.sum(flags)), len(flags)
    if 0 < n - k < threshold and not 0 < k < threshold:
        return fmt_count(k, threshold, True)
    return fmt_count(k, threshold)
