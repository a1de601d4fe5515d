"""Benchmark: growth with the size of the database, up to the nationwide size (scale 40), and
Spark on a local standalone cluster beside DuckDB.

The synthetic database of each scale is generated once into bench/_work/synth_sX (git-ignored)
by bench/_scale_gen.py, which records what the generation cost (wall, CPU, peak RSS, disk) in
synth_sX.generate.json; a later run reuses the database and reports that record with its date.
Every measured command runs in its own process, whose wall time, CPU time (user + system) and
peak RSS come from ``os.wait4`` (that process and the children it waited for):

- ``hospstudy cohort`` on DuckDB (validation skipped) with the study's ``[engine]`` section
  setting ``duckdb_memory_limit`` and ``duckdb_temp_directory`` (DuckDB spills there instead
  of failing), at scales 1, 10 and 40: the growth rows;
- ``hospstudy cohort`` on a local standalone Spark cluster (tools/spark_cluster.py: a master
  and two workers on 127.0.0.1) at scale 10, beside DuckDB, identical rows checked;
- ``hospstudy run`` (hash, validate, cohort, analyses, report, check-disclosure) at scale 40.

Default: scale 1 only. BENCH_FULL=1 adds scale 10 and the cluster; BENCH_SCALE40=1 adds scale 40
(about 15 minutes to generate and 8 GB of disk the first time, then the cohort and the whole run).
Rows are also appended to bench/_work/scale_rows.jsonl as they are measured.
Run alone: ``python bench/bench_scale.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import print_rows

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "_work"
PY = sys.executable
AREA = "scale"
MEMORY_LIMIT = os.environ.get("BENCH_DUCKDB_MEMORY", "6GB")
ROWS_LOG = WORK / "scale_rows.jsonl"


def _measure(cmd: list[str], env: dict | None = None, log: Path | None = None) -> dict:
    """Run ``cmd``; its wall time, CPU time and peak RSS (os.wait4), and the load average."""
    log = log or WORK / "last.log"
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {code}; see {log}:\n" + log.read_text()[-2000:])
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mib": ru.ru_maxrss / 1024,
            "load_start": load0, "load_end": os.getloadavg()[0]}


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "HOSPSTUDY_SPARK_MASTER")}
    env["HOSPSTUDY_MEMORY_LIMIT"] = MEMORY_LIMIT  # validation's DuckDB
    env["COLUMNS"] = "200"
    return env


def _database(scale: float) -> tuple[Path, dict]:
    path = WORK / f"synth_s{scale:g}"
    record = Path(str(path) + ".generate.json")
    if not (path / "admissions").is_dir() or not record.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run([PY, str(HERE / "_scale_gen.py"), str(path), str(scale)], check=True, cwd=ROOT,
                       env=dict(_env(), HOSPSTUDY_PROGRESS="0"), stdout=subprocess.DEVNULL)
    return path, json.loads(record.read_text())


def _study() -> Path:
    """The flagship with an [engine] section capping DuckDB's memory and naming its spill folder."""
    WORK.mkdir(parents=True, exist_ok=True)
    src = ROOT / "studies"
    shutil.copytree(src / "codelists", WORK / "codelists", dirs_exist_ok=True)
    spill = WORK / "spill"
    out = WORK / "spinal_metastasis_capped.toml"
    out.write_text((src / "spinal_metastasis.toml").read_text()
                   + f'\n[engine]\nduckdb_memory_limit = "{MEMORY_LIMIT}"\nduckdb_temp_directory = "{spill}"\n')
    return out


def _row(rows, case, metric, value, unit, note="", **extra):
    """One result row (``extra`` keys are for :func:`summary`, not printed)."""
    r = dict(area=AREA, case=case, metric=metric, value=value, unit=unit, note=note, **extra)
    rows.append(r)
    with open(ROWS_LOG, "a") as f:
        f.write(json.dumps(dict(r, measured=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))) + "\n")
    print(f"  {case} | {metric} | {value} {unit}", flush=True)


