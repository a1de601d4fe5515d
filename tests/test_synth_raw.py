"""``hospstudy synth --format dpc-raw``: the format of the raw Form 1 and EF files, and that they
carry the very tables of the Parquet synth (read back here with a small independent reader,
not the importer: the importer's round trip is in test_dpc_roundtrip.py).

Fiscal years 2015-2016 at scale 0.01: both EF layouts (field 17 a flag before FY2016, 12 digits
from FY2016), a few thousand stays, ~2 s.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hospstudy.cli import app
from hospstudy.data.synth import generate
from hospstudy.data.synth.raw import age_at, data_ids, facility_codes
from hospstudy.errors import InputError

ARGS = dict(seed=5, scale=0.01, years=(2015, 2016))
YEARS = (2015, 2016)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    base = tmp_path_factory.mktemp("rawsynth")
    generate(base / "pq", **ARGS)
    generate(base / "raw", format="dpc-raw", **ARGS)
    return base / "pq", base / "raw"


def _read(path: Path, ncol: int) -> pd.DataFrame:
    raw = path.read_bytes()
    text = raw.decode("cp932")  # strict: every byte is CP932
    lines = text.split("\r\n")
    assert lines[-1] == "" and all("\n" not in ln and "\r" not in ln for ln in lines[:-1]), path.name
    rows = [ln.split("\t") for ln in lines[:-1]]
    assert {len(r) for r in rows} == {ncol}, path.name
    return pd.DataFrame(rows, columns=[f"f{i}" for i in range(1, ncol + 1)])


def _pq(db: Path, table: str) -> pd.DataFrame:
    return pd.concat([pq.read_table(p).to_pandas() for p in sorted((db / table).rglob("*.parquet"))], ignore_index=True)


def _ymd(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, format="%Y%m%d").dt.date


@pytest.fixture(scope="module")
def raw_tables(both):
    _, raw = both
    ff1 = pd.concat([_read(raw / f"FF1_{y}.txt", 17).assign(fy=y) for y in YEARS], ignore_index=True)
    ef = pd.concat([_read(raw / f"EFn_{y}.txt", 31).assign(fy=y) for y in YEARS], ignore_index=True)
    return ff1, ef


@pytest.fixture(scope="module")
def expected(both):
    """The Parquet tables with the keys a raw line carries (施設コード, データ識別番号, 入院年月日)."""
    db, _ = both
    adm = _pq(db, "admissions")
    import pyarrow as pa

    adm["fac"] = facility_codes(adm.hospital_id.to_numpy()).astype(str)
    adm["data"] = [f"{x:010d}" for x in data_ids(pa.array(adm.patient_id))]
    adm["admit"] = pd.to_datetime(adm.admit_date).dt.strftime("%Y%m%d")
    key = adm.set_index("admission_id")[["fac", "data", "admit"]]
    return adm, key


def test_files_and_layout(both, raw_tables):
    _, raw = both
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        [f"FF1_{y}.txt" for y in YEARS] + [f"EFn_{y}.txt" for y in YEARS] + ["facilities.csv", "truth.json"])
    ff1, ef = raw_tables
    assert ff1.f1.str.fullmatch(r"\d{9}").all() and ff1.f2.str.fullmatch(r"\d{10}").all()
    assert ff1.f3.str.fullmatch(r"\d{8}").all() and ff1.f8.str.fullmatch(r"\d+").all()
    assert set(ff1.f5) == {"0", "1", "2"}  # whole-stay forms and ward-level forms
    assert set(ff1.f7) == {"20140401"}  # every payload code used has the FY2014 manual's version
    assert ef.f1.str.fullmatch(r"\d{9}").all() and ef.f2.str.fullmatch(r"\d{10}").all()
    # EF field 17: a one-character flag before FY2016, the 12-digit 行為明細区分情報 from FY2016.
    assert ef[ef.fy == 2015].f17.str.fullmatch(r"[01]").all()
    assert ef[ef.fy == 2016].f17.str.fullmatch(r"\d{12}").all()
    assert (ef.f7 == "001").all() and (ef.f30 == "0").all()
    # Personal identifiers carry plausible fake values (the importer must drop them).
    assert ef.f22.str.fullmatch(r"\d{8}").all() and ef.f27.str.fullmatch(r"\d{10}").all()
    a10 = ff1[(ff1.f6 == "A000010") & (ff1.f5 == "0")]
    assert a10.f11.str.fullmatch(r"\d{7}").all()
    # Japanese text survives CP932 (disease names, EF item names).
    assert ff1.f17.str.contains("転移性").any() and ef.f11.str.contains("入院料").any()
    fac = pd.read_csv(raw / "facilities.csv", dtype=str)
    assert list(fac.columns) == ["facility_code", "fiscal_year", "cancer_center", "beds", "teaching", "region"]
    assert fac.facility_code.str.fullmatch(r"1\d{8}").all() and set(fac.cancer_center) <= {"0", "1"}


def test_one_whole_stay_form_per_admission(raw_tables, expected):
    ff1, _ = raw_tables
    adm, key = expected
    whole = ff1[ff1.f5 == "0"]
    stays = whole[whole.f6 == "A000010"][["f1", "f2", "f3"]]
    assert not stays.duplicated().any()
    assert sorted(map(tuple, stays.to_numpy())) == sorted(map(tuple, adm[["fac", "data", "admit"]].to_numpy()))
    # Every whole-stay line belongs to a stay; ward-level forms only to stays that have one.
    for part in (whole, ff1[ff1.f5 != "0"]):
        assert set(map(tuple, part[["f1", "f2", "f3"]].to_numpy())) <= set(map(tuple, stays.to_numpy()))
    assert (ff1.f5 != "0").sum() > 0


def test_form1_carries_the_admissions(raw_tables, expected):
    ff1, _ = raw_tables
    adm, _ = expected
    w = ff1[ff1.f5 == "0"]
    k = ["f1", "f2", "f3"]

    def item(code, cols):
        return w[w.f6 == code].set_index(k)[cols]

    got = adm.set_index(["fac", "data", "admit"])
    got.index.names = k
    a10, a20, a30 = item("A000010", ["f9", "f10"]), item("A000020", ["f9", "f13", "f14"]), item("A000030", ["f9", "f10", "f11"])
    j = got.join(a10).join(a20, rsuffix="_20").join(a30, rsuffix="_30")
    assert len(j) == len(adm) and j.f9.notna().all()
    # Age in completed years at admission from the birth date.
    birth = pd.to_datetime(j.f9, format="%Y%m%d")
    admit = pd.to_datetime(j.admit_date)
    epoch = pd.Timestamp("1970-01-01")
    assert (age_at((birth - epoch).dt.days.to_numpy(), (admit - epoch).dt.days.to_numpy()) == j.age.to_numpy()).all()
    assert not ((birth.dt.month == 2) & (birth.dt.day == 29)).any()
    assert ((j.f10 == "1") == (j.sex == "M")).all() and set(j.f10) == {"1", "2"}
    assert (j.f9_20 == j.index.get_level_values("f3")).all()
    assert ((~j.f13.str.startswith("1")) == j.emergency).all()
    assert ((j.f14 == "1") == j.ambulance).all()
    assert (_ymd(j.f9_30) == j.discharge_date).all()
    dest = j.f10_30.astype(int)
    mapped = np.select([dest <= 3, dest == 4, dest <= 7, dest == 8], ["home", "other_hospital", "care_facility", "death"], "other")
    assert (mapped == j.discharge_to).all()
    assert j.loc[j.discharge_to == "death", "f11"].isin(["6", "7"]).all()
    assert not j.loc[j.discharge_to != "death", "f11"].isin(["6", "7"]).any()
    # Height/weight, ADL and JCS: a line exactly when the value is recorded.
    hw = item("A001010", ["f10", "f11"]).astype(float)
    j2 = got.join(hw)
    assert (j2.f10.isna() == j2.height_cm.isna()).all()
    assert np.allclose(j2.f10.dropna(), j2.height_cm.dropna()) and np.allclose(j2.f11.dropna(), j2.weight_kg.dropna())
    for code, col in (("ADL0010", "adl_adm"), ("ADL0020", "adl_dis")):
        j3 = got.join(item(code, ["f10"]))
        assert (j3.f10.fillna("null") == j3[col].fillna("null")).all(), code
    j4 = got.join(item("JCS0010", ["f10"]))
    assert (j4.f10.fillna("-1").astype(int) == j4.jcs.fillna(-1).astype(int)).all()


def test_form1_carries_diagnoses_and_procedures(both, raw_tables, expected):
    db, _ = both
    ff1, _ = raw_tables
    _, key = expected
    roles = {"A006010": "main", "A006020": "trigger", "A006030": "resource", "A006031": "resource",
             "A006040": "comorbidity", "A006050": "complication"}
    w = ff1[ff1.f5 == "0"]
    d = w[w.f6.isin(roles)]
    got = sorted(zip(d.f1, d.f2, d.f3, d.f10, d.f6.map(roles)))
    dx = _pq(db, "diagnoses").join(key, on="admission_id")
    want = sorted(zip(dx.fac, dx.data, dx.admit, dx.icd10, dx.role))
    assert got == want
    # 連番 numbers repeated items 1, 2, ... within a stay and code.
    assert (d.groupby(["f1", "f2", "f3", "f6"]).f8.apply(lambda s: sorted(s.astype(int)) == list(range(1, len(s) + 1)))).all()
    p = w[w.f6 == "A007010"]
    px = _pq(db, "procedures").join(key, on="admission_id")
    assert sorted(zip(p.f1, p.f2, p.f3, p.f10, p.f9)) == sorted(
        zip(px.fac, px.data, px.admit, px.proc_code, pd.to_datetime(px.proc_date).dt.strftime("%Y%m%d")))


def test_ef_carries_the_billing(both, raw_tables, expected):
    db, _ = both
    _, ef = raw_tables
    adm, key = expected
    bl = _pq(db, "billing").join(key, on="admission_id")
    assert len(ef) == len(bl)
    # The billing kind from the EF fields by the importer's rule (docs/synthetic.md).
    kind = np.select(
        [ef.f9.str.startswith("6"), ef.f10.str.match(r"^K92[0-4]"), ef.f10.str.startswith("H"),
         ef.f10.str.startswith("M"), ef.f5.isin(["40", "50", "54"])],
        ["drug", "transfusion", "rehabilitation", "radiotherapy", "procedure"], "other")
    got = sorted(zip(ef.f1, ef.f2, ef.f4, ef.f24, ef.f9, ef.f12.astype(float), kind))
    want = sorted(zip(bl.fac, bl.data, bl.admit, pd.to_datetime(bl.service_date).dt.strftime("%Y%m%d"), bl.code,
                      bl.quantity.astype(float), bl.kind))
    assert got == want and set(kind) == {"drug", "transfusion", "rehabilitation", "radiotherapy", "procedure", "other"}
    # Field 3 is the stay's discharge date; データ区分 by kind; 順序番号 runs within a stay.
    dis = adm.set_index(["fac", "data", "admit"]).discharge_date
    assert (_ymd(ef.f3).to_numpy() == dis.loc[list(zip(ef.f1, ef.f2, ef.f4))].to_numpy()).all()
    kind_of_code = dict(zip(bl.code, bl.kind))
    cat = ef.groupby(ef.f9.map(kind_of_code)).f5.agg(lambda s: set(s))
    assert cat["other"] == {"90"} and cat["procedure"] == {"50"} and cat["transfusion"] == {"50"}
    assert cat["rehabilitation"] == {"80"} and cat["radiotherapy"] == {"80"} and cat["drug"] <= {"21", "33"}
    # Surgery lines carry the K-code of the stay's procedure on that day in 解釈番号.
    px = _pq(db, "procedures").join(key, on="admission_id")
    procs = set(zip(px.fac, px.data, px.admit, px.proc_code, pd.to_datetime(px.proc_date).dt.strftime("%Y%m%d")))
    surg = ef[ef.f9.map(kind_of_code) == "procedure"]
    assert len(surg) > 0 and set(zip(surg.f1, surg.f2, surg.f4, surg.f10, surg.f24)) <= procs


def test_deterministic_and_overwrite(both, tmp_path):
    _, raw = both
    again = tmp_path / "raw"
    generate(again, format="dpc-raw", **ARGS)
    digest = lambda d: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}  # noqa: E731
    assert digest(again) == digest(raw)
    with pytest.raises(InputError, match="already holds"):
        generate(again, format="dpc-raw", **ARGS)
    with pytest.raises(InputError, match="format"):
        generate(tmp_path / "x", format="csv", **ARGS)


def test_cli(tmp_path):
    r = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "r"), "--scale", "0.005", "--years", "2019-2020",
                                 "--no-background", "--format", "dpc-raw"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r" / "FF1_2020.txt").is_file() and (tmp_path / "r" / "facilities.csv").is_file()
    # Ward-level ADL (ADL0030/ADL0040, from FY2020) appear only in FY2020's file.
    assert b"ADL0030" in (tmp_path / "r" / "FF1_2020.txt").read_bytes()
    assert b"ADL0030" not in (tmp_path / "r" / "FF1_2019.txt").read_bytes()
    r = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "q"), "--format", "xml"])
    assert r.exit_code == 2 and "--format" in r.output


def test_data_ids_unique_per_patient(expected):
    adm, _ = expected
    pairs = adm[["patient_id", "data"]].drop_duplicates()
    assert pairs.patient_id.is_unique and pairs.data.is_unique
    assert dt.date(2015, 4, 1) <= adm.admit_date.min()
