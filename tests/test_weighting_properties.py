"""Propensity weighting: known properties, missing data, weights in gee_logit, errors."""

import numpy as np
import pandas as pd
import pytest

from hospstudy.errors import HospstudyWarning, ModelError
from hospstudy.models.gee import gee_logit
from hospstudy.models.glm import logit
from hospstudy.models.weighting import balance_table, propensity_weights, weighted_logit


@pytest.fixture(scope="module")
def df():
    rng = np.random.default_rng(3)
    n, H = 3000, 60
    h = rng.integers(0, H, n)
    age = rng.normal(67, 11, n)
    male = rng.random(n) < 0.55
    site = rng.choice(["lung", "breast", "prostate", "other"], n, p=[.35, .2, .2, .25])
    lin = -0.5 + 0.03 * (age - 67) + 0.3 * male + np.select([site == "lung", site == "breast"], [0.4, -0.3], 0)
    cc = rng.random(n) < 1 / (1 + np.exp(-lin))
    y = rng.random(n) < 1 / (1 + np.exp(-(-2.5 + 0.04 * (age - 67) - 0.2 * cc)))
    return pd.DataFrame({"cc": cc, "age": age, "male": male, "site": site, "y": y, "h": h})


PS = "cc ~ age + male + C(site, contr.treatment('other'))"


def test_overlap_weights_balance_ps_covariates_exactly(df):
    """Li, Morgan & Zaslavsky (2018): with a logistic PS, overlap weights give exact mean balance."""
    pw = propensity_weights(PS, df, method="overlap")
    bt = balance_table(df, ["age", "male", "site"], "cc", pw)
    assert np.abs(bt["smd_after"]).max() < 1e-8
    assert np.abs(bt["smd_before"]).max() > 0.05


def test_iptw_improves_balance_and_stabilized_sums(df):
    pw = propensity_weights(PS, df)
    bt = balance_table(df, ["age", "male", "site"], "cc", pw)
    # the planted confounding (age 0.03/year in the PS) gives an age SMD of about 0.38 before;
    # stabilized IPTW with the true PS model brings every SMD near 0 (the second bound can fail)
    assert np.abs(bt["smd_after"]).max() < 0.02
    assert np.abs(bt["smd_before"]).max() > 0.3
    s = pw.summary().set_index("group")
    # stabilized IPTW: weights sum to about the group size
    assert s.loc["treated", "weight_sum"] == pytest.approx(s.loc["treated", "n"], rel=0.1)
    assert s.loc["control", "weight_sum"] == pytest.approx(s.loc["control", "n"], rel=0.1)
    # Kish ESS, computed here from the weights (0 < ESS <= n holds for any positive weights, so a
    # bound could not fail); the weights vary, so it is well below n
    for group, g in (("treated", True), ("control", False)):
        w = pw.weights[df["cc"] == g].to_numpy()
        assert pw.ess()[group] == pytest.approx(w.sum() ** 2 / (w**2).sum(), rel=1e-12)
        assert pw.ess()[group] < 0.99 * s.loc[group, "n"]


def test_missing_covariate_rows_have_no_weight_and_are_not_analysed(df):
    d = df.copy()
    d.loc[d.index[:10], "age"] = np.nan
    pw = propensity_weights(PS, d)
    assert pw.weights.isna().sum() == 10 and pw.ps.iloc[:10].isna().all()
    r = weighted_logit("y ~ cc", d, pw)
    assert r.n == len(d) - 10
    assert r.extra["rows"][0] == 10


def test_weights_in_gee_and_logit_agree_with_weighted_logit(df):
    pw = propensity_weights(PS, df)
    a = weighted_logit("y ~ cc", df, pw, cluster="h")
    b = logit("y ~ cc", df, weights=pw.weights.to_numpy(), cluster="h")
    np.testing.assert_allclose(a.estimate, b.estimate)
    np.testing.assert_allclose(a.cov, b.cov)
    g = gee_logit("y ~ cc", df, cluster="h", corr="independence", weights=pw.weights.to_numpy())
    np.testing.assert_allclose(g.estimate, a.estimate, atol=1e-9)
    G = a.clusters
    np.testing.assert_allclose(g.cov, a.cov * (G - 1) / G, rtol=1e-7)


