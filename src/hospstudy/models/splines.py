"""Volume terms: restricted cubic splines, quartiles, and the odds-ratio curve against a
reference volume.

:func:`rcs` is the restricted cubic spline basis of Hmisc/rms (``rcspline.eval`` with
``inclx=TRUE, norm=2``) with Harrell's default knot placement, and it works inside model
formulas: ``death_30d ~ rcs(volume, 4) + age`` keeps the knots found on the fitting data,
so predictions on new data use the same basis. :func:`volume_curve` turns a fitted model
into a table of odds ratios against a reference volume with pointwise confidence intervals.
"""

from __future__ import annotations

import ast
import re

import numpy as np
import pandas as pd
from formulaic.transforms import stateful_transform
from scipy import stats

from hospstudy.errors import ModelError, param_error

#: Harrell's default knot quantiles (rms/Hmisc), by number of knots.
HARRELL_QUANTILES: dict[int, tuple[float, ...]] = {
    3: (0.10, 0.50, 0.90),
    4: (0.05, 0.35, 0.65, 0.95),
    5: (0.05, 0.275, 0.50, 0.725, 0.95),
    6: tuple(np.linspace(0.05, 0.95, 6)),
    7: tuple(np.linspace(0.025, 0.975, 7)),
}


def _quantile7(x: np.ndarray, p) -> np.ndarray:
    """R's default quantile (type 7), which is numpy's 'linear' method."""
    return np.quantile(x, p, method="linear")


def harrell_knots(x, nk: int = 4, fractied: float = 0.05) -> np.ndarray:
    """Knot locations as ``Hmisc::rcspline.eval`` chooses them by default.

    Parameters
    ----------
    x : array-like
        The variable (missing values are ignored).
    nk : int
        Number of knots, 3 to 7.
    fractied : float
        Hmisc's rule for heavy ties at an end: when the lowest (highest) value holds at
        least this fraction of the observations and no interior value does, the first (last)
        knot is the next distinct value and the other knots are placed on the rest.

    Returns
    -------
    numpy.ndarray
        Sorted unique knots. With ``nk - 2`` or fewer distinct values beyond the extremes,
        the interior distinct values are used (as Hmisc does, with its warning).

    Notes
    -----
    The quantiles are R's type 7 at :data:`HARRELL_QUANTILES` (outer quantiles .10/.90 for
    3 knots, .05/.95 for 4–6, .025/.975 for 7). With fewer than 100 observations the outer
    knots move to the 5th smallest and 5th largest value.

    Examples
    --------
    >>> harrell_knots(np.arange(1, 1001), 3)
    array([100.9, 500.5, 900.1])
    """
    if nk not in HARRELL_QUANTILES:
        raise param_error("harrell_knots", "nk", "an integer from 3 to 7", nk)
    xx = np.asarray(x, dtype=float)
    xx = xx[~np.isnan(xx)]
    n = xx.size
    if n < 6:
        raise ModelError(f"rcs: knots need at least 6 non-missing values of x; got {n}.")
    xu = np.unique(xx)
    if xu.size - 2 <= nk:
        knots = xu[1:-1]
    else:
        outer = 0.1 if nk == 3 else (0.025 if nk > 6 else 0.05)
        nke = nk
        first: list[float] = []
        last: list[float] = []
        over_first = over_last = False
        if 0 < fractied < 1:
            vals, counts = np.unique(xx, return_counts=True)
            f = counts / n
            if f[1:-1].max() < fractied:
                if f[0] >= fractied:
                    first = [xx[xx > xx.min()].min()]
                    xx = xx[xx > first[0]]
                    nke -= 1
                    over_first = True
                if f[-1] >= fractied:
                    last = [xx[xx < xx.max()].max()]
                    xx = xx[xx < last[0]]
                    nke -= 1
                    over_last = True
        if nke == 1:
            knots = np.array([np.median(xx)])
        elif xu.size <= nke:
            knots = xu
        else:
            p = np.linspace(0.5, 1 - outer, nke) if nke == 2 else np.linspace(outer, 1 - outer, nke)
            knots = _quantile7(xx, p)
            if np.unique(knots).size < min(nke, 3):
                knots = _quantile7(xx, np.linspace(outer, 1 - outer, 2 * nke))
                if first and np.unique(knots).size < 3:
                    mid = (first[0] + last[0]) / 2 if last else np.median(xx)
                    knots = np.sort(np.r_[first, mid, last if last else _quantile7(xx, 1 - outer)])
                if np.unique(knots).size < 3:
                    raise ModelError(
                        "rcs: fewer than 3 distinct knots; the variable has too few distinct "
                        "values for a spline (use quartiles or a linear term)."
                    )
            if xx.size < 100:
                xs = np.sort(xx)
                knots = np.array(knots, dtype=float)
                if not over_first:
                    knots[0] = xs[4]
                if not over_last:
                    knots[nke - 1] = xs[-5]
        knots = np.r_[first, knots, last]
    knots = np.unique(np.asarray(knots, dtype=float))
    if knots.size < 3:
        raise ModelError(
            f"rcs: fewer than 3 distinct knots ({knots.tolist()}); the variable has too few "
            "distinct values for a spline (use quartiles or a linear term)."
        )
    return knots


