"""Generalized estimating equations for a binary outcome clustered in hospitals.

``gee_logit`` solves the same estimating equations as R's ``geepack::geeglm`` (family
binomial, logit link) with the same moment estimators, vectorised over clusters:

- beta: Fisher scoring on ``sum_i D_i' V_i^{-1} (y_i - mu_i) = 0`` with
  ``V_i = phi A_i^{1/2} W_i^{-1/2} R(alpha) W_i^{-1/2} A_i^{1/2}`` (W = prior weights);
- scale: ``phi = sum w r^2 / sum w`` with Pearson residuals ``r`` (geepack estimates the
  scale even for the binomial family and uses no N - p correction);
- exchangeable correlation: ``alpha = sum_i sum_{j<k} w_j w_k r_j r_k / (phi sum_i sum_{j<k} w_j w_k)``
  (geepack's estimating equation for alpha with its pairwise weights; no p correction,
  unlike statsmodels' and the Liang–Zeger moment estimators);
- robust ("sandwich", geepack's ``san.se``) covariance ``H^{-1} (sum_i U_i U_i') H^{-1}``
  without small-sample correction; the model-based one is ``phi H^{-1}``.

The scale cancels from the beta equations and from the sandwich, so with the independence
structure the estimates equal the (weighted) logistic regression and the robust covariance
equals ``sandwich::vcovCL(glm, cluster, cadjust = FALSE)``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from hospstudy.errors import ConvergenceWarning, ModelError, param_error
from hospstudy.models.base import ModelResult, model_function
from hospstudy.models.glm import _irls, check_rank, prepare, safe_inverse, separation_check

CORR = ("exchangeable", "independence")


def _gsum(groups: np.ndarray, G: int, v: np.ndarray) -> np.ndarray:
    """Per-cluster sums of the rows of ``v`` (1-d or 2-d)."""
    if v.ndim == 1:
        return np.bincount(groups, weights=v, minlength=G)
    return _indicator(groups, G) @ v


def _indicator(groups: np.ndarray, G: int):
    from scipy import sparse

    n = groups.size
    return sparse.csr_matrix((np.ones(n), (groups, np.arange(n))), shape=(G, n))


def _coefficients(alpha: float, m: np.ndarray):
    """Exchangeable inverse ``R^{-1} = c1 I - c2 J`` per cluster of size m."""
    c1 = np.full(m.shape, 1.0 / (1.0 - alpha))
    c2 = alpha / ((1.0 - alpha) * (1.0 + (m - 1) * alpha))
    return c1, c2


def fit_gee_binomial(X, y, groups, w=None, corr: str = "exchangeable", tol: float = 1e-10,
                     max_iter: int = 100, beta0=None):
    """Numbers of a binomial-logit GEE (pure function; see the module docstring).

    Returns
    -------
    dict
        ``beta, cov_robust, cov_naive, alpha, phi, iterations, converged, mu``.
    """
    n, p = X.shape
    G = int(groups.max()) + 1
    ww = np.ones(n) if w is None else np.asarray(w, dtype=float)
    m = np.bincount(groups, minlength=G).astype(float)
    if beta0 is None:
        beta0 = _irls(X, y, w, "gee_logit")[0]
    beta = np.asarray(beta0, dtype=float).copy()
    alpha, phi = 0.0, 1.0
    pair_w = (_gsum(groups, G, ww) ** 2 - _gsum(groups, G, ww**2)) / 2
    converged = False
    it = 0

    def pieces(beta, alpha):
        eta = X @ beta
        mu = 1.0 / (1.0 + np.exp(-eta))
        a = mu * (1 - mu)
        Z = X * np.sqrt(ww * a)[:, None]
        r = (y - mu) / np.sqrt(a)
        e = np.sqrt(ww) * r
        c1, c2 = _coefficients(alpha, m)
        S = _gsum(groups, G, Z)
        E = _gsum(groups, G, e)
        H = (Z * c1[groups][:, None]).T @ Z - (S * c2[:, None]).T @ S
        Ug = _gsum(groups, G, Z * (e * c1[groups])[:, None]) - S * (c2 * E)[:, None]
        return mu, r, H, Ug

    for it in range(1, max_iter + 1):
        mu, r, H, Ug = pieces(beta, alpha)
        try:
            step = np.linalg.solve(H, Ug.sum(axis=0))
        except np.linalg.LinAlgError:
            # singular under separation (estimates running off): a least-squares step keeps
            # going, and the separation check of gee_logit flags the result, as logit's does
            step = np.linalg.pinv(H) @ Ug.sum(axis=0)
        beta = beta + step
        eta = X @ beta
        mu = 1.0 / (1.0 + np.exp(-eta))
        r = (y - mu) / np.sqrt(mu * (1 - mu))
        phi_new = float(np.sum(ww * r**2) / np.sum(ww))
        d_phi = abs(phi_new - phi)
        phi = phi_new
        d_alpha = 0.0
        if corr == "exchangeable":
            wr = ww * r
            num = float(np.sum((_gsum(groups, G, wr) ** 2 - _gsum(groups, G, wr**2)) / 2))
            den = float(np.sum(pair_w))
            if den <= 0:
                raise ModelError(
                    "gee_logit: no cluster has two or more rows, so an exchangeable correlation cannot be "
                    "estimated; use corr='independence'."
                )
            alpha_new = num / (phi * den)
            if alpha_new >= 1 or np.any(1 + (m - 1) * alpha_new <= 0):
                warnings.warn(
                    f"gee_logit: the exchangeable correlation left its admissible range (alpha = {alpha_new:.4g}); "
                    "the fit stopped. Use corr='independence'.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
                break
            d_alpha = abs(alpha_new - alpha)
            alpha = alpha_new
        if max(np.max(np.abs(step)), d_phi, d_alpha) <= tol:
            converged = True
            break
    mu, r, H, Ug = pieces(beta, alpha)
    Hinv, _ = safe_inverse(H)  # the pseudo-inverse when singular (separation: flagged by the caller)
    cov_robust = Hinv @ (Ug.T @ Ug) @ Hinv
    return {
        "beta": beta, "cov_robust": cov_robust, "cov_naive": phi * Hinv, "alpha": alpha if corr == "exchangeable" else None,
        "phi": phi, "iterations": it, "converged": converged, "mu": mu,
    }


@model_function(renamed={"group": "cluster", "maxiter": "max_iter"})
def gee_logit(formula: str, data: pd.DataFrame, cluster, corr: str = "exchangeable", weights=None,
              conf_level: float = 0.95, tol: float = 1e-10, max_iter: int = 100) -> ModelResult:
    """Logistic GEE with robust (sandwich) errors: population-averaged odds ratios.

    Parameters
    ----------
    formula : str
        ``"outcome ~ terms"`` (formulaic syntax, ``rcs()`` allowed); the outcome is 0/1.
    data : pandas.DataFrame
        One row per patient. Rows need not be sorted by cluster.
    cluster : str or array-like
        Cluster identifier (hospital), a column name or one value per row. (Old name:
        ``group=``, still accepted with a DeprecationWarning.)
    corr : {'exchangeable', 'independence'}
        Working correlation.
    weights : str or array-like, optional
        Prior weights (e.g. IPTW), >= 0; weight-0 rows are dropped.
    conf_level : float
        Level of the confidence intervals in ``tidy()``.
    tol, max_iter : float, int
        Stop when the largest change of beta, scale and alpha is <= ``tol``. (``maxiter=``
        is ``max_iter``'s old name, still accepted with a DeprecationWarning.)

    Returns
    -------
    ModelResult
        ``scale='marginal'``; ``extra`` holds ``alpha`` (working correlation), ``phi``
        (scale), ``cov_naive``, ``iterations`` and the formula state for ``volume_curve``.

    Notes
    -----
    Matches ``geepack::geeglm(..., family = binomial, corstr = corr)`` run to convergence
    (``control = geese.control(epsilon = 1e-12)``; geeglm's default epsilon 1e-4 stops
    earlier) in estimates, robust and naive errors, alpha and scale, with or without
    weights. It does not match statsmodels' GEE exactly with the exchangeable structure
    (statsmodels subtracts p from the pair count and fixes the binomial scale at 1).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"y": [0, 1, 0, 1, 1, 0, 1, 1, 0, 0], "x": range(10),
    ...                    "h": [1, 1, 1, 2, 2, 2, 3, 3, 4, 4]})
    >>> r = gee_logit("y ~ x", df, cluster="h", corr="independence")
    >>> r.scale
    'marginal'
    """
    func = "gee_logit"
    if corr not in CORR:
        raise param_error(func, "corr", f"one of {CORR}", corr)
    if cluster is None:
        raise param_error(func, "cluster", "a cluster column name or array", cluster)
    if not (isinstance(conf_level, float) and 0 < conf_level < 1):
        raise param_error(func, "conf_level", "a float in (0, 1)", conf_level)
    p = prepare(formula, data, func, weights=weights, cluster=cluster, cluster_param="cluster")
    terms = p.d.terms
    keep = check_rank(p.X, terms, func)
    X = p.X[:, keep]
    beta0, mu0, _, _, _, conv0 = _irls(X, p.y, p.w, func)
    sep = separation_check(X, p.y, [terms[j] for j in keep], mu0, conv0, func)
    fit = fit_gee_binomial(X, p.y, p.groups, p.w, corr=corr, tol=tol, max_iter=max_iter, beta0=beta0)
    if not fit["converged"] and not sep:
        warnings.warn(f"{func}: did not converge in {max_iter} iterations.", ConvergenceWarning, stacklevel=2)
    k = len(terms)
    est = np.full(k, np.nan)
    est[keep] = fit["beta"]
    cov = np.full((k, k), np.nan)
    cov[np.ix_(keep, keep)] = fit["cov_robust"]
    naive = np.full((k, k), np.nan)
    naive[np.ix_(keep, keep)] = fit["cov_naive"]
    return ModelResult(
        method=f"GEE logistic ({corr}{', weighted' if p.w is not None else ''})",
        terms=list(terms),
        estimate=est,
        cov=cov,
        n=int(p.y.size),
        link="logit",
        scale="marginal",
        events=int(p.y.sum()),
        clusters=int(p.groups.max()) + 1,
        loglik=None,
        converged=bool(fit["converged"]),
        conf_level=conf_level,
        extra={
            "corr": corr, "alpha": fit["alpha"], "phi": fit["phi"], "cov_naive": naive,
            "iterations": fit["iterations"], "vcov_type": "robust sandwich (geepack san.se)",
            "fitted": fit["mu"], "rows": p.d.rows, "weights": p.w, "separation": sep,
            "model_spec": p.d.spec, "template": p.template, "variables": p.variables, "formula": p.d.formula,
        },
    )


__all__ = ["gee_logit", "fit_gee_binomial"]
