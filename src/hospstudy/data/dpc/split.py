"""Split a block of raw lines into tab-separated fields, without a Python loop over lines.

Two readers give the same :class:`Block` (the lines of a block, which are well-formed, and the
fields the caller asked for, spaces trimmed):

* :func:`read_fields` — the usual one. Arrow's CSV parser (tab, no quoting) cuts the block's
  raw bytes into *binary* fields: CP932 can be split as bytes because its trail bytes are
  0x40-0xFC, so TAB, LF and CR never occur inside a character. Only the asked-for fields are
  kept, and only their non-ASCII values are decoded (each distinct value once), in the file's
  encoding; every other byte of the file is never decoded. Measured on 1,000,000 CP932 EF lines
  (190 MiB, 2026-12-06): Arrow's parse of the 10 fields 1.0 CPU s, with the checks and typing of
  :func:`hospstudy.data.dpc.ef.parse_chunk` 1.4-1.6 CPU s, against 4.5 CPU s for decoding every
  block to UTF-8, splitting it with numpy (:func:`split`) and typing it, as before.
* :func:`split` — numpy over UTF-8 text: LF positions and tab positions. It reads blocks that
  Arrow would number differently: Arrow also ends a line at a bare CR (a CR not followed by LF),
  so when its row count does not match the block's LF count, :func:`read_fields` returns None
  and the caller decodes the block and uses this reader.

A line ends at LF (a CR before it is not data); a last line without LF counts.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

TAB, LF, SPACE, CR = 9, 10, 32, 13


class Undecodable(Exception):
    """A field's bytes are not in the block's encoding: ``line`` is the line's index in the block."""

    def __init__(self, line: int, encoding: str):
        super().__init__(f"line {line}: not {encoding}")
        self.line, self.encoding = line, encoding


class Block:
    """The lines of a block split into fields: ``good`` lines have exactly the expected number of
    fields; for them, each asked-for field ``k`` (0-based) is a byte array and the start and end
    (exclusive, spaces trimmed) of the field on every good line."""

    n: int  # lines
    good: np.ndarray  # bool per line
    nfields: np.ndarray  # fields per line
    fields: dict  # k -> (bytes as uint8 array, starts, ends) over the good lines
    encoding: str  # what the values were decoded from ('utf-8' or 'cp932')

    def line_text(self, i: int) -> str:
        raise NotImplementedError

    def strings(self, k: int) -> pa.Array:
        """Field ``k`` of the good lines as a string array."""
        raise NotImplementedError

    def digits(self, k: int, width: int, value: bool = True):
        """Field ``k`` of the good lines as integers where it is exactly ``width`` digits: (ok, value)."""
        a, s, e = self.fields[k]
        return fixed_digits(a, s, e, width, value)

    def width(self, k: int) -> np.ndarray:
        _, s, e = self.fields[k]
        return e - s


class TextBlock(Block):
    """A block of UTF-8 text split by :func:`split`."""

    def __init__(self, a, starts, ends, nfields, good, fields):
        self.a, self.starts, self.ends = a, starts, ends
        self.n, self.nfields, self.good, self.fields = len(starts), nfields, good, fields
        self.encoding = "utf-8"

    def line_text(self, i: int) -> str:
        return bytes(self.a[self.starts[i]:self.ends[i]]).decode("utf-8", "replace")

    def strings(self, k: int) -> pa.Array:
        return gather(*self.fields[k])


def _trim(a: np.ndarray, s: np.ndarray, e: np.ndarray):
    """Starts and ends moved past leading and trailing spaces (fixed-width exports pad with them)."""
    if not len(a):
        return s, e
    last = len(a) - 1
    for _ in range(64):
        m = (e > s) & (a[np.maximum(e - 1, 0)] == SPACE)
        if not m.any():
            break
        e = e - m
    for _ in range(64):
        m = (e > s) & (a[np.minimum(s, last)] == SPACE)
        if not m.any():
            break
        s = s + m
    return s, e


def count_lines(a: np.ndarray) -> int:
    """Lines in the bytes ``a`` (a last line without LF counts). numpy, which lets other threads
    run meanwhile: ``bytes.count`` holds the GIL (a 16 MiB block: 5 ms, numpy 3 ms, 2026-12-06)."""
    return int(np.count_nonzero(a == LF)) + (len(a) > 0 and a[-1] != LF)


