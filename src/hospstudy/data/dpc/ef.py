"""EF integrated file (入院EF統合ファイル) → billing, and the procedures only EF records.

Staging (:func:`parse_chunk`, one block of lines at a time, numpy) keeps only the fields the data model needs,
typed (dates as DATE, 使用量 as REAL): the EF file is the large one, and what is not kept is not
written. Line-level reasons: blank, header, short or long line, a key that is not 9/10 digits,
a date or a quantity that does not parse, an act row (行為明細番号 000, from the former E file:
its items follow as 001, 002, ... and are the billing lines). :func:`build` joins the lines to
the stays of Form 1 (施設コード, データ識別番号, 入院年月日: fields 1, 2, 4) and gives the rest of
the reasons. Layout: p14.145 / p17.162; field 17 p14.137 / p17.151.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hospstudy.data.dpc import layouts as L
from hospstudy.data.dpc import split as S
from hospstudy.data.dpc.form1 import is_header, kcode_sql, key_detail
from hospstudy.data.schema import KCODE_PATTERN

_F = {name: i for i, name in enumerate(L.EF_FIELDS)}  # 0-based


def create_staging(con, keep_identifiers: bool) -> None:
    extra = ", insurer_no VARCHAR, doctor_code VARCHAR" if keep_identifiers else ""
    # The stay key is staged as integers (施設コード, データ識別番号) and a date: the three key
    # strings were the largest share of appending the staged lines to DuckDB, and a join on
    # them the largest share of the EF build (measured below, at build). Their text is rebuilt
    # where a message needs it (:func:`key_text`; leading zeros kept).
    con.execute(f"""CREATE TABLE ef_stage (file_id INTEGER, line_no BIGINT, fac INTEGER, pid BIGINT,
      admit_date DATE, service_date DATE, category VARCHAR, receipt_code VARCHAR, interp_no VARCHAR,
      quantity REAL, qty_empty BOOLEAN, f17w TINYINT, reason VARCHAR, detail VARCHAR{extra})""")


def key_fields(alias: str = "") -> tuple[str, str, str]:
    """SQL: a staged EF line's 施設コード, データ識別番号 and 入院年月日 as written (zeros kept)."""
    a = f"{alias}." if alias else ""
    return (f"lpad(CAST({a}fac AS VARCHAR), 9, '0')", f"lpad(CAST({a}pid AS VARCHAR), 10, '0')",
            f"strftime({a}admit_date, '%Y%m%d')")


def key_text(alias: str = "") -> str:
    """SQL: a staged EF line's stay key as the admission_id text (施設コード-データ識別番号-入院年月日)."""
    return " || '-' || ".join(key_fields(alias))


_COLS = sorted(_F[k] for k in ("facility_code", "data_id", "admit_ymd", "category", "detail_no", "receipt_code",
                                "interp_no", "quantity", "service_ymd", "flags17"))
_COLS_ID = sorted(_COLS + [_F["insurer_no"], _F["doctor_code"]])
_QTY = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"


def cols(keep_identifiers: bool) -> list[int]:
    """The EF fields (0-based) staging reads."""
    return _COLS_ID if keep_identifiers else _COLS


