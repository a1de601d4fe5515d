"""CLI: ``hospstudy cohort STUDY.toml --data DIR --out OUT [--engine duckdb|spark]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from hospstudy.console import console


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


def register(app: typer.Typer) -> None:
    @app.command()
    def cohort(
        study_file: Path = typer.Argument(..., help="Study file (TOML), e.g. studies/spinal_metastasis.toml."),
        data: Path = typer.Option(..., "--data", help="Database folder (DPC layout: Parquet tables or CSV)."),
        out: Path = typer.Option(..., "--out", help="Output folder: private/analytic.parquet and private/attrition.csv (exact), attrition.csv (counts under the disclosure threshold suppressed), dictionary.csv."),
        engine: str = typer.Option("duckdb", "--engine", help="duckdb (embedded, default) or spark."),
        spark_master: Optional[str] = typer.Option(None, "--spark-master", help="Spark master URL (default local[2])."),
        skip_validation: bool = typer.Option(False, "--skip-validation", help="Do not validate the database first (faster; for databases already validated)."),
        revalidate: bool = typer.Option(False, "--revalidate", help="Validate even when the database's files are unchanged since they last validated clean into OUT."),
    ):
        """Build a study's analytic dataset and attrition table from a database.

        The database is validated first; a database whose files (by content hash) validated
        clean in an earlier run into the same OUT is not validated again."""
        from hospstudy.cohort.engine import ENGINES, STAGES
        from hospstudy.cohort.spec import Study
        from hospstudy.console import progress
        from hospstudy.errors import DataValidationError

        if engine not in ENGINES:
            raise typer.BadParameter(f"--engine must be one of {', '.join(ENGINES)}; got {engine!r}")
        study = Study.load(study_file)
        validated, record = (False, None) if skip_validation else _validation_record(data, out)
        validated = validated and not revalidate
        stages = list(STAGES)
        with progress() as bar:
            task = bar.add_task(f"cohort {study.name} on {engine}", total=len(stages))
            seen: list[str] = []

            def note(stage: str) -> None:
                if seen:
                    bar.advance(task)
                seen.append(stage)
                bar.update(task, description=f"cohort {study.name}: {stage}")

            try:
                result = study.build_cohort(data, engine=engine, spark_master=spark_master,
                                            validate=not (skip_validation or validated), progress=note)
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
        console.print(
            f"[green]✓[/] {len(result.analytic):,} patients; analytic dataset {paths['analytic']}, "
            f"attrition {paths['attrition_exact']} (exact; shareable with counts under "
            f"{study.report.disclosure_threshold} suppressed: {paths['attrition']}), dictionary {paths['dictionary']}"
        )
