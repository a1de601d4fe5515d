-- The flagship cohort (studies/spinal_metastasis.toml) hand-written as one DuckDB query: the
-- baseline bench/bench_cohort.py times the engine against. {root} is the database folder.
-- Same definitions as the study file; the bench checks that the rows agree column by column.
WITH
adm AS (SELECT * FROM read_parquet('{root}/admissions/**/*.parquet', hive_partitioning = false)),
dx  AS (SELECT admission_id, icd10, role FROM read_parquet('{root}/diagnoses/**/*.parquet', hive_partitioning = false)),
pr  AS (SELECT admission_id, proc_code, proc_date FROM read_parquet('{root}/procedures/**/*.parquet', hive_partitioning = false)),
bl  AS (SELECT admission_id, kind, code FROM read_parquet('{root}/billing/**/*.parquet', hive_partitioning = false)),
fac AS (SELECT hospital_id, CAST(fiscal_year AS BIGINT) AS fiscal_year, cancer_center, teaching FROM read_parquet('{root}/facilities.parquet')),
spine AS (
    SELECT * FROM pr
    WHERE proc_code IN ('K1421', 'K1422', 'K1423', 'K1424', 'K1425', 'K1426', 'K142-4', 'K136', 'K136-2')
       OR starts_with(proc_code, 'K134')
),
idx AS (SELECT admission_id, min(proc_date) AS surgery_date FROM spine GROUP BY admission_id),
vol AS (
    SELECT a.hospital_id, year(i.surgery_date) - CASE WHEN month(i.surgery_date) < 4 THEN 1 ELSE 0 END AS fiscal_year,
           count(*) AS volume
    FROM idx i JOIN adm a USING (admission_id) GROUP BY ALL
),
elig AS (
    SELECT a.*, i.surgery_date,
           year(i.surgery_date) - CASE WHEN month(i.surgery_date) < 4 THEN 1 ELSE 0 END AS fiscal_year
    FROM adm a JOIN idx i USING (admission_id)
    WHERE a.admission_id IN (SELECT admission_id FROM dx WHERE icd10 = 'C795' AND role IN ('main', 'trigger', 'resource', 'comorbidity'))
),
cohort AS (
    SELECT e.*, f.cancer_center, f.teaching
    FROM elig e JOIN fac f ON f.hospital_id = e.hospital_id AND f.fiscal_year = e.fiscal_year
    WHERE e.fiscal_year BETWEEN 2012 AND 2020 AND e.age >= 18
    QUALIFY row_number() OVER (PARTITION BY e.patient_id ORDER BY e.surgery_date, e.admit_date, e.admission_id) = 1
),
d AS (
    SELECT admission_id, icd10, role, substr(icd10, 1, 3) AS c3, substr(icd10, 1, 4) AS c4,
           role IN ('comorbidity', 'resource') AS prim, role = 'comorbidity' AS com
    FROM dx WHERE admission_id IN (SELECT admission_id FROM cohort)
),
dxf AS (
    SELECT admission_id,
        bool_or(prim AND c3 = 'C34') AS p_lung, bool_or(prim AND c3 = 'C50') AS p_breast,
        bool_or(prim AND icd10 = 'C61') AS p_prostate, bool_or(prim AND icd10 IN ('C64', 'C65')) AS p_kidney,
        bool_or(prim AND c3 = 'C22') AS p_liver, bool_or(prim AND c3 BETWEEN 'C18' AND 'C20') AS p_colorectal,
        bool_or(prim AND icd10 = 'C73') AS p_thyroid, bool_or(prim AND c3 = 'C16') AS p_stomach,
        bool_or(prim AND c3 = 'C15') AS p_oesophagus, bool_or(prim AND c3 = 'C25') AS p_pancreas,
        bool_or(prim AND (c3 = 'C90' OR c3 BETWEEN 'C81' AND 'C85')) AS p_myeloma_lymphoma,
        bool_or(prim AND c3 BETWEEN 'C53' AND 'C56') AS p_uterus_ovary, bool_or(prim AND c3 BETWEEN 'C00' AND 'C14') AS p_head_neck,
        bool_or(prim AND c3 = 'C80') AS p_unknown, bool_or(prim AND (c3 BETWEEN 'C00' AND 'C76' OR c3 BETWEEN 'C81' AND 'C97')) AS p_any,
        bool_or(prim AND c3 BETWEEN 'C23' AND 'C24') AS p_biliary,
        bool_or(role IN ('main', 'trigger', 'resource', 'comorbidity') AND c3 = 'C78') AS visceral_mets,
        bool_or(role IN ('main', 'trigger', 'resource', 'comorbidity') AND icd10 = 'C793') AS brain_mets,
        bool_or(role = 'complication' AND (icd10 IN ('T814', 'T813', 'T810', 'N390', 'G960') OR c3 BETWEEN 'J12' AND 'J18'
            OR c3 IN ('I26', 'I21', 'F05', 'K56') OR c3 BETWEEN 'I80' AND 'I82' OR c3 BETWEEN 'A40' AND 'A41'
            OR c3 BETWEEN 'I60' AND 'I64')) AS complication,
        -- Charlson (Quan 2005 ICD-10), cancer items left out
        bool_or(com AND (c3 IN ('I21', 'I22') OR icd10 = 'I252')) AS cc_mi,
        bool_or(com AND (icd10 IN ('I099', 'I110', 'I130', 'I132', 'I255', 'I420', 'P290') OR c4 BETWEEN 'I425' AND 'I429'
            OR c3 IN ('I43', 'I50'))) AS cc_chf,
        bool_or(com AND (c3 IN ('I70', 'I71') OR icd10 IN ('I731', 'I738', 'I739', 'I771', 'I790', 'I792', 'K551', 'K558',
            'K559', 'Z958', 'Z959'))) AS cc_pvd,
        bool_or(com AND (c3 IN ('G45', 'G46') OR icd10 = 'H340' OR c3 BETWEEN 'I60' AND 'I69')) AS cc_cvd,
        bool_or(com AND (c3 BETWEEN 'F00' AND 'F03' OR icd10 IN ('F051', 'G311') OR c3 = 'G30')) AS cc_dementia,
        bool_or(com AND (icd10 IN ('I278', 'I279', 'J684', 'J701', 'J703') OR c3 BETWEEN 'J40' AND 'J47'
            OR c3 BETWEEN 'J60' AND 'J67')) AS cc_copd,
        bool_or(com AND (c3 IN ('M05', 'M06') OR icd10 IN ('M315', 'M351', 'M353', 'M360') OR c3 BETWEEN 'M32' AND 'M34')) AS cc_rheum,
        bool_or(com AND c3 BETWEEN 'K25' AND 'K28') AS cc_ulcer,
        bool_or(com AND (c3 IN ('B18', 'K73', 'K74') OR c4 BETWEEN 'K700' AND 'K703' OR icd10 IN ('K709', 'K717', 'K760',
            'K768', 'K769', 'Z944') OR c4 BETWEEN 'K713' AND 'K715' OR c4 BETWEEN 'K762' AND 'K764')) AS cc_liver_mild,
        bool_or(com AND icd10 IN ('I850', 'I859', 'I864', 'I982', 'K704', 'K711', 'K721', 'K729', 'K765', 'K766', 'K767')) AS cc_liver_severe,
        bool_or(com AND c3 BETWEEN 'E10' AND 'E14' AND substr(icd10, 4, 1) IN ('0', '1', '6', '8', '9')) AS cc_diabetes,
        bool_or(com AND c3 BETWEEN 'E10' AND 'E14' AND substr(icd10, 4, 1) IN ('2', '3', '4', '5', '7')) AS cc_diabetes_c,
        bool_or(com AND (icd10 IN ('G041', 'G114', 'G801', 'G802', 'G839') OR c3 IN ('G81', 'G82') OR c4 BETWEEN 'G830' AND 'G834')) AS cc_hemiplegia,
        bool_or(com AND (icd10 IN ('I120', 'I131', 'N250', 'Z940', 'Z992') OR c4 BETWEEN 'N032' AND 'N037'
            OR c4 BETWEEN 'N052' AND 'N057' OR c3 IN ('N18', 'N19') OR c4 BETWEEN 'Z490' AND 'Z492')) AS cc_renal,
        bool_or(com AND (c3 BETWEEN 'B20' AND 'B22' OR c3 = 'B24')) AS cc_hiv
    FROM d GROUP BY admission_id
),
prf AS (
    SELECT p.admission_id,
        bool_or(p.proc_code IN ('K136', 'K136-2')) AS s_tumour,
        bool_or(p.proc_code IN ('K1421', 'K1422', 'K1423', 'K1424')) AS s_fusion,
        bool_or(p.proc_code IN ('K1425', 'K1426') OR starts_with(p.proc_code, 'K134')) AS s_decompression,
        bool_or(p.proc_code = 'K142-4') AS s_vertebroplasty
    FROM pr p JOIN cohort c ON p.admission_id = c.admission_id AND p.proc_date = c.surgery_date
    GROUP BY p.admission_id
),
drug AS (
    SELECT DISTINCT admission_id FROM bl
    WHERE kind = 'drug' AND code IN ('620008001', '620008002', '620008003', '620008004', '620008005', '620008006')
      AND admission_id IN (SELECT admission_id FROM cohort)
),
w AS (
    SELECT c.*, v.volume, f.*, drug.admission_id IS NOT NULL AS mt_drug, s.s_tumour, s.s_fusion, s.s_decompression, s.s_vertebroplasty,
        CASE WHEN f.p_lung THEN 'lung' WHEN f.p_breast THEN 'breast' WHEN f.p_prostate THEN 'prostate'
             WHEN f.p_kidney THEN 'kidney' WHEN f.p_liver THEN 'liver' WHEN f.p_colorectal THEN 'colorectal'
             WHEN f.p_thyroid THEN 'thyroid' WHEN f.p_stomach THEN 'stomach' WHEN f.p_oesophagus THEN 'oesophagus'
             WHEN f.p_pancreas THEN 'pancreas' WHEN f.p_myeloma_lymphoma THEN 'myeloma_lymphoma'
             WHEN f.p_uterus_ovary THEN 'uterus_ovary' WHEN f.p_head_neck THEN 'head_neck' WHEN f.p_unknown THEN 'unknown'
             WHEN f.p_any THEN 'other' ELSE 'unknown' END AS primary_site,
        date_diff('day', c.surgery_date, c.discharge_date) AS postop_los
    FROM cohort c
    LEFT JOIN vol v ON v.hospital_id = c.hospital_id AND v.fiscal_year = c.fiscal_year
    LEFT JOIN dxf f ON f.admission_id = c.admission_id
    LEFT JOIN prf s ON s.admission_id = c.admission_id
    LEFT JOIN drug ON drug.admission_id = c.admission_id
),
adl AS (
    SELECT *,
        CASE WHEN length(adl_adm) = 10 THEN
            5 * (CASE WHEN substr(adl_adm, 1, 1) BETWEEN '0' AND '2' THEN CAST(substr(adl_adm, 1, 1) AS INT) END
               + CASE WHEN substr(adl_adm, 2, 1) BETWEEN '0' AND '3' THEN CAST(substr(adl_adm, 2, 1) AS INT) END
               + CASE WHEN substr(adl_adm, 3, 1) BETWEEN '0' AND '1' THEN CAST(substr(adl_adm, 3, 1) AS INT) END
               + CASE WHEN substr(adl_adm, 4, 1) BETWEEN '0' AND '2' THEN CAST(substr(adl_adm, 4, 1) AS INT) END
               + CASE WHEN substr(adl_adm, 5, 1) BETWEEN '0' AND '1' THEN CAST(substr(adl_adm, 5, 1) AS INT) END
               + CASE WHEN substr(adl_adm, 6, 1) BETWEEN '0' AND '3' THEN CAST(substr(adl_adm, 6, 1) AS INT) END
               + CASE WHEN substr(adl_adm, 7, 1) BETWEEN '0' AND '2' THEN CAST(substr(adl_adm, 7, 1) AS INT) END
               + CASE WHEN substr(adl_adm, 8, 1) BETWEEN '0' AND '2' THEN CAST(substr(adl_adm, 8, 1) AS INT) END
               + CASE WHEN substr(adl_adm, 9, 1) BETWEEN '0' AND '2' THEN CAST(substr(adl_adm, 9, 1) AS INT) END
               + CASE WHEN substr(adl_adm, 10, 1) BETWEEN '0' AND '2' THEN CAST(substr(adl_adm, 10, 1) AS INT) END)
        END AS barthel_adm,
        CASE WHEN length(adl_adm) = 10 AND substr(adl_adm, 6, 1) BETWEEN '0' AND '3' THEN CAST(substr(adl_adm, 6, 1) AS INT) END AS walking_adm,
        CASE WHEN length(adl_dis) = 10 AND substr(adl_dis, 6, 1) BETWEEN '0' AND '3' THEN CAST(substr(adl_dis, 6, 1) AS INT) END AS walking_dis,
        CASE WHEN height_cm BETWEEN 100 AND 230 AND weight_kg BETWEEN 20 AND 250
             THEN CAST(weight_kg AS DOUBLE) / ((CAST(height_cm AS DOUBLE) / 100.0) * (CAST(height_cm AS DOUBLE) / 100.0)) END AS bmi
    FROM w
)
SELECT
    patient_id, admission_id, CAST(hospital_id AS BIGINT) AS hospital_id, CAST(fiscal_year AS BIGINT) AS fiscal_year, surgery_date,
    cancer_center, coalesce(volume, 0) AS volume, coalesce(volume, 0) / 50.0 AS volume_per50,
    CAST(age AS BIGINT) AS age,
    CASE WHEN age < 50 THEN '<50' WHEN age < 60 THEN '50-59' WHEN age < 70 THEN '60-69' WHEN age < 80 THEN '70-79' ELSE '>=80' END AS age_group,
    sex, bmi,
    CASE WHEN bmi IS NULL THEN 'missing' WHEN bmi < 18.5 THEN '<18.5' WHEN bmi < 25 THEN '18.5-24.9' WHEN bmi < 30 THEN '25.0-29.9' ELSE '>=30' END AS bmi_group,
    CAST(coalesce(cc_mi, false) AS INT) + CAST(coalesce(cc_chf, false) AS INT) + CAST(coalesce(cc_pvd, false) AS INT)
      + CAST(coalesce(cc_cvd, false) AS INT) + CAST(coalesce(cc_dementia, false) AS INT) + CAST(coalesce(cc_copd, false) AS INT)
      + CAST(coalesce(cc_rheum, false) AS INT) + CAST(coalesce(cc_ulcer, false) AS INT)
      + CASE WHEN cc_liver_severe THEN 3 WHEN cc_liver_mild THEN 1 ELSE 0 END
      + CASE WHEN cc_diabetes_c THEN 2 WHEN cc_diabetes THEN 1 ELSE 0 END
      + 2 * CAST(coalesce(cc_hemiplegia, false) AS INT) + 2 * CAST(coalesce(cc_renal, false) AS INT)
      + 6 * CAST(coalesce(cc_hiv, false) AS INT) AS charlson,
    barthel_adm,
    CASE WHEN barthel_adm IS NULL THEN 'missing' WHEN barthel_adm < 40 THEN '0-35' WHEN barthel_adm < 60 THEN '40-55'
         WHEN barthel_adm < 85 THEN '60-80' ELSE '85-100' END AS barthel_group,
    walking_adm,
    CASE WHEN jcs IS NULL THEN 'missing' WHEN jcs < 1 THEN '0' WHEN jcs < 10 THEN '1-3' WHEN jcs < 100 THEN '10-30' ELSE '100-300' END AS jcs_group,
    emergency, ambulance, primary_site,
    CASE WHEN primary_site IN ('liver', 'colorectal', 'stomach', 'oesophagus', 'pancreas', 'head_neck', 'unknown')
              OR coalesce(p_biliary, false) OR (primary_site = 'lung' AND NOT mt_drug) THEN 'rapid'
         WHEN primary_site IN ('breast', 'prostate', 'thyroid', 'myeloma_lymphoma') THEN 'slow'
         ELSE 'moderate' END AS katagiri_group,
    coalesce(visceral_mets, false) AS visceral_mets, coalesce(brain_mets, false) AS brain_mets, spinal_level,
    CASE WHEN s_tumour THEN 'tumour_resection' WHEN s_fusion THEN 'fusion' WHEN s_decompression THEN 'decompression'
         WHEN s_vertebroplasty THEN 'vertebroplasty' END AS surgery_type,
    teaching, postop_los,
    discharge_to = 'death' AND postop_los <= 30 AS death_30d,
    discharge_to = 'death' AS in_hospital_death,
    coalesce(complication, false) AS complication,
    CASE WHEN discharge_to <> 'death' THEN (walking_dis <= 1 OR walking_dis < walking_adm) END AS unfavorable_ambulatory,
    discharge_to = 'home' AS discharged_home,
    postop_los AS los_to_home,
    CASE WHEN discharge_to = 'home' THEN 1 WHEN discharge_to = 'death' THEN 2 ELSE 0 END AS los_to_home_event
FROM adl
ORDER BY patient_id, admission_id
