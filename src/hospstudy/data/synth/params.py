"""Parameters of the synthetic database: calibration targets, planted effects, code tables.

Everything the data-generating model uses is declared here as data, so that ``truth.json``
can hold all of it and ``--effects FILE.toml`` can override the planted effects (and the
calibration targets) with one validation rule per key. docs/synthetic.md explains each value
and its source.
"""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any, Mapping

from hospstudy.errors import InputError

# ---------------------------------------------------------------------------------------------
# Calibration targets (scale 1, fiscal years 2012-2020): reference/published.toml
# ---------------------------------------------------------------------------------------------
TARGETS: dict[str, float] = {
    "patients": 10320,  # flagship cohort after its exclusions (institutional-function paper)
    "surgeries_first_year": 877,  # FY2012 (trends paper)
    "surgeries_last_year": 1479,  # FY2020
    "cancer_center_share": 0.51,  # 5261 / 10320
    "mortality_30d": 0.062,
    "in_hospital_mortality": 0.086,
    "in_hospital_mortality_first_year": 0.099,
    "in_hospital_mortality_last_year": 0.068,
    "complications": 0.078,
    "discharged_home": 0.584,
    "unfavorable_ambulatory": 0.394,
    "median_postop_los": 33.0,
    "median_postop_los_first_year": 37.0,
    "median_postop_los_last_year": 30.0,
    "fusion_share_first_year": 0.84,
    "fusion_share_last_year": 0.87,
    "non_metastatic_spine_admissions": 473391,
    "background_admissions": 1200000,
    "hospitals": 1700,
    "cancer_centers": 395,  # designated in the first fiscal year; a few gain/lose later
}

# The published trends run over FY2012-2020; curves are indexed by t = (FY - 2012) / 8, clipped.
CURVE_FIRST, CURVE_LAST = 2012, 2020

# ---------------------------------------------------------------------------------------------
# Planted effects, one table per outcome (names as in the flagship study). Odds ratios (_or)
# act on the log-odds, hazard ratios (_hr) on the log-hazard; ``hospital_sd`` is the SD of the
# hospital random intercept on that scale. Covariates: male, emergency admission, Katagiri
# rapid/moderate growth (slow = reference), visceral or brain metastasis, age per 10 years
# (centred at 65), Charlson score (Quan ICD-10 codes, cancer items excluded), non-ambulatory
# at admission (walking level <= 1), fusion surgery, postoperative complication.
# ---------------------------------------------------------------------------------------------
EFFECTS: dict[str, dict[str, float]] = {
    "death_30d": {
        "cancer_center_or": 0.841,
        "volume_per50_or": 0.958,
        "male_or": 2.50,
        "emergency_or": 1.80,
        "rapid_growth_or": 3.83,
        "moderate_growth_or": 1.60,
        "visceral_mets_or": 2.27,
        "age_per10_or": 1.15,
        "charlson_per1_or": 1.10,
        "nonambulatory_adm_or": 1.50,
        "hospital_sd": 0.30,
    },
    # Death in hospital after day 30 among those alive on day 30; in-hospital death is
    # death_30d OR this late death.
    "in_hospital_death": {
        "cancer_center_or": 0.841,
        "volume_per50_or": 0.958,
        "male_or": 1.60,
        "emergency_or": 1.40,
        "rapid_growth_or": 2.50,
        "moderate_growth_or": 1.40,
        "visceral_mets_or": 1.80,
        "age_per10_or": 1.15,
        "charlson_per1_or": 1.10,
        "nonambulatory_adm_or": 1.50,
        "hospital_sd": 0.30,
    },
    "complication": {
        "cancer_center_or": 1.0,
        "volume_per50_or": 1.0,
        "male_or": 1.20,
        "emergency_or": 1.30,
        "age_per10_or": 1.15,
        "charlson_per1_or": 1.12,
        "fusion_or": 1.60,
        "hospital_sd": 0.40,
    },
    # Among patients discharged alive.
    "unfavorable_ambulatory": {
        "cancer_center_or": 1.0,
        "volume_per50_or": 1.0,
        "age_per10_or": 1.25,
        "emergency_or": 1.60,
        "rapid_growth_or": 1.40,
        "nonambulatory_adm_or": 8.0,
        "complication_or": 1.80,
        "hospital_sd": 0.30,
    },
    # Time from surgery to discharge of patients discharged alive (Weibull proportional hazards).
    "los_to_home": {
        "cancer_center_hr": 1.0,
        "volume_per50_hr": 1.0,
        "age_per10_hr": 0.92,
        "emergency_hr": 0.90,
        "nonambulatory_adm_hr": 0.75,
        "complication_hr": 0.60,
        "hospital_sd": 0.25,
        "weibull_shape": 1.6,
    },
    # Destination home (vs other hospital, care facility, other) among patients discharged alive.
    "discharged_home": {
        "cancer_center_or": 1.0,
        "volume_per50_or": 1.0,
        "age_per10_or": 0.75,
        "unfavorable_ambulatory_or": 0.25,
        "hospital_sd": 0.40,
    },
    # Which patients go to a cancer center (confounding by case mix; the share is solved).
    "cancer_center_allocation": {
        "visceral_mets_or": 1.35,
        "lung_or": 1.30,
        "breast_or": 1.25,
        "emergency_or": 0.75,
        "age_per10_or": 0.90,
    },
}

