"""gee_logit: consistency with logit, statsmodels, weight invariances and input errors."""

import numpy as np
import pandas as pd
import pytest

from hospstudy.errors import ModelError
from hospstudy.models.gee import gee_logit
from hospstudy.models.glm import logit


@pytest.fixture(scope="module")
def df():
    rng = np.random.default_rng(11)
    H = 40
    sizes = rng.integers(2, 40, H)
    h = np.repeat(np.arange(H), sizes)
    n = h.size
    u = rng.normal(0, 0.6, H)[h]
    x = rng.normal(0, 1, n)
    cc = (rng.random(H) < 0.4)[h]
    eta = -0.8 + 0.5 * x - 0.3 * cc + u
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "cc": cc, "h": h, "w": rng.uniform(0.3, 2.5, n)})


F = "y ~ x + cc"


def test_independence_equals_logit_with_unadjusted_cluster_sandwich(df):
    g = gee_logit(F, df, cluster="h", corr="independence", weights="w")
    lg = logit(F, df, weights="w", cluster="h")
    G = g.clusters
    np.testing.assert_allclose(g.estimate, lg.estimate, atol=1e-9)
    np.testing.assert_allclose(g.cov, lg.cov * (G - 1) / G, rtol=1e-7)


def test_independence_matches_statsmodels(df):
    import statsmodels.api as sm

    X = np.c_[np.ones(len(df)), df["x"], df["cc"].astype(float)]
    sm_fit = sm.GEE(df["y"], X, groups=df["h"], family=sm.families.Binomial(),
                    cov_struct=sm.cov_struct.Independence()).fit()
    g = gee_logit(F, df, cluster="h", corr="independence")
    np.testing.assert_allclose(g.estimate, sm_fit.params, atol=1e-7)
    np.testing.assert_allclose(g.std_error, sm_fit.bse, rtol=1e-6)


def test_exchangeable_close_to_statsmodels_but_not_identical(df):
    """statsmodels' alpha divides by (pairs - p) and fixes the scale at 1: close, not equal."""
    import statsmodels.api as sm

    X = np.c_[np.ones(len(df)), df["x"], df["cc"].astype(float)]
    sm_fit = sm.GEE(df["y"], X, groups=df["h"], family=sm.families.Binomial(),
                    cov_struct=sm.cov_struct.Exchangeable()).fit()
    g = gee_logit(F, df, cluster="h")
    assert 0 < g.extra["alpha"] < 0.5
    np.testing.assert_allclose(g.estimate, sm_fit.params, atol=0.02)


def test_unit_weights_equal_no_weights(df):
    a = gee_logit(F, df, cluster="h")
    b = gee_logit(F, df, cluster="h", weights=np.ones(len(df)))
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-10)
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-8)
    assert a.extra["alpha"] == pytest.approx(b.extra["alpha"], rel=1e-10)


def test_zero_weight_equals_row_dropped(df):
    w = df["w"].to_numpy().copy()
    w[::5] = 0
    a = gee_logit(F, df, cluster="h", weights=w)
    b = gee_logit(F, df[w > 0], cluster="h", weights=w[w > 0])
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-10)
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-8)


def test_constant_weights_do_not_change_estimates(df):
    """Scaling every weight by 2 (geepack's weights are not frequencies) leaves beta and alpha alone."""
    a = gee_logit(F, df, cluster="h")
    b = gee_logit(F, df, cluster="h", weights=np.full(len(df), 2.0))
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-9)
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-8)


def test_singleton_clusters_only_cannot_be_exchangeable():
    d = pd.DataFrame({"y": [0, 1, 0, 1, 1, 0], "x": [1, 2, 3, 4, 5, 6.0], "h": range(6)})
    with pytest.raises(ModelError, match="independence"):
        gee_logit("y ~ x", d, cluster="h")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"cluster": "h", "corr": "ar1"}, "'corr' parameter of gee_logit"),
        ({"cluster": None}, "'cluster' parameter of gee_logit"),
        ({"cluster": "nope"}, "'cluster' parameter of gee_logit"),
    ],
)
def test_bad_arguments(df, kwargs, match):
    with pytest.raises(ModelError, match=match):
        gee_logit(F, df, **kwargs)


def test_not_converged_warns(df):
    from hospstudy.errors import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match="did not converge"):
        r = gee_logit(F, df, cluster="h", max_iter=1)
    assert r.converged is False and r.header()["converged"] is False
