"""The synthetic world written as the Ministry's raw DPC files (``hospstudy synth --format dpc-raw``).

The generator (:func:`hospstudy.data.synth.generate`) makes the tables of one fiscal year at a
time; :class:`RawSink` turns each into raw text instead of Parquet: ``FF1_<fy>.txt`` (Form 1,
様式1, 17 fields, long "payload" format: one line per item) and ``EFn_<fy>.txt`` (入院EF統合ファイル,
31 fields: one line per billing line), both CP932, tab-separated, CRLF, no header, every
hospital concatenated, plus ``facilities.csv`` (UTF-8) and ``truth.json``. The file of a
fiscal year holds the stays *admitted* in it (as the Parquet partitions do).

Lines are built column-wise with Arrow (``binary_join_element_wise`` over byte columns), never
one Python loop per line; Japanese text comes from small vocabularies encoded to CP932 once.

Layout facts follow the Ministry's survey manual 「DPCの評価・検証等に係る調査（退院患者調査）
実施説明資料」 as transcribed in sy-wada/open-dpc-jp (``spec/dpc/base/<year>.json``: Form 1 layout
p.19, payloads A000010-A000030 p.21, A001010/A001030 p.22, A006010-A006031 p.23-24, A007010,
ADL0010/0020 p.25, JCS0010 p.26, EF layout p.162 and field 17 p.151 of the FY2017 edition).
The identifier formats and every choice where the manual leaves room are in docs/synthetic.md
("As raw DPC files").
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hospstudy.data.synth import arrowutil as au
from hospstudy.data.synth import billing as B
from hospstudy.data.synth import params as P
from hospstudy.errors import InputError

__all__ = ["RawSink", "RAW_ENTRY_GLOBS", "facility_codes", "data_ids", "FACILITY_BASE", "EF_CHUNK"]

ENCODING = "cp932"
FACILITY_BASE = 100_000_000  # synthetic 施設コード = 100000000 + hospital_id (9 digits)
RAW_ENTRY_GLOBS = ("FF1_*.txt", "EFn_*.txt", "facilities.csv", "truth.json")
EF_CHUNK = 500_000  # EF lines assembled at a time: bounds the text held in memory
FORM1_BLOCK = 100_000  # admissions whose Form 1 lines are assembled at a time
FIRST_EF17_CODE_YEAR = 2016  # EF field 17: a one-character flag before FY2016, then 12 digits
FIRST_LONG_FORM1_YEAR = 2014  # payload versions of the FY2014 manual; earlier files carry <fy>0401
WARD_FORM_SHARE = 0.08  # stays (of 2+ days) that also get two ward-level forms (統括診療情報番号 1, 2)

# -- identifiers ------------------------------------------------------------------------------

_K, _C, _M = 7_919_000_003, 1_234_567, 10**11  # draws.scramble's constants
_KINV = pow(_K, -1, _M)


def _mulmod(x: np.ndarray, k: int) -> np.ndarray:
    """(x * k) mod 10^11 for 0 <= x < 10^11 without int64 overflow."""
    hi, lo = x >> 20, x & ((1 << 20) - 1)
    t = (hi * k) % _M
    t = (t * (1 << 10)) % _M
    t = (t * (1 << 10)) % _M
    return (t + (lo * k) % _M) % _M


def _digits(arr: pa.Array) -> np.ndarray:
    """The integer value of fixed-width identifier strings after their one-letter prefix."""
    mat = au.fixed_matrix(arr)[:, 1:].astype(np.int64) - 48
    out = np.zeros(len(mat), np.int64)
    for j in range(mat.shape[1]):
        out = out * 10 + mat[:, j]
    return out


def facility_codes(hospital_ids) -> np.ndarray:
    """Synthetic 施設コード of hospital ids: 100000000 + hospital_id (9 digits)."""
    return FACILITY_BASE + np.asarray(hospital_ids, dtype=np.int64)


def data_ids(patient_ids: pa.Array) -> np.ndarray:
    """The 10-digit データ識別番号 of synthetic patient ids (``P`` + 11 digits).

    The generator's patient id scrambles ``kind * 10^10 + number`` (kind 1 metastatic spine
    surgery, 2 other spine surgery, 3 background; number = (fiscal year - 1990) * 10^8 + i for
    kinds 2 and 3). データ識別番号 = ``kind * 10^9 + number`` for kind 1 and
    ``kind * 10^9 + (fiscal year - 1990) * 10^7 + i`` for kinds 2 and 3: one patient keeps one
    number, and no two patients share one (the generator numbers patients nationally, so the
    number is also unique within each hospital, which is all DPC requires).
    """
    pnum = _mulmod((_digits(patient_ids) - _C) % _M, _KINV)
    kind, number = pnum // 10**10, pnum % 10**10
    yy, i = number // 10**8, number % 10**8
    ok = ((kind == 1) & (number < 10**9)) | (((kind == 2) | (kind == 3)) & (yy < 100) & (i < 10**7))
    if not ok.all():
        raise InputError("--format dpc-raw: a synthetic patient number does not fit the 10-digit データ識別番号 "
                         "(supported: fiscal years up to 2089 and scale up to 75)")
    return np.where(kind == 1, 10**9 + number, kind * 10**9 + yy * 10**7 + i)


# -- text columns -----------------------------------------------------------------------------


def _digit_matrix(x: np.ndarray, width: int) -> np.ndarray:
    if len(x) and (x.min() < 0 or x.max() >= 10**width):
        raise ValueError(f"value does not fit {width} digits")
    mat = np.empty((len(x), width), np.uint8)
    x = x.copy()
    for j in range(width - 1, -1, -1):
        mat[:, j] = 48 + (x % 10)
        x //= 10
    return mat


def _num(values, width: int) -> pa.Array:
    """Zero-padded decimal digits of non-negative integers, as a binary column."""
    x = np.asarray(values, dtype=np.int64)
    if len(x) > 4096:  # many rows, few distinct values (dates, sequence numbers): format those once
        uniq, inv = np.unique(x, return_inverse=True)
        if len(uniq) * 8 < len(x):
            return au.fixed_width_strings(_digit_matrix(uniq, width)[inv]).cast(pa.binary())
    return au.fixed_width_strings(_digit_matrix(x, width)).cast(pa.binary())


def _ymd(days) -> pa.Array:
    """yyyymmdd of day numbers (days since 1970-01-01)."""
    x = np.asarray(days, dtype=np.int64)
    uniq, inv = np.unique(x, return_inverse=True)
    d = uniq.astype("datetime64[D]")
    y = d.astype("datetime64[Y]").astype(np.int64) + 1970
    mo = d.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dd = (d - d.astype("datetime64[M]")).astype(np.int64) + 1
    return au.fixed_width_strings(_digit_matrix(y * 10000 + mo * 100 + dd, 8)[inv]).cast(pa.binary())


def _plain(values) -> pa.Array:
    """Integers written without padding ('1', '10', '300')."""
    return pa.array(np.asarray(values, dtype=np.int64)).cast(pa.string()).cast(pa.binary())


def _vocab(words, idx) -> pa.Array:
    """CP932 bytes of a small vocabulary, taken by index."""
    enc = pa.array([w.encode(ENCODING) for w in words], pa.binary())
    return enc.take(pa.array(np.asarray(idx, dtype=np.int64)))


def _text(arr) -> pa.Array:
    """A string column (ASCII) as bytes; nulls become empty fields."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    return pc.fill_null(arr.cast(pa.binary()), b"")