def rcs_basis(x, knots) -> np.ndarray:
    """Restricted cubic spline basis at given knots: ``[x, s_1, ..., s_{k-2}]``.

    Harrell's truncated-power form scaled by ``(t_k - t_1)^{2/3}`` (``norm=2`` in
    ``Hmisc::rcspline.eval``): linear beyond the outer knots, cubic between them.

    Parameters
    ----------
    x : array-like
        Values to evaluate (NaN stays NaN).
    knots : array-like
        At least 3 increasing knots.

    Returns
    -------
    numpy.ndarray
        Shape ``(len(x), len(knots) - 1)``; the first column is ``x`` itself.
    """
    x = np.asarray(x, dtype=float)
    t = np.asarray(knots, dtype=float)
    k = t.size
    if k < 3 or np.any(np.diff(t) <= 0):
        raise param_error("rcs_basis", "knots", "at least 3 strictly increasing values", t.tolist())
    kd = (t[-1] - t[0]) ** (2.0 / 3.0)
    out = np.empty((x.size, k - 1))
    out[:, 0] = x

    def pos3(v):
        return np.where(np.isnan(v), np.nan, np.maximum(v, 0.0)) ** 3

    tk, tk1 = t[-1], t[-2]
    for j in range(k - 2):
        out[:, j + 1] = (
            pos3((x - t[j]) / kd)
            + ((tk1 - t[j]) * pos3((x - tk) / kd) - (tk - t[j]) * pos3((x - tk1) / kd)) / (tk - tk1)
        )
    return out


@stateful_transform
def rcs(x, knots=4, _state=None, _spec=None):
    """Restricted cubic spline of ``x`` for model formulas: ``y ~ rcs(volume, 4)``.

    ``knots`` is a number of knots (3–7, placed by :func:`harrell_knots` on the data the
    model is fitted to) or an explicit sequence of knot values. The knots found when the
    model is fitted are kept in the formula's state, so a fitted model evaluates the same
    basis on new data. As with ``rms::rcs`` in a model frame, the knots are placed on every
    non-missing value of ``x`` in the data, before rows with other missing variables are
    dropped; pass explicit knots to fix them across models. Columns are named ``rcs(x, k)[x]``, ``rcs(x, k)[x']``,
    ``rcs(x, k)[x'']`` … as in rms.

    Examples
    --------
    >>> import pandas as pd
    >>> from hospstudy.models.base import design
    >>> df = pd.DataFrame({"y": [0, 1] * 50, "v": np.arange(100.0)})
    >>> design("y ~ rcs(v, 3)", df).terms
    ['Intercept', 'rcs(v, 3)[v]', "rcs(v, 3)[v']"]
    """
    values = np.asarray(x, dtype=float)
    if "knots" not in _state:
        if np.ndim(knots) == 0:
            if isinstance(knots, bool) or not float(knots).is_integer():
                raise param_error("rcs", "knots", "a number of knots (3-7) or a sequence of knot values", knots)
            kn = harrell_knots(values, int(knots))
        else:
            kn = np.unique(np.asarray(knots, dtype=float))
            if kn.size < 3:
                raise param_error("rcs", "knots", "at least 3 distinct knot values", list(knots))
        _state["knots"] = [float(v) for v in kn]
    basis = rcs_basis(values, _state["knots"])
    name = getattr(x, "name", None) or "x"
    return {f"{name}" + "'" * j: basis[:, j] for j in range(basis.shape[1])}


