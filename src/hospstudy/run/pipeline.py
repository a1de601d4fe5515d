"""The whole run, above every stage: ``hospstudy run`` and ``hospstudy demo``.

Stages run in one direction: validate → cohort → analyses → report → check-disclosure.
Each computing stage is cached under ``OUT/private/cache/state.json`` by a key that hashes
its own settings and what it reads: the input files' hashes for validate and cohort, the
analytic dataset's content for the analyses, the analyses' key for the report. A re-run after
changing only ``[analyses]`` reuses the cohort; a cohort rebuilt to the same rows reuses the
analyses; a re-run with nothing changed only re-renders the report. ``force=True`` rebuilds
every stage.

Layout of OUT written here::

    OUT/report.html, tables.xlsx, results.json, results.csv, attrition.csv, figures/
    OUT/run.json                 what ran: study, data folder, seed, engine, versions, hashes
    OUT/study.toml               a copy of the study file
    OUT/private/analytic.parquet patient-level data, never shared
    OUT/private/attrition.csv    exact attrition counts
    OUT/private/analyses/        the analyses runner's unsuppressed output
    OUT/private/cache/           stage keys
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hospstudy.console import console
from hospstudy.data.hashing import input_file_hashes, settings_key, sha256_file, validation_key
from hospstudy.errors import CohortEmptyError, DataValidationError, InputError
from hospstudy.run.outdir import OutLock, prepare_out
from hospstudy.settings import read_study_file

#: Default seed of ``hospstudy synth`` and of the demo (same seed, same database, same report).
DEFAULT_SEED = 20240601
DEMO_DATA = Path("data/demo")
DEMO_OUT = Path("out/demo")
FLAGSHIP = "spinal_metastasis.toml"

_CACHE_VERSION = 1
TABLE_ROWS = ("facilities", "admissions", "diagnoses", "procedures", "billing")


def split_study_settings(study_path: Path) -> tuple[dict, dict]:
    """The study file as (cohort settings, analyses settings): everything but ``[analyses]``,
    and ``[analyses]`` alone. Raises StudyFileError naming the file when it cannot be read."""
    doc = read_study_file(study_path)
    analyses = doc.pop("analyses", {})
    # code-list files are part of the cohort's settings: hash their content, not their name
    base = Path(study_path).parent
    files = {}
    for name, entry in (doc.get("codelists") or {}).items():
        if isinstance(entry, dict) and entry.get("file"):
            f = base / entry["file"]
            files[entry["file"]] = sha256_file(f) if f.is_file() else "missing"
    if files:
        doc["_codelist_files"] = files
    return doc, analyses


def _report_code_hash() -> str:
    """Hash of the report package's own files: a changed template or renderer re-renders."""
    import hospstudy.report

    here = Path(hospstudy.report.__file__).parent
    h = hashlib.sha256()
    for p in sorted(here.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".j2", ".toml"):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:20]


def find_flagship() -> Path:
    """The flagship study file: ``studies/spinal_metastasis.toml`` of the current folder, else
    the copy installed with the package (``hospstudy/examples/``, package data: a wheel
    installed anywhere runs the demo)."""
    import hospstudy

    candidates = [Path.cwd() / "studies" / FLAGSHIP, Path(hospstudy.__file__).resolve().parent / "examples" / FLAGSHIP]
    for c in candidates:
        if c.is_file():
            return c
    raise InputError(f"flagship study file not found; looked for {', '.join(map(str, candidates))}")