def _lines(fields: list) -> pa.Array:
    """Tab-joined lines ending in CRLF; a field is a binary column or a constant ``bytes``."""
    cols = [pa.scalar(f, pa.binary()) if isinstance(f, bytes) else f for f in fields]
    joined = pc.binary_join_element_wise(*cols, pa.scalar(b"\t", pa.binary()))
    return pc.binary_join_element_wise(joined, pa.scalar(b"", pa.binary()), pa.scalar(b"\r\n", pa.binary()))


def _lines_noeol(fields: list) -> pa.Array:
    """Tab-joined pieces of a line (no line end): a run of fields joined once."""
    cols = [pa.scalar(f, pa.binary()) if isinstance(f, bytes) else f for f in fields]
    if all(isinstance(c, pa.Scalar) for c in cols):
        raise ValueError("at least one column")
    return pc.binary_join_element_wise(*cols, pa.scalar(b"\t", pa.binary()))


def _write_lines(fh, lines: pa.Array) -> int:
    if len(lines) == 0:
        return 0
    if lines.null_count:
        raise RuntimeError("internal error: a raw line came out null")
    offsets = np.frombuffer(lines.buffers()[1], np.int32 if lines.type == pa.binary() else np.int64)
    offsets = offsets[lines.offset: lines.offset + len(lines) + 1]
    data = lines.buffers()[2]
    fh.write(memoryview(data)[offsets[0]: offsets[-1]])
    return len(lines)


