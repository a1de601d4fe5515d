"""hospstudy import-dpc on hand-written raw files (tests/fixtures/dpc_raw/, readable UTF-8 TSV).

The tests write the fixture lines as the Ministry's files are written (CP932, CRLF, with or
without a header line) and check the database and the import report against values worked out
by hand from the lines:

* S1 (123456789-0000000001, FY2015): every payload the data model takes; born 1950-06-01, so
  64 at admission on 2015-05-10; a suspected comorbidity (modifier 8002); a K-code with a kana
  suffix (K0821ｲ → K0821); ICD-10 written with a dot (C34.9 → C349); CAN0010 (not used); a
  ward-level form of the same stay (skipped). EF in the FY2014-2015 layout (field 17: 1 char)
  with an act row (000, skipped), a drug, a transfusion (K920), rehabilitation (H), radiotherapy (M).
* S2 (FY2015: admitted 2016-03-30): in-hospital death (退院先 8, 転帰 6); born 1940-02-29 → 76;
  scheduled (100); EF 使用量 empty → quantity 1.
* S3 (FY2016): birth month and day unknown (19700000 → 1 July 1970 → 45); EF in the FY2016 layout.
* S4 (second hospital, FY2016): surgery only in EF (K0461 under データ区分 50) → one procedure added.
* S5: only a ward-level form (統括診療情報番号 1) → not a stay.
* S6: Form 1 but no EF line.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hospstudy.data.dpc import layouts as L
from hospstudy.data.dpc import import_dpc
from hospstudy.data.dpc.facilities import hospital_id
from hospstudy.data.schema import BILLING_KINDS
from hospstudy.data.validate import validate_database
from hospstudy.errors import DataUnusableError

FIX = Path(__file__).parent / "fixtures" / "dpc_raw"
D = dt.date
H1, H2 = hospital_id("123456789"), hospital_id("987654321")
F1_HEADER = "施設コード\tデータ識別番号\t入院年月日\t回数管理番号\t統括診療情報番号\tコード\tバージョン\t連番\t" + "\t".join(
    f"ペイロード{i}" for i in range(1, 10))


def fixture_lines(name: str) -> list[str]:
    return (FIX / name).read_text(encoding="utf-8").splitlines()


def write_raw(folder: Path, files: dict[str, list[str]], encoding: str = "cp932", newline: str = "\r\n",
              header: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        head = [header[name]] if header and name in header else []
        (folder / name).write_bytes(newline.join(head + lines).encode(encoding) + newline.encode())
    return folder


EF_HEADER = "\t".join(["施設コード", "データ識別番号", "退院年月日", "入院年月日", "データ区分"] + [f"項目{i}" for i in range(6, 32)])


def standard_raw(root: Path, **kw) -> Path:
    """The fixture as the Ministry's files: CP932, CRLF; a header line on FF1_2015 (17 fields)
    and EFn_2016 (31 fields)."""
    files = {f"{n}.txt": fixture_lines(f"{n}.tsv") for n in ("FF1_2015", "FF1_2016", "EFn_2015", "EFn_2016")}
    return write_raw(root / "raw", files, header={"FF1_2015.txt": F1_HEADER, "EFn_2016.txt": EF_HEADER}, **kw)


def rows(db: Path, table: str, order: list[str]) -> list[dict]:
    t = pq.read_table(db / table, partitioning=None) if (db / table).is_dir() else pq.read_table(db / f"{table}.parquet")
    return sorted(t.to_pylist(), key=lambda r: tuple(str(r[k]) for k in order))


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpc")
    raw = standard_raw(root)
    r = import_dpc(raw, FIX / "facilities.csv", root / "db", workers=1, show_progress=False)
    return r, root / "db"


def _adm(aid, hosp, admit, dis, age, sex, em, amb, to, h=None, w=None, jcs=None, adm=None, adl_dis=None, level=None):
    return dict(admission_id=aid, patient_id=aid.rsplit("-", 1)[0], hospital_id=hosp, admit_date=admit, discharge_date=dis,
                age=age, sex=sex, emergency=em, ambulance=amb, discharge_to=to, height_cm=h, weight_kg=w, jcs=jcs,
                adl_adm=adm, adl_dis=adl_dis, spinal_level=level)


S1, S2, S3 = "123456789-0000000001-20150510", "123456789-0000000002-20160330", "123456789-0000000003-20160405"
S4, S6 = "987654321-0000000004-20160701", "123456789-0000000006-20160801"

EXPECTED_ADMISSIONS = [
    _adm(S1, H1, D(2015, 5, 10), D(2015, 5, 30), 64, "M", True, True, "home", 165.5, 60.2, 0, "2312132222", "2312122222", "thoracic"),
    _adm(S2, H1, D(2016, 3, 30), D(2016, 4, 2), 76, "F", False, False, "death", jcs=10, level="lumbar"),
    _adm(S3, H1, D(2016, 4, 5), D(2016, 4, 20), 45, "M", True, True, "other_hospital"),
    _adm(S6, H1, D(2016, 8, 1), D(2016, 8, 5), 35, "F", False, False, "home"),
    _adm(S4, H2, D(2016, 7, 1), D(2016, 7, 10), 86, "F", True, True, "care_facility"),
]
EXPECTED_DIAGNOSES = sorted([
    (S1, "C795", "main", False), (S1, "C349", "trigger", False), (S1, "C795", "resource", False),
    (S1, "C349", "resource", False), (S1, "E119", "comorbidity", False), (S1, "C787", "comorbidity", True),
    (S1, "T814", "complication", False), (S2, "C795", "main", False), (S3, "M4806", "main", False),
    (S4, "S7200", "main", False), (S6, "J189", "main", False),
])
EXPECTED_PROCEDURES = sorted([
    (S1, "K1422", D(2015, 5, 12)), (S1, "K0821", D(2015, 5, 20)), (S2, "K142-4", D(2016, 3, 31)),
    (S3, "K1425", D(2016, 4, 6)), (S4, "K0461", D(2016, 7, 2)),
])
EXPECTED_BILLING = sorted([
    (S1, D(2015, 5, 10), "other", "190077410", 1.0), (S1, D(2015, 5, 11), "drug", "620000001", 3.0),
    (S1, D(2015, 5, 12), "procedure", "150000110", 1.0), (S1, D(2015, 5, 12), "transfusion", "150268010", 2.0),
    (S1, D(2015, 5, 15), "rehabilitation", "180027410", 1.0), (S1, D(2015, 5, 18), "radiotherapy", "180019010", 1.0),
    (S1, D(2015, 5, 19), "drug", "640000002", 0.5),
    (S2, D(2016, 3, 30), "other", "190077410", 1.0), (S2, D(2016, 3, 31), "procedure", "150000110", 1.0),
    (S2, D(2016, 4, 1), "drug", "620000001", 1.0),
    (S3, D(2016, 4, 5), "other", "190077410", 1.0), (S3, D(2016, 4, 6), "procedure", "150000110", 1.0),
    (S4, D(2016, 7, 1), "other", "190077410", 1.0), (S4, D(2016, 7, 2), "procedure", "150000110", 1.0),
    (S4, D(2016, 7, 2), "procedure", "150000510", 1.0),
])


def test_fixture_database(imported):
    r, db = imported
    assert r.exit_code == 0
    got = rows(db, "admissions", ["admission_id"])
    assert [a["admission_id"] for a in got] == sorted(a["admission_id"] for a in EXPECTED_ADMISSIONS)
    exp = {a["admission_id"]: a for a in EXPECTED_ADMISSIONS}
    for a in got:
        e = exp[a["admission_id"]]
        for k in ("height_cm", "weight_kg"):
            assert (a[k] is None) == (e[k] is None) and (a[k] is None or abs(a[k] - e[k]) < 1e-4), (a, k)
            a[k] = e[k]
        assert a == e
    assert sorted((d["admission_id"], d["icd10"], d["role"], d["suspected"]) for d in rows(db, "diagnoses", ["admission_id"])) == EXPECTED_DIAGNOSES
    assert sorted((p["admission_id"], p["proc_code"], p["proc_date"]) for p in rows(db, "procedures", ["admission_id"])) == EXPECTED_PROCEDURES
    assert sorted((b["admission_id"], b["service_date"], b["kind"], b["code"], b["quantity"])
                  for b in rows(db, "billing", ["admission_id"])) == EXPECTED_BILLING
    fac = rows(db, "facilities", ["hospital_id", "fiscal_year"])
    assert sorted((f["hospital_id"], f["fiscal_year"], f["cancer_center"], f["beds"], f["teaching"], f["region"]) for f in fac) == sorted([
        (H1, 2015, True, 600, True, "Kanto"), (H1, 2016, True, 600, True, "Kanto"), (H2, 2016, False, 120, False, "Kinki")])
    assert (db / "private" / "hospital_ids.csv").read_text().splitlines() == [
        "facility_code,hospital_id", f"123456789,{H1}", f"987654321,{H2}"]
    # partitioned by the fiscal year of admission (S2 admitted 30 March 2016 is FY2015)
    assert sorted(p.name for p in (db / "admissions").iterdir()) == ["fiscal_year=2015", "fiscal_year=2016"]
    assert [r["admission_id"] for r in pq.read_table(db / "admissions" / "fiscal_year=2015").to_pylist()] == [S1, S2]
    report = validate_database(db, progress=False)
    assert report.exit_code == 0 and not report.findings, [f.to_dict() for f in report.findings]


@pytest.mark.parametrize("workers", [2, 3])
def test_a_pool_of_threads_gives_the_same_database(tmp_path, imported, baseline, monkeypatch, workers):
    """Blocks of 500 bytes split and typed by a pool of threads, handed on in file order, staged
    two blocks per INSERT (several statements per file): the same database and the same lines
    named in the report."""
    from hospstudy.data.dpc import importer, rawfiles

    monkeypatch.setattr(rawfiles, "CHUNK_BYTES", 500)
    monkeypatch.setattr(importer, "INSERT_BLOCKS", 2)
    raw = standard_raw(tmp_path)
    r = import_dpc(raw, FIX / "facilities.csv", tmp_path / "db", workers=workers, show_progress=False)
    assert r.exit_code == 0 and _table_set(tmp_path / "db") == baseline
    assert r.lines["skipped"] == 10 and r.lines["rejected"] == 0
    assert r.report["reasons"] == imported[0].report["reasons"]


def test_fixture_report_accounts_for_every_line(imported):
    r, db = imported
    rep = json.loads((db / "import_report.json").read_text(encoding="utf-8"))
    assert rep == json.loads(json.dumps(r.report, default=str))
    n_f1 = len(fixture_lines("FF1_2015.tsv")) + 1 + len(fixture_lines("FF1_2016.tsv"))  # + header
    n_ef = len(fixture_lines("EFn_2015.tsv")) + 1 + len(fixture_lines("EFn_2016.tsv"))  # + header
    assert rep["lines"] == {"total": n_f1 + n_ef, "imported": n_f1 + n_ef - 10, "skipped": 10, "rejected": 0}
    got = {(x["kind"], x["reason"], x["count"]) for x in rep["reasons"]}
    assert got == {("form1", "header_line", 1), ("ef", "header_line", 1), ("form1", "ward_level_form", 6),
                   ("form1", "payload_not_used", 1), ("ef", "ef_act_line", 1)}
    ward = next(x for x in rep["reasons"] if x["reason"] == "ward_level_form")
    assert [(e["file"], e["line"]) for e in ward["examples"]] == [("FF1_2015.txt", n) for n in (19, 20, 27, 28, 29)]
    act = next(x for x in rep["reasons"] if x["reason"] == "ef_act_line")
    assert [(e["file"], e["line"]) for e in act["examples"]] == [("EFn_2015.txt", 3)]
    assert rep["payload_codes"] == {"not_used": {"CAN0010": 1}, "unknown": {}}
    files = {f["file"]: f for f in rep["files"]}
    assert {k: (f["kind"], f["encoding"], f["header"], f["line_end"], f["layout"]) for k, f in files.items()} == {
        "FF1_2015.txt": ("form1", "cp932", True, "CRLF", "form1-2014"),
        "FF1_2016.txt": ("form1", "cp932", False, "CRLF", "form1-2014"),
        "EFn_2015.txt": ("ef", "cp932", False, "CRLF", "ef-2014"),
        "EFn_2016.txt": ("ef", "cp932", True, "CRLF", "ef-2016"),
    }
    assert files["EFn_2015.txt"]["fiscal_years"] == [2015] and files["EFn_2016.txt"]["fiscal_years"] == [2016]
    assert sum(f["lines"] for f in rep["files"]) == rep["lines"]["total"]
    s = rep["stays"]
    assert s["form1_stays"] == 5 and s["admissions"] == 5  # S5 has no whole-stay form
    assert s["form1_without_ef"] == {"count": 1, "examples": [S6]}
    assert s["ef_without_form1"] == {"count": 0, "examples": []}
    assert s["ef_only_procedures"] == 1
    assert {(x["raw"], x["code"]) for x in rep["code_normalisation"]} == {("K0821ｲ", "K0821")}
    assert any("1 admission(s) had an unknown birth month or day" in n for n in rep["notes"])
    assert any("quantity 1 (1 imported line(s))" in n for n in rep["notes"])
    md = (db / "import_report.md").read_text(encoding="utf-8")
    assert "`FF1_2015.txt` line 19: 統括診療情報番号 1 (A001030)" in md and "CAN0010: 1 line(s)" in md
    assert not (db / "private" / "identifiers.parquet").exists()


def _table_set(db: Path) -> dict:
    out = {}
    for t, order in (("admissions", ["admission_id"]), ("diagnoses", ["admission_id", "role", "icd10"]),
                     ("procedures", ["admission_id", "proc_code"]), ("billing", ["admission_id", "service_date", "code"])):
        out[t] = sorted(repr(sorted(r.items())) for r in rows(db, t, order))
    return out


@pytest.fixture(scope="module")
def baseline(imported):
    return _table_set(imported[1])


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), parts=st.integers(1, 4), block=st.sampled_from([None, 97, 1000, 4096]))
def test_any_split_gives_the_same_database(tmp_path_factory, baseline, monkeypatch, seed, parts, block):
    """The same lines cut into 1-4 files per kind at random places, files concatenated or not,
    in random encodings, line ends and header lines, read in blocks of any size: the same
    database every time."""
    from hospstudy.data.dpc import rawfiles

    monkeypatch.setattr(rawfiles, "CHUNK_BYTES", block or rawfiles.CHUNK_BYTES)
    rng = random.Random(seed)
    root = tmp_path_factory.mktemp("split")
    f1 = fixture_lines("FF1_2015.tsv") + fixture_lines("FF1_2016.tsv")
    ef = fixture_lines("EFn_2015.tsv") + fixture_lines("EFn_2016.tsv")
    files = {}
    for kind, lines in (("FF1", f1), ("EFn", ef)):
        cuts = sorted(rng.sample(range(1, len(lines)), parts - 1))
        for i, (a, b) in enumerate(zip([0] + cuts, cuts + [len(lines)])):
            files[f"{'x' if rng.random() < 0.5 else kind}_{kind}_{i}.dat"] = lines[a:b]
    raw = root / "raw"
    for name, lines in files.items():
        sub = raw / rng.choice(["", "a", "a/b"])
        write_raw(sub, {name: lines}, encoding=rng.choice(["cp932", "utf-8"]), newline=rng.choice(["\r\n", "\n"]),
                  header={name: F1_HEADER} if name.endswith(("FF1_0.dat",)) and rng.random() < 0.5 else None)
    r = import_dpc(raw, FIX / "facilities.csv", root / "db", workers=1, show_progress=False)
    assert r.exit_code == 0
    assert _table_set(root / "db") == baseline
    assert r.lines["imported"] == len(f1) + len(ef) - 8


def test_a_bare_cr_inside_a_line(tmp_path, baseline):
    """A CR not followed by LF is data, not a line end: the line keeps its 31 fields and the
    lines after it their numbers (Arrow's reader would end a line there; the block goes to the
    numpy splitter)."""
    raw = standard_raw(tmp_path)
    p = raw / "EFn_2016.txt"
    text = p.read_bytes().replace("急性期一般入院料".encode("cp932"), "急性期\r一般入院料".encode("cp932"), 1)
    p.write_bytes(text + b"123456789\t0000000003\t20160420\r\n")
    r = import_dpc(raw, FIX / "facilities.csv", tmp_path / "db", workers=1, show_progress=False)
    assert r.exit_code == 1 and _table_set(tmp_path / "db") == baseline
    short = next(x for x in r.report["reasons"] if x["reason"] == "short_line")
    assert short["count"] == 1 and [(e["file"], e["line"]) for e in short["examples"]] == [("EFn_2016.txt", 7)]
    assert r.lines["total"] == r.lines["imported"] + r.lines["skipped"] + r.lines["rejected"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_that_turns_cp932_after_its_first_bytes(tmp_path, baseline, monkeypatch, workers):
    """Form 1 lines with only ASCII first, in UTF-8 (so the file is detected as UTF-8), then the
    lines with Japanese text in CP932: each block is read in the encoding its bytes are in, the
    report says CP932, the database is the same; the same with blocks typed by a pool of
    threads."""
    from hospstudy.data.dpc import rawfiles

    raw = standard_raw(tmp_path)
    f1 = fixture_lines("FF1_2015.tsv") + fixture_lines("FF1_2016.tsv")
    ascii_ = [ln for ln in f1 if ln.isascii()]
    other = [ln for ln in f1 if not ln.isascii()]
    assert len(ascii_) > 10 and len(other) > 5
    head = "\r\n".join(ascii_).encode("utf-8") + b"\r\n"
    (raw / "FF1_2015.txt").write_bytes(head + "\r\n".join(other).encode("cp932") + b"\r\n")
    (raw / "FF1_2016.txt").unlink()
    monkeypatch.setattr(rawfiles, "SAMPLE_BYTES", len(head) - 50)
    monkeypatch.setattr(rawfiles, "CHUNK_BYTES", 300)
    r = import_dpc(raw, FIX / "facilities.csv", tmp_path / "db", workers=workers, show_progress=False)
    assert r.exit_code == 0 and _table_set(tmp_path / "db") == baseline
    assert next(f for f in r.report["files"] if f["file"] == "FF1_2015.txt")["encoding"] == "cp932"
    # a byte that is neither UTF-8 nor CP932 in a field that is read: the file and line are named
    (raw / "FF1_2015.txt").write_bytes(head + "\r\n".join(other).encode("cp932").replace("腫瘍".encode("cp932"), b"\x81\x20", 1))
    line = len(ascii_) + next(i for i, ln in enumerate(other) if "腫瘍" in ln) + 1
    with pytest.raises(DataUnusableError, match=rf"FF1_2015.txt line {line}: cannot be decoded as UTF-8 or CP932"):
        import_dpc(raw, FIX / "facilities.csv", tmp_path / "db2", workers=workers, show_progress=False)


MALFORMED = {
    # file: lines appended, with the reason each must get
    "FF1_2016.txt": [
        ("123456789\t0000000007\t20160901\t1\t0\tA000010\t20140401\t1\t19500101\t1", "short_line"),
        ("123456789\t0000000008\t20160931\t1\t0\tA006010\t20140401\t1\t\tC795\t\t\t\t\t\t\t", "bad_date"),
        ("12345678\t0000000009\t20160901\t1\t0\tA006010\t20140401\t1\t\tC795\t\t\t\t\t\t\t", "bad_code"),
        ("123456789\t0000000006\t20160801\t1\t0\tA006040\t20140401\t1\t\t795\t\t\t\t\t\t\t", "bad_code"),
        ("555555555\t0000000010\t20160901\t1\t0\tA006010\t20140401\t1\t\tC795\t\t\t\t\t\t\t", "unknown_facility"),
        # a stay with no A000010-A000030: not imported, nor are its EF lines (below)
        ("123456789\t0000000011\t20160901\t1\t0\tA006010\t20140401\t1\t\tC795\t\t\t\t\t\t\t", "incomplete_stay"),
    ],
    "EFn_2016.txt": [
        ("123456789\t0000000099\t20160910\t20160901\t90\t0001\t001\t190077410\t190077410\tA100\t入院料\t1\t\t100\t0\t100\t"
         "000000000000\t100\t0\t0\t1\t06139999\t1112\t20160901\t00\t010\t0000012345\t0101\t0\t0\t001", "no_form1_stay"),
        ("123456789\t0000000003\t20160420\t20160405\t90\t0001\t001\t190077410", "short_line"),
        # a facility code with a leading zero: staged as an integer, named with its zero
        ("012345678\t0000000099\t20160910\t20160901\t90\t0001\t001\t190077410\t190077410\tA100\t入院料\t1\t\t100\t0\t100\t"
         "000000000000\t100\t0\t0\t1\t06139999\t1112\t20160901\t00\t010\t0000012345\t0101\t0\t0\t001", "no_form1_stay"),
        # lines of stays that Form 1 has but did not import, and a service date outside its stay
        ("123456789\t0000000003\t20160910\t20160405\t90\t0001\t001\t190077410\t190077410\tA100\t入院料\t1\t\t100\t0\t100\t"
         "000000000000\t100\t0\t0\t1\t06139999\t1112\t20160501\t00\t010\t0000012345\t0101\t0\t0\t001", "date_outside_stay"),
        ("123456789\t0000000011\t20160910\t20160901\t90\t0001\t001\t190077410\t190077410\tA100\t入院料\t1\t\t100\t0\t100\t"
         "000000000000\t100\t0\t0\t1\t06139999\t1112\t20160901\t00\t010\t0000012345\t0101\t0\t0\t001", "stay_not_imported"),
        ("555555555\t0000000010\t20160910\t20160901\t90\t0001\t001\t190077410\t190077410\tA100\t入院料\t1\t\t100\t0\t100\t"
         "000000000000\t100\t0\t0\t1\t06139999\t1112\t20160901\t00\t010\t0000012345\t0101\t0\t0\t001", "unknown_facility"),
        # 使用量 that is not a decimal number
        ("123456789\t0000000003\t20160420\t20160405\t90\t0001\t001\t190077410\t190077410\tA100\t入院料\t1e2\t\t100\t0\t100\t"
         "000000000000\t100\t0\t0\t1\t06139999\t1112\t20160406\t00\t010\t0000012345\t0101\t0\t0\t001", "bad_number"),
        ("123456789\t0000000003\t20160420\t20160405\t90\t0001\t001\t190077410\t190077410\tA100\t入院料\t１\t\t100\t0\t100\t"
         "000000000000\t100\t0\t0\t1\t06139999\t1112\t20160406\t00\t010\t0000012345\t0101\t0\t0\t001", "bad_number"),
    ],
}


def _malformed_raw(tmp_path) -> tuple[Path, dict]:
    """The fixture with MALFORMED's lines appended (and the line number of each file's first)."""
    raw = standard_raw(tmp_path)
    first = {}
    for name, extra in MALFORMED.items():
        with open(raw / name, "ab") as fh:
            first[name] = sum(1 for _ in open(raw / name, "rb")) + 1
            fh.write(b"".join(line.encode("cp932") + b"\r\n" for line, _ in extra))
    return raw, first


def test_malformed_lines_get_their_named_reason(tmp_path):
    raw, first = _malformed_raw(tmp_path)
    r = import_dpc(raw, FIX / "facilities.csv", tmp_path / "db", workers=1, show_progress=False)
    assert r.exit_code == 1
    examples = {(e["file"], e["line"]): x["reason"] for x in r.report["reasons"] for e in x["examples"]}
    for name, extra in MALFORMED.items():
        for i, (_, reason) in enumerate(extra):
            assert examples.get((name, first[name] + i)) == reason, (name, first[name] + i, reason)
    assert r.lines["rejected"] == 14
    assert r.lines["total"] == r.lines["imported"] + r.lines["skipped"] + r.lines["rejected"]
    assert r.report["stays"]["ef_without_form1"] == {
        "count": 2, "examples": ["012345678-0000000099-20160901", "123456789-0000000099-20160901"]}
    details = [e["detail"] for x in r.report["reasons"] if x["reason"] == "no_form1_stay" for e in x["examples"]]
    assert "no Form 1 whole-stay form for 施設コード 012345678, データ識別番号 0000000099, 入院年月日 20160901" in details
    detail = {x["reason"]: x["examples"][0]["detail"] for x in r.report["reasons"] if x["kind"] == "ef"}
    assert detail["date_outside_stay"] == "実施年月日 20160501 outside the stay 20160405-20160420"
    assert detail["stay_not_imported"] == "the stay's Form 1 was not imported (incomplete_stay)"
    assert detail["unknown_facility"] == "施設コード 555555555 has no row for the stay's fiscal year in the facilities file"
    # the rest is imported: the same five admissions
    assert r.tables["admissions"] == 5 and r.tables["billing"] == 15
    assert validate_database(tmp_path / "db", progress=False).exit_code == 0
    df = r.reasons()
    assert set(df.columns) == {"kind", "reason", "severity", "count"}
    assert df.loc[df.reason == "no_form1_stay", "severity"].tolist() == ["rejected"]


@pytest.mark.parametrize("workers, keep, years, block", [(1, False, None, None), (2, True, (2016, 2016), None),
                                                        (2, False, None, 300), (1, False, None, 1)])
def test_ef_read_in_passes_gives_the_same_database_and_report(tmp_path, monkeypatch, workers, keep, years, block):
    """Stays over the budget: EF read in passes, each over the stays of a range of patients
    (the budget forced down to a few bytes: about a pass per patient). Every line is read by one
    pass only, rejected lines included: the same database, identifiers and report as in one pass.
    With small blocks, the first pass reads only the keys of the blocks none of whose lines is
    its, the passes after it pass over the blocks none of whose patients are theirs, and it is
    all the same (block 1: a block per line)."""
    from hospstudy.data.dpc import importer, rawfiles

    if block:
        monkeypatch.setattr(rawfiles, "CHUNK_BYTES", block)
    raw, _ = _malformed_raw(tmp_path)
    kw = dict(workers=workers, keep_identifiers=keep, fiscal_years=years, show_progress=False)
    one = import_dpc(raw, FIX / "facilities.csv", tmp_path / "one", **kw)
    monkeypatch.setattr(importer, "stays_budget", lambda limit: 40)
    many = import_dpc(raw, FIX / "facilities.csv", tmp_path / "many", **kw)
    assert one.report["ef_passes"] == 1 and many.report["ef_passes"] >= 3
    assert _table_set(tmp_path / "many") == _table_set(tmp_path / "one")
    if keep:
        import pandas as pd

        ids = [pd.read_parquet(tmp_path / d / "private" / "identifiers.parquet") for d in ("one", "many")]
        assert len(ids[0]) > 0 and ids[0].equals(ids[1])
    for k in ("lines", "tables", "files", "reasons", "stays", "payload_codes", "unknown_codes", "code_normalisation", "notes"):
        assert many.report[k] == one.report[k], k
    assert many.exit_code == one.exit_code == 1
    md = (tmp_path / "many" / "import_report.md").read_text(encoding="utf-8")
    assert f"EF read in {many.report['ef_passes']} passes" in md and "EF read in" not in (tmp_path / "one" / "import_report.md").read_text(encoding="utf-8")
    skipped = many.report["ef_blocks_skipped"]
    assert one.report["ef_blocks_skipped"] == 0 and (skipped > 10 if block else skipped >= 0)
    assert f"passed over {skipped:,} block(s)" in md
    keys_only = many.report["ef_blocks_keys_only"]  # the first pass: blocks none of whose lines is its
    assert one.report["ef_blocks_keys_only"] == 0 and (keys_only > 5 if block else keys_only >= 0)
    assert f"read only the keys of {keys_only:,} block(s)" in md


def _f1(pid: int, code: str, p: dict, seq: str = "1", admit: str = "20160901") -> str:
    payload = [p.get(i, "") for i in range(1, 10)]
    return "\t".join(["123456789", f"{pid:010d}", admit, "1", "0", code, "20140401", seq, *payload])


def _stay(pid: int, **items) -> list[str]:
    """A whole stay (A000010-A000030 valid unless ``items`` replaces one) and its extra items."""
    base = {"A000010": {1: "19500101", 2: "1", 3: "1000001"}, "A000020": {1: "20160901", 5: "200", 6: "1"},
            "A000030": {1: "20160910", 2: "1", 3: "1"}}
    base.update(items)
    return [_f1(pid, code, p) for code, p in base.items()]


# pid: (the lines of a stay, the line that is checked (0-based), its reason, its detail)
ITEM_CASES = {
    20: (_stay(20, A001010={2: "1e2", 3: "60"}), 3, "bad_code", "身長 1e2, 体重 60"),
    21: (_stay(21, A001010={2: "+170.5", 3: ".5"}), 3, None, None),
    22: (_stay(22, A000010={1: "19500007", 2: "2"}), 0, None, None),  # month 00: 1 July, an unknown month
    23: (_stay(23, A000010={1: "19500231", 2: "1"}), 0, "bad_date", "生年月日 19500231, 性別 1"),
    24: (_stay(24, A000010={1: "18900101", 2: "1"}), 0, "bad_date", "生年月日 18900101, 性別 1"),  # over 121 years
    25: (_stay(25, A000010={1: "19500101", 2: "3"}), 0, "bad_code", "生年月日 19500101, 性別 3"),
    26: (_stay(26, A000020={1: "20160901", 5: "400", 6: "1"}), 1, "bad_code", "予定・救急医療入院 400, 救急車 1"),
    27: (_stay(27, A000030={1: "20160831", 2: "1"}), 2, "bad_date", "退院年月日 20160831, 退院先 1"),
    28: (_stay(28, A000030={1: "20160910", 2: "B"}), 2, "stay_not_discharged", "退院年月日 20160910, 退院先 B"),
    29: (_stay(29, A006010={2: "Ｃ７９．５"}), 3, "bad_code", "A006010 ICD-10 Ｃ７９．５"),  # a full-width point stays
    30: (_stay(30, A006010={2: "ｃ79.5", 5: "8002"}), 3, None, None),  # full-width lower case: C795
    31: (_stay(31, A007010={1: "20160902", 2: "Ｋ１４２－４ｲ"}), 3, None, None),
    32: (_stay(32, A007010={1: "20160902", 2: "J1234"}), 3, "bad_code", "手術日 20160902, 点数表コード J1234"),
    33: (_stay(33, JCS0010={2: "30R"}, ADL0010={2: "3000000000"}), 4, "bad_code", "ADL0010 3000000000"),
    34: (_stay(34, M010010={2: "x"}, ZZZ0010={2: "y"}), 3, "payload_not_used", "M010010 x"),
    35: (_stay(35, ZZZ0010={2: "y"}), 3, "unknown_payload_code", "payload code ZZZ0010"),
}


def test_form1_item_rules(tmp_path):
    """Each payload's rules, checked where the lines are read: the item's reason and detail, and
    the values of the items that pass. Two imports of Form 1 lines alone, so that every checked
    line is among its reason's five examples."""
    adm, dx, px, notes = {}, set(), set(), []
    for part, pids in enumerate((range(20, 28), range(28, 36))):
        lines, where = [], {}
        for pid in pids:
            stay, i, _, _ = ITEM_CASES[pid]
            where[pid] = len(lines) + i + 1
            lines += stay
        raw = write_raw(tmp_path / f"raw{part}", {"FF1_2016.txt": lines})
        db = tmp_path / f"db{part}"
        r = import_dpc(raw, FIX / "facilities.csv", db, workers=1, show_progress=False)
        got = {e["line"]: (x["reason"], e["detail"]) for x in r.report["reasons"] for e in x["examples"]}
        for pid in pids:
            _, _, reason, detail = ITEM_CASES[pid]
            if reason is None:
                assert where[pid] not in got, pid
            else:
                assert got[where[pid]] == (reason, detail), pid
        adm.update({a["admission_id"].split("-")[1]: a for a in rows(db, "admissions", ["admission_id"])})
        dx |= {(d["admission_id"].split("-")[1], d["icd10"], d["suspected"]) for d in rows(db, "diagnoses", ["admission_id"])}
        px |= {(p["admission_id"].split("-")[1], p["proc_code"]) for p in rows(db, "procedures", ["admission_id"])}
        px |= {(n["raw"], n["code"]) for n in r.report["code_normalisation"]}
        notes += r.report["notes"]
        assert validate_database(db, progress=False).exit_code == 0
    assert adm["0000000020"]["height_cm"] is None  # only its A001010 item is rejected
    assert adm["0000000021"]["height_cm"] == 170.5 and adm["0000000021"]["weight_kg"] == 0.5
    assert adm["0000000022"]["age"] == 66 and adm["0000000022"]["sex"] == "F"  # born 1 July 1950
    assert adm["0000000033"]["jcs"] == 30 and adm["0000000033"]["adl_adm"] is None
    for pid in (23, 24, 25, 26, 27, 28):  # a stay without a valid A000010, A000020 or A000030
        assert f"{pid:010d}" not in adm
    assert ("0000000030", "C795", True) in dx and not any(d[0] == "0000000029" for d in dx)
    assert ("0000000031", "K142-4") in px and ("Ｋ１４２－４ｲ", "K142-4") in px
    assert any("1 admission(s) had an unknown birth month or day" in n for n in notes)