# --------------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------------
def validate_data(data_dir: Path, render: bool | str = True, engine=None):
    """Validate a database with :func:`hospstudy.data.validate.validate_database`; raise
    :class:`DataValidationError` (exit 1) when it has errors. Returns the validation report.
    ``render``: True prints the report, ``"findings"`` only when it has errors or warnings.
    ``engine``: the study's engine settings, whose DuckDB memory limit and spill folder apply."""
    from hospstudy.cohort.engine import validation_budget
    from hospstudy.data.validate import validate_database

    report = validate_database(Path(data_dir), **validation_budget(engine))
    if render is True or (render == "findings" and report.findings):
        report.render(console)
    if not report.ok:
        raise DataValidationError(f"{data_dir}: the database breaks the data model (see the findings above)", report)
    return report


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------
def _summarise_database(data_dir: Path) -> dict[str, Any]:
    """Row counts of each table and the years covered, read from Parquet metadata only."""
    import pyarrow.parquet as pq

    from hospstudy.data.readers import locate_tables

    summary: dict[str, Any] = {}
    for name, src in locate_tables(data_dir).items():
        if src.format == "parquet":
            summary[name] = sum(pq.ParquetFile(p).metadata.num_rows for p in src.paths)
    truth = Path(data_dir) / "truth.json"
    if truth.is_file():
        try:
            gen = json.loads(truth.read_text()).get("generator", {})
            for k in ("seed", "scale", "years"):
                if k in gen:
                    summary[k] = gen[k]
        except json.JSONDecodeError:
            pass
    return summary


def validated_before(data_dir: Path, out_dir: Path) -> bool:
    """True when a run into ``out_dir`` validated exactly these database files clean (same
    content hashes, memoised by size and mtime): the demo's re-run then skips validation."""
    state = _read_state(Path(out_dir) / "private" / "cache" / "state.json")
    if state.get("data") != str(Path(data_dir).resolve()) or "validate" not in state.get("keys", {}):
        return False
    memo = dict(state.get("hash_memo", {}))
    return validation_key(input_file_hashes(data_dir, memo)) == state["keys"]["validate"]


def ensure_demo_database(data_dir: Path = DEMO_DATA, seed: int = DEFAULT_SEED, scale: float = 1.0,
                         years: tuple[int, int] = (2012, 2020), out_dir: Path | None = None) -> tuple[Path, bool]:
    """Generate the synthetic database into ``data_dir`` unless a clean one is already there.

    An existing folder is kept when it holds ``truth.json`` and validates clean; a folder with
    a ``truth.json`` that fails validation, or written with another seed or scale, is
    regenerated; a non-empty folder without ``truth.json`` (someone's own data) is never
    overwritten. Returns ``(data_dir, generated)``.
    """
    data_dir = Path(data_dir)
    truth = data_dir / "truth.json"
    if truth.is_file():
        same = True
        try:
            t = json.loads(truth.read_text())
            gen = t.get("generator", t)
            same = gen.get("seed", seed) == seed and float(gen.get("scale", scale)) == float(scale)
        except (json.JSONDecodeError, TypeError, ValueError):
            same = False
        if same:
            if out_dir is not None and validated_before(data_dir, out_dir):
                console.print(f"[green]✓[/] using the synthetic database in [bold]{data_dir}[/] (validated clean before, files unchanged)")
                return data_dir, False
            try:
                with console.status("[bold]validating the database…"):
                    validate_data(data_dir, render=False)
                console.print(f"[green]✓[/] using the synthetic database in [bold]{data_dir}[/] (validates clean)")
                return data_dir, False
            except (DataValidationError, InputError) as e:
                console.print(f"[yellow]![/] {data_dir} does not validate ({e}); regenerating it")
        else:
            console.print(f"[yellow]![/] {data_dir} was generated with another seed or scale; regenerating it")
    elif data_dir.exists() and any(data_dir.iterdir()):
        raise InputError(
            f"{data_dir}: folder exists and is not a synthetic database (no truth.json); "
            "pass another --data folder, or remove it yourself"
        )
    from hospstudy.data.synth import generate

    t0 = time.perf_counter()
    with console.status(f"[bold]generating the synthetic database (scale {scale}, seed {seed})…"):
        generate(data_dir, seed=seed, scale=scale, years=years, overwrite=True)
    console.print(f"[green]✓[/] synthetic database generated in [bold]{data_dir}[/] "
                  f"[dim]({time.perf_counter() - t0:.1f} s)[/]")
    return data_dir, True


