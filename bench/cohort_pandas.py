"""The flagship cohort in plain pandas: read the tables, merge, group. The baseline
bench/bench_cohort.py times the engine against (same definitions as
studies/spinal_metastasis.toml; the bench checks the rows agree column by column).

Code-list matching reuses hospstudy.cohort.codelists on the distinct codes (a lookup table),
which is how a pandas user would do it; everything else is pandas. Billing is read with a
pyarrow filter on kind = 'drug' (reading 50M lines whole needs ~10 GB in pandas).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hospstudy.cohort.codelists import matches_any, resolve

LISTS_RAW = {
    "spine": ["K1421", "K1422", "K1423", "K1424", "K1425", "K1426", "K134*", "K142-4", "K136", "K136-2"],
    "fusion": ["K1421", "K1422", "K1423", "K1424"],
    "decompression": ["K1425", "K1426", "K134*"],
    "vertebroplasty": ["K142-4"],
    "tumour": ["K136", "K136-2"],
    "visceral": ["C78*"], "brain": ["C793"],
    "complications": ["T814", "T813", "T810", "J12-J18", "I26*", "I80-I82", "N390", "A40-A41", "I21*", "I60-I64", "F05*", "K56*", "G960"],
    "lung": ["C34*"], "breast": ["C50*"], "prostate": ["C61"], "kidney": ["C64", "C65"], "liver": ["C22*"],
    "colorectal": ["C18-C20"], "thyroid": ["C73"], "stomach": ["C16*"], "esophagus": ["C15*"], "pancreas": ["C25*"],
    "myeloma_lymphoma": ["C90*", "C81-C85"], "uterus_ovary": ["C53-C56"], "head_neck": ["C00-C14"],
    "unknown": ["C80*"], "other": ["C00-C76", "C81-C97"], "biliary": ["C23-C24"],
}
SITES = ["lung", "breast", "prostate", "kidney", "liver", "colorectal", "thyroid", "stomach", "esophagus", "pancreas",
         "myeloma_lymphoma", "uterus_ovary", "head_neck", "unknown", "other"]
DRUGS = {"620008001", "620008002", "620008003", "620008004", "620008005", "620008006"}
CHARLSON = [("mi", 1, None), ("chf", 1, None), ("pvd", 1, None), ("cvd", 1, None), ("dementia", 1, None), ("copd", 1, None),
            ("rheum", 1, None), ("ulcer", 1, None), ("liver_mild", 1, "liver"), ("liver_severe", 3, "liver"),
            ("diabetes", 1, "diabetes"), ("diabetes_complicated", 2, "diabetes"), ("hemiplegia", 2, None),
            ("renal", 2, None), ("hiv", 6, None)]
NONCOMPLICATION = ["main", "trigger", "resource", "comorbidity"]


def _read(root: Path, name: str, columns, filters=None) -> pd.DataFrame:
    path = root / f"{name}.parquet"
    if not path.exists():
        path = root / name
    return pd.read_parquet(path, columns=columns, filters=filters, partitioning=None)


def build(root, charlson_csv) -> pd.DataFrame:
    root = Path(root)
    cc = pd.read_csv(charlson_csv)
    raw = dict(LISTS_RAW)
    for lst, _, _ in CHARLSON:
        raw[f"cc_{lst}"] = cc.loc[cc.list == lst, "code"].tolist()
    lists, _ = resolve(raw)

    def flag(codes: pd.Series, name: str) -> pd.Series:
        u = pd.Series(codes.unique())
        lookup = dict(zip(u, [matches_any(lists[name], c) for c in u]))
        return codes.map(lookup).astype(bool)

    adm = _read(root, "admissions", None)
    dx = _read(root, "diagnoses", ["admission_id", "icd10", "role"])
    pr = _read(root, "procedures", ["admission_id", "proc_code", "proc_date"])
    fac = _read(root, "facilities", ["hospital_id", "fiscal_year", "cancer_center", "teaching"])
    drug = _read(root, "billing", ["admission_id", "kind", "code"], filters=[("kind", "==", "drug")])

    spine = pr[flag(pr.proc_code, "spine")]
    idx = spine.groupby("admission_id", as_index=False).proc_date.min().rename(columns={"proc_date": "surgery_date"})
    sd = pd.to_datetime(idx.surgery_date)
    idx["fiscal_year"] = sd.dt.year - (sd.dt.month < 4)
    a = adm.merge(idx, on="admission_id")
    vol = a.groupby(["hospital_id", "fiscal_year"]).size().rename("volume").reset_index()

    mets = dx[(dx.icd10 == "C795") & dx.role.isin(NONCOMPLICATION)].admission_id.unique()
    a = a[a.admission_id.isin(mets)]
    a = a[a.fiscal_year.between(2012, 2020) & (a.age >= 18)]
    fac = fac.assign(fiscal_year=fac.fiscal_year.astype("int64"))
    a = a.merge(fac, on=["hospital_id", "fiscal_year"], how="inner")
    a = a.sort_values(["patient_id", "surgery_date", "admit_date", "admission_id"]).drop_duplicates("patient_id")
    c = a.merge(vol, on=["hospital_id", "fiscal_year"], how="left")

    d = dx[dx.admission_id.isin(c.admission_id)]
    prim = d[d.role.isin(["comorbidity", "resource"])]
    com = d[d.role == "comorbidity"]
    nonc = d[d.role.isin(NONCOMPLICATION)]

    def any_of(frame, name):
        return set(frame.admission_id[flag(frame.icd10, name)])

    site = pd.Series("unknown", index=c.index)
    assigned = pd.Series(False, index=c.index)
    for s in SITES:
        hit = c.admission_id.isin(any_of(prim, s)) & ~assigned
        site[hit] = s
        assigned |= hit
    c["primary_site"] = site
    has_drug = c.admission_id.isin(drug[drug.code.isin(DRUGS)].admission_id)
    biliary = c.admission_id.isin(any_of(prim, "biliary"))
    rapid = c.primary_site.isin(["liver", "colorectal", "stomach", "esophagus", "pancreas", "head_neck", "unknown"]) | biliary \
        | ((c.primary_site == "lung") & ~has_drug)
    slow = c.primary_site.isin(["breast", "prostate", "thyroid", "myeloma_lymphoma"])
    c["katagiri_group"] = np.where(rapid, "rapid", np.where(slow, "slow", "moderate"))
    c["visceral_mets"] = c.admission_id.isin(any_of(nonc, "visceral"))
    c["brain_mets"] = c.admission_id.isin(any_of(nonc, "brain"))
    comp = d[d.role == "complication"]
    c["complication"] = c.admission_id.isin(any_of(comp, "complications"))

    score = pd.Series(0, index=c.index)
    groups: dict = {}
    for lst, wgt, grp in CHARLSON:
        has = c.admission_id.isin(any_of(com, f"cc_{lst}")) * wgt
        if grp is None:
            score += has
        else:
            groups[grp] = np.maximum(groups.get(grp, 0), has)
    for g in groups.values():
        score += g
    c["charlson"] = score

    p0 = pr.merge(c[["admission_id", "surgery_date"]], on="admission_id")
    p0 = p0[p0.proc_date == p0.surgery_date]
    stype = pd.Series(None, index=c.index, dtype=object)
    for label, name in [("tumour_resection", "tumour"), ("fusion", "fusion"), ("decompression", "decompression"),
                        ("vertebroplasty", "vertebroplasty")]:
        hit = c.admission_id.isin(set(p0.admission_id[flag(p0.proc_code, name)])) & stype.isna()
        stype[hit] = label
    c["surgery_type"] = stype

    def item(s: pd.Series, i: int, top: int) -> pd.Series:
        ch = s.where(s.str.len() == 10).str[i]
        return pd.to_numeric(ch.where(ch.isin([str(v) for v in range(top + 1)])), errors="coerce")

    tops = [2, 3, 1, 2, 1, 3, 2, 2, 2, 2]
    c["barthel_adm"] = 5 * sum(item(c.adl_adm, i, t) for i, t in enumerate(tops))
    c["barthel_group"] = pd.cut(c.barthel_adm, [-np.inf, 40, 60, 85, np.inf], right=False,
                                labels=["0-35", "40-55", "60-80", "85-100"]).astype(object).where(c.barthel_adm.notna(), "missing")
    c["walking_adm"] = item(c.adl_adm, 5, 3)
    wd = item(c.adl_dis, 5, 3)
    h, w = c.height_cm.astype(float), c.weight_kg.astype(float)
    ok = h.between(100, 230) & w.between(20, 250)
    c["bmi"] = (w / ((h / 100.0) * (h / 100.0))).where(ok)
    c["age_group"] = pd.cut(c.age, [-np.inf, 50, 60, 70, 80, np.inf], right=False,
                            labels=["<50", "50-59", "60-69", "70-79", ">=80"]).astype(str)
    c["bmi_group"] = pd.cut(c.bmi, [-np.inf, 18.5, 25, 30, np.inf], right=False,
                            labels=["<18.5", "18.5-24.9", "25.0-29.9", ">=30"]).astype(object).where(c.bmi.notna(), "missing")
    c["jcs_group"] = pd.cut(c.jcs.astype(float), [-np.inf, 1, 10, 100, np.inf], right=False,
                            labels=["0", "1-3", "10-30", "100-300"]).astype(object).where(c.jcs.notna(), "missing")
    c["volume"] = c.volume.fillna(0).astype("int64")
    c["volume_per50"] = c.volume / 50.0
    c["postop_los"] = (pd.to_datetime(c.discharge_date) - pd.to_datetime(c.surgery_date)).dt.days
    dead = c.discharge_to == "death"
    c["death_30d"] = dead & (c.postop_los <= 30)
    c["in_hospital_death"] = dead
    unfav = ((wd <= 1) | (wd < c.walking_adm))
    unknown = wd.isna() | ((wd > 1) & c.walking_adm.isna())
    c["unfavorable_ambulatory"] = unfav.astype("boolean").mask(unknown | dead)
    c["discharged_home"] = c.discharge_to == "home"
    c["los_to_home"] = c.postop_los
    c["los_to_home_event"] = np.where(c.discharged_home, 1, np.where(dead, 2, 0))
    return c.sort_values(["patient_id", "admission_id"]).reset_index(drop=True)
