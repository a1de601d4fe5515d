"""End to end: `hospstudy run` of the flagship on a small synthetic database (scale 0.02: ~35
hospitals, ~200 patients, so most cells are small and suppression is exercised), then the
stage cache, `hospstudy report OUT` and the disclosure checker on the result."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = ROOT / "studies" / "spinal_metastasis.toml"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from hospstudy.data.synth import generate
    from hospstudy.run.pipeline import run_study

    base = tmp_path_factory.mktemp("pipeline")
    data, out = base / "db", base / "out"
    generate(data, seed=20240601, scale=0.02)
    res = run_study(FLAGSHIP, data, out, seed=20240601)
    return res, data, out, base


def test_run_writes_every_artifact(run):
    res, _, out, _ = run
    assert res.stages == {"validate": "ran", "cohort": "ran", "analyses": "ran", "report": "ran", "check-disclosure": "ran"}
    for name in ("report.html", "tables.xlsx", "results.json", "results.csv", "attrition.csv", "dictionary.csv", "run.json",
                 "study.toml", "private/analytic.parquet", "private/attrition.csv", "private/analyses/results.json"):
        assert (out / name).is_file(), name
    # on the synthetic data no analysis may fail (a report that says "failed" is not a pass);
    # separated fits on this small database are reported with their warnings, not dropped
    doc = json.loads((out / "results.json").read_text())
    assert doc["failures"] == [], doc["failures"]
    assert not doc["table"] or all(r.get("error") in (None, "") for r in doc["table"])
    figs = {p.name for p in (out / "figures").iterdir()}
    html = (out / "report.html").read_text()
    assert 'class="failed"' not in html
    for f in ("flow", "forest", "volume_curve", "love_plot", "cif", "funnel", "trends"):
        assert f"{f}.svg" in figs and f"{f}.png" in figs and f'id="fig-{f}"' in html, f
    assert res.report == out / "report.html"


def test_flagship_report_has_no_code_like_text(run):
    """The real run's report (not hand-built results): readable names everywhere but Methods,
    which names the study's columns on purpose."""
    import html as _html
    import re

    from hospstudy.report.labels import code_like

    _, _, out, _ = run
    page = (out / "report.html").read_text().split('<section id="methods">', 1)[0]
    text = _html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>", "", page, flags=re.S)))
    assert code_like(text) == []
    assert "Sex: Female" in text  # the balance table's rows are labelled (the reference level is in no model term)


def test_small_cell_database_is_shareable(run):
    from hospstudy.privacy import check_disclosure

    res, _, out, _ = run
    assert res.violations == []
    assert check_disclosure(out) == []
    html = (out / "report.html").read_text()
    assert "&lt;10" in html  # small cells were there, and were suppressed
    ids = pd.read_parquet(out / "private" / "analytic.parquet", columns=["patient_id"])["patient_id"]
    assert not any(i in html for i in ids.head(50))


def test_results_json_and_xlsx_schema(run):
    import openpyxl

    from hospstudy.report.results import RESULT_COLUMNS

    _, _, out, _ = run
    doc = json.loads((out / "results.json").read_text())
    assert doc["table"], "no result rows"
    assert set(RESULT_COLUMNS) <= set(doc["table"][0])
    assert doc["meta"]["disclosure_threshold"] == 10
    for key in ("volume_curve", "balance", "cumulative_incidence", "funnel", "trends", "evalues", "hospital_variation"):
        assert key in doc["extras"], key
    assert all(isinstance(r["events"], (int, str)) for r in doc["table"] if r.get("events") is not None)
    wb = openpyxl.load_workbook(out / "tables.xlsx", read_only=True)
    for sheet in ("attrition", "table1_cancer_center", "table1_volume_quartile", "crude_cancer_center", "adjusted",
                  "volume_quartiles", "weighted", "competing", "trends", "published_vs_run", "planted_vs_estimated",
                  "record_checklist"):
        assert sheet in wb.sheetnames, sheet
    a = pd.read_csv(out / "attrition.csv", dtype=str)
    assert list(a.columns) == ["step", "name", "description", "admissions", "patients", "admissions_removed", "patients_removed",
                               "hospitals", "hospitals_removed"]


