"""docs/cli.md documents every command the CLI registers (regenerate with tools/cli_reference.py)."""

from pathlib import Path

from hospstudy.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_every_command_is_in_the_cli_reference():
    doc = (ROOT / "docs" / "cli.md").read_text()
    names = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]
    assert {"synth", "validate", "cohort", "analyze", "run", "demo", "report", "check-disclosure"} <= set(names)
    missing = [n for n in names if f"## `hospstudy {n}`" not in doc]
    assert not missing, f"docs/cli.md lacks {missing}: run .venv/bin/python tools/cli_reference.py"
