"""Competing risks: invariances, planted effects and clear errors (no R needed)."""

import numpy as np
import pandas as pd
import pytest

from hospstudy.errors import InputError, ModelError
from hospstudy.models.competing import cause_specific_cox, cox_fit, cumulative_incidence, fine_gray


def _simulate(n=3000, seed=1, hr_home=1.0, n_hosp=100, whole_days=True):
    """Discharge home (1) vs in-hospital death (2) vs discharge elsewhere (0), daily times."""
    rng = np.random.default_rng(seed)
    hosp = rng.integers(0, n_hosp, n)
    cc = (hosp % 2 == 0).astype(float)
    age = rng.normal(70, 10, n)
    u = rng.normal(0, 0.1, n_hosp)[hosp]
    lam1 = 0.03 * hr_home ** cc * np.exp(-0.01 * (age - 70) + u)
    lam2 = 0.004 * np.exp(0.03 * (age - 70))
    lam0 = 0.01
    t1, t2, t0 = (rng.exponential(1 / lam) for lam in (lam1, lam2, np.full(n, lam0)))
    t = np.minimum(np.minimum(t1, t2), t0)
    ev = np.where(t == t1, 1, np.where(t == t2, 2, 0))
    return pd.DataFrame({"los": np.ceil(t) if whole_days else t, "ev": ev, "cancer_center": cc, "age": age, "hospital_id": hosp})


def test_unit_weights_equal_no_weights_and_weight_two_equals_duplication():
    d = _simulate(800)
    X = d[["cancer_center", "age"]].to_numpy()
    e = (d.ev == 1).to_numpy(float)
    a = cox_fit(X, d.los.to_numpy(), e)
    b = cox_fit(X, d.los.to_numpy(), e, weights=np.ones(len(d)), robust=False)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-12)
    np.testing.assert_allclose(a.cov_naive, b.cov_naive, atol=1e-14)
    # Breslow: weight 2 is exactly a duplicated row
    w2 = cox_fit(X, d.los.to_numpy(), e, weights=np.full(len(d), 2.0), ties="breslow")
    dup = cox_fit(np.vstack([X, X]), np.tile(d.los.to_numpy(), 2), np.tile(e, 2), ties="breslow")
    np.testing.assert_allclose(w2.coef, dup.coef, atol=1e-10)
    np.testing.assert_allclose(w2.cov_naive, dup.cov_naive, rtol=1e-8)
    # Efron counts tied rows, so duplication (which doubles every tie) only approximates weight 2
    w2e = cox_fit(X, d.los.to_numpy(), e, weights=np.full(len(d), 2.0))
    dupe = cox_fit(np.vstack([X, X]), np.tile(d.los.to_numpy(), 2), np.tile(e, 2))
    np.testing.assert_allclose(w2e.coef, dupe.coef, rtol=0.02)
    assert not np.allclose(w2e.coef, dupe.coef, rtol=1e-8, atol=0)


def test_zero_weight_equals_dropped_row():
    d = _simulate(600, seed=3)
    X = d[["cancer_center", "age"]].to_numpy()
    e = (d.ev == 1).to_numpy(float)
    w = np.ones(len(d)); w[:50] = 0
    a = cox_fit(X, d.los.to_numpy(), e, weights=w)
    b = cox_fit(X[50:], d.los.to_numpy()[50:], e[50:])
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-10)


def test_planted_cause_specific_hr_is_recovered():
    d = _simulate(6000, seed=5, hr_home=1.5)
    res = cause_specific_cox("los ~ cancer_center + age", d, "ev", cause=1, cluster="hospital_id")
    row = res.coef("cancer_center")
    assert row.exp_conf_low < 1.5 < row.exp_conf_high
    assert res.clusters == 100 and res.scale == "marginal"


def test_fine_gray_null_when_no_effect_on_either_cause():
    d = _simulate(4000, seed=7, hr_home=1.0)
    res = fine_gray("los ~ cancer_center", d, "ev", cause=1, cluster="hospital_id")
    row = res.coef("cancer_center")
    assert row.exp_conf_low < 1 < row.exp_conf_high


