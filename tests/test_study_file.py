"""Study files: both example studies load; every problem of a broken file is reported at once,
each naming its field path and what is allowed; code-list syntax; exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hospstudy import Study
from hospstudy.cohort.codelists import matches_any, parse_entry, resolve
from hospstudy.errors import StudyFileError

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "studies"

MINIMAL = """
[study]
name = "mini"

[codelists]
spine_surgery = ["K1422"]
mets = ["C795"]

[cohort.index]
procedures = "spine_surgery"

[[cohort.steps]]
name = "mets"
include = { table = "diagnoses", codes = "mets" }

[outcomes.died]
kind = "flag"
when = { field = "discharge_to", eq = "death" }
"""


def _write(tmp_path, text, name="study.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def _problems(tmp_path, text):
    with pytest.raises(StudyFileError) as e:
        Study.load(_write(tmp_path, text))
    return e.value.problems


@pytest.mark.parametrize("name", ["spinal_metastasis.toml", "hip_fracture.toml"])
def test_example_studies_load(name):
    s = Study.load(STUDIES / name)
    assert s.output_columns[:5] == ["patient_id", "admission_id", "hospital_id", "fiscal_year", "surgery_date"]
    assert s.analyses is not None


def test_flagship_definitions():
    s = Study.load(STUDIES / "spinal_metastasis.toml")
    assert {str(p) for p in s.codelists["spine_surgery"]} == {
        "K1421", "K1422", "K1423", "K1424", "K1425", "K1426", "K134*", "K142-4", "K136", "K136-2",
    }
    spine = s.codelists["spine_surgery"]
    for code in ("K1341", "K1342", "K134-2", "K142-4", "K136-2"):
        assert matches_any(spine, code), code
    assert not matches_any(spine, "K0461")
    assert not matches_any(s.codelists["complications"], "L89")
    # the analyses section was validated by hospstudy.models.spec
    from hospstudy.models import spec

    assert isinstance(s.analyses, spec.AnalysesSpec)
    assert set(s.analyses.columns()) <= set(s.output_columns)


def test_unknown_code_list_names_path_and_known_lists(tmp_path):
    text = MINIMAL.replace('codes = "mets"', 'codes = "spine_surgry"')
    problems = _problems(tmp_path, text)
    assert problems == ["cohort.steps[0].include.codes: unknown code list 'spine_surgry'; known: mets, spine_surgery"]


def test_every_problem_at_once(tmp_path):
    text = """
    [study]
    name = "broken"
    colour = "blue"

    [codelists]
    good = ["C795"]
    bad_range = ["C26-C00"]
    not_a_code = ["c79.5x!"]
    loop_a = ["@loop_b"]
    loop_b = ["@loop_a"]
    dangling = ["@nowhere"]

    [cohort.index]
    procedures = "spine"

    [[cohort.steps]]
    name = "one"
    include = { table = "diagnoses", codes = "good", roles = ["primary"] }

    [[cohort.steps]]
    name = "two"
    include = { field = "agee", ge = 18 }

    [[cohort.steps]]
    name = "three"

    [covariates.x]
    kind = "histogram"

    [covariates.y]
    kind = "cut"
    of = "age"
    breaks = [10, 5]
    labels = ["a"]

    [outcomes.z]
    kind = "flag"
    when = { field = "later", eq = 1 }

    [outcomes.later]
    kind = "days_between"
    start = "admit_date"
    end = "discharge_date"

    [analyses]
    outcomes = ["z"]
    exposures = ["y"]
    models = ["probit"]

    [extras]
    a = 1
    """
    problems = _problems(tmp_path, text)
    joined = "\n".join(problems)
    expected_fragments = [
        "study.colour: unknown key; allowed keys here:",
        "codelists.bad_range[0]: entry 'C26-C00': the range's first code sorts after its last",
        "codelists.not_a_code[0]: entry 'c79.5x!' is not a code",
        "refers back to itself (loop_",
        "codelists.dangling[0]: unknown code list '@nowhere'",
        "cohort.index.procedures: unknown code list 'spine'",
        "cohort.steps[0].include.roles[0]: Input should be 'main', 'trigger', 'resource', 'comorbidity' or 'complication'",
        "cohort.steps[1].include.field: unknown field 'agee'; allowed:",
        "cohort.steps[2]: a step needs exactly one of 'include', 'exclude' or 'first_per_patient = true'",
        "covariates.x.kind: unknown kind 'histogram'; allowed: field, volume,",
        "covariates.y: breaks [10.0, 5.0] must increase strictly",
        "outcomes.z: unknown column 'later'",
        "analyses.models[0]: Input should be 'mixed_logit', 'gee_logit' or 'logit'",
        "extras: unknown section; allowed: study, codelists, cohort, exposures, covariates, outcomes, analyses",
    ]
    missing = [f for f in expected_fragments if f not in joined]
    assert not missing, f"missing {missing} in:\n{joined}"
    with pytest.raises(StudyFileError) as e:
        Study.load(_write(tmp_path, text))
    assert e.value.exit_code == 2 and str(len(problems)) in str(e.value)


def test_analyses_columns_must_exist(tmp_path):
    text = MINIMAL + """
    [analyses]
    outcomes = ["died"]
    exposures = ["cancer_centre"]
    """
    problems = _problems(tmp_path, text)
    assert any(p.startswith("analyses.exposures: column 'cancer_centre' is not in the analytic dataset") for p in problems)
    # the volume's year column is checked when the study names it (the default may be absent)
    assert not any(p.startswith("analyses.volume.year_column") for p in problems)
    problems = _problems(tmp_path, text.replace('["cancer_centre"]', '["cancer_centre", "volume_per50"]') + """
    [analyses.volume]
    year_column = "fy"
    """)
    assert any(p.startswith("analyses.volume.year_column: column 'fy' is not in the analytic dataset") for p in problems)


def test_toml_syntax_and_missing_file(tmp_path):
    with pytest.raises(StudyFileError, match="not valid TOML"):
        Study.load(_write(tmp_path, "[study\nname = 1"))
    with pytest.raises(StudyFileError, match="no such study file"):
        Study.load(tmp_path / "nope.toml")


def test_code_list_file_errors_name_the_file(tmp_path):
    (tmp_path / "codes.csv").write_text("list,code\nmi,I21*\n", encoding="utf-8")
    ok = MINIMAL.replace('mets = ["C795"]', 'mets = ["C795"]\nmi = { file = "codes.csv", list = "mi" }')
    Study.load(_write(tmp_path, ok))
    bad = MINIMAL.replace('mets = ["C795"]', 'mets = ["C795"]\nmi = { file = "codes.csv", list = "chf" }')
    problems = _problems(tmp_path, bad)
    assert len(problems) == 1 and problems[0].startswith("codelists.mi.file:") and "no rows with list = 'chf'" in problems[0]


def test_cli_bad_study_exit_2_no_traceback(tmp_path):
    p = _write(tmp_path, MINIMAL.replace('codes = "mets"', 'codes = "spine_surgry"'))
    (tmp_path / "db").mkdir()
    r = subprocess.run([sys.executable, "-m", "hospstudy.cli", "cohort", str(p), "--data", str(tmp_path / "db"),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "cohort.steps[0].include.codes: unknown code list 'spine_surgry'" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "entry,kind,yes,no",
    [
        ("C795", "exact", ["C795"], ["C7950", "C79"]),
        ("C78*", "prefix", ["C78", "C780", "C7880"], ["C79", "C7"]),
        ("C00-C26", "range", ["C00", "C001", "C269", "C26"], ["C27", "B99", "C270"]),
        ("I60-I64", "range", ["I600", "I64"], ["I65", "I59"]),
        ("K142-4", "exact", ["K142-4"], ["K1424", "K142"]),  # a K-code branch, never a range
        ("K136-2", "exact", ["K136-2"], ["K136"]),
        ("c79.5", "exact", ["C795"], []),
        ("620008001", "exact", ["620008001"], ["62000800"]),
    ],
)
def test_code_list_entries(entry, kind, yes, no):
    p = parse_entry(entry)
    assert p.kind == kind
    assert all(p.matches(c) for c in yes) and not any(p.matches(c) for c in no)


def test_code_list_engine_predicate_matches_reference():
    """The Ibis predicate (what the engine runs) agrees with the pure-Python reference."""
    import ibis
    import pyarrow as pa

    from hospstudy.cohort.codelists import predicate

    pats = resolve({"a": ["C00-C26", "C78*", "K142-4", "@b"], "b": ["I21", "E102-E105"]})[0]["a"]
    codes = ["C00", "C269", "C27", "C780", "K142-4", "K1424", "I21", "I210", "E103", "E106", "E10"]
    t = ibis.memtable(pa.table({"code": codes}))
    got = t.mutate(m=predicate(t.code, pats)).to_pandas().m.tolist()
    assert got == [matches_any(pats, c) for c in codes]
    assert got == [True, True, False, True, True, False, True, False, True, False, False]


def test_report_section_default_and_value(tmp_path):
    assert Study.load(_write(tmp_path, MINIMAL)).report.disclosure_threshold == 10
    s = Study.load(_write(tmp_path, MINIMAL + "\n[report]\ndisclosure_threshold = 5\n"))
    assert s.report.disclosure_threshold == 5


@pytest.mark.parametrize("value, message", [
    ("0", "report.disclosure_threshold: Input should be greater than or equal to 1"),
    ('"10"', "report.disclosure_threshold: Input should be a valid integer"),
    ("2.5", "report.disclosure_threshold: Input should be a valid integer"),
    ("true", "report.disclosure_threshold: Input should be a valid integer"),
])
def test_report_bad_threshold_names_field_path(tmp_path, value, message):
    problems = _problems(tmp_path, MINIMAL + f"\n[report]\ndisclosure_threshold = {value}\n")
    assert problems == [message]


def test_report_unknown_key_is_reported_with_the_others(tmp_path):
    text = MINIMAL.replace('procedures = "spine_surgery"', 'procedures = "spine_surgry"')
    problems = _problems(tmp_path, text + "\n[report]\nthreshold = 5\n")
    assert "report.threshold: unknown key; allowed keys here: disclosure_threshold, labels, sections, table1_variables" in problems
    assert any(p.startswith("cohort.index.procedures: unknown code list 'spine_surgry'") for p in problems)


class _Resolved(Exception):
    pass


def _threshold_run_study_uses(monkeypatch, tmp_path, study_text):
    """The threshold run_study settles on: the step after it (hashing the inputs) is replaced
    by one that reads the caller's ``threshold`` and stops the run there."""
    from hospstudy.run import pipeline

    seen = {}

    def stop(*args, **kwargs):
        seen["threshold"] = sys._getframe(1).f_locals["threshold"]
        raise _Resolved

    monkeypatch.setattr(pipeline, "input_file_hashes", stop)
    (tmp_path / "db").mkdir(exist_ok=True)
    with pytest.raises(_Resolved):
        pipeline.run_study(_write(tmp_path, study_text), tmp_path / "db", tmp_path / "out")
    return seen["threshold"]


def test_pipeline_uses_the_report_threshold(monkeypatch, tmp_path):
    assert _threshold_run_study_uses(monkeypatch, tmp_path, MINIMAL + "\n[report]\ndisclosure_threshold = 7\n") == 7
    assert _threshold_run_study_uses(monkeypatch, tmp_path, MINIMAL) == 10


def test_pipeline_rejects_a_bad_report_threshold(tmp_path):
    from hospstudy.run.pipeline import run_study

    (tmp_path / "db").mkdir()
    with pytest.raises(StudyFileError) as e:
        run_study(_write(tmp_path, MINIMAL + "\n[report]\ndisclosure_threshold = -3\n"), tmp_path / "db", tmp_path / "out")
    assert e.value.problems == ["report.disclosure_threshold: Input should be greater than or equal to 1"]
