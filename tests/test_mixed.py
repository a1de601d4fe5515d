"""mixed_logit: invariances, numerics, warnings and errors (lme4 comparisons: test_mixed_reference.py)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from hospstudy.errors import (
    BoundaryWarning,
    ConvergenceWarning,
    HospstudyError,
    InputError,
    ModelError,
    RankDeficiencyWarning,
    SeparationWarning,
)
from hospstudy.models import _aghq
from hospstudy.models.base import TIDY_COLUMNS
from hospstudy.models.mixed import MOR_FACTOR, mixed_logit

REF = Path(__file__).parent / "reference"


def simulate(seed=1, J=40, sd=0.8, beta=(-1.0, 0.5, -0.7), nmin=8, nmax=30):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(nmin, nmax, J)
    g = np.repeat(np.arange(J), sizes)
    n = g.size
    x1 = rng.normal(size=n)
    x2 = rng.integers(0, 2, n)
    b = rng.normal(0, sd, J)
    eta = beta[0] + beta[1] * x1 + beta[2] * x2 + b[g]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "hosp": g})


@pytest.fixture(scope="module")
def sim():
    return simulate()


def quiet_fit(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # these fits must not warn
        return mixed_logit(*args, **kw)


def test_result_shape(sim):
    fit = quiet_fit("y ~ x1 + x2", sim, cluster="hosp", nagq=3)
    t = fit.tidy()
    assert list(t.columns) == TIDY_COLUMNS
    assert list(t["term"]) == ["Intercept", "x1", "x2"]
    np.testing.assert_allclose(t["exp_estimate"], np.exp(t["estimate"]))
    assert fit.scale == "conditional" and fit.link == "logit"
    assert fit.n == len(sim) and fit.clusters == 40 and fit.events == int(sim["y"].sum())
    assert len(fit.ranef) == 40 and set(fit.ranef.columns) >= {"group", "n", "events", "mode", "cond_sd"}
    assert fit.ranef["n"].sum() == len(sim)
    s = fit.summary()
    for key in ("median OR", "ICC", "random SD", "nAGQ", "log-likelihood", "conditional"):
        assert key in s


def test_icc_and_median_odds_ratio(sim):
    fit = quiet_fit("y ~ x1 + x2", sim, cluster="hosp")
    sd = fit.random_sd
    assert fit.icc == pytest.approx(sd**2 / (sd**2 + np.pi**2 / 3))
    assert MOR_FACTOR == pytest.approx(0.9538725524)  # sqrt(2) * qnorm(0.75)
    assert fit.median_odds_ratio == pytest.approx(np.exp(MOR_FACTOR * sd))
    vc = fit.variance_components().set_index("quantity")
    # delta method on log(sd): symmetric on the log scale
    lo, hi = vc.loc["sd", "conf_low"], vc.loc["sd", "conf_high"]
    # the MOR's limits are the SD's mapped by exp(MOR_FACTOR * sd) (an ordering check
    # mor_conf_low < MOR < mor_conf_high held for any positive SE)
    assert fit.mor_conf_low == pytest.approx(np.exp(MOR_FACTOR * lo), rel=1e-12)
    assert fit.mor_conf_high == pytest.approx(np.exp(MOR_FACTOR * hi), rel=1e-12)
    assert np.log(sd) - np.log(lo) == pytest.approx(np.log(hi) - np.log(sd))
    assert np.log(hi / sd) == pytest.approx(1.959963985 * fit.random_sd_se / sd)
    assert vc.loc["median_odds_ratio", "conf_low"] == pytest.approx(fit.mor_conf_low)
    assert vc.loc["icc", "estimate"] == pytest.approx(fit.icc)


def test_planted_effects_recovered():
    d = simulate(seed=7, J=150, nmin=20, nmax=40)
    fit = quiet_fit("y ~ x1 + x2", d, cluster="hosp", nagq=5)
    truth = np.array([-1.0, 0.5, -0.7])
    assert np.all(np.abs(fit.estimate - truth) < 4 * fit.std_error)
    assert abs(fit.random_sd - 0.8) < 4 * fit.random_sd_se


def test_unit_weights_equal_no_weights(sim):
    a = quiet_fit("y ~ x1 + x2", sim, cluster="hosp", nagq=5)
    b = quiet_fit("y ~ x1 + x2", sim, cluster="hosp", nagq=5, weights=np.ones(len(sim)))
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=0, atol=1e-10)
    np.testing.assert_allclose(a.std_error, b.std_error, rtol=1e-8)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-9)


def test_duplicated_rows_equal_weight_two(sim):
    # Within a hospital, a row twice multiplies the conditional likelihood exactly as weight 2 does.
    dup = pd.concat([sim, sim], ignore_index=True)
    sim2 = sim.assign(w=2.0)
    a = quiet_fit("y ~ x1 + x2", dup, cluster="hosp", nagq=5)
    b = quiet_fit("y ~ x1 + x2", sim2, cluster="hosp", nagq=5, weights="w")
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.std_error, b.std_error, rtol=1e-5)
    assert a.random_sd == pytest.approx(b.random_sd, abs=1e-6)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-6)


def test_zero_weight_equals_dropped_rows(sim):
    w = np.ones(len(sim))
    w[::7] = 0.0
    a = quiet_fit("y ~ x1 + x2", sim, cluster="hosp", weights=w)
    b = quiet_fit("y ~ x1 + x2", sim[w > 0], cluster="hosp")
    np.testing.assert_allclose(a.estimate, b.estimate, atol=1e-7)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-7)


def test_row_order_and_group_labels_do_not_matter(sim):
    a = quiet_fit("y ~ x1 + x2", sim, cluster="hosp", nagq=4)
    shuffled = sim.sample(frac=1.0, random_state=3).assign(hosp=lambda d: "H" + d["hosp"].astype(str))
    b = quiet_fit("y ~ x1 + x2", shuffled, cluster="hosp", nagq=4)
    np.testing.assert_allclose(a.estimate, b.estimate, atol=1e-7)
    assert a.random_sd == pytest.approx(b.random_sd, abs=1e-7)
    ra = a.ranef.assign(group="H" + a.ranef["group"].astype(str)).set_index("group")["mode"]
    rb = b.ranef.set_index("group")["mode"]
    np.testing.assert_allclose(ra.loc[rb.index], rb, atol=1e-6)


def test_trials_column_equals_cbind():
    d = pd.read_csv(REF / "lme4_cbpp.csv")
    a = quiet_fit("cbind(incidence, size - incidence) ~ C(period)", d, cluster="herd", nagq=2)
    b = quiet_fit("incidence ~ C(period)", d, cluster="herd", nagq=2, trials="size")
    np.testing.assert_allclose(a.estimate, b.estimate, atol=1e-10)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-9)
    assert a.events == 99 and a.n == 56


def test_missing_group_rows_are_dropped(sim):
    d = sim.astype({"hosp": "float"})
    d.loc[d.index[:5], "hosp"] = np.nan
    a = quiet_fit("y ~ x1 + x2", d, cluster="hosp")
    b = quiet_fit("y ~ x1 + x2", sim.iloc[5:], cluster="hosp")
    np.testing.assert_allclose(a.estimate, b.estimate, atol=1e-8)
    assert a.n == len(sim) - 5


@pytest.mark.parametrize("nagq", [1, 7])
def test_analytic_gradient_matches_finite_differences(nagq):
    rng = np.random.default_rng(11)
    J, n = 12, 150
    starts = np.sort(rng.choice(np.arange(1, n), J - 1, replace=False))
    starts = np.r_[0, starts]
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 2, n)])
    trials = rng.integers(1, 6, n).astype(float)
    succ = rng.binomial(trials.astype(int), 0.35)
    m = trials * rng.uniform(0.5, 2.0, n)
    P = _aghq.AghqProblem(X, succ / trials, m, starts, nagq)
    for theta, beta in [(0.9, np.array([-0.5, 0.3, -0.2])), (0.05, np.array([0.1, -0.4, 0.6]))]:
        g = P.evaluate(theta, beta).grad
        x0 = np.r_[theta, beta]
        h = 1e-6
        num = []
        for i in range(4):
            e = np.zeros(4)
            e[i] = h
            fp = P.evaluate((x0 + e)[0], (x0 + e)[1:], grad=False).deviance
            fm = P.evaluate((x0 - e)[0], (x0 - e)[1:], grad=False).deviance
            num.append((fp - fm) / (2 * h))
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-6)


def test_gauss_hermite_rule_is_lme4s():
    z, w = _aghq.gh_rule(5)  # lme4::GHrule(5)
    np.testing.assert_allclose(z, [-2.856970, -1.355626, 0.0, 1.355626, 2.856970], atol=1e-6)
    np.testing.assert_allclose(w, [0.01125741, 0.22207592, 0.53333333, 0.22207592, 0.01125741], atol=1e-8)
    assert z[2] == 0.0
    z1, w1 = _aghq.gh_rule(1)
    assert z1.tolist() == [0.0] and w1.tolist() == [1.0]


def boundary_data():
    # 30 hospitals with exactly 6 events in 20 patients, split evenly by x: less spread than chance
    rows = []
    for h in range(30):
        for i in range(20):
            x = i % 2
            y = int(i < 6)
            rows.append((h, x, y))
    return pd.DataFrame(rows, columns=["hosp", "x", "y"])


def test_boundary_fit_warns_and_reduces_to_glm():
    d = boundary_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = mixed_logit("y ~ x", d, cluster="hosp", nagq=5)
    kinds = [w.category for w in caught]
    assert BoundaryWarning in kinds
    # the joint Hessian is singular at theta = 0 by construction: no false "no standard errors" alarm
    assert ConvergenceWarning not in kinds, [str(w.message) for w in caught]
    assert fit.random_sd < 1e-4
    glm = sm.GLM(d["y"], sm.add_constant(d["x"].astype(float)), family=sm.families.Binomial()).fit()
    np.testing.assert_allclose(fit.estimate, glm.params, atol=1e-6)
    np.testing.assert_allclose(fit.std_error, glm.bse, rtol=1e-4)
    assert np.isnan(fit.mor_conf_low) and np.isnan(fit.mor_conf_high)
    assert fit.loglik == pytest.approx(glm.llf, abs=1e-6)
    # the profile interval still exists at the boundary: [0, upper]
    with pytest.warns(BoundaryWarning):
        prof = mixed_logit("y ~ x", d, cluster="hosp", nagq=5, sd_ci="profile")
    assert prof.random_sd_conf_low == 0.0 and 0.05 < prof.random_sd_conf_high < 2
    assert prof.mor_conf_low == 1.0


def test_profile_interval_is_where_the_deviance_rises_by_the_chi2_quantile(sim):
    fit = quiet_fit("y ~ x1 + x2", sim, cluster="hosp", nagq=3, sd_ci="profile")
    lo, hi = fit.random_sd_conf_low, fit.random_sd_conf_high
    assert 0 < lo < fit.random_sd < hi
    # refit with the SD fixed at each limit (weights make no difference): deviance - min = 3.8415
    import hospstudy.models._aghq as A

    d = sim.sort_values("hosp", kind="stable")
    X = np.column_stack([np.ones(len(d)), d["x1"], d["x2"]])
    codes = d["hosp"].to_numpy()
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    P = A.AghqProblem(X, d["y"].to_numpy(float), np.ones(len(d)), starts, 3)
    best = P.evaluate(fit.random_sd, fit.estimate, grad=False).deviance
    for limit in (lo, hi):
        dev, _ = A.profile_deviance(P, limit, fit.estimate)
        assert dev - best == pytest.approx(3.841458821, abs=1e-5)
    assert fit.variance_components()["method"].iloc[0] == "profile likelihood"


def test_separation_warns_and_names_the_term(sim):
    d = sim.copy()
    d["perfect"] = d["y"]  # x that predicts y perfectly
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", BoundaryWarning)
        with pytest.warns(SeparationWarning, match="perfect"):
            fit = mixed_logit("y ~ x1 + perfect", d, cluster="hosp")
    assert fit.extra["separation"] == ["Intercept", "perfect"] or "perfect" in fit.extra["separation"]


def test_rank_deficiency_drops_aliased_column(sim):
    d = sim.assign(x1b=2.0 * sim["x1"])
    with pytest.warns(RankDeficiencyWarning, match="x1b"):
        fit = mixed_logit("y ~ x1 + x2 + x1b", d, cluster="hosp")
    ref = quiet_fit("y ~ x1 + x2", sim, cluster="hosp")
    assert fit.terms == ["Intercept", "x1", "x2", "x1b"] and fit.dropped_terms == ("x1b",)
    assert np.isnan(fit.estimate[3])
    np.testing.assert_allclose(fit.estimate[:3], ref.estimate, atol=1e-8)


def test_nonconvergence_warns(sim):
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        fit = mixed_logit("y ~ x1 + x2", sim, cluster="hosp", max_iter=1)
    assert not fit.converged and fit.header()["converged"] is False


@pytest.mark.parametrize(
    "kw, param",
    [
        ({"nagq": 0}, "nagq"),
        ({"nagq": 26}, "nagq"),
        ({"nagq": 2.0}, "nagq"),
        ({"nagq": True}, "nagq"),
        ({"cluster": "nope"}, "cluster"),
        ({"cluster": None}, "cluster"),
        ({"weights": "nope"}, "weights"),
        ({"trials": "nope"}, "trials"),
        ({"conf_level": 95}, "conf_level"),
        ({"max_iter": 0}, "max_iter"),
        ({"sd_ci": "wald"}, "sd_ci"),
    ],
)
def test_bad_arguments_one_template(sim, kw, param):
    args = {"cluster": "hosp"} | kw
    with pytest.raises(ModelError) as e:
        mixed_logit("y ~ x1", sim, **args)
    msg = str(e.value)
    assert msg.startswith(f"The '{param}' parameter of mixed_logit must be ") and " instead." in msg
    assert isinstance(e.value, ValueError) and isinstance(e.value, HospstudyError)


def test_bad_formula_and_data(sim):
    with pytest.raises(ModelError, match="'formula' parameter"):
        mixed_logit("y x1", sim, cluster="hosp")
    with pytest.raises(ModelError, match="'data' parameter"):
        mixed_logit("y ~ x1", sim.to_dict(), cluster="hosp")


def test_bad_values_name_the_row(sim):
    d = sim.copy()
    d.loc[d.index[4], "y"] = 2
    with pytest.raises(InputError, match=r"must be 0/1 or boolean.*row 4 \(index 4\) has 2 "):
        mixed_logit("y ~ x1", d, cluster="hosp")
    w = np.ones(len(sim))
    w[9] = -1
    with pytest.raises(InputError, match=r"weights must be finite and >= 0; row 9"):
        mixed_logit("y ~ x1", sim, cluster="hosp", weights=w)
    c = pd.read_csv(REF / "lme4_cbpp.csv")
    c.loc[3, "incidence"] = c.loc[3, "size"] + 1
    with pytest.raises(InputError, match=r"0 <= successes <= trials.*row 3 \(index 3\) has successes=6, trials=5"):
        mixed_logit("incidence ~ C(period)", c, cluster="herd", trials="size")
