"""CLI: hospstudy report (re-render from OUT) and check-disclosure."""

from __future__ import annotations

from pathlib import Path

import typer

from hospstudy.console import console


def register(app: typer.Typer) -> None:
    @app.command("check-disclosure")
    def check_disclosure_cmd(
        out: Path = typer.Argument(..., help="Output folder to scan (everything except OUT/private/)."),
        threshold: int = typer.Option(10, "--threshold", min=1, help="Smallest count that may be shown (1: no suppression)."),
    ):
        """Scan an output folder for counts below the threshold and for identifiers. Exit 1 on any violation."""
        from rich.markup import escape

        from hospstudy.privacy import check_disclosure

        found = check_disclosure(out, threshold=threshold)
        for v in found:
            console.print(f"[red]✗[/] {escape(str(v))}", soft_wrap=True)
        if found:
            console.print(f"[bold red]{len(found)} disclosure violation(s)[/] in {out}")
            raise typer.Exit(1)
        console.print(f"[green]✓[/] {out}: no count below {threshold} and no identifier outside private/")

    @app.command()
    def report(
        out: Path = typer.Argument(..., help="Output folder of an earlier `hospstudy run`."),
    ):
        """Re-render report.html, tables.xlsx and figures from the results stored in OUT."""
        from hospstudy.privacy import check_disclosure
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
