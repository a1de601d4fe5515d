"""A tiny hand-made database that follows the data model, and writers for Parquet and CSV.

Other validation and reader tests import ``tiny_rows`` and ``write_db`` from here, break one
rule on a copy, and check that exactly that rule is reported.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hospstudy.data.schema import TABLES, arrow_schema

D = dt.date

_FACILITIES = [
    {"hospital_id": 101, "fiscal_year": 2014, "cancer_center": True, "beds": 600, "teaching": True, "region": "東京都"},
    {"hospital_id": 101, "fiscal_year": 2015, "cancer_center": True, "beds": 600, "teaching": True, "region": "東京都"},
    {"hospital_id": 102, "fiscal_year": 2014, "cancer_center": False, "beds": 250, "teaching": False, "region": "大阪府"},
    {"hospital_id": 102, "fiscal_year": 2015, "cancer_center": True, "beds": 250, "teaching": False, "region": "大阪府"},
]


def _adm(aid, pid, hid, admit, dis, age, sex, to="home", **kw):
    row = {
        "admission_id": aid, "patient_id": pid, "hospital_id": hid, "admit_date": admit, "discharge_date": dis,
        "age": age, "sex": sex, "emergency": False, "ambulance": False, "discharge_to": to,
        "height_cm": 165.0, "weight_kg": 60.0, "jcs": 0, "adl_adm": "2312132222", "adl_dis": "2312132222",
        "spinal_level": None,
    }
    row.update(kw)
    return row


_ADMISSIONS = [
    # A2 is admitted on 31 March 2015: fiscal year 2014, the last day of it.
    _adm("A1", "P1", 101, D(2015, 1, 10), D(2015, 2, 20), 67, "M", spinal_level="thoracic", jcs=1),
    _adm("A2", "P2", 102, D(2015, 3, 31), D(2015, 5, 2), 72, "F", spinal_level="lumbar", emergency=True,
         ambulance=True, adl_adm="1101011111"),
    _adm("A3", "P3", 102, D(2015, 4, 1), D(2015, 4, 1), 55, "M", to="death", adl_dis=None, jcs=300),
    _adm("A4", "P1", 101, D(2015, 6, 1), D(2015, 6, 30), 67, "M", height_cm=None, weight_kg=None, jcs=None,
         adl_adm="9999999999"),
    _adm("A5", "P4", 101, D(2016, 2, 1), D(2016, 3, 31), 0, "F", to="other_hospital", height_cm=50.0,
         weight_kg=3.5),
    _adm("A6", "P5", 102, D(2015, 9, 9), D(2015, 10, 1), 120, "F", to="care_facility", spinal_level="multiple"),
]

_DIAGNOSES = [
    {"admission_id": "A1", "icd10": "C795", "role": "main", "suspected": False},
    {"admission_id": "A1", "icd10": "C349", "role": "comorbidity", "suspected": False},
    {"admission_id": "A2", "icd10": "C795", "role": "main", "suspected": False},
    {"admission_id": "A2", "icd10": "C50", "role": "trigger", "suspected": False},
    {"admission_id": "A3", "icd10": "I219", "role": "main", "suspected": False},
    {"admission_id": "A4", "icd10": "M4806", "role": "main", "suspected": False},
    {"admission_id": "A4", "icd10": "M4806", "role": "resource", "suspected": False},
    {"admission_id": "A5", "icd10": "S7200", "role": "main", "suspected": False},
    {"admission_id": "A6", "icd10": "C795", "role": "main", "suspected": False},
    {"admission_id": "A6", "icd10": "T814", "role": "complication", "suspected": False},
]

_PROCEDURES = [
    {"admission_id": "A1", "proc_code": "K1422", "proc_date": D(2015, 1, 12)},
    {"admission_id": "A2", "proc_code": "K142-4", "proc_date": D(2015, 3, 31)},
    {"admission_id": "A2", "proc_code": "K1425", "proc_date": D(2015, 5, 2)},
    {"admission_id": "A3", "proc_code": "K136", "proc_date": D(2015, 4, 1)},
    {"admission_id": "A6", "proc_code": "K136-2", "proc_date": D(2015, 9, 10)},
]

_BILLING = [
    {"admission_id": "A1", "service_date": D(2015, 1, 10), "kind": "drug", "code": "620000001", "quantity": 1.0},
    {"admission_id": "A1", "service_date": D(2015, 1, 12), "kind": "procedure", "code": "150000110", "quantity": 1.0},
    {"admission_id": "A1", "service_date": D(2015, 2, 20), "kind": "rehabilitation", "code": "180000001", "quantity": 2.0},
    {"admission_id": "A2", "service_date": D(2015, 4, 15), "kind": "radiotherapy", "code": "180000002", "quantity": 1.0},
    {"admission_id": "A3", "service_date": D(2015, 4, 1), "kind": "transfusion", "code": "150000120", "quantity": 0.5},
    {"admission_id": "A4", "service_date": D(2015, 6, 2), "kind": "other", "code": "190000001", "quantity": 3.0},
    {"admission_id": "A6", "service_date": D(2015, 9, 9), "kind": "drug", "code": "620000002", "quantity": 10.0},
]


def tiny_rows() -> dict[str, list[dict]]:
    """A fresh copy of the tiny valid database, table name -> list of row dicts."""
    return copy.deepcopy({
        "facilities": _FACILITIES, "admissions": _ADMISSIONS, "diagnoses": _DIAGNOSES,
        "procedures": _PROCEDURES, "billing": _BILLING,
    })


def to_arrow(name: str, rows: list[dict], types: dict[str, pa.DataType] | None = None) -> pa.Table:
    """Rows as an Arrow table of the canonical schema, with some columns' types overridden."""
    fields = [pa.field(f.name, (types or {}).get(f.name, f.type)) for f in arrow_schema(name)]
    present = set().union(*(r.keys() for r in rows)) if rows else {f.name for f in fields}
    return pa.Table.from_pylist(rows, schema=pa.schema([f for f in fields if f.name in present]))


