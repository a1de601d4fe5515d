"""Coverage of the planted effects (issue 4 §3): replicate synthetic databases, the flagship's
cohort engine, and ``mixed_logit`` with the data-generating model's adjustment set.

Each replicate ``r`` generates a reduced-scale synthetic database (seed ``COVERAGE_SEED + r``,
``background=False``), builds the flagship analytic dataset with the real cohort engine
(``studies/spinal_metastasis.toml``, DuckDB), and fits one random-intercept logistic model per
outcome with exactly the covariates of the synthetic outcome model (docs/synthetic.md,
"Outcome model"), so that the conditional odds ratios the model estimates are the planted ones:

============================  ========================================================================
outcome (rows)                adjustment set besides cancer center and volume per 50
============================  ========================================================================
death_30d (all)               male, emergency, rapid and moderate growth, visceral or brain metastasis,
                              (age - 65)/10, Charlson, non-ambulatory at admission, fiscal year
complication (all)            male, emergency, (age - 65)/10, Charlson, fusion
unfavorable_ambulatory        emergency, rapid growth, (age - 65)/10, non-ambulatory at admission,
(discharged alive)            complication
discharged_home               (age - 65)/10, unfavorable ambulatory
(discharged alive)
============================  ========================================================================

The planted values are read from each database's ``truth.json``. For every (outcome, exposure)
it reports the bias of the log odds ratio (with its Monte Carlo SE), the empirical SD of the
estimates against the mean model SE, and the share of 95% Wald intervals holding the planted
value (with its Monte Carlo SE ``sqrt(p (1 - p) / R)``).

Environment: ``COVERAGE_REPS`` (default 200), ``COVERAGE_SCALE`` (default 0.5),
``COVERAGE_WORKERS`` (default 2), ``COVERAGE_SEED`` (default 7_000_000), ``COVERAGE_NAGQ``
(default 1). Per-replicate records go to ``bench/_work/coverage_replicates_scale<S>.csv``, the summary
table to ``bench/_work/coverage_summary_scale<S>.md``.

Run alone:  python bench/coverage.py   (prints the summary and the benchmark rows as markdown)
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

AREA = "coverage"
ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "studies" / "spinal_metastasis.toml"
WORK = Path(__file__).resolve().parent / "_work"

#: outcome -> (formula right-hand side after the two exposures, row filter on the analytic frame)
MODELS: dict[str, tuple[str, str | None]] = {
    "death_30d": ("male + emergency + rapid_growth + moderate_growth + visceral_mets + age_per10"
                  " + charlson_per1 + nonambulatory_adm + C(fiscal_year)", None),
    "complication": ("male + emergency + age_per10 + charlson_per1 + fusion", None),
    "unfavorable_ambulatory": ("emergency + rapid_growth + age_per10 + nonambulatory_adm + complication",
                               "alive"),
    "discharged_home": ("age_per10 + unfavorable_ambulatory", "alive"),
}
#: model term -> key of the planted odds ratio in truth.json's effects table
EXPOSURES = {"cancer_center": "cancer_center_or", "volume_per50": "volume_per50_or"}
LABELS = {"cancer_center": "cancer center OR", "volume_per50": "volume per 50 OR"}

RECORD_COLUMNS = ["replicate", "seed", "scale", "outcome", "term", "planted_or", "truth", "estimate",
                  "std_error", "conf_low", "conf_high", "covered", "n", "events", "hospitals",
                  "random_sd", "planted_sd", "boundary", "converged", "separation", "error"]
SUMMARY_COLUMNS = ["outcome", "term", "planted_or", "replicates", "failed", "mean_or", "bias_log",
                   "bias_log_mcse", "empirical_sd", "mean_model_se", "se_ratio", "coverage",
                   "coverage_mcse", "boundary_share", "mean_random_sd", "planted_sd"]


def analysis_frame(analytic: pd.DataFrame) -> pd.DataFrame:
    """The data-generating model's covariates from the flagship analytic dataset.

    Parameters
    ----------
    analytic : DataFrame
        ``CohortResult.analytic`` of ``studies/spinal_metastasis.toml``.

    Returns
    -------
    DataFrame
        Float 0/1 columns (NaN where the recorded value is missing) named as the planted effects
        of docs/synthetic.md, plus ``hospital_id``, ``fiscal_year``, the outcomes and ``alive``.
    """
    a = analytic

    def f(s):
        return pd.Series(s, index=a.index).astype("Float64").astype(float)

    walking = a["walking_adm"].astype("Float64")
    d = pd.DataFrame({
        "hospital_id": a["hospital_id"].to_numpy(),
        "fiscal_year": a["fiscal_year"].to_numpy(),
        "cancer_center": f(a["cancer_center"]),
        "volume_per50": a["volume_per50"].astype(float),
        "male": f(a["sex"] == "M"),
        "emergency": f(a["emergency"]),
        "rapid_growth": f(a["katagiri_group"] == "rapid"),
        "moderate_growth": f(a["katagiri_group"] == "moderate"),
        "visceral_mets": f(a["visceral_mets"].astype(bool) | a["brain_mets"].astype(bool)),
        "age_per10": (a["age"].astype(float) - 65.0) / 10.0,
        "charlson_per1": a["charlson"].astype(float),
        "nonambulatory_adm": (walking <= 1).astype("Float64").astype(float),
        "fusion": f(a["surgery_type"] == "fusion"),
        "alive": ~a["in_hospital_death"].astype(bool),
    }, index=a.index)
    for outcome in ("death_30d", "complication", "unfavorable_ambulatory", "discharged_home"):
        d[outcome] = a[outcome].astype("Float64").astype(float)
    return d


def fit_outcome(d: pd.DataFrame, outcome: str, effects: dict, nagq: int = 1) -> list[dict]:
    """Fit one outcome's data-generating model and compare both exposures with the planted values.

    Parameters
    ----------
    d : DataFrame
        :func:`analysis_frame` of one replicate.
    outcome : str
        A key of :data:`MODELS`.
    effects : dict
        ``truth.json``'s ``effects`` table (planted odds ratios and ``hospital_sd`` per outcome).
    nagq : int
        Quadrature nodes of ``mixed_logit``.

    Returns
    -------
    list of dict
        One record per exposure (the columns of :data:`RECORD_COLUMNS` except the replicate's).
    """
    from hospstudy.errors import BoundaryWarning, HospstudyError, SeparationWarning
    from hospstudy.models.mixed import mixed_logit

    rhs, rows = MODELS[outcome]
    data = d[d["alive"]] if rows == "alive" else d
    planted = effects[outcome]
    base = [{"outcome": outcome, "term": term, "planted_or": float(planted[key]),
             "truth": math.log(float(planted[key])), "planted_sd": float(planted["hospital_sd"])}
            for term, key in EXPOSURES.items()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = mixed_logit(f"{outcome} ~ cancer_center + volume_per50 + {rhs}", data,
                              cluster="hospital_id", nagq=nagq)
        except (HospstudyError, np.linalg.LinAlgError, FloatingPointError) as e:
            return [{**b, "error": f"{type(e).__name__}: {e}"} for b in base]
    tidy = fit.tidy().set_index("term")
    flags = {"boundary": any(issubclass(w.category, BoundaryWarning) for w in caught),
             "separation": any(issubclass(w.category, SeparationWarning) for w in caught),
             "converged": bool(fit.converged), "n": int(fit.n), "events": int(fit.events),
             "hospitals": int(fit.clusters), "random_sd": float(fit.random_sd), "error": ""}
    out = []
    for b in base:
        t = tidy.loc[b["term"]]
        lo, hi = float(t["conf_low"]), float(t["conf_high"])
        ok = np.isfinite([t["estimate"], t["std_error"], lo, hi]).all()
        out.append({**b, **flags, "estimate": float(t["estimate"]), "std_error": float(t["std_error"]),
                    "conf_low": lo, "conf_high": hi,
                    "covered": bool(lo <= b["truth"] <= hi) if ok else None,
                    "error": "" if ok else "non-finite estimate or standard error"})
    return out


_STUDY = None


def replicate(r: int, seed: int, scale: float, effects=None, nagq: int = 1, workdir=None) -> dict:
    """One replicate: generate a database, build the flagship cohort, fit every outcome.

    Parameters
    ----------
    r : int
        Replicate number (recorded).
    seed : int
        Seed of the synthetic database.
    scale : float
        Scale of the synthetic database (docs/synthetic.md).
    effects : dict or path, optional
        Overrides of the planted effects, passed to ``generate``.
    nagq : int
        Quadrature nodes of ``mixed_logit``.
    workdir : path, optional
        Where the temporary database is written (removed afterwards).

    Returns
    -------
    dict
        ``records`` (list of dicts, :data:`RECORD_COLUMNS`) and ``seconds`` per stage.
    """
    global _STUDY
    from hospstudy import Study
    from hospstudy.data.synth import generate

    if _STUDY is None:
        _STUDY = Study.load(STUDY)
    tmp = Path(tempfile.mkdtemp(prefix=f"coverage_{seed}_", dir=workdir))
    try:
        t0 = time.perf_counter()
        generate(tmp / "db", seed=seed, scale=scale, effects=effects, background=False, overwrite=True)
        truth = json.loads((tmp / "db" / "truth.json").read_text())
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cohort = _STUDY.build_cohort(tmp / "db", engine="duckdb", validate=False)
        d = analysis_frame(cohort.analytic)
        t2 = time.perf_counter()
        records = []
        for outcome in MODELS:
            records += fit_outcome(d, outcome, truth["effects"], nagq=nagq)
        t3 = time.perf_counter()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for rec in records:
        rec.update(replicate=r, seed=seed, scale=scale)
    return {"records": records, "seconds": {"generate": t1 - t0, "cohort": t2 - t1, "fit": t3 - t2}}


def _first(s: pd.Series) -> float:
    """First known value (a crashed replicate's records carry no planted values)."""
    s = s.dropna()
    return float(s.iloc[0]) if len(s) else float("nan")


def summarize(records: pd.DataFrame) -> pd.DataFrame:
    """Bias, empirical vs model SE and 95% coverage per (outcome, term).

    Parameters
    ----------
    records : DataFrame
        Per-replicate records (:data:`RECORD_COLUMNS`); rows with an ``error`` count as failed and
        are left out of every statistic.

    Returns
    -------
    DataFrame
        :data:`SUMMARY_COLUMNS`. ``bias_log`` is the mean of (estimate - log planted OR) with
        Monte Carlo SE ``empirical_sd / sqrt(R)``; ``se_ratio`` is mean model SE / empirical SD;
        ``coverage_mcse`` is ``sqrt(p (1 - p) / R)``; ``mean_or`` is exp(mean log OR).
    """
    rows = []
    for (outcome, term), g in records.groupby(["outcome", "term"], sort=False):
        ok = g[g["error"].fillna("").astype(str) == ""]
        R = len(ok)
        est, se, truth = (ok[c].to_numpy(float) for c in ("estimate", "std_error", "truth"))
        cov = ok["covered"].astype(float).to_numpy()
        p = float(cov.mean()) if R else float("nan")
        sd = float(np.std(est, ddof=1)) if R > 1 else float("nan")
        rows.append({
            "outcome": outcome, "term": term, "planted_or": _first(g["planted_or"]),
            "replicates": R, "failed": int(len(g) - R),
            "mean_or": float(np.exp(est.mean())) if R else float("nan"),
            "bias_log": float((est - truth).mean()) if R else float("nan"),
            "bias_log_mcse": sd / math.sqrt(R) if R > 1 else float("nan"),
            "empirical_sd": sd,
            "mean_model_se": float(se.mean()) if R else float("nan"),
            "se_ratio": float(se.mean()) / sd if R > 1 and sd > 0 else float("nan"),
            "coverage": p,
            "coverage_mcse": math.sqrt(p * (1 - p) / R) if R else float("nan"),
            "boundary_share": float(ok["boundary"].astype(float).mean()) if R else float("nan"),
            "mean_random_sd": float(ok["random_sd"].mean()) if R else float("nan"),
            "planted_sd": _first(g["planted_sd"]),
        })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def summary_markdown(s: pd.DataFrame) -> str:
    """The summary as the markdown table of docs/statistics.md."""
    lines = ["| outcome | effect | planted | R | mean OR | bias (log) ± MC SE | empirical SD | mean model SE "
             "| SE ratio | 95% coverage ± MC SE | SD at boundary |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in s.iterrows():
        lines.append(
            f"| {r.outcome} | {LABELS.get(r.term, r.term)} | {r.planted_or:.3f} | {r.replicates}"
            f"{f' ({r.failed} failed)' if r.failed else ''} | {r.mean_or:.3f} | {r.bias_log:+.4f} ± {r.bias_log_mcse:.4f} "
            f"| {r.empirical_sd:.4f} | {r.mean_model_se:.4f} | {r.se_ratio:.3f} "
            f"| {100 * r.coverage:.1f}% ± {100 * r.coverage_mcse:.1f} | {100 * r.boundary_share:.0f}% |")
    return "\n".join(lines)


def _quiet_worker() -> None:
    """Silence the workers' own progress bars (generate, cohort): only the parent draws one."""
    from hospstudy.console import console

    console.quiet = True


def run_replicates(reps: int, scale: float, seed: int = 7_000_000, workers: int = 2, effects=None,
                   nagq: int = 1, workdir=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run ``reps`` replicates (``workers`` processes) with rich progress.

    Returns
    -------
    (records, seconds)
        Per-replicate records (:data:`RECORD_COLUMNS`) sorted by replicate, and one row of stage
        seconds per replicate.
    """
    from hospstudy.console import console, progress

    records, seconds = [], []
    args = [(r, seed + r, scale, effects, nagq, workdir) for r in range(reps)]
    with progress() as bar:
        task = bar.add_task(f"coverage: {reps} replicates at scale {scale}", total=reps)
        if workers <= 1:
            results = (replicate(*a) for a in args)
            for res in results:
                records += res["records"]
                seconds.append(res["seconds"])
                bar.advance(task)
        else:
            # fork: the workers inherit this module even when it was loaded from a path
            # (bench/run.py), and nothing in the parent has opened DuckDB yet
            with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"),
                                        initializer=_quiet_worker) as pool:
                futures = {pool.submit(replicate, *a): a[0] for a in args}
                for fut in cf.as_completed(futures):
                    try:
                        res = fut.result()
                    except Exception as e:  # a broken replicate is reported, not fatal
                        console.print(f"[red]replicate {futures[fut]} failed:[/] {type(e).__name__}: {e}")
                        records += [{"replicate": futures[fut], "outcome": o, "term": t,
                                     "error": f"{type(e).__name__}: {e}"} for o in MODELS for t in EXPOSURES]
                        bar.advance(task)
                        continue
                    records += res["records"]
                    seconds.append(res["seconds"])
                    bar.advance(task)
    rec = pd.DataFrame(records).reindex(columns=RECORD_COLUMNS)
    order = {o: i for i, o in enumerate(MODELS)}
    rec = rec.sort_values(["replicate", "outcome", "term"], key=lambda c: c.map(order) if c.name == "outcome" else c)
    return rec.reset_index(drop=True), pd.DataFrame(seconds)


def _rows(s: pd.DataFrame, secs: pd.DataFrame, wall: float, reps: int, scale: float, workers: int) -> list[dict]:
    rows = []
    for _, r in s.iterrows():
        case = f"{r.outcome}: {LABELS[r.term]} (planted {r.planted_or:g})"
        note = f"{r.replicates} replicates at scale {scale}" + (f", {r.failed} failed" if r.failed else "")
        rows += [
            {"area": AREA, "case": case, "metric": "bias of log OR", "value": r.bias_log, "unit": "log",
             "note": f"{note}; MC SE {r.bias_log_mcse:.4f}"},
            {"area": AREA, "case": case, "metric": "empirical SD of log OR", "value": r.empirical_sd,
             "unit": "log", "note": note},
            {"area": AREA, "case": case, "metric": "mean model SE of log OR", "value": r.mean_model_se,
             "unit": "log", "note": f"{note}; SE / empirical SD = {r.se_ratio:.3f}"},
            {"area": AREA, "case": case, "metric": "95% CI coverage", "value": 100 * r.coverage, "unit": "%",
             "note": f"{note}; MC SE {100 * r.coverage_mcse:.1f} points; target 93-97%"},
        ]
    per = secs.sum(axis=1) if len(secs) else pd.Series([float("nan")])
    rows.append({"area": AREA, "case": f"one replicate at scale {scale}", "metric": "time (median)",
                 "value": float(per.median()), "unit": "s",
                 "note": "generate (background=False) {:.1f} + cohort engine {:.1f} + 4 mixed_logit fits {:.1f} s"
                         .format(*(secs[c].median() for c in ("generate", "cohort", "fit")))
                 if len(secs) else ""})
    rows.append({"area": AREA, "case": f"{reps} replicates, {workers} worker processes", "metric": "wall time",
                 "value": wall, "unit": "s", "note": f"{platform.node()}, shared cores"})
    return rows


def run() -> list[dict]:
    """Benchmark rows (area 'coverage'); settings from the environment (module docstring)."""
    reps = int(os.environ.get("COVERAGE_REPS", "200"))
    scale = float(os.environ.get("COVERAGE_SCALE", "0.5"))
    workers = int(os.environ.get("COVERAGE_WORKERS", "2"))
    seed = int(os.environ.get("COVERAGE_SEED", "7000000"))
    nagq = int(os.environ.get("COVERAGE_NAGQ", "1"))
    t0 = time.perf_counter()
    rec, secs = run_replicates(reps, scale, seed=seed, workers=workers, nagq=nagq)
    wall = time.perf_counter() - t0
    s = summarize(rec)
    WORK.mkdir(parents=True, exist_ok=True)
    rec.to_csv(WORK / f"coverage_replicates_scale{scale:g}.csv", index=False)
    (WORK / f"coverage_summary_scale{scale:g}.md").write_text(
        f"{reps} replicates, scale {scale}, seeds {seed}..{seed + reps - 1}, nAGQ {nagq}, "
        f"{wall:.0f} s wall with {workers} workers\n\n" + summary_markdown(s) + "\n")
    return _rows(s, secs, wall, reps, scale, workers)


def main() -> int:
    rows = run()
    scale = float(os.environ.get("COVERAGE_SCALE", "0.5"))
    print((WORK / f"coverage_summary_scale{scale:g}.md").read_text())
    print("| area | case | metric | value | unit | note |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        v = r["value"]
        print(f"| {r['area']} | {r['case']} | {r['metric']} | {v:.4g} | {r['unit']} | {r['note']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