def line_bounds(a: np.ndarray):
    """Start and end (exclusive, before LF and a CR before it) of every line of ``a``."""
    nl = np.flatnonzero(a == LF)
    ends = nl
    if len(a) and a[-1] != LF:
        ends = np.append(nl, len(a))
    starts = np.empty(len(ends), dtype=np.int64)
    if len(ends):
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    ends = ends.astype(np.int64)
    if len(ends):
        ends = ends - ((ends > starts) & (a[np.maximum(ends - 1, 0)] == CR))
    return starts, ends


def split(data: bytes, nf: int, cols=None) -> TextBlock:
    """Lines and fields of UTF-8 ``data``; only the fields ``cols`` (0-based; default all) are cut."""
    cols = list(range(nf)) if cols is None else list(cols)
    a = np.frombuffer(data, dtype=np.uint8)
    starts, ends = line_bounds(a)
    tabs = np.flatnonzero(a == TAB)
    first = np.searchsorted(tabs, starts)
    ntab = np.searchsorted(tabs, ends) - first
    nfields = ntab + 1
    good = nfields == nf
    g_first = first[good]
    fields = {}
    for k in cols:
        s = starts[good] if k == 0 else tabs[g_first + (k - 1)] + 1
        e = ends[good] if k == nf - 1 else tabs[g_first + k]
        fields[k] = (a, *_trim(a, s, e))
    return TextBlock(a, starts, ends, nfields, good, fields)


def read_fields(data: bytes, nf: int, cols, encoding: str) -> "ArrowBlock | None":
    """Lines and fields ``cols`` of raw ``data`` cut by Arrow's CSV parser; None when a line has
    too few or too many fields, or Arrow's lines are not the block's LF-ended lines (a bare CR):
    the caller then uses :func:`split`. ``encoding``: 'cp932' (only the non-ASCII
    values of the fields read are decoded, so an undecodable byte elsewhere on a line passes),
    'utf-8' (the whole block must be UTF-8) or 'utf-8-or-cp932' (the whole block is UTF-8, or else
    CP932: a file detected as UTF-8 from its first bytes that is CP932 further on).
    Raises :class:`Undecodable`."""
    cols = sorted(cols)
    if cols[0] != 0:
        raise ValueError("read_fields needs field 0 (it tells blank lines)")
    asked = encoding
    if encoding != "cp932":
        encoding = _utf8_or(data, encoding)
    names = [f"f{k}" for k in range(nf)]
    a = np.frombuffer(data, dtype=np.uint8)
    n = count_lines(a)
    if not n:
        return None
    try:
        t = _arrow_csv(data, names, cols)
    except pa.ArrowInvalid:
        # a line with too few or too many fields: the numpy splitter describes it (Arrow's
        # invalid_row_handler hands it the row's text decoded as UTF-8, which fails on CP932)
        return None
    if t.num_rows != n:
        return None  # a bare CR: Arrow ended a line there
    nfields = np.full(n, nf, dtype=np.int64)
    good = np.ones(n, dtype=bool)
    arrays = {k: t.column(names[k]).combine_chunks() if t.column(names[k]).num_chunks != 1 else t.column(names[k]).chunk(0)
              for k in cols}
    blk = ArrowBlock(a, n, good, nfields, arrays, encoding, asked=asked)
    # A blank line is a row of empty fields to Arrow: lines whose first field is empty are
    # looked at as lines (their real field count); those that are not well-formed leave the
    # good lines.
    s0, e0 = blk.fields[cols[0]][1:]
    empty = np.flatnonzero(e0 == s0)
    if len(empty):
        gi = np.flatnonzero(good)
        drop = []
        for j in empty:
            i = gi[j]
            real = blk.raw_line(i).count(b"\t") + 1
            if real != nf:
                good[i], nfields[i] = False, real
                drop.append(j)
        if drop:
            keep = np.ones(len(gi), dtype=bool)
            keep[drop] = False
            idx = pa.array(np.flatnonzero(keep))
            blk = ArrowBlock(a, n, good, nfields, {k: arr.take(idx) for k, arr in arrays.items()}, encoding, blk._lines, asked)
    return blk


def _arrow_csv(data: bytes, names: list, cols: list) -> pa.Table:
    # one parse block (block_size), no threads: one chunk per column, rows in order
    return pcsv.read_csv(
        pa.py_buffer(data),
        read_options=pcsv.ReadOptions(column_names=names, use_threads=False, block_size=len(data) + 1),
        parse_options=pcsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False, double_quote=False,
                                        ignore_empty_lines=False, newlines_in_values=False),
        convert_options=pcsv.ConvertOptions(column_types={names[k]: pa.binary() for k in cols},
                                            include_columns=[names[k] for k in cols]))