def test_balance_without_weights_and_types(df):
    bt = balance_table(df, ["age", "male", "site"], "cc")
    assert bt["smd_after"].isna().all()
    assert list(bt["type"]) == ["continuous", "binary"] + ["categorical"] * 4
    assert bt.loc[bt["type"] != "continuous", "vr_before"].isna().all()


def test_extreme_scores_warn():
    x = np.r_[np.linspace(-10, 10, 200)]
    t = (np.random.default_rng(1).random(200) < 1 / (1 + np.exp(-2 * x))).astype(int)
    d = pd.DataFrame({"t": t, "x": x})
    with pytest.warns(HospstudyWarning, match="positivity"):
        propensity_weights("t ~ x", d)


def test_errors(df):
    with pytest.raises(ModelError, match="'method' parameter of propensity_weights"):
        propensity_weights(PS, df, method="ipw")
    with pytest.raises(ModelError, match="0/1"):
        balance_table(df.assign(cc=df["site"]), ["age"], "cc")
    with pytest.raises(ModelError, match="'covariates/treatment' parameter"):
        balance_table(df, ["nope"], "cc")
    with pytest.raises(ModelError, match="'weights' parameter of weighted_logit"):
        weighted_logit("y ~ cc", df, None)


def test_nullable_dtypes_of_the_analytic_dataset(df):
    """The analytic dataset has nullable booleans/integers: missing values drop rows, not crash."""
    d = df.copy()
    d["y"] = d["y"].astype("boolean")
    d.loc[d.index[:7], "y"] = pd.NA
    d["male"] = d["male"].astype("boolean")
    d.loc[d.index[7], "male"] = pd.NA
    d["volume"] = pd.array(np.arange(len(d)) % 300 + 1, dtype="Int64")
    d.loc[d.index[8], "volume"] = pd.NA
    pw = propensity_weights(PS, d)
    assert pw.weights.isna().sum() == 1
    bt = balance_table(d, ["male", "volume", "site"], "cc", pw)
    assert bt.loc[0, "n"] == len(d) - 1 and bt.loc[1, "n"] == len(d) - 2  # weight (row 7), volume (row 8)
    r = weighted_logit("y ~ cc + volume", d, pw, cluster="h")
    assert r.n == len(d) - 9
    g = gee_logit("y ~ cc + male", d, cluster="h")
    assert g.n == len(d) - 8


def test_smd_by_hand():
    d = pd.DataFrame({"t": [1, 1, 1, 1, 0, 0, 0, 0], "b": [1, 1, 0, 0, 1, 0, 0, 0],
                      "x": [1.0, 2, 3, 4, 1, 1, 2, 2]})
    bt = balance_table(d, ["b", "x"], "t", weights=np.r_[np.ones(4), 1, 3, 1, 3.0])
    # binary: (0.5 - 0.25) / sqrt((0.25 + 0.1875) / 2)
    assert bt.loc[0, "smd_before"] == pytest.approx(0.25 / np.sqrt(0.21875))
    # continuous: means 2.5 vs 1.5, sample variances 5/3 and 1/3
    assert bt.loc[1, "smd_before"] == pytest.approx(1.0 / np.sqrt(1.0))
    assert bt.loc[1, "vr_before"] == pytest.approx(5.0)
    # weighted control: b mean 1/8, x mean (1 + 3 + 2 + 6) / 8 = 1.5
    assert bt.loc[0, "mean_control_w"] == pytest.approx(1 / 8)
    assert bt.loc[1, "mean_control_w"] == pytest.approx(1.5)
    v0 = 8 / (64 - 20) * (1 * 0.25 + 3 * 0.25 + 1 * 0.25 + 3 * 0.25)
    assert bt.loc[1, "vr_after"] == pytest.approx((5 / 3) / v0)


def test_curve_on_weighted_model(df):
    from hospstudy.models.splines import volume_curve

    d = df.assign(volume=np.arange(len(df)) % 250 + 5.0)
    pw = propensity_weights(PS, d)
    r = weighted_logit("y ~ cc + rcs(volume, 3)", d, pw, cluster="h")
    c = volume_curve(r, "volume", [10.0, 100, 200], reference=100)
    assert c.loc[1, "or"] == pytest.approx(1.0) and c.attrs["scale"] == "marginal"
