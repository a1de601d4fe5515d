"""Disclosure control of the cumulative incidence curves: each published step groups at least
``threshold`` events (event of interest plus competing), published values are the exact
Aalen–Johansen estimates, and the disclosure checker catches curves with too many points."""

import json

import numpy as np
import pandas as pd
import pytest

from hospstudy.errors import InputError, ModelError
from hospstudy.models.analyses import _published_cif
from hospstudy.models.competing import coarsen_cif_steps, cumulative_incidence

# (group, time, event, patients): event 1 = discharge home, 2 = in-hospital death, 0 censored.
ROWS = [
    # group A, 40 patients.           at risk  events  events since last published point
    ("A", 1, 1, 3), ("A", 1, 2, 1),   # 40       4       4
    ("A", 2, 0, 2),                   # 36       0       4
    ("A", 3, 1, 4),                   # 34       4       8
    ("A", 4, 2, 1),                   # 30       1       9
    ("A", 5, 1, 2),                   # 29       2      11  -> published at t = 5
    ("A", 6, 1, 7), ("A", 6, 2, 3),   # 27      10      10  -> published at t = 6
    ("A", 7, 0, 1),                   # 17       0       0
    ("A", 8, 1, 5),                   # 16       5       5
    ("A", 9, 1, 4), ("A", 9, 2, 1),   # 11       5      10  -> published at t = 9
    ("A", 10, 1, 3),                  #  6 < 10: the curve ends (3 + 1 more events never shown)
    ("A", 11, 2, 1),
    ("A", 12, 0, 2),
    # threshold 5 on group A: 4, 4, 8 -> t = 3; 1, 3, 13 -> t = 6; 5 -> t = 8; 5 -> t = 9;
    # t = 10 (6 at risk) adds 3 < 5; t = 11 has 3 < 5 at risk: the end.
    # group B, 15 patients: 10 events, but the 10th comes when only 9 remain at risk
    ("B", 1, 1, 5), ("B", 1, 0, 1),   # 15 at risk, 5 events
    ("B", 2, 1, 5),                   #  9 at risk: the end, nothing published
    ("B", 3, 0, 4),
    # group C, 30 patients: 9 events in all (< 10): only the origin
    ("C", 2, 1, 4), ("C", 4, 2, 2), ("C", 6, 1, 3), ("C", 30, 0, 21),
]
EXPECTED = {("A", 10): [5, 6, 9], ("A", 5): [3, 6, 8, 9], ("B", 10): [], ("C", 10): []}


def small_data() -> pd.DataFrame:
    rows = [(g, float(t), e) for g, t, e, k in ROWS for _ in range(k)]
    return pd.DataFrame(rows, columns=["group", "time", "event"])


def test_small_data_is_as_described():
    d = small_data()
    assert d.groupby("group").size().to_dict() == {"A": 40, "B": 15, "C": 30}
    assert (d.event > 0).groupby(d.group).sum().to_dict() == {"A": 35, "B": 10, "C": 9}


def _curve(d, group):
    ci = cumulative_incidence(d, "time", "event", group="group", causes=[1, 2])
    return ci[ci.group == group]


def _per_time(part):
    ev = part[part.cause == 1].set_index("time").sort_index()
    co = part[part.cause == 2].set_index("time").reindex(ev.index)
    return ev.index.to_numpy(), ev.n_risk.to_numpy(), (ev.n_event + co.n_event).to_numpy()


@pytest.mark.parametrize(("group", "threshold"), sorted(EXPECTED))
def test_published_times_are_where_threshold_events_accumulated(group, threshold):
    d = small_data()
    times, n_risk, n_events = _per_time(_curve(d, group))
    keep = coarsen_cif_steps(n_risk, n_events, threshold)
    assert times[keep].tolist() == EXPECTED[(group, threshold)]
    pub = _published_cif(_curve(d, group), 1, 2, threshold)
    assert pub["time"].tolist() == [0.0] + EXPECTED[(group, threshold)]


def test_a_group_with_fewer_events_than_the_threshold_publishes_only_the_origin():
    pub = _published_cif(_curve(small_data(), "C"), 1, 2, 10)
    assert pub["time"].tolist() == [0.0]
    assert pub["cif_event"].tolist() == [0.0] and pub["cif_competing"].tolist() == [0.0]
    assert {len(v) for k, v in pub.items() if k != "states"} == {1}
    assert all(len(s["cif"]) == 1 for s in pub["states"])
    # and with no events at all
    assert coarsen_cif_steps([30, 20, 10], [0, 0, 0], 10).tolist() == []
    assert coarsen_cif_steps([], [], 10).tolist() == []


