"""Benchmark of `hospstudy synth`: wall time and peak memory at scale 1 (and scale 10 with
BENCH_FULL=1), the raw-file writer (`--format dpc-raw`) at scales 0.1 and 1, and the full-scale calibration check of the cohort figures against
reference/published.toml (computed with hospstudy.data.synth.check, independent of the cohort
engine).

Each generation runs in a fresh subprocess that reports its own peak RSS, so the figures are
those of `hospstudy synth` alone. Run alone: `python bench/bench_synth.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_rows  # bench/ is on sys.path: the script's folder, or run.py puts it there

AREA = "synth"

_CHILD = r"""
import json, resource, sys, time
from hospstudy.data.synth import generate
t0 = time.perf_counter()
s = generate(sys.argv[1], seed=20240601, scale=float(sys.argv[2]), overwrite=True, format=sys.argv[3])
s["wall_s"] = time.perf_counter() - t0
s["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(s))
"""

# figure: (target, unit) from reference/published.toml and the issue
TARGETS = {
    "patients": (10320, "patients"),
    "cancer_center_share": (0.51, "fraction"),
    "mortality_30d": (0.062, "fraction"),
    "in_hospital_mortality": (0.086, "fraction"),
    "discharged_home": (0.584, "fraction"),
    "complications": (0.078, "fraction"),
    "unfavorable_ambulatory": (0.394, "fraction"),
    "median_postop_los": (33, "days"),
    "median_volume_patient_level": (166, "admissions/year"),
    "median_volume_cancer_center_patients": (200, "admissions/year"),
    "non_metastatic_spine_admissions": (473391, "admissions"),
    "hospitals": (1700, "hospitals"),
    "cancer_centers_per_year": (400, "hospitals"),
}


def _generate(out: Path, scale: float, fmt: str = "parquet") -> dict:
    env = dict(os.environ, HOSPSTUDY_PROGRESS="")
    env.pop("HOSPSTUDY_PROGRESS")
    r = subprocess.run([sys.executable, "-c", _CHILD, str(out), str(scale), fmt], capture_output=True, text=True, env=env, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def _du(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def run() -> list[dict]:
    from hospstudy.data.synth import check

    rows: list[dict] = []
    scales = [1.0] + ([10.0] if os.environ.get("BENCH_FULL") == "1" else [])
    tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        for scale in scales:
            out = tmp / f"scale{scale:g}"
            s = _generate(out, scale)
            case = f"generate scale {scale:g}"
            rows += [
                dict(area=AREA, case=case, metric="wall time", value=round(s["wall_s"], 1), unit="s",
                     note="target <= 60 s at scale 1" if scale == 1 else "streams by fiscal year"),
                dict(area=AREA, case=case, metric="peak RSS", value=round(s["peak_rss_mib"]), unit="MiB",
                     note="target <= 4096 MiB" if scale == 1 else "target <= 24 GiB"),
                dict(area=AREA, case=case, metric="admissions", value=s["admissions"], unit="rows", note=""),
                dict(area=AREA, case=case, metric="background admissions", value=s["background_admissions"], unit="rows",
                     note="target >= 1,000,000 x scale"),
                dict(area=AREA, case=case, metric="billing lines", value=s["billing_lines"], unit="rows",
                     note="target >= 20,000,000 x scale"),
                dict(area=AREA, case=case, metric="size on disk", value=round(_du(out)), unit="MiB", note="Parquet, snappy"),
            ]
            if scale == 1.0:
                t0 = time.perf_counter()
                f = check.figures(out)
                rows.append(dict(area=AREA, case="calibration scale 1", metric="check query time",
                                 value=round(time.perf_counter() - t0, 1), unit="s", note="DuckDB SQL, hospstudy.data.synth.check"))
                for name, (target, unit) in TARGETS.items():
                    v = f[name]
                    rows.append(dict(area=AREA, case="calibration scale 1", metric=name,
                                     value=round(v, 4) if isinstance(v, float) else v, unit=unit, note=f"target {target}"))
                for y in (min(f["by_year"]), max(f["by_year"])):
                    g = f["by_year"][y]
                    for k in ("patients", "fusion_share", "in_hospital_death", "median_postop_los"):
                        rows.append(dict(area=AREA, case="calibration scale 1", metric=f"FY{y} {k}",
                                         value=round(g[k], 4), unit="", note="published 877/0.84/0.099/37 (FY2012), 1479/0.87/0.068/30 (FY2020)"))
            shutil.rmtree(out, ignore_errors=True)
        rows += _raw_rows(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _raw_rows(tmp: Path) -> list[dict]:
    """`--format dpc-raw`: the same world as CP932 Form 1 and EF text (streamed by fiscal year)."""
    rows = []
    for scale in (0.1, 1.0):
        out = tmp / f"raw{scale:g}"
        s = _generate(out, scale, "dpc-raw")
        case = f"dpc-raw scale {scale:g}"
        lines = s["form1_lines"] + s["ef_lines"]
        rows += [
            dict(area=AREA, case=case, metric="wall time", value=round(s["wall_s"], 1), unit="s",
                 note="generation included; bounded by streaming one fiscal year and 500,000 EF lines at a time"),
            dict(area=AREA, case=case, metric="peak RSS", value=round(s["peak_rss_mib"]), unit="MiB", note=""),
            dict(area=AREA, case=case, metric="Form 1 lines", value=s["form1_lines"], unit="lines",
                 note=f"{s['ward_level_form1_lines']:,} of them in ward-level forms"),
            dict(area=AREA, case=case, metric="EF lines", value=s["ef_lines"], unit="lines", note="= billing lines"),
            dict(area=AREA, case=case, metric="throughput", value=round(lines / s["wall_s"]), unit="lines/s",
                 note="Form 1 + EF lines over the whole run, generation included"),
            dict(area=AREA, case=case, metric="size on disk", value=round(_du(out)), unit="MiB", note="CP932 text"),
        ]
        shutil.rmtree(out, ignore_errors=True)
    return rows


if __name__ == "__main__":
    print_rows(run())
