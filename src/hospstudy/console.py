"""Shared terminal output: one rich console on stderr for progress and messages, so that
stdout stays clean for machine-readable output (``--json``)."""

from __future__ import annotations

import contextlib
import os
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def progress(transient: bool = False) -> Progress:
    """A rich progress display for long work; quiet when stderr is not a terminal and
    HOSPSTUDY_PROGRESS is not set (CI logs stay readable)."""
    disable = not (console.is_terminal or os.environ.get("HOSPSTUDY_PROGRESS"))
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
        disable=disable,
    )


@contextlib.contextmanager
def stage(name: str):
    """Announce a pipeline stage and its duration."""
    import time

    t0 = time.perf_counter()
    with console.status(f"[bold]{name}…"):
        yield
    console.print(f"[green]✓[/] {name} [dim]({time.perf_counter() - t0:.1f} s)[/]")


def fail(message: str, code: int) -> None:
    from rich.markup import escape

    # Messages quote user input (field paths like steps[2], code lists): never read them as markup.
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)
