"""rcs in formulas, volume_curve and quartiles."""

import numpy as np
import pandas as pd
import pytest

from hospstudy.errors import ModelError
from hospstudy.models.gee import gee_logit
from hospstudy.models.glm import logit
from hospstudy.models.splines import harrell_knots, quartiles, rcs_basis, volume_curve


@pytest.fixture(scope="module")
def df():
    rng = np.random.default_rng(5)
    H = 80
    vol_h = rng.gamma(2.0, 60.0, H).round() + 5
    h = rng.integers(0, H, 4000)
    vol = vol_h[h]
    age = rng.normal(68, 10, h.size)
    eta = -2.5 - 0.04 * (vol / 50) + 0.6 * np.exp(-vol / 40) + 0.02 * (age - 68)
    y = rng.random(h.size) < 1 / (1 + np.exp(-eta))
    return pd.DataFrame({"y": y, "volume": vol, "age": age, "h": h})


def test_rcs_in_formula_uses_harrell_knots(df):
    r = logit("y ~ rcs(volume, 4) + age", df)
    assert r.terms[1:4] == ["rcs(volume, 4)[volume]", "rcs(volume, 4)[volume']", "rcs(volume, 4)[volume'']"]
    kn = r.extra["model_spec"].transform_state["rcs(volume, 4)"]["knots"]
    np.testing.assert_allclose(kn, harrell_knots(df["volume"], 4))


def test_rcs_with_explicit_knots_equals_manual_basis(df):
    kn = [20, 80, 150, 300]
    r = logit("y ~ rcs(volume, [20, 80, 150, 300]) + age", df)
    B = rcs_basis(df["volume"], kn)
    d = df.assign(s0=B[:, 0], s1=B[:, 1], s2=B[:, 2])
    m = logit("y ~ s0 + s1 + s2 + age", d)
    np.testing.assert_allclose(r.estimate, m.estimate, rtol=1e-10)


def test_linear_curve_is_exact(df):
    r = logit("y ~ I(volume / 50) + age", df, cluster="h")
    grid = np.array([10.0, 50, 100, 200, 400])
    c = volume_curve(r, "volume", grid, reference=100)
    b, se = r.estimate[1], r.std_error[1]
    np.testing.assert_allclose(c["log_or"], b * (grid - 100) / 50)
    np.testing.assert_allclose(c["std_error"], se * np.abs(grid - 100) / 50)
    row = c[c["value"] == 100].iloc[0]
    assert row["or"] == 1 and row["conf_low"] == 1 and row["conf_high"] == 1
    assert c.attrs["reference"] == 100 and c.attrs["scale"] == "unclustered"


def test_spline_curve_matches_basis_difference(df):
    r = gee_logit("y ~ rcs(volume, 3) + age", df, cluster="h")
    kn = r.extra["model_spec"].transform_state["rcs(volume, 3)"]["knots"]
    grid = np.linspace(10, 400, 9)
    c = volume_curve(r, "volume", grid, reference=100)
    D = rcs_basis(grid, kn) - rcs_basis([100.0], kn)
    beta, cov = r.estimate[1:3], r.cov[1:3, 1:3]
    np.testing.assert_allclose(c["log_or"], D @ beta, rtol=1e-10)
    np.testing.assert_allclose(c["std_error"], np.sqrt(np.einsum("ij,jk,ik->i", D, cov, D)), rtol=1e-8)
    assert c.attrs["knots"] == kn and c.attrs["scale"] == "marginal"
    # the 95% Wald interval on the log scale, from the checked log OR and SE (an ordering check
    # conf_low <= or <= conf_high could not fail: it holds for any SE >= 0)
    np.testing.assert_allclose(c["or"], np.exp(c["log_or"]), rtol=1e-12)
    np.testing.assert_allclose(c["conf_low"], np.exp(c["log_or"] - 1.959963984540054 * c["std_error"]), rtol=1e-12)
    np.testing.assert_allclose(c["conf_high"], np.exp(c["log_or"] + 1.959963984540054 * c["std_error"]), rtol=1e-12)


def test_curve_default_grid_and_reference(df):
    r = logit("y ~ rcs(volume, 5) + age", df)
    c = volume_curve(r, "volume")
    assert len(c) == 100
    assert c.attrs["reference"] == pytest.approx(np.median(df["volume"]))
    assert c["value"].min() == pytest.approx(np.quantile(df["volume"], 0.01))


def test_curve_bad_arguments(df):
    r = logit("y ~ rcs(volume, 3) + age", df)
    with pytest.raises(ModelError, match="'var' parameter of volume_curve"):
        volume_curve(r, "beds")
    with pytest.raises(ModelError, match="'grid' parameter of volume_curve"):
        volume_curve(r, "volume", grid=[1.0, np.nan])


def test_rcs_bad_knots(df):
    with pytest.raises(ModelError, match="knots"):
        logit("y ~ rcs(volume, 2.5)", df)
    with pytest.raises(ModelError, match="at least 6"):
        harrell_knots([1, 2, 3], 3)


def test_quartiles_cut_points_and_labels():
    x = np.arange(1, 101, dtype=float)
    q = quartiles(x, labels="volume")
    assert q.attrs["cuts"] == pytest.approx([1, 25.75, 50.5, 75.25, 100])
    assert q["quartile"].value_counts().sort_index().tolist() == [25, 25, 25, 25]
    assert q["label"].iloc[0] == "Q1 (volume 1\u201326)"
    assert q.attrs["labels"][3].startswith("Q4 (volume >75")


def test_quartiles_ties_missing_and_boundaries():
    x = [1, 1, 1, 1, 1, 1, 2, 3, np.nan, 4]
    q = quartiles(x)
    assert q["quartile"].isna().sum() == 1
    # cuts 1, 1, 1, 2.25, 4: the tied cuts merge, so only three groups exist
    assert set(q["quartile"].dropna()) == {1, 2, 3}
    assert len(q.attrs["labels"]) == 3
    # a value equal to a cut falls in the lower group
    q2 = quartiles([1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert q2.attrs["cuts"][1] == 3 and q2["quartile"].iloc[2] == 1


def test_curve_without_formula_state_from_explicit_knots(df):
    """Results that keep no formula state (mixed_logit) work when the knots are explicit."""
    from dataclasses import replace

    r = logit("y ~ rcs(volume, [20, 80, 150, 300]) + age", df)
    bare = replace(r, extra={})
    grid = np.array([10.0, 60, 200, 350])
    a = volume_curve(r, "volume", grid, reference=100)
    b = volume_curve(bare, "volume", grid, reference=100)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-10)
    assert b.attrs["knots"] == [20, 80, 150, 300]
    with pytest.raises(ModelError, match="grid/reference"):
        volume_curve(bare, "volume")
    with pytest.raises(ModelError, match="'var' parameter"):
        volume_curve(bare, "beds", grid, reference=100)
