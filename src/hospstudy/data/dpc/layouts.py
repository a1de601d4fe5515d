"""The raw DPC file layouts, per fiscal year, as data (one place; the readers interpret them).

Source: the Ministry of Health, Labour and Welfare's yearly survey manual 「DPCの評価・検証等に係る
調査（退院患者調査）実施説明資料」, read through the public transcription sy-wada/open-dpc-jp
(``spec/dpc/base/<year>.json``, which records each table's PDF page). Page numbers below are
those of the FY2014 edition (dated 2014-05-01, "p14.") and the FY2017 edition (2017-07-28,
"p17."). The transcription starts at FY2014: **for FY2012 and FY2013 no transcription was
available here**, so those years are read with the FY2014 layout (the same 17 Form 1 fields and
the 31 EF fields with the one-character field 17) and the import report says so for every file
of those years. Where a detail is not in the transcription (units of height and weight, the
coding of ambulance and of an unknown birth month), the choice made is written next to it here
and in docs/data_model.md ("From raw DPC files").

A new manual is a new entry in :data:`PROFILES` (and new payload codes in :data:`PAYLOADS`),
not a new code path.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---- Form 1 (様式1): 17 tab-separated fields, one item per line (p14.20, p17.19) -------------
FORM1_FIELDS = (
    "facility_code",   # 1 施設コード, 9 digits
    "data_id",         # 2 データ識別番号, 10 digits
    "admit_ymd",       # 3 入院年月日
    "kaisu",           # 4 回数管理番号
    "form_no",         # 5 統括診療情報番号: 0 = whole stay; 1, 2, ... ward forms; A, B; Z
    "code",            # 6 コード (payload code)
    "version",         # 7 バージョン (yyyymmdd)
    "seq",             # 8 連番
    "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9",  # 9-17 ペイロード1-9
)
FORM1_N = len(FORM1_FIELDS)
WHOLE_STAY_FORM = "0"


@dataclass(frozen=True)
class Payload:
    """One Form 1 payload code: what its payload items mean, and what the data model takes."""

    code: str
    items: dict  # payload number -> meaning (the manual's name)
    used: str | None  # the data-model column(s) it fills, or None: read, counted, not imported
    page14: int | None  # page in the FY2014 manual
    page17: int | None  # page in the FY2017 manual
    since: int = 2014  # first fiscal year of the code (2014 = in the first transcribed manual)


_DX_ITEMS = {2: "ICD10コード", 3: "空欄/病名付加コード", 4: "傷病名コード (from FY2015)",
             5: "修飾語コード", 6: "修飾語コード", 7: "修飾語コード", 8: "修飾語コード", 9: "傷病名"}

PAYLOADS: dict[str, Payload] = {p.code: p for p in (
    Payload("A000010", {1: "生年月日", 2: "性別", 3: "患者住所地域の郵便番号"}, "age, sex", 21, 21),
    Payload("A000020", {1: "入院年月日", 2: "入院経路", 3: "他院よりの紹介の有無", 4: "自院の外来からの入院",
                        5: "予定・救急医療入院", 6: "救急車による搬送の有無", 7: "入院前の在宅医療の有無",
                        8: "自傷行為・自殺企図の有無 (FY2016)"}, "emergency, ambulance", 21, 21),
    Payload("A000030", {1: "退院年月日", 2: "退院先", 3: "退院時転帰", 4: "24時間以内の死亡の有無",
                        5: "退院後の在宅医療の有無"}, "discharge_date, discharge_to", 22, 21),
    Payload("A001010", {2: "身長", 3: "体重"}, "height_cm, weight_kg", 23, 22),
    Payload("A006010", _DX_ITEMS, "diagnoses (main)", 23, 23),
    Payload("A006020", _DX_ITEMS, "diagnoses (trigger)", 23, 23),
    Payload("A006030", _DX_ITEMS, "diagnoses (resource)", 23, 23),
    Payload("A006031", _DX_ITEMS, "diagnoses (resource)", 23, 24),
    Payload("A006040", _DX_ITEMS, "diagnoses (comorbidity)", 23, 24),
    Payload("A006050", _DX_ITEMS, "diagnoses (complication)", 23, 24),
    Payload("A007010", {1: "手術日", 2: "点数表コード", 3: "空欄 (core surgery code later)", 4: "手術回数",
                        5: "手術側数", 6: "麻酔", 9: "手術名"}, "procedures", 24, 25),
    Payload("ADL0010", {2: "入院時のADLスコア"}, "adl_adm", 24, 25),
    Payload("ADL0020", {2: "退院時のADLスコア"}, "adl_dis", 24, 25),
    Payload("JCS0010", {2: "入院時意識障害がある場合のJCS"}, "jcs", 24, 26),
    # read and counted, not imported (no column of the data model holds them)
    Payload("A000031", {1: "様式1開始日", 2: "様式1終了日"}, None, 22, 21),
    Payload("A000040", {2: "診療科コード", 3: "転科の有無"}, None, 22, 21),
    Payload("A000050", {2: "一般病棟", 3: "精神病棟", 4: "その他の病棟"}, None, 22, 22),
    Payload("A000060", {2: "入院中の主な診療目的", 3: "治験実施の有無"}, None, 22, 22),
    Payload("A000070", {1: "前回退院年月日", 2: "前回同一疾病で自院入院の有無"}, None, 22, 22),
    Payload("A000080", {2: "再入院種別", 3: "理由の種別", 9: "自由記載欄"}, None, 22, 22),
    Payload("A000090", {2: "再転棟種別", 3: "理由の種別", 9: "自由記載欄"}, None, 22, 22),
    Payload("A001020", {2: "喫煙指数"}, None, 23, 22),
    Payload("A001030", {1: "入棟日", 2: "退棟日", 3: "入棟時の褥瘡", 4: "退棟時の褥瘡"}, None, 23, 22),
    Payload("A002010", {2: "現在の妊娠の有無", 3: "入院時の妊娠週数"}, None, 23, 23),
    Payload("A003010", {2: "出生時体重", 3: "出生時妊娠週数"}, None, 23, 23),
    Payload("A004010", {2: "認知症高齢者の日常生活自立度判定基準"}, None, 23, 23),
    Payload("A004020", {}, None, None, None, since=2018),
    Payload("A004030", {}, None, None, None, since=2018),
    Payload("A006060", {2: "難病の告示番号1", 3: "医療費助成の有無1", 4: "難病の告示番号2", 5: "医療費助成の有無2"},
            None, None, 24, since=2016),
    Payload("A008010", {2: "持参薬の使用の有無"}, None, 24, None),
    Payload("ADL0030", {2: "入棟時のADLスコア (ward level)"}, None, None, None, since=2020),
    Payload("ADL0040", {2: "退棟時のADLスコア (ward level)"}, None, None, None, since=2020),
    Payload("JCS0020", {2: "退院時意識障害がある場合のJCS"}, None, 25, 26),
    Payload("CAN0010", {3: "がんの初発、再発"}, None, 24, 25),
    Payload("CAN0020", {3: "UICC T", 4: "UICC N", 5: "UICC M", 6: "UICC 版"}, None, 24, 25),
    Payload("CAN0030", {3: "癌取扱い規約に基づくがんのStage分類"}, None, 24, 25),
    Payload("CAN0040", {3: "化学療法の有無"}, None, 24, 25),
    Payload("FIM0010", {1: "入棟日", 2: "退棟日", 3: "入棟時FIM", 4: "退棟時FIM"}, None, None, 25, since=2016),
    *(Payload(c, {}, None, 25 if c < "M070010" else 26, 26 if c < "M050040" else 27)
      for c in ("M010010", "M010020", "M010030", "M040010", "M040020", "M050010", "M050020", "M050030",
                "M060010", "M060020", "M070010", "M120010", "M160010", "M170010", "M170020")),
    Payload("M050040", {}, None, None, 27, since=2016),
)}

DIAGNOSIS_ROLE = {  # payload code -> diagnoses.role (p14.23, p17.23-24)
    "A006010": "main", "A006020": "trigger", "A006030": "resource", "A006031": "resource",
    "A006040": "comorbidity", "A006050": "complication",
}
SUSPECTED_MODIFIER = "8002"  # 修飾語コード 「の疑い」 in payloads 5-8 (the modifier master)

# A000030 payload 2, 退院先 (p14.22, p17.21): 1-3 home, 4 other hospital, 5-7 care
# facilities, 8 ended by death, 0 other ward, 9 other, a long-term care hospital, b not yet
# discharged. 0/9/a map to 'other' (contract with the synthetic writer, docs/data_model.md).
DISCHARGE_DEST = {"1": "home", "2": "home", "3": "home", "4": "other_hospital", "5": "care_facility",
                  "6": "care_facility", "7": "care_facility", "8": "death", "0": "other", "9": "other",
                  "a": "other", "A": "other"}
NOT_YET_DISCHARGED = ("b", "B")
# A000030 payload 3, 退院時転帰: 6 death from the main resource disease, 7 death from another cause.
DEATH_OUTCOMES = ("6", "7")
# A000020 payload 5, 予定・救急医療入院: 1xx scheduled, 2xx unscheduled, 3xx emergency-care
# admission (p14.21): emergency = not 1xx.
SCHEDULED_PREFIX = "1"
# A000020 payload 6, 救急車による搬送の有無: 1 = by ambulance, 0 = not (the transcription names
# the item only; the coding follows the contract with the synthetic writer).
AMBULANCE_YES = "1"
SEX = {"1": "M", "2": "F"}  # A000010 payload 2
JCS_VALUES = ("0", "1", "2", "3", "10", "20", "30", "100", "200", "300")

# ---- EF integrated file (入院EF統合ファイル): 31 fields (p14.145, p17.162) -------------------
EF_FIELDS = (
    "facility_code", "data_id", "discharge_ymd", "admit_ymd", "category", "order_no", "detail_no",
    "hospital_code", "receipt_code", "interp_no", "item_name", "quantity", "unit", "points",
    "yen_point", "ffs_points", "flags17", "act_points", "act_drug", "act_material", "act_count",
    "insurer_no", "receipt_type", "service_ymd", "receipt_dept", "dept", "doctor_code", "ward_code",
    "ward_type", "in_out", "facility_type",
)
EF_N = len(EF_FIELDS)
EF_FIELD = {name: i + 1 for i, name in enumerate(EF_FIELDS)}  # 1-based, as the manual numbers them
# Personal identifiers, never imported unless --keep-identifiers (kept in DB/private/ then).
EF_IDENTIFIERS = ("insurer_no", "doctor_code")
FORM1_IDENTIFIERS = ("A000010 payload 3 (postcode)",)
EF_ACT_DETAIL = "000"  # 行為明細番号 000: the act row (former E file); 001+: its items (F file)


@dataclass(frozen=True)
class EFLayout:
    name: str
    field17: str  # what field 17 holds
    field17_width: int
    field14: str
    pages: str


EF_LAYOUTS = {
    "ef-2014": EFLayout("ef-2014", "出来高・包括フラグ (one character)", 1, "明細点数 (8 digits)",
                        "p14.145 (layout), p14.137 (flag)"),
    "ef-2016": EFLayout("ef-2016", "行為明細区分情報 (12 digits)", 12, "明細点数・金額 (12 digits)",
                        "p17.162 (layout), p17.151 (field 17 positions)"),
}


@dataclass(frozen=True)
class Profile:
    """The layouts of one fiscal year's manual."""

    fiscal_years: tuple[int, int]
    form1: str
    ef: str
    source: str
    note: str = ""


