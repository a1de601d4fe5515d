"""CLI of the commands that read a whole study file or drive several stages: ``run``, ``demo``,
``cohort`` and ``analyze``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from hospstudy.console import console
from hospstudy.run import pipeline as _pl
from hospstudy.run.outdir import OutLock, prepare_out
from hospstudy.run.pipeline import require_patients

_ENGINES = ("duckdb", "spark")


def _engine(value: str) -> str:
    if value not in _ENGINES:
        raise typer.BadParameter(f"must be one of {', '.join(_ENGINES)}; got {value!r}")
    return value


def _validation_record(data: Path, out: Path) -> tuple[bool, dict | None]:
    """Whether this database folder, with these very files (content hashes, memoised by size
    and modification time), validated clean in an earlier run into ``out``; and the record
    that says so of the files as they are now, to keep after a clean validation (None when
    ``data`` is not a folder: the build then stops on it)."""
    from hospstudy.data.hashing import input_file_hashes, validation_key

    if not Path(data).is_dir():
        return False, None
    folder = str(Path(data).resolve())
    try:
        doc = json.loads(_memo_path(out).read_text())
    except (OSError, ValueError):
        doc = {}
    if not isinstance(doc, dict) or doc.get("data") != folder:
        doc = {}
    memo = doc.get("memo") if isinstance(doc.get("memo"), dict) else {}
    key = validation_key(input_file_hashes(data, memo))
    return key == doc.get("key"), {"data": folder, "key": key, "memo": memo}


def _memo_path(out: Path) -> Path:
    return Path(out) / "private" / "cache" / "validated.json"


def _load_study(path: Path):
    """The study's [analyses] settings and its disclosure threshold. A whole study file is
    validated by ``Study`` (every section, all problems at once); a
    file holding only an [analyses] table (to re-run analyses with other settings) is
    validated by that table and its [report] table alone."""
    from hospstudy.errors import StudyFileError
    from hospstudy.models.analyses import load_spec
    from hospstudy.report.spec import report_settings
    from hospstudy.settings import read_study_file
    from hospstudy.study import Study

    doc = read_study_file(path)
    if "study" in doc or "cohort" in doc:
        study = Study.from_dict(doc, path)
        return load_spec(study), study.report.disclosure_threshold
    if "analyses" not in doc:
        raise StudyFileError(f"{path}: the study file has no analyses section", ["analyses: missing"])
    return load_spec(doc["analyses"]), report_settings(doc, path).disclosure_threshold


def _read_analytic(path: Path):
    import pandas as pd

    from hospstudy.errors import InputError

    if not path.exists():
        raise InputError(f"{path}: no analytic dataset here (run `hospstudy cohort` first)")
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{path}: cannot read the analytic dataset as Parquet ({type(e).__name__}: {e})") from None


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        data: Path = typer.Option(_pl.DEMO_DATA, "--data", help="Folder of the synthetic database (generated when absent)."),
        out: Path = typer.Option(_pl.DEMO_OUT, "--out", help="Output folder of the flagship study's report."),
        seed: int = typer.Option(_pl.DEFAULT_SEED, "--seed", help="Seed of the synthetic database and of the analyses."),
        scale: float = typer.Option(1.0, "--scale", min=0.001, max=100.0, help="Size of the synthetic database (1 = nationwide)."),
        engine: str = typer.Option("duckdb", "--engine", callback=_engine, help="duckdb or spark."),
        force: bool = typer.Option(False, "--force", help="Rebuild every stage, ignoring the cache."),
    ):
        """Generate the default synthetic database if absent, run the flagship study, print where the report is."""
        res = _pl.demo(data, out, seed=seed, scale=scale, engine=engine, force=force)
        if res.run is not None:
            console.print(f"[bold green]report:[/] {res.run.report.resolve()}")
            if res.run.violations:
                raise typer.Exit(1)

    @app.command()
    def run(
        study_file: Path = typer.Argument(..., help="Study file (TOML), e.g. studies/spinal_metastasis.toml."),
        data: str = typer.Option(..., "--data", help="Database folder (DPC layout); with --engine spark also a cluster path (s3a://, hdfs://, abfss://, file://) of Parquet tables (not hashed or validated here: the cohort is rebuilt on every run)."),
        out: Path = typer.Option(..., "--out", help="Output folder (patient-level files only under OUT/private/)."),
        engine: Optional[str] = typer.Option(None, "--engine", help="duckdb or spark; default: the study file's [engine] name, else duckdb."),
        seed: int = typer.Option(_pl.DEFAULT_SEED, "--seed", help="Seed of the analyses."),
        force: bool = typer.Option(False, "--force", help="Rebuild every stage, ignoring the cache."),
        threshold: Optional[int] = typer.Option(None, "--threshold", min=1, help="Smallest count shown (default: the study file [report] disclosure_threshold, else 10)."),
        spark_master: Optional[str] = typer.Option(None, "--spark-master", help="Spark master URL: local[N], spark://HOST:PORT, yarn, k8s://https://HOST:PORT (default: $HOSPSTUDY_SPARK_MASTER, the study file's [engine], local[2]); implies --engine spark."),
        spark_remote: Optional[str] = typer.Option(None, "--spark-remote", help="Spark Connect server sc://HOST:PORT (default: $SPARK_REMOTE, the study file's [engine]); implies --engine spark."),
        spark_conf: Optional[list[str]] = typer.Option(None, "--spark-conf", help="A Spark setting key=value (repeatable), e.g. spark.executor.memory=8g."),
    ):
        """validate → cohort → analyses → report → check-disclosure; cached by settings and input hashes."""
        from hospstudy.cohort.spec import parse_spark_conf

        res = _pl.run_study(study_file, data, out, engine=engine, seed=seed, force=force, threshold=threshold,
                            spark_master=spark_master, spark_remote=spark_remote, spark_conf=parse_spark_conf(spark_conf))
        console.print(f"[bold green]report:[/] {res.report.resolve()}")
        if res.violations:
            raise typer.Exit(1)

    @app.command()
    def cohort(
        study_file: Path = typer.Argument(..., help="Study file (TOML), e.g. studies/spinal_metastasis.toml."),
        data: str = typer.Option(..., "--data", help="Database folder (DPC layout: Parquet tables or CSV); with --engine spark also a cluster path (s3a://, hdfs://, abfss://, file://) of Parquet tables."),
        out: Path = typer.Option(..., "--out", help="Output folder: private/analytic.parquet and private/attrition.csv (exact), attrition.csv (counts under the disclosure threshold suppressed), dictionary.csv."),
        engine: Optional[str] = typer.Option(None, "--engine", help="duckdb (embedded) or spark; default: the study file's [engine] name, else duckdb."),
        spark_master: Optional[str] = typer.Option(None, "--spark-master", help="Spark master URL: local[N], spark://HOST:PORT, yarn, k8s://https://HOST:PORT (default: $HOSPSTUDY_SPARK_MASTER, the study file's [engine], local[2]); implies --engine spark."),
        spark_remote: Optional[str] = typer.Option(None, "--spark-remote", help="Spark Connect server sc://HOST:PORT (default: $SPARK_REMOTE, the study file's [engine]); implies --engine spark."),
        spark_conf: Optional[list[str]] = typer.Option(None, "--spark-conf", help="A Spark setting key=value (repeatable), e.g. spark.executor.memory=8g."),
        skip_validation: bool = typer.Option(False, "--skip-validation", help="Do not validate the database first (faster; for databases already validated)."),
        revalidate: bool = typer.Option(False, "--revalidate", help="Validate even when the database's files are unchanged since they last validated clean into OUT."),
    ):
        """Build a study's analytic dataset and attrition table from a database.

        The database is validated first; a database whose files (by content hash) validated
        clean in an earlier run into the same OUT is not validated again."""
        from hospstudy.cohort.engine import STAGES
        from hospstudy.cohort.spec import parse_spark_conf, resolve_engine
        from hospstudy.console import progress
        from hospstudy.errors import DataValidationError
        from hospstudy.study import Study

        study = Study.load(study_file)
        settings = resolve_engine(study.engine, engine=engine, spark_master=spark_master, spark_remote=spark_remote,
                                  spark_conf=parse_spark_conf(spark_conf))
        prepare_out(out, data)
        with OutLock(out):
            validated, record = (False, None) if skip_validation else _validation_record(data, out)
            validated = validated and not revalidate
            stages = list(STAGES)
            with progress() as bar:
                task = bar.add_task(f"cohort {study.name} on {settings.where}", total=len(stages))
                seen: list[str] = []

                def note(stage: str) -> None:
                    if seen:
                        bar.advance(task)
                    seen.append(stage)
                    bar.update(task, description=f"cohort {study.name}: {stage}")

                try:
                    result = study.build_cohort(data, settings=settings, validate=not (skip_validation or validated),
                                                progress=note)
                except DataValidationError as e:
                    if e.report is not None:
                        e.report.render(console)
                    raise
                bar.update(task, completed=len(stages), description=f"cohort {study.name}: done")
            paths = result.write(out, threshold=study.report.disclosure_threshold)
            if record is not None and not validated:
                # it validated clean (build_cohort stops otherwise): remember these files
                _memo_path(out).parent.mkdir(parents=True, exist_ok=True)
                _memo_path(out).write_text(json.dumps(record))
            for n in result.notes:
                console.print(f"[yellow]note:[/] {n}", soft_wrap=True)
            for stage, secs in result.timings.items():
                shown = f"{secs:.1f} s"
                if stage == "validate" and skip_validation:
                    shown = "skipped"
                elif stage == "validate" and validated:
                    shown = "skipped: the files are unchanged since they validated clean (--revalidate to check again)"
                console.print(f"  [dim]{stage}: {shown}[/]", soft_wrap=True)
            from rich.table import Table

            table = Table(title=f"attrition ({study.name})", title_justify="left")
            table.add_column("step", justify="right")
            table.add_column("name", no_wrap=True)
            for col in ("admissions", "patients", "−admissions", "−patients"):
                table.add_column(col, justify="right")
            for r in result.attrition.itertuples(index=False):
                table.add_row(str(r.step), r.name, f"{r.admissions:,}", f"{r.patients:,}",
                              f"{r.admissions_removed:,}", f"{r.patients_removed:,}")
            console.print(table)
            _pl.warn_unmatched(result.unmatched_codes, study, Path(out) / "code_list_check.csv")
            require_patients(result.attrition, paths["attrition_exact"])
            console.print(
                f"[green]✓[/] {len(result.analytic):,} patients ({result.where}); analytic dataset {paths['analytic']}, "
                f"attrition {paths['attrition_exact']} (exact; shareable with counts under "
                f"{study.report.disclosure_threshold} suppressed: {paths['attrition']}), dictionary {paths['dictionary']}"
            )

    @app.command()
    def analyze(
        study: Path = typer.Argument(..., help="Study file (TOML) whose analyses section says what to run."),
        cohort: Path = typer.Option(..., "--cohort", help="The analytic dataset, OUT/private/analytic.parquet."),
        out: Path = typer.Option(..., "--out", help="Output folder: results.parquet/.csv/.json (aggregate, small counts suppressed)."),
        seed: int = typer.Option(0, "--seed", help="Recorded with the results (the analyses are deterministic)."),
        threshold: Optional[int] = typer.Option(None, "--threshold", min=1, help="Counts from 1 to THRESHOLD-1 are written as <THRESHOLD; curve steps and funnel points rest on at least THRESHOLD patients or events (default: the study's [report] disclosure_threshold, else 10)."),
    ):
        """Run the study's analyses on an analytic dataset; write one tidy results table."""
        from hospstudy.models.analyses import run_analyses

        spec, study_threshold = _load_study(study)
        threshold = study_threshold if threshold is None else threshold
        data = _read_analytic(cohort)
        prepare_out(out)
        with OutLock(out):
            console.print(f"analyses of [bold]{study}[/] on {len(data):,} patients")
            res = run_analyses(spec, data, seed=seed, disclosure_threshold=threshold)
            public = res.write(out, threshold=threshold)
            res.write(out / "private" / "analyses", threshold=None)
        ok = res.table["error"].isna().sum()
        console.print(f"[green]✓[/] {ok:,} estimates, {len(res.failures)} failed analyses "
                      f"({res.meta['seconds']:.1f} s) → [bold]{public['json']}[/]")
        for f in res.failures:
            console.print(f"  [yellow]failed:[/] {f['analysis']} {f['outcome']} {f['exposure']} {f['model']}: {f['error']}",
                          soft_wrap=True)
