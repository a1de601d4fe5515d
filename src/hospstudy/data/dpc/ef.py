"""EF integrated file (入院EF統合ファイル) → billing, and the procedures only EF records.

Staging (:func:`stage_sql`, one chunk at a time) keeps only the fields the data model needs,
typed (dates as DATE, 使用量 as REAL): the EF file is the large one, and what is not kept is not
written. Line-level reasons: blank, header, short or long line, a key that is not 9/10 digits,
a date or a quantity that does not parse, an act row (行為明細番号 000, from the former E file:
its items follow as 001, 002, ... and are the billing lines). :func:`build` joins the lines to
the stays of Form 1 (施設コード, データ識別番号, 入院年月日: fields 1, 2, 4) and gives the rest of
the reasons. Layout: p14.145 / p17.162; field 17 p14.137 / p17.151.
"""

from __future__ import annotations

from hospstudy.data.dpc import layouts as L
from hospstudy.data.dpc.form1 import HEADER_SQL, kcode_sql, ymd
from hospstudy.data.schema import KCODE_PATTERN

_KEEP = ("facility_code", "data_id", "discharge_ymd", "admit_ymd", "category", "detail_no", "receipt_code",
         "interp_no", "quantity", "service_ymd", "flags17", "act_count")
_IDENT = ("insurer_no", "doctor_code")


def _field(name: str) -> str:
    return f"trim(p[{L.EF_FIELD[name]}], ' \r\n')"


def create_staging(con, keep_identifiers: bool) -> None:
    extra = ", insurer_no VARCHAR, doctor_code VARCHAR" if keep_identifiers else ""
    con.execute(f"""CREATE TABLE ef_stage (file_id INTEGER, line_no BIGINT, facility_code VARCHAR, data_id VARCHAR,
      admit_ymd VARCHAR, admit_date DATE, service_date DATE, category VARCHAR, receipt_code VARCHAR, interp_no VARCHAR,
      quantity REAL, qty_empty BOOLEAN, f17w TINYINT, reason VARCHAR, detail VARCHAR{extra})""")


def stage_sql(src: str, keep_identifiers: bool) -> str:
    f = {n: _field(n) for n in _KEEP + _IDENT}
    qty = f"TRY_CAST(replace({f['quantity']}, ',', '') AS REAL)"
    extra = f", {f['insurer_no']} AS insurer_no, {f['doctor_code']} AS doctor_code" if keep_identifiers else ""
    outer = ", insurer_no, doctor_code" if keep_identifiers else ""
    return f"""
    SELECT file_id, line_no, facility_code, data_id, admit_ymd, {ymd('admit_ymd')} AS admit_date,
      {ymd('service_ymd')} AS service_date, category, receipt_code, interp_no,
      CASE WHEN quantity_txt = '' THEN 1 ELSE {qty.replace(f['quantity'], 'quantity_txt')} END AS quantity,
      quantity_txt = '' AS qty_empty,
      length(flags17)::TINYINT AS f17w,
      CASE
        WHEN trim(line, ' \r\n\t') = '' THEN 'blank_line'
        WHEN header THEN 'header_line'
        WHEN nf < {L.EF_N} THEN 'short_line'
        WHEN nf > {L.EF_N} THEN 'long_line'
        WHEN NOT regexp_full_match(facility_code, '[0-9]{{9}}') OR NOT regexp_full_match(data_id, '[0-9]{{10}}') THEN 'bad_code'
        WHEN {ymd('admit_ymd')} IS NULL OR {ymd('service_ymd')} IS NULL THEN 'bad_date'
        WHEN detail_no = '{L.EF_ACT_DETAIL}' THEN 'ef_act_line'
        WHEN receipt_code = '' THEN 'bad_code'
        WHEN quantity_txt <> '' AND {qty.replace(f['quantity'], 'quantity_txt')} IS NULL THEN 'bad_number'
      END AS reason,
      CASE
        WHEN trim(line, ' \r\n\t') = '' OR header THEN NULL
        WHEN nf <> {L.EF_N} THEN nf || ' fields (EF has {L.EF_N})'
        WHEN NOT regexp_full_match(facility_code, '[0-9]{{9}}') THEN '施設コード ' || facility_code || ' is not 9 digits'
        WHEN NOT regexp_full_match(data_id, '[0-9]{{10}}') THEN 'データ識別番号 ' || data_id || ' is not 10 digits'
        WHEN {ymd('admit_ymd')} IS NULL THEN '入院年月日 ' || admit_ymd || ' is not a date (yyyymmdd)'
        WHEN {ymd('service_ymd')} IS NULL THEN '実施年月日 ' || service_ymd || ' is not a date (yyyymmdd)'
        WHEN detail_no = '{L.EF_ACT_DETAIL}' THEN NULL
        WHEN receipt_code = '' THEN 'レセプト電算処理システム用コード is empty'
        ELSE '使用量 ' || quantity_txt
      END AS detail{outer}
    FROM (
      SELECT file_id, line_no, line, len(p) AS nf, {HEADER_SQL} AS header,
        {f['facility_code']} AS facility_code, {f['data_id']} AS data_id, {f['admit_ymd']} AS admit_ymd,
        {f['service_ymd']} AS service_ymd, {f['category']} AS category, {f['detail_no']} AS detail_no,
        {f['receipt_code']} AS receipt_code, {f['interp_no']} AS interp_no, {f['quantity']} AS quantity_txt,
        {f['flags17']} AS flags17{extra}
      FROM (SELECT file_id, line_no, line, string_split(line, chr(9)) AS p FROM {src})
    )"""


