"""Propensity weighting against base R by the published formulas (no cobalt/WeightIt here).

Script: tests/reference/weighting_contraception.R: PS glm, stabilized IPTW and overlap
weights, Austin & Stuart (2015) standardized differences and variance ratios, weighted
outcome glm with sandwich::vcovHC (HC0) and vcovCL errors.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hospstudy.models.weighting import balance_table, propensity_weights, weighted_logit

# A power of ten about 1000x above the largest difference measured (2026-12-05,
# docs/statistics.md: coefficients, PS and SMD 5.3e-15 absolute, weights, their sums and variance
# ratios 7.1e-15 relative),
# room for another BLAS or platform.
TOL = 1e-11
SE_RTOL = 1e-11  # measured 9.3e-15 relative
REF_DIR = Path(__file__).parent / "reference"
PS = "urban ~ age + age2 + C(livch, contr.treatment('0'))"


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(REF_DIR / "glm_contraception.csv", dtype={"livch": str})


@pytest.fixture(scope="module")
def ref():
    return json.loads((REF_DIR / "weighting_contraception.json").read_text())


@pytest.fixture(scope="module")
def pw(data):
    return {m: propensity_weights(PS, data, method=m) for m in ("iptw", "overlap")}


def test_propensity_model_and_weights(data, ref, pw):
    np.testing.assert_allclose(pw["iptw"].model.estimate, ref["ps_coef"], atol=TOL, rtol=0)
    np.testing.assert_allclose(pw["iptw"].ps.iloc[:20], ref["ps_head"], atol=TOL, rtol=0)
    np.testing.assert_allclose(pw["iptw"].weights.iloc[:20], ref["w_iptw_head"], rtol=TOL)
    np.testing.assert_allclose(pw["overlap"].weights.iloc[:20], ref["w_ovl_head"], rtol=TOL)
    assert pw["iptw"].weights.sum() == pytest.approx(ref["w_iptw_sum"], rel=TOL)
    assert pw["overlap"].weights.sum() == pytest.approx(ref["w_ovl_sum"], rel=TOL)
    raw = propensity_weights(PS, data, stabilized=False)
    np.testing.assert_allclose(raw.weights.iloc[:20], ref["w_raw_head"], rtol=TOL)


def test_balance_table_matches_r(data, ref, pw):
    names = [b["name"] for b in ref["balance"]]
    for method in ("iptw", "overlap"):
        bt = balance_table(data, ["age", "age2", "livch"], "urban", pw[method])
        got = [r.variable if r.level is None else f"{r.variable}={r.level}" for r in bt.itertuples()]
        assert got == names
        for row, b in zip(bt.itertuples(), ref["balance"]):
            assert row.smd_before == pytest.approx(b["before"][0], abs=TOL)
            assert row.smd_after == pytest.approx(b[method][0], abs=TOL)
            if b[method][1] is None:
                assert np.isnan(row.vr_after)
            else:
                assert row.vr_after == pytest.approx(b[method][1], rel=TOL)
                assert row.vr_before == pytest.approx(b["before"][1], rel=TOL)


@pytest.mark.parametrize("method,key", [("iptw", "outcome_iptw"), ("overlap", "outcome_overlap")])
def test_weighted_outcome_model(data, ref, pw, method, key):
    r = weighted_logit("use ~ urban", data, pw[method])
    np.testing.assert_allclose(r.estimate, ref[key]["coef"], atol=TOL, rtol=0)
    np.testing.assert_allclose(r.std_error, ref[key]["se_hc0"], rtol=SE_RTOL)
    rc = weighted_logit("use ~ urban", data, pw[method], cluster="district")
    np.testing.assert_allclose(rc.std_error, ref[key]["se_cluster"], rtol=SE_RTOL)
    assert rc.scale == "marginal" and rc.extra["estimand"] == ("ATE" if method == "iptw" else "ATO")
