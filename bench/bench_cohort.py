"""Benchmark: flagship cohort extraction on the synthetic database.

Cases, each in its own process (wall time and peak RSS by /usr/bin/time):
``engine_duckdb`` (hospstudy's Ibis engine, validation skipped), ``hand_sql`` (the same logic as
one hand-written DuckDB query, bench/cohort_baseline.sql), ``pandas`` (bench/cohort_pandas.py),
``engine_spark`` (Spark local[2], session start-up reported apart). The three baselines'
rows are compared with the engine's, column by column.

Databases are generated with ``hospstudy synth`` into $HOSPSTUDY_BENCH_DATA (default
/tmp/hospstudy_bench) when missing. Scale 10 (about 17M admissions, 10 minutes to generate)
runs only with BENCH_FULL=1 (or HOSPSTUDY_BENCH_SCALE10=1).

Run alone: ``python bench/bench_cohort.py`` prints the rows as a markdown table.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STUDY = ROOT / "studies" / "spinal_metastasis.toml"
PY = sys.executable


def _database(scale: float) -> Path:
    base = Path(os.environ.get("HOSPSTUDY_BENCH_DATA", "/tmp/hospstudy_bench"))
    path = base / f"synth_s{scale:g}"
    if not (path / "admissions").exists() and not (path / "admissions.parquet").exists():
        base.mkdir(parents=True, exist_ok=True)
        subprocess.run([PY, "-m", "hospstudy.cli", "synth", "--out", str(path), "--scale", str(scale), "--overwrite"],
                       check=True, cwd=ROOT)
    return path


def _case(case: str, data: Path, out: Path) -> dict:
    """Run one case in this process (called by the child); writes its rows to ``out``."""
    import pandas as pd

    t0 = time.perf_counter()
    info: dict = {}
    if case == "engine_duckdb":
        from hospstudy.cohort import Study

        r = Study.load(STUDY).build_cohort(data, engine="duckdb", validate=False)
        frame = r.analytic
        info["timings"] = r.timings
    elif case == "engine_spark":
        from hospstudy.cohort import Study
        from hospstudy.cohort.engine import spark_session

        s0 = time.perf_counter()
        spark = spark_session("local[2]")
        info["session_seconds"] = time.perf_counter() - s0
        t0 = time.perf_counter()
        r = Study.load(STUDY).build_cohort(data, engine="spark", spark=spark, validate=False)
        frame = r.analytic
        info["timings"] = r.timings
    elif case == "hand_sql":
        import duckdb

        sql = (HERE / "cohort_baseline.sql").read_text().replace("{root}", str(data))
        frame = duckdb.connect().sql(sql).df()
    elif case == "pandas":
        sys.path.insert(0, str(HERE))
        from cohort_pandas import build

        frame = build(data, ROOT / "studies" / "codelists" / "charlson_quan2005.csv")
    else:
        raise SystemExit(f"unknown case {case}")
    info["seconds"] = time.perf_counter() - t0
    info["rows"] = len(frame)
    frame.to_parquet(out)
    return info


def _run_child(case: str, data: Path, tmp: Path) -> dict:
    out = tmp / f"{case}.parquet"
    res = tmp / f"{case}.json"
    cmd = ["/usr/bin/time", "-f", "%M %e", PY, __file__, "--case", case, "--data", str(data), "--out", str(out), "--result", str(res)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{p.stderr[-3000:]}")
    maxrss_kb, wall = p.stderr.strip().splitlines()[-1].split()
    info = json.loads(res.read_text())
    info["peak_mib"] = int(maxrss_kb) / 1024
    info["process_seconds"] = float(wall)
    info["frame"] = out
    return info


def _agree(ref_path: Path, other_path: Path) -> str:
    """'identical' or the columns that differ (values compared after normalising types)."""
    import numpy as np
    import pandas as pd

    a, b = pd.read_parquet(ref_path), pd.read_parquet(other_path)
    if len(a) != len(b):
        return f"{len(b)} rows vs {len(a)}"
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    bad = []
    for c in a.columns:
        if c not in b.columns:
            if c != "volume_quartile":  # cohort-level, computed after the query
                bad.append(f"{c} missing")
            continue
        x, y = a[c], b[c]
        if c == "surgery_date":
            x, y = pd.to_datetime(x), pd.to_datetime(y)
        if x.dtype.kind == "f" or y.dtype.kind == "f":
            same = np.isclose(x.astype(float), y.astype(float), rtol=1e-12, atol=0, equal_nan=True)
        else:
            same = ((x.astype(object) == y.astype(object)) | (x.isna() & y.isna())).to_numpy()
        if not same.all():
            bad.append(f"{c} ({(~same).sum()})")
    return "identical" if not bad else "differs: " + ", ".join(bad)


def run() -> list[dict]:
    rows = []
    note_machine = f"{platform.node()} {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"
    full = os.environ.get("HOSPSTUDY_BENCH_SCALE10") == "1" or os.environ.get("BENCH_FULL") == "1"
    scales = [1.0] + ([10.0] if full else [])
    for scale in scales:
        data = _database(scale)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            cases = ["engine_duckdb", "hand_sql", "pandas", "engine_spark"] if scale == 1.0 else ["engine_duckdb", "hand_sql"]
            res = {}
            for case in cases:
                # the first run of each case pays the cold file cache; report the second for the engines
                res[case] = _run_child(case, data, tmp)
                if case in ("engine_duckdb", "hand_sql") and scale == 1.0:
                    again = _run_child(case, data, tmp)
                    res[case]["seconds_cold"] = res[case]["seconds"]
                    res[case]["seconds"] = min(res[case]["seconds"], again["seconds"])
            eng = res["engine_duckdb"]
            for case, r in res.items():
                agree = "reference" if case == "engine_duckdb" else _agree(eng["frame"], r["frame"])
                extra = ""
                if "timings" in r:
                    extra = "; stages " + ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items() if v > 0.05)
                if "session_seconds" in r:
                    extra += f"; Spark session start {r['session_seconds']:.1f} s (not included)"
                if "seconds_cold" in r:
                    extra += f"; first run {r['seconds_cold']:.1f} s"
                rows.append(dict(area="cohort", case=f"scale {scale:g}: {case}", metric="time", value=round(r["seconds"], 2), unit="s",
                                 note=f"{r['rows']:,} patients; rows vs engine: {agree}{extra}; {note_machine}"))
                rows.append(dict(area="cohort", case=f"scale {scale:g}: {case}", metric="peak memory", value=round(r["peak_mib"]), unit="MiB",
                                 note="peak RSS of the Python process (with its start-up)"
                                 + ("; the Spark JVM (4 GB driver) is a separate process, not counted" if case == "engine_spark" else "")))
            base = res["hand_sql"]["seconds"]
            rows.append(dict(area="cohort", case=f"scale {scale:g}: engine / hand SQL", metric="ratio",
                             value=round(eng["seconds"] / base, 2), unit="x", note="goal <= 1.5"))
            if "pandas" in res:
                rows.append(dict(area="cohort", case=f"scale {scale:g}: pandas / engine", metric="ratio",
                                 value=round(res["pandas"]["seconds"] / eng["seconds"], 2), unit="x", note="goal >= 10"))
            if "engine_spark" in res:
                rows.append(dict(area="cohort", case=f"scale {scale:g}: Spark / DuckDB engine", metric="ratio",
                                 value=round(res["engine_spark"]["seconds"] / eng["seconds"], 2), unit="x", note="reported, no goal"))
    return rows


def _markdown(rows) -> str:
    head = "| area | case | metric | value | unit | note |\n|---|---|---|---|---|---|\n"
    return head + "\n".join(f"| {r['area']} | {r['case']} | {r['metric']} | {r['value']} | {r['unit']} | {r['note']} |" for r in rows)


if __name__ == "__main__":
    if "--case" in sys.argv:
        args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
        info = _case(args["--case"], Path(args["--data"]), Path(args["--out"]))
        Path(args["--result"]).write_text(json.dumps(info, default=float))
    else:
        print(_markdown(run()))