def _utf8_or(data: bytes, encoding: str) -> str:
    """'utf-8' when ``data`` is valid UTF-8 (Arrow's validation: no decoded copy), else 'cp932'
    for 'utf-8-or-cp932'; raises :class:`Undecodable` for 'utf-8'."""
    try:
        offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64).tobytes())
        pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)]).cast(pa.large_string())
        return "utf-8"
    except pa.ArrowInvalid:
        pass
    if encoding == "utf-8":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Undecodable(data.count(b"\n", 0, e.start), "utf-8") from None
    return "cp932"


class ArrowBlock(Block):
    """A block of raw bytes split by :func:`read_fields`."""

    def __init__(self, a, n, good, nfields, arrays, encoding, lines=None, asked=None):
        self.a, self.n, self.good, self.nfields = a, n, good, nfields
        self.arrays = arrays
        self.fields, self.exact = {}, {}
        for k, arr in arrays.items():
            buf = arr.buffers()
            off = np.frombuffer(buf[1], dtype=np.int32)[arr.offset: arr.offset + len(arr) + 1].astype(np.int64)
            data = np.frombuffer(buf[2], dtype=np.uint8) if buf[2] is not None else np.zeros(0, np.uint8)
            s0, e0 = off[:-1], off[1:]
            s, e = _trim(data, s0, e0)
            self.fields[k] = (data, s, e)
            self.exact[k] = s is s0 and e is e0  # no value had a space to trim
        self.encoding, self.asked = encoding, asked or encoding
        self._lines = lines
        self._decoded: dict | None = None

    def raw_line(self, i: int) -> bytes:
        if self._lines is None:
            self._lines = line_bounds(self.a)
        s, e = self._lines
        return bytes(self.a[s[i]:e[i]])

    def line_text(self, i: int) -> str:
        raw = self.raw_line(i)
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError:
            return raw.decode("cp932" if self.encoding == "utf-8" else "utf-8", "replace")

    def _binary(self, k: int) -> pa.Array:
        return self.arrays[k] if self.exact[k] else gather(*self.fields[k], typ=pa.binary())

    def _non_ascii(self):
        """Per field with non-ASCII values: their positions and their distinct values."""
        if self._decoded is not None:
            return self._decoded
        out = {}
        for k in self.arrays:
            data, _, _ = self.fields[k]
            if not (len(data) and (data >= 0x80).any()):
                continue
            b = self._binary(k)
            mask = pc.invert(pc.string_is_ascii(b.view(pa.string())))
            sub = b.filter(mask)
            uniq = pc.unique(sub)
            out[k] = (mask, sub, uniq, uniq.to_pylist())
        self._decoded = out
        return out

    def strings(self, k: int) -> pa.Array:
        b = self._binary(k)
        na = self._non_ascii()
        if k not in na:
            return b.view(pa.string())
        mask, sub, uniq, vals = na[k]
        dec = []
        for v in vals:
            try:
                dec.append(v.decode(self.encoding))
            except UnicodeDecodeError:
                j = int(pc.index(sub, pa.scalar(v, pa.binary())).as_py())
                row = int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[j])
                raise Undecodable(int(np.flatnonzero(self.good)[row]), self.asked) from None
        repl = pa.array(dec, pa.string()).take(pc.index_in(sub, value_set=uniq))
        return pc.replace_with_mask(b.view(pa.string()), mask, repl)


def gather(a: np.ndarray, s: np.ndarray, e: np.ndarray, typ=pa.string()) -> pa.Array:
    lens = (e - s).astype(np.int64)
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    total = int(offsets[-1])
    if total:
        idx = np.repeat(s - offsets[:-1], lens) + np.arange(total)
        buf = a[idx].tobytes()
    else:
        buf = b""
    large = pa.large_string() if typ == pa.string() else pa.large_binary()
    return pa.Array.from_buffers(large, len(lens), [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(buf)]).cast(typ)


_POW = {w: 10 ** np.arange(w - 1, -1, -1, dtype=np.int64) for w in range(1, 19)}
# Eight ASCII digits in one little-endian 64-bit word (the first digit in the lowest byte): the
# check and the value by SWAR arithmetic (D. Lemire, "Fast float parsing in practice", 2021, on
# parse_eight_digits_unrolled), numpy over every value at once. 86,000 values (2026-12-06): 0.007-0.014
# µs each against 0.03-0.06 for the byte matrix times powers of ten; the same values (tested).
_U = np.uint64
_HIGH, _ZEROS, _SIXES, _THREES = _U(0xF0F0F0F0F0F0F0F0), _U(0x3030303030303030), _U(0x0606060606060606), _U(0x3333333333333333)
_LOW2, _MUL1, _MUL2 = _U(0x000000FF000000FF), _U(100 + (1000000 << 32)), _U(1 + (10000 << 32))


