"""Benchmark of mixed_logit (random-intercept logistic ML) against lme4::glmer.

Case of issue 4: 10,000 patients in 800 hospitals (cluster sizes from a gamma distribution),
25 fixed-effect columns (intercept, cancer center, volume per 50, 11 continuous, 5 binary and a
7-level category), a planted hospital SD of 0.4, nAGQ = 10. When Rscript with lme4 is present,
``lme4::glmer`` with its *default* control fits the same rows in the same run (rows written to a
temporary CSV; time of the glmer call inside R, and the Rscript process's peak RSS), and the
estimates are compared. Python memory is the tracemalloc peak of the fit (NumPy allocations are
traced) and the bench process's peak RSS.

Run alone:  python bench/bench_mixed.py   (prints a markdown table)
"""

from __future__ import annotations

import json
import platform
import resource
import shutil
import subprocess
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _common import print_rows  # bench/ is on sys.path: the script's folder, or run.py puts it there

AREA = "mixed"
CASE = "10,000 patients x 800 hospitals x 25 columns, nAGQ=10"


def make_data(n: int = 10_000, hospitals: int = 800, seed: int = 2026) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    size = rng.gamma(1.5, 1.0, hospitals)
    h = rng.choice(hospitals, n, p=size / size.sum())
    cc_h = rng.random(hospitals) < 0.3
    vol_h = np.round(rng.gamma(2.0, 40.0, hospitals)) + 1
    d = pd.DataFrame({"hospital_id": h, "cancer_center": cc_h[h].astype(int), "volume_per50": vol_h[h] / 50})
    for j in range(11):
        d[f"z{j}"] = rng.normal(size=n)
    for j in range(5):
        d[f"b{j}"] = (rng.random(n) < 0.3).astype(int)
    site = rng.choice(list("ABCDEFG"), n)
    for s in "BCDEFG":  # explicit dummies: the same columns in R and Python
        d[f"site{s}"] = (site == s).astype(int)
    u = rng.normal(0, 0.4, hospitals)[h]
    eta = (-2.2 - 0.17 * d["cancer_center"] - 0.043 * d["volume_per50"] + 0.2 * d["z0"] + 0.3 * d["b0"]
           - 0.1 * d["siteC"] + u)
    d["death_30d"] = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    covs = [c for c in d.columns if c not in ("hospital_id", "death_30d")]
    return d, covs


R_SCRIPT = r"""
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
f <- as.formula(paste("death_30d ~", paste(strsplit(args[3], ",")[[1]], collapse = " + "), "+ (1 | hospital_id)"))
t <- system.time(fit <- glmer(f, d, binomial, nAGQ = as.integer(args[4])))[["elapsed"]]
# lme4's own deviance function (glmer's second stage, over c(theta, beta)) at hospstudy's estimates
ours <- fromJSON(args[5])
dd <- glmer(f, d, binomial, nAGQ = as.integer(args[4]), devFunOnly = TRUE)
out <- list(seconds = t, fixef = unname(fixef(fit)), theta = unname(getME(fit, "theta")),
            se = unname(sqrt(diag(as.matrix(vcov(fit))))), loglik = as.numeric(logLik(fit)),
            dev_at_ours = dd(c(ours$theta, ours$beta)), dev_at_lme4 = dd(c(getME(fit, "theta"), fixef(fit))),
            lme4 = as.character(packageVersion("lme4")), messages = fit@optinfo$conv$lme4$messages)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE), args[2])
"""


def _lme4(d: pd.DataFrame, covs: list[str], nagq: int, ours: dict):
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv, js, rs = Path(tmp, "d.csv"), Path(tmp, "out.json"), Path(tmp, "fit.R")
        par = Path(tmp, "ours.json")
        par.write_text(json.dumps(ours))
        d.to_csv(csv, index=False)
        rs.write_text(R_SCRIPT)
        cmd = ["Rscript", str(rs), str(csv), str(js), ",".join(covs), str(nagq), str(par)]
        timer = shutil.which("time") or "/usr/bin/time"
        peak = float("nan")
        if Path(timer).exists():
            p = subprocess.run([timer, "-v", *cmd], capture_output=True, text=True)
            for line in p.stderr.splitlines():
                if "Maximum resident set size" in line:
                    peak = int(line.split(":")[-1]) / 1024
        else:
            p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0 or not js.exists():
            return {"error": p.stderr[-500:]}
        out = json.loads(js.read_text())
        out["peak_mib"] = peak
        return out


