"""Readers: table discovery, CSV in UTF-8 and CP932, date formats, casts, unusable input."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hospstudy.data.readers import detect_encoding, locate_tables, read_table
from hospstudy.data.schema import arrow_schema
from hospstudy.data.validate import validate_database
from hospstudy.errors import DataUnusableError, DataValidationError, InputError
from test_validate_fixtures import tiny_rows, to_arrow, write_db


@pytest.mark.parametrize("encoding,date_format", [("utf-8", "iso"), ("cp932", "yyyymmdd"), ("utf-8-sig", "yyyymmdd")])
def test_csv_reads_typed_like_parquet(tmp_path, encoding, date_format):
    pq_db = write_db(tmp_path / "pq")
    csv_db = write_db(tmp_path / "csv", fmt="csv", encoding=encoding, date_format=date_format)
    tables = locate_tables(csv_db)
    assert tables["facilities"].format == "csv"
    assert tables["facilities"].encoding == ("cp932" if encoding == "cp932" else "utf-8")
    for name, src in tables.items():
        got = read_table(src)
        assert got.schema == arrow_schema(name)
        assert got.equals(read_table(locate_tables(pq_db)[name])), name
    fac = read_table(tables["facilities"], columns=["region", "hospital_id"])
    assert fac.column_names == ["hospital_id", "region"]
    assert fac.column("region").to_pylist()[:3] == ["東京都", "東京都", "大阪府"]


def test_cp932_database_validates_clean_and_reports_csv_rows(tmp_path):
    rows = tiny_rows()
    rows["admissions"][3]["age"] = 150
    db = write_db(tmp_path / "db", rows, fmt="csv", encoding="cp932")
    assert detect_encoding(db / "facilities.csv") == "cp932"
    report = validate_database(db, progress=False)
    assert report.tables["facilities"] == {"format": "csv", "files": 1, "rows": 4, "encoding": "cp932"}
    (f,) = report.findings
    assert (f.rule, f.count, f.examples[0].file, f.examples[0].row, f.examples[0].value) == (
        "age_range", 1, "admissions.csv", 4, "150")
    # the encoding may also be given; Shift_JIS names CP932
    assert validate_database(db, encoding="shift_jis", progress=False).find("age_range")


def test_csv_text_values_that_do_not_cast(tmp_path):
    db = write_db(tmp_path / "db", fmt="csv")
    text = (db / "admissions.csv").read_text().splitlines()
    fields = text[2].split(",")
    fields[4] = "2015/13/01"  # discharge_date
    fields[7] = "maybe"  # emergency
    text[2] = ",".join(fields)
    (db / "admissions.csv").write_text("\n".join(text) + "\n")
    report = validate_database(db, progress=False)
    got = {(f.rule, f.column, f.examples[0].row, f.examples[0].value) for f in report.findings}
    assert got == {("value_type", "discharge_date", 2, "2015/13/01"), ("value_type", "emergency", 2, "maybe")}
    with pytest.raises(DataValidationError, match=r"admissions.csv row 2: admissions.discharge_date value '2015/13/01'"):
        read_table(locate_tables(db)["admissions"])


def test_date_formats_and_boolean_spellings(tmp_path):
    db = write_db(tmp_path / "db", fmt="csv")
    (db / "procedures.csv").write_text(
        "admission_id,proc_code,proc_date\nA1,K1422,2015/1/12\nA2,K142-4,20150331\nA2,K1425,2015-05-02\n"
        "A3,K136,2015-04-01\nA6,K136-2,20150910\n"
    )
    (db / "facilities.csv").write_text(
        "hospital_id,fiscal_year,cancer_center,beds,teaching,region\n101,2014,1,600,yes,x\n101,2015.0,TRUE,600,Y,x\n"
        "102,2014,0,250,no,y\n102,2015,t,250,F,y\n"
    )
    report = validate_database(db, progress=False)
    assert report.findings == [], [f.to_dict() for f in report.findings]
    procs = read_table(locate_tables(db)["procedures"])
    assert procs.column("proc_date").to_pylist()[:2] == [dt.date(2015, 1, 12), dt.date(2015, 3, 31)]
    fac = read_table(locate_tables(db)["facilities"])
    assert fac.column("cancer_center").to_pylist() == [True, True, False, True]
    assert fac.column("teaching").to_pylist() == [True, True, False, False]
    assert fac.column("fiscal_year").type == pa.int16()


def test_hive_partitioned_parts_name_the_part_file(tmp_path):
    db = write_db(tmp_path / "db")
    (db / "billing.parquet").unlink()
    rows = tiny_rows()["billing"]
    rows[3]["kind"] = "bogus"  # A2's line in FY2015
    for fy in (2014, 2015):
        part = db / "billing" / f"fiscal_year={fy}"
        part.mkdir(parents=True)
        sel = [r for r in rows if r["service_date"].year - (r["service_date"].month < 4) == fy]
        pq.write_table(to_arrow("billing", sel), part / "part-0.parquet")
    src = locate_tables(db)["billing"]
    assert src.hive and len(src.paths) == 2
    assert read_table(src).num_rows == len(rows)
    assert "fiscal_year" not in read_table(src).column_names
    report = validate_database(db, progress=False)
    (f,) = report.findings
    assert f.rule == "allowed_values" and f.column == "kind"
    assert (f.examples[0].file, f.examples[0].row) == ("billing/fiscal_year=2015/part-0.parquet", 1)
    assert report.tables["billing"]["files"] == 2


def test_part_missing_a_column_is_named(tmp_path):
    db = write_db(tmp_path / "db")
    (db / "diagnoses.parquet").unlink()
    rows = tiny_rows()["diagnoses"]
    (db / "diagnoses").mkdir()
    pq.write_table(to_arrow("diagnoses", rows[:4]), db / "diagnoses" / "a.parquet")
    pq.write_table(to_arrow("diagnoses", rows[4:]).drop_columns(["role"]), db / "diagnoses" / "b.parquet")
    report = validate_database(db, progress=False)
    (miss,) = report.find("missing_column")
    assert (miss.column, miss.count, miss.examples[0].file) == ("role", 1, "diagnoses/b.parquet")
    (nn,) = report.find("not_null")
    assert (nn.column, nn.count, nn.examples[0].file, nn.examples[0].row) == ("role", 6, "diagnoses/b.parquet", 1)


# -- unusable input: DataUnusableError with the file named, never a traceback


def test_missing_folder_and_missing_table(tmp_path):
    with pytest.raises(DataUnusableError, match="no such database folder"):
        validate_database(tmp_path / "nope")
    db = write_db(tmp_path / "db")
    (db / "procedures.parquet").unlink()
    with pytest.raises(DataUnusableError, match="missing table.*procedures"):
        validate_database(db)


def test_corrupt_parquet(tmp_path):
    db = write_db(tmp_path / "db")
    (db / "billing.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataUnusableError, match=r"billing.parquet: not a readable Parquet file"):
        validate_database(db)
    with pytest.raises(DataUnusableError, match=r"billing.parquet"):
        read_table(locate_tables(db)["billing"])


def test_truncated_parquet(tmp_path):
    db = write_db(tmp_path / "db")
    data = (db / "admissions.parquet").read_bytes()
    (db / "admissions.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataUnusableError, match="admissions.parquet"):
        validate_database(db)


def test_csv_neither_utf8_nor_cp932(tmp_path):
    db = write_db(tmp_path / "db", fmt="csv")
    (db / "facilities.csv").write_bytes(b"hospital_id,fiscal_year,cancer_center,beds,teaching,region\n1,2014,1,20,1,\x81 \xff\n")
    with pytest.raises(DataUnusableError, match=r"facilities.csv line 2: not decodable as UTF-8 or CP932 \(byte 0x81\)"):
        validate_database(db)


def test_cp932_read_as_utf8_when_told(tmp_path):
    db = write_db(tmp_path / "db", fmt="csv", encoding="cp932")
    with pytest.raises(DataUnusableError, match=r"facilities.csv: cannot read as utf-8 CSV.*--encoding cp932"):
        validate_database(db, encoding="utf-8")


def test_unknown_encoding_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="'encoding' parameter must be one of utf-8, cp932"):
        validate_database(write_db(tmp_path / "db", fmt="csv"), encoding="latin-1")


def test_malformed_csv_row(tmp_path):
    db = write_db(tmp_path / "db", fmt="csv")
    with open(db / "diagnoses.csv", "a") as f:
        f.write("A1,C795,main,false,extra\n")
    with pytest.raises(DataUnusableError, match=r"diagnoses.csv line 12: cannot read as utf-8 CSV: 5 field\(s\) where the header has 4"):
        validate_database(db)


def test_empty_csv_file(tmp_path):
    db = write_db(tmp_path / "db", fmt="csv")
    (db / "billing.csv").write_bytes(b"")
    with pytest.raises(DataUnusableError, match="billing.csv: empty CSV file"):
        validate_database(db)


def test_read_table_errors(tmp_path):
    rows = tiny_rows()
    for r in rows["admissions"]:
        r.pop("sex")
    db = write_db(tmp_path / "db", rows)
    src = locate_tables(db)["admissions"]
    with pytest.raises(DataValidationError, match=r"admissions: unusable column\(s\) sex \(missing\)"):
        read_table(src)
    assert read_table(src, columns=["admission_id", "age"]).num_rows == 6
    with pytest.raises(InputError, match="'columns' parameter of read_table"):
        read_table(src, columns=["nope"])


def test_read_table_casts_stored_types(tmp_path):
    rows = tiny_rows()
    for r in rows["admissions"]:
        r["admit_date"] = int(r["admit_date"].strftime("%Y%m%d"))
    db = write_db(tmp_path / "db", rows, types={"admissions": {"admit_date": pa.int64(), "age": pa.int64(),
                                                               "hospital_id": pa.large_string()}} and
                  {"admissions": {"admit_date": pa.int64(), "age": pa.int64()}})
    t = read_table(locate_tables(db)["admissions"], columns=["admit_date", "age"])
    assert t.schema == pa.schema([arrow_schema("admissions").field("admit_date"), arrow_schema("admissions").field("age")])
    assert t.column("admit_date")[0].as_py() == dt.date(2015, 1, 10)
    report = validate_database(db, progress=False)
    assert {(f.rule, f.column) for f in report.findings} == {("castable_type", "admit_date"), ("castable_type", "age")}
    assert report.exit_code == 0


def test_read_table_rejects_a_value_that_does_not_fit(tmp_path):
    rows = tiny_rows()
    rows["admissions"][3]["age"] = 40000
    db = write_db(tmp_path / "db", rows, types={"admissions": {"age": pa.int32()}})
    with pytest.raises(DataValidationError, match=r"admissions.parquet row 4: admissions.age value '40000' is not a valid int"):
        read_table(locate_tables(db)["admissions"])


def test_csv_with_its_own_header_names_says_so(tmp_path):
    db = write_db(tmp_path / "db", fmt="csv", encoding="cp932")
    (db / "procedures.csv").write_bytes("データ識別番号,手術コード,手術日\nA1,K1422,20150112\n".encode("cp932"))
    report = validate_database(db, progress=False)
    assert [(f.rule, f.column) for f in report.findings] == [
        ("missing_column", "admission_id"), ("missing_column", "proc_code"), ("missing_column", "proc_date")]
    assert "headers must use the data model's column names" in report.findings[0].message


def test_database_without_suspected_reads_false_and_warns(tmp_path):
    """A database written before diagnoses.suspected existed: read as false, validate warns."""
    from hospstudy.data.readers import locate_tables, read_table

    db = write_db(tmp_path / "db")
    rows = tiny_rows()["diagnoses"]
    pq.write_table(to_arrow("diagnoses", rows).drop_columns(["suspected"]), db / "diagnoses.parquet")
    t = read_table(locate_tables(db)["diagnoses"])
    assert t.column("suspected").to_pylist() == [False] * len(rows)
    report = validate_database(db, progress=False)
    (w,) = report.find("defaulted_column")
    assert (w.severity, w.table, w.column, w.examples[0].file) == ("warning", "diagnoses", "suspected", "diagnoses.parquet")
    assert report.exit_code == 0
