"""Spark sessions for the cohort engine: local mode, a cluster's master, or Spark Connect.

Where the cohort runs is chosen by :class:`hospstudy.cohort.spec.EngineSpec` (the study file's
``[engine]`` section, the environment and the command line, resolved by
:func:`hospstudy.cohort.spec.resolve_engine`):

- ``spark_master``: ``local[N]``, ``spark://HOST:PORT`` (a standalone cluster; several masters
  as ``spark://H1:P1,H2:P2``), ``yarn``, ``k8s://https://HOST:PORT``: the driver runs in this
  process (a JVM started by pyspark), the executors on the cluster;
- ``spark_remote``: ``sc://HOST:PORT`` (Spark Connect, what Spark 4 clusters and Databricks
  offer): no JVM here, the query plans go to the server over gRPC.

A master or Connect server that cannot be reached is found before any JVM starts (a TCP
connection to each HOST:PORT, with a time limit) and reported in one line naming the URL:
Spark itself takes over a minute to give up on a dead standalone master and prints Java stack
traces while it tries.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
from urllib.parse import urlparse

from hospstudy.errors import EngineConnectionError, EngineError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: Defaults found reliable in local mode (ENGINE_NOTES.md): 4 GB driver, 8 shuffle partitions,
#: Arrow, no UI or console progress bar, UTC session time zone (dates stay dates).
DEFAULT_CONF = {
    "spark.driver.memory": "4g",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}
_MASTER = re.compile(r"^(local(\[(\d+|\*)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]|yarn|spark://.+|k8s://.+|mesos://.+)$")


def check_master(url: str) -> None:
    """Raise EngineError unless ``url`` has the form of a Spark master URL."""
    if not _MASTER.match(url or ""):
        raise EngineConnectionError(
            f"Spark master {url!r}: not a master URL; use local[N], spark://HOST:PORT, yarn or k8s://https://HOST:PORT "
            f"(Spark Connect: --spark-remote sc://HOST:PORT)"
        )


def check_remote(url: str) -> tuple[str, int]:
    """(host, port) of a Spark Connect URL ``sc://HOST[:PORT][/;param=value...]``."""
    if not (url or "").startswith("sc://"):
        raise EngineConnectionError(f"Spark Connect URL {url!r}: must start with sc:// (sc://HOST:PORT)")
    hostport = url[len("sc://"):].split("/", 1)[0].split(";", 1)[0]
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "15002")
    try:
        port_n = int(port)
    except ValueError:
        raise EngineConnectionError(f"Spark Connect URL {url!r}: the port {port!r} is not a number") from None
    if not host:
        raise EngineConnectionError(f"Spark Connect URL {url!r}: no host (sc://HOST:PORT)")
    return host.strip("[]"), port_n


def master_endpoints(url: str) -> list[tuple[str, int]]:
    """The HOST:PORT pairs a master URL connects to (none for local, yarn: found by Hadoop's
    configuration)."""
    if url.startswith("spark://"):
        out = []
        for hp in url[len("spark://"):].split(","):
            host, _, port = hp.rpartition(":")
            if not host:
                host, port = hp, "7077"
            try:
                out.append((host.strip("[]"), int(port)))
            except ValueError:
                raise EngineConnectionError(f"Spark master {url!r}: the port {port!r} is not a number") from None
        return out
    if url.startswith("k8s://"):
        rest = url[len("k8s://"):]
        u = urlparse(rest if "://" in rest else "https://" + rest)
        return [(u.hostname, u.port or 443)] if u.hostname else []
    return []


def probe(kind: str, url: str, endpoints: list[tuple[str, int]], timeout: float) -> None:
    """Raise EngineConnectionError naming ``url`` unless one of ``endpoints`` accepts a TCP
    connection within ``timeout`` seconds."""
    if not endpoints:
        return
    reasons = []
    for host, port in endpoints:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return
        except socket.timeout:
            reasons.append(f"{host}:{port}: no answer within {timeout:g} s")
        except OSError as e:
            reasons.append(f"{host}:{port}: {e.strerror or e}")
    raise EngineConnectionError(f"{kind} {url} is not reachable ({'; '.join(reasons)})")


def _is_loopback_master(master: str) -> bool:
    if master.startswith("local"):
        return True
    eps = master_endpoints(master)
    return bool(eps) and all(h in LOOPBACK for h, _ in eps)