# ---------------------------------------------------------------------------------------------
# Code tables (shared with the flagship study file: the strings must be exactly these).
# ---------------------------------------------------------------------------------------------
FUSION_CODES = {"K1421": 0.08, "K1422": 0.72, "K1423": 0.08, "K1424": 0.12}
DECOMPRESSION_CODES = {"K1425": 0.70, "K1426": 0.30}
VERTEBROPLASTY_CODES = {"K142-4": 1.0}
TUMOUR_RESECTION_CODES = {"K136": 0.80, "K136-2": 0.20}
DEGENERATIVE_ONLY_CODES = ("K1341", "K1342", "K134-2")
SPINE_SURGERY_CODES = (
    "K1421", "K1422", "K1423", "K1424", "K1425", "K1426", "K142-4", "K136", "K136-2",
    "K1341", "K1342", "K134-2",
)
# Non-fusion metastatic surgery split (the fusion share follows the yearly curve).
NONFUSION_TYPES = {"decompression": 0.55, "vertebroplasty": 0.25, "tumour_resection": 0.20}

# Non-metastatic spine surgery: procedure mix and diagnoses.
NONMET_PROCEDURES = {
    "K1422": 0.20, "K1423": 0.14, "K1425": 0.16, "K1426": 0.10, "K1342": 0.14, "K1341": 0.02,
    "K134-2": 0.08, "K142-4": 0.09, "K1421": 0.04, "K1424": 0.03,
}
NONMET_DIAGNOSES = {
    "M480": 0.30, "M511": 0.20, "M472": 0.06, "M4782": 0.04, "M4306": 0.14, "S320": 0.07,
    "S220": 0.04, "M4849": 0.15,
}

