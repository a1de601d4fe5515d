"""Benchmark of the marginal/unclustered models: logit, gee_logit, rcs, propensity weighting.

Data: 10,000 patients in 800 hospitals (cluster sizes from a gamma distribution, like
hospital volumes), 25 fixed-effect columns (continuous, binary and a 7-level category),
a planted hospital random effect. When Rscript with geepack is present, geepack::geeglm
fits the same rows in the same run (time inside R, data loading excluded), and statsmodels'
GEE is timed as the Python alternative.

Run alone:  python bench/bench_glm.py   (prints a markdown table)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import best_of as _time  # bench/ is on sys.path: the script's folder, or run.py puts it there

AREA = "glm"


def make_data(n: int = 10_000, hospitals: int = 800, seed: int = 2026) -> tuple[pd.DataFrame, str]:
    rng = np.random.default_rng(seed)
    size = rng.gamma(1.5, 1.0, hospitals)
    h = rng.choice(hospitals, n, p=size / size.sum())
    cc_h = rng.random(hospitals) < 0.3
    vol_h = np.round(rng.gamma(2.0, 40.0, hospitals)) + 1
    d = pd.DataFrame({"hospital_id": h, "cancer_center": cc_h[h].astype(int), "volume": vol_h[h]})
    d["volume_per50"] = d["volume"] / 50
    for j in range(12):
        d[f"z{j}"] = rng.normal(size=n)
    for j in range(5):
        d[f"b{j}"] = (rng.random(n) < 0.3).astype(int)
    d["site"] = rng.choice(list("ABCDEFG"), n)
    u = rng.normal(0, 0.4, hospitals)[h]
    eta = -2.2 - 0.17 * d["cancer_center"] - 0.043 * d["volume_per50"] + 0.2 * d["z0"] + 0.3 * d["b0"] + u
    d["death_30d"] = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    covs = " + ".join([f"z{j}" for j in range(12)] + [f"b{j}" for j in range(5)] + ["C(site, contr.treatment('A'))"])
    return d, covs




def _geepack(d: pd.DataFrame, formula_r: str) -> tuple[float, list[float]] | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        d.sort_values("hospital_id", kind="stable").to_csv(csv, index=False)
        script = f"""
suppressMessages({{library(geepack); library(jsonlite)}})
d <- read.csv("{csv}"); d$site <- factor(d$site)
t <- system.time(f <- geeglm({formula_r}, id = hospital_id, data = d, family = binomial,
                             corstr = "exchangeable", control = geese.control(epsilon = 1e-10, maxit = 200)))