def _csv_value(v, date_format: str) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dt.date):
        return v.strftime("%Y%m%d" if date_format == "yyyymmdd" else "%Y-%m-%d")
    s = str(v)
    return '"' + s.replace('"', '""') + '"' if any(ch in s for ch in ',"\n') else s


def write_db(
    path: Path,
    rows: dict[str, list[dict]] | None = None,
    fmt: str = "parquet",
    types: dict[str, dict[str, pa.DataType]] | None = None,
    encoding: str = "utf-8",
    date_format: str = "iso",
) -> Path:
    """Write a database folder: one NAME.parquet or NAME.csv per table. Returns the folder."""
    rows = tiny_rows() if rows is None else rows
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        if name not in rows:
            continue
        if fmt == "parquet":
            pq.write_table(to_arrow(name, rows[name], (types or {}).get(name)), path / f"{name}.parquet")
        else:
            cols = [c.name for c in TABLES[name] if any(c.name in r for r in rows[name]) or not rows[name]]
            lines = [",".join(cols)]
            lines += [",".join(_csv_value(r.get(c), date_format) for c in cols) for r in rows[name]]
            (path / f"{name}.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def test_tiny_database_is_valid_parquet(tmp_path):
    from hospstudy.data.validate import validate_database

    report = validate_database(write_db(tmp_path / "db"), progress=False)
    assert report.findings == [], [f.to_dict() for f in report.findings]
    assert report.ok and report.exit_code == 0
    assert report.tables["billing"] == {"format": "parquet", "files": 1, "rows": len(_BILLING)}


def test_tiny_database_is_valid_csv(tmp_path):
    from hospstudy.data.validate import validate_database

    report = validate_database(write_db(tmp_path / "db", fmt="csv", date_format="yyyymmdd"), progress=False)
    assert report.findings == [], [f.to_dict() for f in report.findings]
    assert report.tables["admissions"]["encoding"] == "utf-8"