def test_fiscal_years_and_identifiers(tmp_path):
    raw = standard_raw(tmp_path)
    r = import_dpc(raw, FIX / "facilities.csv", tmp_path / "db", fiscal_years=(2016, 2016), keep_identifiers=True,
                   workers=1, show_progress=False)
    assert r.exit_code == 0
    assert sorted(a["admission_id"] for a in rows(tmp_path / "db", "admissions", ["admission_id"])) == sorted([S3, S4, S6])
    out = {(x["kind"], x["reason"]): x["count"] for x in r.report["reasons"]}
    # S1's 17 whole-stay lines and S2's 6 (S1's ward form stays ward-level); EF: S1's 7 item
    # lines (its act row is an act row) and S2's 3
    assert out[("form1", "outside_fiscal_years")] == 23 and out[("ef", "outside_fiscal_years")] == 10
    ids = pq.read_table(tmp_path / "db" / "private" / "identifiers.parquet").to_pylist()
    assert sorted((x["admission_id"], x["postcode"]) for x in ids) == sorted([(S3, "1000003"), (S4, "1000004"), (S6, "1000006")])
    assert {x["insurer_no"] for x in ids} == {"06139999", None}


def test_unusable_input(tmp_path):
    raw = standard_raw(tmp_path)
    only_ef = tmp_path / "only_ef"
    only_ef.mkdir()
    shutil.copy(raw / "EFn_2016.txt", only_ef)
    with pytest.raises(DataUnusableError, match="no Form 1 file found"):
        import_dpc(only_ef, FIX / "facilities.csv", tmp_path / "db1", workers=1, show_progress=False)
    bad_fac = tmp_path / "fac.csv"
    bad_fac.write_text("facility_code,fiscal_year,beds\n123456789,2015,600\n")
    with pytest.raises(DataUnusableError, match="missing column.*cancer_center"):
        import_dpc(raw, bad_fac, tmp_path / "db2", workers=1, show_progress=False)
    (raw / "FF1_2016.txt").write_bytes(b"123456789\t\x81\x20\n")
    with pytest.raises(DataUnusableError, match="FF1_2016.txt: cannot be decoded"):
        import_dpc(raw, FIX / "facilities.csv", tmp_path / "db3", workers=1, show_progress=False)
    assert not (tmp_path / "db1").exists() and not (tmp_path / "db3").exists()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hospstudy", "import-dpc", *map(str, args)], capture_output=True, text=True)


