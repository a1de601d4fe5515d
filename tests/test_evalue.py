"""E-values (VanderWeele & Ding, Ann Intern Med 2017).

Published values: the paper's worked example (RR 3.9, 95% CI 1.8-8.7: E-values 7.26 and 3.0)
and the EValue package's documented common-outcome example
(evalues.OR(0.86, 0.75, 0.99, rare = FALSE): 1.37 and 1.08).
"""

import numpy as np
import pandas as pd
import pytest

from hospstudy.errors import ModelError
from hospstudy.models.evalue import add_evalues, evalue


def test_paper_example():
    e = evalue(3.9, 1.8, 8.7, rare=True)
    assert e.estimate == pytest.approx(7.26, abs=0.005)
    assert e.ci == pytest.approx(3.0, abs=1e-12)
    assert e.rr_limit == 1.8


def test_common_outcome_square_root():
    e = evalue(0.86, 0.75, 0.99, rare=False)
    assert (round(e.estimate, 2), round(e.ci, 2)) == (1.37, 1.08)
    assert e.rr == pytest.approx(np.sqrt(0.86)) and "sqrt" in e.conversion


def test_protective_uses_upper_limit_and_inverse():
    a = evalue(0.5, 0.3, 0.8)
    b = evalue(2.0, 1.25, 1 / 0.3)
    assert a.estimate == pytest.approx(b.estimate)
    assert a.ci == pytest.approx(b.ci)
    assert a.rr_limit == 0.8


def test_ci_crossing_one_gives_one():
    e = evalue(1.3, 0.9, 1.8)
    assert e.ci == 1.0 and e.rr_limit is None
    assert e.estimate > 1
    assert evalue(1.0).estimate == 1.0 and np.isnan(evalue(1.0).ci)


def test_flagship_cancer_center_estimate():
    e = evalue(0.841, 0.709, 0.999, rare=True)
    r = 1 / 0.841
    assert e.estimate == pytest.approx(r + np.sqrt(r * (r - 1)))
    assert e.ci == pytest.approx(1 / 0.999 + np.sqrt(1 / 0.999 * (1 / 0.999 - 1)))


@pytest.mark.parametrize(
    "args,kw,match",
    [
        ((-0.2, 0.1, 0.5), {}, "'or_' parameter"),
        ((0.8, 0.9, 1.2), {}, "'lo, hi' parameter"),
        ((0.8, 0.6, None), {}, "'lo, hi' parameter"),
        ((0.8, 0.6, 1.1), {"rare": "yes"}, "'rare' parameter"),
        ((np.nan,), {}, "'or_' parameter"),
    ],
)
def test_errors(args, kw, match):
    with pytest.raises(ModelError, match=match):
        evalue(*args, **kw)


def test_add_evalues_to_tidy_table():
    t = pd.DataFrame({
        "term": ["Intercept", "cancer_center", "volume_per50"],
        "exp_estimate": [0.05, 0.841, 0.958], "exp_conf_low": [0.03, 0.709, 0.928],
        "exp_conf_high": [0.08, 0.999, 0.990],
    })
    out = add_evalues(t, rare=True)
    assert np.isnan(out.loc[0, "evalue"])
    assert out.loc[1, "evalue"] == pytest.approx(evalue(0.841, 0.709, 0.999).estimate)
    assert out.loc[2, "evalue_ci"] == pytest.approx(evalue(0.958, 0.928, 0.990).ci)
    assert out.loc[1, "evalue_conversion"].startswith("OR ~ RR")
    assert "evalue" not in t.columns
    with pytest.raises(ModelError, match="'terms' parameter"):
        add_evalues(t, terms=["nope"])
    with pytest.raises(ModelError, match="'tidy' parameter"):
        add_evalues(t.drop(columns="exp_conf_low"))