def parse_chunk(b: S.Block, first_line: int, file_id: int, keep_identifiers: bool) -> pa.Table:
    """One block of EF lines (split into the fields :func:`cols`) as the typed staging table
    (numpy; no Python loop over good lines).

    Every line of the block gives one row: well-formed ones their typed fields, the others a
    ``reason`` and a ``detail`` (these few are described one by one)."""
    n, g = b.n, int(b.good.sum())
    gi = np.flatnonzero(b.good)
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    # lines that break the layout: blank, header, short, long
    for i in np.flatnonzero(~b.good):
        text = b.line_text(i)
        if not text.strip():
            reason[i] = "blank_line"
        elif is_header(text, first_line + i):
            reason[i] = "header_line"
        else:
            reason[i] = "short_line" if b.nfields[i] < L.EF_N else "long_line"
            detail[i] = f"{b.nfields[i]} fields (EF has {L.EF_N})"
    ok_fac, v_fac = b.digits(_F["facility_code"], 9)
    ok_id, v_id = b.digits(_F["data_id"], 10)
    ok_ad, v_ad = b.digits(_F["admit_ymd"], 8)
    ok_ad, d_ad = S.ymd_days(ok_ad, v_ad)
    ok_sv, v_sv = b.digits(_F["service_ymd"], 8)
    ok_sv, d_sv = S.ymd_days(ok_sv, v_sv)
    # the key and date fields are typed from their bytes (above); their text only for the lines with a reason
    cols = {k: b.strings(_F[k]) for k in ("category", "detail_no", "receipt_code", "interp_no", "quantity")}
    qtxt = cols["quantity"]
    q_empty = (b.width(_F["quantity"]) == 0)
    q_ok = pc.match_substring_regex(qtxt, _QTY).to_numpy(zero_copy_only=False)
    qty = pc.cast(pc.if_else(pa.array(q_ok), qtxt, pa.scalar("1")), pa.float32()).to_numpy(zero_copy_only=False)
    act = pc.equal(cols["detail_no"], L.EF_ACT_DETAIL).to_numpy(zero_copy_only=False)
    no_rc = b.width(_F["receipt_code"]) == 0
    # a header line with 31 fields: field 1 not a facility code, first line or naming 施設/facility
    hdr = np.zeros(g, dtype=bool)
    for j in np.flatnonzero(~ok_fac):
        i = gi[j]
        text = b.line_text(i)
        hdr[j] = is_header(text, first_line + i)
    # first failing rule wins (same order as the report's reasons)
    # (boolean masks, not comparisons of the object array with None: those hold the GIL, which
    # the threads typing other blocks wait for)
    gr = np.full(g, None, dtype=object)
    done = np.zeros(g, dtype=bool)
    for mask, why in ((hdr, "header_line"), (~(ok_fac & ok_id), "bad_code"), (~(ok_ad & ok_sv), "bad_date"), (act, "ef_act_line"),
                      (no_rc, "bad_code"), (~q_empty & ~q_ok, "bad_number")):
        sel = mask & ~done
        if sel.any():
            gr[sel] = why
            done |= sel
    bad = np.flatnonzero(done)
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
    any_reason = g < n or len(bad) > 0
    if len(bad):
        reason[gi] = gr
        detail[gi] = gd

    def full(arr: pa.Array, typ=None) -> pa.Array:
        """A column over all lines: the good lines' values, null elsewhere."""
        if g == n:
            return arr if typ is None else arr.cast(typ)
        pos = np.full(n, -1, dtype=np.int64)
        pos[gi] = np.arange(g)
        return arr.take(pa.array(pos, mask=pos < 0))

    def dates(ok, days):
        return pa.array(days.astype(np.int32), mask=~ok).cast(pa.date32())

    out = {
        "file_id": pa.array(np.full(n, file_id, np.int32)),
        "line_no": pa.array(np.arange(first_line, first_line + n, dtype=np.int64)),
        "fac": full(pa.array(v_fac.astype(np.int32), mask=~ok_fac)), "pid": full(pa.array(v_id, mask=~ok_id)),
        "admit_date": full(dates(ok_ad, d_ad)), "service_date": full(dates(ok_sv, d_sv)),
        "category": full(cols["category"]), "receipt_code": full(cols["receipt_code"]),
        "interp_no": full(cols["interp_no"]),
        "quantity": full(pa.array(np.where(q_ok | q_empty, qty, 0).astype(np.float32))),
        "qty_empty": full(pa.array(q_empty)),
        "f17w": full(pa.array(b.width(_F["flags17"]).astype(np.int8))),
        "reason": pa.array(reason, pa.string()) if any_reason else pa.nulls(n, pa.string()),
        "detail": pa.array(detail, pa.string()) if any_reason else pa.nulls(n, pa.string()),
    }
    if keep_identifiers:
        out["insurer_no"] = full(b.strings(_F["insurer_no"]))
        out["doctor_code"] = full(b.strings(_F["doctor_code"]))
    return pa.table(out)


