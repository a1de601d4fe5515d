"""The synthetic database: layout, schema, determinism, referential integrity, effects overrides.

Small scales only (0.02-0.5); calibration at scale 1 is in test_synth_calibration.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from hospstudy.data.schema import (
    ADL_MAX_LEVEL, BILLING_KINDS, DIAGNOSIS_ROLES, DISCHARGE_TO, ICD10_PATTERN, JCS_VALUES, KCODE_PATTERN,
    SPINAL_LEVELS, TABLE_NAMES, arrow_schema,
)
from hospstudy.data.synth import OUTPUT_ENTRIES, check, generate, params
from hospstudy.errors import HospstudyError, InputError

SMALL = dict(seed=11, scale=0.02)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "db"
    generate(out, **SMALL)
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _sql(db: Path, query: str):
    con = duckdb.connect()
    for t in TABLE_NAMES:
        src = f"{db}/facilities.parquet" if t == "facilities" else f"{db}/{t}/**/*.parquet"
        con.sql(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{src}', hive_partitioning = false)")
    try:
        return con.sql(query).fetchall()
    finally:
        con.close()


def test_layout_and_partitions(db):
    assert sorted(p.name for p in db.iterdir()) == sorted(OUTPUT_ENTRIES)
    for t in ("admissions", "diagnoses", "procedures", "billing"):
        folders = sorted(p.name for p in (db / t).iterdir())
        assert folders == [f"fiscal_year={y}" for y in range(2012, 2021)], t
        for f in folders:
            assert (db / t / f / "part-00000.parquet").is_file()


def test_every_file_has_exactly_the_canonical_schema(db):
    for path in db.rglob("*.parquet"):
        table = "facilities" if path.name == "facilities.parquet" else path.parent.parent.name
        schema = pq.read_schema(path)
        assert schema.equals(arrow_schema(table)), f"{path}: {schema} != {arrow_schema(table)}"
        assert "fiscal_year" not in schema.names or table == "facilities"


def test_partition_is_the_admissions_fiscal_year(db):
    wrong = _sql(db, """
        SELECT count(*) FROM read_parquet('{db}/admissions/**/*.parquet', filename = true)
        WHERE regexp_extract(filename, 'fiscal_year=([0-9]+)', 1)::INT
              <> year(admit_date) - CASE WHEN month(admit_date) < 4 THEN 1 ELSE 0 END
    """.format(db=db))
    assert wrong == [(0,)]
    for t in ("diagnoses", "procedures", "billing"):
        orphan = _sql(db, f"""
            WITH a AS (SELECT admission_id, regexp_extract(filename, 'fiscal_year=([0-9]+)', 1) AS p
                       FROM read_parquet('{db}/admissions/**/*.parquet', filename = true)),
                 c AS (SELECT admission_id, regexp_extract(filename, 'fiscal_year=([0-9]+)', 1) AS p
                       FROM read_parquet('{db}/{t}/**/*.parquet', filename = true))
            SELECT count(*) FROM c LEFT JOIN a USING (admission_id) WHERE a.p IS NULL OR a.p <> c.p
        """)
        assert orphan == [(0,)], t


def test_referential_integrity_and_value_rules(db):
    q = {
        "duplicate admission_id": "SELECT count(*) - count(DISTINCT admission_id) FROM admissions",
        "admission without facility-year": """
            SELECT count(*) FROM admissions a LEFT JOIN facilities f ON f.hospital_id = a.hospital_id
              AND f.fiscal_year = year(a.admit_date) - CASE WHEN month(a.admit_date) < 4 THEN 1 ELSE 0 END
            WHERE f.hospital_id IS NULL""",
        "diagnosis orphan": "SELECT count(*) FROM diagnoses d ANTI JOIN admissions a USING (admission_id)",
        "procedure orphan": "SELECT count(*) FROM procedures p ANTI JOIN admissions a USING (admission_id)",
        "billing orphan": "SELECT count(*) FROM billing b ANTI JOIN admissions a USING (admission_id)",
        "discharge before admission": "SELECT count(*) FROM admissions WHERE discharge_date < admit_date",
        "procedure outside stay": """SELECT count(*) FROM procedures p JOIN admissions a USING (admission_id)
            WHERE p.proc_date < a.admit_date OR p.proc_date > a.discharge_date""",
        "billing outside stay": """SELECT count(*) FROM billing b JOIN admissions a USING (admission_id)
            WHERE b.service_date < a.admit_date OR b.service_date > a.discharge_date""",
        "age out of 0-120": "SELECT count(*) FROM admissions WHERE age < 0 OR age > 120",
        "duplicate facility-year": "SELECT count(*) - count(DISTINCT (hospital_id, fiscal_year)) FROM facilities",
        "ADL at discharge of the dead": "SELECT count(*) FROM admissions WHERE discharge_to = 'death' AND adl_dis IS NOT NULL",
        "overlapping stays of a patient": """SELECT count(*) FROM (
            SELECT admit_date, lag(discharge_date) OVER (PARTITION BY patient_id ORDER BY admit_date, admission_id) AS prev,
                   lag(discharge_to) OVER (PARTITION BY patient_id ORDER BY admit_date, admission_id) AS prev_to
            FROM admissions) WHERE admit_date <= prev OR prev_to = 'death'""",
    }
    for rule, sql in q.items():
        assert _sql(db, sql) == [(0,)], rule

    def values(sql):
        return {r[0] for r in _sql(db, sql)}

    assert values("SELECT DISTINCT sex FROM admissions") == {"M", "F"}
    assert values("SELECT DISTINCT discharge_to FROM admissions") <= set(DISCHARGE_TO)
    assert values("SELECT DISTINCT jcs FROM admissions WHERE jcs IS NOT NULL") <= set(JCS_VALUES)
    assert values("SELECT DISTINCT spinal_level FROM admissions WHERE spinal_level IS NOT NULL") <= set(SPINAL_LEVELS)
    assert values("SELECT DISTINCT role FROM diagnoses") == set(DIAGNOSIS_ROLES)
    assert values("SELECT DISTINCT kind FROM billing") == set(BILLING_KINDS)
    assert all(re.match(ICD10_PATTERN, c) for c in values("SELECT DISTINCT icd10 FROM diagnoses"))
    assert all(re.match(KCODE_PATTERN, c) for c in values("SELECT DISTINCT proc_code FROM procedures"))
    assert set(params.SPINE_SURGERY_CODES) <= values("SELECT DISTINCT proc_code FROM procedures")
    for s in values("SELECT adl_adm FROM admissions WHERE adl_adm IS NOT NULL UNION SELECT adl_dis FROM admissions WHERE adl_dis IS NOT NULL"):
        assert len(s) == 10 and all(ch == "9" or int(ch) <= mx for ch, mx in zip(s, ADL_MAX_LEVEL)), s


def test_cohort_rules_matter(db):
    """The database holds what the cohort's exclusions must remove."""
    spine = "('" + "','".join(params.SPINE_SURGERY_CODES) + "')"
    minors = _sql(db, f"""SELECT count(*) FROM admissions a JOIN procedures p USING (admission_id)
        JOIN diagnoses d USING (admission_id)
        WHERE a.age < 18 AND d.icd10 = 'C795' AND d.role <> 'complication' AND p.proc_code IN {spine}""")[0][0]
    compl_only = _sql(db, f"""SELECT count(DISTINCT admission_id) FROM diagnoses d JOIN procedures p USING (admission_id)
        WHERE d.icd10 = 'C795' AND d.role = 'complication' AND p.proc_code IN {spine}
          AND admission_id NOT IN (SELECT admission_id FROM diagnoses WHERE icd10 = 'C795' AND role <> 'complication')""")[0][0]
    repeat = _sql(db, f"""SELECT count(*) FROM (
        SELECT a.patient_id FROM admissions a JOIN diagnoses d USING (admission_id) JOIN procedures p USING (admission_id)
        WHERE d.icd10 = 'C795' AND d.role <> 'complication' AND p.proc_code IN {spine}
        GROUP BY a.patient_id HAVING count(DISTINCT a.admission_id) > 1)""")[0][0]
    targeted = _sql(db, "SELECT count(DISTINCT admission_id) FROM billing WHERE kind = 'drug' AND code LIKE '620008%'")[0][0]
    assert minors >= 1 and compl_only >= 1 and repeat >= 1 and targeted >= 1
    truth = json.loads((db / "truth.json").read_text())
    kinds = truth["realised"]["admissions_by_kind"]
    assert kinds["under_18"] >= 1 and kinds["c795_complication_only"] >= 1
    assert check.figures(db)["patients"] == truth["realised"]["index_patients"]


