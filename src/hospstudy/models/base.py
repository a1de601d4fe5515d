"""What every model shares: design matrices from formulas, and one result shape.

"Methods orchestrate; numbers happen in functions": a model function builds the design,
calls a pure numeric routine and wraps what it returns in :class:`ModelResult`, whose
``tidy()`` is the one source of coefficients, standard errors and intervals.
"""

from __future__ import annotations

import functools
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from hospstudy.errors import ModelError, param_error

TIDY_COLUMNS = [
    "term", "estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high",
    "exp_estimate", "exp_conf_low", "exp_conf_high",
]


@dataclass(frozen=True)
class Design:
    y: np.ndarray  # (n,) outcome, or (n, 2) successes/trials for binomial counts
    X: np.ndarray  # (n, p) fixed-effect design
    terms: list[str]
    rows: np.ndarray  # positions in the input frame that survived missing-value removal
    formula: str
    spec: Any = None  # formulaic ModelSpec of the right-hand side: rebuilds X on new data (same knots)


def formula_context() -> dict[str, Any]:
    """Functions hospstudy adds to formulas (``rcs(x, 4)``) on top of formulaic's own."""
    from hospstudy.models.splines import rcs

    return {"rcs": rcs}


def design(formula: str, data: pd.DataFrame, func: str = "model") -> Design:
    """Build y and X from a Wilkinson formula (formulaic syntax: ``C(x, contr.treatment('ref'))``
    picks a reference level; ``cbind(successes, trials) ~ ...`` is not formulaic syntax, use
    :func:`binomial_response` for counts). Rows with a missing value in any used column are
    dropped (complete-case analysis); booleans become 0/1.
    """
    import formulaic

    if not isinstance(data, pd.DataFrame):
        raise param_error(func, "data", "a pandas DataFrame", type(data).__name__)
    if not isinstance(formula, str) or "~" not in formula:
        raise param_error(func, "formula", "a formula string 'outcome ~ terms'", formula)
    frame = data.copy()
    for c in frame.columns:
        if frame[c].dtype == bool or str(frame[c].dtype) == "boolean":
            frame[c] = frame[c].astype("float64")
    frame = frame.reset_index(drop=True)
    try:
        mm = formulaic.model_matrix(formula, frame, na_action="drop", context=formula_context())
    except Exception as e:  # formulaic raises many types; turn them into one clear message
        raise ModelError(f"{func}: cannot build the design from formula {formula!r}: {e}") from None
    lhs, rhs = mm.lhs, mm.rhs
    rows = np.asarray(rhs.index)
    y = np.asarray(lhs, dtype=float)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    return Design(y=y, X=np.asarray(rhs, dtype=float), terms=list(rhs.columns), rows=rows, formula=formula,
                  spec=getattr(rhs, "model_spec", None))