@dataclass
class DemoResult:
    data: Path
    generated: bool
    summary: dict[str, Any]
    run: "RunResult | None" = None


def demo(data_dir: Path = DEMO_DATA, out_dir: Path = DEMO_OUT, seed: int = DEFAULT_SEED, scale: float = 1.0,
         engine: str = "duckdb", force: bool = False) -> DemoResult:
    """The first thing a new user runs: the default synthetic database (generated when absent),
    validated, then the flagship study run into ``out_dir``.
    """
    data_dir, generated = ensure_demo_database(Path(data_dir), seed=seed, scale=scale, out_dir=Path(out_dir))
    report = None
    if generated:
        with console.status("[bold]validating the database…"):
            report = validate_data(data_dir, render=False)
        console.print(f"[green]✓[/] {data_dir} validates clean")
    summary = _summarise_database(data_dir)
    for k, v in summary.items():
        console.print(f"  {k}: {v:,} rows" if k in TABLE_ROWS else f"  {k}: {v}")
    result = DemoResult(data_dir, generated, summary)
    # an existing database was validated (or found validated) just now: the run need not repeat it
    result.run = run_study(find_flagship(), data_dir, Path(out_dir), engine=engine, seed=seed, force=force,
                           validated=report if report is not None else True)
    return result


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------
STAGES = ("validate", "cohort", "analyses", "report", "check-disclosure")


@dataclass
class RunResult:
    """What :func:`run_study` did: the output folder, the report's path, per stage 'ran' or
    'cached' with its seconds, and the disclosure violations found (empty when shareable)."""

    out: Path
    report: Path
    stages: dict[str, str]
    violations: list
    seconds: dict[str, float] = field(default_factory=dict)


