"""Random-intercept logistic regression by maximum likelihood, as R's ``lme4::glmer``.

``mixed_logit(formula, data, cluster=, nagq=1)`` fits
``logit P(y_ij = 1 | b_j) = x_ij' beta + b_j``, ``b_j ~ N(0, sigma^2)`` (patients ``i`` in
hospitals ``j``) with lme4's definitions: conditional modes by PIRLS, the Laplace approximation
at ``nagq=1`` and lme4's adaptive Gauss–Hermite quadrature at ``nagq > 1`` (up to 25 nodes),
joint optimisation over ``(theta, beta)`` as lme4's second stage, and lme4's default
covariance (inverse Hessian of the deviance over theta and beta jointly, the beta block).
The numerics live in :mod:`hospstudy.models._aghq`. Validated against lme4 1.1 on ``cbpp`` and
``mlmRev::Contraception`` (tests/test_mixed_reference.py, tests/reference/lme4_reference.R).

Odds ratios from this model are *conditional* (the effect within a hospital): the result's
``scale`` is ``'conditional'``.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import gammaln

from hospstudy.errors import (
    BoundaryWarning,
    ConvergenceWarning,
    InputError,
    ModelError,
    SeparationWarning,
    param_error,
)
from hospstudy.models import _aghq
from hospstudy.models.base import ModelResult, design, model_function
from hospstudy.models.glm import _column_or_array, _row_label, check_rank, detect_separation

FUNC = "mixed_logit"
#: lme4's ``isSingular`` tolerance: a random-intercept SD below this is a boundary fit.
BOUNDARY_TOL = 1e-4
#: ``exp(sqrt(2) * qnorm(0.75) * sigma)`` is the median odds ratio (Larsen & Merlo 2005).
MOR_FACTOR = float(np.sqrt(2.0) * stats.norm.ppf(0.75))

_CBIND = re.compile(r"^\s*cbind\s*\((?P<args>.*)\)\s*~(?P<rhs>.*)$", re.S)


@dataclass(frozen=True)
class MixedLogitResult(ModelResult):
    """A fitted random-intercept logistic model (see :func:`mixed_logit`).

    Beyond :class:`~hospstudy.models.base.ModelResult` (``tidy()``, ``summary()``, fixed
    effects on the conditional log-odds scale):

    Attributes
    ----------
    random_sd : float
        Standard deviation of the random intercept (log-odds scale); lme4's ``theta``.
    random_sd_se : float
        Its standard error (from the same Hessian as the fixed-effect errors).
    deviance : float
        The objective lme4 minimises, at the optimum, on lme4's scale: ``-2 * logLik`` as
        lme4 reports it. At ``nagq=1`` this includes the binomial coefficients; at
        ``nagq > 1`` lme4 sums deviance residuals instead (lme4 issue #161), which differs
        for aggregated binomial counts and coincides for 0/1 rows.
    loglik : float
        The marginal log-likelihood (Laplace or AGHQ approximation) including binomial
        coefficients, on one scale for every ``nagq``.
    ranef : DataFrame
        One row per group: ``group, n, events, trials, mode`` (conditional mode of the
        random intercept ``b_j``, log-odds) and ``cond_sd`` (its conditional SD, lme4's
        ``condVar``).
    icc : float
        Latent-scale intraclass correlation ``sigma^2 / (sigma^2 + pi^2 / 3)``.
    median_odds_ratio : float
        ``exp(sqrt(2) * Phi^-1(0.75) * sigma)``.
    random_sd_conf_low, random_sd_conf_high : float
        Confidence limits of ``random_sd`` at ``conf_level``: ``sd_ci='delta'`` is the Wald
        interval of ``log(sigma)`` transformed back (NaN at a boundary fit); ``sd_ci='profile'``
        the profile-likelihood interval (as lme4's ``confint(method='profile')``; lower
        limit 0 when the boundary is inside).
    mor_conf_low, mor_conf_high : float
        The median odds ratio's limits: the SD limits transformed (the MOR is monotone in sigma).
    nagq : int
        Quadrature nodes (1 = Laplace).
    """

    random_sd: float = float("nan")
    random_sd_se: float = float("nan")
    deviance: float = float("nan")
    ranef: pd.DataFrame = field(default_factory=pd.DataFrame)
    icc: float = float("nan")
    median_odds_ratio: float = float("nan")
    mor_conf_low: float = float("nan")
    mor_conf_high: float = float("nan")
    random_sd_conf_low: float = float("nan")
    random_sd_conf_high: float = float("nan")
    sd_ci: str = "delta"
    nagq: int = 1
    group: str = ""
    dropped_terms: tuple = ()
    vcov_full: np.ndarray | None = None  # over (theta, beta of the estimated terms)

    def variance_components(self) -> pd.DataFrame:
        """Hospital variation: SD, variance, ICC and median odds ratio with confidence limits
        (the SD's limits by ``sd_ci``; the others are monotone transforms of sigma's)."""
        sd, lo, hi = self.random_sd, self.random_sd_conf_low, self.random_sd_conf_high
        k = np.pi**2 / 3
        with np.errstate(over="ignore", invalid="ignore"):  # an unbounded upper limit stays inf
            rows = [
                ("sd", sd, lo, hi),
                ("variance", sd**2, lo**2, hi**2),
                ("icc", sd**2 / (sd**2 + k), lo**2 / (lo**2 + k), hi**2 / (hi**2 + k)),
                ("median_odds_ratio", np.exp(MOR_FACTOR * sd), np.exp(MOR_FACTOR * lo), np.exp(MOR_FACTOR * hi)),
            ]
        out = pd.DataFrame(rows, columns=["quantity", "estimate", "conf_low", "conf_high"])
        out["method"] = {"delta": "delta method on log(sd)", "profile": "profile likelihood"}[self.sd_ci]
        out["group"] = self.group
        return out

    def _n_params(self) -> int:
        return len(self.terms) + 1  # and the random-intercept SD (lme4's AIC counts it)

    def _glance_extra(self) -> dict:
        return {"random_sd": float(self.random_sd), "icc": float(self.icc),
                "median_odds_ratio": float(self.median_odds_ratio), "deviance": float(self.deviance),
                "nagq": int(self.nagq)}

    def header(self) -> dict:
        h = super().header()
        h["group"] = self.group
        h["nAGQ"] = self.nagq
        h["deviance (lme4)"] = round(float(self.deviance), 4)
        h["random SD"] = round(float(self.random_sd), 5)
        h["ICC (latent)"] = round(float(self.icc), 5)
        h["median OR"] = (f"{self.median_odds_ratio:.4f} ({self.mor_conf_low:.4f}–{self.mor_conf_high:.4f})")
        if self.dropped_terms:
            h["dropped (aliased)"] = ", ".join(self.dropped_terms)
        return h


def _split_cbind(formula: str, data: pd.DataFrame):
    """``cbind(successes, failures) ~ rhs`` (lme4's two-column response) -> successes, trials."""
    m = _CBIND.match(formula)
    if not m:
        return None
    args, depth, cut = m.group("args"), 0, None
    for i, ch in enumerate(args):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            cut = i
            break
    if cut is None:
        raise param_error(FUNC, "formula", "'cbind(successes, failures) ~ terms' with two arguments", formula)
    succ_expr, fail_expr = args[:cut].strip(), args[cut + 1:].strip()
    vals = []
    for expr in (succ_expr, fail_expr):
        try:
            v = data.eval(expr) if expr not in data.columns else data[expr]
        except Exception as e:
            raise ModelError(f"{FUNC}: cannot evaluate {expr!r} of the response of {formula!r}: {e}") from None
        vals.append(np.asarray(v, dtype=float))
    return vals[0], vals[0] + vals[1], m.group("rhs")


@model_function(renamed={"group": "cluster"})
def mixed_logit(formula: str, data: pd.DataFrame, cluster, nagq: int = 1, weights=None, trials=None,
                conf_level: float = 0.95, sd_ci: str = "delta", tol: float = 1e-10,
                max_iter: int = 1000) -> MixedLogitResult:
    """Random-intercept logistic regression by maximum likelihood (lme4::glmer's definitions).

    Parameters
    ----------
    formula : str
        ``"outcome ~ terms"`` (formulaic syntax; ``C(x, contr.treatment('ref'))`` chooses a
        reference level). The outcome is 0/1 or boolean, or the number of successes with
        ``trials=``; lme4's two-column response ``"cbind(successes, failures) ~ terms"`` also
        works (each argument a column or an expression of columns).
    data : DataFrame
        One row per patient (or per cell of binomial counts).
    cluster : str or array-like
        The clustering column (hospital); one random intercept per distinct value. (Its old
        name ``group=`` still works, with a DeprecationWarning.)
    nagq : int, default 1
        Quadrature nodes: 1 is the Laplace approximation, 2..25 adaptive Gauss–Hermite.
    weights : str or array-like, optional
        Case weights (prior weights, as glmer's ``weights=``), finite and >= 0.
    trials : str or array-like, optional
        Number of trials per row; the outcome is then the number of successes.
    conf_level : float, default 0.95
        Level of the Wald intervals of ``tidy()`` and of the random-SD / median-odds-ratio interval.
    sd_ci : {'delta', 'profile'}, default 'delta'
        Interval of the random-intercept SD (and so of the ICC and median odds ratio): Wald on
        ``log(sigma)`` (no extra fitting), or profile likelihood (refits beta on a grid of sigma
        found by root finding; better with few hospitals or a SD near 0, slower).
    tol : float, default 1e-10
        Convergence test: the Newton decrement ``g' H^-1 g`` of the deviance.
    max_iter : int, default 1000
        Iteration limit of the quasi-Newton stage.

    Rows with a missing value in a formula variable, the group or the trials are left out
    (complete cases, as glmer's default ``na.action``); their number is
    ``result.extra['rows_dropped_missing']``.

    Returns
    -------
    MixedLogitResult
        ``tidy()`` of the fixed effects (conditional odds ratios), ``random_sd``,
        ``loglik``, ``deviance``, ``ranef``, ``icc``, ``median_odds_ratio`` with CI.

    Warns
    -----
    BoundaryWarning
        The random-intercept SD is estimated at (or within 1e-4 of) 0.
    SeparationWarning
        Complete or quasi-complete separation of the fixed effects (named).
    RankDeficiencyWarning
        Aliased columns of the design (dropped, reported as NaN).
    ConvergenceWarning
        The optimiser stopped before the convergence test passed.

    Examples
    --------
    >>> import pandas as pd
    >>> from hospstudy.models.mixed import mixed_logit
    >>> d = pd.read_csv("tests/reference/lme4_cbpp.csv")
    >>> fit = mixed_logit("cbind(incidence, size - incidence) ~ C(period)", d, cluster="herd")
    >>> round(fit.random_sd, 4)
    0.6423
    """
    t0 = time.perf_counter()
    if not isinstance(data, pd.DataFrame):
        raise param_error(FUNC, "data", "a pandas DataFrame", type(data).__name__)
    if not isinstance(formula, str) or "~" not in formula:
        raise param_error(FUNC, "formula", "a formula string 'outcome ~ terms'", formula)
    if isinstance(nagq, bool) or not isinstance(nagq, (int, np.integer)) or not 1 <= nagq <= _aghq.MAX_NAGQ:
        raise param_error(FUNC, "nagq", f"an int in [1, {_aghq.MAX_NAGQ}]", nagq)
    if not isinstance(conf_level, float) or not 0 < conf_level < 1:
        raise param_error(FUNC, "conf_level", "a float in (0, 1)", conf_level)
    if sd_ci not in ("delta", "profile"):
        raise param_error(FUNC, "sd_ci", "'delta' or 'profile'", sd_ci)
    if not isinstance(tol, (int, float)) or not tol > 0:
        raise param_error(FUNC, "tol", "a positive float", tol)
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise param_error(FUNC, "max_iter", "a positive int", max_iter)
    if cluster is None:
        raise param_error(FUNC, "cluster", "a column name or array of cluster identifiers", cluster)

    frame = data.reset_index(drop=True).copy()
    gcol = _column_or_array(data, cluster, FUNC, "cluster")
    group_name = cluster if isinstance(cluster, str) else "group"
    trials_arr = None
    cb = _split_cbind(formula, frame)
    if cb is not None:
        if trials is not None:
            raise param_error(FUNC, "trials", "None when the formula has a cbind(successes, failures) response",
                              trials)
        succ, trials_arr, rhs = cb
        frame["__successes__"] = succ
        formula_used = "__successes__ ~" + rhs
    else:
        formula_used = formula
        if trials is not None:
            trials_arr = np.asarray(_column_or_array(data, trials, FUNC, "trials"), dtype=float)
    d = design(formula_used, frame, func=FUNC)
    rows = d.rows
    y = np.asarray(d.y, dtype=float)
    if y.ndim != 1:
        raise param_error(FUNC, "formula", "a formula with one outcome on the left (0/1, or successes with "
                          "trials=, or cbind(successes, failures))", formula)
    keep = np.ones(rows.size, dtype=bool)
    g = gcol[rows]
    gmiss = pd.isna(g)
    keep &= ~gmiss  # complete-case analysis, as for the formula's own variables
    if trials_arr is not None:
        n_tr = trials_arr[rows]
        keep &= ~np.isnan(n_tr)
    w = np.ones(rows.size)
    if weights is not None:
        try:
            w = np.asarray(_column_or_array(data, weights, FUNC, "weights"), dtype=float)[rows]
        except (TypeError, ValueError):
            raise param_error(FUNC, "weights", "numeric", "non-numeric values") from None
        bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
        if bad.size:
            raise InputError(f"{FUNC}: weights must be finite and >= 0; {_row_label(data, int(rows[bad[0]]))} has "
                             f"{w[bad[0]]:g} ({bad.size} such rows).")
    if not keep.any():
        raise InputError(f"{FUNC}: no complete rows: every row misses a variable of {formula!r} or the group.")
    rows, y, X, g, w = rows[keep], y[keep], d.X[keep], g[keep], w[keep]
    if trials_arr is not None:
        n_tr = n_tr[keep]
        bad = np.flatnonzero(~np.isfinite(n_tr) | (n_tr <= 0) | (y < 0) | (y > n_tr) | ~np.isfinite(y))
        if bad.size:
            i = bad[0]
            raise InputError(f"{FUNC}: binomial counts need 0 <= successes <= trials and trials > 0; "
                             f"{_row_label(data, int(rows[i]))} has successes={y[i]:g}, trials={n_tr[i]:g} "
                             f"({bad.size} such rows).")
        successes = y
        prop = y / n_tr
    else:
        bad = np.flatnonzero((y != 0) & (y != 1))
        if bad.size:
            i = bad[0]
            raise InputError(f"{FUNC}: the outcome of {formula!r} must be 0/1 or boolean (or give trials= for "
                             f"binomial counts); {_row_label(data, int(rows[i]))} has {y[i]:g} ({bad.size} such rows).")
        n_tr = np.ones(y.size)
        successes = y
        prop = y
    if not np.any(w > 0):
        raise InputError(f"{FUNC}: every complete row has weight 0.")

    # aliased columns are dropped before fitting (rows with positive weight decide)
    pos = w > 0
    keep_cols = check_rank(X[pos], d.terms, FUNC)
    terms_all = list(d.terms)
    dropped = tuple(terms_all[j] for j in range(len(terms_all)) if j not in set(keep_cols))
    Xk = X[:, keep_cols]
    terms_k = [terms_all[j] for j in keep_cols]
    codes, levels = pd.factorize(g, sort=True)
    order = np.argsort(codes, kind="stable")
    codes_s = codes[order]
    starts = np.flatnonzero(np.r_[True, codes_s[1:] != codes_s[:-1]])
    m = (w * n_tr)[order]
    problem = _aghq.AghqProblem(Xk[order], prop[order], m, starts, int(nagq))
    beta0 = _aghq.glm_start(problem.X, problem.y, problem.m)
    out = _aghq.fit(problem, beta0, theta0=1.0, gtol=tol, max_iter=int(max_iter))

    # Separation (Konis's linear program, as logit's check) only when the fit looks like it:
    # diverging coefficients move the linear predictor by more than 10 logits across the data.
    sep: list[str] = []
    spread = np.abs(out.beta) * np.ptp(Xk[pos], axis=0)
    if not out.converged or np.any(spread > 10):
        has_s, has_f = pos & (successes > 0), pos & (successes < n_tr)
        sep = detect_separation(np.vstack([Xk[has_s], Xk[has_f]]),
                                np.concatenate([np.ones(has_s.sum()), np.zeros(has_f.sum())]), terms_k)
    if sep:
        warnings.warn(f"{FUNC}: complete or quasi-complete separation: the estimates of {sep} are not finite "
                      "(the likelihood keeps rising as they grow); their estimates and errors are meaningless. "
                      "Merge sparse categories or drop the term.", SeparationWarning, stacklevel=2)

    lchoose = w * (gammaln(n_tr + 1) - gammaln(successes + 1) - gammaln(n_tr - successes + 1))
    saturated, choose = problem.deviance_constants(lchoose)
    loglik = -0.5 * (out.deviance - choose)
    deviance = out.deviance - choose if nagq == 1 else out.deviance + saturated

    # lme4's default vcov: inverse of the Hessian of the deviance (= -2 loglik) over (theta, beta)
    k = 1 + Xk.shape[1]
    H = out.hessian
    theta = out.theta
    boundary = theta < BOUNDARY_TOL
    if boundary:
        # theta = 0 is a boundary point: its curvature is not a variance (the joint Hessian is
        # singular there by construction); beta's block is the GLM's
        try:
            cov_b = 2.0 * np.linalg.inv(H[1:, 1:])
        except np.linalg.LinAlgError:
            cov_b = np.full((k - 1, k - 1), np.nan)
            warnings.warn(f"{FUNC}: the Hessian of the deviance over the fixed effects is singular at the "
                          "estimates; standard errors are not available.", ConvergenceWarning, stacklevel=2)
        cov_full = np.full((k, k), np.nan)
        cov_full[1:, 1:] = cov_b
        warnings.warn(f"{FUNC}: boundary fit: the random-intercept SD of '{group_name}' is estimated as "
                      f"{theta:.3g} (< {BOUNDARY_TOL}); the data show no between-{group_name} variation beyond "
                      "chance, the model reduces to ordinary logistic regression (use sd_ci='profile' for an "
                      "interval of the SD).", BoundaryWarning, stacklevel=2)
    else:
        try:
            cov_full = 2.0 * np.linalg.inv(H)
            if not np.all(np.isfinite(cov_full)) or np.any(np.diag(cov_full) < 0):
                raise np.linalg.LinAlgError
        except np.linalg.LinAlgError:
            cov_full = np.full((k, k), np.nan)
            warnings.warn(f"{FUNC}: the Hessian of the deviance is singular or not positive definite at the "
                          "estimates; standard errors are not available.", ConvergenceWarning, stacklevel=2)
    if not out.converged:
        warnings.warn(f"{FUNC}: the optimiser did not converge ({out.message}; Newton decrement "
                      f"{out.newton_decrement:.3g} > tol {tol:g}); estimates may be off.",
                      ConvergenceWarning, stacklevel=2)

    p_all = len(terms_all)
    est = np.full(p_all, np.nan)
    est[keep_cols] = out.beta
    cov = np.full((p_all, p_all), np.nan)
    cov[np.ix_(keep_cols, keep_cols)] = cov_full[1:, 1:]
    sd_se = float(np.sqrt(cov_full[0, 0])) if np.isfinite(cov_full[0, 0]) and cov_full[0, 0] >= 0 else float("nan")

    J = len(levels)
    u0 = out.u0
    sizes = np.diff(np.append(starts, len(order)))
    ranef = pd.DataFrame({
        "group": np.asarray(levels),
        "n": sizes,
        "events": np.bincount(codes, weights=successes * w, minlength=J),
        "trials": np.bincount(codes, weights=n_tr * w, minlength=J),
        "mode": theta * u0,
        "cond_sd": theta * out.sd,
    })
    sd_lo = sd_hi = float("nan")
    if sd_ci == "profile" and np.all(np.isfinite(H)):
        try:
            sd_lo, sd_hi = _aghq.profile_interval(problem, theta, out.beta, out.deviance, H, conf_level)
        except (ValueError, np.linalg.LinAlgError) as e:
            warnings.warn(f"{FUNC}: the profile-likelihood interval of the random SD failed ({e}).",
                          ConvergenceWarning, stacklevel=2)
    elif sd_ci == "delta" and not boundary and np.isfinite(sd_se):
        q = stats.norm.ppf(0.5 + conf_level / 2)
        with np.errstate(over="ignore"):  # a nearly flat likelihood gives an unbounded upper limit
            sd_lo, sd_hi = theta * np.exp(-q * sd_se / theta), theta * np.exp(q * sd_se / theta)
    with np.errstate(over="ignore", invalid="ignore"):
        mor_lo, mor_hi = np.exp(MOR_FACTOR * sd_lo), np.exp(MOR_FACTOR * sd_hi)
    res = MixedLogitResult(
        method=f"random-intercept logistic regression (ML, {'Laplace' if nagq == 1 else f'AGHQ, {nagq} nodes'})",
        terms=terms_all,
        estimate=est,
        cov=cov,
        n=int(len(rows)),
        link="logit",
        scale="conditional",
        events=int(round(float(np.sum(successes * w)))) if np.allclose(w, np.round(w)) else float(np.sum(successes * w)),
        clusters=int(J),
        loglik=float(loglik),
        converged=bool(out.converged),
        conf_level=conf_level,
        extra={
            "newton_decrement": out.newton_decrement,
            "gradient": out.grad,
            "iterations": out.n_iter,
            "evaluations": out.n_eval,
            "optimizer_message": out.message,
            "fit_seconds": time.perf_counter() - t0,
            "theta": theta,
            "separation": sep,
            "rows_dropped_missing": int(len(data) - len(rows)),
        },
        random_sd=float(theta),
        random_sd_se=sd_se,
        deviance=float(deviance),
        ranef=ranef,
        icc=float(theta**2 / (theta**2 + np.pi**2 / 3)),
        median_odds_ratio=float(np.exp(MOR_FACTOR * theta)),
        mor_conf_low=float(mor_lo),
        mor_conf_high=float(mor_hi),
        random_sd_conf_low=float(sd_lo),
        random_sd_conf_high=float(sd_hi),
        sd_ci=sd_ci,
        nagq=int(nagq),
        group=str(group_name),
        dropped_terms=dropped,
        vcov_full=cov_full,
    )
    return res
