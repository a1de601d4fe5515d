"""`hospstudy validate DIR`: exit 0 clean, 1 errors, 2 unusable input; --json; never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from test_validate_fixtures import tiny_rows, write_db


def _run(*args):
    r = subprocess.run([sys.executable, "-m", "hospstudy.cli", "validate", *map(str, args)],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    return r


def test_clean_database_exits_0(tmp_path):
    r = _run(write_db(tmp_path / "db"))
    assert r.returncode == 0, r.stderr
    assert "no errors" in r.stderr


def test_errors_exit_1_with_rule_file_and_row(tmp_path):
    rows = tiny_rows()
    rows["procedures"][1]["proc_code"] = "K142.4"
    r = _run(write_db(tmp_path / "db", rows))
    assert r.returncode == 1
    assert "kcode_syntax" in r.stderr and "procedures.parquet:2" in r.stderr


def test_json_on_stdout(tmp_path):
    rows = tiny_rows()
    rows["admissions"][4]["discharge_date"] = rows["admissions"][4]["admit_date"].replace(year=2017)
    rows["billing"][6]["admission_id"] = "A77"
    r = _run(write_db(tmp_path / "db", rows, fmt="csv", encoding="cp932"), "--json")
    assert r.returncode == 1
    d = json.loads(r.stdout)
    assert d["exit_code"] == 1 and d["ok"] is False
    assert [(f["rule"], f["severity"], f["count"]) for f in d["findings"]] == [
        ("admission_exists", "error", 1), ("stay_over_365", "warning", 1)]
    assert d["findings"][0]["examples"] == [
        {"table": "billing", "column": "admission_id", "file": "billing.csv", "row": 7, "value": "A77"}]
    assert d["tables"]["facilities"]["encoding"] == "cp932"


def test_warnings_only_exit_0(tmp_path):
    rows = tiny_rows()
    rows["facilities"][0]["beds"] = 10
    r = _run(write_db(tmp_path / "db", rows), "--json")
    assert r.returncode == 0
    assert [f["rule"] for f in json.loads(r.stdout)["findings"]] == ["beds_implausible"]


@pytest.mark.parametrize("breakage,message", [
    ("missing_folder", "no such database folder"),
    ("missing_table", "missing table(s) diagnoses"),
    ("corrupt_parquet", "billing.parquet: not a readable Parquet file"),
    ("undecodable_csv", "not decodable as UTF-8 or CP932"),
    ("bad_encoding_option", "'encoding' parameter must be one of"),
])
def test_unusable_input_exits_2_without_traceback(tmp_path, breakage, message):
    db = write_db(tmp_path / "db")
    extra = []
    if breakage == "missing_folder":
        db = tmp_path / "nowhere"
    elif breakage == "missing_table":
        (db / "diagnoses.parquet").unlink()
    elif breakage == "corrupt_parquet":
        (db / "billing.parquet").write_bytes(b"\x00" * 64)
    elif breakage == "undecodable_csv":
        (db / "facilities.parquet").unlink()
        (db / "facilities.csv").write_bytes(b"hospital_id,region\n1,\x85\x40\x81\x20\n")
    elif breakage == "bad_encoding_option":
        extra = ["--encoding", "latin-1"]
    r = _run(db, *extra)
    assert r.returncode == 2, r.stderr
    assert message in " ".join(r.stderr.split())
    assert r.stdout == ""