def formula_knots(result, var: str) -> list[float] | None:
    """The knots of ``rcs(var, ...)`` in a fitted model's formula, or None."""
    spec = result.extra.get("model_spec")
    if spec is None:
        return None
    for key, st in spec.transform_state.items():
        if key.startswith("rcs(") and key[4:].split(",")[0].strip() == var and "knots" in st:
            return list(st["knots"])
    return None


def volume_curve(result, var: str, grid=None, reference: float | None = None,
                 conf_level: float = 0.95) -> pd.DataFrame:
    """Odds ratio against a reference value of ``var`` along a grid, with pointwise CI.

    Works for any way ``var`` enters the formula (linear, ``rcs(var, k)``, polynomial,
    ``I(var / 50)``): the design rows at the grid and at the reference are built from the
    fitted model's formula with every other variable held at the same values, so only the
    columns involving ``var`` differ. With an interaction, the curve is the one at the
    other variables' values in the first row of the fitting data (stated in ``note``).

    Parameters
    ----------
    result : ModelResult
        A fitted model from :func:`hospstudy.models.glm.logit`, ``gee_logit`` or
        ``weighted_logit`` (they keep the formula state in ``result.extra``).
    var : str
        The variable, e.g. ``"volume"``.
    grid : array-like, optional
        Values of ``var``; default 100 points from the 1st to the 99th percentile.
    reference : float, optional
        The reference value (OR = 1); default the median of ``var`` in the fitting data.
    conf_level : float
        Confidence level of the pointwise interval.

    Returns
    -------
    pandas.DataFrame
        Columns ``value, log_or, std_error, or, conf_low, conf_high`` and the attributes
        ``attrs['reference']``, ``attrs['knots']`` (when ``var`` has a spline).
    """
    extra = getattr(result, "extra", None)
    if extra is None or not hasattr(result, "terms"):
        raise param_error("volume_curve", "result", "a fitted hospstudy model result", type(result).__name__)
    spec = extra.get("model_spec")
    template = extra.get("template")
    if spec is None or template is None:
        return _curve_from_terms(result, var, grid, reference, conf_level)
    xvals = extra.get("variables", {}).get(var)
    if var not in template.columns:
        raise param_error("volume_curve", "var", f"a variable of the model formula ({sorted(template.columns)})", var)
    if xvals is None:
        xvals = np.array([template[var].iloc[0]], dtype=float)
    if grid is None:
        lo, hi = np.quantile(xvals, [0.01, 0.99])
        grid = np.linspace(lo, hi, 100)
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
        raise param_error("volume_curve", "grid", "a non-empty 1-d sequence of finite numbers", grid)
    if reference is None:
        reference = float(np.median(xvals))
    from hospstudy.models.base import formula_context

    rows = template.loc[template.index.repeat(grid.size + 1)].reset_index(drop=True)
    rows[var] = np.r_[float(reference), grid]
    mm = spec.get_model_matrix(rows, context=formula_context())
    X = np.asarray(mm, dtype=float)
    if X.shape[0] != grid.size + 1:
        raise ModelError("volume_curve: the model formula dropped grid rows (missing values in the template row).")
    cols = list(mm.columns)
    idx = [cols.index(t) for t in result.terms]
    D = X[1:, idx] - X[0, idx]
    beta = np.asarray(result.estimate, dtype=float)
    cov = np.asarray(result.cov, dtype=float)
    est = D @ beta
    se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", D, cov, D), 0, None))
    q = stats.norm.ppf(0.5 + conf_level / 2)
    out = pd.DataFrame({
        "value": grid, "log_or": est, "std_error": se, "or": np.exp(est),
        "conf_low": np.exp(est - q * se), "conf_high": np.exp(est + q * se),
    })
    out.attrs["reference"] = float(reference)
    out.attrs["conf_level"] = conf_level
    kn = formula_knots(result, var)
    if kn is not None:
        out.attrs["knots"] = kn
    out.attrs["scale"] = result.scale
    return out


_RCS_TERM = re.compile(r"^rcs\(\s*(?P<var>[^,]+?)\s*,\s*(?P<knots>\[.*\])\s*\)\[(?P<col>[^\]]*)\]$")