@dataclass(frozen=True)
class ModelResult:
    """A fitted model. ``tidy()`` gives the coefficient table; ``summary()`` a header and table.

    ``exp_estimate`` columns are odds ratios (logit links) or hazard ratios (Cox models);
    ``link`` says which ('logit', 'log', 'identity', 'cox', 'subdistribution').
    ``scale`` says how to read an odds ratio: 'conditional' (random-intercept models: the
    effect within a hospital), 'marginal' (GEE, weighted), or 'unclustered' (plain GLM).
    """

    method: str
    terms: list[str]
    estimate: np.ndarray
    cov: np.ndarray
    n: int
    link: str = "logit"
    scale: str = "unclustered"
    events: int | None = None
    clusters: int | None = None
    loglik: float | None = None
    converged: bool = True
    conf_level: float = 0.95
    df_resid: float | None = None  # when set, t-based inference instead of normal
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def std_error(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0, None))

    def tidy(self, conf_level: float | None = None) -> pd.DataFrame:
        level = self.conf_level if conf_level is None else conf_level
        est = np.asarray(self.estimate, dtype=float)
        se = self.std_error
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = est / se
        if self.df_resid is None:
            q = stats.norm.ppf(0.5 + level / 2)
            p = 2 * stats.norm.sf(np.abs(stat))
        else:
            q = stats.t.ppf(0.5 + level / 2, self.df_resid)
            p = 2 * stats.t.sf(np.abs(stat), self.df_resid)
        lo, hi = est - q * se, est + q * se
        out = pd.DataFrame(
            {
                "term": self.terms,
                "estimate": est,
                "std_error": se,
                "statistic": stat,
                "p_value": p,
                "conf_low": lo,
                "conf_high": hi,
            }
        )
        if self.link == "identity":
            out["exp_estimate"] = out["exp_conf_low"] = out["exp_conf_high"] = np.nan
        else:
            # a separated term's estimate is huge: its odds ratio is inf, as it should read
            with np.errstate(over="ignore"):
                out["exp_estimate"], out["exp_conf_low"], out["exp_conf_high"] = np.exp(est), np.exp(lo), np.exp(hi)
        return out[TIDY_COLUMNS]

    def glance(self) -> pd.DataFrame:
        """One row summarising the fit (the ``broom::glance`` of R): ``method, n, events,
        clusters, loglik, aic, converged, scale, link, conf_level`` and, for a random-intercept
        model, ``random_sd, icc, median_odds_ratio, deviance, nagq``. ``loglik`` and ``aic``
        are NaN where the method has no likelihood (GEE, weighted models).

        Examples
        --------
        >>> import pandas as pd
        >>> from hospstudy.models import logit
        >>> d = pd.DataFrame({"y": [0, 1, 0, 1, 1, 0, 1, 0], "x": [1., 2., 3., 4., 5., 6., 7., 8.]})
        >>> logit("y ~ x", d).glance()[["n", "events", "loglik", "converged"]].round(3)
           n  events  loglik  converged
        0  8       4  -5.545       True
        """
        loglik = float("nan") if self.loglik is None else float(self.loglik)
        row = {
            "method": self.method, "n": self.n,
            "events": pd.NA if self.events is None else self.events,
            "clusters": pd.NA if self.clusters is None else self.clusters,
            "loglik": loglik, "aic": -2 * loglik + 2 * self._n_params(),
            "converged": bool(self.converged), "scale": self.scale, "link": self.link,
            "conf_level": self.conf_level,
        }
        row.update(self._glance_extra())
        return pd.DataFrame([row])

    def _n_params(self) -> int:
        return len(self.terms)

    def _glance_extra(self) -> dict[str, Any]:
        return {}

    def header(self) -> dict[str, Any]:
        h = {"method": self.method, "N": self.n}
        if self.events is not None:
            h["events"] = self.events
        if self.clusters is not None:
            h["clusters"] = self.clusters
        if self.loglik is not None:
            h["log-likelihood"] = round(float(self.loglik), 4)
        h["scale"] = self.scale
        h["converged"] = self.converged
        return h

    def summary(self) -> str:
        head = "\n".join(f"{k:>16}: {v}" for k, v in self.header().items())
        with pd.option_context("display.width", 140, "display.max_columns", 20):
            return head + "\n\n" + self.tidy().to_string(index=False, float_format=lambda v: f"{v:.4g}")

    def print_summary(self) -> None:
        print(self.summary())

    def coef(self, term: str) -> pd.Series:
        t = self.tidy()
        hit = t[t["term"] == term]
        if hit.empty:
            raise KeyError(f"no term {term!r}; terms are {self.terms}")
        return hit.iloc[0]


# ---- one thread for BLAS inside every model fit ----------------------------------------------

_BLAS = threading.local()


@contextmanager
def single_threaded_blas():
    """Limit BLAS (OpenBLAS, MKL) to one thread for the block; re-entrant and cheap when
    nested (only the outermost block talks to the libraries).

    The fits solve many small systems: a multi-threaded BLAS spends more time waking its
    threads than computing (bench/bench_blas.py measures the difference), and on a shared
    machine the threads fight the other processes."""
    depth = getattr(_BLAS, "depth", 0)
    if depth:
        _BLAS.depth = depth + 1
        try:
            yield
        finally:
            _BLAS.depth = depth
        return
    from threadpoolctl import threadpool_limits

    _BLAS.depth = 1
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        _BLAS.depth = 0


def model_function(renamed: dict[str, str] | None = None):
    """Decorate a public model function: BLAS on one thread while it fits, and old argument
    names (``renamed``: old -> new) still accepted with a DeprecationWarning."""
    renamed = renamed or {}

    def deco(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            for old, new in renamed.items():
                if old in kwargs:
                    if new in kwargs:
                        raise param_error(f.__name__, old, f"left out when '{new}' is given (it is '{new}'s old name)",
                                          kwargs[old])
                    warnings.warn(f"{f.__name__}: the '{old}' argument is now called '{new}'; '{old}' will be removed",
                                  DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            caught: list = []
            try:
                with single_threaded_blas(), warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    return f(*args, **kwargs)
            finally:
                # the fit's own warnings (separation, convergence, ...) point at the caller's
                # line, not at this wrapper; the caller's filters then apply
                for w in caught:
                    warnings.warn(w.message, w.category, stacklevel=2)

        wrapper.__wrapped__ = f
        return wrapper

    return deco
