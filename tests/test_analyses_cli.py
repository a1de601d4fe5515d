"""`hospstudy analyze`: files written, small counts suppressed outside private/, clear errors."""

import json

import pandas as pd
from typer.testing import CliRunner

from analyses_synth import analytic
from hospstudy.cli import app

STUDY = """
[analyses]
outcomes = ["death_30d", "los_to_home"]
exposures = ["cancer_center", "volume_per50"]
covariates = ["age", "sex", "emergency"]
reference = { sex = "F" }
models = ["logit"]
adjustment = ["mutual"]

[analyses.competing_risks]
models = ["cause_specific"]

[analyses.trends]
proportions = ["death_30d"]
"""


def test_analyze_writes_public_and_private_results(tmp_path):
    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    cohort = tmp_path / "analytic.parquet"
    analytic(n_hosp=30, mean_patients=30, seed=4).to_parquet(cohort)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["analyze", str(study), "--cohort", str(cohort), "--out", str(out)])
    assert r.exit_code == 0, r.output
    for name in ("results.parquet", "results.csv", "results.json"):
        assert (out / name).is_file() and (out / "private" / "analyses" / name).is_file()
    doc = json.loads((out / "results.json").read_text())
    assert doc["meta"]["suppression_threshold"] == 10 and doc["failures"] == []
    t = pd.DataFrame(doc["table"])
    assert {"logit", "cause_specific"} == set(t.model)
    by_year = [s for s in doc["extras"]["trends"]["summary"] if s["variable"] == "death_30d"]
    assert all(s["events"] == "<10" or s["events"] == 0 or s["events"] >= 10 for s in by_year)
    raw = json.loads((out / "private" / "analyses" / "results.json").read_text())
    assert all(isinstance(s["events"], int) for s in raw["extras"]["trends"]["summary"] if s["variable"] == "death_30d")


def test_analyze_errors_exit_2_without_traceback(tmp_path):
    study = tmp_path / "study.toml"
    study.write_text(STUDY.replace('"age", ', '"agee", '))
    cohort = tmp_path / "analytic.parquet"
    analytic(n_hosp=10, mean_patients=20).to_parquet(cohort)
    runner = CliRunner()
    r = runner.invoke(app, ["analyze", str(study), "--cohort", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "no analytic dataset" in str(r.exception)
    r = runner.invoke(app, ["analyze", str(study), "--cohort", str(cohort), "--out", str(tmp_path / "o")])
    assert "covariates: 'agee'" in str(r.exception)
    study.write_text("[analyses]\noutcomes = ['death_30d']\nexposures = ['cancer_center']\nnagq = 99\n")
    r = runner.invoke(app, ["analyze", str(study), "--cohort", str(cohort), "--out", str(tmp_path / "o")])
    assert "analyses.nagq" in str(r.exception) and getattr(r.exception, "exit_code", None) == 2


def test_analyze_unreadable_study_files_are_study_file_errors(tmp_path):
    """Missing, invalid-TOML and non-UTF-8 study files: the one study-file reader's errors (exit 2)."""
    cohort = tmp_path / "analytic.parquet"
    analytic(n_hosp=10, mean_patients=20).to_parquet(cohort)
    runner = CliRunner()
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[analyses\n")
    cp932 = tmp_path / "cp932.toml"
    cp932.write_bytes('[analyses]\n# 解析\n'.encode("cp932"))
    for path, message in ((tmp_path / "none.toml", "no such study file"), (bad_toml, "not valid TOML"),
                          (cp932, "not UTF-8")):
        r = runner.invoke(app, ["analyze", str(path), "--cohort", str(cohort), "--out", str(tmp_path / "o")])
        assert message in str(r.exception) and getattr(r.exception, "exit_code", None) == 2, (path, r.exception)
