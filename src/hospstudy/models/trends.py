"""Trends over ordered groups (fiscal years): Cochran–Armitage and Jonckheere–Terpstra.

- :func:`cochran_armitage`: the chi-square test for trend in proportions, R's
  ``prop.trend.test`` (no continuity correction), matched to 1e-10.
- :func:`jonckheere_terpstra`: the JT test for an ordered alternative in a continuous outcome.
  Exact null distribution (Terpstra's convolution of Mann–Whitney distributions) when there
  are no ties and at most ``exact_max_n`` observations; otherwise the normal approximation
  with the tie-corrected variance (Hollander & Wolfe, Nonparametric Statistical Methods,
  2nd ed., 6.2), which is the variance of clinfun::jonckheere.test. Its z equals R's
  ``cor.test(x, rank(g), method = "kendall", exact = FALSE)`` z (checked to 1e-10).

:func:`trend_table` applies both to an analytic dataset grouped by fiscal year.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from hospstudy.errors import InputError, param_error

__all__ = ["TrendTest", "cochran_armitage", "jonckheere_terpstra", "trend_table"]


@dataclass(frozen=True)
class TrendTest:
    """A trend test: ``statistic`` (chi-square for CA, J for JT), ``z`` (signed: > 0 means
    increasing with the group order), ``p_value`` (two-sided unless stated), ``method``."""

    test: str
    statistic: float
    z: float
    p_value: float
    method: str
    n: int
    groups: int
    alternative: str = "two-sided"

    def to_dict(self) -> dict:
        return asdict(self)


def cochran_armitage(x, n, scores=None) -> TrendTest:
    """Cochran–Armitage test for trend in proportions ``x / n`` over ordered groups.

    Parameters
    ----------
    x : events per group.
    n : trials per group (> 0).
    scores : group scores; 1, 2, ... when None (as ``prop.trend.test``).

    Returns
    -------
    TrendTest with the 1-df chi-square statistic and the signed z (its square root).

    Examples
    --------
    >>> round(cochran_armitage([83, 90, 129, 70], [86, 93, 136, 82]).statistic, 4)
    8.2249
    """
    func = "cochran_armitage"
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    if x.ndim != 1 or x.shape != n.shape or len(x) < 2:
        raise param_error(func, "x", "a sequence of >= 2 event counts as long as n", x.tolist())
    if np.any(n <= 0) or np.any(x < 0) or np.any(x > n):
        raise param_error(func, "n", "trials > 0 with 0 <= x <= n in every group", list(zip(x.tolist(), n.tolist())))
    s = np.arange(1, len(x) + 1, dtype=float) if scores is None else np.asarray(scores, dtype=float)
    if s.shape != x.shape:
        raise param_error(func, "scores", f"{len(x)} numbers (one per group)", s.tolist())
    N = n.sum()
    pbar = x.sum() / N
    sbar = (n * s).sum() / N
    num = (x * (s - sbar)).sum()
    den = pbar * (1 - pbar) * (n * (s - sbar) ** 2).sum()
    if den <= 0:
        raise param_error(func, "x", "not all events or all non-events, with at least two distinct scores", x.tolist())
    z = num / np.sqrt(den)
    chi2 = z * z
    return TrendTest("cochran_armitage", float(chi2), float(z), float(stats.chi2.sf(chi2, 1)),
                     "chi-square, 1 df (prop.trend.test)", int(N), len(x))


def _mann_whitney_counts(m: int, n: int) -> np.ndarray:
    """Number of arrangements giving U = 0..m*n for samples of sizes m and n (no ties):
    coefficients of the Gaussian binomial [m+n choose m]_q."""
    # f(m, n) = f(m-1, n) shifted by n  +  f(m, n-1)
    # float64 holds these counts (at most C(200, 100) ~ 1e59 for the sizes used) to 1e-16 relative
    table = [np.ones(1) for _ in range(n + 1)]  # m = 0: one arrangement, U = 0
    for i in range(1, m + 1):
        new = [np.ones(1)]
        for j in range(1, n + 1):
            a = table[j]  # f(i-1, j) shifted by j
            b = new[j - 1]  # f(i, j-1)
            out = np.zeros(i * j + 1)
            out[j:j + len(a)] += a
            out[: len(b)] += b
            new.append(out)
        table = new
    return table[n]


def _jt_exact_distribution(sizes) -> np.ndarray:
    """Exact null probabilities of J = 0..max (no ties): convolution over groups of the
    Mann–Whitney distribution of each group against all the groups before it."""
    dist = np.ones(1)
    total = sizes[0]
    for size in sizes[1:]:
        mw = _mann_whitney_counts(total, size)
        dist = np.convolve(dist, mw / mw.sum())
        total += size
    return dist / dist.sum()


def jonckheere_terpstra(values, groups, *, alternative: str = "two-sided", exact: bool | None = None,
                        exact_max_n: int = 100) -> TrendTest:
    """Jonckheere–Terpstra test: do values tend to increase (or decrease) with the group order?

    Parameters
    ----------
    values : numeric observations.
    groups : ordered group labels (numbers or anything sortable; the order is ``sorted``).
    alternative : ``"two-sided"``, ``"increasing"`` or ``"decreasing"``.
    exact : force (True) or forbid (False) the exact distribution; by default exact when there
        are no ties and at most ``exact_max_n`` observations.

    Returns
    -------
    TrendTest with J (pairs across groups in increasing order, ties counted 1/2), z and p.
    """
    func = "jonckheere_terpstra"
    if alternative not in ("two-sided", "increasing", "decreasing"):
        raise param_error(func, "alternative", "'two-sided', 'increasing' or 'decreasing'", alternative)
    x = np.asarray(values, dtype=float)
    g = np.asarray(groups)
    if x.shape != g.shape or x.ndim != 1:
        raise param_error(func, "groups", "one label per value", f"{g.shape} labels for {x.shape} values")
    if np.any(~np.isfinite(x)):
        raise param_error(func, "values", "finite numbers (drop missing values first)", "non-finite values")
    levels = np.array(sorted(pd.unique(g)))
    if len(levels) < 2:
        raise param_error(func, "groups", "at least two distinct groups", levels.tolist())
    code = np.searchsorted(levels, g)
    N = len(x)
    sizes = np.bincount(code, minlength=len(levels)).astype(float)
    # J = sum over pairs in different groups, lower group first, of 1{x_lo < x_hi} + 1/2 ties:
    # computed from ranks (midranks) within the union of each group and the groups before it.
    J = 0.0
    for k in range(1, len(levels)):
        before = code < k
        here = code == k
        sub = np.concatenate([x[before], x[here]])
        r = stats.rankdata(sub)
        m = here.sum()
        J += r[before.sum():].sum() - m * (m + 1) / 2
    mean = (N * N - (sizes ** 2).sum()) / 4
    _, tcounts = np.unique(x, return_counts=True)
    ties = bool(np.any(tcounts > 1))
    t = tcounts.astype(float)
    var = (
        (N * (N - 1) * (2 * N + 5) - (sizes * (sizes - 1) * (2 * sizes + 5)).sum() - (t * (t - 1) * (2 * t + 5)).sum()) / 72
        + (sizes * (sizes - 1) * (sizes - 2)).sum() * (t * (t - 1) * (t - 2)).sum() / (36 * N * (N - 1) * (N - 2))
        + (sizes * (sizes - 1)).sum() * (t * (t - 1)).sum() / (8 * N * (N - 1))
    )
    z = (J - mean) / np.sqrt(var) if var > 0 else 0.0
    use_exact = (not ties and N <= exact_max_n) if exact is None else exact
    if use_exact and ties:
        raise param_error(func, "exact", "False (or None) when values are tied", exact)
    if use_exact:
        probs = _jt_exact_distribution([int(s) for s in sizes])
        j = int(round(J))
        lower = probs[: j + 1].sum()
        upper = probs[j:].sum()
        p = {"two-sided": min(1.0, 2 * min(lower, upper)), "increasing": upper, "decreasing": lower}[alternative]
        method = "exact (Terpstra convolution, no ties)"
    else:
        p = {"two-sided": 2 * stats.norm.sf(abs(z)), "increasing": stats.norm.sf(z), "decreasing": stats.norm.cdf(z)}[alternative]
        method = "normal approximation" + (" with ties correction" if ties else "")
    return TrendTest("jonckheere_terpstra", float(J), float(z), float(p), method, N, len(levels), alternative)


def trend_table(data: pd.DataFrame, by: str, proportions=(), continuous=()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-group summaries and trend tests over the ordered column ``by``.

    Returns
    -------
    (summary, tests): ``summary`` has one row per variable and group (``variable, group, n,
    events, proportion`` for binary; ``n, median, q1, q3, mean`` for continuous); ``tests``
    one row per variable (``variable, test, statistic, z, p_value, method, n, groups``).
    Missing values of a variable are left out of that variable only.
    """
    cols = [by, *proportions, *continuous]
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise InputError(f"trend_table: data has no column(s) {missing}")
    srows, trows = [], []
    for v in proportions:
        d = data[[by, v]].dropna()
        vals = d[v].astype(float)
        if not vals.isin([0.0, 1.0]).all():
            raise InputError(f"trend_table: column {v!r} must be binary (0/1 or bool) for the Cochran-Armitage test")
        agg = vals.groupby(d[by]).agg(["sum", "count"]).sort_index()
        for grp, r in agg.iterrows():
            srows.append({"variable": v, "group": grp, "n": int(r["count"]), "events": int(r["sum"]),
                          "proportion": r["sum"] / r["count"]})
        try:
            t = cochran_armitage(agg["sum"].to_numpy(), agg["count"].to_numpy(), scores=agg.index.to_numpy(dtype=float))
            trows.append({"variable": v, **t.to_dict()})
        except Exception as e:  # a constant outcome has no trend to test
            trows.append({"variable": v, "test": "cochran_armitage", "error": str(e)})
    for v in continuous:
        d = data[[by, v]].dropna()
        for grp, s in d[v].astype(float).groupby(d[by]):
            srows.append({"variable": v, "group": grp, "n": int(s.size), "median": s.median(),
                          "q1": s.quantile(0.25), "q3": s.quantile(0.75), "mean": s.mean()})
        try:
            t = jonckheere_terpstra(d[v].to_numpy(dtype=float), d[by].to_numpy())
            trows.append({"variable": v, **t.to_dict()})
        except Exception as e:
            trows.append({"variable": v, "test": "jonckheere_terpstra", "error": str(e)})
    return pd.DataFrame(srows), pd.DataFrame(trows)