def _versions(engine: str = "duckdb") -> dict[str, str]:
    """Versions of what ran: the engine, the model fitting (formulaic builds the design
    matrices, numpy/scipy fit), the report (matplotlib, jinja2). statsmodels and lifelines only
    check the models in the tests, so they are not cited."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    engine_pkgs = ("pyarrow", "ibis-framework", "duckdb") + (("pyspark",) if engine == "spark" else ())
    for pkg in ("hospstudy", "numpy", "scipy", "pandas", *engine_pkgs, "formulaic", "matplotlib", "jinja2"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _read_state(path: Path) -> dict:
    """The stage cache's state; anything unreadable or of another shape (a corrupt or foreign
    file) is an empty cache: every stage then runs again, nothing is trusted."""
    fresh = {"version": _CACHE_VERSION}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return fresh
    if not isinstance(state, dict) or state.get("version") != _CACHE_VERSION:
        return fresh
    for k in ("keys", "hash_memo", "outputs"):
        if not isinstance(state.get(k, {}), dict):
            return fresh
    if not all(isinstance(v, str) for v in state.get("keys", {}).values()):
        return fresh
    return state


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default), encoding="utf-8")
    tmp.replace(path)


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, (_dt.date, _dt.datetime)):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    try:
        import pandas as pd

        if isinstance(o, pd.DataFrame):
            return o.to_dict("records")
        if o is pd.NA:
            return None
    except ImportError:
        pass
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _analyses_document(res) -> dict:
    """The runner's result as one JSON document (``table`` plus extras), whatever the result's shape."""
    if hasattr(res, "to_dict"):
        doc = res.to_dict()
    else:
        doc = {"table": getattr(res, "table"), "extras": getattr(res, "extras", {}) or {}}
        for k in ("failures", "errors", "meta"):
            if getattr(res, k, None):
                doc[k] = getattr(res, k)
    return json.loads(json.dumps(doc, default=_json_default))


def publish_results(raw: dict, out_dir: Path, threshold: int) -> None:
    """Write the shareable ``OUT/results.json`` and ``OUT/results.csv`` from the runner's raw
    document: identifiers dropped, counts below ``threshold`` shown as ``<threshold``, per-hospital
    records with a small count dropped."""
    import pandas as pd

    from hospstudy.privacy import sanitize_json

    safe = sanitize_json(raw, threshold)
    safe.setdefault("meta", {})["disclosure_threshold"] = threshold
    _write_json(out_dir / "results.json", safe)
    table = pd.DataFrame(safe.get("table", []))
    table.to_csv(out_dir / "results.csv", index=False)


def run_study(study_path: str | Path, data_dir: str | Path, out_dir: str | Path, engine: str | None = None,
              seed: int | None = None, force: bool = False, threshold: int | None = None, validated=None,
              spark_master: str | None = None, spark_remote: str | None = None,
              spark_conf: dict | None = None) -> RunResult:
    """Run a study from a database folder to a checked, shareable output folder.

    Parameters
    ----------
    study_path : path
        The study file (TOML).
    data_dir : path
        The database folder (DPC layout).
    out_dir : path
        Output folder (created). Patient-level files go to ``out_dir/private/`` only.
    engine : {'duckdb', 'spark'}, optional
        Default: the study file's ``[engine]`` section, else DuckDB.
    seed : int, optional
        Seed of the analyses (bootstrap, resampling); default :data:`DEFAULT_SEED`.
    force : bool
        Rebuild every stage even when its cache key matches.
    threshold : int, optional
        Smallest count shown; default the study's ``[report] disclosure_threshold`` or 10.
    validated : optional
        A validation report of ``data_dir`` already obtained (skips the validate stage).
    spark_master, spark_remote, spark_conf : optional
        Where Spark runs (see :func:`hospstudy.cohort.spec.resolve_engine`): over the study
        file's ``[engine]`` section and the environment. They do not change the analytic
        dataset, so they are not part of the cohort's cache key (the engine's name is).

    Returns
    -------
    RunResult
        ``violations`` lists what :func:`~hospstudy.privacy.check_disclosure` found;
        the CLI exits 1 when it is not empty.
    """
    from hospstudy.study import Study

    from hospstudy.cohort.engine import is_cluster_path
    from hospstudy.cohort.spec import resolve_engine

    # a cluster path (s3a://, hdfs://, abfss://, file://) stays a string: Path() would fold "//"
    cluster = is_cluster_path(data_dir)
    study_path, out_dir = Path(study_path), Path(out_dir)
    data_dir = str(data_dir).rstrip("/") if cluster else Path(data_dir)
    seed = DEFAULT_SEED if seed is None else int(seed)
    # every input is checked before any work: the whole study file, the database folder, OUT
    study = Study.load(study_path)
    where = resolve_engine(study.engine, engine=engine, spark_master=spark_master, spark_remote=spark_remote,
                           spark_conf=spark_conf)
    if cluster and where.name != "spark":
        raise InputError(f"{data_dir}: DuckDB reads a local database folder; a cluster path is read by Spark "
                         "(--engine spark with --spark-master or --spark-remote)")
    if not cluster and not data_dir.is_dir():
        raise InputError(f"{data_dir}: no such database folder")
    prepare_out(out_dir, data_dir)
    with OutLock(out_dir):
        return _run_locked(study, study_path, data_dir, out_dir, where, seed, force, threshold, validated, cluster)


def _run_locked(study, study_path: Path, data_dir: Path | str, out_dir: Path, where, seed: int, force: bool,
                threshold: int | None, validated, cluster: bool) -> RunResult:
    from hospstudy.privacy import check_disclosure
    from hospstudy.report.html import build_report

    engine = where.name
    cohort_settings, analyses_settings = split_study_settings(study_path)
    if threshold is None:
        threshold = study.report.disclosure_threshold
    priv = out_dir / "private"
    state_path = priv / "cache" / "state.json"
    state = _read_state(state_path)
    stages: dict[str, str] = {}
    seconds: dict[str, float] = {}
    t_all = time.perf_counter()

    def done(name: str, how: str, t0: float) -> None:
        seconds[name] = round(time.perf_counter() - t0, 2)
        stages[name] = how
        mark = {"ran": "[green]✓[/]", "skipped": "[yellow]–[/]"}.get(how, "[cyan]↺[/]")
        console.print(f"{mark} {name} [dim]({how}, {seconds[name]:.1f} s)[/]")

    # -- input hashes (memoised by size and mtime) and the stage keys
    t0 = time.perf_counter()
    if cluster:
        # The files are where the cluster runs: nothing here can hash or validate them. The
        # validate and cohort stages then run every time (their key is new on each run); the
        # stages after them are keyed on the analytic dataset itself, so they are reused when
        # the cohort comes back the same.
        hashes = {}
        k_validate = settings_key("cluster", data_dir, _dt.datetime.now(_dt.timezone.utc).isoformat())
        state.pop("hash_memo", None)
        state["data"] = data_dir
        console.print(f"[yellow]note:[/] {data_dir} is a cluster path: its files are not hashed or validated here "
                      "(validate the database before uploading it: hospstudy validate DIR); the cohort is rebuilt "
                      "on every run", soft_wrap=True)
    else:
        memo = state.get("hash_memo", {}) if state.get("data") == str(data_dir.resolve()) else {}
        with console.status("[bold]hashing input files…"):
            hashes = input_file_hashes(data_dir, memo)
        state["hash_memo"], state["data"] = memo, str(data_dir.resolve())
        k_validate = validation_key(hashes)
    seconds["hash inputs"] = round(time.perf_counter() - t0, 2)
    study_sha = sha256_file(study_path)
    # [report] settings (the disclosure threshold) do not change the cohort: left out of its key
    k_cohort = settings_key("cohort", {k: v for k, v in cohort_settings.items() if k not in ("report", "engine")},
                            engine, k_validate)
    keys = state.setdefault("keys", {})

    outputs = state.setdefault("outputs", {})

    def fresh(name: str, key: str, *paths: Path) -> bool:
        """The stage's key matches and each output is the very file recorded with it (content
        hash): a file overwritten or truncated after it was recorded is not trusted."""
        if force or keys.get(name) != key:
            return False
        recorded = outputs.get(name, {})
        for p in paths:
            rel = p.relative_to(out_dir).as_posix()
            if not p.is_file() or recorded.get(rel) != sha256_file(p):
                return False
        return True

    def invalidate(*names: str) -> None:
        """Forget these stages on disk before their outputs are rewritten: a run killed while
        writing leaves them unrecorded, never recorded with another run's files."""
        for n in names:
            keys.pop(n, None)
            outputs.pop(n, None)
        _write_json(state_path, state)

    def record(name: str, key: str, *paths: Path) -> None:
        outputs[name] = {p.relative_to(out_dir).as_posix(): sha256_file(p) for p in paths}
        keys[name] = key
        _write_json(state_path, state)

    # -- validate
    t0 = time.perf_counter()
    if validated is not None:
        same = keys.get("validate") == k_validate
        keys["validate"] = k_validate
        done("validate", "cached" if same and not force else "ran", t0)
    elif fresh("validate", k_validate):
        done("validate", "cached", t0)
    elif cluster:
        keys["validate"] = k_validate
        done("validate", "skipped", t0)
    else:
        with console.status("[bold]validating the database…"):
            validate_data(data_dir, render="findings", engine=where)
        keys["validate"] = k_validate
        done("validate", "ran", t0)
    _write_json(state_path, state)

    # -- cohort
    t0 = time.perf_counter()
    analytic_path, attrition_path = priv / "analytic.parquet", priv / "attrition.csv"
    if fresh("cohort", k_cohort, analytic_path, attrition_path):
        done("cohort", "cached", t0)
    else:
        import pyarrow.parquet as pq

        # the analyses and the report are keyed on the analytic dataset's content: not forgotten here
        invalidate("cohort")
        with console.status(f"[bold]building the cohort on {where.where}…") as status:
            res = study.build_cohort(data_dir, settings=where, validate=False,
                                     progress=lambda s: status.update(f"[bold]cohort: {s}…"))
        _atomic(analytic_path, lambda tmp: pq.write_table(res.table, tmp))
        _atomic(attrition_path, lambda tmp: res.attrition.to_csv(tmp, index=False))
        if getattr(res, "dictionary", None) is not None:
            _atomic(out_dir / "dictionary.csv", lambda tmp: res.dictionary.to_csv(tmp, index=False))
        warn_unmatched(res.unmatched_codes, study, out_dir / "code_list_check.csv")
        require_patients(res.attrition, attrition_path)
        record("cohort", k_cohort, analytic_path, attrition_path)
        done("cohort", "ran", t0)
        console.print(f"  [dim]{len(res.analytic):,} patients in the analytic dataset[/]")

    # -- analyses: keyed on the analytic dataset's content (not on the cohort's key), so a
    # cohort rebuilt to the same rows (a cluster path, a validation-only change) reuses them;
    # the threshold shapes the published extras (curve steps, funnel points): part of the key
    t0 = time.perf_counter()
    k_analyses = settings_key("analyses", analyses_settings, seed, threshold, sha256_file(analytic_path))
    raw_results = priv / "analyses" / "results.json"
    if fresh("analyses", k_analyses, raw_results):
        done("analyses", "cached", t0)
    else:
        import pandas as pd

        from hospstudy.models import analyses as _analyses

        analytic = pd.read_parquet(analytic_path)
        invalidate("analyses", "report")
        with console.status("[bold]running the analyses…"):
            res = _call_runner(_analyses.run_analyses, study, analytic, seed, priv / "analyses", threshold)
        doc = _analyses_document(res)
        _write_json(raw_results, doc)
        record("analyses", k_analyses, raw_results)
        done("analyses", "ran", t0)
    if raw_results.exists():
        publish_results(json.loads(raw_results.read_text()), out_dir, threshold)

    # -- report: re-rendered when the analyses, the threshold or the report code changed
    t0 = time.perf_counter()
    k_report = settings_key("report", k_analyses, threshold, study_sha, _report_code_hash(), raw_results.exists())
    report_path = out_dir / "report.html"
    report_outputs = (report_path, out_dir / "tables.xlsx", out_dir / "run.json")
    if fresh("report", k_report, *report_outputs):
        done("report", "cached", t0)
        t0 = time.perf_counter()
        violations = check_disclosure(out_dir, threshold=threshold)
        done("check-disclosure", "ran", t0)
        return _finish(out_dir, report_path, stages, violations, seconds, t_all, state, state_path)
    invalidate("report")
    shutil.copyfile(study_path, out_dir / "study.toml")
    if not cluster and (data_dir / "truth.json").is_file():  # `hospstudy report OUT` must not depend on the data folder staying put
        shutil.copyfile(data_dir / "truth.json", priv / "truth.json")
    else:
        (priv / "truth.json").unlink(missing_ok=True)
    run_info = {
        "study": str(study_path.resolve()), "study_sha256": study_sha, "data": data_dir if cluster else str(data_dir.resolve()),
        "engine": engine, "engine_where": where.where, "seed": seed, "threshold": threshold,
        "run_date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "versions": _versions(engine), "input_hashes": hashes, "stage_keys": dict(keys),
    }
    if cluster:
        run_info["input_hashes_note"] = (f"Input file checksums were not recorded: the database ({data_dir}) is a cluster "
                                         "path read by Spark where it runs, not by this machine.")
    _write_json(out_dir / "run.json", run_info)
    with console.status("[bold]rendering the report…"):
        art = build_report(out_dir)
    record("report", k_report, *report_outputs)
    done("report", "ran", t0)

    # -- check-disclosure
    t0 = time.perf_counter()
    violations = check_disclosure(out_dir, threshold=threshold)
    done("check-disclosure", "ran", t0)
    return _finish(out_dir, art.html, stages, violations, seconds, t_all, state, state_path)


