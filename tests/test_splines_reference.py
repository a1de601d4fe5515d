"""rcs/harrell_knots against Hmisc::rcspline.eval (the engine of rms::rcs).

Script: tests/reference/rms_rcspline.R. Knots (Harrell's default quantiles, the n < 100
rule, Hmisc's tie rule at an end, few distinct values) and the basis (inclx, norm = 2).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from hospstudy.models.splines import harrell_knots, rcs_basis

REF = json.loads((Path(__file__).parent / "reference" / "rms_rcspline.json").read_text())
CASES = [k for k, v in REF.items() if isinstance(v, dict)]
# about 1000x / 200x above the largest difference measured (2026-12-05): knots 5.7e-14, basis 5.1e-13
KNOT_TOL = 1e-10
BASIS_TOL = 1e-10


@pytest.mark.parametrize("case", CASES)
def test_knots_match_hmisc(case):
    c = REF[case]
    np.testing.assert_allclose(harrell_knots(np.array(c["x"], float), c["nk"]), c["knots"], rtol=0, atol=KNOT_TOL)


@pytest.mark.parametrize("case", CASES)
def test_basis_matches_hmisc(case):
    c = REF[case]
    # ours also equals Harrell's published truncated-power formula, evaluated here (the fixture's
    # max_diff_formula is R checking Hmisc against it, a constant our code cannot change)
    np.testing.assert_allclose(rcs_basis(c["grid"], c["knots"]), _harrell(c["grid"], c["knots"]), rtol=0, atol=BASIS_TOL)
    np.testing.assert_allclose(rcs_basis(c["grid"], c["knots"]), np.array(c["basis"]), rtol=0, atol=BASIS_TOL)
    assert c["max_diff_formula"] < 1e-9


def _harrell(x, k):
    """Harrell (2015), Regression Modeling Strategies, eq. 2.25, with x and norm = 2 (as the R script)."""
    x, k = np.asarray(x, float), np.asarray(k, float)
    nk, kd = len(k), (k[-1] - k[0]) ** (2 / 3)

    def p3(u):
        return np.maximum(u, 0) ** 3

    cols = [p3((x - k[j]) / kd) + ((k[-2] - k[j]) * p3((x - k[-1]) / kd) - (k[-1] - k[j]) * p3((x - k[-2]) / kd))
            / (k[-1] - k[-2]) for j in range(nk - 2)]
    return np.column_stack([x, *cols])


def test_default_quantiles_are_harrells():
    x = np.arange(1, 10001, dtype=float)
    for nk, q in {3: [.1, .5, .9], 4: [.05, .35, .65, .95], 5: [.05, .275, .5, .725, .95]}.items():
        np.testing.assert_allclose(harrell_knots(x, nk), np.quantile(x, q))
