"""CLI: ``hospstudy cohort STUDY.toml --data DIR --out OUT [--engine duckdb|spark]``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hospstudy.console import console


def register(app: typer.Typer) -> None:
    @app.command()
    def cohort(
        study_file: Path = typer.Argument(..., help="Study file (TOML), e.g. studies/spinal_metastasis.toml."),
        data: Path = typer.Option(..., "--data", help="Database folder (DPC layout: Parquet tables or CSV)."),
        out: Path = typer.Option(..., "--out", help="Output folder: private/analytic.parquet and private/attrition.csv (exact), attrition.csv (counts under the disclosure threshold suppressed), dictionary.csv."),
        engine: str = typer.Option("duckdb", "--engine", help="duckdb (embedded, default) or spark."),
        spark_master: Optional[str] = typer.Option(None, "--spark-master", help="Spark master URL (default local[2])."),
        skip_validation: bool = typer.Option(False, "--skip-validation", help="Do not validate the database first (faster; for databases already validated)."),
    ):
        """Build a study's analytic dataset and attrition table from a database."""
        from hospstudy.cohort.engine import ENGINES, STAGES
        from hospstudy.cohort.spec import Study
        from hospstudy.console import progress
        from hospstudy.errors import DataValidationError

        if engine not in ENGINES:
            raise typer.BadParameter(f"--engine must be one of {', '.join(ENGINES)}; got {engine!r}")
        study = Study.load(study_file)
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
                                            validate=not skip_validation, progress=note)
            except DataValidationError as e:
                if e.report is not None:
                    e.report.render(console)
                raise
            bar.update(task, completed=len(stages), description=f"cohort {study.name}: done")
        paths = result.write(out, threshold=study.report.disclosure_threshold)
        for stage, secs in result.timings.items():
            shown = "skipped" if (stage == "validate" and skip_validation) else f"{secs:.1f} s"
            console.print(f"  [dim]{stage}: {shown}[/]")
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
