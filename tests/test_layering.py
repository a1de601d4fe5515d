"""The package's layers, read from its own imports: a lower layer never imports a higher one.

errors, console  <  settings, privacy  <  data  <  cohort  <  models  <  report  <  study  <  run  <  cli

Every import statement counts, also those inside functions (a lazy import is still a
dependency). The only exceptions are the deprecated re-exports listed in ``DEPRECATED_SHIMS``,
each kept for one release so old import paths keep working; they go in 0.3.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "hospstudy"

LAYERS = {
    "errors": 0, "console": 0,
    "settings": 1, "privacy": 1,
    "data": 2,
    "cohort": 3,
    "models": 4,
    "report": 5,
    "study": 6,
    "run": 7,
    "cli": 8, "__main__": 8, "__init__": 8,
}

#: (importing file relative to src/hospstudy, imported top-level part): why it is allowed
DEPRECATED_SHIMS = {
    ("cohort/__init__.py", "study"): "hospstudy.cohort.Study, deprecated alias of hospstudy.Study until 0.3",
    ("report/pipeline.py", "run"): "hospstudy.report.pipeline, deprecated re-export of hospstudy.run.pipeline until 0.3",
}


def _part(path: Path, src: Path = SRC) -> str:
    """The top-level part of the package a file belongs to: 'data' for data/synth/x.py,
    'study' for study.py, '__init__' for the package's own __init__.py."""
    rel = path.relative_to(src)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path, src: Path = SRC):
    """(line, imported top-level part of hospstudy) for every import of the package in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    pkg = list(path.relative_to(src.parent).with_suffix("").parts)[:-1]  # the package holding the file
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod] if node.module or node.level else []
            if mod == "hospstudy":  # `from hospstudy import Study` imports hospstudy.Study's module
                names = [f"hospstudy.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "hospstudy" and len(parts) > 1:
                yield node.lineno, parts[1]


def _violations(src: Path = SRC) -> list[str]:
    out = []
    for path in sorted(src.rglob("*.py")):
        me = _part(path, src)
        rel = path.relative_to(src).as_posix()
        for line, other in _imports(path, src):
            if other == "__version__":
                continue
            if other not in LAYERS:
                out.append(f"{rel}:{line}: imports hospstudy.{other}, which has no layer (add it to LAYERS)")
            elif LAYERS[other] > LAYERS[me] and (rel, other) not in DEPRECATED_SHIMS:
                out.append(f"{rel}:{line}: {me} (layer {LAYERS[me]}) imports {other} (layer {LAYERS[other]})")
    return out


def test_every_part_of_the_package_has_a_layer():
    parts = {_part(p) for p in SRC.rglob("*.py")}
    assert parts - set(LAYERS) == set()


def test_no_lower_layer_imports_a_higher_one():
    assert _violations() == []


def test_the_check_catches_an_upward_import(tmp_path):
    """The test above can fail: a cohort module importing the report, and a lazy import inside a
    function, are both found."""
    pkg = tmp_path / "hospstudy"
    (pkg / "cohort").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cohort" / "__init__.py").write_text("")
    (pkg / "cohort" / "engine.py").write_text(
        "from hospstudy.data import readers\n"
        "from ..report.tables import safe_attrition\n"
        "def f():\n    import hospstudy.run.pipeline\n"
    )
    found = _violations(pkg)
    assert found == [
        "cohort/engine.py:2: cohort (layer 3) imports report (layer 5)",
        "cohort/engine.py:4: cohort (layer 3) imports run (layer 7)",
    ]


def test_deprecated_import_paths_still_work():
    import importlib

    from hospstudy.privacy import check_disclosure
    from hospstudy.run.pipeline import run_study
    from hospstudy.study import Study

    for mod in ("hospstudy.report.disclosure", "hospstudy.report.pipeline"):
        import sys

        sys.modules.pop(mod, None)
    with pytest.warns(DeprecationWarning, match="moved to hospstudy.privacy"):
        old_disclosure = importlib.import_module("hospstudy.report.disclosure")
    with pytest.warns(DeprecationWarning, match="moved to hospstudy.run.pipeline"):
        old_pipeline = importlib.import_module("hospstudy.report.pipeline")
    assert old_disclosure.check_disclosure is check_disclosure
    assert old_pipeline.run_study is run_study
    with pytest.warns(DeprecationWarning, match="moved to hospstudy.Study"):
        from hospstudy.cohort import Study as OldStudy
    assert OldStudy is Study
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from hospstudy import Study as NewStudy
    assert NewStudy is Study
