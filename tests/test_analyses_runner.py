"""The analyses runner on a synthetic analytic dataset built with numpy (tests/analyses_synth.py)."""

import json

import numpy as np
import pandas as pd
import pytest

from analyses_synth import PLANTED, SPEC, analytic
from hospstudy.errors import InputError
from hospstudy.models import glm
from hospstudy.models.analyses import RESULT_COLUMNS, run_analyses

FAST = {**SPEC, "models": ["mixed_logit", "gee_logit", "logit"]}


@pytest.fixture(scope="module")
def data():
    return analytic(n_hosp=40, mean_patients=40, seed=3)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("analyses")
    res = run_analyses(FAST, data, seed=7, out=out)
    return res, out


def test_every_analysis_runs_and_table_has_the_schema(run):
    res, _ = run
    assert res.failures == []
    t = res.table
    assert list(t.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert t.error.isna().all()
    got = set(zip(t.analysis, t.model))
    for a, m in [("alone", "mixed_logit"), ("alone", "gee_logit"), ("alone", "logit"), ("mutual", "mixed_logit"),
                 ("volume_quartiles", "mixed_logit"), ("volume_spline", "mixed_logit"),
                 ("weighting_iptw", "weighted_logit"), ("weighting_overlap", "weighted_logit"),
                 ("cause_specific", "cause_specific"), ("fine_gray", "fine_gray"),
                 ("cause_specific_mutual", "cause_specific"), ("fine_gray_mutual", "fine_gray")]:
        assert (a, m) in got, (a, m)
    scale = t.groupby("model").scale.unique().map(set).to_dict()
    assert scale["mixed_logit"] == {"conditional"} and scale["gee_logit"] == {"marginal"}
    assert scale["logit"] == {"unclustered"} and scale["weighted_logit"] == {"weighted"}
    # the competing-risks outcome never gets a logistic model
    assert set(t[t.model.isin(["logit", "mixed_logit"])].outcome) == {"death_30d", "complication"}
    assert set(t[t.model == "fine_gray"].outcome) == {"los_to_home"}


def test_mutual_model_rows_name_their_exposure(run):
    t = run[0].table
    m = t[(t.analysis == "mutual") & (t.model == "logit") & (t.outcome == "death_30d")]
    assert m.set_index("term").loc["cancer_center", "exposure"] == "cancer_center"
    assert m.set_index("term").loc["volume_per50", "exposure"] == "volume_per50"
    assert m.set_index("term").loc["age", "exposure"] == "cancer_center+volume_per50"
    q = t[t.analysis == "volume_quartiles"]
    assert {"volume_quartile[T.2]", "volume_quartile[T.3]", "volume_quartile[T.4]"} <= set(q.term)
    assert "sex[T.M]" in set(m.term) and "primary_site[T.lung]" in set(m.term)  # references F and other


def test_logit_rows_equal_a_direct_call(run, data):
    t = run[0].table
    rows = t[(t.analysis == "alone") & (t.model == "logit") & (t.outcome == "death_30d") & (t.exposure == "cancer_center")]
    d = data.assign(death_30d=data.death_30d.astype(float), cancer_center=data.cancer_center.astype(float),
                    emergency=data.emergency.astype(float))
    direct = glm.logit("death_30d ~ cancer_center + age + C(sex, contr.treatment('F')) + emergency + "
                       "C(primary_site, contr.treatment('other'))", d).coef("cancer_center")
    mine = rows.set_index("term").loc["cancer_center"]
    assert mine.estimate == pytest.approx(direct.estimate, rel=1e-10)
    assert mine.std_error == pytest.approx(direct.std_error, rel=1e-10)
    assert mine.n == len(data) and mine.events == int(data.death_30d.sum())


def test_extras_for_the_report(run, data):
    ex = run[0].extras
    for k in ("volume_curve", "quartiles", "balance", "evalues", "cumulative_incidence", "funnel", "hospital_variation", "trends"):
        assert ex.get(k), k
    curve = ex["volume_curve"][0]
    ref_i = int(np.argmin(np.abs(np.asarray(curve["volume"]) - curve["reference_volume"])))
    assert len(curve["knots"]) == 4 and len(curve["volume"]) == len(curve["or"])
    assert all(lo <= o <= hi for lo, o, hi in zip(curve["conf_low"], curve["or"], curve["conf_high"]))
    assert abs(np.log(curve["or"][ref_i])) < 0.05  # OR ~ 1 near the reference volume
    # the x-range: 1st-99th percentile of hospital-years (each once), not of patients
    hy = data.drop_duplicates(["hospital_id", "fiscal_year"])["volume"].to_numpy(float)
    lo, hi = np.quantile(hy, [0.01, 0.99])
    assert curve["range_basis"] == "hospital-years"
    assert (curve["volume"][0], curve["volume"][-1]) == (round(lo, 1), round(hi, 1))
    assert (round(lo, 1), round(hi, 1)) != tuple(np.round(np.quantile(data["volume"], [0.01, 0.99]), 1))  # the data tell them apart
    f = ex["funnel"]
    assert all(p["n"] >= 10 for p in f["points"]) and all("hospital" not in k for p in f["points"] for k in p)
    assert sum(x["hospitals"] for x in f["flags"]) + f["hospitals_not_drawn"] == data.hospital_id.nunique()
    hv = pd.DataFrame(ex["hospital_variation"])
    assert set(hv.model) == {"null model", "adjusted model"} and (hv.mor >= 1).all()
    cif = ex["cumulative_incidence"]["curves"]
    assert {c["level"] for c in cif} == {"0", "1"}
    for c in cif:
        assert np.all(np.diff(c["cif_event"]) >= -1e-12) and c["cif_event"][-1] + c["cif_competing"][-1] <= 1 + 1e-9
    assert {x["outcome"] for x in ex["trends"]["tests"]} == {"death_30d", "in_hospital_death", "postop_los"}
    assert {"before", "iptw", "overlap"} <= set(ex["balance"][0])
    assert all(e["evalue"] >= 1 for e in ex["evalues"])


def test_files_are_aggregate_and_consistent(run, data):
    res, out = run
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema"] == "hospstudy.results/1" and doc["meta"]["patients"] == len(data)
    text = (out / "results.json").read_text() + (out / "results.csv").read_text()
    assert "patient_id" not in text and "hospital_id\"" not in text.replace('"cluster": "hospital_id"', "")
    assert not any(pid in text for pid in data.patient_id.head(50))
    pq = pd.read_parquet(out / "results.parquet")
    assert list(pq.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS and len(pq) == len(res.table)
    csv = pd.read_csv(out / "results.csv")
    assert len(csv) == len(res.table)
    from hospstudy.privacy import check_disclosure

    assert check_disclosure(out) == []


def test_a_failing_analysis_is_recorded_and_the_rest_run(data, monkeypatch, capsys):
    from hospstudy.models import gee

    def broken(*a, **k):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(gee, "gee_logit", broken)
    spec = {k: v for k, v in SPEC.items() if k in ("exposures", "covariates", "reference", "cluster")}
    res = run_analyses({**spec, "outcomes": ["death_30d", "complication"], "models": ["logit", "gee_logit"],
                        "adjustment": ["alone"]}, data)
    fails = pd.DataFrame(res.failures)
    assert set(fails.model) == {"gee_logit"} and len(fails) == 4
    assert fails.error.str.contains("planted failure").all()
    t = res.table
    assert t[t.model == "gee_logit"].estimate.isna().all() and t[t.model == "gee_logit"].error.notna().all()
    assert t[t.model == "logit"].error.isna().all() and len(t[t.model == "logit"]) > 0
    assert "planted failure" in capsys.readouterr().err


def test_small_counts_suppressed_in_public_files(data, tmp_path):
    d = data.copy()
    rare = np.zeros(len(d), bool)
    rare[np.flatnonzero(d.cancer_center.to_numpy())[:6]] = True
    d["complication"] = rare
    spec = {"outcomes": ["complication"], "exposures": ["cancer_center"], "covariates": [], "models": ["logit"],
            "adjustment": ["alone"]}
    res = run_analyses(spec, d, out=tmp_path, threshold=10)
    assert int(res.table.events.iloc[0]) == 6  # the in-memory table is unsuppressed
    doc = json.loads((tmp_path / "results.json").read_text())
    assert {r["events"] for r in doc["table"]} == {"<10"}
    assert pd.read_csv(tmp_path / "results.csv").events.astype(str).eq("<10").all()
    assert pd.read_parquet(tmp_path / "results.parquet").events.isna().all()
    res.write(tmp_path / "private", threshold=None)
    assert {r["events"] for r in json.loads((tmp_path / "private" / "results.json").read_text())["table"]} == {6}


def test_input_errors_name_the_field(data):
    with pytest.raises(InputError, match="covariates: 'bmi'"):
        run_analyses({**SPEC, "covariates": ["age", "bmi"]}, data)
    bad = data.assign(death_30d=np.where(np.arange(len(data)) == 4, 2, data.death_30d))
    with pytest.raises(InputError, match="'death_30d' must be binary.*row 4"):
        run_analyses(SPEC, bad)
    with pytest.raises(InputError, match="reference.sex"):
        run_analyses({**SPEC, "reference": {"sex": "X"}}, data)
    ev = data.assign(los_to_home_event=np.where(np.arange(len(data)) == 2, 5, data.los_to_home_event))
    res = run_analyses({**SPEC, "models": ["logit"], "volume": None, "weighting": None, "profiling": None,
                        "trends": None}, ev, show_progress=False)
    assert any("row 2 holds 5" in f["error"] for f in res.failures)


def test_planted_effects_are_recovered():
    d = analytic(n_hosp=150, mean_patients=50, seed=21, hosp_sd=0.25)
    spec = {"outcomes": ["death_30d"], "exposures": ["cancer_center", "volume_per50"],
            "covariates": ["age", "sex", "emergency", "primary_site"], "reference": {"sex": "F", "primary_site": "other"},
            "models": ["mixed_logit"], "adjustment": ["mutual"]}
    res = run_analyses(spec, d)
    p = res.primary().set_index("term")
    for term, beta in PLANTED["death_30d"].items():
        assert p.loc[term, "conf_low"] < beta < p.loc[term, "conf_high"], (term, p.loc[term, "estimate"], beta)


def test_quartiles_computed_when_no_quartile_column(data):
    spec = {"outcomes": ["death_30d"], "exposures": ["cancer_center", "volume_per50"], "covariates": ["age"],
            "models": ["logit"], "adjustment": ["alone"],
            "volume": {"quartile_column": None, "model": "logit", "spline": False}}
    res = run_analyses(spec, data.drop(columns=["volume_quartile"]), show_progress=False)
    assert res.failures == []
    q = res.table[res.table.analysis == "volume_quartiles"]
    assert {"volume_quartile[T.2]", "volume_quartile[T.3]", "volume_quartile[T.4]"} <= set(q.term)
    groups = res.extras["quartiles"]["groups"]
    assert [g["quartile"] for g in groups] == [1, 2, 3, 4]
    assert sum(g["n"] for g in groups) == len(data)
    assert all(a["volume_max"] <= b["volume_min"] for a, b in zip(groups, groups[1:]))


def test_model_warnings_are_printed_once_each_with_the_fits_they_concern():
    from hospstudy.console import console
    from hospstudy.models.analyses import _print_notes

    sep = "boundary fit: the SD is 0; the model reduces to logistic regression"
    rows = [
        {"analysis": "adjusted", "outcome": "death_30d", "model": "mixed_logit", "note": f"{sep}; separation in 'x'",
         "_notes": [sep, "separation in 'x'"]},
        {"analysis": "adjusted", "outcome": "death_30d", "model": "mixed_logit", "note": sep, "_notes": [sep]},
        {"analysis": "alone", "outcome": "complication", "model": "mixed_logit", "note": sep, "_notes": [sep]},
        {"analysis": "alone", "outcome": "complication", "model": "logit", "note": None},
    ]
    with console.capture() as cap:
        _print_notes(rows)
    lines = [l for l in cap.get().splitlines() if l.startswith("warning:")]
    assert len(lines) == 2  # one per distinct message, the message's own '; ' kept whole
    assert sep in lines[0] and "adjusted death_30d mixed_logit (+1 more)" in lines[0]
    assert "separation in 'x'" in lines[1] and "more" not in lines[1]
