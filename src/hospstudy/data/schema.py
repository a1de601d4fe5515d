"""The canonical DPC-layout data model (see docs/data_model.md).

Everything downstream of the readers sees only these five tables. A database is a folder with
one entry per table: ``NAME.parquet`` (a file) or ``NAME/`` (a folder of Parquet parts, possibly
hive-partitioned by ``fiscal_year``). This module is the single source of truth for table
names, column types, nullability and the allowed values of enum-like columns.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool = False
    allowed: tuple | None = None  # closed set of allowed values, if any
    doc: str = ""
    # Value read for a column absent from a file written before the column was added (older
    # databases stay readable; ``hospstudy validate`` warns). None = the column is required.
    default: object = None


SEX = ("M", "F")
DISCHARGE_TO = ("home", "other_hospital", "care_facility", "death", "other")
DIAGNOSIS_ROLES = ("main", "trigger", "resource", "comorbidity", "complication")
BILLING_KINDS = ("drug", "procedure", "radiotherapy", "transfusion", "rehabilitation", "other")
JCS_VALUES = (0, 1, 2, 3, 10, 20, 30, 100, 200, 300)
SPINAL_LEVELS = ("cervical", "thoracic", "lumbar", "sacral", "multiple")

# DPC Form 1 ADL string: 10 digits, one per Barthel item, in this order; '9' = unknown.
ADL_ITEMS = (
    "eating", "transfers", "grooming", "toilet", "bathing",
    "walking", "stairs", "dressing", "bowels", "bladder",
)
ADL_MAX_LEVEL = (2, 3, 1, 2, 1, 3, 2, 2, 2, 2)
ADL_UNKNOWN = "9"
WALKING_INDEX = ADL_ITEMS.index("walking")  # walking: 3 independent, 2 with help, 1 wheelchair, 0 unable

# Syntax of codes as DPC Form 1 writes them.
ICD10_PATTERN = r"^[A-Z][0-9]{2}[0-9A-Z]{0,2}$"  # 'C795', 'C78', 'S7200'; no dot
KCODE_PATTERN = r"^K[0-9]{3}(-[0-9]+)?[0-9]?$"  # 'K1422', 'K142-4', 'K136', 'K136-2'

TABLES: dict[str, tuple[Column, ...]] = {
    "facilities": (
        Column("hospital_id", pa.int32()),
        Column("fiscal_year", pa.int16()),
        Column("cancer_center", pa.bool_(), doc="designated cancer care hospital that fiscal year"),
        Column("beds", pa.int32()),
        Column("teaching", pa.bool_()),
        Column("region", pa.string()),
    ),
    "admissions": (
        Column("admission_id", pa.string(), doc="unique"),
        Column("patient_id", pa.string(), doc="pseudonym"),
        Column("hospital_id", pa.int32()),
        Column("admit_date", pa.date32()),
        Column("discharge_date", pa.date32()),
        Column("age", pa.int16()),
        Column("sex", pa.string(), allowed=SEX),
        Column("emergency", pa.bool_()),
        Column("ambulance", pa.bool_()),
        Column("discharge_to", pa.string(), allowed=DISCHARGE_TO),
        Column("height_cm", pa.float32(), nullable=True),
        Column("weight_kg", pa.float32(), nullable=True),
        Column("jcs", pa.int16(), nullable=True, allowed=JCS_VALUES),
        Column("adl_adm", pa.string(), nullable=True, doc="DPC Form 1 ADL string at admission"),
        Column("adl_dis", pa.string(), nullable=True, doc="DPC Form 1 ADL string at discharge"),
        Column("spinal_level", pa.string(), nullable=True, allowed=SPINAL_LEVELS),
    ),
    "diagnoses": (
        Column("admission_id", pa.string()),
        Column("icd10", pa.string(), doc="ICD-10 without dot"),
        Column("role", pa.string(), allowed=DIAGNOSIS_ROLES),
        Column("suspected", pa.bool_(), default=False,
               doc="suspected diagnosis (DPC Form 1 modifier 8002, 'の疑い'); code lists ignore it unless a condition says suspected = true"),
    ),
    "procedures": (
        Column("admission_id", pa.string()),
        Column("proc_code", pa.string(), doc="Japanese fee-schedule K-code as DPC Form 1 writes it"),
        Column("proc_date", pa.date32()),
    ),
    "billing": (
        Column("admission_id", pa.string()),
        Column("service_date", pa.date32()),
        Column("kind", pa.string(), allowed=BILLING_KINDS),
        Column("code", pa.string()),
        Column("quantity", pa.float32()),
    ),
}

TABLE_NAMES: tuple[str, ...] = tuple(TABLES)


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of a canonical table."""
    return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in TABLES[table]])


def column_names(table: str) -> list[str]:
    return [c.name for c in TABLES[table]]


def fiscal_year(d: _dt.date) -> int:
    """Japanese fiscal year: April to March, so 31 March 2013 is FY2012 and 1 April 2013 FY2013."""
    return d.year - (d.month < 4)