def _check_rule(d, group, times_pub, threshold):
    """Count events and patients at risk from the raw data, independently of the estimator."""
    g = d[d.group == group]
    prev = -np.inf
    for t in times_pub[1:]:
        events = int(((g.time > prev) & (g.time <= t) & (g.event > 0)).sum())
        assert events >= threshold, (group, t, events)
        assert int((g.time >= t).sum()) >= threshold, (group, t)
        prev = t
    # what is left before the at-risk cut is fewer than `threshold` events (no point missed)
    risk_ok = sorted(t for t in g.time.unique() if (g.time >= t).sum() >= threshold)
    last_ok = risk_ok[-1] if risk_ok else -np.inf
    tail = int(((g.time > prev) & (g.time <= last_ok) & (g.event > 0)).sum())
    assert tail < threshold, (group, tail)


def test_every_step_holds_threshold_events_and_threshold_at_risk_small_data():
    d = small_data()
    for (group, threshold), _ in EXPECTED.items():
        pub = _published_cif(_curve(d, group), 1, 2, threshold)
        _check_rule(d, group, pub["time"], threshold)


@pytest.mark.parametrize("seed", range(6))
def test_every_step_holds_threshold_events_and_threshold_at_risk_random(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    d = pd.DataFrame({
        "group": rng.choice(["x", "y", "z"], n, p=[0.6, 0.3, 0.1]),
        "time": rng.integers(0, 40 if seed % 2 else 400, n).astype(float),  # many ties, or few
        "event": rng.choice([0, 1, 2], n, p=[0.3, 0.55, 0.15]),
    })
    ci = cumulative_incidence(d, "time", "event", group="group", causes=[1, 2])
    for threshold in (1, 5, 10, 11, 25):
        for group, part in ci.groupby("group"):
            pub = _published_cif(part, 1, 2, threshold)
            assert pub["time"][0] == 0 and pub["cif_event"][0] == 0 and pub["cif_competing"][0] == 0
            assert np.all(np.diff(pub["time"]) >= 0)
            _check_rule(d, group, pub["time"], threshold)
            # never more points than the disclosure checker allows
            assert len(pub["time"]) <= 1 + int((d.group == group).sum()) // threshold
            if threshold == 1:  # every event time with someone at risk: the full curve's event times
                ev_times = sorted(d[(d.group == group) & (d.event > 0)].time.unique())
                assert pub["time"][1:].tolist() == ev_times


def test_published_values_are_the_exact_aalen_johansen_estimates():
    d = small_data()
    ci = cumulative_incidence(d, "time", "event", group="group", causes=[1, 2])
    for threshold in (5, 10):
        pub = _published_cif(ci[ci.group == "A"], 1, 2, threshold)
        t = pub["time"][1:]
        for cause, key in ((1, "cif_event"), (2, "cif_competing")):
            full = ci[(ci.group == "A") & (ci.cause == cause)].set_index("time").loc[t]
            np.testing.assert_allclose(pub[key][1:], full.estimate, rtol=0, atol=1e-15)
            np.testing.assert_allclose(pub[f"{key}_low"][1:], full.conf_low, rtol=0, atol=1e-15)
            np.testing.assert_allclose(pub[f"{key}_high"][1:], full.conf_high, rtol=0, atol=1e-15)
    # by hand at t = 5 (threshold 10), S(t) the probability of no event by t: S(1) = 36/40,
    # S(3) = S(1) 30/34, S(4) = S(3) 29/30; home: 3/40 + S(1) 4/34 + S(4) 2/29, death: 1/40 + S(3) 1/30
    s1 = 36 / 40
    s3 = s1 * 30 / 34
    s4 = s3 * 29 / 30
    pub = _published_cif(ci[ci.group == "A"], 1, 2, 10)
    assert pub["cif_event"][1] == pytest.approx(3 / 40 + s1 * 4 / 34 + s4 * 2 / 29, abs=1e-15)
    assert pub["cif_competing"][1] == pytest.approx(1 / 40 + s3 * 1 / 30, abs=1e-15)


def test_bad_arguments():
    with pytest.raises(ModelError, match="threshold"):
        coarsen_cif_steps([10, 9], [1, 1], 0)
    with pytest.raises(ModelError, match="threshold"):
        coarsen_cif_steps([10, 9], [1, 1], 2.5)
    with pytest.raises(InputError, match="same length"):
        coarsen_cif_steps([10, 9], [1], 10)
    with pytest.raises(InputError, match="must not increase"):
        coarsen_cif_steps([9, 10], [1, 1], 1)


# the runner's case: one binary exposure, the competing-risks analysis, nothing else
RUNNER_SPEC = {"outcomes": ["los_to_home"], "exposures": ["cancer_center"], "cluster": "hospital_id", "models": ["logit"],
               "hospital_variation": False,
               "competing_risks": {"outcome": "los_to_home", "event_column": "los_to_home_event", "models": ["cause_specific"],
                                   "adjusted": False}}


def _runner_data():
    """The analytic data and its (group, time, event) view for counting by hand."""
    from analyses_synth import analytic

    data = analytic(n_hosp=20, mean_patients=30, seed=5)
    d = data.assign(group=data.cancer_center.astype(float), time=data.los_to_home.astype(float),
                    event=data.los_to_home_event.astype(int))
    return data, d


def test_runner_publishes_grouped_steps():
    from hospstudy.models.analyses import run_analyses

    data, d = _runner_data()
    res = run_analyses(RUNNER_SPEC, data, show_progress=False)
    cif = res.extras["cumulative_incidence"]
    assert "each step groups at least 10 events" in cif["method"]
    assert {c["level"] for c in cif["curves"]} == {"0", "1"}
    for c in cif["curves"]:
        _check_rule(d, float(c["level"]), c["time"], 10)
        assert c["time"][0] == 0 and len(c["time"]) > 3
        assert "n_risk" not in c and "n_event" not in c and not any(k.startswith("n_") for k in c if k != "n_at_risk")
        # numbers at risk: never a shown pair that differs by 1..9 (patients leaving in between)
        shown = [x for x in c["n_at_risk"] if x is not None and x >= 10]
        assert all(a == b or a - b >= 10 for a, b in zip(shown, shown[1:])), c["n_at_risk"]
        full = cumulative_incidence(d, "time", "event", group="group", causes=[1, 2])
        full = full[(full.group == float(c["level"])) & (full.cause == 1)].set_index("time")
        np.testing.assert_allclose(c["cif_event"][1:], full.estimate.loc[c["time"][1:]], atol=1e-14)


def test_runner_takes_the_study_threshold():
    """A study's [report] disclosure_threshold (here 25) sets the step size, whether passed
    explicitly or read from the Study."""
    from hospstudy.report.spec import ReportSpec
    from hospstudy.models.analyses import AnalysesSpec, run_analyses

    data, d = _runner_data()

    class StudyLike:  # what run_analyses reads of a Study: .analyses and .report
        analyses = AnalysesSpec.from_table(RUNNER_SPEC)
        report = ReportSpec(disclosure_threshold=25)

    by_default = run_analyses(RUNNER_SPEC, data, show_progress=False).extras["cumulative_incidence"]["curves"]
    for res in (run_analyses(RUNNER_SPEC, data, show_progress=False, disclosure_threshold=25),
                run_analyses(StudyLike(), data, show_progress=False)):
        cif = res.extras["cumulative_incidence"]
        assert "each step groups at least 25 events" in cif["method"]
        for c, c10 in zip(cif["curves"], by_default):
            _check_rule(d, float(c["level"]), c["time"], 25)
            assert 1 < len(c["time"]) < len(c10["time"])


def _results_doc(curves):
    return {"schema": "hospstudy.results/1", "meta": {}, "table": [],
            "extras": {"cumulative_incidence": {"method": "", "curves": curves, "other_curves": []}}}


def test_checker_flags_curves_with_more_points_than_the_rule_allows(tmp_path):
    from hospstudy.privacy import check_disclosure

    ok = {"group": "g=1", "n": 40, "time": [0, 5, 6, 9], "cif_event": [0, 0.1, 0.3, 0.5]}
    (tmp_path / "results.json").write_text(json.dumps(_results_doc([ok])))
    assert check_disclosure(tmp_path) == []
    too_many = {**ok, "time": [0, 1, 2, 3, 4, 5], "cif_event": [0, 0.1, 0.2, 0.3, 0.4, 0.5]}  # 40 // 10 + 1 = 5
    (tmp_path / "results.json").write_text(json.dumps(_results_doc([ok, too_many])))
    v = check_disclosure(tmp_path)
    assert len(v) == 1 and "curves[1].time" in v[0].location and "fewer than 10 events" in v[0].rule
    assert len(check_disclosure(tmp_path, threshold=20)) == 2  # 40 // 20 + 1 = 3 < 4
    # a suppressed group size allows the origin only; no group size: not checked
    small = {"group": "g=2", "n": "<10", "time": [0, 3], "cif_event": [0, 0.2]}
    (tmp_path / "results.json").write_text(json.dumps(_results_doc([small, {"time": list(range(50))}])))
    assert [x.location for x in check_disclosure(tmp_path)] == ["$.extras.cumulative_incidence.curves[0].time"]


def test_publishing_at_a_stricter_threshold_withholds_the_curves():
    """Curves grouped by 10 events cannot be published at threshold 11 (no counts to regroup):
    sanitize_json withholds them; at 10 they stay."""
    from hospstudy.privacy import sanitize_json

    curve = {"exposure": "cancer_center", "group": "cancer_center=1", "level": "1", "time": [0.0, 5.0, 9.0],
             "cif_event": [0.0, 0.2, 0.5], "n": 98}
    doc = {"extras": {"cumulative_incidence": {"min_events_per_step": 10, "method": "", "curves": [curve],
                                               "other_curves": [curve]}}}
    kept = sanitize_json(doc, 10)["extras"]["cumulative_incidence"]
    assert kept["curves"] == [curve] and "withheld" not in kept
    stricter = sanitize_json(doc, 11)["extras"]["cumulative_incidence"]
    assert stricter["curves"] == [] and stricter["other_curves"] == [] and "withheld" in stricter