def build(con) -> None:
    """From ``ef_stage``, ``stays`` and ``admissions_out``: ``ef_lines`` (final reasons),
    ``billing_out`` and ``ef_procedures``."""
    con.execute(f"""
    CREATE TABLE ef_lines AS
    SELECT e.file_id, e.line_no, e.facility_code, e.data_id, e.admit_ymd, e.service_date, e.category, e.receipt_code,
      e.interp_no, e.quantity, e.qty_empty, e.f17w,
      CASE
        WHEN e.reason IS NOT NULL THEN e.reason
        WHEN s.status IS NULL THEN 'no_form1_stay'
        WHEN s.status IN ('outside_fiscal_years', 'stay_not_discharged') THEN s.status
        WHEN s.status = 'unknown_facility' THEN 'unknown_facility'
        WHEN s.status <> 'ok' THEN 'stay_not_imported'
        WHEN e.service_date < a.admit_date OR e.service_date > a.discharge_date THEN 'date_outside_stay'
      END AS reason,
      CASE
        WHEN e.reason IS NOT NULL THEN e.detail
        WHEN s.status IS NULL THEN 'no Form 1 whole-stay form for 施設コード ' || e.facility_code || ', データ識別番号 '
             || e.data_id || ', 入院年月日 ' || e.admit_ymd
        WHEN s.status = 'unknown_facility' THEN '施設コード ' || e.facility_code || ' has no row for the stay''s fiscal year in the facilities file'
        WHEN s.status <> 'ok' THEN 'the stay''s Form 1 was not imported (' || s.status || ')'
        WHEN e.service_date < a.admit_date OR e.service_date > a.discharge_date THEN
             '実施年月日 ' || strftime(e.service_date, '%Y%m%d') || ' outside the stay ' || strftime(a.admit_date, '%Y%m%d')
             || '-' || strftime(a.discharge_date, '%Y%m%d')
      END AS detail,
      a.admission_id, a.fiscal_year
    FROM ef_stage e
    LEFT JOIN stays s ON s.facility_code = e.facility_code AND s.data_id = e.data_id AND s.admit_ymd = e.admit_ymd
    LEFT JOIN admissions_out a ON a.admission_id = e.facility_code || '-' || e.data_id || '-' || e.admit_ymd
    """)
    con.execute(f"""
    CREATE VIEW billing_out AS
    SELECT admission_id, service_date, {L.KIND_SQL} AS kind, receipt_code AS code, quantity::REAL AS quantity, fiscal_year
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
