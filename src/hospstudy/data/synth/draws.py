"""Small vectorised building blocks shared by the generators: categorical draws, ADL strings,
logistic intercepts solved to a target, and the yearly calibration curves."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from hospstudy.data.schema import ADL_MAX_LEVEL, WALKING_INDEX
from hospstudy.data.synth import arrowutil as au

_ADL_MAX = np.array(ADL_MAX_LEVEL, dtype=np.int64)


def expit(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def choice(rng: np.random.Generator, table: dict, n: int) -> np.ndarray:
    """Indices into ``list(table)`` drawn with probabilities proportional to the values."""
    p = np.array([v if not isinstance(v, dict) else v["share"] for v in table.values()], dtype=float)
    return rng.choice(len(p), n, p=p / p.sum())


def pick(rng: np.random.Generator, table: dict, n: int) -> pa.Array:
    """Keys of ``table`` (a {code: weight} dict) drawn by weight, as strings."""
    return au.vocab_take(list(table), choice(rng, table, n))


def adl_strings(rng: np.random.Generator, walking: np.ndarray, null_mask: np.ndarray, p_unknown: float = 0.004) -> pa.Array:
    """DPC Form 1 ADL strings (10 digits) whose walking digit is ``walking`` (0-3); the other
    items follow walking with noise; each digit is '9' (unknown) with ``p_unknown``."""
    n = len(walking)
    base = (np.asarray(walking, float) / 3.0)[:, None] * _ADL_MAX[None, :]
    levels = np.clip(np.rint(base + rng.normal(0.0, 0.55, (n, 10))), 0, _ADL_MAX[None, :]).astype(np.int64)
    levels[:, WALKING_INDEX] = walking
    mat = (48 + levels).astype(np.uint8)
    unknown = rng.random((n, 10)) < p_unknown
    mat[unknown] = ord("9")
    return au.with_nulls(au.fixed_width_strings(mat), null_mask)


def solve_intercept(eta: np.ndarray, target: float, weights: np.ndarray | None = None) -> float:
    """The intercept a with mean(expit(a + eta)) = target (weighted), by safeguarded Newton."""
    if len(eta) == 0:
        return float(np.log(target / (1 - target)))
    w = np.ones_like(eta) if weights is None else weights
    lo, hi = -40.0, 40.0
    a = float(np.log(target / (1 - target)) - np.average(eta, weights=w))
    for _ in range(100):
        p = expit(a + eta)
        f = np.average(p, weights=w) - target
        if abs(f) < 1e-12:
            break
        if f > 0:
            hi = a
        else:
            lo = a
        d = np.average(p * (1 - p), weights=w)
        step = a - f / d if d > 1e-14 else 0.5 * (lo + hi)
        a = step if lo < step < hi else 0.5 * (lo + hi)
    return a


def curve_exponent(first: float, last: float, overall: float, weights: np.ndarray, t: np.ndarray) -> float:
    """Exponent p of v(t) = first - (first - last) t^p whose weighted mean over the years is
    ``overall`` (the published overall figure lies off the straight line between the published
    first and last years because later years hold more patients). Clamped to [0.05, 20]."""
    if first == last:
        return 1.0
    q = (first - overall) / (first - last)
    w = weights / weights.sum()

    def f(logp):
        return float(np.sum(w * t ** np.exp(logp))) - q

    lo, hi = np.log(0.05), np.log(20.0)
    if f(lo) < 0:
        return 0.05
    if f(hi) > 0:
        return 20.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
    return float(np.exp(0.5 * (lo + hi)))


def scramble(numbers: np.ndarray, modulus: int = 10**11) -> np.ndarray:
    """A bijection of [0, 10^11) that makes sequential numbers look like pseudonyms:
    x -> (x k + c) mod 10^11 with k odd and not a multiple of 5 (so invertible)."""
    k, c = 7_919_000_003, 1_234_567
    x = np.asarray(numbers, dtype=np.int64) % modulus
    hi, lo = x >> 20, x & ((1 << 20) - 1)
    # (hi 2^20 + lo) k mod m without int64 overflow: every product stays below 2^53.
    t = (hi * k) % modulus
    t = (t * (1 << 10)) % modulus
    t = (t * (1 << 10)) % modulus
    return (t + (lo * k) % modulus + c) % modulus