def test_cif_three_states_end_at_the_observed_proportions(run):
    """Issue 10, item 1: discharge home, in-hospital death and discharge elsewhere compete; each
    published curve ends below its observed proportion by at most the share of patients still
    in hospital after the curve's last step (fewer than 10 at risk, or a step of fewer than 10
    events): 0 <= observed - end <= 1 - sum(ends)."""
    _, _, out, _ = run
    doc = json.loads((out / "private" / "analyses" / "results.json").read_text())
    ci = doc["extras"]["cumulative_incidence"]
    assert [s["label"] for s in ci["states"]] == ["discharge home", "in-hospital death", "discharge elsewhere"]
    df = pd.read_parquet(out / "private" / "analytic.parquet")
    assert set(df["los_to_home_event"].unique()) <= {1, 2, 3}
    for c in ci["curves"]:
        g = df[df[c["exposure"]].astype(int).astype(str) == c["level"]]
        assert len(g) == c["n"]
        observed = g["los_to_home_event"].value_counts(normalize=True)
        ends = [s["cif"][-1] for s in c["states"]]
        rest = 1 - sum(ends)
        assert 0 <= rest < 0.25, (c["group"], ends)
        for s, end in zip(c["states"], ends):
            gap = observed.get(s["code"], 0.0) - end
            assert -1e-9 <= gap <= rest + 1e-9, (c["group"], s["label"], end, observed.get(s["code"]))
    html = (out / "report.html").read_text()
    los = html.split('<section id="los">', 1)[1].split("</section>", 1)[0]
    assert "discharge elsewhere" in los and 'id="tbl-cif_at_risk"' in los


def test_planted_vs_estimated_present(run):
    _, _, out, _ = run
    html = (out / "report.html").read_text()
    assert "SYNTHETIC DATA" in html
    assert "Planted vs estimated" in html and "OR 0.841" in html
    assert "Published vs this run" in html and "0.841 (0.709–0.999)" in html


def test_cache_reuses_stages_and_rebuilds_only_what_changed(run, monkeypatch):
    import hospstudy.models.analyses as analyses_mod
    from hospstudy import Study
    from hospstudy.run.pipeline import run_study

    res, data, out, base = run
    again = run_study(FLAGSHIP, data, out, seed=20240601)
    assert again.stages == {"validate": "cached", "cohort": "cached", "analyses": "cached", "report": "cached",
                            "check-disclosure": "ran"}

    # a study that differs only in [analyses]: the cohort must come from the cache
    studies = base / "studies"
    shutil.copytree(FLAGSHIP.parent, studies, dirs_exist_ok=True)
    text = (studies / FLAGSHIP.name).read_text()
    assert "nagq = 1\n" in text
    (studies / FLAGSHIP.name).write_text(text.replace("nagq = 1\n", "nagq = 2\n"))
    calls = {"cohort": 0, "analyses": 0}
    stored = json.loads((out / "private" / "analyses" / "results.json").read_text())

    class Stored:
        """The earlier run's results: this test is about the cache, not the models."""

        def to_dict(self):
            return stored

    def fake_runner(study, analytic, seed=None):
        calls["analyses"] += 1
        assert len(analytic) > 0
        return Stored()

    real_build = Study.build_cohort

    def counting_build(self, *a, **k):
        calls["cohort"] += 1
        return real_build(self, *a, **k)

    monkeypatch.setattr(analyses_mod, "run_analyses", fake_runner)
    monkeypatch.setattr(Study, "build_cohort", counting_build)
    third = run_study(studies / FLAGSHIP.name, data, out, seed=20240601)
    assert third.stages["cohort"] == "cached" and third.stages["analyses"] == "ran"
    assert calls == {"cohort": 0, "analyses": 1}

    # only the [report] threshold changes: the cohort stays; the analyses re-run (the threshold
    # shapes their published curves and funnel points) and the report re-renders
    text = (studies / FLAGSHIP.name).read_text()
    assert text.count("[report]\n") == 1 and "disclosure_threshold" not in text
    (studies / FLAGSHIP.name).write_text(text.replace("[report]\n", "[report]\ndisclosure_threshold = 11\n"))
    fourth = run_study(studies / FLAGSHIP.name, data, out, seed=20240601)
    assert fourth.stages["cohort"] == "cached" and fourth.stages["analyses"] == "ran"
    assert fourth.stages["report"] == "ran"
    assert calls == {"cohort": 0, "analyses": 2}
    assert json.loads((out / "run.json").read_text())["threshold"] == 11
    assert json.loads((out / "results.json").read_text())["meta"]["disclosure_threshold"] == 11

    forced = run_study(studies / FLAGSHIP.name, data, out, seed=20240601, force=True)
    assert forced.stages["cohort"] == "ran" and forced.stages["validate"] == "ran"
    assert calls == {"cohort": 1, "analyses": 3}


