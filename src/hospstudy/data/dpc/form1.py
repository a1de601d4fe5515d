"""Form 1 (様式1) → admissions, diagnoses, procedures (DuckDB SQL over the staged lines).

Staging (:func:`parse_chunk`, one block of lines at a time) splits each line into the fields
a table uses (:data:`COLS`; the stay key as integers and a date) and gives the line-level
reasons (blank, header, short or long line, a key that is not 9/10 digits, an admission date
that is not a date, a ward-level form). :func:`build` then works on the staged
table as a whole: facility and fiscal-year checks, each payload's items parsed and checked, one
stay per whole-stay form (統括診療情報番号 0), and the three tables. Every line ends with exactly
one ``reason`` (NULL = imported); :mod:`hospstudy.data.dpc.report` counts them.

Manual pages: layout p14.20 / p17.19; A000010-A000030 p14.21-22 / p17.21; A001010 p14.23 /
p17.22; A006010-A006050 p14.23 / p17.23-24; A007010, ADL0010/0020 p14.24 / p17.25; JCS0010
p14.24 / p17.26 (p14 = FY2014 edition, p17 = FY2017 edition, as transcribed in open-dpc-jp).
"""

from __future__ import annotations

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


def norm_text(expr: str) -> str:
    """Upper-cased, half-width, no spaces. ASCII text (bytes = characters) skips the full-width
    translation, a no-op on it that cost 2.7 µs a value (121k ICD-10 codes: 0.33 CPU s)."""
    return (f"CASE WHEN strlen({expr}) = length({expr}) THEN upper(replace({expr}, ' ', '')) "
            f"ELSE upper(replace(replace(translate({expr}, '{_FW}', '{_HW}'), ' ', ''), '　', '')) END")


def kcode_sql(expr: str) -> str:
    """The data model's K-code from a fee-schedule code as written (``K0821ｲ`` → ``K0821``);
    '' when it does not start like a K-code."""
    return f"regexp_extract({norm_text(expr)}, '^K[0-9]{{3}}(-[0-9]+)?[0-9]?')"


def ymd(expr: str) -> str:
    """A yyyymmdd text as DATE (NULL when not 8 digits or not a calendar date)."""
    return f"CASE WHEN regexp_full_match({expr}, '[0-9]{{8}}') THEN try_strptime({expr}, '%Y%m%d')::DATE END"


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


# The fields read (0-based) and the fields staged: 回数管理番号, バージョン and payload 4 are used by
# no table; 統括診療情報番号 only to tell a ward-level form (a reason, at staging). Staging all 17
# as text made the Form 1 work table (4M lines) outgrow DuckDB's 1GB limit and spill.
# The stay key is staged as integers and a date (fac, pid, admit_date), as EF's: the Form 1 build
# groups and joins on it.
STAGED = tuple(name for name in _F if name not in ("facility_code", "data_id", "admit_ymd", "kaisu", "form_no", "version", "p4"))
COLS = sorted(_F.index(name) for name in (*STAGED, "facility_code", "data_id", "admit_ymd", "form_no"))


def parse_chunk(b: S.Block, first_line: int, file_id: int) -> pa.Table:
    """A block of Form 1 lines (split into the fields :data:`COLS`) as the staging table: every line one
    row, the fields and 入院年月日 as a date for well-formed lines, and the line-level reason
    (numpy over the good lines; the few lines that are not well-formed, or whose 施設コード is not
    9 digits, are looked at one by one as text: blank, header, short or long)."""
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

    pos = np.full(n, -1, dtype=np.int64)
    pos[gi] = np.arange(g)
    idx = None if g == n else pa.array(pos, mask=pos < 0)
    out = {"file_id": pa.array(np.full(n, file_id, np.int32)),
           "line_no": pa.array(np.arange(first_line, first_line + n, dtype=np.int64))}
    key_ok = ok_fac & ok_id
    for name, arr in (("fac", pa.array(v_fac.astype(np.int32), mask=~key_ok)), ("pid", pa.array(v_id, mask=~key_ok))):
        out[name] = arr if idx is None else arr.take(idx)
    for name in STAGED:
        out[name] = cols[name] if idx is None else cols[name].take(idx)
    ad = pa.array(d_ad.astype(np.int32), mask=~ok_ad).cast(pa.date32())
    out["admit_date"] = ad if idx is None else ad.take(idx)
    out["reason"] = pa.array(reason, pa.string())
    out["detail"] = pa.array(detail, pa.string())
    return pa.table(out)


