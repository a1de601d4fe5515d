"""Published vs this run (issue 10, item 4): every figure of report/published.toml beside this
run's, with the intervals side by side, a verdict per row and the definitions that differ.
Verdict expectations are written out by hand."""

import json

import numpy as np
import pytest

from hospstudy.report.html import published_reference, published_vs_run
from hospstudy.report.results import Results
from hospstudy.report.sections.reference import verdict_rate, verdict_ratio
from test_report import STUDY, _row, make_analytic


@pytest.mark.parametrize("pub, run, expected", [
    ((0.841, 0.709, 0.999), (0.84, 0.72, 0.98), "agrees"),
    ((0.841, 0.709, 0.999), (0.90, 0.60, 1.35), "CI wider: consistent, not significant here"),
    ((0.841, 0.709, 0.999), (1.30, 1.05, 1.60), "contradicts: opposite direction"),
    ((0.841, 0.709, 0.999), (0.95, 0.90, 1.02), "differs in size (CIs overlap)"),
    ((0.50, 0.40, 0.60), (0.90, 0.85, 0.95), "contradicts: CIs do not overlap"),
    ((1.02, 0.95, 1.10), (1.03, 1.01, 1.05), "agrees; significant here"),
    (None, (1.04, 1.002, 1.08), "contradicts: association here (p < 0.05)"),  # a published null, contradicted
    (None, (1.10, 1.01, 1.18), "contradicts: association here (p < 0.05)"),
    (None, (1.03, 0.95, 1.12), "agrees (no association)"),
    (None, (float("inf"), 0.1, float("inf")), "not estimable here"),
])
def test_verdict_ratio(pub, run, expected):
    assert verdict_ratio(pub, run) == expected


def test_verdict_rate_uses_the_wilson_interval():
    # 80 of 1,000 = 8.0%, Wilson 95% interval 6.47%-9.85%
    assert verdict_rate(0.078, 80, 1000) == "agrees"
    assert verdict_rate(0.065, 80, 1000) == "agrees"
    assert verdict_rate(0.062, 80, 1000) == "differs (+1.8 percentage points)"
    assert verdict_rate(0.10, 80, 1000) == "differs (-2.0 percentage points)"


def _results():
    t = []
    for outcome in ("death_30d", "complication", "unfavorable_ambulatory"):
        t.append(_row("mutual", outcome, "cancer_center", "mixed_logit", "conditional", "cancer_center", np.log(0.84), 0.08))
    t.append(_row("mutual", "death_30d", "volume_per50", "mixed_logit", "conditional", "volume_per50", np.log(0.958), 0.015))
    t.append(_row("mutual", "complication", "volume_per50", "mixed_logit", "conditional", "volume_per50", 0.0, 0.02))
    # volume and unfavorable ambulatory status: OR 1.04 (1.003-1.08), against the paper's null finding
    t.append(_row("mutual", "unfavorable_ambulatory", "volume_per50", "mixed_logit", "conditional", "volume_per50", np.log(1.04), 0.0187))
    for m in ("cause_specific", "fine_gray"):
        t.append(_row(f"{m}_mutual", "los_to_home", "cancer_center", m, "marginal", "cancer_center",
                      np.log(1.10) if m == "fine_gray" else 0.01, 0.04))
        t.append(_row(f"{m}_mutual", "los_to_home", "volume_per50", m, "marginal", "volume_per50", 0.0, 0.02))
    t.append(_row("mutual", "death_30d", "cancer_center+volume_per50", "mixed_logit", "conditional", "sex[T.M]", np.log(2.4), 0.2))
    return Results.from_dict(json.loads(json.dumps({"table": t})))


def test_every_published_figure_is_listed_with_a_verdict():
    pub = published_reference()
    df = make_analytic(n=3000, hospitals=120)
    t = published_vs_run(pub, df, _results(), STUDY["analyses"], 10, STUDY).frame.set_index("Figure")
    src = pub["source"]
    inst = src["institutional_function"]
    expected = (len(inst["cohort"]) - 1  # a note_ is not a figure
                + len(inst["outcomes"])
                + 2 + 2 * (len(inst["adjusted"]["null_outcomes"]) + 1)  # two ORs; each null x 2 exposures (LOS: x 2 models)
                + 8  # trends: surgeries, fusion share, mortality, LOS in 2012 and 2020
                + 4)  # the 30-day risk-score ORs
    assert len(t) == expected, t.index.tolist()
    row = t.loc["30-day mortality OR, cancer center"]
    assert row["Published"] == "0.841 (0.709–0.999); p 0.0483" and row["This run"].startswith("0.840 (")
    assert row["Verdict"] == "agrees"
    amb = t.loc["Unfavorable ambulatory status OR, per 50 cases of volume"]
    assert amb["Published"] == "no association reported"
    assert amb["Verdict"] == "contradicts: association here (p < 0.05)"
    assert amb["Definition difference"] != ""
    fg = t.loc["Length of stay until discharge home, Fine–Gray HR, cancer center"]
    assert fg["Verdict"] == "contradicts: association here (p < 0.05)"
    assert t.loc["Length of stay until discharge home, cause-specific HR, cancer center", "Verdict"] == "agrees (no association)"
    assert t.loc["30-day mortality OR, male sex", "Verdict"] == "agrees"
    assert t.loc["Patients", "Verdict"].startswith("not compared")
    notes = " ".join(published_vs_run(pub, df, _results(), STUDY["analyses"], 10, STUDY).notes)
    for doi in ("10.1097/BSD.0000000000001885", "10.1007/s10147-024-02537-9", "10.1016/j.jos.2020.07.015"):
        assert doi in notes
    assert "Barthel" in notes  # the ambulatory definition that differs, stated once


def test_a_median_volume_below_the_threshold_is_hidden():
    """A hospital-year's volume is a count of its patients: a median under the disclosure
    threshold is shown as '<threshold' (a whole run on a tiny database once published '2')."""
    pub = published_reference()
    df = make_analytic(n=3000, hospitals=120)
    name = "Median annual spine-surgery volume per hospital"
    for vol, shown in ((4, "<10"), (9, "<10"), (10, "10"), (37, "37")):
        df["volume"] = vol
        t = published_vs_run(pub, df, _results(), STUDY["analyses"], 10, STUDY).frame.set_index("Figure")
        assert t.loc[name, "This run"] == shown, (vol, t.loc[name, "This run"])
