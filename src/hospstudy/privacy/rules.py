"""Statistical disclosure control: the rules every stage applies before a number leaves OUT/private/.

The DPC/NDB publication rules: any count of patients or hospitals between 1 and
``threshold - 1`` (default 10) is shown as ``<10``, and it must not be recoverable from
totals. Three tools:

- :func:`suppress_table` — primary suppression of small cells in a two-way table whose row and
  column totals are published, then secondary (complementary) suppression until every row
  and column that holds a suppressed cell holds at least two, whose sum is not itself a
  small count.
- :func:`suppress_chain` — the same for an attrition chain (remaining counts after each step,
  whose differences are the removed counts).
- :func:`safe_attrition` — an attrition table with both chains suppressed;
- :func:`coarsen_cif_steps` — the times at which a cumulative incidence curve may be published;
- :func:`sanitize_json` — a JSON document with small counts and identifiers removed.

The checker that scans a finished output folder is :mod:`hospstudy.privacy.checker`.

Zeros are not suppressed: a zero discloses nothing about an individual.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import numpy as np
import pandas as pd

from hospstudy.errors import InputError, param_error

DEFAULT_THRESHOLD = 10
#: Column / key names that identify a patient, an admission or a hospital.
IDENTIFIER_NAMES = frozenset({"patient_id", "admission_id", "hospital_id"})

# Names of count fields: n, events, deaths, patients, admissions, hospitals, clusters, count,
# observed..., also as prefix/suffix (n_treated, events_cc, count_2012, admissions_removed).
_COUNT_WORDS = r"(n|count|counts|events|deaths|died|patients|admissions|hospitals|clusters|observed|cases|removed|surgeries)"
_COUNT_NAME = re.compile(rf"^(?:{_COUNT_WORDS}(?:_.*)?|.*_{_COUNT_WORDS})$", re.IGNORECASE)


def is_count_name(name: str) -> bool:
    """True when a column or key name denotes a count of patients, admissions or hospitals."""
    return bool(_COUNT_NAME.match(str(name).strip()))


def is_small(value: Any, threshold: int = DEFAULT_THRESHOLD) -> bool:
    """True for an integer count in 1 .. threshold-1 (bools and non-integers are not counts)."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (int, np.integer)):
        return 0 < int(value) < threshold
    if isinstance(value, (float, np.floating)):
        return float(value).is_integer() and 0 < value < threshold
    return False


