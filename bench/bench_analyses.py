"""Benchmark of the analyses area: competing risks, profiling, trends and the whole runner.

Data: a synthetic analytic dataset built with numpy (tests/analyses_synth.py): ~10,000
patients in 250 hospitals, planted hospital random intercepts, discharge home / in-hospital
death / other discharge with day-level ties. When Rscript with survival is present, the same
cause-specific Cox and finegray + weighted coxph fits are timed inside R in the same run.

Run alone:  python bench/bench_analyses.py   (prints a markdown table)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import best_of as _best, print_rows  # bench/ is on sys.path: the script's folder, or run.py puts it there

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

AREA = "analyses"




R_SCRIPT = r"""
suppressMessages(library(survival))
d <- read.csv(commandArgs(TRUE)[1])
d$sex <- factor(d$sex); d$site <- factor(d$primary_site)
t_cs <- system.time(for (i in 1:3) coxph(Surv(los_to_home, los_to_home_event == 1) ~ cancer_center + volume_per50 + age + sex + emergency + site, data = d, cluster = hospital_id))[["elapsed"]] / 3
t_fg <- system.time(for (i in 1:3) {
  fg <- finegray(Surv(los_to_home, factor(los_to_home_event)) ~ ., data = d, etype = "1")
  coxph(Surv(fgstart, fgstop, fgstatus) ~ cancer_center + volume_per50 + age + sex + emergency + site, data = fg, weights = fgwt, cluster = hospital_id)
})[["elapsed"]] / 3
cat(sprintf('{"cs": %f, "fg": %f}', t_cs, t_fg))
"""


def run() -> list[dict]:
    from analyses_synth import SPEC, analytic

    from hospstudy.models.analyses import run_analyses
    from hospstudy.models.competing import cause_specific_cox, cumulative_incidence, fine_gray
    from hospstudy.models.profiling import risk_standardized_rates
    from hospstudy.models.trends import trend_table

    d = analytic(n_hosp=250, mean_patients=40, seed=2026)
    n = len(d)
    rows = []

    def row(case, metric, value, unit, note=""):
        rows.append({"area": AREA, "case": case, "metric": metric, "value": value, "unit": unit, "note": note})

    dd = d.assign(cancer_center=d.cancer_center.astype(float), emergency=d.emergency.astype(float))
    rhs = "cancer_center + volume_per50 + age + C(sex) + emergency + C(primary_site)"
    t, _ = _best(lambda: cumulative_incidence(dd, "los_to_home", "los_to_home_event", group="cancer_center"))
    row(f"cumulative incidence, {n:,} patients, 2 groups x 2 causes", "wall (best of 3)", round(t, 3), "s", "IJ standard errors")
    t, _ = _best(lambda: cause_specific_cox(f"los_to_home ~ {rhs}", dd, "los_to_home_event", cluster="hospital_id"))
    row(f"cause-specific Cox, {n:,} patients, 9 columns, cluster-robust", "wall (best of 3)", round(t, 3), "s")
    t, fg = _best(lambda: fine_gray(f"los_to_home ~ {rhs}", dd, "los_to_home_event", cluster="hospital_id"))
    row(f"Fine-Gray, {n:,} patients ({fg.extra['expanded_rows']:,} expanded rows), cluster-robust", "wall (best of 3)", round(t, 3), "s")
    if shutil.which("Rscript"):
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "d.csv"
            d.to_csv(csv, index=False)
            script = Path(tmp) / "b.R"
            script.write_text(R_SCRIPT)
            try:
                outp = subprocess.run(["Rscript", str(script), str(csv)], capture_output=True, text=True, timeout=600, check=True).stdout
                r = json.loads(outp.strip().splitlines()[-1])
                row("R survival::coxph(cluster=) same rows", "wall (mean of 3)", round(r["cs"], 3), "s", "time inside R")
                row("R survival::finegray + coxph(weights, cluster=) same rows", "wall (mean of 3)", round(r["fg"], 3), "s", "time inside R")
            except (subprocess.SubprocessError, ValueError, IndexError) as e:
                row("R survival reference", "error", 0, "", str(e)[:80])
    t, _ = _best(lambda: trend_table(dd.assign(death_30d=dd.death_30d.astype(float)), "fiscal_year", ["death_30d"], ["postop_los"]))
    row(f"trend tests by fiscal year, {n:,} patients (CA + JT with ties)", "wall (best of 3)", round(t, 3), "s")
    t, _ = _best(lambda: risk_standardized_rates("death_30d ~ age + C(sex) + emergency + C(primary_site)",
                                                 dd.assign(death_30d=dd.death_30d.astype(float)), "hospital_id"))
    row(f"profiling (case-mix logit + exact funnel), {n:,} patients, 250 hospitals", "wall (best of 3)", round(t, 3), "s")
    t0 = time.perf_counter()
    res = run_analyses(SPEC, d, show_progress=False)
    total = time.perf_counter() - t0
    per_model = {}
    for k, v in res.meta["analysis_seconds"].items():
        per_model[k.split()[-1]] = per_model.get(k.split()[-1], 0.0) + v
    row(f"run_analyses, {n:,} patients, 2 outcomes + LOS, 3 models, all sections", "wall", round(total, 2), "s",
        f"{len(res.table):,} rows, {len(res.failures)} failed; by model: " +
        ", ".join(f"{k} {v:.1f}s" for k, v in sorted(per_model.items(), key=lambda x: -x[1])))
    return rows


if __name__ == "__main__":
    print_rows(run())
