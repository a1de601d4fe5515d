"""Trend tests against base R (tests/reference/trends_reference.R, R 4.2.2) and against
brute-force enumeration of the exact Jonckheere–Terpstra distribution."""

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hospstudy.errors import InputError, ModelError
from hospstudy.models.trends import cochran_armitage, jonckheere_terpstra, trend_table

TOL = 1e-10  # same closed-form statistics as R
FIX = Path(__file__).parent / "reference" / "fixtures"


@pytest.fixture(scope="module")
def ref():
    return pd.read_csv(FIX / "trends_reference.csv").set_index("name")


def test_cochran_armitage_matches_prop_trend_test(ref):
    smokers, patients = [83, 90, 129, 70], [86, 93, 136, 82]
    t = cochran_armitage(smokers, patients)
    assert t.statistic == pytest.approx(ref.loc["smokers", "statistic"], abs=TOL)
    assert t.p_value == pytest.approx(ref.loc["smokers", "p_value"], abs=TOL)
    assert t.z < 0  # the proportion falls with the group order
    t = cochran_armitage(smokers, patients, scores=[0, 0, 0, 1])
    assert t.statistic == pytest.approx(ref.loc["smokers_score0001", "statistic"], abs=TOL)
    assert t.p_value == pytest.approx(ref.loc["smokers_score0001", "p_value"], abs=TOL)
    e = pd.read_csv(FIX / "trends_esoph.csv")
    t = cochran_armitage(e.x, e.n)
    assert t.statistic == pytest.approx(ref.loc["esoph_age", "statistic"], rel=1e-12)
    assert t.p_value == pytest.approx(ref.loc["esoph_age", "p_value"], rel=1e-8)


@pytest.mark.parametrize("name, file, x, g", [
    ("warpbreaks", "trends_warpbreaks.csv", "breaks", "g"),
    ("airquality_ozone_month", "trends_airquality.csv", "Ozone", "Month"),
])
def test_jonckheere_normal_with_ties_matches_kendall_cor_test(ref, name, file, x, g):
    d = pd.read_csv(FIX / file)
    t = jonckheere_terpstra(d[x], d[g])
    assert "ties" in t.method
    assert t.statistic == pytest.approx(ref.loc[name, "extra"], abs=1e-9)  # J counted pair by pair in R
    assert t.z == pytest.approx(ref.loc[name, "statistic"], abs=TOL)
    assert t.p_value == pytest.approx(ref.loc[name, "p_value"], abs=TOL)


def _brute_force(x, g):
    """Exact permutation distribution of J by listing every assignment of values to groups."""
    x = np.asarray(x, float)
    sizes = [int((np.asarray(g) == lv).sum()) for lv in sorted(set(g))]
    js = []
    for perm in itertools.permutations(range(len(x))):
        # distinct assignments only matter through sorted blocks; permutations overcount equally
        labels = np.empty(len(x), int)
        pos = 0
        for k, s in enumerate(sizes):
            labels[list(perm[pos:pos + s])] = k
            pos += s
        J = sum(((x[labels == a][:, None] < x[labels == b][None, :]).sum()) for a in range(len(sizes)) for b in range(a + 1, len(sizes)))
        js.append(J)
    return np.array(js)


def test_jonckheere_exact_matches_enumeration():
    x = [1.2, 3.4, 2.2, 5.1, 4.0, 6.3, 5.9]
    g = [1, 1, 1, 2, 2, 3, 3]
    t = jonckheere_terpstra(x, g)
    assert t.method.startswith("exact")
    js = _brute_force(x, g)
    upper = np.mean(js >= t.statistic)
    lower = np.mean(js <= t.statistic)
    assert t.p_value == pytest.approx(min(1, 2 * min(upper, lower)), abs=1e-12)
    inc = jonckheere_terpstra(x, g, alternative="increasing")
    assert inc.p_value == pytest.approx(upper, abs=1e-12)
    # the exact distribution has the normal approximation's mean and variance
    approx = jonckheere_terpstra(x, g, exact=False)
    assert approx.z == pytest.approx((t.statistic - js.mean()) / js.std(), abs=1e-12)


def test_jonckheere_ties_variance_is_the_permutation_variance():
    x = np.array([1, 2, 2, 3, 3, 3, 4, 2], float)
    g = np.array([1, 1, 2, 2, 2, 3, 3, 3])
    t = jonckheere_terpstra(x, g)
    sizes = [2, 3, 3]
    # every assignment of the values to the group slots, equally likely under the null
    counts = {}
    for perm in itertools.permutations(x.tolist()):
        counts[perm] = counts.get(perm, 0) + 1
    vals = []
    for perm, c in counts.items():
        xs = np.array(perm); J, pos, blocks = 0.0, 0, []
        for s in sizes:
            blocks.append(xs[pos:pos + s]); pos += s
        for a in range(3):
            for b in range(a + 1, 3):
                J += (blocks[a][:, None] < blocks[b][None, :]).sum() + 0.5 * (blocks[a][:, None] == blocks[b][None, :]).sum()
        vals += [J] * c
    vals = np.array(vals)
    assert t.z == pytest.approx((t.statistic - vals.mean()) / vals.std(), abs=1e-12)


def test_trend_table_and_errors():
    rng = np.random.default_rng(0)
    fy = np.repeat(np.arange(2012, 2021), 200)
    d = pd.DataFrame({"fiscal_year": fy, "death": rng.random(fy.size) < 0.1 - 0.005 * (fy - 2012),
                      "los": rng.poisson(37 - (fy - 2012), fy.size)})
    d.loc[5, "los"] = np.nan
    summary, tests = trend_table(d, "fiscal_year", ["death"], ["los"])
    assert set(tests.variable) == {"death", "los"}
    assert summary[summary.variable == "death"].n.sum() == len(d)
    assert summary[summary.variable == "los"].n.sum() == len(d) - 1
    assert tests.set_index("variable").loc["los", "z"] < -5
    with pytest.raises(InputError, match="binary"):
        trend_table(d, "fiscal_year", ["los"])
    with pytest.raises(ModelError, match="'n' parameter"):
        cochran_armitage([1, 2], [0, 3])
    with pytest.raises(ModelError, match="exact"):
        jonckheere_terpstra([1, 1, 2], [1, 2, 2], exact=True)


def test_jonckheere_exact_two_groups_is_mann_whitney_exact():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(0)
    x = rng.permutation(60).astype(float) + 0.5 * np.repeat([0, 1], 30)
    g = np.repeat([0, 1], 30)
    t = jonckheere_terpstra(x, g)
    assert t.method.startswith("exact")
    ref = mannwhitneyu(x[g == 1], x[g == 0], method="exact", alternative="two-sided")
    assert t.statistic == pytest.approx(ref.statistic)
    assert t.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    inc = jonckheere_terpstra(x, g, alternative="increasing")
    assert inc.p_value == pytest.approx(mannwhitneyu(x[g == 1], x[g == 0], method="exact", alternative="greater").pvalue, rel=1e-10)