def test_cli_exit_codes(tmp_path):
    raw = standard_raw(tmp_path)
    fac = FIX / "facilities.csv"
    p = _cli(raw, "--facilities", fac, "--out", tmp_path / "db", "--workers", "1")
    assert p.returncode == 0, p.stderr
    assert "raw lines: " in p.stderr and (tmp_path / "db" / "import_report.md").exists()
    with open(raw / "EFn_2016.txt", "ab") as fh:
        fh.write(b"123456789\t0000000003\t20160420\r\n")
    p = _cli(raw, "--facilities", fac, "--out", tmp_path / "db", "--overwrite", "--workers", "1")
    assert p.returncode == 1, p.stderr
    assert "rejected short_line: 1 line(s), e.g. EFn_2016.txt line 7" in p.stderr
    for args, msg in (
        ([raw, "--facilities", tmp_path / "missing.csv", "--out", tmp_path / "db9"], "no such facilities file"),
        ([tmp_path / "nothing", "--facilities", fac, "--out", tmp_path / "db9"], "no such file or folder"),
        ([raw, "--facilities", fac, "--out", tmp_path / "db"], "exists and is not empty"),
        ([raw, "--facilities", fac, "--out", tmp_path / "db9", "--encoding", "latin-1"], "'encoding' parameter"),
        ([raw, "--facilities", fac, "--out", tmp_path / "db9", "--memory-limit", "lots"], "must be a size such as"),
    ):
        p = _cli(*args)
        assert p.returncode == 2, (args, p.stderr)
        assert msg in p.stderr and "Traceback" not in p.stderr
        assert len([ln for ln in p.stderr.splitlines() if ln.strip()]) == 1, p.stderr
        assert not (tmp_path / "db9").exists() and not (tmp_path / ".db9.importing").exists()