def test_same_seed_gives_byte_identical_files_and_other_seeds_differ(db, tmp_path):
    again = tmp_path / "again"
    generate(again, **SMALL)
    assert _digest(again) == _digest(db)
    other = tmp_path / "other"
    generate(other, seed=SMALL["seed"] + 1, scale=SMALL["scale"])
    a, b = _digest(db), _digest(other)
    assert a.keys() == b.keys()
    differ = [k for k in a if a[k] != b[k]]
    assert "truth.json" in differ and any(k.startswith("admissions/") for k in differ)


def test_truth_json_holds_the_parameters(db):
    truth = json.loads((db / "truth.json").read_text())
    assert truth["synthetic"] is True
    assert truth["generator"]["seed"] == SMALL["seed"] and truth["generator"]["scale"] == SMALL["scale"]
    assert truth["effects"]["death_30d"]["cancer_center_or"] == pytest.approx(0.841)
    assert truth["effects"]["death_30d"]["volume_per50_or"] == pytest.approx(0.958)
    assert truth["targets"]["patients"] == 10320
    assert len(truth["solved"]["death_30d"]) == 9
    assert set(truth["hospitals"]["random_intercepts"]) >= {"death_30d", "complication", "los_to_home"}


def test_no_background_keeps_volumes_and_the_cohort(db, tmp_path):
    fast = tmp_path / "fast"
    s = generate(fast, **SMALL, background=False)
    assert s["background_admissions"] == 0
    full, slim = check.cohort(db), check.cohort(fast)
    assert list(full.volume) == list(slim.volume)
    assert list(full.death_30d) == list(slim.death_30d)
    assert _sql(fast, "SELECT count(*) FROM billing WHERE substr(admission_id, 6, 1) <> '1'") == [(0,)]


