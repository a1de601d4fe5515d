"""Issue 11, hardening: one regression test per class of bad input (named after the class).

Each test plants the input that was read silently wrong (or crashed) and checks the one-line
named error, or that the result is the same as from the clean input. Small databases only:
the hand-made ones of test_validate_fixtures and test_cohort_tinydb.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hospstudy.data.hashing import input_file_hashes
from hospstudy.data.readers import find_table_files, locate_tables, read_table
from hospstudy.data.validate import validate_database
from hospstudy.errors import DataUnusableError, DataValidationError, HospstudyError
from test_cohort_tinydb import write_tiny_db
from test_validate_fixtures import tiny_rows, to_arrow, write_db

ROOT = Path(__file__).resolve().parents[1]


def _csv_text(table: pa.Table) -> str:
    """A table as comma-separated text with ISO dates (what an export tool writes)."""
    import pyarrow.csv as pacsv
    import io

    buf = io.BytesIO()
    pacsv.write_csv(table, buf, write_options=pacsv.WriteOptions(quoting_style="needed"))
    return buf.getvalue().decode()


def _parts_db(tmp_path: Path, name: str, formats: list[str]) -> tuple[Path, pa.Table]:
    """The tiny Parquet database with table ``name`` split into len(formats) parts in a folder,
    part i written as formats[i]. Returns the folder and the original table."""
    db = write_db(tmp_path / "db")
    table = pq.read_table(db / f"{name}.parquet")
    (db / f"{name}.parquet").unlink()
    folder = db / name
    n = len(formats)
    bounds = [round(i * table.num_rows / n) for i in range(n + 1)]
    for i, fmt in enumerate(formats):
        part = table.slice(bounds[i], bounds[i + 1] - bounds[i])
        sub = folder / f"fy={2014 + i}"
        sub.mkdir(parents=True)
        if fmt == "parquet":
            pq.write_table(part, sub / "part.parquet")
        else:
            (sub / "part.csv").write_text(_csv_text(part), encoding="utf-8")
    return db, table


# ---- class 1: every file under a table is read, or the run stops naming it --------------------

def test_class01_mixed_formats(tmp_path):
    db, _ = _parts_db(tmp_path, "admissions", ["parquet", "parquet", "csv"])
    with pytest.raises(DataUnusableError, match=r"admissions/fy=2016/part\.csv: table admissions mixes part formats"):
        validate_database(db, progress=False)
    with pytest.raises(DataUnusableError, match="mixes part formats"):
        input_file_hashes(db)

    # a table given both as NAME.parquet and NAME/: both named, neither chosen silently
    db2 = write_db(tmp_path / "db2")
    (db2 / "billing").mkdir()
    pq.write_table(pq.read_table(db2 / "billing.parquet"), db2 / "billing" / "part.parquet")
    with pytest.raises(DataUnusableError, match=r"table billing is given 2 times \(billing\.parquet, billing\)"):
        locate_tables(db2)

    # a file of another kind under a table folder
    db3, _ = _parts_db(tmp_path / "3", "diagnoses", ["parquet", "parquet"])
    (db3 / "diagnoses" / "notes.txt").write_text("exported 2024-04-01")
    with pytest.raises(DataUnusableError, match=r"diagnoses/notes\.txt: not a \.parquet or \.csv part"):
        locate_tables(db3)
    # bookkeeping files that hold no rows are not parts
    (db3 / "diagnoses" / "notes.txt").unlink()
    (db3 / "diagnoses" / "_SUCCESS").write_bytes(b"")
    assert len(locate_tables(db3)["diagnoses"].paths) == 2


def test_class01_unreadable_partition_folder(tmp_path, monkeypatch):
    db, _ = _parts_db(tmp_path, "admissions", ["parquet", "parquet"])
    locked = db / "admissions" / "fy=2015"
    real_scandir = os.scandir

    def scandir(path):  # a folder without read permission (chmod 0 does not stop root)
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataUnusableError, match=r"admissions/fy=2015: cannot list the folder \(Permission denied\)"):
        validate_database(db, progress=False)
    with pytest.raises(DataUnusableError, match=r"admissions/fy=2015: cannot list the folder"):
        input_file_hashes(db)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(formats=st.lists(st.sampled_from(["parquet", "csv"]), min_size=1, max_size=4),
       name=st.sampled_from(["admissions", "procedures", "billing"]))
def test_class01_property_random_splits(tmp_path_factory, formats, name):
    """Random splits of a table into parts of mixed formats give the same database or a named
    error (naming a part of the minority format)."""
    tmp = tmp_path_factory.mktemp("split")
    db, table = _parts_db(tmp, name, formats)
    if len(set(formats)) > 1:
        with pytest.raises(DataUnusableError, match=rf"{name}/fy=\d+/part\.(csv|parquet): table {name} mixes part formats"):
            locate_tables(db)
        return
    src = locate_tables(db)[name]
    assert len(src.paths) == len(formats)
    report = validate_database(db, progress=False)
    assert report.ok, [f.to_dict() for f in report.errors]
    assert report.tables[name]["rows"] == table.num_rows
    got = read_table(src)
    want = read_table(locate_tables(write_db(tmp / "orig"))[name])
    key = got.column_names[:2]
    assert got.sort_by([(k, "ascending") for k in key]).equals(want.sort_by([(k, "ascending") for k in key]))


# ---- class 2: what is read and what is hashed are one list ----------------------------------

def test_class02_hidden_files_hashed(tmp_path):
    db, table = _parts_db(tmp_path, "billing", ["parquet", "parquet"])
    before = input_file_hashes(db)
    # a hidden part is a part: read by validation (its rows counted) and hashed
    pq.write_table(table.slice(0, 2), db / "billing" / "fy=2014" / ".extra.parquet")
    after = input_file_hashes(db)
    assert "billing/fy=2014/.extra.parquet" in after and after != before
    assert validate_database(db, progress=False).tables["billing"]["rows"] == table.num_rows + 2
    files = sorted(p for _, _, parts in find_table_files(db).values() for p in parts)
    assert sorted(db / k for k in after) == files

    # the memo notices an edit that keeps the size and the modification time
    memo: dict = {}
    first = input_file_hashes(db, memo)
    target = db / "billing" / "fy=2014" / ".extra.parquet"
    st_before = target.stat()
    data = bytearray(target.read_bytes())
    data[-9] ^= 0xFF  # same size
    time.sleep(0.01)
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st_before.st_atime_ns, st_before.st_mtime_ns))
    assert target.stat().st_size == st_before.st_size and target.stat().st_mtime_ns == st_before.st_mtime_ns
    second = input_file_hashes(db, memo)
    assert second["billing/fy=2014/.extra.parquet"] != first["billing/fy=2014/.extra.parquet"]


# ---- class 3: dates in the future ----------------------------------------------------------

def test_class03_future_dates(tmp_path):
    rows = tiny_rows()
    rows["admissions"][0]["discharge_date"] = dt.date(2099, 1, 1)
    rows["procedures"][0]["proc_date"] = dt.date(2098, 5, 1)
    db = write_db(tmp_path / "db", rows)
    report = validate_database(db, progress=False)
    assert not report.ok
    got = {(f.table, f.column, f.examples[0].value) for f in report.find("date_in_future")}
    assert got == {("admissions", "discharge_date", "2099-01-01"), ("procedures", "proc_date", "2098-05-01")}
    assert all(f.severity == "error" for f in report.find("date_in_future"))

    # an admission after the last fiscal year of the facilities table
    rows = tiny_rows()
    last = max(r["fiscal_year"] for r in rows["facilities"])
    rows["admissions"][1]["admit_date"] = dt.date(last + 1, 4, 1)
    rows["admissions"][1]["discharge_date"] = dt.date(last + 1, 4, 10)
    for r in rows["procedures"] + rows["billing"]:
        if r["admission_id"] == rows["admissions"][1]["admission_id"]:
            r[("proc_date" if "proc_date" in r else "service_date")] = dt.date(last + 1, 4, 2)
    report = validate_database(write_db(tmp_path / "db2", rows), progress=False)
    (f,) = report.find("admit_after_last_fiscal_year")
    assert f.severity == "error" and f.count == 1 and f.examples[0].row == 2


# ---- class 4: a CSV in two encodings --------------------------------------------------------

@pytest.mark.parametrize("first,second", [("utf-8", "cp932"), ("cp932", "utf-8")])
@pytest.mark.parametrize("repeat", [0, 30000])  # the change within the first MiB, and after it
def test_class04_two_encodings(tmp_path, first, second, repeat):
    db = write_db(tmp_path / "db", fmt="csv", encoding=first)
    text = (db / "facilities.csv").read_bytes()
    body = text.split(b"\r\n", 1)[1]
    (db / "facilities.csv").write_bytes(text + body * repeat + "103,2015,0,300,0,北海道\r\n".encode(second))
    line = 1 + 4 + 4 * repeat + 1
    with pytest.raises(DataUnusableError, match=rf"facilities\.csv line {line}: .*not {'UTF-8' if first == 'utf-8' else 'CP932'}.*mixes encodings"):
        validate_database(db, progress=False)


# ---- class 12: staging casts what validate accepts, on both engines ---------------------------

def _castable_variant(tiny: Path, dest: Path) -> Path:
    """The tiny cohort database with dates stored as integers YYYYMMDD and as text, a
    time-zone-aware timestamp column, and integers as decimal text: all castable."""
    shutil.copytree(tiny, dest)
    adm = pq.read_table(tiny / "admissions.parquet")
    as_int = lambda col: pc.cast(pc.strftime(col, format="%Y%m%d"), pa.int32())  # noqa: E731
    adm = adm.set_column(adm.schema.get_field_index("admit_date"), "admit_date", as_int(adm["admit_date"]))
    # 20:00 UTC on the day before is 05:00 in Tokyo on the day itself: the date must not move
    dis = pc.cast(pc.cast(adm["discharge_date"], pa.timestamp("s")), pa.int64())
    dis = pc.cast(pc.subtract(dis, 4 * 3600), pa.timestamp("s", tz="UTC"))
    adm = adm.set_column(adm.schema.get_field_index("discharge_date"), "discharge_date", dis)
    pq.write_table(adm, dest / "admissions.parquet")
    proc = pq.read_table(tiny / "procedures.parquet")
    proc = proc.set_column(2, "proc_date", pc.strftime(proc["proc_date"], format="%Y/%m/%d"))
    pq.write_table(proc, dest / "procedures.parquet")
    fac = pq.read_table(tiny / "facilities.parquet")
    i = fac.schema.get_field_index("fiscal_year")
    fac = fac.set_column(i, "fiscal_year", pc.binary_join_element_wise(pc.cast(fac["fiscal_year"], pa.string()), "0", "."))
    pq.write_table(fac, dest / "facilities.parquet")
    return dest


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    from hospstudy.study import Study

    base = tmp_path_factory.mktemp("class12")
    tiny = write_tiny_db(base / "tiny")
    variant = _castable_variant(tiny, base / "variant")
    return tiny, variant, Study.load(ROOT / "studies" / "spinal_metastasis.toml")


def test_class12_castable_dates_staged(tiny_pair):
    tiny, variant, study = tiny_pair
    report = validate_database(variant, progress=False)
    assert report.ok, [f.to_dict() for f in report.errors]
    assert {f.column for f in report.find("castable_type")} == {"admit_date", "discharge_date", "proc_date", "fiscal_year"}
    (tz,) = [f for f in report.find("castable_type") if f.column == "discharge_date"]
    assert "Asia/Tokyo" in tz.message
    want = study.build_cohort(tiny)
    got = study.build_cohort(variant)
    assert got.table.equals(want.table)
    assert got.attrition.equals(want.attrition)


def test_class12_uncastable_value_stops_build(tiny_pair, tmp_path):
    _, variant, study = tiny_pair
    bad = tmp_path / "bad"
    shutil.copytree(variant, bad)
    adm = pq.read_table(bad / "admissions.parquet")
    vals = adm["admit_date"].to_pylist()
    vals[2] = 20161345
    adm = adm.set_column(adm.schema.get_field_index("admit_date"), "admit_date", pa.array(vals, pa.int32()))
    pq.write_table(adm, bad / "admissions.parquet")
    with pytest.raises(DataValidationError, match=r"admissions\.parquet row 3: admissions\.admit_date value '20161345'"):
        study.build_cohort(bad, validate=False)


@pytest.mark.spark
def test_class12_castable_dates_staged_spark(tiny_pair):
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java")
    from hospstudy.cohort.engine import spark_session

    tiny, variant, study = tiny_pair
    spark = spark_session("local[2]")
    want = study.build_cohort(tiny, validate=False)
    got = study.build_cohort(variant, engine="spark", spark=spark, validate=False)
    assert got.table.equals(want.table)
    assert got.attrition.equals(want.attrition)


# ---- class 13: clearer messages -------------------------------------------------------------

def test_class13_clear_messages(tmp_path):
    db = write_db(tmp_path / "db", fmt="csv")
    good = (db / "admissions.csv").read_text()

    (db / "admissions.csv").write_text(good.replace(",", ";"))
    with pytest.raises(DataUnusableError, match=r"admissions\.csv line 1: the header has one field: is the file separated by ';'\?"):
        validate_database(db, progress=False)

    lines = good.splitlines()
    lines[4] = ",".join(lines[4].split(",")[:5])  # the fourth record, line 5 of the file
    (db / "admissions.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataUnusableError, match=r"admissions\.csv line 5: .*5 field\(s\) where the header has"):
        validate_database(db, progress=False)
    (db / "admissions.csv").write_text(good)

    # a symbolic link loop is named as such, not as a missing table
    (db / "billing.csv").unlink()
    os.symlink(db / "billing.csv", db / "billing.csv")
    with pytest.raises(DataUnusableError, match=r"billing\.csv: table billing is a symbolic link that cannot be followed"):
        validate_database(db, progress=False)
    (db / "billing.csv").unlink()
    folder = db / "billing"
    folder.mkdir()
    (folder / "a.csv").write_text("admission_id,service_date,kind,code,quantity\n")
    os.symlink(folder, folder / "again")
    with pytest.raises(DataUnusableError, match=r"billing/again: the folder billing reached again"):
        locate_tables(db)


def test_class13_timezone_aware_dates(tmp_path):
    rows = tiny_rows()
    db = write_db(tmp_path / "db", rows)
    adm = pq.read_table(db / "admissions.parquet")
    # 20:00 UTC on the day before is 05:00 in Tokyo on the day itself
    ts = pc.cast(pc.cast(pc.cast(adm["admit_date"], pa.timestamp("s")), pa.int64()), pa.int64())
    ts = pc.cast(pc.subtract(ts, 4 * 3600), pa.timestamp("s", tz="UTC"))
    i = adm.schema.get_field_index("admit_date")
    pq.write_table(adm.set_column(i, "admit_date", ts), db / "admissions.parquet")
    got = read_table(locate_tables(db)["admissions"], columns=["admit_date"]).column("admit_date")
    assert got.to_pylist() == [r["admit_date"] for r in rows["admissions"]]


# ---- class 15: the package carries what it runs --------------------------------------------

def test_class15_package_data_and_metadata(tmp_path, monkeypatch):
    import importlib.metadata as md
    import importlib.resources as res
    import re
    import tomllib

    import hospstudy
    from hospstudy.run.pipeline import find_flagship
    from hospstudy.study import Study

    pkg = res.files("hospstudy")
    # the example studies and their code lists are package data, found from any folder
    flagship = pkg / "examples" / "spinal_metastasis.toml"
    assert flagship.is_file() and (pkg / "examples" / "codelists" / "charlson_quan2005.csv").is_file()
    assert (pkg / "py.typed").is_file()
    monkeypatch.chdir(tmp_path)
    found = find_flagship()
    assert found.resolve() == Path(str(flagship)).resolve()
    assert Study.load(found).name  # its code lists resolve beside it

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    proj = meta["project"]
    assert "version" in proj["dynamic"] and "version" not in proj
    assert md.version("hospstudy") == hospstudy.__version__  # one source
    assert proj["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    build = meta["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in build)
    # ranges, not exact pins, for what the engine notes allow
    assert not [d for d in proj["dependencies"] if "==" in d]
    # statsmodels and lifelines: the tests' yardsticks only, not run-time dependencies
    runtime = " ".join(proj["dependencies"])
    assert "statsmodels" not in runtime and "lifelines" not in runtime
    dev = " ".join(proj["optional-dependencies"]["dev"])
    assert "statsmodels" in dev and "lifelines" in dev
    imports = re.compile(r"^\s*(import|from)\s+(statsmodels|lifelines)\b", re.M)
    offenders = [p for p in (ROOT / "src").rglob("*.py") if imports.search(p.read_text())]
    assert offenders == []


def test_class15_software_line_cites_what_ran():
    from hospstudy.run.pipeline import _versions

    v = _versions("duckdb")
    assert "statsmodels" not in v and "lifelines" not in v
    assert {"hospstudy", "formulaic", "duckdb", "ibis-framework", "numpy", "scipy"} <= set(v)
    assert "pyspark" not in v


# ---- class 16: the Python API ---------------------------------------------------------------

def test_class16_models_api():
    import warnings

    import numpy as np
    import pandas as pd
    from threadpoolctl import threadpool_info

    import hospstudy.models as models
    from hospstudy.models import gee_logit, logit, mixed_logit, single_threaded_blas

    for name in ("logit", "mixed_logit", "gee_logit", "cause_specific_cox", "fine_gray", "cumulative_incidence",
                 "propensity_weights", "weighted_logit", "risk_standardized_rates"):
        f = getattr(models, name)
        assert callable(f) and hasattr(f, "__wrapped__"), name  # wrapped: one BLAS thread inside

    rng = np.random.default_rng(3)
    d = pd.DataFrame({"x": rng.normal(size=300), "h": rng.integers(0, 15, 300)})
    d["y"] = (rng.random(300) < 1 / (1 + np.exp(-(0.5 * d.x + rng.normal(0, 0.8, 15)[d.h])))).astype(int)

    # one name per concept: cluster (old: group), max_iter (old: maxiter), still accepted
    with pytest.warns(DeprecationWarning) as caught:
        old = gee_logit("y ~ x", d, group="h", maxiter=50)
    assert sorted(str(w.message).split(": ", 1)[1] for w in caught) == [
        "the 'group' argument is now called 'cluster'; 'group' will be removed",
        "the 'maxiter' argument is now called 'max_iter'; 'maxiter' will be removed"]
    new = gee_logit("y ~ x", d, cluster="h", max_iter=50)
    np.testing.assert_array_equal(old.estimate, new.estimate)
    with pytest.warns(DeprecationWarning):
        old = mixed_logit("y ~ x", d, group="h")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new = mixed_logit("y ~ x", d, cluster="h")
    np.testing.assert_array_equal(old.estimate, new.estimate)
    with pytest.raises(ValueError, match="'group' parameter of gee_logit"):
        gee_logit("y ~ x", d, group="h", cluster="h")

    # glance: one row
    g = new.glance()
    assert len(g) == 1 and {"method", "n", "events", "clusters", "loglik", "aic", "converged", "random_sd", "icc"} <= set(g.columns)
    assert g.loc[0, "n"] == 300 and g.loc[0, "clusters"] == 15
    assert g.loc[0, "aic"] == pytest.approx(-2 * new.loglik + 2 * (len(new.terms) + 1))
    lg = logit("y ~ x", d).glance()
    assert lg.loc[0, "aic"] == pytest.approx(-2 * logit("y ~ x", d).loglik + 4)
    assert np.isnan(gee_logit("y ~ x", d, cluster="h").glance().loc[0, "loglik"])

    # the limit holds inside, nests, and is lifted after
    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"}

    if blas_threads():
        with single_threaded_blas():
            assert blas_threads() == {1}
            with single_threaded_blas():
                assert blas_threads() == {1}
            assert blas_threads() == {1}


# ---- class 8: the disclosure checker catches every planted leak -------------------------------

def _clean_out(root: Path) -> Path:
    """A small shareable output folder like the report's: suppressed counts only."""
    out = root / "out"
    (out / "private").mkdir(parents=True)
    (out / "figures").mkdir()
    pq.write_table(pa.table({"patient_id": ["PAT000123", "PAT000456"], "admission_id": ["ADM000123", "ADM000456"],
                             "death_30d": [True, False]}), out / "private" / "analytic.parquet")
    (out / "private" / "attrition.csv").write_text("step,name,admissions,patients\n0,database,1200,1100\n1,cohort,3,3\n")
    (out / "attrition.csv").write_text(
        "step,name,description,admissions,patients,admissions_removed,patients_removed\n"
        "0,database,every admission,\"1,200\",\"1,100\",,\n1,cohort,the cohort,<10,<10,—,—\n")
    (out / "results.csv").write_text(
        "analysis,term,estimate,conf_low,conf_high,p_value,n,events,clusters\n"
        "alone,cancer_center,0.81,0.6,1.1,0.2,1200,150,45\nalone,volume,1.0,0.9,1.2,0.5,1200,<10,45\n")
    (out / "results.json").write_text(json.dumps({"table": [{"term": "x", "n": 1200, "events": "<10", "estimate": 2.0}],
                                                  "meta": {"seed": 7, "patients": 1200, "suppression_threshold": 10}}))
    (out / "figures" / "flow.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><text>1,200 admissions; &lt;10 patients</text></svg>')
    (out / "figures" / "flow.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (out / "report.html").write_text(
        "<html><body><table><tr><th>Characteristic</th><th>Cancer centre</th><th>Other</th></tr>"
        "<tr><td>Men</td><td>620 (51.7%)</td><td>&lt;10</td></tr><tr><td>Age, mean (SD)</td><td>66.2 (11.0)</td>"
        "<td>64.0 (10.1)</td></tr><tr><td>Fiscal year</td><td>2015</td><td>2016</td></tr></table></body></html>")
    (out / "study.toml").write_text('[study]\nname = "x"\n[report]\ndisclosure_threshold = 10\n')
    return out


def test_class08_disclosure_planted_leaks(tmp_path):
    import json as _json  # noqa: F401  (the helper above uses the module-level json)

    from hospstudy.privacy import check_disclosure

    clean = _clean_out(tmp_path / "clean")
    assert check_disclosure(clean) == []

    def planted(name, plant):
        out = tmp_path / name / "out"
        shutil.copytree(clean, out, symlinks=True)
        plant(out)
        return {(v.file, v.rule.split(" (")[0]) for v in check_disclosure(out)}

    # a small count in a column whose name is not count-like, in a table of counts
    got = planted("total", lambda o: (o / "by_hospital.csv").write_text("region,total,n\nKanto,3,1200\nKinki,250,900\n"))
    assert ("by_hospital.csv", "count below 10 in column 'total' of a table that holds counts") in got
    # a count written as text "3.0", in a table and in JSON
    got = planted("text", lambda o: (o / "counts.csv").write_text("group,n\nA,3.0\nB,120\n"))
    assert ("counts.csv", "count below 10 in count column 'n'") in got
    got = planted("json", lambda o: (o / "extra.json").write_text('{"groups": [{"name": "A", "events": "3.0"}]}'))
    assert any(f == "extra.json" for f, _ in got)
    # a CSV in UTF-16
    got = planted("utf16", lambda o: (o / "table2.csv").write_bytes("group,n\nA,4\nB,50\n".encode("utf-16")))
    assert ("table2.csv", "count below 10 in count column 'n'") in got
    # any name: a table in a file without a known suffix
    got = planted("noext", lambda o: (o / "summary.dat").write_text("group;deaths\nA;2\nB;40\n"))
    assert ("summary.dat", "count below 10 in count column 'deaths'") in got
    # links: into private/, out of OUT, to nowhere; a hard link to a private file
    got = planted("link", lambda o: os.symlink(o / "private" / "analytic.parquet", o / "data.parquet"))
    assert ("data.parquet", "symbolic link into private/") in got
    got = planted("dirlink", lambda o: os.symlink(o / "private", o / "figures" / "more"))
    assert ("figures/more", "symbolic link into private/") in got
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("x\n1\n")
    got = planted("outlink", lambda o: os.symlink(outside, o / "notes.csv"))
    assert ("notes.csv", "symbolic link out of the output folder") in got
    got = planted("hardlink", lambda o: os.link(o / "private" / "attrition.csv", o / "attrition_full.csv"))
    assert ("attrition_full.csv", "hard link to a file of private/") in got
    # patient-level data outside private/, and a binary file that cannot be read as anything
    got = planted("parquet", lambda o: shutil.copy(o / "private" / "analytic.parquet", o / "copy.parquet"))
    assert ("copy.parquet", "identifier column") in got
    got = planted("binary", lambda o: (o / "blob.bin").write_bytes(b"\0\1\2\3" * 100))
    assert ("blob.bin", "binary file that cannot be checked") in got


# ---- class 17: the small-cell rule at 9, 10 and threshold +- 1, by hand -----------------------

@pytest.mark.parametrize("threshold,hidden,shown", [(10, [1, 9], [10, 11]), (5, [1, 4], [5, 6])])
def test_class17_small_cell_rule_by_hand(tmp_path, threshold, hidden, shown):
    """Expectations written by hand from the rule (counts 1 .. threshold-1 are not published),
    not computed with the rule's code: a change of the rule to publish 9 fails here."""
    import numpy as np
    import pandas as pd

    from hospstudy.models.analyses import AnalysisResults
    from hospstudy.privacy import check_file, coarsen_cif_steps, fmt_count, safe_attrition
    from hospstudy.report import figures as F

    t = threshold
    for v in hidden:
        assert fmt_count(v, t) == f"<{t}"
    for v in shown:
        assert fmt_count(v, t) == f"{v:,}"
    assert fmt_count(0, t) == "0"

    # a two-way table with published margins: a small cell and its complements are hidden
    from hospstudy.privacy import suppress_table

    small, big = hidden[-1], shown[0]
    assert suppress_table([[120, small], [80, 30]], t).tolist() == [[True, True], [True, True]]
    assert suppress_table([[120, big], [80, 30]], t).tolist() == [[False, False], [False, False]]

    # attrition: a last step removing threshold-1, then one removing threshold
    for removed, expect_removed, expect_left in ((t - 1, f"<{t}", "—"), (t, str(t), str(1000 - t))):
        att = pd.DataFrame({"step": [0, 1], "name": ["database", "adults"], "description": ["all", "age >= 18"],
                            "admissions": [1000, 1000 - removed], "patients": [900, 900 - removed],
                            "admissions_removed": [0, removed], "patients_removed": [0, removed]})
        safe = safe_attrition(att, t)
        assert safe.admissions.tolist() == ["1,000", expect_left]
        assert safe.admissions_removed.tolist() == ["", expect_removed]
        # the flow diagram draws what the safe table says
        fig = F.flow_diagram(safe.to_dict("records"))
        F.save(fig, f"flow_{t}_{removed}", tmp_path)
        svg = (tmp_path / f"flow_{t}_{removed}.svg").read_text()
        assert f"{expect_removed.replace('<', '&lt;')} admissions" in svg
        if removed < t:
            assert f">{removed} admissions" not in svg and f"\n{removed} admissions" not in svg

    # results: n, events and clusters below the threshold never leave as numbers
    table = pd.DataFrame({
        "analysis": ["alone"] * 2, "outcome": ["death_30d"] * 2, "exposure": ["cancer_center"] * 2,
        "model": ["logit"] * 2, "scale": ["unclustered"] * 2, "term": ["cancer_center"] * 2,
        "estimate": [0.1, 0.2], "std_error": [0.1, 0.1], "conf_low": [0.0, 0.0], "conf_high": [0.3, 0.4],
        "p_value": [0.3, 0.2], "exp_estimate": [1.1, 1.2], "exp_conf_low": [1.0, 1.0], "exp_conf_high": [1.3, 1.5],
        "n": [500, 500], "events": [hidden[-1], shown[0]], "clusters": [shown[0], hidden[-1]],
        "error": [None, None], "note": [None, None]})
    paths = AnalysisResults(table, {}, [], {"seed": 1}).write(tmp_path / f"res{t}", threshold=t)
    doc = json.loads(paths["json"].read_text())
    assert [r["events"] for r in doc["table"]] == [f"<{t}", shown[0]]
    assert [r["clusters"] for r in doc["table"]] == [shown[0], f"<{t}"]
    csv = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    assert csv.events.tolist()[1] == str(shown[0]) and csv.events.tolist()[0] in ("", f"<{t}")
    assert csv.clusters.tolist()[0] == str(shown[0]) and csv.clusters.tolist()[1] in ("", f"<{t}")

    # cumulative incidence steps: a step is published once threshold events have occurred
    n_risk = [100, 95, 90, 80, 70, 60]
    events = [t - 1, 1, t - 1, 0, 1, t - 1]
    assert coarsen_cif_steps(n_risk, events, t).tolist() == [1, 4]
    assert coarsen_cif_steps(n_risk, [t - 1, 0, 0, 0, 0, 0], t).tolist() == []

    # the checker: threshold-1 is a finding, threshold is not
    for v, bad in [(hidden[-1], True), (shown[0], False), (shown[1], False)]:
        p = tmp_path / f"c{t}_{v}.csv"
        p.write_text(f"group,n\nA,{v}\nB,500\n")
        assert bool(check_file(p, p.name, t)) is bad, v


# ---- class 18: comparison boundaries, and the engine against an independent derivation ---------

_BOUNDARY_AGES = {"A17": 17, "A18": 18, "A19": 19, "A20": 20, "A30": 30}


def _boundary_db(root: Path) -> Path:
    """Five one-admission patients aged 17, 18, 19, 20 and 30, each with the index surgery;
    the 18- and 20-year-olds have no height recorded."""
    from hospstudy.data.schema import arrow_schema

    root.mkdir(parents=True)
    d = dt.date
    pq.write_table(pa.Table.from_pylist([dict(hospital_id=1, fiscal_year=2015, cancer_center=True, beds=500,
                                              teaching=False, region="x")], schema=arrow_schema("facilities")),
                   root / "facilities.parquet")
    adm = [dict(admission_id=a, patient_id="P" + a, hospital_id=1, admit_date=d(2015, 6, 1), discharge_date=d(2015, 6, 10),
                age=age, sex="M", emergency=False, ambulance=False, discharge_to="home",
                height_cm=None if age in (18, 20) else 170.0, weight_kg=65.0, jcs=0, adl_adm="2312132222",
                adl_dis="2312132222", spinal_level="thoracic") for a, age in _BOUNDARY_AGES.items()]
    pq.write_table(pa.Table.from_pylist(adm, schema=arrow_schema("admissions")), root / "admissions.parquet")
    pq.write_table(pa.Table.from_pylist([dict(admission_id=a, icd10="C795", role="main", suspected=False) for a in _BOUNDARY_AGES],
                                        schema=arrow_schema("diagnoses")), root / "diagnoses.parquet")
    pq.write_table(pa.Table.from_pylist([dict(admission_id=a, proc_code="K1422", proc_date=d(2015, 6, 2)) for a in _BOUNDARY_AGES],
                                        schema=arrow_schema("procedures")), root / "procedures.parquet")
    pq.write_table(pa.Table.from_pylist([], schema=arrow_schema("billing")), root / "billing.parquet")
    return root


# every comparison operator of the study-file grammar at its boundary; kept ages by hand
_BOUNDARY_CASES = [
    ("eq = 18", {18}), ("ne = 18", {17, 19, 20, 30}), ("lt = 18", {17}), ("le = 18", {17, 18}),
    ("gt = 18", {19, 20, 30}), ("ge = 18", {18, 19, 20, 30}), ("in = [18, 20]", {18, 20}),
    ("not_in = [18, 20]", {17, 19, 30}), ("between = [18, 20]", {18, 19, 20}),
]


def test_class18_comparison_boundaries(tmp_path):
    from hospstudy.study import Study

    db = _boundary_db(tmp_path / "db")
    cases = [(f'field = "age", {op}', ages) for op, ages in _BOUNDARY_CASES]
    cases += [('field = "height_cm", is_null = true', {18, 20}), ('field = "height_cm", is_null = false', {17, 19, 30}),
              # a field compared with another field, and dates at the boundary
              ('field = "age", ge = { field = "jcs" }', {17, 18, 19, 20, 30}),
              ('field = "admit_date", ge = "2015-06-01"', {17, 18, 19, 20, 30}),
              ('field = "admit_date", gt = "2015-06-01"', set())]
    for i, (cond, ages) in enumerate(cases):
        study = tmp_path / f"s{i}.toml"
        study.write_text(f'''
[study]
name = "boundary"
[codelists]
spine = ["K1422"]
[cohort.index]
procedures = "spine"
[[cohort.steps]]
name = "step"
include = {{ {cond} }}
[outcomes.died]
kind = "flag"
when = {{ field = "discharge_to", eq = "death" }}
''')
        try:
            r = Study.load(study).build_cohort(db, validate=False)
        except HospstudyError as e:  # an empty cohort may be a named error (issue 11, class 14)
            assert not ages, f"{cond}: {e}"
            continue
        got = {_BOUNDARY_AGES[a] for a in r.analytic.admission_id}
        assert got == ages, cond


def test_class18_engine_matches_independent_sql(tmp_path_factory):
    """The flagship on a small synthetic database against the generator's own one-query
    derivation (hospstudy.data.synth.check), column by column."""
    import pandas as pd

    from hospstudy.data.synth import generate
    from hospstudy.data.synth import check
    from hospstudy.study import Study

    db = tmp_path_factory.mktemp("synth18") / "db"
    generate(db, seed=20240601, scale=0.02)
    engine = Study.load(ROOT / "studies" / "spinal_metastasis.toml").build_cohort(db, validate=False)
    a = engine.analytic.set_index("patient_id").sort_index()
    b = check.cohort(db).set_index("patient_id").sort_index()
    assert len(a) > 100 and list(a.index) == list(b.index)
    for col in ("admission_id", "hospital_id", "age", "sex", "emergency", "cancer_center", "volume",
                "in_hospital_death", "death_30d", "discharged_home", "postop_los", "complication"):
        pd.testing.assert_series_equal(a[col].astype(object), b[col].astype(object), check_names=False, obj=col)
    assert (a.fiscal_year == b.fy).all()
    # unfavorable ambulation: the SQL leaves every patient without an admission ADL missing; the
    # study's definition (three-valued OR) keeps those whose discharge walking level is <= 1
    ua, ub = a.unfavorable_ambulatory, b.unfavorable_ambulatory
    both = ub.notna()
    assert (ua[both] == ub[both]).all()
    extra = ua[~both].dropna()
    assert extra.all() and a.walking_adm[extra.index].isna().all()