# Primary tumour of metastatic patients: label, Katagiri group, share, P(male), ICD-10 codes.
# Lung is 'moderate' only with a molecular-targeted drug billed (decided per patient).
PRIMARY_SITES: dict[str, dict[str, Any]] = {
    "lung": {"share": 0.27, "male": 0.68, "growth": "rapid", "codes": ["C349", "C341", "C343"]},
    "breast": {"share": 0.11, "male": 0.01, "growth": "slow", "codes": ["C509", "C504"]},
    "prostate": {"share": 0.09, "male": 1.0, "growth": "slow", "codes": ["C61"]},
    "kidney": {"share": 0.08, "male": 0.72, "growth": "moderate", "codes": ["C64"]},
    "liver": {"share": 0.06, "male": 0.78, "growth": "rapid", "codes": ["C220", "C221"]},
    "colorectal": {"share": 0.06, "male": 0.62, "growth": "rapid", "codes": ["C189", "C187", "C19", "C20"]},
    "thyroid": {"share": 0.03, "male": 0.35, "growth": "slow", "codes": ["C73"]},
    "stomach": {"share": 0.03, "male": 0.72, "growth": "rapid", "codes": ["C169"]},
    "oesophagus": {"share": 0.02, "male": 0.85, "growth": "rapid", "codes": ["C159"]},
    "pancreas": {"share": 0.02, "male": 0.58, "growth": "rapid", "codes": ["C259"]},
    "myeloma_lymphoma": {"share": 0.09, "male": 0.58, "growth": "slow", "codes": ["C900", "C833", "C859", "C810"]},
    "uterus_ovary": {"share": 0.025, "male": 0.0, "growth": "moderate", "codes": ["C539", "C541", "C56"]},
    "head_neck": {"share": 0.02, "male": 0.75, "growth": "rapid", "codes": ["C029", "C109", "C119", "C01"]},
    "unknown": {"share": 0.06, "male": 0.58, "growth": "rapid", "codes": ["C809"]},
    "other": {"share": 0.025, "male": 0.65, "growth": "moderate", "codes": ["C679", "C439", "C499"]},
    # Label 'other' but rapid (gallbladder/biliary C23-C24).
    "other_biliary": {"share": 0.01, "male": 0.55, "growth": "rapid", "codes": ["C23", "C240"], "label": "other"},
}
TARGETED_DRUGS = {
    "620008001": "gefitinib", "620008002": "erlotinib", "620008003": "afatinib",
    "620008004": "osimertinib", "620008005": "alectinib", "620008006": "crizotinib",
}
P_TARGETED_DRUG_LUNG = 0.35  # lung-cancer patients with a targeted drug billed during the stay

VISCERAL_CODES = {"C780": 0.45, "C787": 0.30, "C782": 0.10, "C786": 0.08, "C781": 0.05, "C788": 0.02}
BRAIN_CODE = "C793"
P_VISCERAL, P_BRAIN = 0.26, 0.06

# Charlson items (Quan 2005 ICD-10 coding), original Charlson weights, prevalence among
# metastatic surgical patients; cancer items are not drawn here (every patient has them).
CHARLSON_ITEMS: dict[str, dict[str, Any]] = {
    "mi": {"weight": 1, "prev": 0.03, "codes": ["I219", "I252"]},
    "chf": {"weight": 1, "prev": 0.04, "codes": ["I500", "I509"]},
    "pvd": {"weight": 1, "prev": 0.02, "codes": ["I702", "I739"]},
    "cvd": {"weight": 1, "prev": 0.05, "codes": ["I639", "G459"]},
    "dementia": {"weight": 1, "prev": 0.02, "codes": ["F03", "G309"]},
    "copd": {"weight": 1, "prev": 0.04, "codes": ["J449", "J439"]},
    "rheum": {"weight": 1, "prev": 0.015, "codes": ["M069", "M059"]},
    "ulcer": {"weight": 1, "prev": 0.02, "codes": ["K259", "K269"]},
    "liver_mild": {"weight": 1, "prev": 0.03, "codes": ["K746", "K703", "K732"]},
    "diabetes": {"weight": 1, "prev": 0.14, "codes": ["E119", "E149"]},
    "diabetes_compl": {"weight": 2, "prev": 0.03, "codes": ["E112", "E102"]},
    "hemiplegia": {"weight": 2, "prev": 0.04, "codes": ["G822", "G819"]},
    "renal": {"weight": 2, "prev": 0.03, "codes": ["N189", "N19"]},
    "liver_severe": {"weight": 3, "prev": 0.005, "codes": ["K729", "I850"]},
    "hiv": {"weight": 6, "prev": 0.0005, "codes": ["B24"]},
}

