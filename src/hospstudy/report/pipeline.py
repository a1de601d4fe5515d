"""One command from raw data to a privacy-safe report: ``hospstudy run`` and ``hospstudy demo``.

Stages run in one direction: validate → cohort → analyses → report → check-disclosure.
Each computing stage is cached under ``OUT/private/cache/state.json`` by a key that hashes
its own settings and the keys of the stages before it (plus the input files' hashes for the
first ones), so a re-run after changing only ``[analyses]`` reuses the cohort, and a re-run
with nothing changed only re-renders the report. ``force=True`` rebuilds every stage.

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
import importlib
import json
import platform
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hospstudy.console import console
from hospstudy.errors import DataValidationError, InputError

#: Default seed of ``hospstudy synth`` and of the demo (same seed, same database, same report).
DEFAULT_SEED = 20240601
DEMO_DATA = Path("data/demo")
DEMO_OUT = Path("out/demo")
FLAGSHIP = "spinal_metastasis.toml"

_CACHE_VERSION = 1


# --------------------------------------------------------------------------------------------
# hashing
# --------------------------------------------------------------------------------------------
def _sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def input_file_hashes(data_dir: Path, memo: dict | None = None) -> dict[str, str]:
    """SHA-256 of every file of a database folder, keyed by its path relative to the folder.

    ``memo`` maps a relative path to ``[size, mtime_ns, sha256]`` from an earlier run; a file
    whose size and modification time did not change is not read again (a cached re-run of a
    large database stays fast). The memo is updated in place.
    """
    data_dir = Path(data_dir)
    memo = {} if memo is None else memo
    out: dict[str, str] = {}
    for p in sorted(data_dir.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        rel = p.relative_to(data_dir).as_posix()
        st = p.stat()
        known = memo.get(rel)
        if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            out[rel] = known[2]
            continue
        digest = _sha256_file(p)
        memo[rel] = [st.st_size, st.st_mtime_ns, digest]
        out[rel] = digest
    return out


def settings_key(*parts: Any) -> str:
    """A stable hash of JSON-serialisable settings (key order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def split_study_settings(study_path: Path) -> tuple[dict, dict]:
    """The study file as (cohort settings, analyses settings): everything but ``[analyses]``,
    and ``[analyses]`` alone. Raises InputError naming the file when the TOML does not parse."""
    try:
        doc = tomllib.loads(Path(study_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{study_path}: no such study file") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{study_path}: not valid TOML: {e}") from None
    analyses = doc.pop("analyses", {})
    return doc, analyses


# --------------------------------------------------------------------------------------------
# availability of the other stages (built in parallel by other areas)
# --------------------------------------------------------------------------------------------
def _optional(module: str, name: str):
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            return None
        raise
    except AttributeError:
        return None


def stage_availability() -> dict[str, bool]:
    """Which stages of the pipeline are installed (importable) in this checkout."""
    return {
        "synth": _optional("hospstudy.data.synth", "generate") is not None,
        "validate": _optional("hospstudy.data.validate", "validate_database") is not None,
        "cohort": _optional("hospstudy.cohort", "Study") is not None,
        "analyses": _optional("hospstudy.models.analyses", "run_analyses") is not None,
    }


def find_flagship() -> Path:
    """The flagship study file: ``studies/spinal_metastasis.toml`` of the checkout (or of the
    current folder)."""
    candidates = [Path.cwd() / "studies" / FLAGSHIP, Path(__file__).resolve().parents[3] / "studies" / FLAGSHIP]
    for c in candidates:
        if c.is_file():
            return c
    raise InputError(f"flagship study file not found; looked for {', '.join(map(str, candidates))}")


# --------------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------------
def validate_data(data_dir: Path, render: bool = True):
    """Validate a database with :func:`hospstudy.data.validate.validate_database`; raise
    :class:`DataValidationError` (exit 1) when it has errors. Returns the validation report."""
    validate_database = _optional("hospstudy.data.validate", "validate_database")
    if validate_database is None:
        raise InputError("the validation stage (hospstudy.data.validate) is not installed")
    report = validate_database(Path(data_dir))
    if render:
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
            t = json.loads(truth.read_text())
            for k in ("seed", "scale", "years"):
                if k in t:
                    summary[k] = t[k]
        except json.JSONDecodeError:
            pass
    return summary


def ensure_demo_database(data_dir: Path = DEMO_DATA, seed: int = DEFAULT_SEED, scale: float = 1.0,
                         years: tuple[int, int] = (2012, 2020)) -> tuple[Path, bool]:
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
            same = t.get("seed", seed) == seed and float(t.get("scale", scale)) == float(scale)
        except (json.JSONDecodeError, TypeError, ValueError):
            same = False
        if same:
            try:
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
    generate = _optional("hospstudy.data.synth", "generate")
    if generate is None:
        raise InputError("the synthetic database generator (hospstudy.data.synth) is not installed")
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
    missing_stages: list[str] = field(default_factory=list)


def demo(data_dir: Path = DEMO_DATA, out_dir: Path = DEMO_OUT, seed: int = DEFAULT_SEED, scale: float = 1.0,
         engine: str = "duckdb", force: bool = False) -> DemoResult:
    """The first thing a new user runs: the default synthetic database (generated when absent),
    validated, then the flagship study run into ``out_dir``.

    When the cohort or analyses stages are not installed yet, stops after validation and says
    which stages are missing.
    """
    data_dir, generated = ensure_demo_database(Path(data_dir), seed=seed, scale=scale)
    with console.status("[bold]validating the database…"):
        report = validate_data(data_dir, render=False)
    console.print(f"[green]✓[/] {data_dir} validates clean")
    summary = _summarise_database(data_dir)
    for k, v in summary.items():
        console.print(f"  {k}: {v:,}" if isinstance(v, int) else f"  {k}: {v}")
    avail = stage_availability()
    missing = [s for s in ("cohort", "analyses") if not avail[s]]
    result = DemoResult(data_dir, generated, summary, missing_stages=missing)
    if missing:
        console.print(f"[yellow]![/] the {' and '.join(missing)} stage(s) are not installed yet: "
                      "stopping after validation")
        return result
    result.run = run_study(find_flagship(), data_dir, Path(out_dir), engine=engine, seed=seed, force=force,
                           validated=report)
    return result


# --------------------------------------------------------------------------------------------
# run (filled in below)
# --------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    out: Path
    report: Path
    stages: dict[str, str]
    violations: list


def run_study(study_path: Path, data_dir: Path, out_dir: Path, engine: str = "duckdb", seed: int | None = None,
              force: bool = False, validated=None) -> RunResult:  # pragma: no cover - replaced below
    raise InputError("hospstudy run: the cohort and analyses stages are not installed yet")
