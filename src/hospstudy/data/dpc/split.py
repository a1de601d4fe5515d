"""Vectorised splitting of a block of UTF-8 text into lines and tab-separated fields (numpy).

No Python loop over lines: the positions of the line ends and tabs are found with numpy, each
line's field count from them, and a field of every well-formed line is cut out as an Arrow
string array (a gather of its bytes into one buffer) or read as fixed-width digits. Only the
lines that break the layout (rare) are looked at one by one, to describe them in the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

TAB, LF, SPACE, CR = 9, 10, 32, 13


@dataclass
class Block:
    """A block of lines split into fields; ``good`` lines have exactly ``nf`` fields."""

    a: np.ndarray  # the bytes
    starts: np.ndarray  # line start (byte), per line
    ends: np.ndarray  # line end (exclusive, before LF), per line
    nfields: np.ndarray  # fields per line
    good: np.ndarray  # bool per line
    fs: np.ndarray  # (n_good, len(cols)) field starts
    fe: np.ndarray  # (n_good, len(cols)) field ends (exclusive), spaces trimmed
    col: dict  # field (0-based) -> column of fs/fe

    @property
    def n(self) -> int:
        return len(self.starts)

    def line_text(self, i: int) -> str:
        return bytes(self.a[self.starts[i]:self.ends[i]]).decode("utf-8", "replace")

    def strings(self, k: int) -> pa.Array:
        """Field ``k`` (0-based) of the good lines as a string array."""
        j = self.col[k]
        return gather(self.a, self.fs[:, j], self.fe[:, j])

    def digits(self, k: int, width: int):
        """Field ``k`` of the good lines as integers where it is exactly ``width`` digits: (ok, value)."""
        j = self.col[k]
        return fixed_digits(self.a, self.fs[:, j], self.fe[:, j], width)

    def width(self, k: int) -> np.ndarray:
        j = self.col[k]
        return self.fe[:, j] - self.fs[:, j]


def split(data: bytes, nf: int, cols=None) -> Block:
    """Lines and fields of ``data``; only the fields ``cols`` (0-based; default all) are cut."""
    cols = list(range(nf)) if cols is None else list(cols)
    a = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(a == LF)
    ends = nl
    if len(a) and a[-1] != LF:
        ends = np.append(nl, len(a))
    starts = np.empty(len(ends), dtype=np.int64)
    if len(ends):
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    ends = ends.astype(np.int64)
    # a CR left before LF (mixed line ends) is not data
    if len(ends):
        cr = (ends > starts) & (a[np.maximum(ends - 1, 0)] == CR)
        ends = ends - cr
    tabs = np.flatnonzero(a == TAB)
    first = np.searchsorted(tabs, starts)
    ntab = np.searchsorted(tabs, ends) - first
    nfields = ntab + 1
    good = nfields == nf
    g_first = first[good]
    c = np.asarray(cols, dtype=np.int64)
    fs = np.empty((len(g_first), len(c)), dtype=np.int64)
    fe = np.empty((len(g_first), len(c)), dtype=np.int64)
    for j, k in enumerate(cols):
        fs[:, j] = starts[good] if k == 0 else tabs[g_first + (k - 1)] + 1
        fe[:, j] = ends[good] if k == nf - 1 else tabs[g_first + k]
    # trim spaces (fixed-width exports pad with them)
    for _ in range(64):
        m = (fe > fs) & (a[np.maximum(fe - 1, 0)] == SPACE)
        if not m.any():
            break
        fe = fe - m
    for _ in range(64):
        m = (fe > fs) & (a[np.minimum(fs, max(len(a) - 1, 0))] == SPACE)
        if not m.any():
            break
        fs = fs + m
    return Block(a, starts, ends, nfields, good, fs, fe, {k: j for j, k in enumerate(cols)})


def gather(a: np.ndarray, s: np.ndarray, e: np.ndarray) -> pa.Array:
    lens = (e - s).astype(np.int64)
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    total = int(offsets[-1])
    if total:
        idx = np.repeat(s - offsets[:-1], lens) + np.arange(total)
        buf = a[idx].tobytes()
    else:
        buf = b""
    return pa.Array.from_buffers(pa.large_string(), len(lens), [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(buf)]).cast(pa.string())


_POW = {w: 10 ** np.arange(w - 1, -1, -1, dtype=np.int64) for w in range(1, 19)}


def fixed_digits(a: np.ndarray, s: np.ndarray, e: np.ndarray, width: int):
    ok = (e - s) == width
    if len(a) == 0:
        return ok, np.zeros(len(s), np.int64)
    m = a[np.minimum(s[:, None] + np.arange(width), len(a) - 1)].astype(np.int64) - 48
    ok &= ((m >= 0) & (m <= 9)).all(axis=1)
    val = np.where(ok, (np.clip(m, 0, 9) * _POW[width]).sum(axis=1), 0)
    return ok, val


def ymd_days(ok: np.ndarray, v: np.ndarray):
    """yyyymmdd integers to days since 1970-01-01; ok false for impossible dates."""
    y, m, d = v // 10000, (v // 100) % 100, v % 100
    ok = ok & (y >= 1800) & (y <= 2200) & (m >= 1) & (m <= 12) & (d >= 1) & (d <= 31)
    months = np.where(ok, (y - 1970) * 12 + (m - 1), 0)
    first = months.astype("datetime64[M]").astype("datetime64[D]")
    day = first + np.where(ok, d - 1, 0).astype("timedelta64[D]")
    ok &= day.astype("datetime64[M]") == first.astype("datetime64[M]")
    return ok, day.astype(np.int64)