def test_effects_override_changes_truth_and_the_planted_direction_shows(tmp_path):
    toml = tmp_path / "effects.toml"
    toml.write_text("[death_30d]\ncancer_center_or = 4.0\nvolume_per50_or = 1.00\n\n[complication]\ncancer_center_or = 3.0\n")
    base, over = tmp_path / "base", tmp_path / "over"
    generate(base, seed=3, scale=0.5, background=False)
    generate(over, seed=3, scale=0.5, background=False, effects=toml)
    t = json.loads((over / "truth.json").read_text())
    assert t["effects"]["death_30d"]["cancer_center_or"] == 4.0
    assert t["effects"]["death_30d"]["volume_per50_or"] == 1.0
    assert t["effects"]["complication"]["cancer_center_or"] == 3.0
    b, o = check.cohort(base), check.cohort(over)
    rb = b.groupby("cancer_center").death_30d.mean()
    ro = o.groupby("cancer_center").death_30d.mean()
    assert ro[True] / ro[False] > 2.0 and rb[True] / rb[False] < 1.2
    co = o.groupby("cancer_center").complication.mean()
    assert co[True] / co[False] > 1.8
    # Intercepts are re-solved: the marginal 30-day mortality stays at its target.
    assert abs(o.death_30d.mean() - 0.062) < 0.012


def test_targets_override_moves_the_marginal(tmp_path):
    out = tmp_path / "t"
    generate(out, seed=4, scale=0.3, background=False, effects={"targets": {"mortality_30d": 0.15, "in_hospital_mortality": 0.20,
                                                                           "in_hospital_mortality_first_year": 0.22,
                                                                           "in_hospital_mortality_last_year": 0.18}})
    assert abs(check.figures(out)["mortality_30d"] - 0.15) < 0.025


def test_bad_arguments_give_clear_errors(db, tmp_path):
    with pytest.raises(InputError, match="already holds a database"):
        generate(db, **SMALL)
    with pytest.raises(InputError, match=r"death_30d\.cancer_centre_or: unknown key"):
        generate(tmp_path / "x", scale=0.01, effects={"death_30d": {"cancer_centre_or": 1.3}})
    with pytest.raises(InputError, match=r"complication\.volume_per50_or: must be > 0"):
        generate(tmp_path / "x", scale=0.01, effects={"complication": {"volume_per50_or": -1}})
    with pytest.raises(InputError, match="unknown table 'death30'"):
        generate(tmp_path / "x", scale=0.01, effects={"death30": {}})
    bad = tmp_path / "bad.toml"
    bad.write_text("[death_30d\n")
    with pytest.raises(InputError, match="not valid TOML"):
        generate(tmp_path / "x", scale=0.01, effects=bad)
    with pytest.raises(InputError, match="'scale' parameter"):
        generate(tmp_path / "x", scale=0)
    with pytest.raises(InputError, match="'years' parameter"):
        generate(tmp_path / "x", scale=0.01, years=(2020, 2012))
    assert issubclass(InputError, HospstudyError)


def test_other_year_ranges(tmp_path):
    out = tmp_path / "y"
    s = generate(out, seed=2, scale=0.05, years=(2015, 2016), background=False)
    assert sorted(p.name for p in (out / "admissions").iterdir()) == ["fiscal_year=2015", "fiscal_year=2016"]
    assert s["index_patients"] > 0
    assert check.figures(out, 2015, 2016)["patients"] == s["index_patients"]


def test_cli_synth(tmp_path):
    from typer.testing import CliRunner

    from hospstudy.cli import app

    r = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "c"), "--scale", "0.01", "--seed", "7", "--no-background"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "c" / "truth.json").is_file()
