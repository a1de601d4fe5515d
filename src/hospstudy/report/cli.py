"""CLI: hospstudy run, demo, report, check-disclosure."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hospstudy.console import console
from hospstudy.report import pipeline as _pl

_ENGINES = ("duckdb", "spark")


def _engine(value: str) -> str:
    if value not in _ENGINES:
        raise typer.BadParameter(f"must be one of {', '.join(_ENGINES)}; got {value!r}")
    return value


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

    @app.command("check-disclosure")
    def check_disclosure_cmd(
        out: Path = typer.Argument(..., help="Output folder to scan (everything except OUT/private/)."),
        threshold: int = typer.Option(10, "--threshold", min=1, help="Smallest count that may be shown (1: no suppression)."),
    ):
        """Scan an output folder for counts below the threshold and for identifiers. Exit 1 on any violation."""
        from rich.markup import escape

        from hospstudy.report.disclosure import check_disclosure

        found = check_disclosure(out, threshold=threshold)
        for v in found:
            console.print(f"[red]✗[/] {escape(str(v))}", soft_wrap=True)
        if found:
            console.print(f"[bold red]{len(found)} disclosure violation(s)[/] in {out}")
            raise typer.Exit(1)
        console.print(f"[green]✓[/] {out}: no count below {threshold} and no identifier outside private/")

    @app.command()
    def run(
        study_file: Path = typer.Argument(..., help="Study file (TOML), e.g. studies/spinal_metastasis.toml."),
        data: Path = typer.Option(..., "--data", help="Database folder (DPC layout)."),
        out: Path = typer.Option(..., "--out", help="Output folder (patient-level files only under OUT/private/)."),
        engine: str = typer.Option("duckdb", "--engine", callback=_engine, help="duckdb or spark."),
        seed: int = typer.Option(_pl.DEFAULT_SEED, "--seed", help="Seed of the analyses."),
        force: bool = typer.Option(False, "--force", help="Rebuild every stage, ignoring the cache."),
        threshold: Optional[int] = typer.Option(None, "--threshold", min=1, help="Smallest count shown (default: the study file [report] disclosure_threshold, else 10)."),
    ):
        """validate → cohort → analyses → report → check-disclosure; cached by settings and input hashes."""
        res = _pl.run_study(study_file, data, out, engine=engine, seed=seed, force=force, threshold=threshold)
        console.print(f"[bold green]report:[/] {res.report.resolve()}")
        if res.violations:
            raise typer.Exit(1)

    @app.command()
    def report(
        out: Path = typer.Argument(..., help="Output folder of an earlier `hospstudy run`."),
    ):
        """Re-render report.html, tables.xlsx and figures from the results stored in OUT."""
        from hospstudy.report.disclosure import check_disclosure
        from hospstudy.report.html import build_report, load_inputs

        inputs = load_inputs(out)
        with console.status("[bold]rendering the report…"):
            art = build_report(out)
        found = check_disclosure(out, threshold=inputs.threshold)
        for v in found:
            console.print(f"[red]✗[/] {v}", highlight=False)
        console.print(f"[bold green]report:[/] {art.html.resolve()}")
        if found:
            raise typer.Exit(1)
