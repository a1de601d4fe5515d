"""Building blocks of the synthetic database, and the independent calibration query pinned on a
hand-made tiny database (so the calibration tests measure what they claim)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from hospstudy.data.synth import arrowutil as au
from hospstudy.data.synth import check
from hospstudy.data.synth import draws as D


def test_solve_intercept_hits_the_target_mean():
    eta = np.random.default_rng(0).normal(0, 1.5, 5000)
    for target in (0.01, 0.078, 0.5, 0.93):
        a = D.solve_intercept(eta, target)
        assert D.expit(a + eta).mean() == pytest.approx(target, abs=1e-10)


def test_curve_exponent_reproduces_the_weighted_mean():
    t = np.linspace(0, 1, 9)
    w = 877 * 1.067 ** np.arange(9)
    p = D.curve_exponent(9.9, 6.8, 8.6, w, t)
    v = 9.9 - 3.1 * t**p
    assert np.average(v, weights=w) == pytest.approx(8.6, abs=1e-6)
    assert v[0] == 9.9 and v[-1] == pytest.approx(6.8)


def test_scramble_is_a_bijection_into_11_digits():
    x = np.arange(0, 3_000_000, 7, dtype=np.int64)
    y = D.scramble(x)
    assert len(np.unique(y)) == len(x) and y.min() >= 0 and y.max() < 10**11
    big = np.array([10**11 - 1, 3 * 10**10 + 12345], dtype=np.int64)
    assert [int(v) for v in D.scramble(big)] == [(int(v) * 7_919_000_003 + 1_234_567) % 10**11 for v in big]


def test_string_builders_match_python():
    rng = np.random.default_rng(1)
    vocab = ["main", "trigger", "resource", "comorbidity", "complication"]
    idx = rng.integers(0, len(vocab), 1000)
    assert au.vocab_take(vocab, idx).to_pylist() == [vocab[i] for i in idx]
    ids = au.id_strings("A", np.array([0, 5, 2012300000017]), 13)
    assert ids.to_pylist() == ["A0000000000000", "A0000000000005", "A2012300000017"]
    sliced = ids.slice(1, 2)
    assert au.take_fixed(sliced, np.array([1, 0, 1])).to_pylist() == ["A2012300000017", "A0000000000005", "A2012300000017"]
    adl = D.adl_strings(rng, np.array([0, 3, 2]), np.array([False, False, True]), p_unknown=0.0)
    vals = adl.to_pylist()
    assert vals[2] is None and vals[0][5] == "0" and vals[1][5] == "3" and len(vals[1]) == 10


def _d(s: str) -> int:
    return au.day_number(dt.date.fromisoformat(s))


def _write_tiny(root):
    """Five patients: A index (dies day 30), B dies day 31, C under 18, D C795 only as a
    complication, E two qualifying admissions (the first is the index) at a hospital that
    becomes a cancer center in FY2013; plus one non-metastatic spine surgery at hospital 1."""
    adm = [  # id, patient, hospital, admit, discharge, age, discharge_to, adl_adm, adl_dis
        ("a1", "A", 1, "2012-05-01", "2012-06-02", 70, "death", "1111111111", None),
        ("b1", "B", 1, "2012-05-01", "2012-06-03", 60, "death", "2222222222", None),
        ("c1", "C", 1, "2012-07-01", "2012-07-20", 15, "home", "2222232222", "2222232222"),
        ("d1", "D", 2, "2012-07-01", "2012-07-20", 50, "home", "2222232222", "2222232222"),
        ("e1", "E", 2, "2013-03-28", "2013-04-20", 66, "home", "2222232222", "2222212222"),
        ("e2", "E", 2, "2013-06-01", "2013-06-20", 66, "other_hospital", "2222212222", "2222212222"),
        ("n1", "N", 1, "2012-08-01", "2012-08-10", 50, "home", "2222232222", "2222232222"),
    ]
    cols = list(zip(*adm))
    n = len(adm)
    au.write(au.table("admissions", {
        "admission_id": pa.array(cols[0]), "patient_id": pa.array(cols[1]), "hospital_id": pa.array(cols[2], pa.int32()),
        "admit_date": au.dates(np.array([_d(x) for x in cols[3]])), "discharge_date": au.dates(np.array([_d(x) for x in cols[4]])),
        "age": pa.array(cols[5], pa.int16()), "sex": pa.array(["M"] * n), "emergency": pa.array([False] * n),
        "ambulance": pa.array([False] * n), "discharge_to": pa.array(cols[6]), "height_cm": pa.nulls(n, pa.float32()),
        "weight_kg": pa.nulls(n, pa.float32()), "jcs": pa.nulls(n, pa.int16()), "adl_adm": pa.array(cols[7], pa.string()),
        "adl_dis": pa.array(cols[8], pa.string()), "spinal_level": pa.nulls(n, pa.string()),
    }), root / "admissions" / "part-0.parquet")
    dx = [("a1", "C795", "main"), ("b1", "C795", "trigger"), ("c1", "C795", "main"), ("d1", "C795", "complication"),
          ("d1", "M4849", "main"), ("e1", "C795", "resource"), ("e1", "T814", "complication"), ("e2", "C795", "main"),
          ("a1", "L899", "complication"), ("n1", "M480", "main")]
    c = list(zip(*dx))
    au.write(au.table("diagnoses", {"admission_id": pa.array(c[0]), "icd10": pa.array(c[1]), "role": pa.array(c[2]),
                           "suspected": pa.array([False] * len(c[0]))}),
             root / "diagnoses" / "part-0.parquet")
    pr = [("a1", "K1422", "2012-05-03"), ("b1", "K142-4", "2012-05-03"), ("c1", "K1425", "2012-07-02"),
          ("d1", "K1422", "2012-07-02"), ("e1", "K142-4", "2013-03-30"), ("e1", "K1422", "2013-04-05"),
          ("e2", "K1425", "2013-06-02"), ("n1", "K1342", "2012-08-02")]
    c = list(zip(*pr))
    au.write(au.table("procedures", {"admission_id": pa.array(c[0]), "proc_code": pa.array(c[1]),
                                     "proc_date": au.dates(np.array([_d(x) for x in c[2]]))}), root / "procedures" / "part-0.parquet")
    fac = [(1, 2012, True), (1, 2013, True), (2, 2012, False), (2, 2013, True)]
    c = list(zip(*fac))
    au.write(au.table("facilities", {"hospital_id": pa.array(c[0], pa.int32()), "fiscal_year": pa.array(c[1], pa.int16()),
                                     "cancer_center": pa.array(c[2]), "beds": pa.array([300] * 4, pa.int32()),
                                     "teaching": pa.array([False] * 4), "region": pa.array(["Kanto"] * 4)}), root / "facilities.parquet")
    au.write(au.table("billing", {"admission_id": pa.array(["a1"]), "service_date": au.dates(np.array([_d("2012-05-01")])),
                                  "kind": pa.array(["other"]), "code": pa.array(["190077410"]), "quantity": pa.array([1.0], pa.float32())}),
             root / "billing" / "part-0.parquet")


def test_calibration_query_applies_the_cohort_rules(tmp_path):
    _write_tiny(tmp_path)
    df = check.cohort(tmp_path).set_index("patient_id")
    assert list(df.index) == ["A", "B", "E"]  # C under 18, D C795 only as a complication
    assert df.loc["A", "death_30d"] and not df.loc["B", "death_30d"]  # day 30 vs day 31 after surgery
    assert df.loc["B", "in_hospital_death"]
    assert df.loc["E", "admission_id"] == "e1" and df.loc["E", "surgery_code"] == "K142-4"  # first admission, first surgery
    assert df.loc["E", "fy"] == 2012 and not df.loc["E", "cancer_center"]  # surgery 30 March 2013 = FY2012
    assert df.loc["A", "volume"] == 4  # a1, b1, c1 (a minor) and n1 (non-metastatic) all count
    assert df.loc["E", "volume"] == 2  # d1 (C795 only as a complication) and e1 at hospital 2 in FY2012
    assert df.loc["E", "complication"] and not df.loc["A", "complication"]  # L899 is not in the flagship list
    assert df.loc["E", "unfavorable_ambulatory"]  # walking 3 -> 1
    assert df.loc["E", "postop_los"] == 21
    f = check.figures(tmp_path)
    assert f["patients"] == 3 and f["non_metastatic_spine_admissions"] == 1  # n1: no C795 in any role
