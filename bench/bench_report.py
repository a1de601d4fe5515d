"""Benchmark of the report area: `hospstudy demo` from nothing (synthetic database, cohort, all
analyses, report, disclosure check), the cached re-run, and rendering alone.

Issue 5 targets: demo on a fresh checkout <= 60 s wall on 2 cores with peak memory <= 4 GB;
a re-run with cached stages <= 10 s. The demo runs at scale 1 only with BENCH_FULL=1 (it
takes minutes on a shared machine); otherwise at BENCH_REPORT_SCALE (default 0.05).
Run alone: ``python bench/bench_report.py``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from _common import print_rows  # bench/ is on sys.path: the script's folder, or run.py puts it there

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "_work" / "report"


def _hospstudy() -> list[str]:
    exe = Path(sys.executable).parent / "hospstudy"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "hospstudy.cli"]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(cmd: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) of the command, exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-3000:])
    # ru_maxrss of children is the largest child so far: report it only when this one raised it
    return wall, max(peak, before) / 1024, p.returncode


def _render_only(repeat: int = 3) -> tuple[float, float, float]:
    """Best of ``repeat`` renders: wall seconds, CPU seconds (user+sys), and the CPU seconds of
    those spent drawing and saving the figures (matplotlib: PNG + SVG)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_report import STUDY, TRUTH, make_analytic, make_attrition, make_results  # noqa: E402

    from hospstudy.report.html import ReportInputs, published_reference, render_report
    from hospstudy.report.results import Results

    df = make_analytic(n=10_000, hospitals=400)
    inp = ReportInputs(study=STUDY, attrition=make_attrition(len(df), len(df)), analytic=df,
                       results=Results.from_dict(make_results()), truth=TRUTH, published=published_reference())
    from hospstudy.report import figures as F

    spent = [0.0]
    save = F.save

    def timed_save(*a, **k):
        c = _self_cpu()
        try:
            return save(*a, **k)
        finally:
            spent[0] += _self_cpu() - c

    out = WORK / "render"
    shutil.rmtree(out, ignore_errors=True)
    best = (float("inf"), float("inf"), float("inf"))
    F.save = timed_save
    try:
        for _ in range(repeat):
            spent[0] = 0.0
            c0, t0 = _self_cpu(), time.perf_counter()
            render_report(inp, out)
            best = min(best, (_self_cpu() - c0, time.perf_counter() - t0, spent[0]))
    finally:
        F.save = save
    cpu, wall, figs = best
    return wall, cpu, figs


def run() -> list[dict]:
    full = os.environ.get("BENCH_FULL") == "1"
    scale = 1.0 if full else float(os.environ.get("BENCH_REPORT_SCALE", "0.05"))
    data, out = WORK / f"demo_data_{scale:g}", WORK / f"demo_out_{scale:g}"
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    cmd = _hospstudy() + ["demo", "--data", str(data), "--out", str(out), "--scale", str(scale)]
    wall, rss, rc = _timed(cmd)
    note = "fresh: synthetic database, validate, cohort, analyses, report, check-disclosure" + ("" if rc == 0 else f"; exit code {rc}")
    rows.append({"area": "report", "case": f"demo scale {scale:g}", "metric": "wall", "value": round(wall, 1), "unit": "s", "note": note})
    rows.append({"area": "report", "case": f"demo scale {scale:g}", "metric": "peak RSS", "value": round(rss), "unit": "MiB",
                 "note": "largest process (ru_maxrss of children)"})
    state = out / "private" / "cache" / "state.json"
    if state.exists():
        secs = json.loads(state.read_text()).get("last_run", {}).get("seconds", {})
        for stage in ("validate", "cohort", "analyses", "report", "check-disclosure"):
            if stage in secs:
                note = ("first run; the demo validates a database it generated before the run starts, so this "
                        "stage is ~0 and validation is inside the wall time" if stage == "validate" else "first run")
                rows.append({"area": "report", "case": f"demo scale {scale:g}", "metric": f"stage {stage}", "value": secs[stage],
                             "unit": "s", "note": note})
    wall2, _, rc2 = _timed(cmd)
    rows.append({"area": "report", "case": f"demo scale {scale:g} cached", "metric": "wall", "value": round(wall2, 1), "unit": "s",
                 "note": "every stage cached; disclosure check runs" + ("" if rc2 == 0 else f"; exit code {rc2}")})
    c0 = _children_cpu()
    wall3, _, rc3 = _timed(_hospstudy() + ["report", str(out)])
    cpu3 = _children_cpu() - c0
    note = "hospstudy report OUT: the whole process (imports, reading OUT, rendering, disclosure check)" + ("" if rc3 == 0 else f"; exit code {rc3}")
    rows.append({"area": "report", "case": f"re-render demo scale {scale:g}", "metric": "wall", "value": round(wall3, 2), "unit": "s", "note": note})
    rows.append({"area": "report", "case": f"re-render demo scale {scale:g}", "metric": "CPU", "value": round(cpu3, 2), "unit": "s", "note": "user+sys"})
    wall, cpu, figs = _render_only()
    case = "render only (10,000 patients, hand-built results)"
    note = "render_report, best of 3: report.html, 7 figures (SVG+PNG), tables.xlsx"
    rows.append({"area": "report", "case": case, "metric": "wall", "value": round(wall, 2), "unit": "s", "note": note})
    rows.append({"area": "report", "case": case, "metric": "CPU", "value": round(cpu, 2), "unit": "s", "note": "user+sys; " + note})
    rows.append({"area": "report", "case": case, "metric": "CPU in figures", "value": round(figs, 2), "unit": "s",
                 "note": "of which drawing and saving the figures (figures.save)"})
    return rows


if __name__ == "__main__":
    print_rows(run())