# Postoperative complications (role 'complication'): the flagship list, with relative frequency.
COMPLICATION_CODES = {
    "T814": 0.20, "J189": 0.10, "J159": 0.04, "F059": 0.14, "N390": 0.10, "I802": 0.06,
    "I829": 0.03, "I269": 0.05, "T810": 0.05, "T813": 0.04, "A419": 0.04, "G960": 0.04,
    "K567": 0.03, "I639": 0.02, "I619": 0.01, "I219": 0.02,
}
FLAGSHIP_COMPLICATION_PREFIXES = (
    "T814", "T813", "T810", "J12", "J13", "J14", "J15", "J16", "J17", "J18", "I26", "I80", "I81",
    "I82", "N390", "A40", "A41", "I21", "I60", "I61", "I62", "I63", "I64", "F05", "K56", "G960",
)
# Complication-role codes the flagship does not count.
OTHER_COMPLICATION_CODES = {"L899": 0.6, "E86": 0.25, "D62": 0.15}
P_OTHER_COMPLICATION = 0.04

SPINAL_LEVEL_SHARES = {"thoracic": 0.45, "lumbar": 0.25, "cervical": 0.12, "sacral": 0.03, "multiple": 0.15}
REGIONS = {
    "Hokkaido": 0.045, "Tohoku": 0.07, "Kanto": 0.34, "Chubu": 0.17, "Kinki": 0.18,
    "Chugoku": 0.06, "Shikoku": 0.03, "Kyushu": 0.105,
}

# Hospital spine-surgery activity (expected admissions with spine surgery per year, before the
# normalisation that makes the national total hit its target).
HOSPITAL_TYPES = {
    "cc_spine_active": {"p_of_cc": 0.25, "dist": "normal", "mean": 155.0, "sd": 28.0, "min": 70.0},
    "cc_other": {"dist": "lognormal", "median": 8.0, "sigma": 0.9},
    "spine_specialist": {"p_of_noncc": 0.10, "dist": "lognormal", "median": 98.0, "sigma": 0.35},
    "general": {"dist": "lognormal", "median": 5.0, "sigma": 1.1, "p_none": 0.20},
}
SPINE_GROWTH_PER_YEAR = 0.02  # non-metastatic spine surgery grows 2 %/year (relative to 2012)
P_HOSPITAL_LATE_ENTRY = 0.12  # non-cancer-center hospitals joining DPC after the first year
CC_GAIN_PER_YEAR = 4.0  # expected designations gained per year at scale 1
CC_LOSS_PER_YEAR = 2.0

# Extra metastatic-like admissions so that the cohort rules matter (counts at scale 1).
N_MINORS = 8  # under 18 with C795 and spine surgery
N_C795_COMPLICATION_ONLY = 40  # spine surgery, C795 only as a complication
P_SECOND_ADMISSION = 0.025  # of index patients discharged alive: a second metastatic surgery
P_TWO_SURGERIES = 0.03  # a second spine surgery within the index admission