PROFILES = (
    Profile((2012, 2013), "form1-2014", "ef-2014", "none transcribed",
            "FY2012-2013: no transcription of these manuals was available; read with the FY2014 layout (assumed)"),
    Profile((2014, 2015), "form1-2014", "ef-2014", "FY2014 manual, 2014-05-01 (open-dpc-jp spec/dpc/base/2014.json)"),
    Profile((2016, 2100), "form1-2014", "ef-2016",
            "FY2017 manual, 2017-07-28 (open-dpc-jp spec/dpc/base/2017.json); EF field 17 is 12 digits from FY2016",
            "FY2018+: payload codes added later (A004020/30, ADL0030/40, ...) are counted as not used; "
            "the 17 Form 1 fields and 31 EF fields are unchanged in the transcribed years"),
)


def profile_for(fy: int) -> Profile | None:
    for p in PROFILES:
        if p.fiscal_years[0] <= fy <= p.fiscal_years[1]:
            return p
    return None


def ef_layout_of_flag(width: int) -> str | None:
    """EF layout told from the width of field 17 (1 = before FY2016, 12 = from FY2016)."""
    return {1: "ef-2014", 12: "ef-2016"}.get(width)


# ---- EF データ区分 (field 5) and the billing kind ------------------------------------------------
EF_CATEGORIES = {
    "11": "初診", "12": "再診", "13": "指導", "14": "在宅", "21": "内服", "22": "屯服", "23": "外用",
    "24": "調剤", "25": "処方", "26": "麻毒", "27": "調基", "28": "その他入院", "31": "皮下筋肉内",
    "32": "静脈内", "33": "その他注射", "39": "薬剤料減点", "40": "処置", "50": "手術", "54": "麻酔",
    "60": "検査・病理", "70": "画像診断", "80": "その他", "90": "入院基本料", "92": "特定入院料",
    "97": "食事療養・標準負担額",
}
SURGERY_CATEGORY = "50"
PROCEDURE_CATEGORIES = ("40", "50", "54")