def fmt_count(value: Any, threshold: int = DEFAULT_THRESHOLD, suppressed: bool = False) -> str:
    """A count as published: ``<10`` when small, ``—`` when hidden by secondary suppression
    (writing ``<10`` there would misstate its size; tables footnote the dash), else the number
    with thousands separators."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if is_small(value, threshold):
        return f"<{threshold}"
    if suppressed:
        return "—"
    return f"{int(value):,}"


# --------------------------------------------------------------------------------------------
# suppression
# --------------------------------------------------------------------------------------------
def _complement(counts: np.ndarray, mask: np.ndarray, idx: np.ndarray) -> int | None:
    """Pick the cell of one line to suppress next: the smallest non-zero unsuppressed cell,
    else an unsuppressed zero (its being zero is then no longer visible)."""
    free = [i for i in idx if not mask[i]]
    if not free:
        return None
    nonzero = [i for i in free if counts[i] > 0]
    pool = nonzero or free
    return min(pool, key=lambda i: (counts[i], i))


def suppress_table(counts, threshold: int = DEFAULT_THRESHOLD, margins: tuple[bool, bool] = (True, True)) -> np.ndarray:
    """Cells of a two-way table of counts that must not be published.

    Parameters
    ----------
    counts : array_like of int, shape (r, c)
        The table, without its margins. A 1-D array is a single row.
    threshold : int
        Counts in ``1 .. threshold-1`` are suppressed (primary suppression).
    margins : (bool, bool)
        Whether row totals and column totals are published. Only published totals allow
        recovery, so secondary suppression works along those lines only.

    Returns
    -------
    numpy.ndarray of bool, shape (r, c)
        True for every cell to hide. In each row (when row totals are published) and column
        (when column totals are) that holds a hidden cell, at least two cells are hidden and
        their sum is 0 or at least ``threshold``, so no hidden cell is recoverable by
        subtraction and no hidden group is itself a small count.

    Examples
    --------
    >>> suppress_table([[120, 4], [80, 30]]).astype(int).tolist()
    [[1, 1], [1, 1]]
    """
    a = np.atleast_2d(np.asarray(counts, dtype=np.int64))
    if (a < 0).any():
        raise ValueError("suppress_table: counts must be non-negative")
    mask = (a > 0) & (a < threshold)
    r, c = a.shape
    flat = a.ravel()
    fmask = mask.ravel()
    lines: list[np.ndarray] = []
    if margins[0] and c > 1:
        lines += [np.arange(i * c, (i + 1) * c) for i in range(r)]
    if margins[1] and r > 1:
        lines += [np.arange(j, r * c, c) for j in range(c)]
    changed = True
    while changed:
        changed = False
        for idx in lines:
            hidden = fmask[idx]
            n_hidden = int(hidden.sum())
            if n_hidden == 0:
                continue
            total_hidden = int(flat[idx][hidden].sum())
            if n_hidden >= 2 and not (0 < total_hidden < threshold):
                continue
            pick = _complement(flat, fmask, idx)
            if pick is None:
                continue  # the whole line is hidden already
            fmask[pick] = True
            changed = True
    return fmask.reshape(r, c)


def suppress_chain(remaining: Iterable[int], threshold: int = DEFAULT_THRESHOLD) -> tuple[list[bool], list[bool]]:
    """Suppression for an attrition chain.

    ``remaining[k]`` is the count left after step ``k`` (``remaining[0]`` the starting total);
    ``removed[k] = remaining[k-1] - remaining[k]``. A removed count in ``1 .. threshold-1`` is
    hidden; since adjacent remaining counts reveal it, hidden removed counts are grouped with
    neighbouring steps until each group holds at least two steps and removes 0 or at least
    ``threshold``, and the remaining counts inside a group are hidden too. Only the group's
    total is then recoverable.

    Returns
    -------
    (hide_remaining, hide_removed) : two lists of bool, one per step (``hide_removed[0]`` is
    always False: step 0 removes nothing).
    """
    rem = [int(x) for x in remaining]
    n = len(rem)
    removed = [0] + [rem[k - 1] - rem[k] for k in range(1, n)]
    hide_removed = [False] + [0 < removed[k] < threshold for k in range(1, n)]
    hide_remaining = [False] * n
    if n <= 1:
        return hide_remaining, hide_removed
    k = 1
    while k < n:
        if not hide_removed[k]:
            k += 1
            continue
        run_hi = k
        while run_hi + 1 < n and hide_removed[run_hi + 1]:
            run_hi += 1
        # the narrowest window of steps around this run that holds two or more steps and
        # removes 0 or at least `threshold` (ties: the later window, keeping early counts)
        best = None
        for lo in range(1, k + 1):
            for hi in range(run_hi, n):
                total = sum(removed[lo:hi + 1])
                if hi > lo and not (0 < total < threshold):
                    key = (hi - lo, -lo)
                    if best is None or key < best[0]:
                        best = (key, lo, hi)
                    break  # wider windows from this lo only get worse
        if best is None:
            # the whole chain removes fewer than `threshold`: hide every removed count and the
            # remaining counts after the first step; the final total bounds them from above
            lo, hi = 1, n - 1
            hide_remaining[n - 1] = True
        else:
            _, lo, hi = best
        for j in range(lo, hi + 1):
            hide_removed[j] = True
        for j in range(lo, hi):
            hide_remaining[j] = True
        k = hi + 1
    return hide_remaining, hide_removed


# --------------------------------------------------------------------------------------------
# json sanitising
# --------------------------------------------------------------------------------------------
def sanitize_json(obj: Any, threshold: int = DEFAULT_THRESHOLD, _key: str | None = None) -> Any:
    """A copy of a JSON-like object safe to publish: identifier keys dropped, small counts under
    count-named keys replaced by ``"<10"``, and per-hospital records (lists of dicts with a
    count field) with a small count dropped altogether."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if str(k) in IDENTIFIER_NAMES:
                continue
            if is_count_name(k) and is_small(v, threshold):
                out[k] = f"<{threshold}"
            else:
                out[k] = sanitize_json(v, threshold, str(k))
        step = obj.get("min_events_per_step")
        if isinstance(step, (int, float)) and step < threshold:
            # cumulative incidence curves grouped with a smaller threshold than this one: their
            # steps cannot be regrouped without the counts, so they are withheld
            out["curves"], out["other_curves"] = [], []
            out["withheld"] = "curves grouped with a smaller disclosure threshold; re-run the analyses with this one"
        return out
    if isinstance(obj, list):
        items = []
        for v in obj:
            if isinstance(v, dict) and "hospital_id" in v:
                if any(is_count_name(k) and is_small(x, threshold) for k, x in v.items()):
                    continue
            items.append(sanitize_json(v, threshold, _key))
        if _key is not None and is_count_name(_key):
            return [f"<{threshold}" if is_small(x, threshold) else x for x in items]
        return items
    return obj