def _with_timeout(f, timeout: float, what: str):
    """``f()`` in a thread; EngineConnectionError when it has not returned after ``timeout``
    seconds (the thread is left to finish on its own: gRPC retries cannot be interrupted)."""
    box: dict = {}

    def run():
        try:
            box["value"] = f()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise EngineConnectionError(f"{what}: no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _one_line(e: BaseException) -> str:
    """The first line of a (JVM or gRPC) error message, without its stack trace."""
    text = str(e).strip().splitlines()
    first = text[0] if text else type(e).__name__
    return first if len(first) <= 300 else first[:297] + "..."


def spark_session(master: str | None = None, remote: str | None = None, conf: dict | None = None,
                  timeout: float = 20.0):
    """A SparkSession: Spark Connect when ``remote`` is given, else a driver in this process
    for ``master`` (default ``local[2]``).

    ``conf`` (Spark settings) is applied over :data:`DEFAULT_CONF`; with a local or loopback
    master the driver binds to 127.0.0.1 (``SPARK_LOCAL_IP``, ``spark.driver.host``). With
    Spark Connect only settings a running session accepts apply (SQL settings such as
    ``spark.sql.shuffle.partitions``); driver and executor memory are the server's.

    Raises
    ------
    EngineConnectionError
        The master or server is not reachable within ``timeout`` seconds, a URL is malformed,
        or Java is missing (exit code 2).
    EngineError
        pyspark is not installed, or Spark failed to start.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineError("the Spark engine needs pyspark: pip install 'hospstudy[spark]'") from None
    conf = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (conf or {}).items()}
    if remote:
        return _connect_session(SparkSession, remote, conf, timeout)
    master = master or "local[2]"
    check_master(master)
    probe("Spark master", master, master_endpoints(master), timeout)
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise EngineConnectionError(
            f"Spark master {master}: the Spark driver needs Java (17) on PATH or JAVA_HOME; "
            f"none found (or use Spark Connect: --spark-remote sc://HOST:PORT)"
        )
    # a driver in this process: a Spark Connect URL left in the environment would turn the
    # builder into a Connect client
    for var in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED"):
        os.environ.pop(var, None)
    settings = dict(DEFAULT_CONF)
    if _is_loopback_master(master):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        settings.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    settings.update(conf)
    from pyspark import SparkContext

    active = SparkContext._active_spark_context
    if active is not None and active.master != master:
        # getOrCreate would hand back the running context of another master unchanged
        active.stop()
    builder = SparkSession.builder.master(master).appName("hospstudy-cohort")
    for k, v in settings.items():
        builder = builder.config(k, v)
    try:
        session = builder.getOrCreate()
    except Exception as e:  # port blocked, bad setting, ...
        raise EngineError(f"could not start Spark (master {master}): {_one_line(e)}") from None
    session.sparkContext.setLogLevel("ERROR")
    if master.startswith("spark://") and settings.get("spark.dynamicAllocation.enabled", "false") != "true":
        _await_executors(session, master, settings, EXECUTOR_TIMEOUT)
    return session


#: Seconds a standalone cluster has to start the first executor: without one Spark waits
#: forever ("Initial job has not accepted any resources").
EXECUTOR_TIMEOUT = 180.0


def _await_executors(session, master: str, settings: dict, timeout: float) -> None:
    import time

    sc = session.sparkContext
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if sc._jsc.sc().getExecutorMemoryStatus().size() > 1:  # the driver counts as one
            return
        time.sleep(0.5)
    session.stop()
    raise EngineConnectionError(
        f"Spark master {master}: no executor started within {timeout:g} s; the workers lack free cores or memory "
        f"for spark.executor.memory={settings.get('spark.executor.memory', '1g')} (see the master's web UI; "
        f"--spark-conf spark.executor.memory=... or spark.cores.max=...)"
    )


def _connect_session(SparkSession, remote: str, conf: dict, timeout: float):
    host, port = check_remote(remote)
    probe("Spark Connect server", remote, [(host, port)], timeout)
    try:
        import grpc  # noqa: F401
        import google.rpc  # noqa: F401
    except ImportError:
        raise EngineError("Spark Connect needs grpcio, grpcio-status and googleapis-common-protos: "
                          "pip install 'hospstudy[spark]'") from None

    def start():
        s = SparkSession.builder.remote(remote).getOrCreate()
        s.version  # the first round trip (no job): a server that does not speak Connect fails here
        return s

    try:
        session = _with_timeout(start, timeout, f"Spark Connect server {remote}")
    except EngineConnectionError:
        raise
    except Exception as e:
        raise EngineConnectionError(f"Spark Connect server {remote}: {_one_line(e)}") from None
    settings = {k: v for k, v in DEFAULT_CONF.items() if k.startswith("spark.sql.")}
    settings.update(conf)
    for k, v in settings.items():
        try:
            session.conf.set(k, v)
        except Exception as e:
            if k in conf:  # the user's own setting: say why it did not apply
                raise EngineError(f"Spark Connect server {remote}: setting {k}={v} was refused: {_one_line(e)}") from None
    return session