# -- vocabularies (names written into the text fields; CP932) --------------------------------

_ICD_NAMES = {
    "C795": "転移性骨腫瘍", "G952": "脊髄圧迫症", "C349": "肺癌", "C509": "乳癌", "C61": "前立腺癌",
    "C64": "腎癌", "C220": "肝細胞癌", "C189": "結腸癌", "C73": "甲状腺癌", "C169": "胃癌", "C159": "食道癌",
    "C259": "膵癌", "C900": "多発性骨髄腫", "C833": "びまん性大細胞型Ｂ細胞性リンパ腫", "C859": "悪性リンパ腫",
    "C780": "転移性肺腫瘍", "C787": "転移性肝腫瘍", "C793": "転移性脳腫瘍", "C782": "癌性胸膜炎",
    "M480": "腰部脊柱管狭窄症", "M511": "腰椎椎間板ヘルニア", "S320": "腰椎骨折", "S220": "胸椎骨折",
    "S720": "大腿骨頚部骨折", "S721": "大腿骨転子部骨折", "S722": "大腿骨転子下骨折", "J189": "肺炎",
    "I500": "うっ血性心不全", "I639": "脳梗塞", "E119": "２型糖尿病", "N390": "尿路感染症", "T814": "術後創部感染",
    "F059": "せん妄", "I802": "深部静脈血栓症", "I269": "肺塞栓症", "A419": "敗血症",
}
# Disease name of C79.5 by the stay's spinal level (the importer may derive spinal_level from it).
_C795_BY_LEVEL = {"cervical": "転移性頚椎腫瘍", "thoracic": "転移性胸椎腫瘍", "lumbar": "転移性腰椎腫瘍",
                  "sacral": "転移性仙骨腫瘍", "multiple": "多発性転移性脊椎腫瘍"}
_K_NAMES = {
    "K1421": "脊椎固定術（前方椎体固定）", "K1422": "脊椎固定術（後方又は後側方固定）",
    "K1423": "脊椎固定術（後方椎体固定）", "K1424": "脊椎固定術（前方後方同時固定）",
    "K1425": "椎弓切除術", "K1426": "椎弓形成術", "K142-4": "経皮的椎体形成術", "K136": "脊椎悪性腫瘍手術",
    "K136-2": "腫瘍脊椎骨全摘術", "K0461": "骨折観血的手術（大腿）", "K0811": "人工骨頭挿入術（股）",
    "K0821": "人工関節置換術（膝）", "K2821": "水晶体再建術（眼内レンズを挿入する場合）",
}
_ROLE_CODE = {"main": "A006010", "trigger": "A006020", "resource": "A006030", "comorbidity": "A006040",
              "complication": "A006050"}
_DEST = {"home": 0, "other_hospital": 1, "care_facility": 2, "death": 3, "other": 4}

# EF: receipt code -> (データ区分, 解釈番号, name, unit, points). The kind of a billing line
# follows from データ区分 and receipt code (docs/synthetic.md, "As raw DPC files").
_EF_DAILY = ("90", "A100", "急性期一般入院料", "", 1650)
_EF_SURGERY = ("50", None, "手術", "", 30000)  # 解釈番号 = the stay's K-code on that date
_EF_TRANSFUSION = ("50", "K920", "保存血液輸血", "", 450)
_EF_REHAB = ("80", "H002", "運動器リハビリテーション料", "", 185)
_EF_RADIO = ("80", "M001", "体外照射", "", 840)
_EF_DRUG = ("21", "", "内服薬", "錠", 12)


def _ef_code_table() -> list[tuple]:
    rows = []
    for code, kind in B._VOCAB:
        if kind == "other":
            rows.append(_EF_DAILY)
        elif kind == "procedure":
            rows.append(_EF_SURGERY)
        elif kind == "transfusion":
            rows.append(_EF_TRANSFUSION)
        elif kind == "rehabilitation":
            rows.append(_EF_REHAB[:2] + (_EF_REHAB[2] + ("（Ⅰ）" if code.endswith("410") else "（Ⅱ）"),) + _EF_REHAB[3:])
        elif kind == "radiotherapy":
            rows.append(_EF_RADIO)
        elif code in P.TARGETED_DRUGS:
            rows.append(("21", "", f"分子標的薬{list(P.TARGETED_DRUGS).index(code) + 1}", "錠", 900))
        else:
            rows.append(("21" if int(code) % 3 else "33", "", f"薬剤{code[-3:]}", "錠" if int(code) % 3 else "ｍＬ",
                         5 + (int(code) * 37) % 400))
    return rows


