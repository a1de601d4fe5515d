-- The flagship's attrition (studies/spinal_metastasis.toml) hand-written as one DuckDB query:
-- the second half of the hand-written baseline (bench/cohort_baseline.sql gives the analytic
-- dataset). Every admission of the database gets the step that removes it (1-6) or 7 (in the
-- cohort); a patient is removed at the last step that removes one of their admissions (step 1:
-- every admission, or patient, without an index event, counted from the database's totals).
-- Returns (unit, level, n); bench/bench_cohort.py turns it into the attrition table and checks
-- it against the engine's.
WITH
adm AS (SELECT admission_id, patient_id, hospital_id, admit_date, age
        FROM read_parquet('{root}/admissions/**/*.parquet', hive_partitioning = false)),
dx  AS (SELECT admission_id, icd10, role FROM read_parquet('{root}/diagnoses/**/*.parquet', hive_partitioning = false)),
pr  AS (SELECT admission_id, proc_code, proc_date FROM read_parquet('{root}/procedures/**/*.parquet', hive_partitioning = false)),
fac AS (SELECT hospital_id, CAST(fiscal_year AS BIGINT) AS fiscal_year FROM read_parquet('{root}/facilities.parquet')),
idx AS (
    SELECT admission_id, min(proc_date) AS surgery_date FROM pr
    WHERE proc_code IN ('K1421', 'K1422', 'K1423', 'K1424', 'K1425', 'K1426', 'K142-4', 'K136', 'K136-2')
       OR starts_with(proc_code, 'K134')
    GROUP BY admission_id
),
mets AS (
    SELECT DISTINCT admission_id FROM dx
    WHERE icd10 = 'C795' AND role IN ('main', 'trigger', 'resource', 'comorbidity')
),
lv AS (
    -- admissions with an index event (the others are removed at step 1: counted from the totals)
    SELECT a.admission_id, a.patient_id, a.admit_date, i.surgery_date,
        CASE WHEN m.admission_id IS NULL THEN 2
             WHEN NOT coalesce(year(i.surgery_date) - CASE WHEN month(i.surgery_date) < 4 THEN 1 ELSE 0 END BETWEEN 2012 AND 2020, false) THEN 3
             WHEN NOT coalesce(a.age >= 18, false) THEN 4
             WHEN f.hospital_id IS NULL THEN 5
        END AS removed_at
    FROM adm a
    JOIN idx i ON i.admission_id = a.admission_id
    LEFT JOIN mets m ON m.admission_id = a.admission_id
    LEFT JOIN fac f ON f.hospital_id = a.hospital_id
        AND f.fiscal_year = year(i.surgery_date) - CASE WHEN month(i.surgery_date) < 4 THEN 1 ELSE 0 END
),
ranked AS (
    SELECT admission_id, row_number() OVER (PARTITION BY patient_id ORDER BY surgery_date, admit_date, admission_id) AS rn
    FROM lv WHERE removed_at IS NULL
),
fin AS (
    SELECT lv.patient_id, coalesce(lv.removed_at, CASE WHEN r.rn = 1 THEN 7 ELSE 6 END) AS level
    FROM lv LEFT JOIN ranked r ON r.admission_id = lv.admission_id
),
by_adm AS (SELECT level, count(*) AS n FROM fin GROUP BY level),
by_pat AS (SELECT level, count(*) AS n FROM (SELECT patient_id, max(level) AS level FROM fin GROUP BY patient_id) GROUP BY level),
tot AS (SELECT count(*) AS n, count(DISTINCT patient_id) AS p FROM adm)
SELECT 'admissions' AS unit, level, n FROM by_adm
UNION ALL SELECT 'patients', level, n FROM by_pat
UNION ALL SELECT 'admissions', 1, (SELECT n FROM tot) - (SELECT sum(n) FROM by_adm)
UNION ALL SELECT 'patients', 1, (SELECT p FROM tot) - (SELECT sum(n) FROM by_pat)
ORDER BY unit, level
