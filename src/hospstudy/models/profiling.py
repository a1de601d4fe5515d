"""Hospital profiling: risk-standardized rates and funnel plots (Spiegelhalter 2005).

For each hospital, ``O`` is its observed number of events and ``E`` the sum of its patients'
expected probabilities from a patient-level logistic model *without* hospital terms (case mix
only: never the hospital's own characteristics, or the standardization would remove the very
differences it should show). The risk-standardized rate is ``RSR = O / E × p̄`` with ``p̄`` the
overall rate (indirect standardization).

Funnel plot: RSR against the number of cases ``n``, with control limits around ``p̄`` at each
coverage (default 95% and 99.8%). ``method="exact"`` uses the binomial distribution
Bin(n, p̄) with Spiegelhalter's interpolation between attainable counts (Spiegelhalter DJ,
Funnel plots for comparing institutional performance, Stat Med 2005;24:1185–1202, appendix
A.1.1); ``method="normal"`` uses ``p̄ ± z √(p̄(1−p̄)/n)``. Treating ``E ≈ n p̄`` for the limits is
the paper's approach for risk-adjusted proportions plotted against volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from hospstudy.errors import InputError, param_error
from hospstudy.models.base import model_function

__all__ = ["ProfileResult", "funnel_limits", "hospital_profiles", "risk_standardized_rates"]


def _limit_labels(coverage):
    return [f"{c * 100:g}" for c in coverage]


def funnel_limits(target: float, n, coverage=(0.95, 0.998), method: str = "exact") -> pd.DataFrame:
    """Control limits for a proportion with target ``target`` at sample sizes ``n``.

    Parameters
    ----------
    target : overall rate p̄ (0 < p̄ < 1).
    n : sample sizes (>= 1).
    coverage : two-sided coverages of the limits.
    method : ``"exact"`` (binomial with interpolation) or ``"normal"``.

    Returns
    -------
    DataFrame with ``n`` and, per coverage ``c``, ``lower_{c}``, ``upper_{c}`` (``c`` in
    percent, e.g. ``lower_95``, ``upper_99.8``), clipped to [0, 1].

    Examples
    --------
    >>> funnel_limits(0.06, [100], method="normal").round(4).to_dict("records")[0]["upper_95"]
    0.1065
    """
    func = "funnel_limits"
    if not (isinstance(target, (int, float, np.floating)) and 0 < target < 1):
        raise param_error(func, "target", "a rate strictly between 0 and 1", target)
    if method not in ("exact", "normal"):
        raise param_error(func, "method", "'exact' or 'normal'", method)
    n = np.atleast_1d(np.asarray(n, dtype=float))
    if np.any(n < 1) or np.any(n != np.round(n)):
        raise param_error(func, "n", "whole numbers of cases >= 1", n.tolist()[:5])
    out = {"n": n.astype(int)}
    for c, lab in zip(coverage, _limit_labels(coverage)):
        if not 0 < c < 1:
            raise param_error(func, "coverage", "coverages strictly between 0 and 1", c)
        for side, p in (("lower", (1 - c) / 2), ("upper", (1 + c) / 2)):
            if method == "normal":
                z = stats.norm.ppf(p)
                lim = target + z * np.sqrt(target * (1 - target) / n)
            else:
                lim = _binomial_interpolated(p, n, target)
            out[f"{side}_{lab}"] = np.clip(lim, 0.0, 1.0)
    return pd.DataFrame(out)


def _binomial_interpolated(p: float, n: np.ndarray, theta: float) -> np.ndarray:
    """Spiegelhalter (2005) A.1.1: r_p the p-quantile of Bin(n, θ);
    α = (F(r_p) − p) / (F(r_p) − F(r_p − 1)); limit (r_p − α) / n."""
    r = stats.binom.ppf(p, n, theta)
    F = stats.binom.cdf(r, n, theta)
    Fm = stats.binom.cdf(r - 1, n, theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(F > Fm, (F - p) / (F - Fm), 0.0)
    return (r - alpha) / n


@dataclass(frozen=True)
class ProfileResult:
    """Per-hospital risk-standardized rates and funnel-plot flags.

    ``table`` holds hospital identifiers: it is patient-level-derived, private data. Use
    :meth:`anonymous_points` for anything written outside ``OUT/private``.
    """

    table: pd.DataFrame
    overall_rate: float
    coverage: tuple
    method: str
    outcome: str
    curve: pd.DataFrame
    model: object = None
    notes: list = field(default_factory=list)

    def flag_counts(self, min_cases: int = 1) -> pd.DataFrame:
        t = self.table[self.table["n"] >= min_cases]
        return t["flag"].value_counts().rename_axis("flag").reset_index(name="hospitals")

    def anonymous_points(self, min_cases: int = 10) -> pd.DataFrame:
        """Funnel points without hospital identifiers: ``n, rsr, oe, flag`` for hospitals with
        at least ``min_cases`` patients, sorted by (n, rsr) so row order carries no identity."""
        t = self.table[self.table["n"] >= min_cases]
        return t[["n", "rsr", "oe", "flag"]].sort_values(["n", "rsr"]).reset_index(drop=True)


@model_function()
def hospital_profiles(data: pd.DataFrame, outcome: str, hospital: str, expected, *,
                      coverage=(0.95, 0.998), method: str = "exact", curve_points: int = 200) -> ProfileResult:
    """Risk-standardized rates from given expected probabilities.

    Parameters
    ----------
    data : one row per patient with ``outcome`` (0/1 or bool) and ``hospital``.
    expected : column name or array of expected probabilities (case-mix model, no hospital terms).

    Returns
    -------
    ProfileResult; ``table`` columns ``hospital, n, observed, expected, oe, rsr, lower_*,
    upper_*, flag``. ``flag`` is ``"above {c}%"``/``"below {c}%"`` for the widest limit crossed,
    else ``"within"``.
    """
    func = "hospital_profiles"
    for c in (outcome, hospital):
        if c not in data.columns:
            raise InputError(f"{func}: data has no column {c!r}")
    e = data[expected].to_numpy(dtype=float) if isinstance(expected, str) else np.asarray(expected, dtype=float)
    if e.shape != (len(data),):
        raise param_error(func, "expected", f"a column or an array of {len(data)} probabilities", e.shape)
    y = pd.to_numeric(data[outcome].astype("float64"), errors="coerce").to_numpy()
    ok = np.isfinite(y) & np.isfinite(e) & data[hospital].notna().to_numpy()
    if np.any((e[ok] <= 0) | (e[ok] >= 1)):
        raise param_error(func, "expected", "probabilities strictly between 0 and 1", "values outside (0, 1)")
    if not np.isin(y[ok], (0.0, 1.0)).all():
        raise InputError(f"{func}: column {outcome!r} must be binary (0/1 or bool)")
    frame = pd.DataFrame({"hospital": data[hospital].to_numpy()[ok], "y": y[ok], "e": e[ok]})
    pbar = float(frame["y"].mean())
    if not 0 < pbar < 1:
        raise InputError(f"{func}: outcome {outcome!r} has no events or only events; nothing to standardize")
    agg = frame.groupby("hospital", sort=True).agg(n=("y", "size"), observed=("y", "sum"), expected=("e", "sum")).reset_index()
    agg["oe"] = agg["observed"] / agg["expected"]
    agg["rsr"] = agg["oe"] * pbar
    lims = funnel_limits(pbar, agg["n"].to_numpy(), coverage, method)
    labels = _limit_labels(coverage)
    for lab in labels:
        agg[f"lower_{lab}"] = lims[f"lower_{lab}"].to_numpy()
        agg[f"upper_{lab}"] = lims[f"upper_{lab}"].to_numpy()
    flag = np.full(len(agg), "within", dtype=object)
    for c, lab in sorted(zip(coverage, labels)):  # widest limit last, so it wins
        flag = np.where(agg["rsr"] > agg[f"upper_{lab}"], f"above {lab}%", flag)
        flag = np.where(agg["rsr"] < agg[f"lower_{lab}"], f"below {lab}%", flag)
    agg["flag"] = flag
    grid = np.unique(np.round(np.geomspace(1, max(2, agg["n"].max()), curve_points)))
    curve = funnel_limits(pbar, grid, coverage, method)
    curve.insert(1, "target", pbar)
    return ProfileResult(agg, pbar, tuple(coverage), method, outcome, curve)


@model_function()
def risk_standardized_rates(formula: str, data: pd.DataFrame, hospital: str, *, coverage=(0.95, 0.998),
                            method: str = "exact") -> ProfileResult:
    """Fit the case-mix logistic model ``formula`` (no hospital terms) with
    :func:`hospstudy.models.glm.logit`, then :func:`hospital_profiles` on its fitted
    probabilities. Patients with a missing model variable are left out.

    Examples
    --------
    >>> prof = risk_standardized_rates("death_30d ~ age + C(sex)", analytic, "hospital_id")  # doctest: +SKIP
    >>> prof.anonymous_points().head()  # doctest: +SKIP
    """
    from hospstudy.models.glm import logit

    if hospital in formula.split("~", 1)[-1]:
        raise param_error("risk_standardized_rates", "formula", "a case-mix model without the hospital column", formula)
    model = logit(formula, data)
    rows = np.asarray(model.extra["rows"])
    sub = data.iloc[rows]
    res = hospital_profiles(sub, formula.split("~", 1)[0].strip(), hospital, np.asarray(model.extra["fitted"]),
                            coverage=coverage, method=method)
    return ProfileResult(res.table, res.overall_rate, res.coverage, res.method, res.outcome, res.curve, model,
                         [f"case-mix model: {formula} (logistic, {model.n} patients)"])
