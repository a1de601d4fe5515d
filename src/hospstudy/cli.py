"""The ``hospstudy`` command line. Thin: each area registers its own commands.

Exit codes: 0 success, 1 findings or failure (invalid data, disclosure violation),
2 unusable input (bad arguments, malformed study file, unreadable database).
"""

from __future__ import annotations

import importlib

import typer

from hospstudy import __version__
from hospstudy.console import fail
from hospstudy.errors import HospstudyError

app = typer.Typer(
    name="hospstudy",
    help="Does where a patient is treated change how the patient does? "
    "Hospital-outcome studies from administrative data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool):
    if value:
        typer.echo(f"hospstudy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
):
    pass


# Each module defines ``register(app)``; a module that is not there yet is skipped so the
# CLI works while areas are built.
for _mod in ("hospstudy.data.cli", "hospstudy.run.cli", "hospstudy.report.cli"):
    try:
        _m = importlib.import_module(_mod)
    except ModuleNotFoundError as e:
        if e.name != _mod:
            raise
        continue
    _m.register(app)


def main() -> None:
    try:
        app()
    except HospstudyError as e:
        fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)


if __name__ == "__main__":
    main()