# billing.kind, first rule that matches (over the EF fields, in the reading threads:
# :func:`hospstudy.data.dpc.ef.billing_kind`; docs/data_model.md):
#   drug            receipt code 6xxxxxxxx (the drug master's codes), any data category
#   transfusion     解釈番号 K920-K924 (輸血料, chapter K part 2 of the fee schedule)
#   rehabilitation  解釈番号 in chapter H (リハビリテーション)
#   radiotherapy    解釈番号 in chapter M (放射線治療)
#   procedure       データ区分 40 処置, 50 手術, 54 麻酔
#   other           everything else (basic inpatient fees, laboratory, imaging, meals, materials)
# データ区分 80 holds rehabilitation, radiotherapy and others alike: the fee-schedule chapter of
# 解釈番号 (field 10) tells them apart, which is why the rule reads field 10 as well as 5 and 9.
DRUG_CODE_PREFIX = "6"
TRANSFUSION_REGEX = "^K92[0-4]"
REHABILITATION_PREFIX, RADIOTHERAPY_PREFIX = "H", "M"
# the kinds in alphabetical order: staged as their index, so sorting by the index sorts by the name
KINDS = ("drug", "other", "procedure", "radiotherapy", "rehabilitation", "transfusion")

# ---- other DPC files: recognised and listed as skipped ----------------------------------------
OTHER_FILE_PREFIXES = {"EFg": "outpatient EF", "Dn": "D file", "Hn": "H file", "Ef": "EF (outpatient)",
                       "Kn": "K file", "FF3": "Form 3", "FF4": "Form 4"}