# Background admissions (other diagnoses): category, share, main ICD-10 codes, K-codes.
BACKGROUND: dict[str, dict[str, Any]] = {
    "pneumonia": {"share": 0.10, "codes": {"J189": 0.6, "J159": 0.2, "J690": 0.2}, "los": 14, "age": 78, "male": 0.58, "death": 0.07, "emerg": 0.8},
    "heart_failure": {"share": 0.07, "codes": {"I500": 0.7, "I509": 0.3}, "los": 17, "age": 82, "male": 0.48, "death": 0.06, "emerg": 0.75},
    "stroke": {"share": 0.07, "codes": {"I633": 0.5, "I634": 0.3, "I619": 0.2}, "los": 20, "age": 75, "male": 0.55, "death": 0.05, "emerg": 0.9},
    "hip_fracture": {"share": 0.089, "codes": {"S720": 0.45, "S721": 0.45, "S722": 0.10}, "procs": {"K0461": 0.55, "K0811": 0.35}, "los": 30, "age": 84, "male": 0.22, "death": 0.02, "emerg": 0.85},
    "cataract": {"share": 0.07, "codes": {"H251": 1.0}, "procs": {"K2821": 1.0}, "los": 3, "age": 74, "male": 0.42, "death": 0.0, "emerg": 0.0},
    "colorectal_cancer": {"share": 0.05, "codes": {"C189": 0.5, "C187": 0.3, "C20": 0.2}, "procs": {"K7193": 0.7}, "los": 14, "age": 70, "male": 0.58, "death": 0.005, "emerg": 0.05},
    "lung_cancer": {"share": 0.06, "codes": {"C341": 0.5, "C343": 0.5}, "los": 8, "age": 70, "male": 0.68, "death": 0.01, "emerg": 0.05, "targeted": 0.30},
    "stomach_cancer": {"share": 0.03, "codes": {"C169": 1.0}, "procs": {"K6552": 0.6}, "los": 14, "age": 72, "male": 0.70, "death": 0.005, "emerg": 0.03},
    "myocardial_infarction": {"share": 0.03, "codes": {"I214": 1.0}, "procs": {"K5491": 0.8}, "los": 12, "age": 70, "male": 0.72, "death": 0.05, "emerg": 0.95},
    "appendicitis": {"share": 0.03, "codes": {"K359": 1.0}, "procs": {"K7181": 0.7}, "los": 6, "age": 40, "age_sd": 20, "male": 0.55, "death": 0.0, "emerg": 0.9},
    "cholecystitis": {"share": 0.04, "codes": {"K802": 0.5, "K810": 0.5}, "procs": {"K672": 0.6}, "los": 8, "age": 65, "male": 0.55, "death": 0.005, "emerg": 0.5},
    "diabetes": {"share": 0.04, "codes": {"E119": 0.7, "E112": 0.3}, "los": 14, "age": 65, "male": 0.60, "death": 0.005, "emerg": 0.2},
    "copd": {"share": 0.03, "codes": {"J441": 1.0}, "los": 14, "age": 76, "male": 0.80, "death": 0.03, "emerg": 0.7},
    "urinary_infection": {"share": 0.04, "codes": {"N390": 0.6, "N10": 0.4}, "los": 12, "age": 78, "male": 0.35, "death": 0.02, "emerg": 0.7},
    "breast_cancer": {"share": 0.03, "codes": {"C504": 1.0}, "procs": {"K4762": 0.8}, "los": 8, "age": 58, "male": 0.01, "death": 0.0, "emerg": 0.0},
    "knee_osteoarthritis": {"share": 0.04, "codes": {"M170": 1.0}, "procs": {"K0821": 0.9}, "los": 21, "age": 74, "male": 0.25, "death": 0.0, "emerg": 0.0},
    "gastroenteritis": {"share": 0.03, "codes": {"A09": 1.0}, "los": 5, "age": 45, "age_sd": 25, "male": 0.5, "death": 0.0, "emerg": 0.8},
    "childbirth": {"share": 0.04, "codes": {"O800": 0.6, "O342": 0.4}, "procs": {"K8981": 0.35}, "los": 7, "age": 32, "age_sd": 5, "male": 0.0, "death": 0.0, "emerg": 0.3},
    "paediatric_respiratory": {"share": 0.04, "codes": {"J459": 0.5, "J219": 0.5}, "los": 5, "age": 4, "age_sd": 3, "male": 0.55, "death": 0.0, "emerg": 0.8},
    "spinal_metastasis_nonsurgical": {"share": 0.006, "codes": {"C795": 1.0}, "los": 18, "age": 67, "male": 0.6, "death": 0.10, "emerg": 0.4, "radiotherapy": 0.8},
    "haematological_cancer": {"share": 0.03, "codes": {"C900": 0.5, "C833": 0.5}, "los": 20, "age": 68, "male": 0.56, "death": 0.04, "emerg": 0.2},
    "gi_bleeding": {"share": 0.03, "codes": {"K922": 1.0}, "los": 10, "age": 72, "male": 0.6, "death": 0.03, "emerg": 0.9},
    "cellulitis": {"share": 0.02, "codes": {"L031": 1.0}, "los": 12, "age": 70, "male": 0.5, "death": 0.005, "emerg": 0.6},
    "ileus": {"share": 0.03, "codes": {"K566": 1.0}, "los": 12, "age": 75, "male": 0.55, "death": 0.02, "emerg": 0.9},
    "inguinal_hernia": {"share": 0.03, "codes": {"K409": 1.0}, "procs": {"K6335": 0.95}, "los": 4, "age": 65, "male": 0.9, "death": 0.0, "emerg": 0.05},
}

