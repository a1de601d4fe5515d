"""Every validation rule, caught on a hand-broken copy of the tiny database.

Each case breaks one rule and states the finding it must give: rule, table, column, count,
and the (file, row) of the examples (rows are 1-based within the file). The other findings
must be exactly the ones listed, so a rule that fires by accident also fails the test.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from hospstudy.data.validate import RULES, validate_database
from test_validate_fixtures import tiny_rows, write_db

D = dt.date


def _dup_admission(r):
    r["admissions"].append(dict(r["admissions"][0]))  # row 7 repeats A1


def _set(table, index, **values):
    def apply(r):
        r[table][index].update(values)
    return apply


def _append(table, row):
    def apply(r):
        r[table].append(row)
    return apply


def _drop_facility_fy2014_102(r):
    r["facilities"] = [f for f in r["facilities"] if not (f["hospital_id"] == 102 and f["fiscal_year"] == 2014)]


def _drop_column(table, column):
    def apply(r):
        for row in r[table]:
            row.pop(column)
    return apply


# (id, mutation, types override, expected finding (rule, table, column, count, [(file, row)]),
#  other findings allowed as set of rules)
CASES = [
    ("unique_admission_id", _dup_admission, None,
     ("unique_admission_id", "admissions", "admission_id", 2, [("admissions.parquet", 1), ("admissions.parquet", 7)]),
     {"overlapping_stays"}),
    ("not_null", _set("admissions", 2, sex=None), None,
     ("not_null", "admissions", "sex", 1, [("admissions.parquet", 3)]), set()),
    ("sex", _set("admissions", 0, sex="male"), None,
     ("allowed_values", "admissions", "sex", 1, [("admissions.parquet", 1)]), set()),
    ("jcs", _set("admissions", 5, jcs=5), None,
     ("allowed_values", "admissions", "jcs", 1, [("admissions.parquet", 6)]), set()),
    ("discharge_to", _set("admissions", 1, discharge_to="hospice"), None,
     ("allowed_values", "admissions", "discharge_to", 1, [("admissions.parquet", 2)]), set()),
    ("spinal_level", _set("admissions", 0, spinal_level="neck"), None,
     ("allowed_values", "admissions", "spinal_level", 1, [("admissions.parquet", 1)]), set()),
    ("role", _set("diagnoses", 9, role="postop"), None,
     ("allowed_values", "diagnoses", "role", 1, [("diagnoses.parquet", 10)]), set()),
    ("kind", _set("billing", 2, kind="rehab"), None,
     ("allowed_values", "billing", "kind", 1, [("billing.parquet", 3)]), set()),
    ("age_high", _set("admissions", 5, age=121), None,
     ("age_range", "admissions", "age", 1, [("admissions.parquet", 6)]), set()),
    ("age_negative", _set("admissions", 0, age=-1), None,
     ("age_range", "admissions", "age", 1, [("admissions.parquet", 1)]), set()),
    ("admission_facility", _set("admissions", 0, hospital_id=103), None,
     ("admission_facility", "admissions", "hospital_id", 1, [("admissions.parquet", 1)]), set()),
    # A2 is admitted 31 March 2015 (FY2014), A3 on 1 April 2015 (FY2015): only A2 loses its row.
    ("admission_facility_fiscal_year_edge", _drop_facility_fy2014_102, None,
     ("admission_facility", "admissions", "hospital_id", 1, [("admissions.parquet", 2)]), set()),
    ("duplicate_facility", lambda r: r["facilities"].append(dict(r["facilities"][0])), None,
     ("duplicate_facility", "facilities", None, 2, [("facilities.parquet", 1), ("facilities.parquet", 5)]), set()),
    ("diagnosis_admission_exists", _append("diagnoses", {"admission_id": "A9", "icd10": "C795", "role": "main", "suspected": False}), None,
     ("admission_exists", "diagnoses", "admission_id", 1, [("diagnoses.parquet", 11)]), set()),
    ("procedure_admission_exists",
     _append("procedures", {"admission_id": "A9", "proc_code": "K1422", "proc_date": D(2015, 1, 12)}), None,
     ("admission_exists", "procedures", "admission_id", 1, [("procedures.parquet", 6)]), set()),
    ("billing_admission_exists", _set("billing", 0, admission_id="a1"), None,
     ("admission_exists", "billing", "admission_id", 1, [("billing.parquet", 1)]), set()),
    ("discharge_before_admit", _set("admissions", 4, discharge_date=D(2016, 1, 31)), None,
     ("discharge_before_admit", "admissions", "discharge_date", 1, [("admissions.parquet", 5)]), set()),
    ("proc_before_admit", _set("procedures", 0, proc_date=D(2015, 1, 9)), None,
     ("proc_date_in_stay", "procedures", "proc_date", 1, [("procedures.parquet", 1)]), set()),
    ("proc_after_discharge", _set("procedures", 2, proc_date=D(2015, 5, 3)), None,
     ("proc_date_in_stay", "procedures", "proc_date", 1, [("procedures.parquet", 3)]), set()),
    ("billing_in_stay", _set("billing", 3, service_date=D(2015, 5, 3)), None,
     ("billing_in_stay", "billing", "service_date", 1, [("billing.parquet", 4)]), set()),
    ("icd10_dot", _set("diagnoses", 0, icd10="C79.5"), None,
     ("icd10_syntax", "diagnoses", "icd10", 1, [("diagnoses.parquet", 1)]), set()),
    ("icd10_lowercase", _set("diagnoses", 4, icd10="i219"), None,
     ("icd10_syntax", "diagnoses", "icd10", 1, [("diagnoses.parquet", 5)]), set()),
    ("kcode_space", _set("procedures", 0, proc_code="K 1422"), None,
     ("kcode_syntax", "procedures", "proc_code", 1, [("procedures.parquet", 1)]), set()),
    ("kcode_no_k", _set("procedures", 4, proc_code="136-2"), None,
     ("kcode_syntax", "procedures", "proc_code", 1, [("procedures.parquet", 5)]), set()),
    ("adl_length", _set("admissions", 0, adl_adm="231213222"), None,
     ("adl_syntax", "admissions", "adl_adm", 1, [("admissions.parquet", 1)]), set()),
    # eating has levels 0-2: a 3 there is out of range; a 9 anywhere is 'unknown' and fine.
    ("adl_level", _set("admissions", 2, adl_adm="3312132222", adl_dis="9312132229"), None,
     ("adl_syntax", "admissions", "adl_adm", 1, [("admissions.parquet", 3)]), set()),
    ("missing_column", _drop_column("admissions", "emergency"), None,
     ("missing_column", "admissions", "emergency", 1, [("admissions.parquet", None)]), set()),
    ("column_type", None, {"facilities": {"cancer_center": pa.float64()}},
     ("column_type", "facilities", "cancer_center", 1, [("facilities.parquet", None)]), set()),
    ("value_type", _set("admissions", 1, age="seventy"), {"admissions": {"age": pa.string()}},
     ("value_type", "admissions", "age", 1, [("admissions.parquet", 2)]), {"castable_type"}),
    ("value_type_int_overflow", _set("admissions", 3, age=40000), {"admissions": {"age": pa.int32()}},
     ("value_type", "admissions", "age", 1, [("admissions.parquet", 4)]), {"castable_type"}),
    ("value_type_date", _set("billing", 1, service_date="2015-02-30"), {"billing": {"service_date": pa.string()}},
     ("value_type", "billing", "service_date", 1, [("billing.parquet", 2)]), {"castable_type"}),
    # warnings
    ("castable_type", None, {"admissions": {"hospital_id": pa.int64()}},
     ("castable_type", "admissions", "hospital_id", 1, [("admissions.parquet", None)]), set()),
    ("stay_over_365", _set("admissions", 4, discharge_date=D(2017, 3, 1)), None,
     ("stay_over_365", "admissions", "discharge_date", 1, [("admissions.parquet", 5)]), set()),
    ("overlapping_stays", _set("admissions", 3, admit_date=D(2015, 2, 1)), None,
     ("overlapping_stays", "admissions", "admit_date", 1, [("admissions.parquet", 4)]), set()),
    ("patient_sex_inconsistent", _set("admissions", 3, sex="F"), None,
     ("patient_sex_inconsistent", "admissions", "sex", 2, [("admissions.parquet", 1), ("admissions.parquet", 4)]), set()),
    ("bmi_implausible", _set("admissions", 0, height_cm=150.0, weight_kg=200.0), None,
     ("bmi_implausible", "admissions", None, 1, [("admissions.parquet", 1)]), set()),
    ("height_implausible", _set("admissions", 5, height_cm=16.5), None,
     ("height_implausible", "admissions", "height_cm", 1, [("admissions.parquet", 6)]), {"bmi_implausible"}),
    ("weight_implausible", _set("admissions", 1, weight_kg=600.0), None,
     ("weight_implausible", "admissions", "weight_kg", 1, [("admissions.parquet", 2)]), {"bmi_implausible"}),
    ("main_diagnosis_none", _set("diagnoses", 4, role="resource"), None,
     ("main_diagnosis_count", "admissions", "admission_id", 1, [("admissions.parquet", 3)]), set()),
    ("main_diagnosis_two", _set("diagnoses", 1, role="main"), None,
     ("main_diagnosis_count", "admissions", "admission_id", 1, [("admissions.parquet", 1)]), set()),
    ("beds_implausible", _set("facilities", 2, beds=5), None,
     ("beds_implausible", "facilities", "beds", 1, [("facilities.parquet", 3)]), set()),
    ("quantity_nonpositive", _set("billing", 4, quantity=-1.0), None,
     ("quantity_nonpositive", "billing", "quantity", 1, [("billing.parquet", 5)]), set()),
    ("empty_table", lambda r: r["billing"].clear(), None,
     ("empty_table", "billing", None, 1, [("billing.parquet", None)]), set()),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rule_caught(tmp_path, case):
    _, mutate, types, (rule, table, column, count, examples), allowed_others = case
    rows = tiny_rows()
    if mutate:
        mutate(rows)
    if types:
        for t, cols in types.items():
            for c, typ in cols.items():
                if pa.types.is_string(typ):
                    for r in rows[t]:
                        if r.get(c) is not None and not isinstance(r[c], str):
                            r[c] = str(r[c])
    report = validate_database(write_db(tmp_path / "db", rows, types=types), progress=False)
    found = report.find(rule, table, column)
    assert len(found) == 1, [f.to_dict() for f in report.findings]
    f = found[0]
    assert f.severity == RULES[rule].severity
    assert f.count == count
    assert [(e.file, e.row) for e in f.examples] == examples
    others = {g.rule for g in report.findings if g is not f}
    assert others <= allowed_others, [g.to_dict() for g in report.findings if g is not f]
    assert report.exit_code == (1 if f.severity == "error" else 0)
    assert report.ok == (f.severity == "warning")


def test_example_values_name_the_problem(tmp_path):
    rows = tiny_rows()
    rows["procedures"][0]["proc_date"] = D(2015, 1, 9)
    rows["diagnoses"][0]["icd10"] = "C79.5"
    rows["admissions"][1]["adl_adm"] = "23121322"
    report = validate_database(write_db(tmp_path / "db", rows), progress=False)
    (proc,) = report.find("proc_date_in_stay")
    assert proc.examples[0].value == "proc_date 2015-01-09, stay 2015-01-10 to 2015-02-20 (A1)"
    (icd,) = report.find("icd10_syntax")
    assert icd.examples[0].value == "C79.5" and icd.examples[0].table == "diagnoses"
    (adl,) = report.find("adl_syntax")
    assert adl.examples[0].value == "23121322"


def test_examples_capped_at_five_and_count_is_every_row(tmp_path):
    rows = tiny_rows()
    base = rows["billing"][0]
    rows["billing"] += [dict(base, admission_id=f"X{i}") for i in range(12)]
    report = validate_database(write_db(tmp_path / "db", rows), progress=False)
    (f,) = report.find("admission_exists", "billing")
    assert f.count == 12
    assert [e.row for e in f.examples] == [8, 9, 10, 11, 12]
    assert [e.value for e in f.examples] == ["X0", "X1", "X2", "X3", "X4"]


def test_several_rules_at_once_and_json(tmp_path):
    rows = tiny_rows()
    rows["admissions"][0]["sex"] = "X"
    rows["admissions"][1]["age"] = 130
    rows["billing"][0]["service_date"] = D(2014, 12, 31)
    rows["admissions"][4]["discharge_date"] = D(2017, 3, 1)
    report = validate_database(write_db(tmp_path / "db", rows), progress=False)
    d = report.to_dict()
    assert d["ok"] is False and d["exit_code"] == 1 and d["errors"] == 3 and d["warnings"] == 1
    # errors come first, then warnings
    assert [f["rule"] for f in d["findings"]] == ["allowed_values", "age_range", "billing_in_stay", "stay_over_365"]
    ex = d["findings"][0]["examples"][0]
    assert ex == {"table": "admissions", "column": "sex", "file": "admissions.parquet", "row": 1, "value": "X"}
    import json

    json.dumps(d)  # serialisable


def test_missing_column_skips_its_rules_but_not_others(tmp_path):
    rows = tiny_rows()
    for r in rows["admissions"]:
        r.pop("admit_date")
    rows["admissions"][0]["age"] = 200
    report = validate_database(write_db(tmp_path / "db", rows), progress=False)
    rules = {(f.rule, f.column) for f in report.findings}
    assert rules == {("missing_column", "admit_date"), ("age_range", "age")}


def test_render_lists_rules(tmp_path):
    from rich.console import Console

    rows = tiny_rows()
    rows["admissions"][0]["sex"] = "[bold]X"
    report = validate_database(write_db(tmp_path / "db", rows), progress=False)
    con = Console(record=True, width=200)
    report.render(con)
    text = con.export_text()
    assert "allowed_values" in text and "admissions.sex" in text and "admissions.parquet:1" in text
    assert "[bold]X" in text  # markup in data is shown, not interpreted
    clean = validate_database(write_db(tmp_path / "ok"), progress=False)
    con = Console(record=True, width=200)
    clean.render(con)
    assert "no errors" in con.export_text()


def test_bmi_bound_is_judged_to_one_decimal(tmp_path):
    rows = tiny_rows()
    # 30.72 kg at 160 cm is BMI 12.0 exactly; in float32 it computes as 11.99999...
    rows["admissions"][0].update(height_cm=160.0, weight_kg=30.72)
    rows["admissions"][1].update(height_cm=160.0, weight_kg=30.4)  # BMI 11.9
    report = validate_database(write_db(tmp_path / "db", rows), progress=False)
    (f,) = report.findings
    assert f.rule == "bmi_implausible" and [e.row for e in f.examples] == [2]


def test_bad_memory_limit_is_an_input_error(tmp_path):
    from hospstudy.errors import InputError

    with pytest.raises(InputError, match="must be a size such as '2GB'"):
        validate_database(write_db(tmp_path / "db"), memory_limit="lots", progress=False)


def test_joins_in_passes_give_the_same_findings(tmp_path):
    """Diagnoses, procedures and billing are joined to the admission keys in passes when the
    keys would not fit in memory (scale 40): counts and the first five examples must not depend
    on the number of passes."""
    rows = tiny_rows()
    base = rows["billing"][0]
    rows["billing"] += [dict(base, admission_id=f"X{i}") for i in range(12)]  # orphans, spread over the passes
    rows["billing"][3]["service_date"] = D(2015, 5, 3)  # outside its stay
    rows["procedures"][0]["proc_date"] = D(2015, 1, 9)
    rows["diagnoses"].append({"admission_id": "A9", "icd10": "C795", "role": "main", "suspected": False})
    rows["admissions"][1]["age"] = 130
    # admissions' own keyed checks (a repeated id, main-diagnosis count) and window checks
    # (a stay overlapping the patient's previous one, two sexes) run in the passes / once
    rows["admissions"].append(dict(rows["admissions"][5]))  # A6 twice: unique_admission_id
    rows["admissions"].append(dict(rows["admissions"][0], admission_id="A7", admit_date=D(2015, 2, 1),
                                   discharge_date=D(2015, 2, 5), sex="F"))  # P1 again: overlap, sex
    db = write_db(tmp_path / "db", rows)

    def findings(parts):
        d = validate_database(db, progress=False, key_parts=parts).to_dict()
        return d["findings"]

    one = findings(1)
    assert {(f["rule"], f["table"]) for f in one} >= {("admission_exists", "billing"), ("billing_in_stay", "billing"),
                                                       ("proc_date_in_stay", "procedures"), ("admission_exists", "diagnoses"),
                                                       ("unique_admission_id", "admissions"), ("main_diagnosis_count", "admissions"),
                                                       ("overlapping_stays", "admissions"), ("patient_sex_inconsistent", "admissions")}
    orphans = next(f for f in one if f["rule"] == "admission_exists" and f["table"] == "billing")
    assert orphans["count"] == 12 and [e["value"] for e in orphans["examples"]] == ["X0", "X1", "X2", "X3", "X4"]
    for parts in (2, 3, 7):
        assert findings(parts) == one, parts


@pytest.mark.parametrize("keys, limit, parts", [
    (67_359_867, "6GB", 6),   # scale 40 under the bench's limit
    (16_837_750, "6GB", 2),   # scale 10
    (1_684_159, "2GB", 1),    # scale 1 under the default limit
    (1_684_159, "512MB", 2),
    (1_684_159, "2 GiB", 1),
    (10, "not a size", 1),
])
def test_key_parts(keys, limit, parts):
    from hospstudy.data.validate import key_parts

    assert key_parts(keys, limit) == parts


def test_study_engine_budget_applies_to_validation(tmp_path, monkeypatch):
    """A study's [engine] DuckDB memory limit and spill folder are validation's too."""
    import tempfile

    from hospstudy.cohort.engine import validation_budget
    from hospstudy.cohort.spec import EngineSpec

    spec = EngineSpec(duckdb_memory_limit="512MB", duckdb_temp_directory=str(tmp_path / "scratch"))
    assert validation_budget(spec) == {"memory_limit": "512MB", "temp_directory": str(tmp_path / "scratch")}
    assert validation_budget(None) == {}
    made = []
    real = tempfile.TemporaryDirectory

    def spy(*a, **k):
        made.append(k.get("dir"))
        return real(*a, **k)

    monkeypatch.setattr(tempfile, "TemporaryDirectory", spy)
    db = write_db(tmp_path / "db")
    report = validate_database(db, progress=False, **validation_budget(spec))
    assert report.ok and made == [tmp_path / "scratch"]
    assert (tmp_path / "scratch").is_dir() and not any((tmp_path / "scratch").iterdir())  # cleaned up