def _patients(out: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(out / "private" / "analytic.parquet").num_rows


def _cohort(rows, scale, data, study, where="duckdb", extra=()) -> dict:
    out = WORK / f"out_cohort_s{scale:g}_{where}"
    shutil.rmtree(out, ignore_errors=True)
    m = _measure([PY, "-m", "hospstudy.cli", "cohort", str(study), "--data", str(data), "--out", str(out),
                  "--skip-validation", *extra], env=_env(), log=WORK / f"cohort_s{scale:g}_{where}.log")
    m["patients"] = _patients(out)
    m["out"] = out
    case = f"scale {scale:g}: cohort on {where}"
    note = (f"{m['patients']:,} patients; load {m['load_start']:.1f}->{m['load_end']:.1f}; "
            + (f"DuckDB memory_limit {MEMORY_LIMIT}, spill folder bench/_work/spill" if where == "duckdb" else
               "master + 2 workers on 127.0.0.1 (tools/spark_cluster.py); driver in the measured process, executors in the workers' JVMs (not in its peak RSS)"))
    _row(rows, case, "wall time", round(m["wall_s"], 1), "s", note + "; whole command: Python start, engine start, every stage, writing")
    _row(rows, case, "CPU time", round(m["cpu_s"], 1), "s", "user + system of the process (Spark: the driver only)")
    _row(rows, case, "peak RSS", round(m["peak_rss_mib"]), "MiB", "")
    return m


def run() -> list[dict]:
    rows: list[dict] = []
    full = os.environ.get("BENCH_FULL") == "1"
    big = os.environ.get("BENCH_SCALE40") == "1"
    scales = [1.0] + ([10.0] if full or big else []) + ([40.0] if big else [])
    study = _study()
    cohorts: dict[float, dict] = {}
    sizes: dict[float, dict] = {}
    for scale in scales:
        data, gen = _database(scale)
        sizes[scale] = gen
        case = f"scale {scale:g}: synth"
        note = f"measured {gen['measured']} (load {gen.get('load_average_end', 0):.1f} at the end); streams by fiscal year"
        _row(rows, case, "wall time", round(gen["wall_s"], 1), "s", note)
        _row(rows, case, "CPU time", round(gen["cpu_s"], 1), "s", "")
        _row(rows, case, "peak RSS", round(gen["peak_rss_mib"]), "MiB", "goal <= 8 GiB")
        _row(rows, case, "size on disk", round(gen["disk_mib"]), "MiB", "Parquet")
        _row(rows, case, "admissions", gen["admissions"], "rows", f"{gen['billing_lines']:,} billing lines, {gen['diagnoses']:,} diagnoses")
        cohorts[scale] = _cohort(rows, scale, data, study)
    for a, b in ((1.0, 10.0), (10.0, 40.0), (1.0, 40.0)):
        if a in cohorts and b in cohorts:
            k = sizes[b]["admissions"] / sizes[a]["admissions"]
            _row(rows, f"growth scale {a:g} -> {b:g}", "cohort wall time ratio", round(cohorts[b]["wall_s"] / cohorts[a]["wall_s"], 2), "x",
                 f"data {k:.1f}x (admissions); linear = {k:.1f}x")
            _row(rows, f"growth scale {a:g} -> {b:g}", "cohort CPU time ratio", round(cohorts[b]["cpu_s"] / cohorts[a]["cpu_s"], 2), "x", "",
                 data_ratio=k)
            _row(rows, f"growth scale {a:g} -> {b:g}", "cohort peak RSS ratio", round(cohorts[b]["peak_rss_mib"] / cohorts[a]["peak_rss_mib"], 2), "x", "")
    if (full or big) and 10.0 in cohorts and shutil.which("java"):
        _spark_cluster(rows, sizes, cohorts)
    if big:
        try:
            _whole_run(rows, study)
        except RuntimeError as e:  # keep the rows measured so far; say how the whole run ended
            last = [ln for ln in str(e).splitlines() if ln.strip()][-1]
            _row(rows, "scale 40: hospstudy run (whole study)", "failed", 1, "", last[:300])
    return rows


def summary(rows: list[dict]) -> list[str]:
    """The issue's goals against this run's rows."""
    out = []
    run = {r["metric"]: r["value"] for r in rows if r["case"] == "scale 40: hospstudy run (whole study)"}
    if "peak RSS" in run:
        out.append(f"goal (issue 13) scale 40 end to end within 8 GB of RAM: {'met' if run['peak RSS'] <= 8192 else 'not met'} "
                   f"(hospstudy run: {run['wall time']:,} s wall, {run['CPU time']:,} CPU s, peak {run['peak RSS']:,} MiB)")
    elif "failed" in run:
        out.append("goal (issue 13) scale 40 end to end within 8 GB of RAM: not measured (the whole run failed; see its row)")
    growth = [r for r in rows if r["case"].startswith("growth") and r["metric"] == "cohort CPU time ratio"]
    for r in growth:
        out.append(f"growth {r['case'].removeprefix('growth ')}: {r['data_ratio']:.1f}x the data (admissions), {r['value']}x the "
                   f"cohort's CPU time ({'linear or better' if r['value'] <= r['data_ratio'] else 'more than linear'})")
    return out


def _whole_run(rows, study) -> None:
    """``hospstudy run`` at scale 40, the whole study."""
    data, _ = _database(40.0)
    out = WORK / "out_run_s40_whole"
    shutil.rmtree(out, ignore_errors=True)
    m = _measure([PY, "-m", "hospstudy.cli", "run", str(study), "--data", str(data), "--out", str(out)],
                 env=_env(), log=WORK / "run_s40_whole.log")
    state = out / "private" / "cache" / "state.json"
    stages = json.loads(state.read_text()).get("last_run", {}).get("seconds", {}) if state.exists() else {}
    note = f"hash, validate, cohort, analyses, report, check-disclosure; load {m['load_start']:.1f}->{m['load_end']:.1f}"
    _row(rows, "scale 40: hospstudy run (whole study)", "wall time", round(m["wall_s"], 1), "s", note)
    _row(rows, "scale 40: hospstudy run (whole study)", "CPU time", round(m["cpu_s"], 1), "s", "")
    _row(rows, "scale 40: hospstudy run (whole study)", "peak RSS", round(m["peak_rss_mib"]), "MiB", f"goal <= 8 GiB; DuckDB memory_limit {MEMORY_LIMIT}")
    for k, v in stages.items():
        _row(rows, "scale 40: hospstudy run (whole study)", f"stage {k}", v, "s", "")


def _spark_cluster(rows, sizes, cohorts) -> None:
    import importlib.util

    import pyarrow.parquet as pq

    spec = importlib.util.spec_from_file_location("spark_cluster_tool", ROOT / "tools" / "spark_cluster.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    state_dir = WORK / "spark-cluster"
    tool.stop(state_dir)
    t0 = time.perf_counter()
    st = tool.start(state_dir, workers=2, worker_cores=1, worker_memory="3g", connect=False, master_port=None)
    _row(rows, "scale 10: standalone cluster", "start-up", round(time.perf_counter() - t0, 1), "s",
         "master + 2 workers (1 core, 3 GB each), until both registered")
    try:
        data, _ = _database(10.0)
        conf = ["--spark-conf", "spark.executor.memory=2g", "--spark-conf", "spark.driver.memory=3g",
                "--spark-conf", "spark.sql.shuffle.partitions=16"]
        m = _cohort(rows, 10.0, data, ROOT / "studies" / "spinal_metastasis.toml", where="spark-standalone",
                    extra=["--spark-master", st["master"], *conf])
        same = pq.read_table(m["out"] / "private" / "analytic.parquet").equals(
            pq.read_table(cohorts[10.0]["out"] / "private" / "analytic.parquet"))
        _row(rows, "scale 10: Spark standalone / DuckDB", "wall time ratio", round(m["wall_s"] / cohorts[10.0]["wall_s"], 2), "x",
             f"same machine, same run; analytic datasets identical: {same}")
    finally:
        tool.stop(state_dir)


if __name__ == "__main__":
    if sys.argv[1:] == ["run40"]:  # the whole study at scale 40 alone
        rows: list[dict] = []
        _whole_run(rows, _study())
        print_rows(rows)
    else:
        print_rows(run())
