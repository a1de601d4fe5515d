"""E-values for odds ratios (VanderWeele & Ding, Ann Intern Med 2017;167:268-274).

The E-value is the minimum strength of association, on the risk-ratio scale, that an
unmeasured confounder would need with both the exposure and the outcome to explain away an
observed association: ``E = RR + sqrt(RR (RR - 1))`` for ``RR >= 1`` (for ``RR < 1`` apply
it to ``1 / RR``). For the confidence interval it is computed at the limit closer to 1, and
it is 1 when the interval includes 1.

Odds ratios are first turned into risk ratios: with a rare outcome (under about 15% in
every stratum) ``RR ~ OR``; with a common outcome ``RR ~ sqrt(OR)`` (VanderWeele 2017's
square-root transformation), which is what this module does for ``rare=False``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from hospstudy.errors import param_error


@dataclass(frozen=True)
class EValue:
    """An E-value for one estimate: the point estimate and the confidence limit closer to 1."""

    estimate: float  # E-value of the point estimate
    ci: float  # E-value of the CI limit closer to 1 (1 when the CI crosses 1)
    rr: float  # the risk ratio the E-value was computed from
    rr_limit: float | None  # the RR at the CI limit used (None when the CI crosses 1)
    conversion: str  # 'OR ~ RR (rare outcome)' or 'RR ~ sqrt(OR) (common outcome)'

    def to_dict(self) -> dict:
        return asdict(self)


def _evalue_rr(rr: float) -> float:
    r = rr if rr >= 1 else 1.0 / rr
    return float(r + np.sqrt(r * (r - 1.0)))


def evalue(or_: float, lo: float | None = None, hi: float | None = None, rare: bool = True) -> EValue:
    """E-value of an odds ratio and its confidence interval.

    Parameters
    ----------
    or_ : float
        The odds ratio (> 0).
    lo, hi : float, optional
        Its confidence limits (``0 < lo <= or_ <= hi``); without them ``ci`` is NaN.
    rare : bool
        True when the outcome is rare (< 15%): the OR is taken as the RR. False: the RR is
        approximated by ``sqrt(OR)``.

    Returns
    -------
    EValue

    Examples
    --------
    The flagship cancer-center estimate, 30-day mortality (a rare outcome):

    >>> e = evalue(0.841, 0.709, 0.999, rare=True)
    >>> round(e.estimate, 3), round(e.ci, 3)
    (1.663, 1.033)
    """
    func = "evalue"
    if not isinstance(rare, (bool, np.bool_)):
        raise param_error(func, "rare", "True or False (is the outcome under about 15%?)", rare)
    vals = {"or_": or_, "lo": lo, "hi": hi}
    for name, v in vals.items():
        if v is None and name != "or_":
            continue
        if not isinstance(v, (int, float, np.floating, np.integer)) or not np.isfinite(v) or v <= 0:
            raise param_error(func, name, "a finite number > 0 (an odds ratio, not a log odds ratio)", v)
    if (lo is None) != (hi is None):
        raise param_error(func, "lo, hi", "both given or both None", (lo, hi))
    if lo is not None and not (lo <= or_ <= hi):
        raise param_error(func, "lo, hi", f"limits with lo <= or_ <= hi (or_ = {or_})", (lo, hi))

    def conv(v):
        return float(v) if rare else float(np.sqrt(v))

    rr = conv(or_)
    est = _evalue_rr(rr)
    conversion = "OR ~ RR (rare outcome)" if rare else "RR ~ sqrt(OR) (common outcome)"
    if lo is None:
        return EValue(est, float("nan"), rr, None, conversion)
    rlo, rhi = conv(lo), conv(hi)
    if rlo <= 1 <= rhi:
        return EValue(est, 1.0, rr, None, conversion)
    limit = rlo if rr > 1 else rhi
    return EValue(est, _evalue_rr(limit), rr, limit, conversion)


def add_evalues(tidy: pd.DataFrame, rare: bool = True, terms=None) -> pd.DataFrame:
    """A tidy table with E-value columns added (``evalue``, ``evalue_ci``, ``evalue_conversion``).

    Parameters
    ----------
    tidy : pandas.DataFrame
        From ``ModelResult.tidy()`` (needs ``term, exp_estimate, exp_conf_low, exp_conf_high``).
    rare : bool
        Whether the outcome is rare (see :func:`evalue`).
    terms : list of str, optional
        Terms to compute E-values for; default every term except the intercept. Other rows
        get NaN.

    Returns
    -------
    pandas.DataFrame
        A copy of ``tidy`` with the three columns.
    """
    need = {"term", "exp_estimate", "exp_conf_low", "exp_conf_high"}
    if not isinstance(tidy, pd.DataFrame) or not need <= set(tidy.columns):
        raise param_error("add_evalues", "tidy", f"a tidy DataFrame with columns {sorted(need)}",
                          list(getattr(tidy, "columns", [])))
    out = tidy.copy()
    if terms is None:
        terms = [t for t in out["term"] if t not in ("Intercept", "(Intercept)", "const")]
    missing = set(terms) - set(out["term"])
    if missing:
        raise param_error("add_evalues", "terms", f"terms of the table ({out['term'].tolist()})", sorted(missing))
    ev, evci = np.full(len(out), np.nan), np.full(len(out), np.nan)
    conv = np.full(len(out), None, dtype=object)
    for i, row in enumerate(out.itertuples(index=False)):
        if row.term not in terms:
            continue
        vals = (row.exp_estimate, row.exp_conf_low, row.exp_conf_high)
        if not all(np.isfinite(v) and v > 0 for v in vals):
            continue
        e = evalue(float(vals[0]), float(vals[1]), float(vals[2]), rare=rare)
        ev[i], evci[i], conv[i] = e.estimate, e.ci, e.conversion
    out["evalue"], out["evalue_ci"], out["evalue_conversion"] = ev, evci, conv
    return out


__all__ = ["EValue", "evalue", "add_evalues"]