def test_report_command_rerenders_and_checker_catches_tampering(run):
    from typer.testing import CliRunner

    from hospstudy.cli import app

    _, _, out, _ = run
    (out / "report.html").unlink()
    r = CliRunner().invoke(app, ["report", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "report.html").is_file()
    leaked = out / "leak.csv"
    pd.read_parquet(out / "private" / "analytic.parquet", columns=["patient_id", "hospital_id"]).head(3).to_csv(leaked, index=False)
    try:
        r = CliRunner().invoke(app, ["check-disclosure", str(out)])
        assert r.exit_code == 1 and "leak.csv" in r.output
    finally:
        leaked.unlink()


def test_run_rejects_missing_inputs(tmp_path):
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "hospstudy.cli", *args], capture_output=True, text=True)

    r = cli("run", str(FLAGSHIP), "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert "no such database folder" in r.stderr and "Traceback" not in r.stderr
    r = cli("run", str(FLAGSHIP), "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--engine", "sas")
    assert r.returncode == 2 and "duckdb" in r.stderr


def test_demo_refuses_to_overwrite_foreign_folder(tmp_path):
    from hospstudy.errors import InputError
    from hospstudy.run.pipeline import ensure_demo_database

    (tmp_path / "mine.csv").write_text("x\n1\n")
    with pytest.raises(InputError, match="not a synthetic database"):
        ensure_demo_database(tmp_path)


def test_demo_reuses_a_clean_database_and_cached_stages(run, monkeypatch):
    import hospstudy.models.analyses as analyses_mod
    from hospstudy.run.pipeline import demo, validated_before

    res, data, out, _ = run
    stored = json.loads((out / "private" / "analyses" / "results.json").read_text())

    class Stored:
        def to_dict(self):
            return stored

    monkeypatch.setattr(analyses_mod, "run_analyses", lambda study, analytic, seed=None: Stored())
    mtime = (data / "truth.json").stat().st_mtime_ns
    assert validated_before(data, out)
    d = demo(data, out, seed=20240601, scale=0.02)
    assert not d.generated and (data / "truth.json").stat().st_mtime_ns == mtime
    assert d.run.stages["validate"] == "cached" and d.run.stages["cohort"] == "cached"
    assert d.run.violations == [] and d.run.report.is_file()
    # another seed is another database: demo must not reuse this one (checked without generating)
    from hospstudy.data import synth
    from hospstudy.run import pipeline

    calls = []
    monkeypatch.setattr(synth, "generate", lambda *a, **k: calls.append(k))
    assert pipeline.ensure_demo_database(data, seed=1, scale=0.02) == (data, True)
    assert calls and calls[0]["seed"] == 1 and calls[0]["overwrite"] is True


def test_a_study_of_another_design_renders_without_flagship_text(run):
    """Issue 10: studies/hip_fracture.toml (volume only, no cancer-center exposure, no competing
    risks, no published reference) keeps the sections it names in [report] sections and shows
    nothing of the flagship."""
    import re

    from hospstudy.run.pipeline import run_study

    _, data, _, base = run
    res = run_study(ROOT / "studies" / "hip_fracture.toml", data, base / "hip", seed=20240601)
    assert res.violations == []
    html = (base / "hip" / "report.html").read_text()
    assert re.findall(r'<section id="([\w-]+)">', html) == [
        "overview", "cohort-flow", "table1", "crude", "adjusted", "volume", "variation", "trends", "methods", "checklist", "appendix"]
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>", "", html, flags=re.S))
    for word in ("spinal", "metasta", "cancer center", "Cancer center", "Yamada", "spine", "Katagiri", "discharge elsewhere"):
        assert word not in text, word