def create_staging(con) -> None:
    cols = ", ".join(f"{c} VARCHAR" for c in STAGED)
    con.execute(f"CREATE TABLE f1_stage (file_id INTEGER, line_no BIGINT, fac INTEGER, pid BIGINT, {cols}, admit_date DATE, "
                "reason VARCHAR, detail VARCHAR)")


def build(con, fiscal_years: tuple[int, int] | None) -> None:
    """From ``f1_stage`` and ``fac`` (fac, fiscal_year, hospital_id): the tables
    ``f1_lines`` (every line with its final reason), ``stays``, ``admissions_out``,
    ``diagnoses_out``, ``procedures_out``."""
    used = [c for c, p in L.PAYLOADS.items() if p.used]
    known = list(L.PAYLOADS)
    single = ["A000010", "A000020", "A000030", "A001010", "ADL0010", "ADL0020", "JCS0010",
              "A006010", "A006020", "A006030", "A006031"]
    fy_lo, fy_hi = fiscal_years or (0, 9999)
    birth = ("CASE WHEN regexp_full_match(p1, '[0-9]{8}') AND substr(p1, 1, 4) <> '0000' THEN "
             "try_strptime(substr(p1, 1, 4) || CASE substr(p1, 5, 2) WHEN '00' THEN '0701' ELSE substr(p1, 5, 2) "
             "|| CASE substr(p1, 7, 2) WHEN '00' THEN '15' ELSE substr(p1, 7, 2) END END, '%Y%m%d')::DATE END")
    icd = norm_text("replace(p2, '.', '')")
    dest_known = _inlist(L.DISCHARGE_DEST)
    not_dis = _inlist(L.NOT_YET_DISCHARGED)
    # A view: materialising it copied every staged column once more (690k Form 1 lines: 1.3 CPU s)
    con.execute(f"""
    CREATE VIEW f1_items AS
    WITH s AS (
      SELECT * FROM f1_stage WHERE reason IS NULL
    ), k AS (
      SELECT s.*, (year(admit_date) - CASE WHEN month(admit_date) < 4 THEN 1 ELSE 0 END)::SMALLINT AS fy,
             f.hospital_id
      FROM s LEFT JOIN fac f ON f.fac = s.fac
        AND f.fiscal_year = year(s.admit_date) - CASE WHEN month(s.admit_date) < 4 THEN 1 ELSE 0 END
    )
    SELECT k.*,
      CASE WHEN code = 'A000010' THEN {birth} END AS birth_date,
      CASE WHEN code IN ('A000030', 'A007010') THEN {ymd('p1')} END AS d1,
      CASE WHEN code IN ({_inlist(L.DIAGNOSIS_ROLE)}) THEN {icd} END AS icd,
      CASE WHEN code = 'A007010' THEN {kcode_sql('p2')} END AS kcode,
      CASE WHEN code = 'A001010' THEN TRY_CAST(p2 AS DOUBLE) END AS n2,
      CASE WHEN code = 'A001010' THEN TRY_CAST(p3 AS DOUBLE) END AS n3,
      CASE WHEN code = 'JCS0010' THEN regexp_extract(p2, '^[0-9]+') END AS jcs_txt
    FROM k
    """)
    item_reason = f"""CASE
        WHEN fy NOT BETWEEN {fy_lo} AND {fy_hi} THEN 'outside_fiscal_years'
        WHEN hospital_id IS NULL THEN 'unknown_facility'
        WHEN code NOT IN ({_inlist(known)}) THEN 'unknown_payload_code'
        WHEN code NOT IN ({_inlist(used)}) THEN 'payload_not_used'
        WHEN code = 'A000010' AND (birth_date IS NULL OR birth_date > admit_date
             OR date_diff('year', birth_date, admit_date) > 121) THEN 'bad_date'
        WHEN code = 'A000010' AND p2 NOT IN ({_inlist(L.SEX)}) THEN 'bad_code'
        WHEN code = 'A000020' AND NOT regexp_full_match(p5, '[1-3][0-9]{{2}}') THEN 'bad_code'
        WHEN code = 'A000020' AND NOT regexp_full_match(p6, '[0-9]') THEN 'bad_code'
        WHEN code = 'A000030' AND p2 IN ({not_dis}) THEN 'stay_not_discharged'
        WHEN code = 'A000030' AND (d1 IS NULL OR d1 < admit_date) THEN 'bad_date'
        WHEN code = 'A000030' AND p2 NOT IN ({dest_known}) THEN 'bad_code'
        WHEN code IN ({_inlist(L.DIAGNOSIS_ROLE)}) AND NOT regexp_full_match(icd, '{ICD10_PATTERN[1:-1]}') THEN 'bad_code'
        WHEN code = 'A007010' AND d1 IS NULL THEN 'bad_date'
        WHEN code = 'A007010' AND (kcode = '' OR NOT regexp_full_match(kcode, '{KCODE_PATTERN[1:-1]}')) THEN 'bad_code'
        WHEN code = 'A001010' AND ((p2 <> '' AND n2 IS NULL) OR (p3 <> '' AND n3 IS NULL)) THEN 'bad_code'
        WHEN code IN ('ADL0010', 'ADL0020') AND NOT regexp_matches(p2, '{adl_regex()}') THEN 'bad_code'
        WHEN code = 'JCS0010' AND jcs_txt NOT IN ({_inlist(L.JCS_VALUES)}) THEN 'bad_code'
      END"""
    item_detail = f"""CASE
        WHEN fy NOT BETWEEN {fy_lo} AND {fy_hi} THEN 'fiscal year ' || fy
        WHEN hospital_id IS NULL THEN '施設コード ' || {key_fields()[0]} || ' has no row for fiscal year ' || fy || ' in the facilities file'
        WHEN code NOT IN ({_inlist(known)}) THEN 'payload code ' || code
        WHEN code = 'A000010' THEN '生年月日 ' || p1 || ', 性別 ' || p2
        WHEN code = 'A000020' THEN '予定・救急医療入院 ' || p5 || ', 救急車 ' || p6
        WHEN code = 'A000030' THEN '退院年月日 ' || p1 || ', 退院先 ' || p2
        WHEN code IN ({_inlist(L.DIAGNOSIS_ROLE)}) THEN code || ' ICD-10 ' || p2
        WHEN code = 'A007010' THEN '手術日 ' || p1 || ', 点数表コード ' || p2
        WHEN code = 'A001010' THEN '身長 ' || p2 || ', 体重 ' || p3
        ELSE code || ' ' || p2
      END"""
    # Only the columns the next steps read; the detail only of items with a reason; the rank of
    # an item among its duplicates only where its key has more than one line (a window over all
    # lines cost 0.24 CPU s per 200k lines, the count per key 0.05).
    con.execute(f"""
    CREATE TABLE f1_checked AS
    WITH r AS (
      SELECT file_id, line_no, fac, pid, admit_date, code, seq, p1, p2, p3, p5, p6, p7, p8, p9, fy, hospital_id, birth_date, d1, icd, kcode, n2, n3, jcs_txt,
        CASE WHEN code IN ({_inlist(single)}) THEN '' ELSE seq END AS dkey, {item_reason} AS ireason
      FROM f1_items
    ), multi AS (
      SELECT fac, pid, admit_date, code, dkey FROM r GROUP BY ALL HAVING count(*) > 1
    ), ranked AS (
      SELECT file_id, line_no,
        row_number() OVER (PARTITION BY fac, pid, admit_date, code, dkey ORDER BY file_id, line_no) AS dup
      FROM r SEMI JOIN multi USING (fac, pid, admit_date, code, dkey)
    )
    SELECT r.* EXCLUDE (dkey), CASE WHEN ireason IS NOT NULL THEN {item_detail} END AS idetail, coalesce(k.dup, 1) AS dup
    FROM r LEFT JOIN ranked k USING (file_id, line_no)
    """)
    # A stay: a whole-stay form whose A000010, A000020 and A000030 items are all good.
    con.execute(f"""
    CREATE TABLE stays AS
    SELECT fac, pid, admit_date, any_value(fy) AS fy,
      any_value(hospital_id) AS hospital_id,
      bool_or(code = 'A000030' AND ireason = 'stay_not_discharged') AS not_discharged,
      bool_or(code = 'A000010' AND ireason IS NULL AND dup = 1) AS has10,
      bool_or(code = 'A000020' AND ireason IS NULL AND dup = 1) AS has20,
      bool_or(code = 'A000030' AND ireason IS NULL AND dup = 1) AS has30,
      bool_or(ireason IN ('unknown_facility', 'outside_fiscal_years')) AS outside
    FROM f1_checked GROUP BY fac, pid, admit_date
    """)
    con.execute(f"""
    ALTER TABLE stays ADD COLUMN status VARCHAR;
    UPDATE stays SET status = CASE
      WHEN fy NOT BETWEEN {fy_lo} AND {fy_hi} THEN 'outside_fiscal_years'
      WHEN hospital_id IS NULL THEN 'unknown_facility'
      WHEN not_discharged THEN 'stay_not_discharged'
      WHEN NOT (has10 AND has20 AND has30) THEN 'incomplete_stay'
      ELSE 'ok' END;
    """)
    con.execute("""
    CREATE TABLE stay_vals AS
    SELECT c.fac, c.pid, c.admit_date,
      any_value(CASE WHEN code = 'A000010' THEN birth_date END) AS birth_date,
      any_value(CASE WHEN code = 'A000010' THEN p2 END) AS sex_code,
      any_value(CASE WHEN code = 'A000010' THEN p1 END) AS birth_raw,
      any_value(CASE WHEN code = 'A000020' THEN p5 END) AS sched,
      any_value(CASE WHEN code = 'A000020' THEN p6 END) AS amb,
      any_value(CASE WHEN code = 'A000030' THEN d1 END) AS discharge_date,
      any_value(CASE WHEN code = 'A000030' THEN p2 END) AS dest,
      any_value(CASE WHEN code = 'A000030' THEN p3 END) AS outcome,
      any_value(CASE WHEN code = 'A001010' THEN n2 END) AS height,
      any_value(CASE WHEN code = 'A001010' THEN n3 END) AS weight,
      any_value(CASE WHEN code = 'JCS0010' THEN jcs_txt END) AS jcs,
      any_value(CASE WHEN code = 'ADL0010' THEN p2 END) AS adl_adm,
      any_value(CASE WHEN code = 'ADL0020' THEN p2 END) AS adl_dis
    FROM f1_checked c
    WHERE ireason IS NULL AND dup = 1
    GROUP BY c.fac, c.pid, c.admit_date
    """)
    # Procedures outside the stay break the data model: their lines are rejected.
    con.execute(f"""
    CREATE TABLE f1_lines AS
    SELECT c.file_id, c.line_no, c.fac, c.pid, c.admit_date, c.code, c.seq, c.p2, c.p5, c.p6, c.p7, c.p8, c.p9,
      c.icd, c.kcode, c.d1,
      CASE
        WHEN c.ireason IN ('unknown_facility', 'outside_fiscal_years', 'unknown_payload_code', 'payload_not_used') THEN c.ireason
        WHEN s.status IN ('unknown_facility', 'outside_fiscal_years', 'stay_not_discharged') THEN s.status
        WHEN c.ireason IS NOT NULL THEN c.ireason
        WHEN c.dup > 1 THEN 'duplicate_item'
        WHEN s.status <> 'ok' THEN s.status
        WHEN c.code = 'A007010' AND (c.d1 < c.admit_date OR c.d1 > v.discharge_date) THEN 'date_outside_stay'
      END AS reason,
      CASE
        WHEN c.ireason IS NOT NULL THEN c.idetail
        WHEN c.dup > 1 THEN 'a second ' || c.code || CASE WHEN c.code IN ({_inlist(single)}) THEN '' ELSE ' 連番 ' || c.seq END || ' for the stay'
        WHEN s.status = 'incomplete_stay' THEN 'the stay lacks a valid ' || concat_ws(', ',
             CASE WHEN NOT s.has10 THEN 'A000010' END, CASE WHEN NOT s.has20 THEN 'A000020' END,
             CASE WHEN NOT s.has30 THEN 'A000030' END)
        WHEN c.code = 'A007010' THEN '手術日 ' || strftime(c.d1, '%Y%m%d') || ' outside the stay'
      END AS detail
    FROM f1_checked c
    JOIN stays s ON s.fac = c.fac AND s.pid = c.pid AND s.admit_date = c.admit_date
    LEFT JOIN stay_vals v ON v.fac = c.fac AND v.pid = c.pid AND v.admit_date = c.admit_date
    """)
    dest_case = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in L.DISCHARGE_DEST.items())
    con.execute(f"""
    CREATE TABLE admissions_out AS
    SELECT {key_text('s')} AS admission_id,
      {key_fields('s')[0]} || '-' || {key_fields('s')[1]} AS patient_id,
      s.hospital_id::INTEGER AS hospital_id, s.admit_date, v.discharge_date,
      (year(s.admit_date) - year(v.birth_date) - CASE WHEN strftime(s.admit_date, '%m%d') < strftime(v.birth_date, '%m%d') THEN 1 ELSE 0 END)::SMALLINT AS age,
      CASE v.sex_code {' '.join(f"WHEN '{k}' THEN '{x}'" for k, x in L.SEX.items())} END AS sex,
      NOT starts_with(v.sched, '{L.SCHEDULED_PREFIX}') AS emergency,
      v.amb = '{L.AMBULANCE_YES}' AS ambulance,
      CASE WHEN v.dest = '8' OR v.outcome IN ({_inlist(L.DEATH_OUTCOMES)}) THEN 'death' ELSE CASE v.dest {dest_case} END END AS discharge_to,
      (CASE WHEN v.height > 0 THEN v.height END)::REAL AS height_cm,
      (CASE WHEN v.weight > 0 THEN v.weight END)::REAL AS weight_kg,
      TRY_CAST(v.jcs AS SMALLINT) AS jcs,
      v.adl_adm, v.adl_dis,
      CAST(NULL AS VARCHAR) AS spinal_level,
      s.fy AS fiscal_year,
      (v.dest = '8') <> (v.outcome IN ({_inlist(L.DEATH_OUTCOMES)})) AS death_codes_disagree,
      regexp_matches(v.birth_raw, '^[0-9]{{4}}(00|[0-9]{{2}}00)$') AS partial_birth,
      -- the rank of admission_id: an integer to sort the billing lines by (not written)
      row_number() OVER (ORDER BY s.fac, s.pid, s.admit_date) AS stay_no,
      s.fac, s.pid  -- the key as staged (not written)
    FROM stays s JOIN stay_vals v ON v.fac = s.fac AND v.pid = s.pid AND v.admit_date = s.admit_date
    WHERE s.status = 'ok'
    """)
    con.execute(f"""
    CREATE TABLE diagnoses_out AS
    SELECT {key_text('l')} AS admission_id, l.icd AS icd10,
      CASE l.code {' '.join(f"WHEN '{k}' THEN '{v}'" for k, v in L.DIAGNOSIS_ROLE.items())} END AS role,
      '{L.SUSPECTED_MODIFIER}' IN (l.p5, l.p6, l.p7, l.p8) AS suspected,
      l.p9 AS name, l.file_id, l.line_no
    FROM f1_lines l WHERE l.reason IS NULL AND l.code IN ({_inlist(L.DIAGNOSIS_ROLE)})
    """)
    # spinal_level: not a Form 1 item; derived from the disease name (payload 9) of a confirmed
    # C79.5 diagnosis when it names the spine's region (several regions -> multiple).
    con.execute("""
    CREATE TABLE spinal AS
    SELECT admission_id, CASE WHEN count(DISTINCT lv) > 1 THEN 'multiple' ELSE any_value(lv) END AS spinal_level
    FROM (
      SELECT admission_id, CASE
        WHEN contains(name, '多発') THEN 'multiple'
        WHEN contains(name, '頚椎') OR contains(name, '頸椎') THEN 'cervical'
        WHEN contains(name, '胸椎') THEN 'thoracic'
        WHEN contains(name, '腰椎') THEN 'lumbar'
        WHEN contains(name, '仙骨') OR contains(name, '仙椎') THEN 'sacral' END AS lv
      FROM diagnoses_out WHERE icd10 = 'C795' AND NOT suspected
    ) WHERE lv IS NOT NULL GROUP BY admission_id;
    UPDATE admissions_out a SET spinal_level = s.spinal_level FROM spinal s WHERE a.admission_id = s.admission_id;
    """)
    con.execute(f"""
    CREATE TABLE procedures_out AS
    SELECT {key_text('l')} AS admission_id, l.kcode AS proc_code,
      l.d1 AS proc_date, l.p2 AS raw_code, 'form1' AS source
    FROM f1_lines l WHERE l.reason IS NULL AND l.code = 'A007010'
    """)
    # The intermediate tables go: EF is read next, and what DuckDB holds counts against its limit
    con.execute("DROP TABLE f1_checked; DROP TABLE stay_vals; DROP TABLE spinal")