def test_ef_lines_find_their_stay_by_key_and_admission_date():
    """The stay join done in the reading threads (ef.Stays): a patient with two stays, the
    same データ識別番号 at another facility, an unknown patient and an unknown admission date."""
    import duckdb
    import numpy as np

    from hospstudy.data.dpc import ef as EF

    con = duckdb.connect()
    con.execute("""CREATE TABLE stays AS SELECT * FROM (VALUES
        (123456789, 1::BIGINT, DATE '2015-05-10', 'ok'),
        (123456789, 1::BIGINT, DATE '2016-01-01', 'incomplete_stay'),
        (987654321, 1::BIGINT, DATE '2015-05-10', 'ok'),
        (1, 9999999999::BIGINT, DATE '2020-01-01', 'unknown_facility'))
        t(fac, pid, admit_date, status)""")
    con.execute("""CREATE TABLE admissions_out AS SELECT * FROM (VALUES
        (123456789, 1::BIGINT, DATE '2015-05-10', DATE '2015-05-20', 2015::SMALLINT, 1),
        (987654321, 1::BIGINT, DATE '2015-05-10', DATE '2015-06-01', 2015::SMALLINT, 2))
        t(fac, pid, admit_date, discharge_date, fiscal_year, stay_no)""")
    stays = EF.Stays.load(con)
    day = lambda s: (np.datetime64(s) - np.datetime64("1970-01-01")).astype(np.int64)  # noqa: E731
    fac = np.array([123456789, 123456789, 987654321, 1, 123456789, 555555555, 123456789])
    pid = np.array([1, 1, 1, 9999999999, 1, 1, 2])
    days = np.array([day("2015-05-10"), day("2016-01-01"), day("2015-05-10"), day("2020-01-01"), day("2015-05-11"),
                     day("2015-05-10"), day("2015-05-10")])
    want = np.ones(len(fac), dtype=bool)
    want[-1] = False  # a line that failed its own checks is not looked up
    pat = EF.patients(fac, pid)
    j = stays.find(pat, days, want)
    assert (j[4:] == -1).all()
    assert [EF.STAY_STATUSES[stays.status[k]] for k in j[:4]] == ["ok", "incomplete_stay", "ok", "unknown_facility"]
    assert stays.stay_no[j[0]] == 1 and stays.stay_no[j[2]] == 2 and stays.stay_no[j[1]] == 0
    assert stays.discharge[j[2]] == day("2015-06-01")
    assert EF.Stays.ranges(con, budget=96) == [(0, None)]  # 4 stays x 18 bytes + 3 patients x 8: one pass
    # In passes (the stays' arrays over the budget): each patient's stays in one pass only, and
    # each line read by one pass only (a line without a valid key by the first)
    ranges = EF.Stays.ranges(con, budget=40)
    assert len(ranges) == 2 and ranges[0][0] == 0 and ranges[-1][1] is None  # (cuts at stays: the patient with two at one)
    key_ok = np.ones(len(fac), dtype=bool)
    key_ok[5] = False  # as if its 施設コード were not 9 digits
    found, owners = [], np.zeros(len(fac), dtype=int)
    for i, (lo, hi) in enumerate(ranges):
        part = EF.Stays.load(con, lo, hi, first=i == 0)
        own = part.owns(pat, key_ok)
        owners += own
        jj = part.find(pat, days, want & own)
        found += [(int(fac[k]), int(pid[k]), EF.STAY_STATUSES[part.status[jj[k]]], int(part.stay_no[jj[k]]))
                  for k in np.flatnonzero(jj >= 0)]
        assert len(part.keys) >= 1 and (jj[~own] == -1).all()
    assert (owners == 1).all()
    assert sorted(found) == sorted([(123456789, 1, "ok", 1), (123456789, 1, "incomplete_stay", 0), (987654321, 1, "ok", 2),
                                    (1, 9999999999, "unknown_facility", 0)])



