"""Benchmark: flagship cohort extraction on the synthetic database.

Cases, each in its own process (peak RSS by /usr/bin/time), each run several times in that
process: the first run is reported as 'cold', the median of the others as the time (warm), with
its process CPU time; imports and the connection or Spark session start-up are timed apart.
``engine_duckdb`` (hospstudy's Ibis engine, validation skipped), ``hand_sql`` (the same logic as
one hand-written DuckDB query, bench/cohort_baseline.sql), ``pandas`` (bench/cohort_pandas.py),
``engine_spark`` (Spark local[2]). The three baselines' rows are compared with the engine's,
column by column.

The comparison with the hand SQL is stated three ways: like for like (the engine's runs without
its attrition stage vs the hand-written analytic query: the analytic dataset alone, which is all
pandas computes too), full (the whole engine vs the hand-written analytic query plus a
hand-written attrition query, bench/cohort_baseline_attrition.sql, whose counts are checked
against the engine's) and strictest (the whole engine vs the analytic query alone).

Databases are generated with ``hospstudy synth`` into $HOSPSTUDY_BENCH_DATA (default
/tmp/hospstudy_bench), in a folder named by the scale and a hash of the generator's source
(a database of an older generator is never reused). Scale 10 (about 17M admissions) runs only
with BENCH_FULL=1 (or HOSPSTUDY_BENCH_SCALE10=1).

Run alone: ``python bench/bench_cohort.py`` prints the rows as a markdown table.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STUDY = ROOT / "studies" / "spinal_metastasis.toml"
PY = sys.executable


REPEATS = {"engine_duckdb": 5, "hand_sql": 5, "pandas": 2, "engine_spark": 2}


def _generator_key() -> str:
    """A hash of the synthetic generator's source: a database made by another version of the
    generator is not reused (its counts would not match the study's targets)."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted((ROOT / "src" / "hospstudy" / "data" / "synth").glob("*.py")) + [ROOT / "src" / "hospstudy" / "data" / "schema.py"]:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:10]


def _database(scale: float) -> Path:
    base = Path(os.environ.get("HOSPSTUDY_BENCH_DATA", "/tmp/hospstudy_bench"))
    path = base / f"synth_s{scale:g}_{_generator_key()}"
    if not (path / "admissions").exists() and not (path / "admissions.parquet").exists():
        base.mkdir(parents=True, exist_ok=True)
        subprocess.run([PY, "-m", "hospstudy.cli", "synth", "--out", str(path), "--scale", str(scale), "--overwrite"],
                       check=True, cwd=ROOT)
    return path


def _case(case: str, data: Path, out: Path, repeats: int) -> dict:
    """Run one case ``repeats`` times in this process (called by the child); writes its rows
    to ``out``. Import and connection (or Spark session) set-up are timed apart from the
    query work; the first run is 'cold', the median of the others 'warm'."""
    t0 = time.perf_counter()
    info: dict = {"runs": [], "cpu": []}
    spark = None
    if case in ("engine_duckdb", "engine_spark"):
        import ibis  # noqa: F401

        from hospstudy import Study

        study = Study.load(STUDY)
        info["import_seconds"] = time.perf_counter() - t0
        if case == "engine_spark":
            from hospstudy.cohort.engine import spark_session

            s0 = time.perf_counter()
            spark = spark_session("local[2]")
            info["setup_seconds"] = time.perf_counter() - s0
    elif case == "hand_sql":
        import duckdb

        info["import_seconds"] = time.perf_counter() - t0
        sql = (HERE / "cohort_baseline.sql").read_text().replace("{root}", str(data))
        sql_attrition = (HERE / "cohort_baseline_attrition.sql").read_text().replace("{root}", str(data))
    elif case == "pandas":
        sys.path.insert(0, str(HERE))
        from cohort_pandas import build

        info["import_seconds"] = time.perf_counter() - t0
    else:
        raise SystemExit(f"unknown case {case}")
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        if case in ("engine_duckdb", "engine_spark"):
            r = study.build_cohort(data, engine=case.split("_")[1], spark=spark, validate=False)
            frame = r.analytic
            info.setdefault("timings", []).append(r.timings)
            attrition = r.attrition
        elif case == "hand_sql":
            con = duckdb.connect()
            frame = con.sql(sql).df()
            # the attrition, hand-written too, timed apart (the like-for-like comparison
            # leaves it out on both sides)
            a, ac = time.perf_counter(), time.process_time()
            attrition = _hand_attrition(con.sql(sql_attrition).df())
            info.setdefault("attrition_runs", []).append(time.perf_counter() - a)
            info.setdefault("attrition_cpu", []).append(time.process_time() - ac)
            con.close()
        else:
            frame = build(data, ROOT / "studies" / "codelists" / "charlson_quan2005.csv")
        info["runs"].append(time.perf_counter() - w - (info["attrition_runs"][-1] if case == "hand_sql" else 0.0))
        info["cpu"].append(time.process_time() - c - (info["attrition_cpu"][-1] if case == "hand_sql" else 0.0))
    info["rows"] = len(frame)
    frame.to_parquet(out)
    if case in ("engine_duckdb", "hand_sql"):
        attrition[["step", "admissions", "patients", "admissions_removed", "patients_removed"]].to_csv(
            out.with_suffix(".attrition.csv"), index=False)
    return info


def _hand_attrition(counts):
    """The attrition table from the hand-written query's (unit, level, n) rows: step 0 is the
    database, steps 1-6 the flagship's, level 7 the cohort."""
    import pandas as pd

    removed = {(u, int(lv)): int(n) for u, lv, n in counts.itertuples(index=False)}
    total_a = sum(n for (u, _), n in removed.items() if u == "admissions")
    total_p = sum(n for (u, _), n in removed.items() if u == "patients")
    rows, a, p = [dict(step=0, admissions=total_a, patients=total_p, admissions_removed=0, patients_removed=0)], total_a, total_p
    for k in range(1, 7):
        ra, rp = removed.get(("admissions", k), 0), removed.get(("patients", k), 0)
        a, p = a - ra, p - rp
        rows.append(dict(step=k, admissions=a, patients=p, admissions_removed=ra, patients_removed=rp))
    return pd.DataFrame(rows)


def _warm(runs: list) -> list:
    """The warm runs: all but the first (the cold one), or the only run there is."""
    return runs[1:] or runs


def _run_child(case: str, data: Path, tmp: Path) -> dict:
    out = tmp / f"{case}.parquet"
    res = tmp / f"{case}.json"
    cmd = ["/usr/bin/time", "-f", "%M %e", PY, __file__, "--case", case, "--data", str(data), "--out", str(out),
           "--result", str(res), "--repeats", str(REPEATS[case])]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{p.stderr[-3000:]}")
    maxrss_kb, wall = p.stderr.strip().splitlines()[-1].split()
    info = json.loads(res.read_text())
    info["peak_mib"] = int(maxrss_kb) / 1024
    info["process_seconds"] = float(wall)
    info["frame"] = out
    info["cold"] = info["runs"][0]
    warm = _warm(info["runs"])
    info["seconds"] = statistics.median(warm)
    info["cpu_seconds"] = statistics.median(_warm(info["cpu"]))
    if "attrition_runs" in info:
        # the hand-written analytic query plus the hand-written attrition query, per warm run
        info["with_attrition"] = statistics.median(_warm([r + a for r, a in zip(info["runs"], info["attrition_runs"])]))
        info["attrition_seconds"] = statistics.median(_warm(info["attrition_runs"]))
    if "timings" in info:
        stages = _warm(info["timings"])
        info["stages"] = {k: statistics.median(t[k] for t in stages) for k in stages[0]}
        # the analytic dataset alone (what the hand SQL and pandas compute): each warm run
        # without its attrition stage
        info["no_attrition"] = statistics.median(r - t.get("attrition", 0.0) for r, t in zip(warm, stages))
    return info


def _agree_attrition(ref_path: Path, other_path: Path) -> str:
    """'identical' when the two attrition tables (written beside the rows) have the same counts."""
    import pandas as pd

    a = pd.read_csv(ref_path.with_suffix(".attrition.csv"))
    b = pd.read_csv(other_path.with_suffix(".attrition.csv"))
    return "identical" if a.equals(b) else "differs:\n" + a.compare(b).to_string()


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
    note_machine = f"{platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}"
    full = os.environ.get("HOSPSTUDY_BENCH_SCALE10") == "1" or os.environ.get("BENCH_FULL") == "1"
    scales = [1.0] + ([10.0] if full else [])
    engine_seconds = {}
    for scale in scales:
        data = _database(scale)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            cases = ["engine_duckdb", "hand_sql", "pandas", "engine_spark"] if scale == 1.0 else ["engine_duckdb", "hand_sql"]
            res = {case: _run_child(case, data, tmp) for case in cases}
            eng = res["engine_duckdb"]
            engine_seconds[scale] = eng["seconds"]
            for case, r in res.items():
                agree = "reference" if case == "engine_duckdb" else _agree(eng["frame"], r["frame"])
                warm = f"median of {len(r['runs']) - 1} warm runs" if len(r["runs"]) > 1 else "one run"
                extra = f"; {warm}, first run {r['cold']:.1f} s; CPU {r['cpu_seconds']:.1f} s"
                extra += f"; import {r['import_seconds']:.1f} s (not included)"
                if "setup_seconds" in r:
                    extra += f"; Spark session start {r['setup_seconds']:.1f} s (not included)"
                if "stages" in r:
                    extra += "; stages " + ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items() if v > 0.005)
                db = f"{data.name}"
                rows.append(dict(area="cohort", case=f"scale {scale:g}: {case}", metric="time", value=round(r["seconds"], 2), unit="s",
                                 note=f"{r['rows']:,} patients ({db}); rows vs engine: {agree}{extra}; {note_machine}"))
                if "with_attrition" in r:
                    same = _agree_attrition(eng["frame"], r["frame"])
                    rows.append(dict(area="cohort", case=f"scale {scale:g}: {case} with attrition", metric="time",
                                     value=round(r["with_attrition"], 2), unit="s",
                                     note=f"the same warm runs plus the hand-written attrition query (bench/cohort_baseline_attrition.sql, "
                                          f"{r['attrition_seconds']:.2f} s alone); attrition vs engine: {same}"))
                if "no_attrition" in r:
                    rows.append(dict(area="cohort", case=f"scale {scale:g}: {case}, analytic dataset alone", metric="time",
                                     value=round(r["no_attrition"], 2), unit="s",
                                     note="the same warm runs without the attrition stage (what the hand SQL and pandas compute)"))
                rows.append(dict(area="cohort", case=f"scale {scale:g}: {case}", metric="peak memory", value=round(r["peak_mib"]), unit="MiB",
                                 note="peak RSS of the Python process (with its start-up)"
                                 + ("; the Spark JVM (4 GB driver) is a separate process, not counted" if case == "engine_spark" else "")))
            base = res["hand_sql"]["seconds"]
            rows.append(dict(area="cohort", case=f"scale {scale:g}: engine / hand SQL (like for like)", metric="ratio",
                             value=round(eng["no_attrition"] / base, 2), unit="x",
                             note="goal <= 1.5; the analytic dataset alone: engine without its attrition stage vs the one query"))
            rows.append(dict(area="cohort", case=f"scale {scale:g}: engine / hand SQL (full, both with attrition)", metric="ratio",
                             value=round(eng["seconds"] / res["hand_sql"]["with_attrition"], 2), unit="x",
                             note="goal <= 1.5; the whole engine vs the hand-written analytic query plus the hand-written attrition query"))
            rows.append(dict(area="cohort", case=f"scale {scale:g}: engine / hand SQL analytic query alone", metric="ratio",
                             value=round(eng["seconds"] / base, 2), unit="x",
                             note="the whole engine (with its attrition: every admission and patient of the database) vs the analytic query alone; "
                                  "the strictest reading"))
            rows.append(dict(area="cohort", case=f"scale {scale:g}: engine / hand SQL (CPU)", metric="ratio",
                             value=round(eng["cpu_seconds"] / res["hand_sql"]["cpu_seconds"], 2), unit="x",
                             note="process CPU seconds, full engine; steadier than wall time on a shared machine"))
            if "pandas" in res:
                rows.append(dict(area="cohort", case=f"scale {scale:g}: pandas / engine (like for like)", metric="ratio",
                                 value=round(res["pandas"]["seconds"] / eng["no_attrition"], 2), unit="x",
                                 note="goal >= 10; pandas computes no attrition"))
                rows.append(dict(area="cohort", case=f"scale {scale:g}: pandas / engine (full)", metric="ratio",
                                 value=round(res["pandas"]["seconds"] / eng["seconds"], 2), unit="x", note="goal >= 10"))
            if "engine_spark" in res:
                rows.append(dict(area="cohort", case=f"scale {scale:g}: Spark / DuckDB engine", metric="ratio",
                                 value=round(res["engine_spark"]["seconds"] / eng["seconds"], 2), unit="x", note="reported, no goal"))
    if len(engine_seconds) == 2:
        rows.append(dict(area="cohort", case="engine scale 10 / scale 1", metric="ratio",
                         value=round(engine_seconds[10.0] / engine_seconds[1.0], 2), unit="x",
                         note="goal: linear (10x the data, <= 10x the time); fixed costs (compiling, small queries) weigh more at scale 1"))
    return rows


def _markdown(rows) -> str:
    head = "| area | case | metric | value | unit | note |\n|---|---|---|---|---|---|\n"
    return head + "\n".join(f"| {r['area']} | {r['case']} | {r['metric']} | {r['value']} | {r['unit']} | {r['note']} |" for r in rows)


if __name__ == "__main__":
    if "--case" in sys.argv:
        args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
        info = _case(args["--case"], Path(args["--data"]), Path(args["--out"]), int(args.get("--repeats", 1)))
        Path(args["--result"]).write_text(json.dumps(info, default=float))
    else:
        print(_markdown(run()))
