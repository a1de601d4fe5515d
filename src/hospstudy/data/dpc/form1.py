"""Form 1 (様式1) → admissions, diagnoses, procedures.

Staging (:func:`parse_chunk`, one block of lines at a time, in the reading threads) checks each
line where it is read: its own reasons (blank, header, short or long line, a key that is not
9/10 digits, an admission date that is not a date, a ward-level form), then, as an item of its
stay, the fiscal year, the facility (:class:`Facilities`), the payload code and the payload's own
rules (:func:`_items`), and stages the values typed. :func:`build` then works on the staged
table as a whole in DuckDB: duplicate items, one stay per whole-stay form (統括診療情報番号 0),
and the three tables. Every line ends with exactly one reason (NULL = imported);
:mod:`hospstudy.data.dpc.report` counts them.

Manual pages: layout p14.20 / p17.19; A000010-A000030 p14.21-22 / p17.21; A001010 p14.23 /
p17.22; A006010-A006050 p14.23 / p17.23-24; A007010, ADL0010/0020 p14.24 / p17.25; JCS0010
p14.24 / p17.26 (p14 = FY2014 edition, p17 = FY2017 edition, as transcribed in open-dpc-jp).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hospstudy.data.dpc import layouts as L
from hospstudy.data.dpc import split as S
from hospstudy.data.schema import ADL_MAX_LEVEL, ICD10_PATTERN, KCODE_PATTERN

_F = L.FORM1_FIELDS


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _inlist(values) -> str:
    return ", ".join(_q(v) for v in values)


# Full-width digits, letters and dashes that hand-typed codes sometimes carry.
_FW = "０１２３４５６７８９ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ－ー‐．"
_HW = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ---."
_FW_TABLE = str.maketrans(_FW, _HW)
KCODE_EXTRACT = "^(?P<k>" + KCODE_PATTERN[1:-1].replace("(-", "(?:-") + ")"  # the K-code at the start of a code


def norm_text(arr: pa.Array, drop: str = "") -> pa.Array:
    """Codes as compared: upper-cased, half-width, no spaces (nor the characters ``drop``).
    ASCII values by Arrow; the others (full-width digits, letters and dashes that hand-typed
    codes sometimes carry: ``ｋ１４２２`` → ``K1422``) one distinct value at a time in Python."""
    for c in " " + drop:
        arr = pc.replace_substring(arr, c, "")
    ascii_ = pc.string_is_ascii(arr)
    out = pc.ascii_upper(arr)
    if not pc.all(ascii_).as_py():
        mask = pc.invert(ascii_)
        sub = arr.filter(mask)
        uniq = pc.unique(sub)
        fixed = pa.array([v.upper().translate(_FW_TABLE).replace(" ", "").replace("\u3000", "") for v in uniq.to_pylist()],
                         pa.string())
        out = pc.replace_with_mask(out, mask, fixed.take(pc.index_in(sub, value_set=uniq)))
    return out


def _extract(arr: pa.Array, regex: str) -> pa.Array:
    """The first group of ``regex`` (a named group) in each value; '' where it does not match (as
    DuckDB's regexp_extract)."""
    return pc.fill_null(pc.struct_field(pc.extract_regex(arr, regex), [0]), "")


def kcode(arr: pa.Array) -> pa.Array:
    """The data model's K-code from a fee-schedule code as written (``K0821ｲ`` → ``K0821``);
    '' when it does not start like a K-code (Form 1's A007010 and EF's 解釈番号 alike)."""
    return _extract(norm_text(arr), KCODE_EXTRACT)


def adl_regex() -> str:
    return "^" + "".join(f"[0-{m}9]" for m in ADL_MAX_LEVEL) + "$"


_HEADER_WORDS = ("施設", "facility")


def is_header(text: str, line_no: int) -> bool:
    """A header line: field 1 is not a 施設コード (9 digits), and it is the file's first line or
    names 施設 / facility (the same rule for Form 1 and EF)."""
    first = text.split("\t", 1)[0].strip(" ")
    if len(first) == 9 and first.isascii() and first.isdigit():
        return False
    return line_no == 1 or any(w in text.lower() for w in _HEADER_WORDS)


def key_fields(alias: str = "") -> tuple[str, str, str]:
    """SQL: a staged line's 施設コード, データ識別番号 and 入院年月日 as written (zeros kept), from
    the integers and the date they are staged as (Form 1 and EF alike)."""
    a = f"{alias}." if alias else ""
    return (f"lpad(CAST({a}fac AS VARCHAR), 9, '0')", f"lpad(CAST({a}pid AS VARCHAR), 10, '0')",
            f"strftime({a}admit_date, '%Y%m%d')")


def key_text(alias: str = "") -> str:
    """SQL: a staged line's stay key as the admission_id text (施設コード-データ識別番号-入院年月日)."""
    return " || '-' || ".join(key_fields(alias))


def key_detail(fac_ok: bool, facility_code: str, data_id: str) -> str:
    """The detail of a line whose stay key is not digits (Form 1 and EF)."""
    return (f"施設コード {facility_code} is not 9 digits" if not fac_ok
            else f"データ識別番号 {data_id} is not 10 digits")


# The fields read (0-based): 回数管理番号, バージョン and payload 4 are used by no table;
# 統括診療情報番号 only to tell a ward-level form. Each line is checked where it is read (the
# reading threads: :func:`parse_chunk`) and staged as what the build needs: the stay key as
# integers and a date, the payloads typed (dates, numbers, normalised codes, flags), the few
# texts the tables keep, and the line's reason. Checking the items in SQL over the staged text
# (a table of ~25 columns per line) was half of the Form 1 build.
COLS = sorted(_F.index(name) for name in _F if name not in ("kaisu", "version", "p4"))
# payload codes whose item occurs once per stay (others are numbered by 連番: a duplicate is the same 連番)
SINGLE = ("A000010", "A000020", "A000030", "A001010", "ADL0010", "ADL0020", "JCS0010",
          "A006010", "A006020", "A006030", "A006031")
# the staged columns besides the key, file_id and line_no (their DuckDB types)
ITEM_COLUMNS = {
    "code": "VARCHAR", "seq": "VARCHAR", "p2": "VARCHAR", "p9": "VARCHAR",
    "fy": "SMALLINT", "hospital_id": "INTEGER",
    "birth_date": "DATE", "partial_birth": "BOOLEAN", "d1": "DATE", "norm_code": "VARCHAR",
    "n2": "DOUBLE", "n3": "DOUBLE", "jcs": "SMALLINT", "emergency": "BOOLEAN", "ambulance": "BOOLEAN",
    "death_outcome": "BOOLEAN", "suspected": "BOOLEAN", "spinal": "TINYINT",
    # item: the line passed its own checks (it is an item of its stay); reason: the line's own
    # reason, else its reason as an item (NULL: none); one column for both (at 4M Form 1 lines
    # the work table nears DuckDB's memory limit)
    "ikey": "INTEGER", "item": "BOOLEAN", "reason": "VARCHAR", "detail": "VARCHAR",
}
# spinal_level: not a Form 1 item; derived from the disease name (payload 9) of a confirmed C79.5
# diagnosis when it names the spine's region: the first that matches (staged as its number, 1-5);
# an admission whose diagnoses name several regions -> multiple
SPINAL_WORDS = {"multiple": ("多発",), "cervical": ("頚椎", "頸椎"), "thoracic": ("胸椎",), "lumbar": ("腰椎",),
                "sacral": ("仙骨", "仙椎")}
# An item's reasons (the rules of :func:`_items`)
ITEM_REASONS = ("outside_fiscal_years", "unknown_facility", "unknown_payload_code", "payload_not_used", "bad_date", "bad_code",
                "stay_not_discharged")
# A number (A001010 height and weight; EF 使用量): decimal digits, an optional sign and point
NUMBER_REGEX = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"


def numbers(txt: pa.Array, typ: pa.DataType, fill: str) -> tuple[np.ndarray, np.ndarray]:
    """(good, value) of text that must be a number (:data:`NUMBER_REGEX`); ``fill`` read where it
    is not. Digits only (most values: Arrow's ascii_is_decimal, 0.002 µs a value) skip the regex
    (0.022 µs a value, 2026-12-06)."""
    good = pc.ascii_is_decimal(txt).to_numpy(zero_copy_only=False)
    other = np.flatnonzero(~good)
    if len(other):
        good[other] = pc.match_substring_regex(txt.take(pa.array(other)), NUMBER_REGEX).to_numpy(zero_copy_only=False)
    src = txt if good.all() else pc.if_else(pa.array(good), txt, pa.scalar(fill))
    return good, pc.cast(src, typ).to_numpy(zero_copy_only=False)


@dataclass(frozen=True)
class Facilities:
    """The facilities file as the reading threads look it up: (施設コード, fiscal year) ->
    hospital_id, and the fiscal years imported."""

    keys: np.ndarray  # int64, sorted: 施設コード * 10^4 + fiscal year
    hospital_id: np.ndarray  # int64, aligned with keys
    fy_lo: int = 0
    fy_hi: int = 9999

    @classmethod
    def load(cls, con, fiscal_years: tuple[int, int] | None) -> "Facilities":
        t = con.execute("SELECT fac::BIGINT * 10000 + fiscal_year AS k, hospital_id FROM fac ORDER BY k").to_arrow_table()
        lo, hi = fiscal_years or (0, 9999)
        return cls(t.column(0).to_numpy(), t.column(1).to_numpy().astype(np.int64), lo, hi)

    def find(self, fac: np.ndarray, fy: np.ndarray) -> np.ndarray:
        """hospital_id of each (fac, fy); -1 where the file has no row."""
        if not len(self.keys):
            return np.full(len(fac), -1, np.int64)
        k = fac.astype(np.int64) * 10000 + fy
        j = np.minimum(np.searchsorted(self.keys, k), len(self.keys) - 1)
        return np.where(self.keys[j] == k, self.hospital_id[j], -1)


def _in(arr: pa.Array, values) -> np.ndarray:
    return pc.is_in(arr, value_set=pa.array(list(values), pa.string())).to_numpy(zero_copy_only=False)


def _full(arr: pa.Array, regex: str) -> np.ndarray:
    """Where the whole value matches ``regex`` (RE2, as DuckDB's regexp_full_match)."""
    return pc.match_substring_regex(arr, f"^(?:{regex.strip('^$')})$").to_numpy(zero_copy_only=False)


def _days_col(days: np.ndarray, ok: np.ndarray) -> pa.Array:
    return pa.array(days.astype(np.int32), mask=~ok).cast(pa.date32())


def _scatter(n: int, parts: list) -> pa.Array:
    """A string array of ``n`` rows from ``(rows, values)`` parts; null elsewhere."""
    parts = [(r, v) for r, v in parts if len(r)]
    if not parts:
        return pa.nulls(n, pa.string())
    rows = np.concatenate([r for r, _ in parts])
    values = pa.concat_arrays([v.cast(pa.string()) for _, v in parts])
    pos = np.full(n, -1, np.int64)
    pos[rows] = np.arange(len(rows))
    return values.take(pa.array(pos, mask=pos < 0))


def _text(*parts) -> pa.Array:
    """Strings and string arrays joined element-wise."""
    return pc.binary_join_element_wise(*[pa.scalar(p) if isinstance(p, str) else p for p in parts], "")


def _items(b: S.Block, cols: dict, fac: np.ndarray, v_ad: np.ndarray, d_ad: np.ndarray, facilities: Facilities,
           item: np.ndarray):
    """The items of the good lines (``item``: the lines that passed the line checks): their
    values typed, each with its item reason (the first rule it breaks) and that reason's detail.
    Each payload's rules and values are computed on its own lines only (taken out of the block's
    columns). Returns the staged columns (over the good lines) besides the key and the line's
    own reason."""
    g = len(d_ad)
    code = cols["code"]
    # the payload code as an index into PAYLOADS (-1: unknown)
    codes = list(L.PAYLOADS)
    ci = pc.fill_null(pc.index_in(code, value_set=pa.array(codes, pa.string())), -1).to_numpy(zero_copy_only=False)
    idx = {c: i for i, c in enumerate(codes)}

    def rows(*names) -> np.ndarray:
        return np.flatnonzero(item & np.isin(ci, [idx[c] for c in names]))

    used = np.isin(ci, [idx[c] for c, p in L.PAYLOADS.items() if p.used])
    # The item's key within its stay as an integer, for finding duplicates (build): the payload
    # code and, unless the item occurs once per stay, its 連番 when written plainly (1-6 digits, no
    # leading zero); null for unknown codes (never imported) and other 連番 (compared as text)
    seq, w_seq = cols["seq"], b.width(_F.index("seq"))
    plain = (pc.ascii_is_decimal(seq).to_numpy(zero_copy_only=False) & (w_seq <= 6)
             & ((w_seq == 1) | ~pc.starts_with(seq, "0").to_numpy(zero_copy_only=False)))
    single = np.isin(ci, [idx[c] for c in SINGLE])
    seq_no = pc.cast(pc.if_else(pa.array(plain & ~single), seq, pa.scalar("0")), pa.int32()).to_numpy(zero_copy_only=False)
    ikey = ci.astype(np.int64) * 1_000_000 + seq_no
    year, fy = v_ad // 10000, S.ymd_fiscal_year(v_ad)
    hid = facilities.find(fac, fy)
    reasons = np.full(g, -1, np.int8)  # index into ITEM_REASONS; set where not yet set (first rule wins)

    def fail(r: np.ndarray, bad: np.ndarray, why: str) -> None:
        r = r[bad & (reasons[r] < 0)]
        reasons[r] = ITEM_REASONS.index(why)

    fail(np.flatnonzero(item), ((fy < facilities.fy_lo) | (fy > facilities.fy_hi))[item], "outside_fiscal_years")
    fail(np.flatnonzero(item), (hid < 0)[item], "unknown_facility")
    fail(np.flatnonzero(item), (ci < 0)[item], "unknown_payload_code")
    fail(np.flatnonzero(item), ~used[item], "payload_not_used")

    def field(name: str, r: np.ndarray) -> pa.Array:
        return cols[name].take(pa.array(r))

    def digits8(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """payload 1 of lines ``r``: (ok, value) where it is 8 digits."""
        a, s, e = b.fields[_F.index("p1")]
        return S.fixed_digits(a, s[r], e[r], 8)

    def date(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """payload 1 of lines ``r`` as (ok, days) where it is a yyyymmdd date."""
        return S.ymd_days(*digits8(r))

    out_days = {"birth_date": (np.zeros(g, np.int64), np.zeros(g, bool)), "d1": (np.zeros(g, np.int64), np.zeros(g, bool))}
    flags = {k: np.zeros(g, bool) for k in ("partial_birth", "emergency", "ambulance", "death_outcome", "suspected")}
    nums = {k: (np.zeros(g), np.zeros(g, bool)) for k in ("n2", "n3")}
    jcs = (np.zeros(g, np.int16), np.zeros(g, bool))
    spinal = (np.zeros(g, np.int8), np.zeros(g, bool))
    norm_parts = []
    # A000010: payload 1 生年月日 (month 00 -> 1 July, day 00 -> the 15th: unknown), payload 2 性別
    r = rows("A000010")
    if len(r):
        ok, v = digits8(r)
        by, bm, bd = v // 10000, (v // 100) % 100, v % 100
        flags["partial_birth"][r] = ok & ((bm == 0) | (bd == 0))
        bd = np.where(bm == 0, 1, np.where(bd == 0, 15, bd))
        ok, birth = S.ymd_days(ok & (by > 0), by * 10000 + np.where(bm == 0, 7, bm) * 100 + bd)
        out_days["birth_date"][0][r], out_days["birth_date"][1][r] = birth, ok
        age_years = year[r] - by
        fail(r, ~ok | (birth > d_ad[r]) | (age_years > 121), "bad_date")
        fail(r, ~_in(field("p2", r), L.SEX), "bad_code")
    # A000020: payload 5 予定・救急医療入院, payload 6 救急車
    r = rows("A000020")
    if len(r):
        p5, p6 = field("p5", r), field("p6", r)
        fail(r, ~(_full(p5, "[1-3][0-9]{2}") & _full(p6, "[0-9]")), "bad_code")
        flags["emergency"][r] = ~pc.starts_with(p5, L.SCHEDULED_PREFIX).to_numpy(zero_copy_only=False)
        flags["ambulance"][r] = pc.equal(p6, L.AMBULANCE_YES).to_numpy(zero_copy_only=False)
    # A000030: payload 1 退院年月日, payload 2 退院先, payload 3 転帰
    r = rows("A000030")
    if len(r):
        p2 = field("p2", r)
        ok, d1 = date(r)
        out_days["d1"][0][r], out_days["d1"][1][r] = d1, ok
        fail(r, _in(p2, L.NOT_YET_DISCHARGED), "stay_not_discharged")
        fail(r, ~ok | (d1 < d_ad[r]), "bad_date")
        fail(r, ~_in(p2, L.DISCHARGE_DEST), "bad_code")
        flags["death_outcome"][r] = _in(field("p3", r), L.DEATH_OUTCOMES)
    # diagnoses: payload 2 ICD-10 (normalised), payloads 5-8 修飾語 (8002: suspected)
    r = rows(*L.DIAGNOSIS_ROLE)
    if len(r):
        icd = norm_text(field("p2", r), drop=".")
        fail(r, ~_full(icd, ICD10_PATTERN), "bad_code")
        norm_parts.append((r, icd))
        flags["suspected"][r] = np.logical_or.reduce(
            [pc.equal(field(p, r), L.SUSPECTED_MODIFIER).to_numpy(zero_copy_only=False) for p in ("p5", "p6", "p7", "p8")])
        # the spine's region named by the disease name (payload 9) of a confirmed C79.5 diagnosis
        c795 = r[pc.equal(icd, "C795").to_numpy(zero_copy_only=False) & ~flags["suspected"][r]]
        if len(c795):
            name = field("p9", c795)
            named = [np.logical_or.reduce([pc.match_substring(name, w).to_numpy(zero_copy_only=False) for w in words])
                     for words in SPINAL_WORDS.values()]
            lv = np.select(named, np.arange(1, len(SPINAL_WORDS) + 1), 0)
            spinal[0][c795], spinal[1][c795] = lv, lv > 0
    # A007010: payload 1 手術日, payload 2 点数表コード (a K-code)
    r = rows("A007010")
    if len(r):
        ok, d1 = date(r)
        out_days["d1"][0][r], out_days["d1"][1][r] = d1, ok
        k = kcode(field("p2", r))
        fail(r, ~ok, "bad_date")
        fail(r, pc.equal(k, "").to_numpy(zero_copy_only=False), "bad_code")
        norm_parts.append((r, k))
    # A001010: payload 2 身長, payload 3 体重 (numbers; empty: not recorded)
    r = rows("A001010")
    if len(r):
        fine = np.ones(len(r), bool)
        for name, p in (("n2", "p2"), ("n3", "p3")):
            good, val = numbers(field(p, r), pa.float64(), "0")
            fine &= good | (b.width(_F.index(p))[r] == 0)
            nums[name][0][r], nums[name][1][r] = val, good
        fail(r, ~fine, "bad_code")
    r = rows("ADL0010", "ADL0020")
    if len(r):
        fail(r, ~_full(field("p2", r), adl_regex()), "bad_code")
    r = rows("JCS0010")
    if len(r):
        txt = _extract(field("p2", r), "^(?P<j>[0-9]+)")
        ok = _in(txt, L.JCS_VALUES)
        fail(r, ~ok, "bad_code")
        jcs[0][r] = pc.cast(pc.if_else(pa.array(ok), txt, pa.scalar("0")), pa.int16()).to_numpy(zero_copy_only=False)
        jcs[1][r] = ok

    has = reasons >= 0
    ireason = pa.DictionaryArray.from_arrays(pa.array(reasons, mask=~has), pa.array(ITEM_REASONS)).cast(pa.string())
    # each item reason's detail, by the first group its line is in
    bad = np.flatnonzero(has)
    parts = []
    if len(bad):
        take = pa.array(bad)
        t = {k: cols[k].take(take) for k in ("code", "p1", "p2", "p3", "p5", "p6")}
        fy_txt = pa.array(fy[bad]).cast(pa.string())
        fac_txt = pc.utf8_lpad(pa.array(fac[bad].astype(np.int64)).cast(pa.string()), 9, "0")
        cb = ci[bad]
        groups = (
            ((fy[bad] < facilities.fy_lo) | (fy[bad] > facilities.fy_hi), lambda s: _text("fiscal year ", fy_txt.take(s))),
            (hid[bad] < 0, lambda s: _text("施設コード ", fac_txt.take(s), " has no row for fiscal year ", fy_txt.take(s),
                                           " in the facilities file")),
            (cb < 0, lambda s: _text("payload code ", t["code"].take(s))),
            (cb == idx["A000010"], lambda s: _text("生年月日 ", t["p1"].take(s), ", 性別 ", t["p2"].take(s))),
            (cb == idx["A000020"], lambda s: _text("予定・救急医療入院 ", t["p5"].take(s), ", 救急車 ", t["p6"].take(s))),
            (cb == idx["A000030"], lambda s: _text("退院年月日 ", t["p1"].take(s), ", 退院先 ", t["p2"].take(s))),
            (np.isin(cb, [idx[c] for c in L.DIAGNOSIS_ROLE]), lambda s: _text(t["code"].take(s), " ICD-10 ", t["p2"].take(s))),
            (cb == idx["A007010"], lambda s: _text("手術日 ", t["p1"].take(s), ", 点数表コード ", t["p2"].take(s))),
            (cb == idx["A001010"], lambda s: _text("身長 ", t["p2"].take(s), ", 体重 ", t["p3"].take(s))),
            (np.ones(len(bad), bool), lambda s: _text(t["code"].take(s), " ", t["p2"].take(s))),
        )
        left = np.ones(len(bad), bool)
        for mask, make in groups:
            s = np.flatnonzero(mask & left)
            if len(s):
                parts.append((bad[s], make(pa.array(s))))
                left[s] = False
    out = {
        "fy": pa.array(fy.astype(np.int16)),
        "hospital_id": pa.array(hid.astype(np.int32), mask=hid < 0),
        **{k: _days_col(v, ok) for k, (v, ok) in out_days.items()},
        "norm_code": _scatter(g, norm_parts),
        **{k: pa.array(v, mask=~ok) for k, (v, ok) in nums.items()},
        "jcs": pa.array(jcs[0], mask=~jcs[1]),
        "spinal": pa.array(spinal[0], mask=~spinal[1]),
        **{k: pa.array(v) for k, v in flags.items()},
        "ikey": pa.array(ikey.astype(np.int32), mask=(ci < 0) | ~(single | plain)),
        "reason": ireason,
        "idetail": _scatter(g, parts),
    }
    return out


def parse_chunk(b: S.Block, first_line: int, file_id: int, facilities: Facilities, keep_identifiers: bool = False) -> pa.Table:
    """A block of Form 1 lines (split into the fields :data:`COLS`) as the staging table: every
    line one row with its reason. The line's own reasons (numpy over the good lines; the few
    lines that are not well-formed, or whose 施設コード is not 9 digits, looked at one by one as
    text: blank, header, short or long; a key or admission date that does not parse; a
    ward-level form); for the others (``item``), the item's values typed and its reason as an
    item (:func:`_items`: fiscal year, facility, payload code, the payload's own rules); the
    reason's detail in ``detail``; with ``keep_identifiers``, A000010's postcode (payload 3)."""
    n = b.n
    gi = np.flatnonzero(b.good)
    g = len(gi)
    cols = {_F[k]: b.strings(k) for k in COLS}
    ok_fac, v_fac = b.digits(0, 9)
    ok_id, v_id = b.digits(1, 10)
    ok_ad, v_ad = b.digits(2, 8)
    ok_ad, d_ad = S.ymd_days(ok_ad, v_ad)
    ward = pc.not_equal(cols["form_no"], L.WHOLE_STAY_FORM).to_numpy(zero_copy_only=False)
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    looked = np.zeros(n, dtype=bool)
    suspect = ~b.good
    suspect[gi[~ok_fac]] = True
    for i in np.flatnonzero(suspect):
        text = b.line_text(i)
        if not text.strip(" \r\n\t"):
            reason[i], looked[i] = "blank_line", True
        elif is_header(text, first_line + i):
            reason[i], looked[i] = "header_line", True
        elif not b.good[i]:
            reason[i] = "short_line" if b.nfields[i] < L.FORM1_N else "long_line"
            detail[i], looked[i] = f"{b.nfields[i]} fields (Form 1 has {L.FORM1_N})", True
    # the good lines: first failing rule wins
    gr = np.full(g, None, dtype=object)
    done = looked[gi]
    for mask, why in ((~(ok_fac & ok_id), "bad_code"), (~ok_ad, "bad_date"), (ward, "ward_level_form")):
        sel = mask & ~done
        gr[sel] = why
        done |= sel
    bad = np.flatnonzero(done & ~looked[gi])
    gd = np.full(g, None, dtype=object)
    if len(bad):
        take = pa.array(bad)
        txt = {k: cols[k].take(take).to_pylist() for k in ("facility_code", "data_id", "admit_ymd", "form_no", "code")}
        for j, r in enumerate(bad):
            why = gr[r]
            if why == "bad_code":
                gd[r] = key_detail(ok_fac[r], txt["facility_code"][j], txt["data_id"][j])
            elif why == "bad_date":
                gd[r] = f"入院年月日 {txt['admit_ymd'][j]} is not a date (yyyymmdd)"
            else:
                gd[r] = f"統括診療情報番号 {txt['form_no'][j]} ({txt['code'][j]})"
    keep = ~looked[gi]
    reason[gi[keep]] = gr[keep]
    detail[gi[keep]] = gd[keep]
    items = _items(b, cols, v_fac, v_ad, d_ad, facilities, ~done)
    # a line's reason and detail: its own, or as an item
    items["reason"] = pc.coalesce(pa.array(reason[gi], pa.string()), items["reason"])
    items["detail"] = pc.coalesce(pa.array(detail[gi], pa.string()), items.pop("idetail"))
    items["item"] = pa.array(~done)
    if keep_identifiers:
        items["postcode"] = pc.if_else(pc.equal(cols["code"], "A000010"), cols["p3"], pa.scalar(None, pa.string()))

    pos = np.full(n, -1, dtype=np.int64)
    pos[gi] = np.arange(g)
    idx = None if g == n else pa.array(pos, mask=pos < 0)
    over_good = {"fac": pa.array(v_fac.astype(np.int32), mask=~(ok_fac & ok_id)), "pid": pa.array(v_id, mask=~(ok_fac & ok_id)),
                 "admit_date": _days_col(d_ad, ok_ad), "code": cols["code"], "seq": cols["seq"], "p2": cols["p2"],
                 "p9": cols["p9"], **items}
    out = {"file_id": pa.array(np.full(n, file_id, np.int32)),
           "line_no": pa.array(np.arange(first_line, first_line + n, dtype=np.int64))}
    for name, arr in over_good.items():
        out[name] = arr if idx is None else arr.take(idx)
    if idx is not None:  # the lines that are not well-formed: their reason and detail
        out["reason"] = pc.coalesce(out["reason"], pa.array(reason, pa.string()))
        out["detail"] = pc.coalesce(out["detail"], pa.array(detail, pa.string()))
        out["item"] = pc.fill_null(out["item"], False)
    return pa.table(out)


def create_staging(con, keep_identifiers: bool = False) -> None:
    cols = ", ".join(f"{c} {t}" for c, t in ITEM_COLUMNS.items()) + (", postcode VARCHAR" if keep_identifiers else "")
    con.execute(f"CREATE TABLE f1_stage (file_id INTEGER, line_no BIGINT, fac INTEGER, pid BIGINT, admit_date DATE, {cols})")


def build(con, keep_identifiers: bool = False) -> None:
    """From ``f1_stage`` (every line staged and checked as an item: :func:`parse_chunk`): the
    tables ``stays``, ``admissions_out``, ``diagnoses_out``, ``procedures_out``, and for the
    report ``f1_rejected`` (every line with a reason), ``f1_imported`` and ``f1_years`` (per file)
    and with ``keep_identifiers`` ``f1_postcodes``. The staged lines are dropped."""
    # A second line of a stay's item (the same payload code, and 連番 unless the item occurs
    # once): ranked by file and line, only where its key has more than one line.
    # Keys are compared as integers (ikey: 1M lines 0.36 -> 0.26 CPU s, 2026-12-06), the few
    # items with a 連番 not written plainly as text; lines of unknown payload codes are never
    # imported, whatever their rank.
    con.execute(f"""
    CREATE TABLE f1_dups AS
    WITH r AS (
      SELECT file_id, line_no, fac, pid, admit_date, ikey, code, CASE WHEN code IN ({_inlist(SINGLE)}) THEN '' ELSE seq END AS dkey
      FROM f1_stage WHERE item
    ), multi AS (
      SELECT fac, pid, admit_date, ikey FROM r WHERE ikey IS NOT NULL GROUP BY ALL HAVING count(*) > 1
    ), candidates AS (
      SELECT * FROM r SEMI JOIN multi USING (fac, pid, admit_date, ikey)
      UNION ALL SELECT * FROM r WHERE ikey IS NULL AND code IN ({_inlist(L.PAYLOADS)})
    )
    SELECT file_id, line_no, row_number() OVER (PARTITION BY fac, pid, admit_date, code, dkey ORDER BY file_id, line_no) AS dup
    FROM candidates
    QUALIFY dup > 1
    """)
    con.execute("""
    CREATE VIEW f1_checked AS
    SELECT s.* EXCLUDE (reason), s.reason AS ireason, coalesce(d.dup, 1) AS dup
    FROM f1_stage s LEFT JOIN f1_dups d USING (file_id, line_no) WHERE s.item
    """)
    # A stay: a whole-stay form whose A000010, A000020 and A000030 items are all good; with the
    # values of its good items and its spinal level, in one GROUP BY over the lines (one each for
    # the stays, their values and spinal_level, the whole build took 26.3 CPU s for 10M Form 1
    # lines at the 1GB default, 18.2 so; 1M lines 1.5-1.6 -> 1.3; 2026-12-06)
    good = "ireason IS NULL AND dup = 1"

    def val(expr: str, code: str) -> str:
        return f"any_value({expr}) FILTER (WHERE code = '{code}' AND {good})"

    con.execute(f"""
    CREATE TABLE stays AS
    SELECT fac, pid, admit_date, any_value(fy) AS fy,
      any_value(hospital_id) AS hospital_id,
      bool_or(code = 'A000030' AND ireason = 'stay_not_discharged') AS not_discharged,
      bool_or(code = 'A000010' AND {good}) AS has10,
      bool_or(code = 'A000020' AND {good}) AS has20,
      bool_or(code = 'A000030' AND {good}) AS has30,
      bool_or(ireason = 'outside_fiscal_years') AS outside_fy,
      {val('birth_date', 'A000010')} AS birth_date, {val('p2', 'A000010')} AS sex_code,
      {val('partial_birth', 'A000010')} AS partial_birth,
      {val('emergency', 'A000020')} AS emergency, {val('ambulance', 'A000020')} AS ambulance,
      {val('d1', 'A000030')} AS discharge_date, {val('p2', 'A000030')} AS dest, {val('death_outcome', 'A000030')} AS death_outcome,
      {val('n2', 'A001010')} AS height, {val('n3', 'A001010')} AS weight, {val('jcs', 'JCS0010')} AS jcs,
      {val('p2', 'ADL0010')} AS adl_adm, {val('p2', 'ADL0020')} AS adl_dis,
      min(spinal) FILTER (WHERE {good}) AS spinal_lo, max(spinal) FILTER (WHERE {good}) AS spinal_hi
    FROM f1_checked GROUP BY fac, pid, admit_date
    """)
    # (every line of a stay has the same fiscal year and facility: outside_fy / hospital_id say it for all)
    con.execute("""
    ALTER TABLE stays ADD COLUMN status VARCHAR;
    UPDATE stays SET status = CASE
      WHEN outside_fy THEN 'outside_fiscal_years'
      WHEN hospital_id IS NULL THEN 'unknown_facility'
      WHEN not_discharged THEN 'stay_not_discharged'
      WHEN NOT (has10 AND has20 AND has30) THEN 'incomplete_stay'
      ELSE 'ok' END;
    """)
    # Procedures outside the stay break the data model: their lines are rejected.
    con.execute(f"""
    CREATE TABLE f1_lines AS
    SELECT c.file_id, c.line_no, c.fac, c.pid, c.admit_date, c.code, c.p2, c.p9, c.norm_code, c.d1, c.suspected,
      CASE
        WHEN c.ireason IN ('unknown_facility', 'outside_fiscal_years', 'unknown_payload_code', 'payload_not_used') THEN c.ireason
        WHEN s.status IN ('unknown_facility', 'outside_fiscal_years', 'stay_not_discharged') THEN s.status
        WHEN c.ireason IS NOT NULL THEN c.ireason
        WHEN c.dup > 1 THEN 'duplicate_item'
        WHEN s.status <> 'ok' THEN s.status
        WHEN c.code = 'A007010' AND (c.d1 < c.admit_date OR c.d1 > s.discharge_date) THEN 'date_outside_stay'
      END AS reason,
      CASE
        WHEN c.ireason IS NOT NULL THEN c.detail
        WHEN c.dup > 1 THEN 'a second ' || c.code || CASE WHEN c.code IN ({_inlist(SINGLE)}) THEN '' ELSE ' 連番 ' || c.seq END || ' for the stay'
        WHEN s.status = 'incomplete_stay' THEN 'the stay lacks a valid ' || concat_ws(', ',
             CASE WHEN NOT s.has10 THEN 'A000010' END, CASE WHEN NOT s.has20 THEN 'A000020' END,
             CASE WHEN NOT s.has30 THEN 'A000030' END)
        WHEN c.code = 'A007010' THEN '手術日 ' || strftime(c.d1, '%Y%m%d') || ' outside the stay'
      END AS detail
    FROM f1_checked c
    JOIN stays s ON s.fac = c.fac AND s.pid = c.pid AND s.admit_date = c.admit_date
    """)
    dest_case = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in L.DISCHARGE_DEST.items())
    spinal_names = "[" + ", ".join(f"'{k}'" for k in SPINAL_WORDS) + "]"
    con.execute(f"""
    CREATE TABLE admissions_out AS
    SELECT {key_text('s')} AS admission_id,
      {key_fields('s')[0]} || '-' || {key_fields('s')[1]} AS patient_id,
      s.hospital_id::INTEGER AS hospital_id, s.admit_date, v.discharge_date,
      (year(s.admit_date) - year(v.birth_date) - CASE WHEN month(s.admit_date) * 100 + day(s.admit_date)
         < month(v.birth_date) * 100 + day(v.birth_date) THEN 1 ELSE 0 END)::SMALLINT AS age,
      CASE v.sex_code {' '.join(f"WHEN '{k}' THEN '{x}'" for k, x in L.SEX.items())} END AS sex,
      v.emergency, v.ambulance,
      CASE WHEN v.dest = '8' OR v.death_outcome THEN 'death' ELSE CASE v.dest {dest_case} END END AS discharge_to,
      (CASE WHEN v.height > 0 THEN v.height END)::REAL AS height_cm,
      (CASE WHEN v.weight > 0 THEN v.weight END)::REAL AS weight_kg,
      v.jcs, v.adl_adm, v.adl_dis,
      CASE WHEN v.spinal_lo <> v.spinal_hi THEN 'multiple' ELSE {spinal_names}[v.spinal_lo] END AS spinal_level,
      s.fy AS fiscal_year,
      (v.dest = '8') <> v.death_outcome AS death_codes_disagree,
      v.partial_birth,
      s.stay_no, s.fac, s.pid  -- not written: the key as staged, and the rank of admission_id
    FROM (
      -- the rank of (fiscal year, admission_id): an integer to sort the billing lines by, and
      -- each fiscal year a range of it (billing is staged without its year); numbered over the
      -- narrow stays (the whole rows through the window: 250k admissions 0.40 -> 0.21 CPU s)
      SELECT fac, pid, admit_date, hospital_id, fy, row_number() OVER (ORDER BY fy, fac, pid, admit_date) AS stay_no
      FROM stays WHERE status = 'ok'
    ) s JOIN stays v ON v.fac = s.fac AND v.pid = s.pid AND v.admit_date = s.admit_date
    """)
    con.execute(f"""
    CREATE TABLE diagnoses_out AS
    SELECT {key_text('l')} AS admission_id, l.norm_code AS icd10,
      CASE l.code {' '.join(f"WHEN '{k}' THEN '{v}'" for k, v in L.DIAGNOSIS_ROLE.items())} END AS role,
      l.suspected, l.p9 AS name, l.file_id, l.line_no
    FROM f1_lines l WHERE l.reason IS NULL AND l.code IN ({_inlist(L.DIAGNOSIS_ROLE)})
    """)
    con.execute(f"""
    CREATE TABLE procedures_out AS
    SELECT {key_text('l')} AS admission_id, l.norm_code AS proc_code,
      l.d1 AS proc_date, l.p2 AS raw_code, 'form1' AS source
    FROM f1_lines l WHERE l.reason IS NULL AND l.code = 'A007010'
    """)
    # What the import report needs of the lines is kept small (the rejected and skipped lines, the
    # imported lines' count and fiscal years per file; the postcodes with --keep-identifiers), and
    # the line tables go: EF is read next, and what DuckDB holds counts against its limit (at 10M
    # Form 1 lines an estimated ~3 GB: f1_stage measured 736 MiB at 4M lines; 50M EF lines by
    # hand, 2026-12-06: 61.9 -> 53.7 s once they went).
    con.execute("""
    CREATE TABLE f1_rejected AS
    SELECT file_id, line_no, code, reason, detail FROM f1_lines WHERE reason IS NOT NULL
    UNION ALL SELECT file_id, line_no, code, reason, detail FROM f1_stage WHERE NOT item;
    CREATE TABLE f1_imported AS SELECT file_id, count(*) AS lines FROM f1_lines WHERE reason IS NULL GROUP BY file_id;
    CREATE TABLE f1_years AS
    SELECT DISTINCT file_id, year(admit_date) - (month(admit_date) < 4)::INT AS fy
    FROM f1_stage WHERE item OR reason = 'ward_level_form';
    """)
    if keep_identifiers:
        con.execute("""CREATE TABLE f1_postcodes AS SELECT fac, pid, admit_date, any_value(postcode) AS postcode
                       FROM f1_stage WHERE item AND code = 'A000010' GROUP BY ALL""")
    con.execute("""DROP VIEW f1_checked; DROP TABLE f1_dups; DROP TABLE f1_lines; DROP TABLE f1_stage;
                   CREATE OR REPLACE TABLE stays AS SELECT fac, pid, admit_date, status FROM stays""")