def test_cumulative_incidence_sums_with_survival_to_one_without_censoring():
    d = _simulate(500, seed=2)
    d = d[d.ev > 0]
    ci = cumulative_incidence(d, "los", "ev")
    last = ci[ci.time == ci.time.max()]
    assert last.estimate.sum() == pytest.approx(1.0)
    # without censoring the cumulative incidence is the empirical proportion
    t = 20
    for k in (1, 2):
        est = ci[(ci.cause == k) & (ci.time <= t)].estimate.iloc[-1]
        assert est == pytest.approx(((d.los <= t) & (d.ev == k)).mean())


def test_errors_name_column_and_rule():
    d = _simulate(200)
    with pytest.raises(InputError, match="'nope'"):
        cause_specific_cox("los ~ age", d, "nope")
    bad = d.astype({"ev": float}); bad.loc[3, "ev"] = 7.5
    with pytest.raises(InputError, match="row 3"):
        cause_specific_cox("los ~ age", bad, "ev")
    neg = d.copy(); neg.loc[4, "los"] = -1
    with pytest.raises(InputError, match="times >= 0; row 4"):
        fine_gray("los ~ age", neg, "ev")
    with pytest.raises(ModelError, match="no row"):
        cause_specific_cox("los ~ age", d, "ev", cause=9)
    with pytest.raises(ModelError, match="formula"):
        cause_specific_cox("los age", d, "ev")
    with pytest.raises(ModelError, match="conf_level"):
        cumulative_incidence(d, "los", "ev", conf_level=2)


def test_constant_and_aliased_columns_are_dropped_with_a_warning():
    from hospstudy.errors import RankDeficiencyWarning

    d = _simulate(800, seed=9).assign(const=1.0)
    d["age2"] = d.age * 2
    with pytest.warns(RankDeficiencyWarning):
        res = cause_specific_cox("los ~ cancer_center + const + age + age2", d, "ev")
    t = res.tidy().set_index("term")
    assert np.isnan(t.loc["const", "estimate"]) and np.isnan(t.loc["age2", "estimate"])
    ref = cause_specific_cox("los ~ cancer_center + age", d, "ev").tidy().set_index("term")
    assert t.loc["cancer_center", "estimate"] == pytest.approx(ref.loc["cancer_center", "estimate"], abs=1e-12)
    with pytest.warns(RankDeficiencyWarning):
        fg = fine_gray("los ~ cancer_center + const", d, "ev")
    assert np.isnan(fg.tidy().set_index("term").loc["const", "std_error"])


@pytest.mark.parametrize("seed, cluster", [(11, False), (12, True)])
def test_fine_gray_without_expansion_equals_weighted_cox_on_expanded_rows(seed, cluster):
    from hospstudy.models.competing import fine_gray_fit, finegray_expand

    d = _simulate(1500, seed=seed)
    X = d[["cancer_center", "age"]].to_numpy()
    t, ev = d.los.to_numpy(), d.ev.to_numpy()
    cl = d.hospital_id.to_numpy() if cluster else None
    fast = fine_gray_fit(X, t, ev, cause=1, cluster=cl)
    fg = finegray_expand(t, ev, cause=1)
    r = fg.row.to_numpy()
    slow = cox_fit(X[r], fg.stop.to_numpy(), fg.status.to_numpy(float), start=fg.start.to_numpy(),
                   weights=fg.weight.to_numpy(), cluster=(cl if cluster else np.arange(len(t)))[r], robust=True)
    np.testing.assert_allclose(fast.coef, slow.coef, atol=1e-10)
    np.testing.assert_allclose(fast.cov_naive, slow.cov_naive, rtol=1e-8)
    np.testing.assert_allclose(fast.cov_robust, slow.cov_robust, rtol=1e-8)
    assert fast.loglik == pytest.approx(slow.loglik, abs=1e-8)
