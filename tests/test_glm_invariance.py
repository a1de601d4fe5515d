"""logit: weight invariances, row handling, statistical warnings and input errors."""

import warnings

import numpy as np
import pandas as pd
import pytest

from hospstudy.errors import ModelError, RankDeficiencyWarning, SeparationWarning
from hospstudy.models.glm import detect_separation, logit


@pytest.fixture(scope="module")
def df():
    rng = np.random.default_rng(7)
    n, H = 600, 30
    h = rng.integers(0, H, n)
    u = rng.normal(0, 0.5, H)[h]
    age = rng.normal(70, 10, n)
    cc = rng.random(n) < 0.4
    sex = rng.choice(["F", "M"], n)
    eta = -1 + 0.03 * (age - 70) - 0.4 * cc + 0.3 * (sex == "M") + u
    y = rng.random(n) < 1 / (1 + np.exp(-eta))
    return pd.DataFrame({"y": y, "age": age, "cc": cc, "sex": sex, "h": h, "w": rng.uniform(0.2, 3, n)})


F = "y ~ age + cc + C(sex, contr.treatment('F'))"


def test_unit_weights_equal_no_weights(df):
    a = logit(F, df, cluster="h")
    b = logit(F, df, weights=np.ones(len(df)), cluster="h")
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-12)
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-10)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-12)


def test_weight_two_equals_duplicated_rows(df):
    dup = pd.concat([df, df], ignore_index=True)
    a = logit(F, dup)
    b = logit(F, df, weights=np.full(len(df), 2.0))
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-9)
    # model-based variance: frequency weights are information, so these agree too
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-8)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-10)


def test_integer_weights_equal_replicated_rows(df):
    k = (np.arange(len(df)) % 3) + 1
    rep = df.loc[df.index.repeat(k)].reset_index(drop=True)
    a = logit(F, rep)
    b = logit(F, df, weights=k.astype(float))
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-9)


def test_zero_weight_equals_row_dropped(df):
    w = df["w"].to_numpy().copy()
    w[::7] = 0.0
    a = logit(F, df, weights=w, cluster="h")
    keep = w > 0
    b = logit(F, df[keep], weights=w[keep], cluster="h")
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-12)
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-10)
    assert a.n == b.n == int(keep.sum())


def test_rows_with_missing_values_are_dropped_and_positions_kept(df):
    d = df.copy()
    d.loc[d.index[:5], "age"] = np.nan
    r = logit(F, d)
    assert r.n == len(d) - 5
    assert r.extra["rows"][0] == 5
    assert r.extra["fitted"].shape == (r.n,)


def test_cluster_labels_any_type_and_order(df):
    a = logit(F, df, cluster="h")
    b = logit(F, df.assign(h=("hosp-" + df["h"].astype(str))), cluster="h")
    c = logit(F, df.sample(frac=1, random_state=3), cluster="h")
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-12)
    np.testing.assert_allclose(a.cov, c.cov, rtol=1e-8)


def test_complete_separation_warns():
    d = pd.DataFrame({"y": [0, 0, 0, 0, 1, 1, 1, 1], "x": [1, 2, 3, 4, 5, 6, 7, 8.0]})
    with pytest.warns(SeparationWarning, match="x"):
        logit("y ~ x", d)


def test_quasi_separation_by_category_warns(df):
    d = df.copy()
    d["site"] = np.where(np.arange(len(d)) % 10 == 0, "rare", "common")
    d.loc[d["site"] == "rare", "y"] = False
    with pytest.warns(SeparationWarning, match="rare"):
        logit("y ~ age + C(site, contr.treatment('common'))", d)


def test_no_separation_no_warning(df):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logit(F, df)
    X = np.c_[np.ones(len(df)), df["age"]]
    assert detect_separation(X, df["y"].to_numpy(float), ["Intercept", "age"]) == []


def test_rank_deficiency_warns_and_reports_nan(df):
    d = df.assign(age2=df["age"] * 2)
    with pytest.warns(RankDeficiencyWarning, match="age"):
        r = logit("y ~ age + age2 + cc", d)
    assert np.isnan(r.estimate).sum() == 1
    t = r.tidy()
    assert t["estimate"].notna().sum() == 3


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"weights": "nope"}, "'weights' parameter of logit"),
        ({"cluster": [1, 2]}, "'cluster' parameter of logit"),
        ({"robust": "yes"}, "'robust' parameter of logit"),
        ({"conf_level": 95}, "'conf_level' parameter of logit"),
    ],
)
def test_bad_arguments_use_one_template(df, kwargs, match):
    with pytest.raises(ModelError, match=match):
        logit(F, df, **kwargs)


def test_bad_data_names_the_row(df):
    d = df.assign(y=df["y"].astype(float))
    d.loc[d.index[3], "y"] = 2.0
    with pytest.raises(ModelError, match=r"0/1.*row 3"):
        logit(F, d)
    w = df["w"].to_numpy().copy()
    w[4] = -1
    with pytest.raises(ModelError, match=r"weights.*row 4"):
        logit(F, df, weights=w)
    d = df.astype({"h": "float"})
    d.loc[d.index[6], "h"] = np.nan
    with pytest.raises(ModelError, match=r"cluster.*row 6"):
        logit(F, d, cluster="h")
    with pytest.raises(ModelError, match="cannot build the design"):
        logit("y ~ not_a_column", df)


def test_matches_statsmodels_glm(df):
    import statsmodels.api as sm

    d = df.assign(w=df["w"])
    X = np.c_[np.ones(len(d)), d["age"], d["cc"].astype(float), (d["sex"] == "M").astype(float)]
    ref = sm.GLM(d["y"].astype(float), X, family=sm.families.Binomial(), freq_weights=d["w"]).fit(tol=1e-12)
    r = logit(F, d, weights="w")
    np.testing.assert_allclose(r.estimate, ref.params, atol=1e-9)
    np.testing.assert_allclose(r.std_error, ref.bse, rtol=1e-7)
    assert r.loglik == pytest.approx(ref.llf, rel=1e-10)


def test_one_cluster_is_an_error(df):
    with pytest.raises(ModelError, match="at least 2 clusters"):
        logit(F, df.assign(h=1), cluster="h")
