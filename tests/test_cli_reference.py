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


def test_cli_reference_is_current():
    """docs/cli.md is what tools/cli_reference.py writes from today's --help texts (an option
    added or a help text changed without regenerating it fails here)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "tools" / "cli_reference.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    doc = (ROOT / "docs" / "cli.md").read_text()
    assert tool.render() == doc, "docs/cli.md is stale: run .venv/bin/python tools/cli_reference.py"