# --------------------------------------------------------------------------------------------
# attrition and curves
# --------------------------------------------------------------------------------------------
def safe_attrition(attrition: pd.DataFrame, threshold: int = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """The attrition table with every count disclosure-safe (strings), for ``OUT/attrition.csv``.

    Each chain (admissions, patients and, when counted, hospitals) is suppressed with :func:`suppress_chain`.
    """
    a = attrition.sort_values("step").reset_index(drop=True)
    out = a[["step", "name", "description"]].copy()
    units = ("admissions", "patients") + (("hospitals",) if "hospitals" in a.columns else ())
    for unit in units:
        rem = a[unit].astype("int64").tolist()
        hide_rem, hide_rmv = suppress_chain(rem, threshold)
        removed = [0] + [rem[k - 1] - rem[k] for k in range(1, len(rem))]
        out[unit] = [fmt_count(v, threshold, h) for v, h in zip(rem, hide_rem)]
        out[f"{unit}_removed"] = ["" if k == 0 else fmt_count(v, threshold, h) for k, (v, h) in enumerate(zip(removed, hide_rmv))]
    cols = ["step", "name", "description", "admissions", "patients", "admissions_removed", "patients_removed"]
    return out[cols + (["hospitals", "hospitals_removed"] if "hospitals" in units else [])]


def coarsen_cif_steps(n_risk, n_events, threshold: int = 10) -> np.ndarray:
    """Indices of the times at which a cumulative incidence curve may be published.

    Disclosure control of a step curve (the rule OpenSAFELY and ONS apply to Kaplan–Meier and
    cumulative incidence curves): a step must not show fewer than ``threshold`` events. Walking
    the times in order, a time is published when the events of every cause since the last
    published time (or since the origin) reach ``threshold``; the walk stops at the first time
    with fewer than ``threshold`` patients at risk, so the curve ends there (or earlier, at the
    last published time: events after it that never reach ``threshold`` are not shown). The
    caller publishes the exact estimate at each returned time and the origin (time 0,
    incidence 0).

    Parameters
    ----------
    n_risk : array_like of int, one per distinct time in increasing order
        Patients at risk just before each time (as :func:`cumulative_incidence` reports it).
    n_events : array_like of int, same length
        Events at each time, all causes together (event of interest plus competing events);
        0 at a time with censorings only.
    threshold : int
        Smallest number of events in a published step and of patients at risk at a published time.

    Returns
    -------
    numpy.ndarray of int
        Positions into the inputs, increasing. Between two consecutive positions (and from the
        origin to the first) at least ``threshold`` events occurred, and every position has at
        least ``threshold`` patients at risk. Empty when fewer than ``threshold`` events occur
        while ``threshold`` or more are at risk.

    Examples
    --------
    >>> coarsen_cif_steps([40, 35, 30, 22, 12, 9], [5, 4, 6, 10, 2, 3], threshold=10).tolist()
    [2, 3]
    """
    n_risk = np.asarray(n_risk, dtype=float)
    n_events = np.asarray(n_events, dtype=float)
    if n_risk.shape != n_events.shape or n_risk.ndim != 1:
        raise InputError("coarsen_cif_steps: n_risk and n_events must be 1-D arrays of the same length")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or threshold < 1:
        raise param_error("coarsen_cif_steps", "threshold", "an integer >= 1", threshold)
    if np.any(np.diff(n_risk) > 0):
        raise InputError("coarsen_cif_steps: n_risk must not increase (one value per time, in time order)")
    keep = []
    since = 0.0
    for j in range(len(n_risk)):
        if n_risk[j] < threshold:
            break
        since += n_events[j]
        if since >= threshold:
            keep.append(j)
            since = 0.0
    return np.asarray(keep, dtype=int)


def coarsen_at_risk(n_at_risk, threshold: int = DEFAULT_THRESHOLD) -> list:
    """Numbers at risk safe to publish under a curve: a count is shown when it is at least
    ``threshold`` and at least ``threshold`` below the last count shown (or equal to it), so
    that no difference between two shown counts (patients who left in between) is small.
    Counts below ``threshold`` are kept (the publisher prints them as ``<10``); the others
    are None (hidden).

    Examples
    --------
    >>> coarsen_at_risk([502, 497, 426, 285, 15, 12, 2], 10)
    [502, None, 426, 285, 15, None, 2]
    """
    out, last = [], None
    for n in (int(x) for x in n_at_risk):
        if n < threshold:
            out.append(n)
        elif last is None or n == last or last - n >= threshold:
            out.append(n)
            last = n
        else:
            out.append(None)
    return out
