"""Hardening of the run orchestration (issue 11): each class of bad input or interrupted run gives a
correct result or one named error (exit 2 before any work, or exit 1 for findings), never a
traceback and never a silently wrong output. One test per class, named after it.

The runs here use the hand-made tiny database of test_cohort_tinydb.py; the analyses and the
report are replaced by stand-ins (these tests are about the orchestration, not the models).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hospstudy.errors import CohortEmptyError, DataUnusableError, InputError, StudyFileError

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = ROOT / "studies" / "spinal_metastasis.toml"
sys.path.insert(0, str(Path(__file__).parent))
from test_cohort_tinydb import write_tiny_db  # noqa: E402


class _Art:
    def __init__(self, html):
        self.html = html


@pytest.fixture
def stubs(monkeypatch):
    """The analyses and the report replaced by stand-ins; counts how often each ran."""
    import hospstudy.models.analyses as analyses_mod
    import hospstudy.report.html as html_mod

    calls = {"analyses": 0, "report": 0}

    class Stored:
        def to_dict(self):
            return {"table": [], "extras": {}, "meta": {}}

    def runner(study, analytic, seed=None):
        calls["analyses"] += 1
        return Stored()

    def build_report(out):
        calls["report"] += 1
        (Path(out) / "report.html").write_text("<html><body>stand-in</body></html>")
        import openpyxl

        openpyxl.Workbook().save(Path(out) / "tables.xlsx")
        return _Art(Path(out) / "report.html")

    monkeypatch.setattr(analyses_mod, "run_analyses", runner)
    monkeypatch.setattr(html_mod, "build_report", build_report)
    return calls


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_db(tmp_path / "db")


@pytest.fixture
def variant(tmp_path):
    """The flagship with one piece of text replaced, in a copy of the studies folder (its code-list
    files resolve as beside the original)."""
    import shutil

    studies = tmp_path / "studies"
    shutil.copytree(FLAGSHIP.parent, studies)
    text = FLAGSHIP.read_text()

    def make(old, new, name="variant.toml"):
        assert old in text, old
        path = studies / name
        path.write_text(text.replace(old, new, 1))
        return path

    return make


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "hospstudy", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


# -- class 5 ----------------------------------------------------------------------------------
def test_class05_out_inside_the_database_is_refused(tiny, stubs):
    from hospstudy.run.pipeline import run_study

    for out in (tiny / "out", tiny / "admissions" / "out"):
        before = sorted(p.relative_to(tiny) for p in tiny.rglob("*"))
        with pytest.raises(InputError, match="inside the database folder"):
            run_study(FLAGSHIP, tiny, out)
        assert sorted(p.relative_to(tiny) for p in tiny.rglob("*")) == before  # nothing written into the input
    assert stubs == {"analyses": 0, "report": 0}
    r = _cli("cohort", FLAGSHIP, "--data", tiny, "--out", tiny / "x")
    assert r.returncode == 2 and "inside the database folder" in r.stderr and "Traceback" not in r.stderr


# -- class 6 ----------------------------------------------------------------------------------
def test_class06_a_second_run_into_the_same_out_stops(tiny, tmp_path, stubs):
    from hospstudy.run.outdir import OutLock
    from hospstudy.run.pipeline import run_study

    out = tmp_path / "out"
    with OutLock(out):
        with pytest.raises(InputError, match=rf"another hospstudy run is writing .*process {os.getpid()}"):
            run_study(FLAGSHIP, tiny, out)
        r = _cli("cohort", FLAGSHIP, "--data", tiny, "--out", out)
        assert r.returncode == 2 and f"process {os.getpid()}" in r.stderr and "run.lock" in r.stderr
    # released: the run goes through, and releases it in turn
    assert run_study(FLAGSHIP, tiny, out).stages["cohort"] == "ran"
    with OutLock(out):
        pass


def test_class06_the_lock_dies_with_its_process(tmp_path):
    """A killed run leaves no stale lock: the operating system releases a flock with the process."""
    out = tmp_path / "out"
    code = ("import sys, time; from hospstudy.run.outdir import OutLock\n"
            f"l = OutLock({str(out)!r}).__enter__(); print('locked', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        from hospstudy.run.outdir import OutLock

        with pytest.raises(InputError, match=f"process {p.pid}"):
            OutLock(out).__enter__()
    finally:
        p.kill()
        p.wait()
    with OutLock(out):
        pass


# -- class 7 ----------------------------------------------------------------------------------
def test_class07_a_run_killed_between_writing_and_recording_is_not_trusted(tiny, tmp_path, stubs, variant, monkeypatch):
    import hospstudy.run.pipeline as pl

    out = tmp_path / "out"
    first = pl.run_study(FLAGSHIP, tiny, out)
    assert first.stages["cohort"] == "ran"
    analytic_a = pd.read_parquet(out / "private" / "analytic.parquet")

    # another study's cohort is written into the same OUT, and the run dies before recording it
    other = variant("ge = 18", "ge = 60", "older.toml")
    real = pl.require_patients

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pl, "require_patients", killed)
    with pytest.raises(KeyboardInterrupt):
        pl.run_study(other, tiny, out)
    assert len(pd.read_parquet(out / "private" / "analytic.parquet")) < len(analytic_a)
    monkeypatch.setattr(pl, "require_patients", real)

    # the first study again: its cohort must be rebuilt, not taken from the killed run's files
    again = pl.run_study(FLAGSHIP, tiny, out)
    assert again.stages["cohort"] == "ran"
    pd.testing.assert_frame_equal(pd.read_parquet(out / "private" / "analytic.parquet"), analytic_a)
    assert pl.run_study(FLAGSHIP, tiny, out).stages["cohort"] == "cached"


def test_class07_a_cached_output_changed_on_disk_is_rebuilt(tiny, tmp_path, stubs):
    from hospstudy.run.pipeline import run_study

    out = tmp_path / "out"
    run_study(FLAGSHIP, tiny, out)
    analytic = out / "private" / "analytic.parquet"
    good = analytic.read_bytes()
    analytic.write_bytes(good[: len(good) // 2])  # truncated, same name, newer mtime
    res = run_study(FLAGSHIP, tiny, out)
    assert res.stages["cohort"] == "ran" and analytic.read_bytes() == good
    # the analyses' raw results edited by hand: not trusted either
    raw = out / "private" / "analyses" / "results.json"
    raw.write_text(raw.read_text().replace("{", "{ ", 1))
    assert run_study(FLAGSHIP, tiny, out).stages["analyses"] == "ran"


# -- class 10 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe[study]\n", "not UTF-8"),
    (bytes(range(256)), "not UTF-8"),
    (None, "is a folder"),
    ('codelists = "oops"\n[study]\nname = "x"\n', "codelists: must be a table"),
    ('[study]\nname = "x"\n[codelists.a]\nfile = 5\n', "codelists.a.file"),
])
def test_class10_run_reads_the_study_file_like_every_command(tiny, tmp_path, stubs, content, message):
    from hospstudy.run.pipeline import run_study

    study = tmp_path / "study.toml"
    if content is None:
        study.mkdir()
    elif isinstance(content, bytes):
        study.write_bytes(content)
    else:
        study.write_text(content)
    out = tmp_path / "out"
    with pytest.raises(StudyFileError, match=message):
        run_study(study, tiny, out)
    assert not out.exists()  # stopped before any work
    for cmd in (["run", study, "--data", tiny, "--out", out], ["cohort", study, "--data", tiny, "--out", out]):
        r = _cli(*cmd)
        assert r.returncode == 2 and "Traceback" not in r.stderr and message.split(":")[0] in r.stderr, r.stderr


# -- class 11 ---------------------------------------------------------------------------------
def test_class11_out_is_a_file_or_cannot_be_written(tiny, tmp_path, stubs):
    from hospstudy.run.pipeline import run_study

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="existing file, not a folder"):
        run_study(FLAGSHIP, tiny, f)
    with pytest.raises(InputError, match="cannot write the output folder"):
        run_study(FLAGSHIP, tiny, f / "below")  # a folder under a file cannot be made
    assert stubs == {"analyses": 0, "report": 0}
    r = _cli("run", FLAGSHIP, "--data", tiny, "--out", f)
    assert r.returncode == 2 and "existing file" in r.stderr and "Traceback" not in r.stderr


def test_class11_corrupt_cache_state_is_an_empty_cache(tiny, tmp_path, stubs):
    from hospstudy.run.pipeline import run_study

    out = tmp_path / "out"
    run_study(FLAGSHIP, tiny, out)
    state = out / "private" / "cache" / "state.json"
    for junk in ("{not json", "[1, 2]", json.dumps({"version": 1, "keys": [1]}), json.dumps({"version": 1, "keys": {"cohort": 5}}),
                 "\udcff"):
        state.write_text(junk, errors="surrogateescape")
        res = run_study(FLAGSHIP, tiny, out)
        assert res.stages["cohort"] == "ran" and res.violations == []


def test_class11_unreadable_input_file_names_the_file(tiny, tmp_path, stubs, monkeypatch):
    import builtins

    from hospstudy.run.pipeline import run_study

    real_open = builtins.open
    blocked = tiny / "admissions.parquet"

    def guarded(path, *a, **k):
        if Path(path) == blocked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", guarded)
    with pytest.raises(DataUnusableError, match=rf"{blocked.name}: cannot read file \(Permission denied\)"):
        run_study(FLAGSHIP, tiny, tmp_path / "out")


def test_class11_deep_nesting_and_huge_code_list_fields(tmp_path, variant):
    from hospstudy import Study

    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 600 + "]" * 600 + "\n")
    with pytest.raises(StudyFileError, match="nested deeper"):
        Study.load(deep)
    deep.write_text("a = " + "[" * 150 + "]" * 150 + "\n")  # parses, but deeper than any study needs
    with pytest.raises(StudyFileError, match="nested deeper than 100 levels"):
        Study.load(deep)
    study = variant("[codelists]\n", '[codelists]\nhuge = { file = "codes.csv" }\n', "huge.toml")
    (study.parent / "codes.csv").write_text("code\n" + "C" * 200_000 + "\n")
    with pytest.raises(StudyFileError, match=r"codelists.huge.file: .*codes.csv: a row after line 1 is not readable CSV \(field larger than field limit"):
        Study.load(study)
    r = _cli("cohort", study, "--data", tmp_path, "--out", tmp_path / "o")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "is not readable CSV" in r.stderr


# -- class 13 (the run's part) ----------------------------------------------------------------
def test_class13_run_shows_the_validation_findings(tiny, tmp_path, stubs):
    import pyarrow.parquet as pq

    adm = tiny / "admissions.parquet"
    t = pq.read_table(adm).to_pandas()
    t.loc[0, "sex"] = "X"
    t.to_parquet(adm, index=False)
    r = _cli("run", FLAGSHIP, "--data", tiny, "--out", tmp_path / "out")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "see the findings above" in r.stderr and "sex" in r.stderr and "'X'" in r.stderr


# -- class 14 ---------------------------------------------------------------------------------
def test_class14_reversed_ranges_and_quoted_numbers_are_rejected(tmp_path, variant):
    from hospstudy import Study

    with pytest.raises(StudyFileError, match=r"between \[2020, 2012\]: the first value must not be greater"):
        Study.load(variant("between = [2012, 2020]", "between = [2020, 2012]", "reversed.toml"))
    with pytest.raises(StudyFileError, match=r"'age' is a number; write '18' without quotes"):
        Study.load(variant("ge = 18", 'ge = "18"', "quoted.toml"))


def test_class14_a_step_that_selects_nobody_is_exit_1_naming_it(tiny, tmp_path, stubs, variant):
    from hospstudy.run.pipeline import run_study

    typo = variant('codes = ["C795"]', 'codes = ["C759"]', "typo.toml")
    with pytest.raises(CohortEmptyError, match=r"step 2 'spinal_metastasis' removed the last \d+"):
        run_study(typo, tiny, tmp_path / "out")
    assert stubs == {"analyses": 0, "report": 0}
    checked = pd.read_csv(tmp_path / "out" / "code_list_check.csv")
    assert {"table": "diagnoses", "code_list": "spinal_metastasis", "entry": "C759"} in checked.to_dict("records")
    r = _cli("cohort", typo, "--data", tiny, "--out", tmp_path / "out2")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "code list 'spinal_metastasis' matches no row of diagnoses: C759" in r.stderr
    assert "step 2 'spinal_metastasis' removed the last" in r.stderr


def test_class14_unmatched_entries_agree_with_the_reference_matcher():
    """The bisection lookup of unmatched_codes finds exactly the entries Pattern.matches finds."""
    import random

    import ibis

    from hospstudy.cohort import codelists as cl
    from hospstudy.cohort.engine import unmatched_codes

    rng = random.Random(7)
    codes = sorted({rng.choice("CEIKZ") + f"{rng.randrange(100):02d}" + rng.choice(["", "0", "1", "9", "A"]) for _ in range(300)})
    entries = [rng.choice(codes) for _ in range(10)] + ["C999", "E1*", "E9*", "C00-C26", "I60-I69", "K10-K105", "Z99A", "I22*"]
    lists, problems = cl.resolve({"x": entries})
    assert not problems

    class Cond:
        def __init__(self):
            self.table, self.codes = "diagnoses", "x"

        def walk(self):
            yield self

    class FakeStudy:
        codelists = lists

        class cohort:
            class index:
                procedures = "x"

            steps = ()

        columns = {}

    t = ibis.memtable({"icd10": codes})
    got = unmatched_codes(FakeStudy, {"procedures": ibis.memtable({"proc_code": codes}), "diagnoses": t},
                          lambda e: e.to_pyarrow())
    want = {str(p) for p in lists["x"] if not any(p.matches(c) for c in codes)}
    assert set(got["entry"]) == want and want  # some entries match nothing, and exactly those are found
