"""Hospital profiling: funnel limits (Spiegelhalter 2005), O/E and flags on planted data."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hospstudy.errors import InputError, ModelError
from hospstudy.models.profiling import funnel_limits, hospital_profiles, risk_standardized_rates


def _interpolated_by_hand(p, n, theta):
    r = 0
    while stats.binom.cdf(r, n, theta) < p:
        r += 1
    F, Fm = stats.binom.cdf(r, n, theta), stats.binom.cdf(r - 1, n, theta)
    return (r - (F - p) / (F - Fm)) / n


@pytest.mark.parametrize("n, theta", [(20, 0.1), (57, 0.062), (400, 0.062), (5, 0.3)])
def test_exact_limits_follow_spiegelhalter_interpolation(n, theta):
    lim = funnel_limits(theta, [n], method="exact").iloc[0]
    assert lim["upper_95"] == pytest.approx(max(0, _interpolated_by_hand(0.975, n, theta)), abs=1e-12)
    assert lim["lower_95"] == pytest.approx(max(0, _interpolated_by_hand(0.025, n, theta)), abs=1e-12)
    assert lim["upper_99.8"] == pytest.approx(min(1, _interpolated_by_hand(0.999, n, theta)), abs=1e-12)
    assert lim["lower_99.8"] <= lim["lower_95"] <= theta <= lim["upper_95"] <= lim["upper_99.8"]


def test_exact_limits_approach_normal_for_large_n():
    e = funnel_limits(0.062, [20000], method="exact").iloc[0]
    n = funnel_limits(0.062, [20000], method="normal").iloc[0]
    assert e["upper_99.8"] == pytest.approx(n["upper_99.8"], rel=2e-3)
    assert n["upper_95"] == pytest.approx(0.062 + 1.959964 * np.sqrt(0.062 * 0.938 / 20000), rel=1e-6)


def _patients(n_hosp=120, seed=0, outlier_or=1.0):
    rng = np.random.default_rng(seed)
    size = rng.integers(20, 200, n_hosp)
    hosp = np.repeat(np.arange(n_hosp), size)
    age = rng.normal(70, 10, hosp.size)
    male = rng.random(hosp.size) < 0.6
    lp = -3 + 0.04 * (age - 70) + 0.9 * male + np.where(hosp == 0, np.log(outlier_or), 0.0)
    y = rng.random(hosp.size) < 1 / (1 + np.exp(-lp))
    return pd.DataFrame({"hospital_id": hosp, "age": age, "male": male, "death": y})


def test_oe_sums_match_and_null_hospitals_rarely_flagged():
    d = _patients(seed=1)
    prof = risk_standardized_rates("death ~ age + male", d, "hospital_id")
    t = prof.table
    # logistic MLE with an intercept: expected deaths sum to observed deaths
    assert t.expected.sum() == pytest.approx(t.observed.sum(), rel=1e-8)
    assert prof.overall_rate == pytest.approx(d.death.mean())
    outside95 = (t.flag != "within").mean()
    assert outside95 < 0.15
    assert len(t) == 120 and t.n.sum() == len(d)


def test_planted_outlier_is_flagged_above_998():
    d = _patients(seed=2, outlier_or=6.0)
    prof = risk_standardized_rates("death ~ age + male", d, "hospital_id")
    row = prof.table.set_index("hospital").loc[0]
    assert row.flag == "above 99.8%"
    pts = prof.anonymous_points(min_cases=10)
    assert list(pts.columns) == ["n", "rsr", "oe", "flag"] and "hospital" not in pts
    assert (pts.n >= 10).all() and pts.n.is_monotonic_increasing


def test_errors():
    d = _patients(n_hosp=10)
    with pytest.raises(ModelError, match="without the hospital"):
        risk_standardized_rates("death ~ age + hospital_id", d, "hospital_id")
    with pytest.raises(ModelError, match="'expected' parameter"):
        hospital_profiles(d, "death", "hospital_id", np.full(len(d), 1.5))
    with pytest.raises(InputError, match="no column 'nope'"):
        hospital_profiles(d, "nope", "hospital_id", np.full(len(d), 0.1))
    with pytest.raises(ModelError, match="'method' parameter"):
        funnel_limits(0.1, [10], method="poisson")


def test_a_separated_case_mix_fit_gives_expected_counts_inside_0_1():
    """A case-mix model that separates the outcome: eta runs far past +-37, where a plain expit
    gives probabilities of exactly 0 or 1 (which hospital_profiles rightly refuses). The fitted
    probabilities follow R's binomial linkinv (bounded by eps beyond |eta| = 30), so the
    profiles are computed (seen on the flagship's 207-patient test database, 2026-12-06)."""
    import warnings

    from hospstudy.models.glm import logit

    rng = np.random.default_rng(3)
    n = 400
    x = np.r_[rng.uniform(-30, -1, n // 2), rng.uniform(1, 30, n // 2)]
    d = pd.DataFrame({"y": (x > 0).astype(float), "x": x, "h": np.repeat(np.arange(20), n // 20)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = logit("y ~ x", d)
        prof = risk_standardized_rates("y ~ x", d, "h")
    mu = np.asarray(m.extra["fitted"])
    eps = np.finfo(float).eps
    assert ((mu > 0) & (mu < 1)).all()
    assert (mu == 1 / (1 + eps)).sum() > 50 and (mu == eps / (1 + eps)).sum() > 50  # beyond |eta| = 30
    assert len(prof.table) == 20 and np.isclose(prof.table["observed"].sum(), prof.table["expected"].sum(), rtol=1e-6)
