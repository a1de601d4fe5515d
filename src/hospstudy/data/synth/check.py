"""The flagship cohort's marginal figures computed straight from a database with one DuckDB SQL
query, independent of the cohort engine: how the calibration of the synthetic database is
checked (tests, benchmark) against reference/published.toml.

Cohort: the first spine surgery (the twelve K-codes) of an admission that has C795 in any
role except complication, fiscal year of surgery 2012-2020 (or the database's years), the
patient's first such admission, age >= 18.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from hospstudy.data.synth import params as P

_FUSION = tuple(P.FUSION_CODES)


def _in(codes) -> str:
    return "(" + ", ".join(f"'{c}'" for c in codes) + ")"


def cohort_sql(db: str | Path, first_fy: int = 2012, last_fy: int = 2020) -> str:
    """The SQL (DuckDB) that builds the flagship cohort with its exposures and outcomes."""
    d = Path(db)
    compl = " OR ".join(f"icd10 LIKE '{p}%'" for p in P.FLAGSHIP_COMPLICATION_PREFIXES)
    fy = "(year({c}) - CASE WHEN month({c}) < 4 THEN 1 ELSE 0 END)"
    return f"""
    WITH adm AS (SELECT * FROM read_parquet('{d}/admissions/**/*.parquet')),
    dx AS (SELECT * FROM read_parquet('{d}/diagnoses/**/*.parquet')),
    pr AS (SELECT * FROM read_parquet('{d}/procedures/**/*.parquet')),
    fac AS (SELECT * FROM read_parquet('{d}/facilities.parquet')),
    spine AS (
        SELECT admission_id, min(proc_date) AS surgery_date,
               arg_min(proc_code, proc_date) AS surgery_code
        FROM pr WHERE proc_code IN {_in(P.SPINE_SURGERY_CODES)} GROUP BY admission_id),
    spine_fy AS (SELECT s.*, {fy.format(c='s.surgery_date')} AS fy, a.hospital_id
                 FROM spine s JOIN adm a USING (admission_id)),
    vol AS (SELECT hospital_id, fy, count(*) AS volume FROM spine_fy GROUP BY ALL),
    met AS (SELECT DISTINCT admission_id FROM dx WHERE icd10 = 'C795' AND role <> 'complication'),
    cand AS (
        SELECT a.*, s.surgery_date, s.surgery_code, s.fy
        FROM adm a JOIN spine_fy s USING (admission_id) JOIN met USING (admission_id)
        WHERE s.fy BETWEEN {first_fy} AND {last_fy}),
    firsts AS (SELECT *, row_number() OVER (PARTITION BY patient_id ORDER BY admit_date, surgery_date, admission_id) AS rn
               FROM cand),
    coh AS (SELECT * FROM firsts WHERE rn = 1 AND age >= 18),
    comp AS (SELECT DISTINCT admission_id FROM dx WHERE role = 'complication' AND ({compl}))
    SELECT coh.patient_id, coh.admission_id, coh.hospital_id, coh.fy, coh.age, coh.sex, coh.emergency,
           f.cancer_center, v.volume, coh.surgery_code,
           coh.surgery_code IN {_in(_FUSION)} AS fusion,
           coh.discharge_to = 'death' AS in_hospital_death,
           coh.discharge_to = 'death' AND (coh.discharge_date - coh.surgery_date) <= 30 AS death_30d,
           coh.discharge_to = 'home' AS discharged_home,
           (coh.discharge_date - coh.surgery_date) AS postop_los,
           comp.admission_id IS NOT NULL AS complication,
           CASE WHEN coh.discharge_to = 'death' OR coh.adl_adm IS NULL OR coh.adl_dis IS NULL
                     OR substr(coh.adl_adm, 6, 1) = '9' OR substr(coh.adl_dis, 6, 1) = '9' THEN NULL
                ELSE CAST(substr(coh.adl_dis, 6, 1) AS INT) <= 1
                     OR CAST(substr(coh.adl_dis, 6, 1) AS INT) < CAST(substr(coh.adl_adm, 6, 1) AS INT)
           END AS unfavorable_ambulatory
    FROM coh
    JOIN fac f ON f.hospital_id = coh.hospital_id AND f.fiscal_year = coh.fy
    JOIN vol v ON v.hospital_id = coh.hospital_id AND v.fy = coh.fy
    LEFT JOIN comp USING (admission_id)
    ORDER BY coh.patient_id
    """


def cohort(db: str | Path, first_fy: int = 2012, last_fy: int = 2020) -> pd.DataFrame:
    """One row per cohort patient (exposures and outcomes), computed with DuckDB."""
    con = duckdb.connect()
    try:
        return con.sql(cohort_sql(db, first_fy, last_fy)).df()
    finally:
        con.close()


def figures(db: str | Path, first_fy: int = 2012, last_fy: int = 2020) -> dict:
    """The calibration figures of a database: cohort size, exposure shares, outcome rates,
    yearly trends, volumes, and database-wide counts."""
    df = cohort(db, first_fy, last_fy)
    d = Path(db)
    con = duckdb.connect()
    try:
        db_counts = con.sql(f"""
            WITH pr AS (SELECT DISTINCT admission_id FROM read_parquet('{d}/procedures/**/*.parquet')
                        WHERE proc_code IN {_in(P.SPINE_SURGERY_CODES)}),
            met AS (SELECT DISTINCT admission_id FROM read_parquet('{d}/diagnoses/**/*.parquet') WHERE icd10 = 'C795')
            SELECT (SELECT count(*) FROM pr) AS spine_admissions,
                   (SELECT count(*) FROM pr WHERE admission_id NOT IN (SELECT admission_id FROM met)) AS non_metastatic_spine_admissions,
                   (SELECT count(*) FROM read_parquet('{d}/admissions/**/*.parquet')) AS admissions
        """).fetchone()
        fac = con.sql(f"""SELECT count(DISTINCT hospital_id) AS hospitals,
                                 avg(cc) AS cancer_centers_per_year FROM (
                            SELECT hospital_id, fiscal_year, sum(cancer_center::INT) OVER (PARTITION BY fiscal_year) AS cc
                            FROM read_parquet('{d}/facilities.parquet'))""").fetchone()
    finally:
        con.close()
    alive = df[~df.in_hospital_death]
    by_year = df.groupby("fy").agg(
        patients=("patient_id", "size"), in_hospital_death=("in_hospital_death", "mean"),
        median_postop_los=("postop_los", "median"), fusion_share=("fusion", "mean"),
    )
    return {
        "patients": int(len(df)),
        "cancer_center_share": float(df.cancer_center.mean()),
        "mortality_30d": float(df.death_30d.mean()),
        "in_hospital_mortality": float(df.in_hospital_death.mean()),
        "discharged_home": float(df.discharged_home.mean()),
        "complications": float(df.complication.mean()),
        "unfavorable_ambulatory": float(alive.unfavorable_ambulatory.dropna().astype(float).mean()),
        "unfavorable_ambulatory_missing": float(alive.unfavorable_ambulatory.isna().mean()),
        "median_postop_los": float(df.postop_los.median()),
        "median_volume_patient_level": float(df.volume.median()),
        "median_volume_cancer_center_patients": float(df[df.cancer_center].volume.median()) if df.cancer_center.any() else None,
        "by_year": {int(y): {k: float(v) for k, v in r.items()} for y, r in by_year.iterrows()},
        "spine_admissions": int(db_counts[0]),
        "non_metastatic_spine_admissions": int(db_counts[1]),
        "admissions": int(db_counts[2]),
        "hospitals": int(fac[0]),
        "cancer_centers_per_year": float(fac[1]),
    }