def _swar_digits(base: np.ndarray, n: int, width: int, step: int):
    """(ok, value) of ``n`` values of ``width`` (>= 8) bytes, one every ``step`` bytes of ``base``."""
    x = np.ndarray((n,), "<u8", buffer=base, strides=(step,))  # each value's first 8 bytes
    ok = ((x & _HIGH) | (((x + _SIXES) & _HIGH) >> _U(4))) == _THREES
    v = x - _ZEROS
    v = v * _U(10) + (v >> _U(8))
    v = ((((v & _LOW2) * _MUL1) + (((v >> _U(16)) & _LOW2) * _MUL2)) >> _U(32)).astype(np.int64)
    for k in range(8, width):
        d = base[k::step] - np.uint8(48)
        ok &= d <= 9
        v = v * 10 + d
    return ok, np.where(ok, v, 0)


def fixed_digits(a: np.ndarray, s: np.ndarray, e: np.ndarray, width: int, value: bool = True):
    """(ok, value): ok where the field is exactly ``width`` ASCII digits; value 0 elsewhere (not
    computed unless ``value``)."""
    ok = (e - s) == width
    n = len(s)
    if len(a) == 0 or n == 0:
        return ok, np.zeros(n, np.int64)
    step = int(s[1] - s[0]) if n > 1 else width
    if ok.all() and step >= width and (n == 1 or (np.diff(s) == step).all()):
        # the values at a constant stride, end to end (a column of Arrow's reader) or a column of
        # rows gathered beforehand (ef.scan_keys): a view of the bytes, no gather (1,000,000 EF
        # lines: the four key and date checks 1.2 -> 0.2 CPU s)
        base = a[s[0]: s[0] + (n - 1) * step + width]
    else:
        # gathered end to end (the bytes past a shorter value are read, and it is not ok anyway)
        idx = s[:, None] + np.arange(width)
        if s.max() + width > len(a):
            np.minimum(idx, len(a) - 1, out=idx)
        base, step = a[idx].reshape(-1), width
    if width >= 8:
        # (gathered: 45,467 values of 9, 10 and 8 digits 22.7-26.3 -> 15.9-18.5 ms, 2026-12-07)
        swar_ok, val = _swar_digits(base, n, width, step)
        ok &= swar_ok
        return ok, (np.where(ok, val, 0) if value else None)
    m = np.lib.stride_tricks.as_strided(base, (n, width), (step, 1)) - np.uint8(48)
    ok &= (m <= 9).all(axis=1)
    if not value:
        return ok, None
    val = np.where(ok, m.astype(np.int64) @ _POW[width], 0)
    return ok, val


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int32)


def ymd_days(ok: np.ndarray, v: np.ndarray):
    """yyyymmdd integers to days since 1970-01-01 (0 where not ok); ok false for impossible dates
    and years outside 1800-2200. Integer arithmetic on int32 (the days-from-civil algorithm of
    H. Hinnant, "chrono-Compatible Low-Level Date Algorithms"): 86,000 dates (2026-12-06) 0.028 µs
    each against 0.052 through numpy's datetime64 conversions; the same days (tested)."""
    v = v.astype(np.int32)
    y, md = np.divmod(v, 10000)
    m, d = np.divmod(md, 100)
    ok = ok & (y >= 1800) & (y <= 2200) & (m >= 1) & (m <= 12) & (d >= 1)
    leap = ((y & 3) == 0) & ((y % 100 != 0) | (y % 400 == 0))
    ok &= d <= _DAYS_IN_MONTH[np.where(ok, m, 0)] + (leap & (m == 2))
    yy = y - (m <= 2)  # years from March: February last
    era, yoe = np.divmod(yy, 400)
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + (yoe >> 2) - yoe // 100 + doy - 719468
    return ok, np.where(ok, days, 0).astype(np.int64)


def ymd_fiscal_year(v: np.ndarray) -> np.ndarray:
    """The Japanese fiscal year (April to March) of yyyymmdd integers (as schema.fiscal_year)."""
    return v // 10000 - ((v // 100) % 100 < 4)
