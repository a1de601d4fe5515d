"""The two readers of raw DPC blocks give the same lines and fields (src/hospstudy/data/dpc/split.py).

Arrow's CSV reader on binary fields (:func:`split.read_fields`, the usual path) against the numpy
splitter over the block decoded to UTF-8 (:func:`split.split`, the reference and the fallback):
random lines with non-ASCII values in the fields read (CP932 and UTF-8), padded values, blank and
whitespace lines, short and long lines (these send the block to the numpy splitter), LF and CRLF,
a last line with or without its line end, and bare CRs (which Arrow takes for a line end: the
block must then go to the numpy splitter too).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hospstudy.data.dpc import rawfiles as R
from hospstudy.data.dpc import split as S

NF, COLS = 5, [0, 2, 4]
VALUES = ["123456789", " 45 ", "", "ｲ", "転移性胸椎腫瘍", "K0821ｲ", "Ｋ０４６１", "a b", "20160401", "  "]


def _line(draw_kind, vals):
    if draw_kind == "good":
        return "\t".join(vals[:NF])
    if draw_kind == "short":
        return "\t".join(vals[:3])
    if draw_kind == "long":
        return "\t".join(vals[:NF] + ["x"])
    return {"blank": "", "spaces": "   ", "tabs": "\t" * (NF - 1), "cr": vals[0] + "\r" + "\t".join(vals[1:NF])}[draw_kind]


lines_st = st.lists(
    st.tuples(st.sampled_from(["good"] * 6 + ["short", "long", "blank", "spaces", "tabs"]),
              st.lists(st.sampled_from(VALUES), min_size=NF, max_size=NF), st.sampled_from(["\n", "\r\n"])),
    min_size=1, max_size=40)


def _block(lines, last_eol: bool, encoding: str) -> bytes:
    text = "".join(_line(k, v) + eol for k, v, eol in lines)
    if not last_eol:
        text = text.rstrip("\r\n") if lines[-1][0] != "blank" else text
    return text.encode(encoding)


def _same(fast: S.Block, ref: S.Block):
    assert fast.n == ref.n
    assert np.array_equal(fast.good, ref.good)
    assert np.array_equal(fast.nfields, ref.nfields)
    for k in COLS:
        assert fast.strings(k).to_pylist() == ref.strings(k).to_pylist(), k
        ascii_ = np.array([v.isascii() for v in ref.strings(k).to_pylist()], dtype=bool)
        assert np.array_equal(fast.width(k)[ascii_], ref.width(k)[ascii_])  # bytes: CP932 and UTF-8 differ
        assert np.array_equal(fast.width(k) == 0, ref.width(k) == 0)
        ok_f, v_f = fast.digits(k, 9)
        ok_r, v_r = ref.digits(k, 9)
        assert np.array_equal(ok_f, ok_r) and np.array_equal(v_f, v_r)
    for i in np.flatnonzero(~ref.good):
        assert fast.line_text(i) == ref.line_text(i)


@settings(max_examples=60, deadline=None)
@given(lines=lines_st, last_eol=st.booleans(), encoding=st.sampled_from(["cp932", "utf-8"]))
def test_arrow_reader_matches_the_numpy_splitter(lines, last_eol, encoding):
    data = _block(lines, last_eol, encoding)
    ref = S.split(data.decode(encoding).encode("utf-8"), NF, COLS)
    fast = S.read_fields(data, NF, COLS, encoding)
    if any(k in ("short", "long", "spaces") for k, _, _ in lines):
        assert fast is None  # a line of the wrong field count: the numpy splitter describes it
        fast = R.read_block(data, NF, COLS, encoding)
    else:
        assert isinstance(fast, S.ArrowBlock)  # blank lines and empty fields stay on Arrow's path
    _same(fast, ref)
    assert fast.encoding == encoding


@settings(max_examples=30, deadline=None)
@given(lines=lines_st, at=st.integers(0, 39), encoding=st.sampled_from(["cp932", "utf-8"]))
def test_a_bare_cr_sends_the_block_to_the_numpy_splitter(lines, at, encoding):
    k, v, eol = lines[at % len(lines)]
    lines[at % len(lines)] = ("cr", v, eol)
    data = _block(lines, True, encoding)
    assert S.read_fields(data, NF, COLS, encoding) is None  # Arrow would end a line at the CR
    blk = R.read_block(data, NF, COLS, encoding)
    assert isinstance(blk, S.TextBlock) and blk.n == data.count(b"\n")
    _same(blk, S.split(data.decode(encoding).encode("utf-8"), NF, COLS))


def test_a_utf8_detected_block_that_is_cp932_is_read_as_cp932():
    data = "123456789\t\t転移\t\tK0821ｲ\n".encode("cp932")
    blk = S.read_fields(data, NF, COLS, "utf-8-or-cp932")
    assert blk.encoding == "cp932" and blk.strings(2).to_pylist() == ["転移"] and blk.strings(4).to_pylist() == ["K0821ｲ"]
    blk = S.read_fields("123456789\t\t転移\t\tx\n".encode("utf-8"), NF, COLS, "utf-8-or-cp932")
    assert blk.encoding == "utf-8" and blk.strings(2).to_pylist() == ["転移"]


def test_undecodable_values_name_their_line():
    bad = b"123456789\t\tok\t\tx\n123456789\t\t\x81\x20\t\tx\n"  # 0x81 0x20: a lead byte without its trail byte
    blk = S.read_fields(bad, NF, COLS, "cp932")
    with pytest.raises(S.Undecodable) as e:
        blk.strings(2)
    assert e.value.line == 1
    with pytest.raises(S.Undecodable) as e:
        S.read_fields(bad, NF, COLS, "utf-8")
    assert e.value.line == 1
    # a byte that is not CP932 in a field that is not read passes: those bytes are never decoded
    assert S.read_fields(bad, NF, [0, 4], "cp932").strings(4).to_pylist() == ["x", "x"]


_DIGITS = st.text(alphabet="0123456789", min_size=0, max_size=11)
_NOT_QUITE = st.sampled_from([b"", b"/", b":", b" ", b"a", b"\x00", b"\xff", "０".encode("cp932")])  # next to '0'-'9', others


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10), st.lists(st.tuples(_DIGITS, _NOT_QUITE, st.integers(0, 12)), min_size=1, max_size=40),
       st.booleans(), st.integers(0, 12))
def test_fixed_digits_match_python(width, fields, end_to_end, gap):
    """Values of ``width`` ASCII digits, at a constant stride in one buffer (end to end, a column
    of Arrow's reader, or ``gap`` bytes apart, a column of gathered rows: read in place, SWAR for
    width >= 8) or scattered; some broken by a byte that is not a digit."""
    vals = []
    for digits, bad, at in fields:
        v = ((digits * 3)[:width].rjust(width, "7") if end_to_end else digits).encode()
        if bad and at < len(v):
            v = v[:at] + bad + v[at + 1:]
        vals.append(v)
    if end_to_end:
        vals = [v[:width].ljust(width, b"1") for v in vals]
    sep = b"\t" * gap if end_to_end else b""
    buf = b"xy" + sep.join(vals) + b"z"
    lens = np.array([len(v) for v in vals])
    s = 2 + np.concatenate([[0], np.cumsum(lens + len(sep))[:-1]])
    ok, val = S.fixed_digits(np.frombuffer(buf, np.uint8), s, s + lens, width)
    for i, v in enumerate(vals):
        want = len(v) == width and all(48 <= c <= 57 for c in v)
        assert ok[i] == want, (v, width)
        assert val[i] == (int(v) if want else 0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 99_999_999), min_size=1, max_size=50))
def test_ymd_days_match_python_dates(values):
    import datetime as dt

    v = np.array(values + [20000229, 19000229, 20240229, 20230229, 18000101, 22001231, 17991231, 22010101, 20161231])
    ok, days = S.ymd_days(np.ones(len(v), bool), v)
    for x, o, d in zip(v.tolist(), ok.tolist(), days.tolist()):
        try:
            want = (dt.date(x // 10000, x // 100 % 100, x % 100) - dt.date(1970, 1, 1)).days if 1800 <= x // 10000 <= 2200 else None
        except ValueError:
            want = None
        assert (o, d) == ((True, want) if want is not None else (False, 0)), x