cat(toJSON(list(elapsed = t[["elapsed"]], coef = unname(coef(f))), digits = NA, auto_unbox = TRUE))
"""
        try:
            r = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            return None
        if r.returncode != 0:
            return None
        got = json.loads(r.stdout.strip().splitlines()[-1])
        return got["elapsed"], got["coef"]


def _marginal_log_or(b0: float, b1: float, sd: float) -> float:
    """Population-averaged log OR of a hospital-level binary exposure under a random intercept."""
    from scipy.special import expit, logit

    z, wq = np.polynomial.hermite_e.hermegauss(80)
    wq = wq / wq.sum()
    p1 = np.sum(wq * expit(b0 + b1 + sd * z))
    p0 = np.sum(wq * expit(b0 + sd * z))
    return float(logit(p1) - logit(p0))


def _weighted_truth(a0, a1, b0, b1, bx, kind: str) -> float:
    """Marginal log OR targeted by IPTW (ATE) or overlap weights (ATO) when x ~ N(0, 1)."""
    from scipy.special import expit, logit

    z, wq = np.polynomial.hermite_e.hermegauss(80)
    wq = wq / wq.sum()
    e = expit(a0 + a1 * z)
    if kind == "overlap":
        wq = wq * e * (1 - e)
    p1 = np.sum(wq * expit(b0 + b1 + bx * z)) / wq.sum()
    p0 = np.sum(wq * expit(b0 + bx * z)) / wq.sum()
    return float(logit(p1) - logit(p0))


def coverage(reps: int = 200, hospitals: int = 100, seed: int = 7) -> list[dict]:
    """Bias, empirical vs model SE and 95% CI coverage of the planted marginal effects.

    Clustered case: hospital-level exposure (b1 = -0.3 conditional), random intercept SD 0.6,
    ~20 patients per hospital; the target of logit/GEE is the population-averaged log OR
    computed by quadrature. Weighting case: patient-level exposure confounded by x; the
    targets are the ATE (IPTW) and ATO (overlap) marginal log ORs.
    """
    import warnings

    from hospstudy.models.gee import gee_logit
    from hospstudy.models.glm import logit
    from hospstudy.models.weighting import propensity_weights, weighted_logit

    rng = np.random.default_rng(seed)
    b0, b1, sd = -1.5, -0.3, 0.6
    a0, a1, c0, c1, cx = -0.4, 0.8, -1.8, -0.3, 0.7
    truth = {
        "logit (model SE)": _marginal_log_or(b0, b1, sd),
        "logit, cluster-robust": _marginal_log_or(b0, b1, sd),
        "gee_logit exchangeable": _marginal_log_or(b0, b1, sd),
        "gee_logit independence": _marginal_log_or(b0, b1, sd),
        "weighted_logit IPTW (HC0)": _weighted_truth(a0, a1, c0, c1, cx, "iptw"),
        "weighted_logit overlap (HC0)": _weighted_truth(a0, a1, c0, c1, cx, "overlap"),
    }
    est = {k: [] for k in truth}
    se = {k: [] for k in truth}
    for _ in range(reps):
        size = rng.poisson(20, hospitals) + 1
        h = np.repeat(np.arange(hospitals), size)
        cc = (rng.random(hospitals) < 0.4)[h].astype(int)
        u = rng.normal(0, sd, hospitals)[h]
        y = (rng.random(h.size) < 1 / (1 + np.exp(-(b0 + b1 * cc + u)))).astype(int)
        d = pd.DataFrame({"y": y, "cc": cc, "h": h})
        x = rng.normal(size=2000)
        t = (rng.random(2000) < 1 / (1 + np.exp(-(a0 + a1 * x)))).astype(int)
        yw = (rng.random(2000) < 1 / (1 + np.exp(-(c0 + c1 * t + cx * x)))).astype(int)
        dw = pd.DataFrame({"y": yw, "t": t, "x": x})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits = {
                "logit (model SE)": logit("y ~ cc", d),
                "logit, cluster-robust": logit("y ~ cc", d, cluster="h"),
                "gee_logit exchangeable": gee_logit("y ~ cc", d, cluster="h"),
                "gee_logit independence": gee_logit("y ~ cc", d, cluster="h", corr="independence"),
                "weighted_logit IPTW (HC0)": weighted_logit("y ~ t", dw, propensity_weights("t ~ x", dw)),
                "weighted_logit overlap (HC0)": weighted_logit(
                    "y ~ t", dw, propensity_weights("t ~ x", dw, method="overlap")),
            }
        for k, r in fits.items():
            est[k].append(r.estimate[1])
            se[k].append(r.std_error[1])
    rows = []
    for k in truth:
        e, s_ = np.array(est[k]), np.array(se[k])
        cover = np.mean(np.abs(e - truth[k]) <= 1.959963984540054 * s_)
        note = f"{reps} replicates; truth {truth[k]:.4f}"
        rows += [
            {"area": AREA, "case": f"coverage: {k}", "metric": "bias", "value": round(float(e.mean() - truth[k]), 4), "unit": "log OR", "note": note},
            {"area": AREA, "case": f"coverage: {k}", "metric": "empirical SE / mean model SE", "value": round(float(e.std(ddof=1) / s_.mean()), 3), "unit": "ratio", "note": note},
            {"area": AREA, "case": f"coverage: {k}", "metric": "95% CI coverage", "value": round(float(cover) * 100, 1), "unit": "%", "note": note},
        ]
    return rows


def run() -> list[dict]:
    import warnings

    import statsmodels.api as sm

    from hospstudy.models.gee import gee_logit
    from hospstudy.models.glm import logit
    from hospstudy.models.weighting import balance_table, propensity_weights, weighted_logit

    d, covs = make_data()
    f = f"death_30d ~ cancer_center + volume_per50 + {covs}"
    n, G = len(d), d["hospital_id"].nunique()
    rows = []

    def add(case, metric, value, unit, note=""):
        rows.append({"area": AREA, "case": case, "metric": metric, "value": value, "unit": unit, "note": note})

    data_note = f"{n} patients, {G} hospitals, 25 columns"
    t, r = _time(lambda: logit(f, d))
    add("logit", "time", round(t, 3), "s", data_note)
    t, r = _time(lambda: logit(f, d, cluster="hospital_id"))
    add("logit, cluster-robust", "time", round(t, 3), "s", data_note)
    t_gee, g = _time(lambda: gee_logit(f, d, cluster="hospital_id"))
    add("gee_logit exchangeable", "time", round(t_gee, 3), "s", f"{data_note}; {g.extra['iterations']} iterations")
    t, _ = _time(lambda: gee_logit(f, d, cluster="hospital_id", corr="independence"))
    add("gee_logit independence", "time", round(t, 3), "s", data_note)

    from hospstudy.models.base import design

    X = design(f, d).X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_sm, smf = _time(lambda: sm.GEE(d["death_30d"], X, groups=d["hospital_id"], family=sm.families.Binomial(),
                                         cov_struct=sm.cov_struct.Exchangeable()).fit(maxiter=100), repeat=1)
    add("statsmodels GEE exchangeable", "time", round(t_sm, 3), "s",
        f"max |beta diff| vs gee_logit {np.max(np.abs(np.asarray(smf.params) - g.estimate)):.1e} (alpha estimator differs)")

    fr = f.replace("C(site, contr.treatment('A'))", "site")
    gp = _geepack(d, fr) if os.environ.get("BENCH_NO_R") is None else None
    if gp is not None:
        add("geepack::geeglm exchangeable", "time", round(gp[0], 3), "s",
            f"same rows; max |beta diff| vs gee_logit {np.max(np.abs(np.asarray(gp[1]) - g.estimate)):.1e}")
        add("gee_logit vs geeglm", "speed-up", round(gp[0] / t_gee, 1), "x", "")

    fs = f.replace("volume_per50", "rcs(volume, 4)")
    t, _ = _time(lambda: logit(fs, d, cluster="hospital_id"))
    add("logit with rcs(volume, 4), cluster-robust", "time", round(t, 3), "s", data_note)

    ps_f = f"cancer_center ~ volume_per50 + {covs}"
    t, pw = _time(lambda: propensity_weights(ps_f, d, method="iptw"))
    add("propensity_weights iptw", "time", round(t, 3), "s", data_note)
    cov_cols = [f"z{j}" for j in range(12)] + [f"b{j}" for j in range(5)] + ["site", "volume"]
    t, bt = _time(lambda: balance_table(d, cov_cols, "cancer_center", pw))
    add("balance_table", "time", round(t, 3), "s", f"{len(bt)} rows")
    t, _ = _time(lambda: weighted_logit("death_30d ~ cancer_center", d, pw, cluster="hospital_id"))
    add("weighted_logit, cluster-robust", "time", round(t, 3), "s", data_note)
    reps = int(os.environ.get("BENCH_GLM_REPS", 1000 if os.environ.get("BENCH_FULL") else 200))
    t0 = time.perf_counter()
    cov_rows = coverage(reps)
    add("coverage simulation", "time", round(time.perf_counter() - t0, 1), "s", f"{reps} replicates x 6 fits")
    return rows + cov_rows


def _main():
    out = run()
    print("| area | case | metric | value | unit | note |")
    print("|---|---|---|---|---|---|")
    for r in out:
        print(f"| {r['area']} | {r['case']} | {r['metric']} | {r['value']} | {r['unit']} | {r['note']} |")


if __name__ == "__main__":
    _main()
