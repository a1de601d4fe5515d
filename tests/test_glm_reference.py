"""logit against R's glm and sandwich on mlmRev::Contraception.

Script: tests/reference/glm_contraception.R (R glm with epsilon 1e-14; sandwich::vcovCL,
type HC0, cadjust TRUE; sandwich::vcovHC type HC0). Same algorithm, so tight tolerances, each a
power of ten about 100-1000x above the largest difference measured (2026-12-05,
docs/statistics.md), room for another BLAS or platform:
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hospstudy.models.glm import logit

COEF_TOL = 1e-12  # absolute, log-odds; measured 4.7e-15
SE_RTOL = 1e-8  # relative; measured 9.2e-11 (the cluster-robust SE)
LOGLIK_TOL = 1e-9  # log-lik about -1.2e3; measured 3.2e-12

REF = Path(__file__).parent / "reference"
FORMULA = "use ~ age + age2 + urban + C(livch, contr.treatment('0'))"


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(REF / "glm_contraception.csv", dtype={"livch": str})


@pytest.fixture(scope="module")
def ref():
    return json.loads((REF / "glm_contraception.json").read_text())


def test_terms_line_up_with_r(data, ref):
    r = logit(FORMULA, data)
    assert len(r.terms) == len(ref["terms"])
    assert [t.split("[T.")[-1].rstrip("]") for t in r.terms[4:]] == [t.replace("livch", "") for t in ref["terms"][4:]]


@pytest.mark.parametrize(
    "kwargs,coef_key,se_key",
    [
        ({}, "coef", "se_model"),
        ({"cluster": "district"}, "coef", "se_cluster"),
        ({"robust": True}, "coef", "se_hc0"),
        ({"weights": "w"}, "wcoef", "wse_model"),
        ({"weights": "w", "cluster": "district"}, "wcoef", "wse_cluster"),
        ({"weights": "w", "robust": True}, "wcoef", "wse_hc0"),
    ],
)
def test_matches_r(data, ref, kwargs, coef_key, se_key):
    r = logit(FORMULA, data, **kwargs)
    np.testing.assert_allclose(r.estimate, ref[coef_key], rtol=0, atol=COEF_TOL)
    np.testing.assert_allclose(r.std_error, ref[se_key], rtol=SE_RTOL)
    assert r.n == len(data) and r.events == int(data["use"].sum())


def test_loglik_and_header(data, ref):
    r = logit(FORMULA, data, cluster="district")
    assert abs(r.loglik - ref["loglik"]) < LOGLIK_TOL
    h = r.header()
    assert h["clusters"] == data["district"].nunique() == 60
    assert h["scale"] == "unclustered" and h["converged"] is True
    assert "vcovCL" in r.extra["vcov_type"]


def test_cluster_adjustment_is_g_over_g_minus_1(data, ref):
    """The only small-sample factor is G/(G-1): removing it gives vcovCL(cadjust = FALSE)."""
    r = logit(FORMULA, data, cluster="district")
    G = r.clusters
    np.testing.assert_allclose(r.std_error * np.sqrt((G - 1) / G), ref["se_cluster_noadj"], rtol=SE_RTOL)


def test_tidy_shape_and_intervals(data):
    t = logit(FORMULA, data).tidy()
    assert list(t.columns) == [
        "term", "estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high",
        "exp_estimate", "exp_conf_low", "exp_conf_high",
    ]
    np.testing.assert_allclose(t["conf_low"], t["estimate"] - 1.959963984540054 * t["std_error"])
    np.testing.assert_allclose(t["exp_estimate"], np.exp(t["estimate"]))
