"""The round trip of issue 9: the synthetic world as Parquet, and the same world written as raw
DPC files (``synth --format dpc-raw``) then imported (``import-dpc``), give the same database and
the same flagship analytic dataset on every column the raw files can carry.

Raw-imported identifiers are mapped onto the Parquet ones through the documented formats
(docs/synthetic.md "As raw DPC files", docs/data_model.md "From raw DPC files"):
施設コード = 100000000 + hospital_id, データ識別番号 = ``raw.data_ids(patient_id)``,
admission_id = "<施設コード>-<データ識別番号>-<yyyymmdd>", patient_id = "<施設コード>-<データ識別番号>",
hospital_id through ``DB/private/hospital_ids.csv``. Not compared, because the raw files do not
carry it: ``spinal_level`` (must be null after import).

Scale 0.02, fiscal years 2015-2016 (both EF layouts: field 17 a flag in FY2015, 12 digits from
FY2016): ~7,500 stays, ~260,000 raw lines, ~45 index patients.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from hospstudy.cli import app
from hospstudy import Study
from hospstudy.data.readers import locate_tables, read_table
from hospstudy.data.schema import TABLE_NAMES
from hospstudy.data.synth import generate
from hospstudy.data.synth.raw import data_ids, facility_codes

ROOT = Path(__file__).resolve().parents[1]
ARGS = dict(seed=20240601, scale=0.02, years=(2015, 2016))
NOT_CARRIED: dict[str, list[str]] = {}  # every column is carried (spinal_level through the C79.5 disease name)


def _has_importer() -> bool:
    names = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    return "import-dpc" in names


pytestmark = pytest.mark.skipif(not _has_importer(), reason="the importer (hospstudy import-dpc, "
                                "src/hospstudy/data/dpc/, issue 9 part 1) is not on this branch yet")


@pytest.fixture(scope="module")
def dbs(tmp_path_factory):
    base = tmp_path_factory.mktemp("roundtrip")
    pq_db, raw, imported = base / "pq", base / "raw", base / "imported"
    generate(pq_db, **ARGS)
    written = generate(raw, format="dpc-raw", **ARGS)
    r = CliRunner().invoke(app, ["import-dpc", str(raw), "--facilities", str(raw / "facilities.csv"), "--out", str(imported)])
    assert r.exit_code == 0, r.output
    # Every line the writer wrote is accounted for: Form 1 and EF lines imported, but the
    # ward-level forms' lines, which are skipped under their reason (they are not stays).
    rep = json.loads((imported / "import_report.json").read_text(encoding="utf-8"))
    per_kind = {k: sum(f["lines"] for f in rep["files"] if f["kind"] == k) for k in ("form1", "ef")}
    assert per_kind == {"form1": written["form1_lines"], "ef": written["ef_lines"]}
    reasons = {(x["kind"], x["reason"]): x["count"] for x in rep["reasons"]}
    assert reasons[("form1", "ward_level_form")] == written["ward_level_form1_lines"] > 0
    assert rep["lines"]["rejected"] == 0
    # The writer's fake personal identifiers (postcode, insurer number, doctor code) are dropped:
    # no identifiers file, and the tables hold the data model's columns only (compared below).
    assert sorted(p.name for p in (imported / "private").iterdir()) == ["hospital_ids.csv"]
    assert sum(f["imported"] for f in rep["files"]) == written["form1_lines"] - written["ward_level_form1_lines"] + written["ef_lines"]
    return pq_db, imported


def _tables(db: Path) -> dict[str, pd.DataFrame]:
    src = locate_tables(db)
    return {t: read_table(src[t]).to_pandas() for t in TABLE_NAMES}


@pytest.fixture(scope="module")
def tables(dbs):
    pq_db, imported = dbs
    return _tables(pq_db), _tables(imported)


@pytest.fixture(scope="module")
def idmap(dbs, tables):
    """Parquet ids -> the ids the importer builds from the raw keys."""
    _, imported = dbs
    adm = tables[0]["admissions"]
    fac = facility_codes(adm.hospital_id.to_numpy())
    data = data_ids(pa.array(adm.patient_id))
    ymd = pd.to_datetime(adm.admit_date).dt.strftime("%Y%m%d").to_numpy()
    pid = np.array([f"{f}-{d:010d}" for f, d in zip(fac, data)], dtype=object)
    hmap = pd.read_csv(imported / "private" / "hospital_ids.csv", dtype={"facility_code": str})
    hosp = dict(zip(hmap.facility_code.astype(np.int64), hmap.hospital_id))
    # patient_id is not mapped on its own: a patient at two hospitals has two raw numbers, so
    # each row's patient follows from its admission ("<施設コード>-<データ識別番号>").
    return {
        "admission_id": dict(zip(adm.admission_id, [f"{p}-{y}" for p, y in zip(pid, ymd)])),
        "hospital_id": {h: hosp[f] for h, f in zip(adm.hospital_id, fac)},
    }


def _mapped(df: pd.DataFrame, idmap) -> pd.DataFrame:
    df = df.copy()
    for col, m in idmap.items():
        if col in df:
            df[col] = df[col].map(m)
            assert df[col].notna().all(), col
    if "patient_id" in df:
        df["patient_id"] = df["admission_id"].str[: -len("-yyyymmdd")]
    return df


def _same_rows(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    assert list(a.columns) == list(b.columns), what
    assert len(a) == len(b), f"{what}: {len(a)} rows from Parquet, {len(b)} after import"
    cols = list(a.columns)
    a = a.sort_values(cols, kind="stable").reset_index(drop=True)
    b = b.sort_values(cols, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False, obj=what)


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_tables_row_for_row(tables, idmap, table):
    pq_t, imp_t = tables[0][table], tables[1][table]
    drop = NOT_CARRIED.get(table, [])
    for col in drop:
        assert imp_t[col].isna().all(), f"{table}.{col} is not carried by the raw files: null after import"
    _same_rows(_mapped(pq_t, idmap).drop(columns=drop), imp_t.drop(columns=drop), table)


def test_flagship_analytic_dataset(dbs, idmap):
    pq_db, imported = dbs
    study = Study.load(ROOT / "studies" / "spinal_metastasis.toml")
    a = study.build_cohort(pq_db, validate=False)
    b = study.build_cohort(imported)  # validates the imported database first
    assert len(a.analytic) > 30
    drop = NOT_CARRIED.get("analytic", [])
    assert b.analytic[drop].isna().all().all()
    _same_rows(_mapped(a.analytic, idmap).drop(columns=drop), b.analytic.drop(columns=drop), "analytic dataset")
    # Same admissions through every step; patients agree from the first-per-patient step on
    # (before it, a patient treated at two hospitals counts twice after import).
    pd.testing.assert_series_equal(a.attrition.admissions, b.attrition.admissions)
    assert a.attrition.patients.iloc[-1] == b.attrition.patients.iloc[-1]