_EF_TABLE = _ef_code_table()


class RawSink:
    """Receives the generator's tables one fiscal year at a time and writes them as raw files."""

    def __init__(self, out: Path, rng_for):
        self.out = Path(out)
        self.rng_for = rng_for
        self.lines = {"form1": 0, "ef": 0, "ward_level_form1": 0}
        self._year = None

    # The generator calls these in order: facilities, then per fiscal year year_tables and
    # billing blocks, then close.
    def facilities(self, tbl: pa.Table) -> None:
        path = self.out / "facilities.csv"
        cols = {c: tbl.column(c).to_pylist() for c in tbl.column_names}
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["facility_code", "fiscal_year", "cancer_center", "beds", "teaching", "region"])
            for h, fy, cc, beds, teach, region in zip(cols["hospital_id"], cols["fiscal_year"], cols["cancer_center"],
                                                       cols["beds"], cols["teaching"], cols["region"]):
                w.writerow([FACILITY_BASE + h, fy, int(cc), beds, int(teach), region])

    def year_tables(self, fy: int, tables: dict) -> None:
        adm = tables["admissions"]
        n = adm.num_rows
        rng = self.rng_for("raw_form1", fy)
        ids = adm.column("admission_id").combine_chunks()
        keys = {
            "fac": _num(facility_codes(adm.column("hospital_id").to_numpy()), 9),
            "data": _num(data_ids(adm.column("patient_id").combine_chunks()), 10),
            "admit_days": adm.column("admit_date").combine_chunks().cast(pa.int32()).to_numpy().astype(np.int64),
            "discharge_days": adm.column("discharge_date").combine_chunks().cast(pa.int32()).to_numpy().astype(np.int64),
        }
        keys["admit"] = _ymd(keys["admit_days"])
        keys["discharge"] = _ymd(keys["discharge_days"])
        dx, px = tables["diagnoses"], tables["procedures"]
        d_pos, p_pos = _positions(dx.column("admission_id"), ids), _positions(px.column("admission_id"), ids)
        self._year = {"fy": fy, "ids": ids, "keys": keys,
                      "proc": (p_pos, px.column("proc_code").combine_chunks(),
                               px.column("proc_date").combine_chunks().cast(pa.int32()).to_numpy().astype(np.int64))}
        with (self.out / f"FF1_{fy}.txt").open("wb") as fh:
            for a in range(0, n, FORM1_BLOCK):
                z = min(a + FORM1_BLOCK, n)
                self.lines["form1"] += _write_lines(fh, self._form1_block(rng, fy, adm, keys, dx, d_pos, px, p_pos, a, z))
        (self.out / f"EFn_{fy}.txt").write_bytes(b"")

    def _form1_block(self, rng, fy, adm, keys, dx, d_pos, px, p_pos, a, z) -> pa.Array:
        n = z - a
        sl = lambda col: adm.column(col).slice(a, n).combine_chunks()  # noqa: E731
        fac, data, admit = keys["fac"].slice(a, n), keys["data"].slice(a, n), keys["admit"].slice(a, n)
        admit_days = keys["admit_days"][a:z]
        discharge_days = keys["discharge_days"][a:z]
        items: list[tuple[np.ndarray, int, pa.Array]] = []  # (row within block, order key, line)

        def form1(rows, order, code, version, renban, payloads):
            """Whole-stay lines (統括診療情報番号 0) of one payload code for ``rows``."""
            rows = np.asarray(rows, np.int64)
            f = [fac.take(rows), data.take(rows), admit.take(rows), b"1", b"0", code.encode(), version,
                 renban if not isinstance(renban, int) else str(renban).encode()]
            f += list(payloads) + [b""] * (9 - len(payloads))
            items.append((rows, order, _lines(f)))

        ver = (f"{fy}0401" if fy < FIRST_LONG_FORM1_YEAR else "20140401").encode()
        allrows = np.arange(n)
        # A000010: birth date consistent with the age at admission, sex, a fake postcode.
        age = sl("age").to_numpy().astype(np.int64)
        birth = _birth_days(rng, admit_days, age)
        male = pc.equal(sl("sex"), "M").to_numpy(zero_copy_only=False)
        postcode = _num(rng.integers(1_000_000, 10_000_000, n), 7)
        form1(allrows, 0, "A000010", ver, 1, [_ymd(birth), _vocab(["2", "1"], male.astype(np.int64)), postcode])
        # A000020: admission date, route, referral, from own outpatients, scheduled/emergency, ambulance.
        emergency = sl("emergency").to_numpy(zero_copy_only=False)
        ambulance = sl("ambulance").to_numpy(zero_copy_only=False)
        sched = np.where(emergency, np.where(rng.random(n) < 0.5, 1, 2), 0)
        route = np.where(rng.random(n) < 0.9, 1, 4)
        form1(allrows, 1, "A000020", ver, 1, [_ymd(admit_days), _plain(route), _plain(rng.integers(0, 2, n)),
                                             _plain(1 - emergency.astype(np.int64)),
                                             _vocab(["100", "200", "302"], sched), _plain(ambulance.astype(np.int64)),
                                             b"0", b"0"])
        # A000030: discharge date, destination, outcome, death within 24 h.
        dest = pc.index_in(sl("discharge_to"), value_set=pa.array(list(_DEST))).to_numpy(zero_copy_only=False).astype(np.int64)
        home_code = rng.choice([1, 2, 3], n, p=[0.6, 0.3, 0.1])
        care_code = rng.choice([5, 6, 7], n)
        dest_code = np.choose(dest, [home_code, np.full(n, 4), care_code, np.full(n, 8), np.full(n, 9)])
        dead = dest == _DEST["death"]
        outcome = np.where(dead, np.where(rng.random(n) < 0.8, 6, 7), rng.choice([1, 3, 4, 5, 9], n, p=[0.8, 0.02, 0.12, 0.04, 0.02]))
        within24 = np.where(dead & (discharge_days - admit_days <= 1), 1, 0)
        form1(allrows, 2, "A000030", ver, 1, [_ymd(discharge_days), _plain(dest_code), _plain(outcome), _plain(within24), b"0"])
        # A001010: height and weight (only when recorded).
        h, w = sl("height_cm"), sl("weight_kg")
        known = np.flatnonzero(pc.and_(pc.is_valid(h), pc.is_valid(w)).to_numpy(zero_copy_only=False))
        form1(known, 3, "A001010", ver, 1, [b"", _text(h.take(known).cast(pa.string())), _text(w.take(known).cast(pa.string()))])
        # ADL at admission and discharge, JCS at admission (only when recorded).
        for order, code, col in ((4, "ADL0010", "adl_adm"), (5, "ADL0020", "adl_dis")):
            v = sl(col)
            rows = np.flatnonzero(pc.is_valid(v).to_numpy(zero_copy_only=False))
            form1(rows, order, code, ver, 1, [b"", _text(v.take(rows))])
        v = sl("jcs")
        rows = np.flatnonzero(pc.is_valid(v).to_numpy(zero_copy_only=False))
        form1(rows, 6, "JCS0010", ver, 1, [b"", _text(v.take(rows).cast(pa.string()))])

        # Diagnoses by role; the second resource diagnosis is A006031; 連番 counts within a code.
        sel = np.flatnonzero((d_pos >= a) & (d_pos < z))
        if len(sel):
            rows = d_pos[sel] - a
            roles = dx.column("role").combine_chunks().take(pa.array(sel)).to_numpy(zero_copy_only=False).astype(str)
            icd = _text(dx.column("icd10").combine_chunks().take(pa.array(sel)))
            role_rank = np.searchsorted(np.array(sorted(_ROLE_CODE)), roles)  # any fixed order
            order = np.lexsort((np.arange(len(rows)), role_rank, rows))
            rows, roles, icd = rows[order], roles[order], icd.take(pa.array(order))
            grp = rows * 8 + role_rank[order]
            start = np.r_[0, np.flatnonzero(np.diff(grp)) + 1]
            renban = np.arange(len(rows)) - np.repeat(start, np.diff(np.r_[start, len(rows)])) + 1
            # Form 1 holds one main, one trigger and two resource diagnoses per stay; the
            # generator never makes more (a second would have nowhere to go).
            if (np.isin(roles, ["main", "trigger"]) & (renban != 1)).any() or ((roles == "resource") & (renban > 2)).any():
                raise RuntimeError("internal error: more main, trigger or resource diagnoses than Form 1 holds")
            codes = np.array([_ROLE_CODE[r] for r in roles], dtype=object)
            codes[(roles == "resource") & (renban == 2)] = "A006031"
            renban = np.where(np.isin(roles, ["comorbidity", "complication"]), renban, 1)
            names = _diagnosis_names(icd, rows, sl("spinal_level"))
            code_order = {"A006010": 10, "A006020": 11, "A006030": 12, "A006031": 13, "A006040": 14, "A006050": 15}
            for code in code_order:
                k = np.flatnonzero(codes == code)
                if not len(k):
                    continue
                kk = pa.array(k)
                # Order within a stay: code, then 連番 (one item per code and 連番).
                items.append((rows[k], code_order[code] * 64 + np.minimum(renban[k], 63),
                              _lines([fac.take(pa.array(rows[k])), data.take(pa.array(rows[k])), admit.take(pa.array(rows[k])),
                                      b"1", b"0", code.encode(), ver, _plain(renban[k]), b"", icd.take(kk), b"", b"",
                                      b"", b"", b"", b"", names.take(kk)])))
        # Surgery (A007010): date, K-code as the fee schedule writes it, count, side, anaesthesia, name.
        sel = np.flatnonzero((p_pos >= a) & (p_pos < z))
        if len(sel):
            rows = p_pos[sel] - a
            order = np.argsort(rows, kind="stable")
            rows, sel = rows[order], sel[order]
            start = np.r_[0, np.flatnonzero(np.diff(rows)) + 1]
            renban = np.arange(len(rows)) - np.repeat(start, np.diff(np.r_[start, len(rows)])) + 1
            kcode = px.column("proc_code").combine_chunks().take(pa.array(sel))
            pday = px.column("proc_date").combine_chunks().take(pa.array(sel)).cast(pa.int32()).to_numpy().astype(np.int64)
            names = _names(kcode, _K_NAMES, "手術（{}）")
            r = pa.array(rows)
            items.append((rows, 20 * 64 + np.minimum(renban, 63),
                          _lines([fac.take(r), data.take(r), admit.take(r), b"1", b"0", b"A007010", ver, _plain(renban),
                                  _ymd(pday), _text(kcode), b"", b"1", b"0", b"1", b"", b"", names])))
        # Ward-level forms (統括診療情報番号 1 and 2) for some stays: they are not stays.
        los = discharge_days - admit_days
        ward = np.flatnonzero((los >= 2) & (rng.random(n) < WARD_FORM_SHARE))
        if len(ward):
            split = admit_days[ward] + 1 + np.floor(rng.random(len(ward)) * (los[ward] - 1)).astype(np.int64)
            r = pa.array(ward)
            for t, (d0, d1) in enumerate(((admit_days[ward], split), (split, discharge_days[ward])), start=1):
                lines = _lines([fac.take(r), data.take(r), admit.take(r), b"1", str(t).encode(), b"A001030", ver, b"1",
                                _ymd(d0), _ymd(d1), b"0", b"0", b"", b"", b"", b"", b""])
                items.append((ward, 40 * 64 + 8 * t, lines))
                self.lines["ward_level_form1"] += len(ward)
                if fy >= 2020:
                    for code, col, o in (("ADL0030", "adl_adm", 0), ("ADL0040", "adl_dis", 1)):
                        v = sl(col).take(r)
                        ok = np.flatnonzero(pc.is_valid(v).to_numpy(zero_copy_only=False))
                        rr = pa.array(ward[ok])
                        items.append((ward[ok], 40 * 64 + 8 * t + 2 + o,
                                      _lines([fac.take(rr), data.take(rr), admit.take(rr), b"1", str(t).encode(), code.encode(),
                                              b"20200401", b"1", b"", _text(v.take(pa.array(ok))), b"", b"", b"", b"", b"", b"", b""])))
                        self.lines["ward_level_form1"] += len(ok)

        # One stay after another, items in a fixed order within a stay.
        rows = np.concatenate([np.broadcast_to(np.asarray(r, np.int64), (len(r),)) for r, _, _ in items])
        order_key = np.concatenate([np.broadcast_to(np.asarray(o, np.int64), (len(r),)) for r, o, _ in items])
        lines = pa.concat_arrays([ln for _, _, ln in items])
        perm = np.lexsort((order_key, rows))
        return lines.take(pa.array(perm))

    def billing(self, fy: int, block: int, lines: pa.Table) -> None:
        yr = self._year
        if yr is None or yr["fy"] != fy:
            raise RuntimeError("internal error: billing lines before their fiscal year's admissions")
        col = lines.column("admission_id").combine_chunks()
        adm_pos_all = _positions(col.dictionary, yr["ids"])[col.indices.to_numpy()]
        code_idx_all = lines.column("code").combine_chunks().indices.to_numpy().astype(np.int64)
        day_all = lines.column("service_date").combine_chunks().cast(pa.int32()).to_numpy().astype(np.int64)
        qty_all = lines.column("quantity").combine_chunks()
        # 順序番号: a running number within the stay over the block (lines are grouped by stay).
        n_all = len(adm_pos_all)
        start = np.r_[0, np.flatnonzero(np.diff(adm_pos_all)) + 1]
        seq_all = np.arange(n_all) - np.repeat(start, np.diff(np.r_[start, n_all])) + 1
        # The K-code of each surgery line: the stay's procedure on that date (Form 1 A007010).
        p_pos, p_code, p_day = yr["proc"]
        p_key = p_pos * 100_000 + p_day
        first = np.unique(p_key, return_index=True)[1]
        p_key_u, p_code_u = p_key[first], p_code.take(pa.array(first))
        keys = yr["keys"]
        table = _EF_TABLE
        i_surgery = B.CODES.index(P.BILLING_SURGERY_CODE)
        rng = self.rng_for("raw_ef", fy, block)
        flags = ["000000000000", "010000000000"] if fy >= FIRST_EF17_CODE_YEAR else ["0", "1"]
        # Constant runs of fields are joined once per stay or per receipt code, so a line is
        # 13 pieces instead of 31 fields.
        if "ef_stay" not in yr:
            n_adm = len(keys["admit_days"])
            seed = _insurer_seed(np.arange(n_adm))
            yr["ef_stay"] = (
                _lines_noeol([keys["fac"], keys["data"], keys["discharge"], keys["admit"]]),   # 1-4
                _lines_noeol([_num(6_000_000 + seed % 999_999, 8), b"1112"]),                  # 22-23
                _lines_noeol([b"00", b"010", _num((seed * 7 + 3) % 10**10, 10), b"0101", b"0", b"0", b"001"]),  # 25-31
            )
        stay_a, stay_g, stay_h = yr["ef_stay"]
        code_cat = _vocab([t[0] for t in table], np.arange(len(table)))                      # 5
        code_c = _lines_noeol([b"001", _vocab(B.CODES, np.arange(len(table))), _vocab(B.CODES, np.arange(len(table)))])  # 7-9
        interp = [t[1] or "" for t in table]
        code_d = _vocab([t[2] for t in table], np.arange(len(table)))                        # 11
        pts = _plain([t[4] for t in table])
        code_e = _lines_noeol([_vocab([t[3] for t in table], np.arange(len(table))), pts, b"0", pts])  # 13-16
        code_f = _lines_noeol([pts, b"0", b"0", b"1"])                                        # 18-21
        with (self.out / f"EFn_{fy}.txt").open("ab") as fh:
            for a in range(0, n_all, EF_CHUNK):
                z = min(a + EF_CHUNK, n_all)
                pos = pa.array(adm_pos_all[a:z])
                ci_np = code_idx_all[a:z]
                ci = pa.array(ci_np)
                day = day_all[a:z]
                n = z - a
                interp_col = _vocab(interp, ci_np)
                surg = np.flatnonzero(ci_np == i_surgery)
                if len(surg):
                    want = adm_pos_all[a:z][surg] * 100_000 + day[surg]
                    k = np.minimum(np.searchsorted(p_key_u, want), len(p_key_u) - 1)
                    if (p_key_u[k] != want).any():
                        raise RuntimeError("internal error: a surgery billing line without a procedure that day")
                    mask = np.zeros(n, bool)
                    mask[surg] = True
                    kc = np.zeros(n, np.int64)
                    kc[surg] = k
                    interp_col = pc.if_else(pa.array(mask), _text(p_code_u.take(pa.array(kc))), interp_col)
                fields = [
                    stay_a.take(pos), code_cat.take(ci), _num(seq_all[a:z], 4), code_c.take(ci), interp_col,
                    code_d.take(ci), _text(qty_all.slice(a, n).cast(pa.string())), code_e.take(ci),
                    _vocab(flags, rng.random(n) < 0.1), code_f.take(ci), stay_g.take(pos), _ymd(day), stay_h.take(pos),
                ]
                self.lines["ef"] += _write_lines(fh, _lines(fields))

    def close(self) -> dict:
        return dict(self.lines)


