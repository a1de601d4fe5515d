"""Spark beyond local mode: where the cohort runs (options, environment, the study's [engine]
section), unreachable masters and servers, cluster paths, and the same study on a real local
standalone cluster (master + two workers) and through Spark Connect, with analytic datasets
identical to DuckDB's on the hand-checked tiny database and a small synthetic one.

The cluster is started once for the session by tools/spark_cluster.py (free ports, 127.0.0.1
only, small memory) and stopped at the end; its tests skip when Java is missing. Each Spark
build runs `hospstudy cohort` in a subprocess: a Spark Connect session changes process-wide
state (SPARK_CONNECT_MODE_ENABLED) and one process holds one Spark driver.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hospstudy import Study
from hospstudy.cohort.spec import EngineSpec, engine_settings, parse_spark_conf, resolve_engine
from hospstudy.errors import InputError, StudyFileError
from test_cohort_tinydb import EXPECTED, write_tiny_db

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = ROOT / "studies" / "spinal_metastasis.toml"
HOSPSTUDY = [sys.executable, "-m", "hospstudy.cli"]
# a hang guard for the subprocesses, not a timing assertion
GUARD = 900


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "HOSPSTUDY_SPARK_MASTER", "SPARK_CONNECT_MODE_ENABLED")}
    env.update(COLUMNS="200", **extra)
    return env


def cohort_cli(*args, env=None, timeout=GUARD) -> subprocess.CompletedProcess:
    return subprocess.run([*HOSPSTUDY, "cohort", str(FLAGSHIP), *map(str, args)], capture_output=True, text=True,
                          env=env or _env(), timeout=timeout, cwd=ROOT)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- where the cohort runs: no Java needed ---------------------------------------------------

def test_command_line_over_environment_over_study_file():
    file = EngineSpec(name="spark", spark_master="spark://127.0.0.1:7077", spark_conf={"spark.executor.memory": "2g"})
    assert resolve_engine(file, environ={}).spark_master == "spark://127.0.0.1:7077"
    env = {"SPARK_REMOTE": "sc://127.0.0.1:15002"}
    got = resolve_engine(file, environ=env)
    assert (got.spark_remote, got.spark_master) == ("sc://127.0.0.1:15002", None)
    got = resolve_engine(file, spark_master="local[1]", spark_conf={"spark.cores.max": "1"}, environ=env)
    assert (got.name, got.spark_master, got.spark_remote) == ("spark", "local[1]", None)
    assert got.spark_conf == {"spark.executor.memory": "2g", "spark.cores.max": "1"}
    assert resolve_engine(file, environ={"HOSPSTUDY_SPARK_MASTER": "yarn"}).spark_master == "yarn"
    # the environment says where Spark is, never that Spark is the engine
    assert resolve_engine(EngineSpec(), environ=env).name == "duckdb"
    assert resolve_engine(EngineSpec(), spark_remote="sc://h:1", environ={}).name == "spark"
    assert resolve_engine(file, engine="duckdb", environ={}).where == "duckdb"


@pytest.mark.parametrize("kwargs, message", [
    (dict(engine="duckdb", spark_master="local[2]"), "apply to --engine spark"),
    (dict(spark_master="local[2]", spark_remote="sc://h:1"), "not both"),
    (dict(spark_master="spark:/oops"), "--spark-master 'spark:/oops'"),
    (dict(spark_remote="http://h:1"), "--spark-remote 'http://h:1'"),
    (dict(engine="sparks"), "--engine must be one of"),
])
def test_bad_engine_options(kwargs, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        resolve_engine(EngineSpec(), environ={}, **kwargs)


def test_bad_environment_names_the_variable():
    with pytest.raises(InputError, match="SPARK_REMOTE 'localhost:15002'"):
        resolve_engine(EngineSpec(name="spark"), environ={"SPARK_REMOTE": "localhost:15002"})


def test_spark_conf_pairs():
    assert parse_spark_conf(["spark.executor.memory=8g", " spark.sql.shuffle.partitions = 200"]) == {
        "spark.executor.memory": "8g", "spark.sql.shuffle.partitions": "200"}
    for bad in ("spark.executor.memory", "=8g", "executor.memory=8g"):
        with pytest.raises(InputError, match="--spark-conf"):
            parse_spark_conf([bad])


def test_engine_section_of_the_study_file(tmp_path):
    text = FLAGSHIP.read_text()
    good = tmp_path / "good.toml"
    good.write_text(text + '\n[engine]\nname = "spark"\nspark_remote = "sc://127.0.0.1:15002"\n'
                    'spark_conf = {"spark.sql.shuffle.partitions" = 4}\nduckdb_memory_limit = "6GB"\n')
    shutil.copytree(FLAGSHIP.parent / "codelists", tmp_path / "codelists")
    study = Study.load(good)
    assert (study.engine.name, study.engine.spark_remote, study.engine.spark_conf) == (
        "spark", "sc://127.0.0.1:15002", {"spark.sql.shuffle.partitions": 4})
    bad = tmp_path / "bad.toml"
    bad.write_text(text + '\n[engine]\nname = "spork"\nspark_master = "spark:/x"\nduckdb_memory_limit = "lots"\nthreads = 2\n')
    with pytest.raises(StudyFileError) as e:
        Study.load(bad)
    wheres = sorted(p.split(":")[0] for p in e.value.problems)
    assert wheres == ["engine.duckdb_memory_limit", "engine.name", "engine.spark_master", "engine.threads"], e.value.problems
    with pytest.raises(StudyFileError, match="not both"):
        engine_settings({"engine": {"spark_master": "local[2]", "spark_remote": "sc://h:1"}})


def test_duckdb_memory_limit_and_spill_folder(tmp_path):
    from hospstudy.cohort.engine import connect

    con = connect("duckdb", settings=EngineSpec(duckdb_memory_limit="300MB", duckdb_temp_directory=str(tmp_path / "spill"),
                                                duckdb_threads=1))
    got = dict(con.con.sql("select name, value from duckdb_settings() where name in "
                           "('memory_limit', 'temp_directory', 'threads')").fetchall())
    assert got["memory_limit"].startswith(("286.1", "300")) and got["threads"] == "1"
    assert got["temp_directory"] == str(tmp_path / "spill") and (tmp_path / "spill").is_dir()


# ---- bad input: one line naming the URL, exit 2, no JVM stack trace ---------------------------

@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory):
    return write_tiny_db(tmp_path_factory.mktemp("tinydb") / "db")


@pytest.mark.parametrize("option, url", [
    ("--spark-master", "spark://127.0.0.1:{port}"),
    ("--spark-remote", "sc://127.0.0.1:{port}"),
])
def test_unreachable_master_or_server(tiny_db, tmp_path, option, url):
    url = url.format(port=_closed_port())
    r = cohort_cli("--data", tiny_db, "--out", tmp_path / "out", option, url, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and url in lines[0] and "not reachable" in lines[0], lines
    assert "Traceback" not in r.stderr and "at org.apache" not in r.stderr


def test_server_that_never_answers(tiny_db, tmp_path):
    """A port that accepts connections but is no Spark Connect server: the study file's
    [engine] connect_timeout bounds the wait."""
    pytest.importorskip("grpc")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.5)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    url = f"sc://127.0.0.1:{srv.getsockname()[1]}"
    study = tmp_path / "study.toml"
    study.write_text(FLAGSHIP.read_text() + f'\n[engine]\nname = "spark"\nspark_remote = "{url}"\nconnect_timeout = 3\n')
    shutil.copytree(FLAGSHIP.parent / "codelists", tmp_path / "codelists")
    try:
        r = subprocess.run([*HOSPSTUDY, "cohort", str(study), "--data", str(tiny_db), "--out", str(tmp_path / "out")],
                           capture_output=True, text=True, env=_env(), timeout=120, cwd=ROOT)
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        srv.close()
    assert r.returncode == 2, r.stdout + r.stderr
    out = (r.stdout + r.stderr).strip()
    assert url in out and "Traceback" not in out, out


def test_duckdb_refuses_a_cluster_path(tmp_path):
    r = cohort_cli("--data", "s3a://bucket/dpc", "--out", tmp_path / "out", timeout=120)
    assert r.returncode == 2
    assert "s3a://bucket/dpc: DuckDB reads a local database folder" in r.stderr + r.stdout


def test_run_on_duckdb_refuses_a_cluster_path(tmp_path):
    r = subprocess.run([*HOSPSTUDY, "run", str(FLAGSHIP), "--data", "s3a://bucket/dpc", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=_env(), timeout=120, cwd=ROOT)
    text = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2 and "s3a://bucket/dpc: DuckDB reads a local database folder" in text, text
    assert "Traceback" not in text and not (tmp_path / "o").exists()


def test_run_takes_the_same_options(tiny_db, tmp_path):
    r = subprocess.run([*HOSPSTUDY, "run", str(FLAGSHIP), "--data", str(tiny_db), "--out", str(tmp_path / "o"),
                        "--engine", "duckdb", "--spark-master", "local[2]"], capture_output=True, text=True,
                       env=_env(), timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "apply to --engine spark" in r.stdout + r.stderr


# ---- the same study on a standalone cluster and through Spark Connect -------------------------

def _load_tool():
    spec = importlib.util.spec_from_file_location("spark_cluster_tool", ROOT / "tools" / "spark_cluster.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("pyspark")
    pytest.importorskip("grpc")
    if shutil.which("java") is None:
        pytest.skip("the local Spark cluster needs Java (17)")
    tool = _load_tool()
    state_dir = tmp_path_factory.mktemp("spark-cluster")
    state = tool.start(state_dir, workers=2, worker_cores=1, worker_memory="1g", executor_memory="512m",
                       connect_cores=1, master_port=None, connect_port=None)
    yield state
    stopped = tool.stop(state_dir)
    assert set(stopped) == {"master", "worker1", "worker2", "connect"}


@pytest.fixture(scope="module")
def small_synth(tmp_path_factory):
    from hospstudy.data import synth

    out = tmp_path_factory.mktemp("synth") / "db"
    synth.generate(out, seed=7, scale=0.01, overwrite=True)
    return out


def _duckdb(db, out):
    r = Study.load(FLAGSHIP).build_cohort(db, engine="duckdb", validate=False)
    r.write(out)
    return out


# the driver of a --spark-master application: small, so it fits beside the Connect server's
# executor on the two 1-core, 1 GB workers
APP_CONF = ["--spark-conf", "spark.executor.memory=512m", "--spark-conf", "spark.driver.memory=1g",
            "--spark-conf", "spark.cores.max=1"]


def _same(a: Path, b: Path):
    ta, tb = pq.read_table(a / "private" / "analytic.parquet"), pq.read_table(b / "private" / "analytic.parquet")
    assert ta.schema == tb.schema
    assert ta.equals(tb), (ta.to_pandas().compare(tb.to_pandas()) if ta.num_rows == tb.num_rows else (ta.num_rows, tb.num_rows))
    assert (a / "private" / "attrition.csv").read_text() == (b / "private" / "attrition.csv").read_text()
    return ta


@pytest.mark.spark
@pytest.mark.parametrize("where", ["standalone", "connect"])
def test_small_synthetic_database_on_the_cluster(cluster, small_synth, tmp_path, where):
    ref = _duckdb(small_synth, tmp_path / "duckdb")
    opts = ["--spark-master", cluster["master"], *APP_CONF] if where == "standalone" else ["--spark-remote", cluster["remote"]]
    r = cohort_cli("--data", small_synth, "--out", tmp_path / where, "--skip-validation", *opts)
    assert r.returncode == 0, r.stdout + r.stderr
    url = cluster["master"] if where == "standalone" else cluster["remote"]
    assert f"(spark {url})" in " ".join((r.stdout + r.stderr).split())
    t = _same(ref, tmp_path / where)
    assert t.num_rows > 50


@pytest.mark.spark
def test_cluster_path_and_a_path_the_cluster_cannot_see(cluster, tiny_db, tmp_path):
    """A file:// URI is read where Spark runs (validation skipped, with a note); a path the
    server cannot see is named, exit 2."""
    ref = _duckdb(tiny_db, tmp_path / "duckdb")
    uri = Path(tiny_db).resolve().as_uri()
    env = _env(SPARK_REMOTE=cluster["remote"])
    r = cohort_cli("--data", uri, "--out", tmp_path / "uri", "--engine", "spark", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    text = " ".join((r.stdout + r.stderr).split())
    assert "validation skipped" in text and f"(spark {cluster['remote']})" in text, text
    t = _same(ref, tmp_path / "uri")
    assert sorted(t.column("patient_id").to_pylist()) == sorted(EXPECTED)
    missing = tmp_path / "nowhere"
    r = cohort_cli("--data", missing, "--out", tmp_path / "o2", "--engine", "spark", env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    text = " ".join((r.stdout + r.stderr).split())
    assert f"the Spark cluster cannot see {missing}/facilities" in text and "Traceback" not in text, text


def run_cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*HOSPSTUDY, "run", str(FLAGSHIP), *map(str, args)], capture_output=True, text=True,
                          env=env or _env(), timeout=GUARD, cwd=ROOT)


@pytest.mark.spark
def test_whole_run_on_the_standalone_cluster(cluster, tiny_db, tmp_path):
    """`hospstudy run --spark-master spark://...`: the cohort on the cluster, the rest here."""
    ref = _duckdb(tiny_db, tmp_path / "duckdb")
    r = run_cli("--data", tiny_db, "--out", tmp_path / "run", "--spark-master", cluster["master"], *APP_CONF)
    assert r.returncode == 0, r.stdout + r.stderr
    t = _same(ref, tmp_path / "run")
    assert sorted(t.column("patient_id").to_pylist()) == sorted(EXPECTED)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["engine"] == "spark" and cluster["master"] in info["engine_where"]
    assert info["input_hashes"]  # a local folder is hashed as with DuckDB
    assert (tmp_path / "run" / "report.html").is_file()


@pytest.mark.spark
def test_whole_run_on_a_cluster_path(cluster, tiny_db, tmp_path):
    """`hospstudy run --data file:///...` through Spark Connect: not hashed or validated here
    (said so, and in the report's appendix), the cohort rebuilt on every run, the analyses
    reused when it comes back the same."""
    ref = _duckdb(tiny_db, tmp_path / "duckdb")
    uri = Path(tiny_db).resolve().as_uri()
    out = tmp_path / "uri"
    r = run_cli("--data", uri, "--out", out, "--spark-remote", cluster["remote"])
    text = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 0, text
    assert "is a cluster path: its files are not hashed or validated here" in text
    assert "validate (skipped" in text
    _same(ref, out)
    info = json.loads((out / "run.json").read_text())
    assert info["data"] == uri and info["input_hashes"] == {} and uri in info["input_hashes_note"]
    assert "Input file checksums were not recorded: the database (" in (out / "report.html").read_text()
    r = run_cli("--data", uri, "--out", out, "--spark-remote", cluster["remote"])
    assert r.returncode == 0, r.stdout + r.stderr
    stages = json.loads((out / "private" / "cache" / "state.json").read_text())["last_run"]["stages"]
    assert stages["validate"] == "skipped" and stages["cohort"] == "ran" and stages["analyses"] == "cached", stages