def _ef_line(fac: str, pid: str, admit: str, **fields) -> str:
    v = {"facility_code": fac, "data_id": pid, "admit_ymd": admit, "discharge_ymd": "20150520", "category": "21",
         "detail_no": "001", "receipt_code": "620000001", "quantity": "1", "service_ymd": admit, "flags17": "0", **fields}
    return "\t".join(v.get(name, "") for name in L.EF_FIELDS)


def test_a_block_is_its_patients_passes_whatever_its_lines(tmp_path):
    """EF in passes: a line that breaks the layout but begins with its key written plainly (9
    digits, a tab, 10 digits, a tab) is its patient's pass's, and its key counts in the block's
    range of patients (else a later pass could pass over the block and lose it); a line without
    such a key is the first pass's. The first pass reads only the keys of a block all of whose
    lines begin with theirs and none of which is its (Stays.foreign), with the same range."""
    import duckdb
    import numpy as np

    from hospstudy.data.dpc import ef as EF
    from hospstudy.data.dpc import rawfiles as R

    con = duckdb.connect()
    con.execute("""CREATE TABLE stays AS SELECT * FROM (VALUES
        (123456789, 1::BIGINT, DATE '2015-05-10', 'ok'), (987654321, 1::BIGINT, DATE '2015-05-10', 'ok'))
        t(fac, pid, admit_date, status)""")
    con.execute("""CREATE TABLE admissions_out AS SELECT * FROM (VALUES
        (123456789, 1::BIGINT, DATE '2015-05-10', DATE '2015-05-20', 2015::SMALLINT, 1),
        (987654321, 1::BIGINT, DATE '2015-05-10', DATE '2015-05-20', 2015::SMALLINT, 2))
        t(fac, pid, admit_date, discharge_date, fiscal_year, stay_no)""")
    first_pat, later_pat = 123456789 * 10**10 + 1, 987654321 * 10**10 + 1
    passes = [EF.Stays.load(con, 0, later_pat, first=True), EF.Stays.load(con, later_pat, None, first=False)]
    assert passes[0].owns(np.array([first_pat, later_pat], np.uint64), np.ones(2, bool)).tolist() == [True, False]
    short = "987654321\t0000000001\t20150510\t21\t001"  # the later pass's patient, 5 fields
    good = _ef_line("987654321", "0000000001", "20150510")
    # a blank line (no key: the first pass's) and the later patient's short line in one block
    data = ("\r\n" + short + "\r\n").encode("cp932")
    assert EF.scan_keys(data) is None and all(p.foreign(data, 0, 1) is None for p in passes)
    reasons = []
    for p in passes:
        parsed = EF.parse_chunk(R.read_block(data, L.EF_N, EF.cols(False), "cp932"), 1, 0, False, p, EF.Codes())
        rej = parsed.tables.get("ef_rejects")
        reasons.append([] if rej is None else list(zip(rej["line_no"].to_pylist(), rej["reason"].to_pylist())))
        assert parsed.patients == (later_pat, later_pat) and parsed.lines == 2
    assert reasons == [[(1, "blank_line")], [(2, "short_line")]]
    # lines that all begin with their key, none of them the first pass's: their keys only
    data = (short + "\n" + good).encode("cp932")  # (the last line without LF counts)
    pats, n = EF.scan_keys(data)
    assert n == 2 and pats.tolist() == [later_pat, later_pat]
    stub = passes[0].foreign(data, 3, 40)
    assert stub.keys_only and (stub.file_id, stub.first_line, stub.lines, stub.imported) == (3, 40, 2, 0)
    assert stub.patients == (later_pat, later_pat) and stub.tables["ef_billing"].schema == EF.BILLING_SCHEMA
    assert passes[1].foreign(data, 3, 40) is None  # (not the first pass: its blocks are split and parsed)
    parsed = EF.parse_chunk(R.read_block(data, L.EF_N, EF.cols(False), "cp932"), 40, 3, False, passes[1], EF.Codes())
    assert parsed.imported == 1 and parsed.tables["ef_rejects"]["reason"].to_pylist() == ["short_line"]
    assert parsed.tables["ef_billing"].schema == EF.BILLING_SCHEMA
    # a line of the first pass's patient in the block: the block is split and parsed by it
    assert passes[0].foreign((good.replace("987654321", "123456789") + "\n" + short).encode("cp932"), 0, 1) is None
    # a key the first pass cannot tell from its bytes alone (padded, short, not digits, a header): parsed
    for line in (" " + good, good.replace("987654321", "98765432"), good.replace("0000000001", "000000000x"),
                 "\t".join(L.EF_FIELDS), ""):
        assert EF.scan_keys((good + "\n" + line + "\n").encode("cp932")) is None, line
        assert EF.line_key(line) is None
    assert EF.line_key(short) == later_pat

