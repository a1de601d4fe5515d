"""EF integrated file (入院EF統合ファイル) → billing, and the procedures only EF records.

Read after Form 1 has been built: :func:`parse_chunk` (one block of lines at a time, numpy, in
the reading threads) checks each line (blank, header, short or long line, a key that is not 9/10
digits, a date or a quantity that does not parse, an act row: 行為明細番号 000, from the former E
file, whose items follow as 001, 002, ... and are the billing lines), joins it to its Form 1 stay
(施設コード, データ識別番号, 入院年月日: fields 1, 2, 4; :class:`Stays`) and stages what it
becomes: a billing row, a rejected or skipped line, a surgery line's 解釈番号. Only the fields
the data model needs are read; what is not kept is not written. :func:`build` then adds the
procedures only EF records and the rejected lines' details. Layout: p14.145 / p17.162; field 17
p14.137 / p17.151.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hospstudy.data.dpc import layouts as L
from hospstudy.data.dpc import split as S
from hospstudy.data.dpc.form1 import is_header, kcode, key_detail, key_fields, numbers

_F = {name: i for i, name in enumerate(L.EF_FIELDS)}  # 0-based


def create_staging(con, keep_identifiers: bool) -> None:
    """The EF work tables. EF lines are joined to their stays while they are read (in the
    reading threads: :class:`Stays`), so only what each line becomes is staged: a billing row
    (``ef_billing``: the stay's number, no key text), a rejected or skipped line with what its
    message needs (``ef_rejects``), a surgery line's 解釈番号 (``ef_k``)."""
    con.execute("""CREATE TABLE ef_billing (stay_no INTEGER, service_date DATE, kind TINYINT, code_id INTEGER,
      quantity REAL)""")  # (its fiscal year: a range of stay_no, form1.build)
    con.execute("""CREATE TABLE ef_rejects (file_id INTEGER, line_no BIGINT, reason VARCHAR, detail VARCHAR,
      fac INTEGER, pid BIGINT, admit_date DATE, service_date DATE, stay_status VARCHAR, stay_admit DATE,
      stay_discharge DATE)""")
    con.execute("CREATE TABLE ef_k (stay_no INTEGER, interp_no VARCHAR, kcode VARCHAR, service_date DATE)")
    if keep_identifiers:
        con.execute("CREATE TABLE ef_ids (stay_no INTEGER, insurer_no VARCHAR, doctor_code VARCHAR)")


# The Arrow schema of ef_billing's staged rows (parse_chunk's, and a block's with none)
BILLING_SCHEMA = pa.schema([("stay_no", pa.int32()), ("service_date", pa.date32()), ("kind", pa.int8()),
                            ("code_id", pa.int32()), ("quantity", pa.float32())])


_COLS = sorted(_F[k] for k in ("facility_code", "data_id", "admit_ymd", "category", "detail_no", "receipt_code",
                                "interp_no", "quantity", "service_ymd", "flags17"))
_COLS_ID = sorted(_COLS + [_F["insurer_no"], _F["doctor_code"]])


def cols(keep_identifiers: bool) -> list[int]:
    """The EF fields (0-based) staging reads."""
    return _COLS_ID if keep_identifiers else _COLS


# The reason of an EF line whose Form 1 stay was not imported, by the stay's status (the
# statuses of form1.build; an 'ok' stay imports its lines unless the service date falls outside it)
_STATUS_REASON = {"ok": None, "outside_fiscal_years": "outside_fiscal_years", "stay_not_discharged": "stay_not_discharged",
                  "unknown_facility": "unknown_facility", "incomplete_stay": "stay_not_imported"}
STAY_STATUSES = tuple(_STATUS_REASON)  # a stay's status is staged as its index here (0 = ok)
_PAT = 10_000_000_000  # a patient as one integer: 施設コード × 10^10 + データ識別番号 (10 digits)
_PAT_SQL = f"fac::UBIGINT * {_PAT} + pid::UBIGINT"  # the same, of a row of the stays
STAY_BYTES, PATIENT_BYTES = 18, 8  # what Stays holds per stay (keys, status, stay_no, discharge, seen) and per patient
_DAYS0 = 1 << 16  # admission dates as days since 1970 + this: 1800-2200 (what ymd_days lets pass) is positive
_DAY_BITS = 18


def _batches(result, rows: int):
    """A DuckDB result as Arrow record batches (``to_arrow_reader`` where it exists: duckdb 1.5
    deprecates ``fetch_record_batch``, and the pin allows 1.1)."""
    reader = getattr(result, "to_arrow_reader", None) or result.fetch_record_batch
    return reader(rows)


@dataclass
class Stays:
    """Form 1's stays as sorted arrays, for joining EF lines to them in the reading threads.

    A stay is found by two binary searches (numpy, which lets the other threads run): its
    patient (施設コード × 10^10 + データ識別番号, unique in ``pats``), then the patient's index
    and the admission date packed into one integer (``keys``, sorted). What a line needs of its
    stay besides (the admission date, its fiscal year) is the line's own 入院年月日.

    One object holds the stays of the patients in ``[lo, hi)`` (every stay unless the import
    reads EF in passes: :meth:`ranges`); a pass reads the lines of its patients, and the ``first``
    pass also those without a valid key (nothing else can own them)."""

    pats: np.ndarray  # uint64, sorted, unique
    keys: np.ndarray  # int64, sorted: patient index << 18 | admission day + 2^16
    status: np.ndarray  # int8: the stay's status, its index in STAY_STATUSES (0 = ok)
    stay_no: np.ndarray  # int32: the admission's rank (0 when the stay was not imported)
    discharge: np.ndarray  # int32 days since 1970: the admission's discharge date (ok stays)
    seen: np.ndarray  # bool by stay: an EF line of the stay was imported (set as EF is read)
    lo: int = 0  # the patients of this pass: lo <= 施設コード × 10^10 + データ識別番号 < hi (None: no bound)
    hi: int | None = None
    first: bool = True

    @property
    def nbytes(self) -> int:
        """Memory held: 18 bytes per stay and 8 per patient."""
        return sum(a.nbytes for a in (self.pats, self.keys, self.status, self.stay_no, self.discharge, self.seen))

    @staticmethod
    def ranges(con, budget: int) -> list[tuple[int, int | None]]:
        """The patients' ranges ``[lo, hi)`` of the passes over EF: one (every patient) when the
        stays' arrays fit in ``budget`` bytes, else as many ranges of about equal stays as it
        takes (a patient's stays are never split)."""
        n, n_pats = con.execute("SELECT count(*), count(DISTINCT (fac, pid)) FROM stays").fetchone()
        need = STAY_BYTES * n + PATIENT_BYTES * n_pats
        k = max(1, -(-need // max(budget, 1)))
        if k == 1:
            return [(0, None)]
        cuts = con.execute(f"SELECT quantile_disc({_PAT_SQL}, {[i / k for i in range(1, k)]}) FROM stays").fetchone()[0]
        bounds = [0, *sorted({int(c) for c in cuts} - {0}), None]
        return list(zip(bounds, bounds[1:]))

    @classmethod
    def load(cls, con, lo: int = 0, hi: int | None = None, first: bool = True, batch_rows: int = 1 << 20) -> "Stays":
        """The stays of the patients in ``[lo, hi)`` from the Form 1 build (``stays``,
        ``admissions_out``), read in batches into arrays sized beforehand: the whole result
        fetched at once, with the statuses as Python strings, held ~120 bytes per stay besides
        DuckDB's memory (5M stays at 100M EF lines: the import's peak, 2.3 GB, 2026-12-06)."""
        where = f"{_PAT_SQL} >= {int(lo)}" + (f" AND {_PAT_SQL} < {int(hi)}" if hi is not None else "")
        con.execute(f"""CREATE OR REPLACE TEMP TABLE stay_pats AS
          SELECT fac, pid, {_PAT_SQL} AS pat, (row_number() OVER (ORDER BY fac, pid) - 1)::BIGINT AS p
          FROM (SELECT DISTINCT fac, pid FROM stays WHERE {where})""")
        cases = " ".join(f"WHEN '{name}' THEN {i}" for i, name in enumerate(STAY_STATUSES))
        n_pats = con.execute("SELECT count(*) FROM stay_pats").fetchone()[0]
        n = con.execute(f"SELECT count(*) FROM stays WHERE {where}").fetchone()[0]
        out = cls(np.empty(n_pats, np.uint64), np.empty(n, np.int64), np.empty(n, np.int8), np.empty(n, np.int32),
                  np.empty(n, np.int32), np.zeros(n, bool), lo=int(lo), hi=None if hi is None else int(hi), first=first)
        i = 0
        for b in _batches(con.execute("SELECT pat FROM stay_pats ORDER BY p"), batch_rows):
            out.pats[i:i + b.num_rows] = b.column(0).to_numpy()
            i += b.num_rows
        i = 0
        for b in _batches(con.execute(f"""
          SELECT (p.p << {_DAY_BITS}) | ((s.admit_date - DATE '1970-01-01') + {_DAYS0}) AS key,
            (CASE s.status {cases} ELSE -1 END)::TINYINT AS status, coalesce(a.stay_no, 0)::INTEGER AS stay_no,
            coalesce(a.discharge_date - DATE '1970-01-01', 0)::INTEGER AS discharge
          FROM stays s JOIN stay_pats p ON p.fac = s.fac AND p.pid = s.pid
          LEFT JOIN admissions_out a ON a.fac = s.fac AND a.pid = s.pid AND a.admit_date = s.admit_date
          ORDER BY key"""), batch_rows):
            k = b.num_rows
            for name, arr in zip(("keys", "status", "stay_no", "discharge"), b.columns):
                getattr(out, name)[i:i + k] = arr.to_numpy()
            i += k
        con.execute("DROP TABLE stay_pats")
        if i != n or (out.status < 0).any():  # form1.build and STAY_STATUSES disagree: a bug, not bad input
            raise AssertionError("stays: a status not in ef.STAY_STATUSES, or rows lost")
        return out

    def owns(self, pat: np.ndarray, key_ok: np.ndarray) -> np.ndarray | None:
        """Which lines this pass reads (None: every line): a valid key in ``[lo, hi)``, or no
        valid key and the first pass; ``pat``: each line's patient (:func:`patients`)."""
        if self.lo == 0 and self.hi is None:
            return None
        return np.where(key_ok, self.holds(pat), self.first)

    def holds(self, pat: np.ndarray) -> np.ndarray:
        """Which of the patients ``pat`` are in this pass's range ``[lo, hi)``."""
        inside = pat >= np.uint64(self.lo)
        if self.hi is not None:
            inside &= pat < np.uint64(self.hi)
        return inside

    def find(self, pat: np.ndarray, day: np.ndarray, want: np.ndarray) -> np.ndarray:
        """The index of each line's stay (-1: none) where ``want``; ``pat``: each line's patient
        (:func:`patients`), ``day``: its admission date as staged."""
        out = np.full(len(pat), -1, dtype=np.int64)
        if not len(self.keys) or not want.any():
            return out
        p = np.minimum(np.searchsorted(self.pats, pat), len(self.pats) - 1)
        hit = want & (self.pats[p] == pat)
        key = (p.astype(np.int64) << _DAY_BITS) | (np.where(hit, day, 0) + _DAYS0)
        j = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        hit &= self.keys[j] == key
        out[hit] = j[hit]
        return out

    def foreign(self, data: bytes, file_id: int, first_line: int) -> "Parsed | None":
        """In the first of several passes, a block none of whose lines is this pass's, told from
        its keys alone (:func:`scan_keys`) before Arrow splits it: what the block counts for (its
        lines and patients, for :meth:`Tally.skips`; nothing staged), else None (the block is
        split and parsed). A block with a line that does not begin with its key written plainly
        (a blank or header line, a key padded or not 9 and 10 digits) is parsed: such a line is
        the first pass's. The passes after the first pass over these blocks unread when none of
        their patients is in them either: a file grouped by hospital is parsed about once, its
        keys scanned by the first pass."""
        if not self.first or (self.lo == 0 and self.hi is None):
            return None
        # 16 lines first, spread over the block: one of them this pass's (as in most blocks of
        # input that interleaves hospitals) or without a plain key, and the block is parsed
        for at in range(0, len(data), max(len(data) // 16, 1)):
            start = 0 if at == 0 else data.find(b"\n", at) + 1
            if 0 < start < len(data) or at == 0:
                pat = line_key(data[start:start + _KEY_BYTES].decode("latin-1"))
                if pat is None or self.holds(np.array([pat], np.uint64))[0]:
                    return None
        keys = scan_keys(data)
        if keys is None:
            return None
        pat, n = keys
        if self.holds(pat).any():
            return None
        return Parsed(tables={"ef_billing": BILLING_SCHEMA.empty_table()}, file_id=file_id, imported=0,
                      fiscal_years=np.zeros(0, np.int64), f17_widths={}, qty_empty=0, categories={},
                      first_line=first_line, lines=n, patients=(int(pat.min()), int(pat.max())), keys_only=True)


def scan_keys(data: bytes) -> tuple[np.ndarray, int] | None:
    """Each line's patient (:func:`patients`) and the number of lines, when every line of
    ``data`` begins with its key (:func:`line_key`); else None. numpy over the raw bytes (a TAB
    or LF byte is never inside a CP932 character): the line ends and the first 21 bytes of each
    line (:func:`~hospstudy.data.dpc.split.line_bounds`, then one gather of 21 bytes a line read
    by :func:`~hospstudy.data.dpc.split.fixed_digits` in place). 8 MiB blocks of EF lines (45k):
    0.19-0.32 µs a line (2026-12-07, by the hour), against 1.5-1.8 to split and parse them."""
    a = np.frombuffer(data, dtype=np.uint8)
    if not len(a):
        return None
    starts, ends = S.line_bounds(a)
    if (ends - starts).min() < _KEY_BYTES:
        return None
    m = a[starts[:, None] + np.arange(_KEY_BYTES)].reshape(-1)  # each line's first 21 bytes, one gather
    r = np.arange(len(starts)) * _KEY_BYTES
    if not ((m[r + 9] == S.TAB).all() and (m[r + 20] == S.TAB).all()):
        return None
    ok_fac, fac = S.fixed_digits(m, r, r + 9, 9)
    ok_id, pid = S.fixed_digits(m, r + 10, r + 20, 10)
    if not (ok_fac.all() and ok_id.all()):
        return None
    return patients(fac, pid), len(starts)


_KEY_BYTES = 21  # 施設コード (9 digits), TAB, データ識別番号 (10 digits), TAB
_LINE_KEY = re.compile(r"([0-9]{9})\t([0-9]{10})\t")


def line_key(text: str) -> int | None:
    """The patient of a line that begins with its key written plainly (9 digits, a tab, 10
    digits, a tab), else None. It is how a line that breaks the layout (short, long) is given to
    its patient's pass, and how :func:`scan_keys` reads a block's keys: the two agree."""
    k = _LINE_KEY.match(text)
    return None if k is None else int(k.group(1)) * _PAT + int(k.group(2))


def patients(fac: np.ndarray, pid: np.ndarray) -> np.ndarray:
    """A patient as one integer (0 where the key was not valid: fac and pid 0)."""
    return fac.astype(np.uint64) * np.uint64(_PAT) + pid.astype(np.uint64)


class Codes:
    """The receipt codes of the billing rows as integers, numbered as the reading threads meet
    them: a billing row is staged with its code's number (4 bytes; the text took DuckDB 16, and
    at 50M lines the staged rows outgrew the 1GB default and spilled). The writer ranks them by
    text (:meth:`ranked`)."""

    def __init__(self):
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()

    def ids(self, code: pa.Array) -> np.ndarray:
        """Each value's number (a block's distinct codes looked up once)."""
        enc = pc.dictionary_encode(code)
        values = enc.dictionary.to_pylist()
        with self._lock:
            ids = self._ids
            known = np.array([ids.setdefault(v, len(ids)) for v in values], np.int32)
        return known[enc.indices.to_numpy(zero_copy_only=False)] if len(code) else np.zeros(0, np.int32)

    def ranked(self) -> tuple[np.ndarray, pa.Array]:
        """(rank of each code's number in text order, the codes in that order)."""
        text = pa.array(list(self._ids), pa.string())  # in number order
        order = pc.sort_indices(text).to_numpy()
        rank = np.empty(len(order), np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        return rank, text.take(pa.array(order))


@dataclass
class Parsed:
    """One block of EF lines, staged: rows per work table, and the counts the report needs
    (summed over blocks by :meth:`Tally.add`)."""

    tables: dict  # work table -> pa.Table
    file_id: int
    imported: int
    fiscal_years: np.ndarray  # distinct fiscal years of the admission dates of the lines with one
    f17_widths: dict  # width of field 17 -> lines (lines that are EF data: imported or act rows)
    qty_empty: int  # imported lines with 使用量 empty
    categories: dict  # データ区分 -> imported lines
    first_line: int = 1
    lines: int = 0  # lines of the block
    patients: tuple | None = None  # (least, greatest) patient of the lines with a valid key (None: none)
    keys_only: bool = False  # the first pass read only the keys: none of the block's lines was its (Stays.foreign)


@dataclass
class Tally:
    """What :func:`parse_chunk` counted, summed over the blocks of every EF file."""

    imported: dict = dataclass_field(default_factory=dict)  # file_id -> lines
    years: dict = dataclass_field(default_factory=dict)  # file_id -> set of fiscal years
    f17_widths: dict = dataclass_field(default_factory=dict)  # file_id -> {width: lines}
    qty_empty: int = 0
    categories: dict = dataclass_field(default_factory=dict)
    # (file_id, first line) -> (lines, patients) of each EF block read: a later pass passes over a
    # block none of whose patients is in its range (:meth:`skips`)
    blocks: dict = dataclass_field(default_factory=dict)
    skipped: int = 0  # blocks passed over by later passes
    keys_only: int = 0  # blocks of which the first of several passes read only the keys (Stays.foreign)

    def add(self, p: Parsed) -> None:
        f = p.file_id
        self.blocks[(f, p.first_line)] = (p.lines, p.patients)
        self.keys_only += p.keys_only
        self.imported[f] = self.imported.get(f, 0) + p.imported
        self.years.setdefault(f, set()).update(p.fiscal_years.tolist())
        w = self.f17_widths.setdefault(f, {})
        for k, n in p.f17_widths.items():
            w[k] = w.get(k, 0) + n
        self.qty_empty += p.qty_empty
        for k, n in p.categories.items():
            self.categories[k] = self.categories.get(k, 0) + n

    def skips(self, stays: "Stays", advance=None):
        """For a pass after the first: ``skip(file, first_line, nbytes)`` for
        :func:`hospstudy.data.dpc.rawfiles.iter_files`, the block's lines when the first pass
        read it and no line of it has a valid key in this pass's patients (nothing of it is this
        pass's: lines without a valid key are the first pass's), else None. The Ministry's
        files, one per hospital, are then read once, not once per pass."""
        lo, hi = stays.lo, stays.hi

        def skip(f, first_line: int, nbytes: int):
            known = self.blocks.get((f.file_id, first_line))
            if known is None:
                return None
            lines, pats = known
            if pats is not None and pats[1] >= lo and (hi is None or pats[0] < hi):
                return None
            self.skipped += 1
            if advance is not None:
                advance(nbytes)
            return lines
        return skip


def billing_kind(receipt_code: pa.Array, interp_no: pa.Array, category: pa.Array) -> np.ndarray:
    """billing.kind as its index in :data:`layouts.KINDS`, by the first rule that matches
    (layouts.py lists the rules)."""
    k = {name: i for i, name in enumerate(L.KINDS)}
    b = lambda a: a.to_numpy(zero_copy_only=False)  # noqa: E731
    return np.select(
        [b(pc.starts_with(receipt_code, L.DRUG_CODE_PREFIX)), b(pc.match_substring_regex(interp_no, L.TRANSFUSION_REGEX)),
         b(pc.starts_with(interp_no, L.REHABILITATION_PREFIX)), b(pc.starts_with(interp_no, L.RADIOTHERAPY_PREFIX)),
         b(pc.is_in(category, pa.array(L.PROCEDURE_CATEGORIES)))],
        [k["drug"], k["transfusion"], k["rehabilitation"], k["radiotherapy"], k["procedure"]], k["other"]).astype(np.int8)


def parse_chunk(b: S.Block, first_line: int, file_id: int, keep_identifiers: bool, stays: Stays, codes: "Codes") -> Parsed:
    """One block of EF lines (split into the fields :func:`cols`): each line checked, joined to
    its Form 1 stay (``stays``) and staged as what it becomes (numpy; no Python loop over good
    lines): a billing row, or a row of ``ef_rejects`` with its reason (and, for the few lines
    that break the layout or a field's rule, its detail; the stay reasons' details are written
    from the staged key at the end: :func:`build`)."""
    n, g = b.n, int(b.good.sum())
    gi = np.flatnonzero(b.good)
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    # Lines that break the layout are their patient's pass's when they begin with a key written
    # plainly (line_key: a block all of whose lines do is passed over by the passes none of its
    # patients is in, Stays.foreign), else the first pass's; their keys count in the block's range
    broken = np.flatnonzero(~b.good)
    texts = [b.line_text(i) for i in broken]
    broken_pat = np.array([line_key(t) or 0 for t in texts], dtype=np.uint64)
    if stays.lo != 0 or stays.hi is not None:
        mine = stays.owns(broken_pat, broken_pat > 0)
        broken, texts = broken[mine], [t for t, keep in zip(texts, mine) if keep]
    # lines that break the layout: blank, header, short, long
    for i, text in zip(broken, texts):
        if not text.strip():
            reason[i] = "blank_line"
        elif is_header(text, first_line + i):
            reason[i] = "header_line"
        else:
            reason[i] = "short_line" if b.nfields[i] < L.EF_N else "long_line"
            detail[i] = f"{b.nfields[i]} fields (EF has {L.EF_N})"
    ok_fac, v_fac = b.digits(_F["facility_code"], 9)
    ok_id, v_id = b.digits(_F["data_id"], 10)
    # the lines this pass reads (None: every line); the others are left to their own pass
    valid = ok_fac & ok_id  # the stay key's 施設コード and データ識別番号
    pat = patients(v_fac, v_id)  # once: which lines are this pass's, their stays, the block's range
    own = stays.owns(pat, valid)
    ok_ad, v_ad = b.digits(_F["admit_ymd"], 8)
    ok_ad, d_ad = S.ymd_days(ok_ad, v_ad)
    ok_sv, v_sv = b.digits(_F["service_ymd"], 8)
    ok_sv, d_sv = S.ymd_days(ok_sv, v_sv)
    # the key and date fields are typed from their bytes (above); their text only for the lines with a reason
    cols = {k: b.strings(_F[k]) for k in ("category", "detail_no", "receipt_code", "interp_no", "quantity")}
    qtxt = cols["quantity"]
    q_empty = (b.width(_F["quantity"]) == 0)
    q_ok, qty = numbers(qtxt, pa.float32(), "1")  # empty: 1
    act = pc.equal(cols["detail_no"], L.EF_ACT_DETAIL).to_numpy(zero_copy_only=False)
    no_rc = b.width(_F["receipt_code"]) == 0
    # a header line with 31 fields: field 1 not a facility code, first line or naming 施設/facility
    hdr = np.zeros(g, dtype=bool)
    for j in np.flatnonzero(~ok_fac if own is None else ~ok_fac & own):
        i = gi[j]
        text = b.line_text(i)
        hdr[j] = is_header(text, first_line + i)
    # first failing rule wins (same order as the report's reasons)
    # (boolean masks, not comparisons of the object array with None: those hold the GIL, which
    # the threads typing other blocks wait for)
    gr = np.full(g, None, dtype=object)
    done = np.zeros(g, dtype=bool) if own is None else ~own  # (another pass's lines count as done, never as rejected)
    act_line = np.zeros(g, dtype=bool)
    for mask, why in ((hdr, "header_line"), (~valid, "bad_code"), (~(ok_ad & ok_sv), "bad_date"), (act, "ef_act_line"),
                      (no_rc, "bad_code"), (~q_empty & ~q_ok, "bad_number")):
        sel = mask & ~done
        if sel.any():
            gr[sel] = why
            done |= sel
            if why == "ef_act_line":
                act_line = sel
    failed = done if own is None else done & own  # lines that failed their own checks
    bad = np.flatnonzero(failed)
    gd = np.full(g, None, dtype=object)
    if len(bad):
        txt = {k: (cols[k] if k in cols else b.strings(_F[k])).take(pa.array(bad)).to_pylist()
               for k in ("facility_code", "data_id", "admit_ymd", "service_ymd", "quantity")}
        for j, r in enumerate(bad):
            why = gr[r]
            if why == "header_line":
                continue
            if why == "bad_code" and not (ok_fac[r] and ok_id[r]):
                gd[r] = key_detail(ok_fac[r], txt["facility_code"][j], txt["data_id"][j])
            elif why == "bad_code":
                gd[r] = "レセプト電算処理システム用コード is empty"
            elif why == "bad_date":
                gd[r] = (f"入院年月日 {txt['admit_ymd'][j]} is not a date (yyyymmdd)" if not ok_ad[r]
                         else f"実施年月日 {txt['service_ymd'][j]} is not a date (yyyymmdd)")
            elif why == "bad_number":
                gd[r] = f"使用量 {txt['quantity'][j]!r} is not a number"
    f17 = b.width(_F["flags17"])
    data_line = ~done | act_line  # EF data lines (what tells the layout): well-formed or act rows
    f17_widths = dict(zip(*(x.tolist() for x in np.unique(f17[data_line], return_counts=True))))

    # The stay of every line that passed its own checks: the join, the stay's reasons
    st = stays.find(pat, d_ad, ~done)
    has = st >= 0
    sti = np.where(has, st, 0)
    s_ad = d_ad  # a line's stay has the line's admission date
    if len(stays.keys):
        status, s_no, s_dis = stays.status[sti], stays.stay_no[sti], stays.discharge[sti]
    else:
        status, s_no, s_dis = np.zeros(g, np.int8), np.zeros(g, np.int32), np.zeros(g, np.int64)
    s_ok = has & (status == 0)
    outside = s_ok & ((d_sv < s_ad) | (d_sv > s_dis))
    stay_reason = ~done & ~(s_ok & ~outside)
    if stay_reason.any():
        for mask, why in ((~has, "no_form1_stay"), (outside, "date_outside_stay")):
            sel = stay_reason & mask
            gr[sel] = why
        for code, why in enumerate(_STATUS_REASON.values()):
            if why:
                gr[stay_reason & has & (status == code)] = why
    imp = np.flatnonzero(~done & ~stay_reason)  # good lines imported (index among the good lines)
    m = len(imp)
    every = m == n  # every line of the block imported: no take

    def pick(arr):
        return arr if every else arr.take(pa.array(imp))

    days = d_sv[imp]
    code, interp, cat = pick(cols["receipt_code"]), pick(cols["interp_no"]), pick(cols["category"])
    stay_no = s_no[imp]
    tables = {"ef_billing": pa.table({
        "stay_no": pa.array(stay_no, pa.int32()),
        "service_date": pa.array(days.astype(np.int32)).cast(pa.date32()),
        "kind": pa.array(billing_kind(code, interp, cat), pa.int8()),
        "code_id": pa.array(codes.ids(code)),
        "quantity": pa.array(np.where(q_ok | q_empty, qty, 0)[imp].astype(np.float32)),
    }, schema=BILLING_SCHEMA)}
    surgery = np.flatnonzero(pc.equal(cat, L.SURGERY_CATEGORY).to_numpy(zero_copy_only=False))
    if len(surgery):
        ks = pa.array(surgery)
        k_interp = interp.take(ks)
        tables["ef_k"] = pa.table({"stay_no": pa.array(stay_no[surgery], pa.int32()), "interp_no": k_interp,
                                   "kcode": kcode(k_interp),
                                   "service_date": pa.array(days[surgery].astype(np.int32)).cast(pa.date32())})
    if keep_identifiers and m:
        ids = pa.table({"stay_no": pa.array(stay_no, pa.int32()), "insurer_no": pick(b.strings(_F["insurer_no"])),
                        "doctor_code": pick(b.strings(_F["doctor_code"]))})
        tables["ef_ids"] = ids.group_by(["stay_no", "insurer_no", "doctor_code"]).aggregate([])
    # every line with a reason: the layout's (not good lines) and the good lines'
    rj = np.flatnonzero(failed | stay_reason)
    if len(broken) or len(rj):
        reason[gi[rj]] = gr[rj]
        detail[gi[rj]] = gd[rj]
        lines = np.concatenate([broken, gi[rj]])
        lines.sort()
        pos = np.full(n, -1, dtype=np.int64)  # a line's index among the good lines' rejects (-1: not good)
        pos[gi[rj]] = np.arange(len(rj))
        p = pos[lines]
        sel = pa.array(p, mask=p < 0)

        def day_col(values: np.ndarray, ok: np.ndarray) -> pa.Array:
            """A date column over the rejected lines: the good lines' dates, null for the others."""
            return pa.array(values[rj].astype(np.int32), mask=~ok[rj]).cast(pa.date32()).take(sel)

        names = np.array([None, *STAY_STATUSES[1:]], dtype=object)
        tables["ef_rejects"] = pa.table({
            "file_id": pa.array(np.full(len(lines), file_id, np.int32)),
            "line_no": pa.array(first_line + lines, pa.int64()),
            "reason": pa.array(reason[lines], pa.string()),
            "detail": pa.array(detail[lines], pa.string()),
            "fac": pa.array(v_fac[rj].astype(np.int32), mask=~ok_fac[rj]).take(sel),
            "pid": pa.array(v_id[rj], mask=~ok_id[rj]).take(sel),
            "admit_date": day_col(d_ad, ok_ad), "service_date": day_col(d_sv, ok_sv),
            "stay_status": pa.array(names[np.where(has[rj], status[rj], 0)], pa.string()).take(sel),
            "stay_admit": day_col(s_ad, s_ok), "stay_discharge": day_col(s_dis, s_ok),
        })
    cats = pc.value_counts(cat)
    stays.seen[st[imp]] = True  # (threads only ever set True: no lost update)
    # the fiscal years of the admission dates (bincount, not np.unique: a 1M-line sort per block)
    fy = S.ymd_fiscal_year(v_ad[ok_ad if own is None else ok_ad & own])
    years = np.flatnonzero(np.bincount(fy - 1800)) + 1800 if len(fy) else np.zeros(0, np.int64)
    pats = np.concatenate([pat[valid], broken_pat[broken_pat > 0]])
    pats = pats if len(pats) else None
    return Parsed(tables=tables, file_id=file_id, imported=m, fiscal_years=years,
                  f17_widths=f17_widths, qty_empty=int(np.count_nonzero(q_empty[imp])),
                  categories=dict(zip(cats.field("values").to_pylist(), cats.field("counts").to_pylist())),
                  first_line=first_line, lines=n, patients=None if pats is None else (int(pats.min()), int(pats.max())))


def build(con) -> None:
    """After staging: ``ef_procedures`` (surgery K-codes of the stays whose Form 1 does not
    record them) and the view ``ef_rejected`` (each rejected or skipped line with its detail)."""
    fac, pid, ymd = key_fields("e")
    con.execute(f"""
    CREATE VIEW ef_rejected AS
    SELECT e.file_id, e.line_no, e.reason,
      CASE
        WHEN e.detail IS NOT NULL THEN e.detail
        WHEN e.reason = 'no_form1_stay' THEN 'no Form 1 whole-stay form for 施設コード ' || {fac} || ', データ識別番号 ' || {pid}
             || ', 入院年月日 ' || {ymd}
        WHEN e.reason = 'unknown_facility' THEN '施設コード ' || {fac} || ' has no row for the stay''s fiscal year in the facilities file'
        WHEN e.reason = 'date_outside_stay' THEN
             '実施年月日 ' || strftime(e.service_date, '%Y%m%d') || ' outside the stay ' || strftime(e.stay_admit, '%Y%m%d')
             || '-' || strftime(e.stay_discharge, '%Y%m%d')
        WHEN e.stay_status IS NOT NULL THEN 'the stay''s Form 1 was not imported (' || e.stay_status || ')'
      END AS detail
    FROM ef_rejects e
    """)
    # Surgery K-codes (解釈番号 under データ区分 50, normalised as they were read) of stays whose
    # Form 1 does not record that code.
    con.execute(f"""
    CREATE TABLE ef_procedures AS
    SELECT DISTINCT a.admission_id, e.kcode AS proc_code, e.service_date AS proc_date, e.interp_no AS raw_code, 'ef' AS source
    FROM ef_k e JOIN admissions_out a USING (stay_no)
    WHERE e.kcode <> '' AND NOT regexp_matches(e.kcode, '{L.TRANSFUSION_REGEX}')
      AND NOT EXISTS (SELECT 1 FROM procedures_out p WHERE p.admission_id = a.admission_id AND p.proc_code = e.kcode)
    """)
