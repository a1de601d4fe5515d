"""A local Spark cluster on this machine: a standalone master, workers and a Spark Connect server.

Everything comes from the pyspark package that `make install-dev` installs (its jars, including
spark-connect, and its bin/spark-class and bin/spark-submit): nothing is downloaded. Every
process binds to 127.0.0.1 (SPARK_LOCAL_IP, the hosts, the Connect server's gRPC address); the
master's and workers' web UIs listen on loopback only, the Connect server's UI is off.

    python tools/spark_cluster.py start    # prints spark://127.0.0.1:7077 and sc://127.0.0.1:15002
    python tools/spark_cluster.py status
    python tools/spark_cluster.py stop

(`make spark-cluster` and `make spark-cluster-stop` run the first and the last.) State, logs and
the worker folders live in --dir (default build/spark-cluster); `stop` ends exactly the
processes `start` recorded there (each started in its own process group, with its executors).

The tests start one with :func:`start` (free ports, small memory) and stop it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT / "build" / "spark-cluster"
LOCAL = "127.0.0.1"
CONNECT_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


class ClusterError(RuntimeError):
    pass


def spark_home() -> Path:
    try:
        import pyspark
    except ImportError:
        raise ClusterError("pyspark is not installed: make install-dev (or pip install 'hospstudy[spark]')") from None
    return Path(pyspark.__file__).resolve().parent


def _free_port() -> int:
    """A free port below the kernel's ephemeral range (32768-60999 on Linux): a port the kernel
    handed out (bind to 0) can be handed out again to the workers' and executors' own random
    ports before the Connect server binds it (seen here: BindException, 'failed after 0
    retries')."""
    import random

    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind((LOCAL, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


def _port(preferred: int | None) -> int:
    """``preferred`` when nothing listens on it, else a free port."""
    if preferred:
        with socket.socket() as s:
            try:
                s.bind((LOCAL, preferred))
                return preferred
            except OSError:
                pass
    return _free_port()


def _open(port: int) -> bool:
    try:
        with socket.create_connection((LOCAL, port), timeout=1):
            return True
    except OSError:
        return False


def _env(home: Path) -> dict:
    env = dict(os.environ)
    for var in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "MASTER"):
        env.pop(var, None)
    env.update(SPARK_HOME=str(home), SPARK_LOCAL_IP=LOCAL, SPARK_PUBLIC_DNS=LOCAL, SPARK_DAEMON_MEMORY="256m",
               PYSPARK_PYTHON=sys.executable)
    return env


def _spawn(cmd: list[str], log: Path, env: dict) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                             start_new_session=True)
    return p.pid


def _wait(what: str, ok, timeout: float, log: Path, pid: int) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ok():
            return
        if not _alive(pid):
            raise ClusterError(f"{what} exited; see {log}:\n" + _tail(log))
        time.sleep(0.5)
    raise ClusterError(f"{what} not ready after {timeout:.0f} s; see {log}:\n" + _tail(log))


def _tail(log: Path, n: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://{LOCAL}:{ui_port}/json/", timeout=2) as r:
            return int(json.load(r).get("aliveworkers", 0))
    except (OSError, ValueError):
        return 0


def start(state_dir: Path | str = DEFAULT_DIR, workers: int = 2, worker_cores: int = 2, worker_memory: str = "2g",
          executor_memory: str = "512m", connect: bool = True, connect_cores: int = 2, connect_driver_memory: str = "1g",
          master_port: int | None = 7077, connect_port: int | None = 15002, timeout: float = 120.0) -> dict:
    """Start a master, ``workers`` workers and (``connect``) a Spark Connect server; returns
    the state written to ``state_dir/cluster.json`` (``master``, ``remote``, pids, logs).
    ``master_port``/``connect_port`` None: any free port. The Connect server takes at most
    ``connect_cores`` cores and ``executor_memory`` per executor, so an application of its own
    (``--spark-master``, executors of 1g by default) finds the rest of ``worker_memory``."""
    state_dir = Path(state_dir)
    if (state_dir / "cluster.json").exists():
        st = json.loads((state_dir / "cluster.json").read_text())
        if any(_alive(p["pid"]) for p in st["processes"]):
            raise ClusterError(f"a cluster recorded in {state_dir} is running ({st['master']}); stop it first")
    home = spark_home()
    env = _env(home)
    logs = state_dir / "logs"
    state: dict = {"dir": str(state_dir), "spark_home": str(home), "processes": []}
    state_dir.mkdir(parents=True, exist_ok=True)

    def record(name, pid, log, **extra):
        state["processes"].append({"name": name, "pid": pid, "log": str(log), **extra})
        (state_dir / "cluster.json").write_text(json.dumps(state, indent=1))

    try:
        mport, mui = _port(master_port), _free_port()
        master = f"spark://{LOCAL}:{mport}"
        state.update(master=master, master_ui=f"http://{LOCAL}:{mui}")
        log = logs / "master.log"
        pid = _spawn([str(home / "bin" / "spark-class"), "org.apache.spark.deploy.master.Master", "--host", LOCAL,
                      "--port", str(mport), "--webui-port", str(mui)], log, env)
        record("master", pid, log)
        _wait(f"the Spark master ({master})", lambda: _open(mport) and _open(mui), timeout, log, pid)
        for i in range(workers):
            log = logs / f"worker{i + 1}.log"
            wdir = state_dir / f"work{i + 1}"
            wdir.mkdir(parents=True, exist_ok=True)
            pid = _spawn([str(home / "bin" / "spark-class"), "org.apache.spark.deploy.worker.Worker", master,
                          "--host", LOCAL, "--cores", str(worker_cores), "--memory", worker_memory,
                          "--webui-port", str(_free_port()), "--work-dir", str(wdir)], log, env)
            record(f"worker{i + 1}", pid, log)
        _wait(f"{workers} worker(s) registering with {master}", lambda: _alive_workers(mui) >= workers, timeout,
              logs / "worker1.log" if workers else logs / "master.log", state["processes"][-1]["pid"])
        if connect:
            cport = _port(connect_port)
            remote = f"sc://{LOCAL}:{cport}"
            log = logs / "connect.log"
            confs = {
                "spark.connect.grpc.binding.address": LOCAL, "spark.connect.grpc.binding.port": str(cport),
                "spark.driver.host": LOCAL, "spark.driver.bindAddress": LOCAL, "spark.ui.enabled": "false",
                "spark.cores.max": str(connect_cores), "spark.executor.cores": "1", "spark.executor.memory": executor_memory,
                "spark.sql.shuffle.partitions": "8", "spark.sql.session.timeZone": "UTC",
            }
            cmd = [str(home / "bin" / "spark-submit"), "--class", CONNECT_CLASS, "--name", "hospstudy Spark Connect server",
                   "--master", master, "--driver-memory", connect_driver_memory]
            for k, v in confs.items():
                cmd += ["--conf", f"{k}={v}"]
            # SPARK_DAEMON_MEMORY would size this driver too (below Spark's minimum)
            pid = _spawn(cmd, log, {k: v for k, v in env.items() if k != "SPARK_DAEMON_MEMORY"})
            record("connect", pid, log)
            state["remote"] = remote
            _wait(f"the Spark Connect server ({remote})", lambda: _open(cport), timeout, log, pid)
        state["executor_memory"] = executor_memory
        (state_dir / "cluster.json").write_text(json.dumps(state, indent=1))
        return state
    except BaseException:
        stop(state_dir)
        raise


def stop(state_dir: Path | str = DEFAULT_DIR, timeout: float = 15.0) -> list[str]:
    """Stop the processes recorded in ``state_dir/cluster.json`` (each with its process group:
    a worker's executors go with it); returns their names."""
    path = Path(state_dir) / "cluster.json"
    if not path.exists():
        return []
    state = json.loads(path.read_text())
    stopped = []
    # the Connect server and the workers first, the master last
    for p in reversed(state["processes"]):
        pid = p["pid"]
        # the pid must still be a Spark JVM (a pid can be reused after its process ended)
        if not _alive(pid) or "org.apache.spark" not in _cmdline(pid):
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        end = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.2)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stopped.append(p["name"])
    path.unlink()
    return stopped


def status(state_dir: Path | str = DEFAULT_DIR) -> dict | None:
    path = Path(state_dir) / "cluster.json"
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    for p in state["processes"]:
        p["alive"] = _alive(p["pid"])
    return state


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["start", "stop", "status"])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state, logs and work folders (default build/spark-cluster)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-cores", type=int, default=2)
    ap.add_argument("--worker-memory", default="2g", help="what executors may claim on each worker (an application's executors take spark.executor.memory, default 1g)")
    ap.add_argument("--executor-memory", default="512m", help="the Connect server's executors")
    ap.add_argument("--no-connect", action="store_true", help="no Spark Connect server")
    ap.add_argument("--master-port", type=int, default=7077, help="0: any free port (default 7077, or a free one if taken)")
    ap.add_argument("--connect-port", type=int, default=15002, help="0: any free port (default 15002, or a free one if taken)")
    a = ap.parse_args(argv)
    try:
        if a.command == "start":
            st = start(a.dir, workers=a.workers, worker_cores=a.worker_cores, worker_memory=a.worker_memory,
                       executor_memory=a.executor_memory, connect=not a.no_connect,
                       master_port=a.master_port or None, connect_port=a.connect_port or None)
            print(f"Spark master:         {st['master']}   (web UI {st['master_ui']})")
            if st.get("remote"):
                print(f"Spark Connect server: {st['remote']}")
            print(f"try: hospstudy cohort studies/spinal_metastasis.toml --data data/demo --out out/cluster --spark-master {st['master']}")
            print(f"stop: make spark-cluster-stop   (logs: {a.dir / 'logs'})")
        elif a.command == "stop":
            names = stop(a.dir)
            print(f"stopped: {', '.join(names)}" if names else f"no running cluster recorded in {a.dir}")
        else:
            st = status(a.dir)
            if st is None:
                print(f"no cluster recorded in {a.dir}")
                return 1
            for p in st["processes"]:
                print(f"{p['name']:10s} pid {p['pid']:>7} {'running' if p['alive'] else 'stopped'}  {p['log']}")
            print(f"master {st['master']}" + (f" · Spark Connect {st['remote']}" if st.get("remote") else ""))
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
