"""Smoke test of bench/coverage.py (the coverage study of the planted effects, issue 4 §3):
the summary statistics on hand-made records, the covariates of the data-generating model, and
two real replicates at a small scale (generate -> cohort engine -> mixed_logit)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cov():
    name = "hospstudy_bench_coverage"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "coverage.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def _record(rep, est, se, truth=math.log(0.8), error=""):
    return {"replicate": rep, "outcome": "death_30d", "term": "cancer_center", "planted_or": math.exp(truth),
            "truth": truth, "estimate": est, "std_error": se, "conf_low": est - 1.96 * se,
            "conf_high": est + 1.96 * se, "covered": abs(est - truth) <= 1.96 * se, "boundary": rep == 0,
            "random_sd": 0.3, "planted_sd": 0.3, "error": error}


def test_summary_on_known_records(cov):
    t = math.log(0.8)
    # replicate 2 misses (estimate 3 SE away); replicate 4 crashed and must be left out
    crashed = {"replicate": 4, "outcome": "death_30d", "term": "cancer_center", "error": "ModelError: boom"}
    recs = pd.DataFrame([crashed, _record(0, t + 0.1, 0.1), _record(1, t - 0.1, 0.1), _record(2, t + 0.3, 0.1),
                         _record(3, t, 0.2)])
    s = cov.summarize(recs)
    assert list(s.columns) == cov.SUMMARY_COLUMNS
    r = s.iloc[0]
    est = np.array([0.1, -0.1, 0.3, 0.0]) + t
    assert r.replicates == 4 and r.failed == 1 and r.planted_or == pytest.approx(0.8)
    assert r.coverage == pytest.approx(0.75)
    assert r.coverage_mcse == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert r.bias_log == pytest.approx(0.075)
    assert r.empirical_sd == pytest.approx(np.std(est, ddof=1))
    assert r.bias_log_mcse == pytest.approx(np.std(est, ddof=1) / 2)
    assert r.mean_model_se == pytest.approx(0.125)
    assert r.se_ratio == pytest.approx(0.125 / np.std(est, ddof=1))
    assert r.mean_or == pytest.approx(math.exp(est.mean()))
    assert r.boundary_share == pytest.approx(0.25)
    md = cov.summary_markdown(s)
    assert "75.0% ± 21.7" in md and "(1 failed)" in md


def test_generating_model_covariates(cov):
    a = pd.DataFrame({
        "hospital_id": [1, 2, 3], "fiscal_year": [2012, 2013, 2014], "cancer_center": [True, False, True],
        "volume_per50": [1.0, 2.5, 0.2], "sex": ["M", "F", "M"], "emergency": [False, True, False],
        "katagiri_group": ["rapid", "slow", "moderate"], "visceral_mets": [False, False, True],
        "brain_mets": [True, False, False], "age": [65, 85, 45], "charlson": [0, 2, 1],
        "walking_adm": pd.array([0, 2, None], dtype="Int64"), "surgery_type": ["fusion", "decompression", "fusion"],
        "in_hospital_death": [False, True, False], "death_30d": [False, True, False],
        "complication": [True, False, False], "unfavorable_ambulatory": pd.array([True, None, False], dtype="boolean"),
        "discharged_home": [False, False, True]})
    d = cov.analysis_frame(a)
    assert d["visceral_mets"].tolist() == [1.0, 0.0, 1.0]
    assert d["age_per10"].tolist() == [0.0, 2.0, -2.0]
    assert d["rapid_growth"].tolist() == [1.0, 0.0, 0.0] and d["moderate_growth"].tolist() == [0.0, 0.0, 1.0]
    assert d["nonambulatory_adm"].iloc[0] == 1.0 and d["nonambulatory_adm"].iloc[1] == 0.0
    assert np.isnan(d["nonambulatory_adm"].iloc[2]) and np.isnan(d["unfavorable_ambulatory"].iloc[1])
    assert d["male"].tolist() == [1.0, 0.0, 1.0] and d["fusion"].tolist() == [1.0, 0.0, 1.0]
    assert d["alive"].tolist() == [True, False, True]


def test_two_replicates_small_scale(cov, tmp_path):
    # an overridden planted value must come back from truth.json, not from a constant
    rec, secs = cov.run_replicates(2, scale=0.1, seed=424242, workers=1, workdir=tmp_path,
                                   effects={"complication": {"cancer_center_or": 1.3}})
    assert list(rec.columns) == cov.RECORD_COLUMNS
    assert len(rec) == 2 * len(cov.MODELS) * len(cov.EXPOSURES) and len(secs) == 2
    assert sorted(rec.replicate.unique()) == [0, 1] and sorted(rec.seed.unique()) == [424242, 424243]
    assert list(tmp_path.iterdir()) == []  # the replicate databases are removed
    planted = rec.set_index(["replicate", "outcome", "term"])["planted_or"]
    assert planted[(0, "complication", "cancer_center")] == pytest.approx(1.3)
    assert planted[(1, "death_30d", "cancer_center")] == pytest.approx(0.841)
    assert planted[(1, "death_30d", "volume_per50")] == pytest.approx(0.958)
    assert planted[(0, "discharged_home", "volume_per50")] == pytest.approx(1.0)
    assert np.allclose(rec.truth, np.log(rec.planted_or))

    ok = rec[rec.error.fillna("") == ""]
    assert (ok.outcome == "death_30d").sum() == 4  # the flagship effects fit in both replicates
    # the recorded interval is the Wald interval of the recorded estimate: centred on it and
    # 2 x 1.96 SE wide (conf_low < estimate < conf_high, checked before, held for any SE > 0)
    assert np.allclose((ok.conf_low + ok.conf_high) / 2, ok.estimate, rtol=0, atol=1e-12)
    assert np.allclose(ok.conf_high - ok.conf_low, 2 * 1.959964 * ok.std_error, rtol=1e-5)
    assert (ok.covered.astype(bool) == ((ok.conf_low <= ok.truth) & (ok.truth <= ok.conf_high))).all()
    # alive-only outcomes use fewer rows than the all-patient ones
    n = ok.groupby("outcome")["n"].first()
    assert n["discharged_home"] < n["complication"]

    s = cov.summarize(rec)
    assert list(s.columns) == cov.SUMMARY_COLUMNS and len(s) == len(cov.MODELS) * len(cov.EXPOSURES)
    got = s.set_index(["outcome", "term"])
    for (o, t), g in ok.groupby(["outcome", "term"]):
        assert got.loc[(o, t), "coverage"] == pytest.approx(g.covered.astype(float).mean())
        assert got.loc[(o, t), "replicates"] == len(g)

    rows = cov._rows(s, secs, wall=1.0, reps=2, scale=0.1, workers=1)
    assert all(set(r) == {"area", "case", "metric", "value", "unit", "note"} for r in rows)
    assert {r["metric"] for r in rows} >= {"bias of log OR", "empirical SD of log OR",
                                           "mean model SE of log OR", "95% CI coverage"}
    assert all(r["area"] == "coverage" for r in rows)
