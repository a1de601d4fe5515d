"""Published vs this run, and planted vs estimated on a synthetic database."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from hospstudy.privacy import DEFAULT_THRESHOLD, fmt_count
from hospstudy.report.format import absent, fmt_ci, fmt_p, ratio
from hospstudy.report.labels import label
from hospstudy.report.results import Results, exposure_term_mask
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.sections._results import adjustment, model_label, primary_row
from hospstudy.report.tables import ReportTable, as_bool


def build(ctx: Context) -> list[str]:
    blocks = []
    if ctx.inp.published is not None and _names_published(ctx.inp.study):
        blocks.append(ctx.add_table(published_vs_run(ctx.inp.published, ctx.inp.analytic, ctx.inp.results, ctx.analyses, ctx.t)))
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



def published_vs_run(published: dict, df: pd.DataFrame | None, results: Results | None, analyses: dict,
                     threshold: int = DEFAULT_THRESHOLD) -> ReportTable:
    """One row per published figure of the flagship's sources, beside this run's value."""
    src = (published.get("source") or {})
    inst = src.get("institutional_function", {})
    trends = src.get("trends", {})
    rows = []

    def add(source, figure, pub, run):
        rows.append({"Source": source, "Figure": figure, "Published": pub, "This run": run})

    cohort, outs, adj = inst.get("cohort", {}), inst.get("outcomes", {}), inst.get("adjusted", {})
    have = df is not None
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731

    def safe_rate(flags) -> str:
        """A proportion, unless it and its denominator would reveal a small count of patients
        with or without the event."""
        flags = np.asarray(flags, dtype=bool)
        if not len(flags):
            return "no data"
        k = int(flags.sum())
        if 0 < k < threshold or 0 < len(flags) - k < threshold or len(flags) < threshold:
            return f"suppressed (a count below {threshold})"
        return pct(k / len(flags))

    def rate(col, frame=None):
        frame = df if frame is None else frame
        if not have or col not in frame.columns:
            return "not computed"
        return safe_rate(frame[col].dropna().astype(bool))

    if cohort:
        add("Yamada 2025", "Patients", f"{cohort.get('patients', ''):,}", fmt_count(len(df), threshold) if have else "not computed")
        if "patients_cancer_center" in cohort:
            add("Yamada 2025", "Patients at cancer centers", f"{cohort['patients_cancer_center']:,}",
                _count_with_complement(as_bool(df["cancer_center"]), threshold) if have and "cancer_center" in df.columns else "not computed")
        if "median_annual_spine_surgery_volume" in cohort:
            run = "not computed"
            if have and "volume" in df.columns:
                keys = [c for c in ("hospital_id", "fiscal_year") if c in df.columns]
                run = (f"{df['volume'].median():.0f} (median over patients); "
                       f"{df.drop_duplicates(keys)['volume'].median():.0f} (over hospital-years)")
            add("Yamada 2025", "Median annual spine-surgery volume per hospital", str(cohort["median_annual_spine_surgery_volume"]), run)
    mapping = [("in_hospital_mortality", "In-hospital mortality", "in_hospital_death"), ("mortality_30d", "30-day mortality", "death_30d"),
               ("discharged_home", "Discharged home", "discharged_home"), ("postoperative_complications", "Postoperative complications", "complication"),
               ("unfavorable_ambulatory_status", "Unfavorable ambulatory status", "unfavorable_ambulatory")]
    for key, name, col in mapping:
        if key in outs:
            add("Yamada 2025", name, pct(outs[key]), rate(col))
    if "median_postoperative_los_days" in outs:
        add("Yamada 2025", "Median postoperative length of stay, days", str(outs["median_postoperative_los_days"]),
            f"{df['postop_los'].median():.0f}" if have and "postop_los" in df.columns else "not computed")
    for exp, pre, name in (("cancer_center", "cancer_center", "30-day mortality OR, cancer center"),
                           ("volume_per50", "volume_per_50", "30-day mortality OR, per 50 cases of volume")):
        if f"{pre}_or" in adj:
            ci = adj.get(f"{pre}_ci", [float("nan")] * 2)
            row = primary_row(results, "death_30d", exp, analyses)
            run = "not estimated" if row is None else f"{fmt_ci(*ratio(row), digits=3)}; p {fmt_p(row['p_value'])} ({model_label(str(row['model']))}, {row['scale']})"
            add("Yamada 2025", name, f"{adj[f'{pre}_or']:.3f} ({ci[0]:.3f}–{ci[1]:.3f}); p {adj.get(f'{pre}_p', '')}", run)
    if trends and have and "fiscal_year" in df.columns:
        for y in (2012, 2020):
            sub = df[df["fiscal_year"] == y]
            if f"surgeries_{y}" in trends:
                add("Yamada 2024", f"Surgeries, fiscal {y}", f"{trends[f'surgeries_{y}']:,}", fmt_count(len(sub), threshold) if len(sub) else "no data")
            if f"fusion_share_{y}" in trends and "surgery_type" in sub.columns:
                add("Yamada 2024", f"Fusion share, fiscal {y}", pct(trends[f"fusion_share_{y}"]), safe_rate(sub["surgery_type"] == "fusion"))
            if f"in_hospital_mortality_{y}" in trends and "in_hospital_death" in sub.columns:
                add("Yamada 2024", f"In-hospital mortality, fiscal {y}", pct(trends[f"in_hospital_mortality_{y}"]),
                    rate("in_hospital_death", sub))
            if f"los_days_{y}" in trends and "postop_los" in sub.columns:
                add("Yamada 2024", f"Length of stay, fiscal {y} (here: postoperative, median)", str(trends[f"los_days_{y}"]),
                    f"{sub['postop_los'].median():.0f}" if len(sub) else "no data")
    notes = ["Published figures: Yamada et al., Clin Spine Surg 2025 (institutional function) and Int J Clin Oncol 2024 (trends), "
             "copied into hospstudy (report/published.toml). On synthetic data the agreement shows calibration, not a replication."]
    return ReportTable("published_vs_run", "Published vs this run", pd.DataFrame(rows), notes)


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
    t = results.table
    pairs = t.loc[exposure_term_mask(t), ["outcome", "exposure"]].drop_duplicates().astype(str)
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