def run() -> list[dict]:
    from hospstudy.models.mixed import mixed_logit

    d, covs = make_data()
    formula = "death_30d ~ " + " + ".join(covs)
    nagq = 10
    rows = []

    def row(case, metric, value, unit, note=""):
        rows.append({"area": AREA, "case": case, "metric": metric, "value": value, "unit": unit, "note": note})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mixed_logit(formula, d.iloc[:2000], cluster="hospital_id", nagq=nagq)  # warm-up (imports, caches)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fit = mixed_logit(formula, d, cluster="hospital_id", nagq=nagq)
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    mixed_logit(formula, d, cluster="hospital_id", nagq=nagq)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(fit.estimate) == 25 and fit.clusters == d['hospital_id'].nunique() and fit.n == 10_000
    row(CASE, "mixed_logit time (median of 3)", round(float(np.median(times)), 3), "s",
        f"min {min(times):.3f} s; {fit.extra['evaluations']} deviance evaluations; converged={fit.converged}")
    row(CASE, "mixed_logit peak traced memory", round(peak / 2**20, 1), "MiB", "tracemalloc peak during one fit")
    row(CASE, "bench process peak RSS", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "MiB",
        "Python + pandas + formulaic + scipy loaded")
    row(CASE, "random SD (mixed_logit)", round(fit.random_sd, 6), "", f"planted 0.4; {fit.clusters} hospitals with patients")

    t1 = []
    for _ in range(3):
        t0 = time.perf_counter()
        lap = mixed_logit(formula, d, cluster="hospital_id", nagq=1)
        t1.append(time.perf_counter() - t0)
    row(CASE.replace("nAGQ=10", "nAGQ=1 (Laplace)"), "mixed_logit time (median of 3)", round(float(np.median(t1)), 3),
        "s", f"converged={lap.converged}")

    r = _lme4(d, covs, nagq, {"theta": fit.random_sd, "beta": [float(b) for b in fit.estimate]})
    if r is None:
        row(CASE, "lme4::glmer time", float("nan"), "s", "Rscript not found: comparison skipped")
    elif "error" in r:
        row(CASE, "lme4::glmer time", float("nan"), "s", "glmer failed: " + r["error"].replace("\n", " ")[:200])
    else:
        med = float(np.median(times))
        row(CASE, "lme4::glmer time (default control)", round(r["seconds"], 3), "s",
            f"lme4 {r['lme4']}; time of the glmer call inside R")
        row(CASE, "lme4::glmer Rscript peak RSS", round(r["peak_mib"], 1), "MiB", "whole Rscript process")
        row(CASE, "speed-up vs lme4::glmer", round(r["seconds"] / med, 1), "x", "glmer time / mixed_logit median")
        dfix = float(np.max(np.abs(fit.estimate - np.asarray(r["fixef"]))))
        dse = float(np.max(np.abs(fit.std_error / np.asarray(r["se"]) - 1)))
        row(CASE, "max |fixef difference| vs glmer", f"{dfix:.2e}", "",
            "glmer's default control (tolPwrss 1e-7, bobyqa defaults) stops short of the optimum")
        row(CASE, "max relative SE difference vs glmer", f"{dse:.2e}", "", "")
        row(CASE, "|random SD difference| vs glmer", f"{abs(fit.random_sd - float(np.atleast_1d(r['theta'])[0])):.2e}",
            "", "")
        row(CASE, "lme4 deviance function at mixed_logit's estimates - mixed_logit deviance",
            f"{r['dev_at_ours'] - fit.deviance:.2e}", "", "same objective: lme4's devFunOnly evaluated at our (theta, beta)")
        row(CASE, "lme4 deviance function: at glmer's estimates - at mixed_logit's",
            f"{r['dev_at_lme4'] - r['dev_at_ours']:.2e}", "", "> 0: by lme4's own criterion mixed_logit's optimum is better")
        row(CASE, "log-likelihood: mixed_logit - glmer", f"{fit.loglik - r['loglik']:.2e}", "",
            ">= 0 means mixed_logit found at least as good an optimum"
            + (f"; glmer: {r['messages']}" if r.get("messages") else ""))
    row("machine", "platform", platform.platform(), "", f"{platform.processor() or platform.machine()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    return rows


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        out = run()
    print_rows(out)