# Billing (EF) placeholder receipt codes. A real study never reads these except the targeted
# drugs; they exist so that a cohort query scans a realistically large table.
BILLING_DAILY_FEE = "190077410"
BILLING_REHAB_CODES = ("180027410", "180027510")
BILLING_RADIOTHERAPY_CODES = ("180019010", "180019110")
BILLING_TRANSFUSION_CODES = ("150268010",)
BILLING_SURGERY_CODE = "150000110"  # the surgical fee line on the day of a K-code procedure
N_DRUG_CODES = 400  # placeholder drug receipt codes 610000001...


def defaults() -> dict[str, dict[str, float]]:
    """A fresh copy of the overridable parameters: every effect table plus ``targets``."""
    d = copy.deepcopy(EFFECTS)
    d["targets"] = dict(TARGETS)
    return d


_RATE_TARGETS = {
    "cancer_center_share", "mortality_30d", "in_hospital_mortality", "in_hospital_mortality_first_year",
    "in_hospital_mortality_last_year", "complications", "discharged_home", "unfavorable_ambulatory",
    "fusion_share_first_year", "fusion_share_last_year",
}


def resolve_effects(effects: str | Path | Mapping | None) -> dict[str, dict[str, float]]:
    """Merge overrides (a TOML file or a dict of tables) into the defaults and validate them.

    Parameters
    ----------
    effects
        ``None`` (defaults), a path to a TOML file, or a mapping ``{table: {key: value}}``.
        Tables are the outcome names of :data:`EFFECTS` plus ``targets``.

    Returns
    -------
    dict
        The full parameter set (defaults with the overrides applied).

    Raises
    ------
    InputError
        Naming the file, table and key, and what is allowed, for every problem at once.
    """
    params = defaults()
    if effects is None:
        return params
    where = "effects"
    if isinstance(effects, (str, Path)):
        path = Path(effects)
        where = str(path)
        try:
            overrides = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: effects file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: not valid TOML ({e})") from None
    elif isinstance(effects, Mapping):
        overrides = effects
    else:
        raise InputError(f"effects must be a TOML file path or a dict of tables, got {type(effects).__name__}")

    problems: list[str] = []
    for table, values in overrides.items():
        if table not in params:
            problems.append(f"unknown table '{table}'; allowed tables: {', '.join(sorted(params))}")
            continue
        if not isinstance(values, Mapping):
            problems.append(f"{table}: must be a table of key = number")
            continue
        for key, value in values.items():
            if key not in params[table]:
                problems.append(f"{table}.{key}: unknown key; allowed in {table}: {', '.join(params[table])}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                problems.append(f"{table}.{key}: must be a finite number, got {value!r}")
                continue
            rule = _rule(table, key)
            if rule == "positive" and value <= 0:
                problems.append(f"{table}.{key}: must be > 0 (a ratio), got {value!r}")
            elif rule == "nonneg" and value < 0:
                problems.append(f"{table}.{key}: must be >= 0, got {value!r}")
            elif rule == "rate" and not 0 < value < 1:
                problems.append(f"{table}.{key}: must be a proportion strictly between 0 and 1, got {value!r}")
            else:
                params[table][key] = float(value)
    if problems:
        raise InputError(f"{where}: " + "; ".join(problems) + " (see docs/synthetic.md, 'Overriding effects')")
    return params


def _rule(table: str, key: str) -> str:
    if table == "targets":
        return "rate" if key in _RATE_TARGETS else "positive"
    if key == "hospital_sd":
        return "nonneg"
    return "positive"
