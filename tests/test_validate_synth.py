"""A small synthetic database (hospstudy synth) passes validation with no errors."""

from __future__ import annotations


from hospstudy.data.validate import validate_database


def test_synthetic_database_has_no_errors(tmp_path):
    from hospstudy.data import synth

    summary = synth.generate(tmp_path / "db", scale=0.01)  # the default seed, as `hospstudy demo` uses
    report = validate_database(tmp_path / "db", progress=False)
    assert report.errors == [], [f.to_dict() for f in report.errors]
    assert report.tables["admissions"]["rows"] == summary["admissions"]
    assert report.tables["billing"]["rows"] == summary["billing_lines"]
    assert report.tables["billing"]["files"] > 1  # parts per fiscal year
