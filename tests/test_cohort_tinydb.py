"""A hand-made DPC-layout database of 14 admissions that pins the flagship's cohort rules.

Every row is written here by hand; the expected analytic rows and attrition below were worked
out by hand from these rows and the flagship study file, not by running the engine.

Admissions (H1 becomes a cancer center in FY2016; H2 never is; H3 has no FY2014 record):

===== ======= ==== ====================================================================
adm   patient hosp what it pins
===== ======= ==== ====================================================================
A01   P01     H1   surgery 31 Mar 2016 (FY2015: not yet a cancer center); K1422 + K1425
                   the same day (fusion); died on day 30 -> death_30d; lung + EGFR drug
                   -> moderate; brain metastasis; Charlson: MI 1 + diabetes (both codes,
                   complicated wins) 2 = 3
A02   P02     H1   surgery on the admission day, 1 Apr 2016 (FY2016: cancer center);
                   died on day 31 -> not death_30d, in-hospital death; lung without drug
                   -> rapid; T814 complication; Charlson: liver mild+severe 3 + renal 2
A03   P03     H2   two spine surgeries (K142-4 day 0, K1422 day 5): index is the first,
                   vertebroplasty; walking 3 -> 2 (worse: unfavorable); '9' in the
                   admission ADL -> Barthel missing; L89 complication (not in the list)
A04   P04     H2   first of two qualifying admissions of P04: kept; kidney; C787
A05   P04     H2   second qualifying admission: removed by first_admission
A06   P05     H2   C795 only as a complication: removed by spinal_metastasis
A07   P06     H1   non-metastatic spine surgery 31 Mar 2016: H1 FY2015 volume; C79.5 only as a
                   suspected comorbidity (modifier 8002): ignored by the flagship's steps
A08   P07     H1   non-metastatic, admitted 30 Mar 2016, surgery 1 Apr 2016: H1 FY2016
A09   P08     H1   hip fracture, no spine surgery: removed by spine_surgery
A10   P09     H2   metastatic, aged 17: removed by adult
A11   P10     H3   metastatic, admitted FY2014, surgery 2 Apr 2015 (FY2015) at H3, which has a
                   facility record for FY2014 only: removed by facility_record
A12   P11     H2   metastatic, FY2011: removed by study_period
A13   P12     H2   metastatic, no ADL at all -> unfavorable_ambulatory missing; biliary
                   primary (site 'other', Katagiri rapid); K136 tumour resection
A14   P13     H1   non-metastatic discectomy K1341, FY2016: H1 FY2016 volume
===== ======= ==== ====================================================================
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hospstudy.data.schema import arrow_schema

D = dt.date


def _adm(aid, pid, hosp, admit, dis, age, sex, to, *, h=165.0, w=60.0, jcs=0, adm="2312132222", dis_adl="2312132222",
         level="thoracic", emergency=False, ambulance=False):
    return dict(admission_id=aid, patient_id=pid, hospital_id=hosp, admit_date=admit, discharge_date=dis, age=age,
                sex=sex, emergency=emergency, ambulance=ambulance, discharge_to=to, height_cm=h, weight_kg=w, jcs=jcs,
                adl_adm=adm, adl_dis=dis_adl, spinal_level=level)


ADMISSIONS = [
    _adm("A01", "P01", 1, D(2016, 3, 20), D(2016, 4, 30), 70, "M", "death", h=170.0, w=60.0, jcs=0,
         emergency=True, ambulance=True),
    _adm("A02", "P02", 1, D(2016, 4, 1), D(2016, 5, 2), 55, "F", "death", h=None, w=55.0, jcs=10, level="lumbar"),
    _adm("A03", "P03", 2, D(2017, 6, 1), D(2017, 7, 5), 80, "F", "home", h=150.0, w=70.0, jcs=None,
         adm="2312139222", dis_adl="2312122222", level="cervical"),
    _adm("A04", "P04", 2, D(2018, 5, 1), D(2018, 5, 22), 49, "M", "home", h=160.0, w=45.0, jcs=3,
         adm="1211021111", dis_adl="1211021111", level="multiple", emergency=True),
    _adm("A05", "P04", 2, D(2019, 1, 10), D(2019, 2, 10), 50, "M", "home"),
    _adm("A06", "P05", 2, D(2017, 8, 1), D(2017, 9, 1), 66, "F", "home"),
    _adm("A07", "P06", 1, D(2016, 3, 28), D(2016, 4, 20), 62, "M", "home", level=None),
    _adm("A08", "P07", 1, D(2016, 3, 30), D(2016, 4, 25), 58, "F", "home", level=None),
    _adm("A09", "P08", 1, D(2016, 5, 1), D(2016, 6, 1), 85, "F", "care_facility", level=None),
    _adm("A10", "P09", 2, D(2017, 9, 1), D(2017, 10, 1), 17, "M", "home"),
    _adm("A11", "P10", 3, D(2015, 3, 25), D(2015, 4, 30), 60, "M", "home"),
    _adm("A12", "P11", 2, D(2011, 10, 1), D(2011, 11, 1), 60, "F", "home"),
    _adm("A13", "P12", 2, D(2019, 6, 1), D(2019, 7, 1), 60, "M", "other_hospital", h=175.0, w=80.0, jcs=300,
         adm=None, dis_adl=None, level=None),
    _adm("A14", "P13", 1, D(2016, 9, 1), D(2016, 9, 20), 45, "M", "home", level=None),
]

PROCEDURES = [
    ("A01", "K1422", D(2016, 3, 31)), ("A01", "K1425", D(2016, 3, 31)),
    ("A02", "K1422", D(2016, 4, 1)),
    ("A03", "K142-4", D(2017, 6, 5)), ("A03", "K1422", D(2017, 6, 10)),
    ("A04", "K1425", D(2018, 5, 2)),
    ("A05", "K1422", D(2019, 1, 11)),
    ("A06", "K1422", D(2017, 8, 2)),
    ("A07", "K1422", D(2016, 3, 31)),
    ("A08", "K1423", D(2016, 4, 1)),
    ("A09", "K0461", D(2016, 5, 2)),
    ("A10", "K1422", D(2017, 9, 2)),
    ("A11", "K1422", D(2015, 4, 2)),
    ("A12", "K1422", D(2011, 10, 2)),
    ("A13", "K136", D(2019, 6, 3)),
    ("A14", "K1341", D(2016, 9, 2)),
]

DIAGNOSES = [
    ("A01", "C795", "main"), ("A01", "C341", "comorbidity"), ("A01", "C793", "comorbidity"),
    ("A01", "I21", "comorbidity"), ("A01", "E112", "comorbidity"), ("A01", "E119", "comorbidity"),
    ("A02", "C795", "trigger"), ("A02", "C349", "resource"), ("A02", "T814", "complication"),
    ("A02", "K703", "comorbidity"), ("A02", "K721", "comorbidity"), ("A02", "N18", "comorbidity"),
    ("A03", "C795", "main"), ("A03", "C509", "comorbidity"), ("A03", "L89", "complication"),
    ("A04", "C795", "main"), ("A04", "C64", "comorbidity"), ("A04", "C787", "comorbidity"),
    ("A05", "C795", "main"), ("A05", "C64", "comorbidity"),
    ("A06", "M480", "main"), ("A06", "C795", "complication"),
    ("A07", "M480", "main"), ("A07", "C795", "comorbidity", True),
    ("A08", "M511", "main"),
    ("A09", "S720", "main"),
    ("A10", "C795", "main"), ("A10", "C710", "comorbidity"),
    ("A11", "C795", "main"), ("A11", "C509", "comorbidity"),
    ("A12", "C795", "main"), ("A12", "C509", "comorbidity"),
    ("A13", "C795", "main"), ("A13", "C240", "comorbidity"), ("A13", "G822", "comorbidity"),
    ("A14", "M511", "main"),
]

BILLING = [
    ("A01", D(2016, 3, 22), "drug", "620008001", 1.0),
    ("A01", D(2016, 3, 31), "procedure", "150000000", 1.0),
    ("A02", D(2016, 4, 2), "drug", "610000000", 2.0),   # a drug, but not a molecular-targeted one
    ("A03", D(2017, 6, 2), "other", "620008001", 1.0),  # the code, but not billed as a drug
    ("A04", D(2018, 5, 3), "rehabilitation", "180000000", 1.0),
]


def facilities():
    rows = []
    for fy in range(2011, 2021):
        rows.append(dict(hospital_id=1, fiscal_year=fy, cancer_center=fy >= 2016, beds=500, teaching=True, region="Kanto"))
        rows.append(dict(hospital_id=2, fiscal_year=fy, cancer_center=False, beds=200, teaching=False, region="Kinki"))
    rows.append(dict(hospital_id=3, fiscal_year=2014, cancer_center=True, beds=300, teaching=False, region="Tohoku"))
    return rows


def write_tiny_db(root: Path) -> Path:
    """Write the database: facilities/admissions/diagnoses/procedures as Parquet files, billing
    as hive-partitioned parts ``billing/fiscal_year=YYYY/part-0.parquet``."""
    root.mkdir(parents=True, exist_ok=True)
    sch = {n: arrow_schema(n) for n in ("facilities", "admissions", "diagnoses", "procedures", "billing")}
    pq.write_table(pa.Table.from_pylist(facilities(), schema=sch["facilities"]), root / "facilities.parquet")
    pq.write_table(pa.Table.from_pylist(ADMISSIONS, schema=sch["admissions"]), root / "admissions.parquet")
    pq.write_table(
        pa.Table.from_pylist([dict(admission_id=a, icd10=c, role=r, suspected=bool(rest and rest[0]))
                              for a, c, r, *rest in DIAGNOSES], schema=sch["diagnoses"]),
        root / "diagnoses.parquet",
    )
    pq.write_table(
        pa.Table.from_pylist([dict(admission_id=a, proc_code=c, proc_date=d) for a, c, d in PROCEDURES], schema=sch["procedures"]),
        root / "procedures.parquet",
    )
    by_fy: dict[int, list] = {}
    for a, d, k, c, q in BILLING:
        by_fy.setdefault(d.year - (d.month < 4), []).append(dict(admission_id=a, service_date=d, kind=k, code=c, quantity=q))
    for fy, rows in by_fy.items():
        part = root / "billing" / f"fiscal_year={fy}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=sch["billing"]), part / "part-0.parquet")
    return root


# Expected analytic rows of the flagship study, worked out by hand (see the table above).
EXPECTED = {
    "P01": dict(admission_id="A01", hospital_id=1, fiscal_year=2015, surgery_date=D(2016, 3, 31), cancer_center=False,
                volume=2, volume_per50=0.04, age=70, age_group="70-79", sex="M", bmi_group="18.5-24.9", charlson=3,
                barthel_adm=100, barthel_group="85-100", walking_adm=3, jcs_group="0", emergency=True, ambulance=True, primary_site="lung",
                katagiri_group="moderate", visceral_mets=False, brain_mets=True, spinal_level="thoracic",
                surgery_type="fusion", teaching=True, postop_los=30, death_30d=True, in_hospital_death=True,
                complication=False, unfavorable_ambulatory=None, discharged_home=False, los_to_home=30,
                los_to_home_event=2),
    "P02": dict(admission_id="A02", hospital_id=1, fiscal_year=2016, surgery_date=D(2016, 4, 1), cancer_center=True,
                volume=3, volume_per50=0.06, age=55, age_group="50-59", sex="F", bmi=None, bmi_group="missing", charlson=5,
                barthel_adm=100, walking_adm=3, jcs_group="10-30", emergency=False, ambulance=False, primary_site="lung",
                katagiri_group="rapid", visceral_mets=False, brain_mets=False, spinal_level="lumbar",
                surgery_type="fusion", teaching=True, postop_los=31, death_30d=False, in_hospital_death=True,
                complication=True, unfavorable_ambulatory=None, discharged_home=False, los_to_home=31,
                los_to_home_event=2),
    "P03": dict(admission_id="A03", hospital_id=2, fiscal_year=2017, surgery_date=D(2017, 6, 5), cancer_center=False,
                volume=3, age=80, age_group=">=80", sex="F", bmi_group=">=30", charlson=0, barthel_adm=None,
                barthel_group="missing", walking_adm=3, jcs_group="missing", primary_site="breast", katagiri_group="slow", visceral_mets=False,
                brain_mets=False, spinal_level="cervical", surgery_type="vertebroplasty", teaching=False, postop_los=30,
                death_30d=False, in_hospital_death=False, complication=False, unfavorable_ambulatory=True,
                discharged_home=True, los_to_home_event=1),
    "P04": dict(admission_id="A04", hospital_id=2, fiscal_year=2018, surgery_date=D(2018, 5, 2), cancer_center=False,
                volume=2, age=49, age_group="<50", sex="M", bmi_group="<18.5", charlson=0, barthel_adm=55, barthel_group="40-55", walking_adm=2,
                jcs_group="1-3", emergency=True, primary_site="kidney", katagiri_group="moderate", visceral_mets=True,
                brain_mets=False, spinal_level="multiple", surgery_type="decompression", postop_los=20, death_30d=False,
                complication=False, unfavorable_ambulatory=False, discharged_home=True, los_to_home=20,
                los_to_home_event=1),
    "P12": dict(admission_id="A13", hospital_id=2, fiscal_year=2019, surgery_date=D(2019, 6, 3), cancer_center=False,
                volume=1, age=60, age_group="60-69", bmi_group="25.0-29.9", charlson=2, barthel_adm=None,
                walking_adm=None, jcs_group="100-300", primary_site="other", katagiri_group="rapid",
                spinal_level=None, surgery_type="tumour_resection", postop_los=28, death_30d=False,
                in_hospital_death=False, unfavorable_ambulatory=None, discharged_home=False, los_to_home_event=3),  # other_hospital: discharge elsewhere
}
# volumes 2, 3, 3, 2, 1: cut points (linear) 2, 2, 3; a value on a cut point falls in the lower group
EXPECTED_QUARTILE = {"P01": 1, "P02": 3, "P03": 3, "P04": 1, "P12": 1}
EXPECTED_BMI = {"P01": 60 / 1.7**2, "P03": 70 / 1.5**2, "P04": 45 / 1.6**2, "P12": 80 / 1.75**2}

# (name, admissions remaining, patients remaining, admissions removed, patients removed)
EXPECTED_ATTRITION = [
    ("database", 14, 13, 0, 0),
    ("spine_surgery", 13, 12, 1, 1),
    ("spinal_metastasis", 9, 8, 4, 4),
    ("study_period", 8, 7, 1, 1),
    ("adult", 7, 6, 1, 1),
    ("facility_record", 6, 5, 1, 1),
    ("first_admission", 5, 5, 1, 0),
]
