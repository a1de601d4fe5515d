"""Propensity-score weighting for a binary exposure (e.g. cancer center) and balance checks.

- :func:`propensity_weights`: logistic propensity score, inverse-probability-of-treatment
  weights (IPTW, estimand ATE; stabilized by the marginal exposure probability by default)
  or overlap weights (Li, Morgan & Zaslavsky 2018, estimand ATO: treated ``1 - e``,
  untreated ``e``).
- :func:`balance_table`: standardized mean differences before and after weighting
  (binary, continuous, and categorical variables expanded per level) and variance ratios,
  by the formulas of Austin & Stuart (Stat Med 2015;34:3661-79): weighted means and
  weighted variances ``sum(w) / (sum(w)^2 - sum(w^2)) * sum(w (x - m)^2)``; for binary
  variables the variance is ``p (1 - p)``.
- :func:`weighted_logit`: the weighted outcome model with robust (sandwich) errors, by row
  (HC0) or by hospital (cluster, G/(G-1)); the variance treats the weights as known, which
  is conservative for IPTW's ATE (Austin 2016).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hospstudy.errors import HospstudyWarning, ModelError, param_error
from hospstudy.models.base import ModelResult, model_function
from hospstudy.models.glm import _column_or_array, _fit_logit, logit, prepare

METHODS = {"iptw": "ATE", "overlap": "ATO"}


@dataclass(frozen=True)
class PropensityWeights:
    """Propensity scores and weights, aligned with the rows of the input data.

    ``ps`` and ``weights`` are Series on ``data.index``; NaN where the propensity model
    could not be evaluated (a missing covariate or exposure).
    """

    ps: pd.Series
    weights: pd.Series
    treated: pd.Series
    method: str
    estimand: str
    stabilized: bool
    model: ModelResult

    def ess(self) -> dict[str, float]:
        """Kish effective sample size per group: ``(sum w)^2 / sum w^2``."""
        out = {}
        for name, g in (("treated", 1.0), ("control", 0.0)):
            w = self.weights[(self.treated == g) & self.weights.notna()].to_numpy()
            out[name] = float(w.sum() ** 2 / np.sum(w**2)) if w.size else 0.0
        return out

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"treated": self.treated, "ps": self.ps, "weight": self.weights})

    def summary(self) -> pd.DataFrame:
        """Per group: N, mean/min/max propensity score, weight range, sum and ESS."""
        ess = self.ess()
        rows = []
        for name, g in (("treated", 1.0), ("control", 0.0)):
            m = (self.treated == g) & self.weights.notna()
            ps, w = self.ps[m], self.weights[m]
            rows.append({"group": name, "n": int(m.sum()), "ps_mean": ps.mean(), "ps_min": ps.min(),
                         "ps_max": ps.max(), "weight_min": w.min(), "weight_max": w.max(),
                         "weight_sum": w.sum(), "ess": ess[name]})
        return pd.DataFrame(rows)


def _binary(values, func: str, what: str, data: pd.DataFrame) -> np.ndarray:
    v = pd.Series(values)
    if v.dtype == bool or str(v.dtype) == "boolean":
        v = v.astype("float64")
    num = pd.to_numeric(v, errors="coerce")
    bad = np.flatnonzero((v.notna() & num.isna()).to_numpy() | (num.notna() & ~num.isin([0, 1])).to_numpy())
    v = num
    if bad.size:
        raise ModelError(
            f"{func}: the {what} must be 0/1 or boolean; row {bad[0]} (index {data.index[bad[0]]!r}) has "
            f"{values[bad[0]]!r}."
        )
    return v.to_numpy(dtype=float)


@model_function()
def propensity_weights(formula: str, data: pd.DataFrame, method: str = "iptw", stabilized: bool = True,
                       ) -> PropensityWeights:
    """Propensity scores from a logistic model and the weights built from them.

    Parameters
    ----------
    formula : str
        ``"exposure ~ covariates"``; the exposure is 0/1 or boolean (e.g. ``cancer_center``).
    data : pandas.DataFrame
        One row per patient.
    method : {'iptw', 'overlap'}
        ``'iptw'``: ``1/e`` for the exposed, ``1/(1-e)`` for the others (ATE);
        ``'overlap'``: ``1-e`` and ``e`` (ATO; bounded, no stabilization needed).
    stabilized : bool
        IPTW only: multiply by the marginal probability of the group received
        (``P(T=1)`` or ``P(T=0)``), so the weights sum to about N per group.

    Returns
    -------
    PropensityWeights

    Warns
    -----
    HospstudyWarning
        When a propensity score is below 0.001 or above 0.999 (positivity is in doubt and
        IPTW weights explode; overlap weights are the usual remedy).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"t": [0, 1, 0, 1, 1, 0, 0, 1], "x": [1, 2, 3, 4, 5, 3, 2, 1.0]})
    >>> pw = propensity_weights("t ~ x", df, method="overlap")
    >>> pw.estimand
    'ATO'
    """
    func = "propensity_weights"
    if method not in METHODS:
        raise param_error(func, "method", f"one of {tuple(METHODS)}", method)
    if not isinstance(stabilized, bool):
        raise param_error(func, "stabilized", "True or False", stabilized)
    model = logit(formula, data)
    rows = model.extra["rows"]
    e = np.asarray(model.extra["fitted"], dtype=float)
    p = prepare(formula, data, func)
    t = p.y
    if np.any((e < 1e-3) | (e > 1 - 1e-3)):
        k = int(np.sum((e < 1e-3) | (e > 1 - 1e-3)))
        warnings.warn(
            f"{func}: {k} propensity scores are below 0.001 or above 0.999; positivity is in doubt and "
            "IPTW weights are extreme there (consider method='overlap' or restricting the cohort).",
            HospstudyWarning,
            stacklevel=2,
        )
    if method == "iptw":
        w = np.where(t == 1, 1.0 / e, 1.0 / (1.0 - e))
        if stabilized:
            pt = t.mean()
            w = w * np.where(t == 1, pt, 1.0 - pt)
    else:
        w = np.where(t == 1, 1.0 - e, e)
    n = len(data)
    ps_full = np.full(n, np.nan)
    w_full = np.full(n, np.nan)
    t_full = np.full(n, np.nan)
    ps_full[rows], w_full[rows], t_full[rows] = e, w, t
    idx = data.index
    return PropensityWeights(
        ps=pd.Series(ps_full, index=idx, name="ps"),
        weights=pd.Series(w_full, index=idx, name="weight"),
        treated=pd.Series(t_full, index=idx, name="treated"),
        method=method,
        estimand=METHODS[method],
        stabilized=bool(stabilized and method == "iptw"),
        model=model,
    )


def _wmean_var(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    sw = w.sum()
    m = float(np.sum(w * x) / sw)
    denom = sw**2 - np.sum(w**2)
    v = float(sw / denom * np.sum(w * (x - m) ** 2)) if denom > 0 else float("nan")
    return m, v


def _smd(x, t, w, binary: bool) -> tuple[float, float, float, float]:
    m1, v1 = _wmean_var(x[t == 1], w[t == 1])
    m0, v0 = _wmean_var(x[t == 0], w[t == 0])
    if binary:
        v1, v0 = m1 * (1 - m1), m0 * (1 - m0)
    pooled = np.sqrt((v1 + v0) / 2)
    smd = (m1 - m0) / pooled if pooled > 0 else (0.0 if m1 == m0 else np.inf * np.sign(m1 - m0))
    vr = v1 / v0 if (not binary and v0 > 0) else float("nan")
    return m1, m0, float(smd), float(vr)


def balance_table(data: pd.DataFrame, covariates, treatment: str, weights=None) -> pd.DataFrame:
    """Covariate balance between exposure groups before and after weighting.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per patient.
    covariates : list of str
        Columns to check. Booleans and 0/1 numbers are binary; other numbers continuous;
        strings and categoricals are expanded to one binary row per level.
    treatment : str
        The 0/1 or boolean exposure column.
    weights : str, array-like or PropensityWeights, optional
        The weights (without them only the "before" columns are filled).

    Returns
    -------
    pandas.DataFrame
        ``variable, level, type, n, mean_treated, mean_control, smd_before, vr_before,
        mean_treated_w, mean_control_w, smd_after, vr_after``. Means of binary rows are
        proportions; variance ratios (treated/control) are for continuous variables.
        Rows with a missing value of a covariate (or weight) are left out of that
        covariate's rows only.

    Notes
    -----
    Austin & Stuart (2015): SMD = difference of (weighted) means over
    ``sqrt((s1^2 + s0^2) / 2)`` with (weighted) variances in both groups; |SMD| < 0.1 is the
    usual threshold of balance.
    """
    func = "balance_table"
    if not isinstance(data, pd.DataFrame):
        raise param_error(func, "data", "a pandas DataFrame", type(data).__name__)
    if isinstance(covariates, str) or not all(isinstance(c, str) for c in covariates):
        raise param_error(func, "covariates", "a list of column names", covariates)
    missing = [c for c in list(covariates) + [treatment] if c not in data.columns]
    if missing:
        raise param_error(func, "covariates/treatment", f"columns of data ({list(data.columns)})", missing)
    t = _binary(data[treatment].to_numpy(), func, f"treatment column {treatment!r}", data)
    if isinstance(weights, PropensityWeights):
        w = weights.weights.reindex(data.index).to_numpy(dtype=float)
    elif weights is None:
        w = None
    else:
        w = np.asarray(_column_or_array(data, weights, func, "weights"), dtype=float)
        if np.any(w[~np.isnan(w)] < 0):
            raise param_error(func, "weights", "non-negative numbers", "negative values")
    rows = []
    for c in covariates:
        col = data[c]
        if col.dtype == bool or str(col.dtype) == "boolean":
            parts = [(None, "binary", col.astype("float64").to_numpy())]
        elif pd.api.types.is_numeric_dtype(col):
            v = col.to_numpy(dtype=float)
            uniq = np.unique(v[~np.isnan(v)])
            kind = "binary" if np.isin(uniq, [0.0, 1.0]).all() else "continuous"
            parts = [(None, kind, v)]
        else:
            levels = sorted(col.dropna().astype(str).unique())
            s = col.astype("object")
            parts = [(lv, "categorical", np.where(s.isna(), np.nan, (s.astype(str) == lv).astype(float)))
                     for lv in levels]
        for level, kind, x in parts:
            ok = ~np.isnan(x) & ~np.isnan(t)
            if w is not None:
                ok &= ~np.isnan(w)
            xt, tt = x[ok], t[ok]
            binary = kind != "continuous"
            if (tt == 1).sum() < 2 or (tt == 0).sum() < 2:
                raise ModelError(f"{func}: covariate {c!r} has fewer than 2 non-missing rows in an exposure group.")
            m1, m0, smd_b, vr_b = _smd(xt, tt, np.ones_like(xt), binary)
            row = {"variable": c, "level": level, "type": kind, "n": int(ok.sum()),
                   "mean_treated": m1, "mean_control": m0, "smd_before": smd_b, "vr_before": vr_b,
                   "mean_treated_w": np.nan, "mean_control_w": np.nan, "smd_after": np.nan, "vr_after": np.nan}
            if w is not None:
                m1w, m0w, smd_a, vr_a = _smd(xt, tt, w[ok], binary)
                row.update(mean_treated_w=m1w, mean_control_w=m0w, smd_after=smd_a, vr_after=vr_a)
            rows.append(row)
    return pd.DataFrame(rows)


@model_function()
def weighted_logit(formula: str, data: pd.DataFrame, weights, cluster=None, conf_level: float = 0.95
                   ) -> ModelResult:
    """Weighted logistic outcome model with robust errors (marginal odds ratios).

    Parameters
    ----------
    formula : str
        ``"outcome ~ exposure"`` (add covariates for a doubly robust fit).
    data : pandas.DataFrame
        One row per patient.
    weights : str, array-like or PropensityWeights
        The weights; rows where they are NaN (no propensity score) are not analysed.
    cluster : str or array-like, optional
        Hospital: cluster-robust errors (HC0 with G/(G-1), as ``sandwich::vcovCL``);
        otherwise the HC0 sandwich by row (``sandwich::vcovHC(type = "HC0")``).
    conf_level : float
        Level of the confidence intervals.

    Returns
    -------
    ModelResult
        ``scale='marginal'``; ``extra['estimand']`` is ATE/ATO when given PropensityWeights.
    """
    func = "weighted_logit"
    estimand = None
    label = "weighted"
    if isinstance(weights, PropensityWeights):
        estimand = weights.estimand
        kind = "IPTW" if weights.method == "iptw" else "overlap"
        label = f"{'stabilized ' if weights.stabilized else ''}{kind}-weighted"
        w = weights.weights.reindex(data.index).to_numpy(dtype=float)
    elif weights is None:
        raise param_error(func, "weights", "a column name, an array or PropensityWeights", weights)
    else:
        w = np.asarray(_column_or_array(data, weights, func, "weights"), dtype=float)
    analysed = ~np.isnan(w)
    if not analysed.any():
        raise ModelError(f"{func}: every weight is missing.")
    sub = data.loc[analysed]
    cl = cluster
    if cluster is not None and not isinstance(cluster, str):
        cl = np.asarray(cluster)[analysed]
    if not (isinstance(conf_level, float) and 0 < conf_level < 1):
        raise param_error(func, "conf_level", "a float in (0, 1)", conf_level)
    p = prepare(formula, sub, func, weights=w[analysed], cluster=cl)
    res = _fit_logit(p, func, robust=True, conf_level=conf_level, method=f"{label} logistic regression",
                     scale="marginal", extra={"estimand": estimand})
    pos = np.flatnonzero(analysed)
    res.extra["rows"] = pos[res.extra["rows"]]
    return res


__all__ = ["PropensityWeights", "propensity_weights", "balance_table", "weighted_logit", "METHODS"]