def _atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """Write a file under a temporary name beside it, then rename it into place: a run killed
    meanwhile leaves the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    tmp.replace(path)


def warn_unmatched(unmatched, study, path: Path) -> None:
    """Say which code lists select nobody (each a warning line: a typo'd code selects no
    patient) and how many entries of the others match no row; the whole list goes to ``path``."""
    if unmatched is None or len(unmatched) == 0:
        path.unlink(missing_ok=True)
        return
    _atomic(path, lambda tmp: unmatched.to_csv(tmp, index=False))
    for (table, name), g in unmatched.groupby(["table", "code_list"], sort=True):
        if len(g) == len(study.codelists.get(name, ())):
            console.print(f"[yellow]![/] code list '{name}' matches no row of {table}: "
                          f"{', '.join(g['entry'][:5])}{' …' if len(g) > 5 else ''} (a typo?)", soft_wrap=True)
    lists = unmatched["code_list"].nunique()
    console.print(f"[yellow]![/] {len(unmatched)} code-list entr{'y' if len(unmatched) == 1 else 'ies'} of {lists} "
                  f"list(s) match no row of the database (listed in {path})", soft_wrap=True)


def require_patients(attrition, where: Path | str = "the attrition table") -> None:
    """Stop with exit 1 when the cohort is empty, naming the step that removed the last patient
    (the attrition table is kept at ``where`` to see why)."""
    a = attrition.sort_values("step")
    if len(a) and int(a["patients"].iloc[-1]) > 0:
        return
    empty = a[a["patients"].astype("int64") == 0]
    if len(empty) == 0:
        raise CohortEmptyError("the cohort has no patients")
    first = empty.iloc[0]
    if int(first["step"]) == 0:
        raise CohortEmptyError(f"the cohort has no patients: the database holds no admission (exact attrition in {where})")
    before = a[a["step"] < first["step"]]["patients"].iloc[-1]
    raise CohortEmptyError(
        f"the cohort has no patients: step {int(first['step'])} '{first['name']}' removed the last "
        f"{int(before):,}; check its codes and values (exact attrition in {where})"
    )


def _finish(out_dir, report_path, stages, violations, seconds, t_all, state, state_path) -> RunResult:
    from rich.markup import escape

    for v in violations:
        console.print(f"[red]✗[/] {escape(str(v))}", highlight=False)
    if violations:
        console.print(f"[bold red]{len(violations)} disclosure violation(s): {out_dir} is not shareable[/]")
    seconds["total"] = round(time.perf_counter() - t_all, 2)
    state["last_run"] = {"stages": stages, "seconds": seconds}
    _write_json(state_path, state)
    return RunResult(out_dir, report_path, stages, violations, seconds)


def _call_runner(run_analyses: Callable, study, analytic, seed: int, out: Path, threshold: int):
    """Call the analyses runner, passing ``out`` only when it accepts an output folder (its
    own files then stay in private/) and the disclosure threshold when it takes one."""
    import inspect

    params = inspect.signature(run_analyses).parameters
    kwargs = {"seed": seed}
    if "disclosure_threshold" in params:
        kwargs["disclosure_threshold"] = threshold
    for name in ("out", "out_dir"):
        if name in params:
            out.mkdir(parents=True, exist_ok=True)
            kwargs[name] = out
    return run_analyses(study, analytic, **kwargs)