def _curve_from_terms(result, var, grid, reference, conf_level) -> pd.DataFrame:
    """volume_curve for results that keep no formula state (e.g. ``mixed_logit``): ``var``
    must enter linearly (term ``var``) and/or as ``rcs(var, [explicit knots])``."""
    if grid is None or reference is None:
        raise param_error("volume_curve", "grid/reference",
                          "given explicitly for a result without formula state (e.g. mixed_logit)", (grid, reference))
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
        raise param_error("volume_curve", "grid", "a non-empty 1-d sequence of finite numbers", grid)
    values = np.r_[float(reference), grid]
    X = np.zeros((values.size, len(result.terms)))
    knots_seen = None
    for j, t in enumerate(result.terms):
        if t == var:
            X[:, j] = values
            continue
        m = _RCS_TERM.match(t)
        if m and m["var"] == var:
            knots = [float(k) for k in ast.literal_eval(m["knots"])]
            col = m["col"].count("'")
            X[:, j] = rcs_basis(values, knots)[:, col]
            knots_seen = knots
    if not X.any():
        raise param_error("volume_curve", "var",
                          f"a variable entering the model as '{var}' or 'rcs({var}, [knots])' (terms: {result.terms})", var)
    D = X[1:] - X[0]
    beta = np.nan_to_num(np.asarray(result.estimate, dtype=float))
    cov = np.nan_to_num(np.asarray(result.cov, dtype=float))
    est = D @ beta
    se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", D, cov, D), 0, None))
    q = stats.norm.ppf(0.5 + conf_level / 2)
    out = pd.DataFrame({"value": grid, "log_or": est, "std_error": se, "or": np.exp(est),
                        "conf_low": np.exp(est - q * se), "conf_high": np.exp(est + q * se)})
    out.attrs.update(reference=float(reference), conf_level=conf_level, scale=result.scale)
    if knots_seen is not None:
        out.attrs["knots"] = knots_seen
    return out


def quartiles(x, labels: str = "volume", decimals: int = 0) -> pd.DataFrame:
    """Quartile groups with their cut points stated.

    Cuts are R type-7 quartiles; a value equal to a cut falls in the lower group
    (intervals closed on the right, the first one closed on both sides). When ties make two
    cuts equal, fewer groups result and the labels say so.

    Parameters
    ----------
    x : array-like
        Values (NaN stays missing).
    labels : str
        Name used in the labels, e.g. ``"volume"`` gives ``"Q1 (volume 3–41)"``.
    decimals : int
        Decimals in the printed cut points.

    Returns
    -------
    pandas.DataFrame
        One row per input value: ``quartile`` (Int64, 1–4), ``label`` (str), with
        ``attrs['cuts']`` the five cut points (min, Q1, median, Q3, max).

    Examples
    --------
    >>> quartiles([1, 2, 3, 4, 5, 6, 7, 8])["quartile"].tolist()
    [1, 1, 2, 2, 3, 3, 4, 4]
    """
    v = pd.to_numeric(pd.Series(np.asarray(x, dtype=float)), errors="coerce")
    ok = v.notna().to_numpy()
    if ok.sum() < 4:
        raise param_error("quartiles", "x", "at least 4 non-missing numbers", int(ok.sum()))
    cuts = _quantile7(v[ok].to_numpy(), [0, 0.25, 0.5, 0.75, 1.0])
    inner = np.unique(cuts[1:4])
    q = np.full(v.size, -1, dtype=int)
    q[ok] = np.searchsorted(inner, v[ok].to_numpy(), side="left") + 1
    edges = np.r_[cuts[0], inner, cuts[4]]
    fmt = f"{{:.{decimals}f}}"
    names = []
    for g in range(1, edges.size):
        lo, hi = edges[g - 1], edges[g]
        names.append(f"Q{g} ({labels} {fmt.format(lo)}\u2013{fmt.format(hi)})" if g == 1
                     else f"Q{g} ({labels} >{fmt.format(lo)}\u2013{fmt.format(hi)})")
    out = pd.DataFrame({
        "quartile": pd.array(np.where(q > 0, q, 0), dtype="Int64"),
        "label": [names[g - 1] if g > 0 else None for g in q],
    })
    out.loc[~ok, "quartile"] = pd.NA
    out.attrs["cuts"] = [float(c) for c in cuts]
    out.attrs["labels"] = names
    return out


__all__ = ["HARRELL_QUANTILES", "harrell_knots", "rcs_basis", "rcs", "volume_curve", "quartiles", "formula_knots"]