def test_duckdb_size_settings_read_in_bytes():
    """The import lends DuckDB's memory limit to the stays' arrays while EF is read: it reads the
    limit back as DuckDB shows it ('953.6 MiB' for 1GB)."""
    import duckdb

    from hospstudy.data.dpc.importer import _setting_bytes

    con = duckdb.connect()
    for given, want in (("1GB", 10**9), ("512MB", 512 * 10**6), ("3GiB", 3 << 30)):
        con.execute(f"SET memory_limit = '{given}'")
        assert abs(_setting_bytes(con, "memory_limit") - want) / want < 0.001


@pytest.mark.parametrize("part_rows, batch_rows, workers", [(2, 122_880, 2), (2, 3, 2), (3, 2, 1)])
def test_billing_written_in_parts_keeps_its_order(tmp_path, imported, monkeypatch, part_rows, batch_rows, workers):
    """Billing is written per fiscal year in parts of consecutive rows (data_00000.parquet, ...)
    from one sorted stream cut into pieces (at the years' and the parts' ends, by two writing
    threads or one): read in name order they are the rows of one sorted write, in the same
    order, sorted by (admission, service date, code, kind, quantity); with small batches the
    pieces also cross the admission ids' batches."""
    import hospstudy.data.dpc.importer as imp

    def ordered(db: Path) -> tuple[list, list]:
        years, files = [], []
        for year in sorted((db / "billing").iterdir()):
            parts = sorted(year.glob("*.parquet"))
            files.append(len(parts))
            years.append([r for p in parts for r in pq.read_table(p).to_pylist()])
        return years, files

    monkeypatch.setattr(imp, "PART_ROWS", part_rows)
    monkeypatch.setattr(imp, "_BATCH_ROWS", batch_rows)
    import_dpc(standard_raw(tmp_path), FIX / "facilities.csv", tmp_path / "db", show_progress=False, workers=workers)
    got, parts = ordered(tmp_path / "db")
    want, whole = ordered(imported[1])
    assert whole == [1, 1] and min(parts) > 1
    for year, n in zip(got, parts):  # every part but a year's last holds part_rows rows
        assert len(year) > part_rows * (n - 1)
        assert all(pq.read_metadata(p).num_rows == part_rows
                   for p in sorted(sorted((tmp_path / "db" / "billing").iterdir())[got.index(year)].glob("*.parquet"))[:-1])
    assert got == want
    assert validate_database(tmp_path / "db", progress=False).exit_code == 0
    for year in got:
        keys = [(r["admission_id"], r["service_date"], r["code"], r["kind"], r["quantity"]) for r in year]
        assert keys == sorted(keys)
        assert len({k[2] for k in keys}) > 1
    # the writer sorts by the kind's index in L.KINDS: the same order only while KINDS is sorted
    assert list(L.KINDS) == sorted(L.KINDS) and set(L.KINDS) == set(BILLING_KINDS)