def build(con) -> None:
    """From ``ef_stage``, ``stays`` and ``admissions_out``: ``ef_lines`` (final reasons),
    ``billing_out`` and ``ef_procedures``."""
    fac, pid, ymd = key_fields("e")
    con.execute(f"""
    CREATE TABLE ef_lines AS
    SELECT e.* EXCLUDE (reason, detail),
      CASE
        WHEN e.reason IS NOT NULL THEN e.reason
        WHEN s.status IS NULL THEN 'no_form1_stay'
        WHEN s.status IN ('outside_fiscal_years', 'stay_not_discharged') THEN s.status
        WHEN s.status = 'unknown_facility' THEN 'unknown_facility'
        WHEN s.status <> 'ok' THEN 'stay_not_imported'
        WHEN e.service_date < s.a_admit OR e.service_date > s.a_discharge THEN 'date_outside_stay'
      END AS reason,
      CASE
        WHEN e.reason IS NOT NULL THEN e.detail
        WHEN s.status IS NULL THEN 'no Form 1 whole-stay form for 施設コード ' || {fac} || ', データ識別番号 ' || {pid}
             || ', 入院年月日 ' || {ymd}
        WHEN s.status = 'unknown_facility' THEN '施設コード ' || {fac} || ' has no row for the stay''s fiscal year in the facilities file'
        WHEN s.status <> 'ok' THEN 'the stay''s Form 1 was not imported (' || s.status || ')'
        WHEN e.service_date < s.a_admit OR e.service_date > s.a_discharge THEN
             '実施年月日 ' || strftime(e.service_date, '%Y%m%d') || ' outside the stay ' || strftime(s.a_admit, '%Y%m%d')
             || '-' || strftime(s.a_discharge, '%Y%m%d')
      END AS detail,
      s.admission_id, s.fiscal_year, s.stay_no
    FROM ef_stage e
    -- one join on the integer key (施設コード, データ識別番号, 入院年月日) to the stays with their
    -- admission (if imported)
    LEFT JOIN (SELECT s.fac, s.pid, s.admit_date, s.status, a.admission_id, a.fiscal_year, a.stay_no,
                      a.admit_date AS a_admit, a.discharge_date AS a_discharge
               FROM stays s LEFT JOIN admissions_out a
                 ON a.admission_id = s.facility_code || '-' || s.data_id || '-' || s.admit_ymd) s
      ON s.fac = e.fac AND s.pid = e.pid AND s.admit_date = e.admit_date
    """)
    con.execute(f"""
    CREATE VIEW billing_out AS
    SELECT admission_id, service_date, {L.KIND_SQL} AS kind, receipt_code AS code, quantity::REAL AS quantity, fiscal_year,
      stay_no
    FROM ef_lines WHERE reason IS NULL
    """)
    # Surgery K-codes (解釈番号 under データ区分 50) of stays whose Form 1 does not record that code.
    con.execute(f"""
    CREATE TABLE ef_procedures AS
    SELECT DISTINCT e.admission_id, {kcode_sql('e.interp_no')} AS proc_code, e.service_date AS proc_date,
      e.interp_no AS raw_code, 'ef' AS source
    FROM ef_lines e
    WHERE e.reason IS NULL AND e.category = '{L.SURGERY_CATEGORY}'
      AND regexp_full_match({kcode_sql('e.interp_no')}, '{KCODE_PATTERN[1:-1]}')
      AND NOT regexp_matches({kcode_sql('e.interp_no')}, '^K92[0-4]')
      AND NOT EXISTS (SELECT 1 FROM procedures_out p WHERE p.admission_id = e.admission_id
                      AND p.proc_code = {kcode_sql('e.interp_no')})
    """)