def _positions(values, ids: pa.Array) -> np.ndarray:
    """Row positions in ``ids`` of each value (every value must be there)."""
    pos = pc.index_in(values, value_set=ids)
    if pos.null_count:
        raise RuntimeError("internal error: a row refers to an admission not in its fiscal year")
    return pos.to_numpy(zero_copy_only=False).astype(np.int64)


def _insurer_seed(x: np.ndarray) -> np.ndarray:
    """A fake but stable identifier number per stay (insurer number, doctor code)."""
    x = np.asarray(x, np.int64)
    return (x * 2_654_435_761 + 97) % 9_999_999_967


def _names(codes: pa.Array, table: dict, fallback: str) -> pa.Array:
    uniq = pc.unique(codes).to_pylist()
    words = [table.get(c, fallback.format(c)) for c in uniq]
    return _vocab(words, pc.index_in(codes, value_set=pa.array(uniq, codes.type)).to_numpy(zero_copy_only=False))


def _diagnosis_names(icd: pa.Array, rows: np.ndarray, spinal_level: pa.Array) -> pa.Array:
    """Disease names (payload 9): C79.5 carries the stay's spinal level when it has one."""
    icd_s = icd.cast(pa.string())
    names = _names(icd_s, _ICD_NAMES, "傷病名（{}）")
    is_c795 = pc.equal(icd_s, "C795").to_numpy(zero_copy_only=False)
    if is_c795.any():
        lv = pc.index_in(spinal_level.take(pa.array(rows[is_c795])), value_set=pa.array(list(_C795_BY_LEVEL)))
        idx = pc.fill_null(pc.add(lv, 1), 0).to_numpy().astype(np.int64)
        words = ["転移性骨腫瘍"] + list(_C795_BY_LEVEL.values())
        mask = np.zeros(len(rows), bool)
        mask[is_c795] = True
        full = np.zeros(len(rows), np.int64)
        full[is_c795] = idx
        names = pc.if_else(pa.array(mask), _vocab(words, full), names)
    return names