def test_admission_ids_streamed_past_stays_without_billing(monkeypatch):
    """The billing writer's admission ids come from a stream sorted by stay: each piece takes the
    ids of its own stays only, across the stream's batches and past long runs of admissions
    without billing; a stay without an admission comes back as another stay number (the writer
    then stops: a bug, not bad input)."""
    import duckdb
    import numpy as np

    import hospstudy.data.dpc.importer as imp

    monkeypatch.setattr(imp, "_BATCH_ROWS", 7)
    con = duckdb.connect()
    con.execute("CREATE TABLE a AS SELECT i::INTEGER AS stay_no, 'id-' || i AS admission_id FROM range(1, 1001) t(i) WHERE i % 97 <> 0")
    ids = imp._AdmissionIds(con.execute("SELECT stay_no, admission_id FROM a ORDER BY stay_no"))
    pieces = [[1, 2, 3], [5, 40, 41], [42], [500, 501, 900], [996, 999]]
    for stays in pieces:
        nos, got = ids.of(np.array(stays, np.int64))
        assert nos.tolist() == stays and got.to_pylist() == [f"id-{s}" for s in stays]
        assert len(ids._chunks) <= 2  # the batches behind the pieces were let go
    con.execute("DELETE FROM a")
    con.execute("INSERT INTO a SELECT i::INTEGER, 'id-' || i FROM range(1, 30) t(i) WHERE i <> 10")
    ids = imp._AdmissionIds(con.execute("SELECT stay_no, admission_id FROM a ORDER BY stay_no"))
    nos, got = ids.of(np.array([9, 10, 11], np.int64))
    assert nos.tolist() == [9, 11, 11]  # 10 has no admission
    nos, got = ids.of(np.array([28, 29, 31], np.int64))
    assert nos.tolist() == [28, 29]  # past the last admission: fewer numbers than stays
