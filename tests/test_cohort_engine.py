"""The cohort engine on a hand-made database: every rule of the flagship, on DuckDB and on Spark.

The database and the expected rows are in test_cohort_tinydb.py, written by hand. The flagship
study file itself is run (not a test copy), so these tests pin its definitions. Spark runs once
per session (one SparkSession, one cohort build) and is compared cell by cell with the same
hand-written expectations and, through Arrow, with DuckDB.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from hospstudy import Study
from test_cohort_tinydb import EXPECTED, EXPECTED_ATTRITION, EXPECTED_BMI, EXPECTED_QUARTILE, write_tiny_db

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = ROOT / "studies" / "spinal_metastasis.toml"


@pytest.fixture(scope="session")
def tiny_db(tmp_path_factory):
    return write_tiny_db(tmp_path_factory.mktemp("tinydb") / "db")


@pytest.fixture(scope="session")
def flagship():
    return Study.load(FLAGSHIP)


@pytest.fixture(scope="session")
def spark_session():
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java")
    from hospstudy.cohort.engine import spark_session as make

    session = make("local[2]")
    yield session
    session.stop()


_BUILT: dict = {}


@pytest.fixture(scope="session")
def built(request, tiny_db, flagship):
    """One cohort build per engine per session."""

    def get(engine):
        if engine not in _BUILT:
            spark = request.getfixturevalue("spark_session") if engine == "spark" else None
            _BUILT[engine] = flagship.build_cohort(tiny_db, engine=engine, spark=spark, validate=engine == "duckdb")
        return _BUILT[engine]

    return get


def check_attrition(r):
    a = r.attrition
    assert list(a.columns) == ["step", "name", "description", "admissions", "patients", "admissions_removed", "patients_removed",
                               "hospitals", "hospitals_removed"]
    # hospitals: every hospital of the database is in the cohort's hospitals or removed at one step
    assert a.hospitals_removed.sum() + a.hospitals.iloc[-1] == a.hospitals.iloc[0]
    assert a.hospitals.iloc[-1] == r.analytic["hospital_id"].nunique()
    assert (a.hospitals.diff().fillna(0) <= 0).all()
    got = list(a[["name", "admissions", "patients", "admissions_removed", "patients_removed"]].itertuples(index=False, name=None))
    assert got == EXPECTED_ATTRITION
    assert list(a.step) == list(range(len(a)))
    # every admission of the database is in the cohort or removed by exactly one named step
    assert a.admissions_removed.sum() + a.admissions.iloc[-1] == a.admissions.iloc[0] == 14


def check_rows(r):
    df = r.analytic.set_index("patient_id")
    assert sorted(df.index) == sorted(EXPECTED)
    problems = []
    for pid, row in EXPECTED.items():
        for col, want in row.items():
            got = df.at[pid, col]
            if want is None:
                ok = pd.isna(got)
            elif isinstance(want, float):
                ok = math.isclose(float(got), want, rel_tol=1e-12)
            elif isinstance(want, dt.date):
                ok = pd.Timestamp(got).date() == want
            else:
                ok = (not pd.isna(got)) and got == want
            if not ok:
                problems.append(f"{pid}.{col}: got {got!r}, expected {want!r}")
        if EXPECTED_QUARTILE[pid] != df.at[pid, "volume_quartile"]:
            problems.append(f"{pid}.volume_quartile: got {df.at[pid, 'volume_quartile']}, expected {EXPECTED_QUARTILE[pid]}")
        if pid in EXPECTED_BMI and not math.isclose(df.at[pid, "bmi"], EXPECTED_BMI[pid], rel_tol=1e-9):
            problems.append(f"{pid}.bmi: got {df.at[pid, 'bmi']}, expected {EXPECTED_BMI[pid]}")
    assert not problems, "\n".join(problems)


def check_contract(r, flagship):
    df = r.analytic
    assert list(df.columns) == flagship.output_columns
    assert "walking_dis" not in df.columns  # a helper (keep = false)
    for c in ("patient_id", "admission_id", "hospital_id", "fiscal_year", "surgery_date", "cancer_center", "volume",
              "volume_per50", "volume_quartile", "age", "age_group", "sex", "bmi", "bmi_group", "charlson",
              "barthel_adm", "walking_adm", "jcs_group", "emergency", "ambulance", "primary_site", "katagiri_group",
              "visceral_mets", "brain_mets", "spinal_level", "surgery_type", "teaching", "death_30d",
              "in_hospital_death", "complication", "unfavorable_ambulatory", "discharged_home", "postop_los",
              "los_to_home", "los_to_home_event"):
        assert c in df.columns, c
    assert df.cancer_center.dtype == bool and df.death_30d.dtype == bool
    assert str(df.unfavorable_ambulatory.dtype) == "boolean"  # nullable: missing ADL and deaths
    assert df.volume.dtype == "int64" and df.volume_per50.dtype == "float64"
    assert str(df.surgery_date.dtype).startswith("datetime64")
    assert df.patient_id.is_unique
    d = r.dictionary
    assert list(d.columns) == ["column", "type", "definition", "source_codes"]
    assert list(d.column) == list(df.columns)
    assert d.set_index("column").at["charlson", "source_codes"].count("I21*") == 1
    assert "K142-4" in d.set_index("column").at["surgery_date", "source_codes"]
    assert (d.definition.str.len() > 0).all()


def test_attrition_by_hand_and_reconciles(built):
    check_attrition(built("duckdb"))


def test_analytic_rows_by_hand(built):
    check_rows(built("duckdb"))


def test_columns_and_types_follow_the_contract(built, flagship):
    check_contract(built("duckdb"), flagship)


def _reordered_study():
    """The flagship with its first-per-patient step moved to the front and a last step on a
    facility field: the window and the steps after it on both engines."""
    from hospstudy.settings import read_study_file

    raw = read_study_file(FLAGSHIP)
    steps = raw["cohort"]["steps"]
    first = [s for s in steps if s.get("first_per_patient")]
    raw["cohort"]["steps"] = first + [s for s in steps if not s.get("first_per_patient")] + [
        {"name": "cancer_center_only", "include": {"field": "cancer_center", "eq": True}}]
    return Study.from_dict(raw, FLAGSHIP)


def _suspected_study():
    """The flagship whose spinal-metastasis step also counts suspected diagnoses."""
    from hospstudy.settings import read_study_file

    raw = read_study_file(FLAGSHIP)
    for s in raw["cohort"]["steps"]:
        if s["name"] == "spinal_metastasis":
            s["include"] = dict(s["include"], suspected=True)
    return Study.from_dict(raw, FLAGSHIP)


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def test_suspected_diagnoses_count_only_when_asked(built, tiny_db, engine, request):
    """A07's only C79.5 is suspected: the flagship removes it at spinal_metastasis (see
    EXPECTED_ATTRITION); with ``suspected = true`` it passes that step and every later one
    (P06 has no other admission), so it joins the cohort."""
    spark = request.getfixturevalue("spark_session") if engine == "spark" else None
    r = _suspected_study().build_cohort(tiny_db, engine=engine, spark=spark, validate=False)
    got = list(r.attrition[["name", "admissions", "patients", "admissions_removed", "patients_removed"]].itertuples(index=False, name=None))
    # by hand: spinal_metastasis now removes A06, A08, A14 only (3); A07 (H1, FY2015, aged 62,
    # H1 has a FY2015 record) passes every later step
    assert got == [
        ("database", 14, 13, 0, 0),
        ("spine_surgery", 13, 12, 1, 1),
        ("spinal_metastasis", 10, 9, 3, 3),
        ("study_period", 9, 8, 1, 1),
        ("adult", 8, 7, 1, 1),
        ("facility_record", 7, 6, 1, 1),
        ("first_admission", 6, 6, 1, 0),
    ]
    assert sorted(r.analytic.admission_id) == ["A01", "A02", "A03", "A04", "A07", "A13"]
    flagship_ids = sorted(built("duckdb").analytic.admission_id)
    assert "A07" not in flagship_ids and len(flagship_ids) == 5


def test_suspected_key_only_on_diagnoses():
    from hospstudy.cohort.spec import Condition

    with pytest.raises(ValueError, match="'suspected' applies to table 'diagnoses' only"):
        Condition(table="procedures", codes="x", suspected=True)


# Worked out by hand from the rows of test_cohort_tinydb.py: A05 (P04's second admission) goes
# first; A06, A07, A08, A14 lack C79.5; A12 (FY2011), A10 (17) and A11 (no record) as in the
# flagship; of A01, A02, A03, A04, A13 only A02 (H1 in FY2016) is at a cancer center. P04 leaves
# with A04 at the last step (a patient leaves at the last step that removes one of theirs).
EXPECTED_REORDERED = [
    ("database", 14, 13, 0, 0),
    ("spine_surgery", 13, 12, 1, 1),
    ("first_admission", 12, 12, 1, 0),
    ("spinal_metastasis", 8, 8, 4, 4),
    ("study_period", 7, 7, 1, 1),
    ("adult", 6, 6, 1, 1),
    ("facility_record", 5, 5, 1, 1),
    ("cancer_center_only", 1, 1, 4, 4),
]


def test_steps_after_the_first_per_patient_step(tiny_db):
    r = _reordered_study().build_cohort(tiny_db, validate=False)
    got = list(r.attrition[["name", "admissions", "patients", "admissions_removed", "patients_removed"]].itertuples(index=False, name=None))
    assert got == EXPECTED_REORDERED
    assert r.analytic.admission_id.tolist() == ["A02"]


@pytest.mark.spark
def test_spark_same_rules_same_rows(built, flagship, small_synth, tiny_db, request):
    """Every check above, on Spark, and Spark == DuckDB through Arrow on the hand-made and on a
    small synthetic database. One test, so that one pytest-xdist worker starts one Spark."""
    a, b = built("duckdb"), built("spark")
    check_attrition(b)
    check_rows(b)
    check_contract(b, flagship)
    assert a.table.schema.equals(b.table.schema), (a.table.schema, b.table.schema)
    assert a.table.equals(b.table)
    pd.testing.assert_frame_equal(a.attrition, b.attrition)

    spark = request.getfixturevalue("spark_session")
    a = flagship.build_cohort(small_synth, engine="duckdb", validate=False)
    b = flagship.build_cohort(small_synth, engine="spark", spark=spark, validate=False)
    assert len(a.analytic) > 50
    assert a.table.equals(b.table)
    pd.testing.assert_frame_equal(a.attrition, b.attrition)
    att = a.attrition
    assert att.admissions_removed.sum() + att.admissions.iloc[-1] == att.admissions.iloc[0]
    assert att.patients.iloc[-1] == len(a.analytic) == a.analytic.patient_id.nunique()

    # steps after the first-per-patient window, on both engines
    study = _reordered_study()
    for db in (tiny_db, small_synth):
        a = study.build_cohort(db, engine="duckdb", validate=False)
        b = study.build_cohort(db, engine="spark", spark=spark, validate=False)
        assert a.table.equals(b.table)
        pd.testing.assert_frame_equal(a.attrition, b.attrition)


def test_outputs_written(built, tmp_path):
    r = built("duckdb")
    paths = r.write(tmp_path / "out")
    assert paths["analytic"] == tmp_path / "out" / "private" / "analytic.parquet"
    t = pq.read_table(paths["analytic"])
    assert t.num_rows == 5 and t.equals(r.table)
    assert pd.read_csv(paths["attrition_exact"]).admissions.tolist() == [x[1] for x in EXPECTED_ATTRITION]
    assert pd.read_csv(paths["attrition"], dtype=str).admissions.iloc[-1] == "<10"
    assert pd.read_csv(paths["dictionary"]).column.tolist() == list(r.analytic.columns)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hospstudy.cli", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_cli_cohort(tiny_db, tmp_path):
    out = tmp_path / "out"
    r = _cli("cohort", FLAGSHIP, "--data", tiny_db, "--out", out)
    assert r.returncode == 0, r.stderr
    assert (out / "private" / "analytic.parquet").is_file()
    assert (out / "attrition.csv").is_file() and (out / "dictionary.csv").is_file()
    assert "5 patients" in r.stderr
    # exact counts stay in private/; the top level is disclosure-safe (every count of the tiny
    # database is under 10) and passes the report's checker
    exact = pd.read_csv(out / "private" / "attrition.csv")
    assert exact["patients"].tolist() == [r[2] for r in EXPECTED_ATTRITION]
    shared = pd.read_csv(out / "attrition.csv", dtype=str)
    assert shared["patients"].iloc[-1] == "<10" and not shared["patients"].isin(["5"]).any()
    from hospstudy.privacy import check_disclosure

    assert check_disclosure(out) == []


def test_cli_invalid_database_stops_with_report(tiny_db, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_db, bad)
    t = pq.read_table(bad / "admissions.parquet").to_pandas()
    t.loc[0, "sex"] = "X"
    import pyarrow as pa

    from hospstudy.data.schema import arrow_schema

    pq.write_table(pa.Table.from_pandas(t, schema=arrow_schema("admissions"), preserve_index=False), bad / "admissions.parquet")
    r = _cli("cohort", FLAGSHIP, "--data", bad, "--out", tmp_path / "out")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "sex" in r.stderr
    assert not (tmp_path / "out" / "private" / "analytic.parquet").exists()
    # --skip-validation runs anyway (the bad sex value is carried, not crashed on)
    r = _cli("cohort", FLAGSHIP, "--data", bad, "--out", tmp_path / "out2", "--skip-validation")
    assert r.returncode == 0, r.stderr


def test_cli_does_not_revalidate_unchanged_files(tiny_db, tmp_path):
    """A database that validated clean into OUT is not validated again while its files are
    unchanged; a changed file is validated (and here stops the run)."""
    import pyarrow as pa

    from hospstudy.data.schema import arrow_schema

    db, out = tmp_path / "db", tmp_path / "out"
    shutil.copytree(tiny_db, db)
    first = _cli("cohort", FLAGSHIP, "--data", db, "--out", out)
    assert first.returncode == 0, first.stderr
    assert "unchanged since they validated clean" not in first.stderr
    second = _cli("cohort", FLAGSHIP, "--data", db, "--out", out)
    assert second.returncode == 0 and "unchanged since they validated clean" in second.stderr
    again = _cli("cohort", FLAGSHIP, "--data", db, "--out", out, "--revalidate")
    assert again.returncode == 0 and "unchanged since they validated clean" not in again.stderr
    t = pq.read_table(db / "admissions.parquet").to_pandas()
    t.loc[0, "sex"] = "X"
    pq.write_table(pa.Table.from_pandas(t, schema=arrow_schema("admissions"), preserve_index=False), db / "admissions.parquet")
    changed = _cli("cohort", FLAGSHIP, "--data", db, "--out", out)
    assert changed.returncode == 1 and "sex" in changed.stderr


def test_cli_missing_table_is_exit_2(tmp_path):
    (tmp_path / "db").mkdir()
    r = _cli("cohort", FLAGSHIP, "--data", tmp_path / "db", "--out", tmp_path / "out", "--skip-validation")
    assert r.returncode == 2 and "missing table" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="session")
def small_synth(tmp_path_factory):
    from hospstudy.data import synth

    out = tmp_path_factory.mktemp("synth") / "db"
    synth.generate(out, seed=7, scale=0.01, years=(2012, 2020), effects=None, overwrite=True)
    return out


def test_second_study_without_python(tiny_db):
    """studies/hip_fracture.toml on the same database: A09 (P08, hip fracture S720, K0461 the day
    after admission, aged 85) is its only patient; the K-code volume counts hip surgery only."""
    r = Study.load(ROOT / "studies" / "hip_fracture.toml").build_cohort(tiny_db, validate=False)
    a = r.attrition
    assert list(a.name) == ["database", "hip_surgery", "hip_fracture", "study_period", "aged_65_plus",
                            "facility_record", "first_admission"]
    assert a.admissions.tolist() == [14, 1, 1, 1, 1, 1, 1]
    row = r.analytic.iloc[0].to_dict()
    assert (row["patient_id"], row["admission_id"], row["fiscal_year"], row["volume"]) == ("P08", "A09", 2016, 1)
    assert (row["fracture_type"], row["surgery_type"], row["days_to_surgery"], row["early_surgery"]) == (
        "neck", "osteosynthesis", 1, True)
    assert (row["postop_los"], row["death_30d"], row["discharged_home"], row["age_group"]) == (30, False, False, "85-94")


def test_csv_database_gives_the_same_cohort(built, tiny_db, flagship, tmp_path):
    """A database of CSV exports (dates as text) gives the rows the Parquet one gives."""
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds

    csv = tmp_path / "csv"
    csv.mkdir()
    for n in ("facilities", "admissions", "diagnoses", "procedures"):
        pacsv.write_csv(pq.read_table(tiny_db / f"{n}.parquet"), csv / f"{n}.csv")
    pacsv.write_csv(ds.dataset(tiny_db / "billing", format="parquet", partitioning=None).to_table(), csv / "billing.csv")
    r = flagship.build_cohort(csv, validate=False)
    assert r.table.equals(built("duckdb").table)
    pd.testing.assert_frame_equal(r.attrition, built("duckdb").attrition)


def _dpc_csv(table, path, region_ja: bool = False):
    """Write ``table`` the way DPC exports look: CP932, dates as YYYYMMDD, booleans as 0/1."""
    import pyarrow as pa

    frame = table.to_pandas()
    for f in table.schema:
        if pa.types.is_date(f.type):
            frame[f.name] = pd.to_datetime(frame[f.name]).dt.strftime("%Y%m%d")
        elif pa.types.is_boolean(f.type):
            frame[f.name] = frame[f.name].astype("Int64")
    if region_ja:
        frame["region"] = frame["region"].map({"Kanto": "関東", "Kinki": "近畿"}).fillna("その他")
    frame.to_csv(path, index=False, encoding="cp932")


def test_dpc_style_csv_database_gives_the_same_cohort(built, tiny_db, flagship, tmp_path):
    """CP932 CSV exports with YYYYMMDD dates and 0/1 booleans are read through the data
    package's reader and give the Parquet database's cohort."""
    import pyarrow.dataset as ds

    csv = tmp_path / "dpc"
    csv.mkdir()
    for n in ("facilities", "admissions", "diagnoses", "procedures"):
        _dpc_csv(pq.read_table(tiny_db / f"{n}.parquet"), csv / f"{n}.csv", region_ja=n == "facilities")
    _dpc_csv(ds.dataset(tiny_db / "billing", format="parquet", partitioning=None).to_table(), csv / "billing.csv")
    assert "20160320" in (csv / "admissions.csv").read_text(encoding="cp932")
    with pytest.raises(UnicodeDecodeError):
        (csv / "facilities.csv").read_text(encoding="utf-8")
    r = flagship.build_cohort(csv, validate=False)
    assert r.table.equals(built("duckdb").table)
    pd.testing.assert_frame_equal(r.attrition, built("duckdb").attrition)


def test_csv_bad_value_names_file_and_row(tiny_db, flagship, tmp_path):
    """A date that does not parse stops the build with the file, the row and the value."""
    from hospstudy.errors import DataValidationError

    csv = tmp_path / "bad"
    shutil.copytree(tiny_db, csv)
    (csv / "admissions.parquet").unlink()
    _dpc_csv(pq.read_table(tiny_db / "admissions.parquet"), csv / "admissions.csv")
    lines = (csv / "admissions.csv").read_text(encoding="cp932").splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[3], "20161345")  # third data row, admit_date
    (csv / "admissions.csv").write_text("\n".join(lines) + "\n", encoding="cp932")
    with pytest.raises(DataValidationError) as e:
        flagship.build_cohort(csv, validate=False)
    msg = str(e.value)
    assert "admissions.csv" in msg and "row 3" in msg and "admit_date" in msg and "20161345" in msg