def _ymd_parts(days: np.ndarray):
    d = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    y = d.astype("datetime64[Y]").astype(np.int64) + 1970
    mo = d.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dd = (d - d.astype("datetime64[M]")).astype(np.int64) + 1
    return y, mo, dd


def _day_of(y, m, d) -> np.ndarray:
    """Day numbers of (y, m, d); 29 February of a common year becomes 28 February."""
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    d = np.where((m == 2) & (d == 29) & ~leap, 28, d)
    months = (y - 1970) * 12 + (m - 1)
    return months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) + d - 1


def age_at(birth_days, on_days) -> np.ndarray:
    """Age in completed years on a date (the birthday counts from its calendar day)."""
    by, bm, bd = _ymd_parts(birth_days)
    y, m, d = _ymd_parts(on_days)
    return y - by - ((m * 100 + d) < (bm * 100 + bd))


def _birth_days(rng, admit_days: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Birth dates drawn uniformly among those giving ``age`` completed years at admission;
    29 February is avoided (its birthday in common years is read differently by different rules)."""
    y, m, d = _ymd_parts(admit_days)
    upper = _day_of(y - age, m, d)
    lower = _day_of(y - age - 1, m, d) + 1
    birth = lower + np.floor(rng.random(len(age)) * (upper - lower + 1)).astype(np.int64)
    _, bm, bd = _ymd_parts(birth)
    feb29 = (bm == 2) & (bd == 29)
    birth = np.where(feb29 & (birth + 1 <= upper), birth + 1, np.where(feb29, birth - 1, birth))
    if not np.array_equal(age_at(birth, admit_days), age):
        raise RuntimeError("internal error: a birth date does not give the age at admission")
    return birth
