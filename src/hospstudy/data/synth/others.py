"""Admissions other than spinal-metastasis surgery, one fiscal year at a time: non-metastatic
spine surgery (they make up the hospitals' volumes) and background admissions (other
diagnoses, hip fracture among them) that make cohort extraction a real scan."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from hospstudy.data.synth import arrowutil as au
from hospstudy.data.synth import draws as D
from hospstudy.data.synth import params as P
from hospstudy.data.synth.billing import BillingSpec
from hospstudy.data.synth.hospitals import Hospitals

_JCS = np.array([0, 1, 2, 3, 10, 20, 30, 100, 200, 300])
_OBJ = lambda xs: np.array(list(xs), dtype=object)  # noqa: E731


def _expand_rows(counts):
    return np.repeat(np.arange(len(counts)), counts)


def _common_tables(rng, *, kind_digit: int, fy: int, hosp: Hospitals, h_idx, admit, discharge, age, male, emergency,
                   ambulance, discharge_to, bmi, walking_adm, walking_dis, jcs_p, patient_no, diag, procs):
    """Admissions, diagnoses and procedures tables for one block (shared by both generators)."""
    n = len(admit)
    adm_ids = au.id_strings("A", fy * 10**9 + kind_digit * 10**8 + np.arange(1, n + 1), 13)
    pat_ids = au.id_strings("P", D.scramble(kind_digit * 10**10 + patient_no), 11)
    height = np.where(male, rng.normal(168.0, 6.5, n), rng.normal(155.0, 6.0, n)) - 0.1 * (np.maximum(age, 20) - 65)
    child = age < 16
    height = np.where(child, 75 + 6.2 * age + rng.normal(0, 5, n), height)
    bmi = np.where(child, np.clip(rng.normal(16.5, 2.0, n), 11, 30), bmi)
    weight = bmi * (height / 100) ** 2
    miss_hw = rng.random(n) < 0.04
    jcs = _JCS[rng.choice(len(_JCS), n, p=jcs_p)]
    alive = np.asarray(discharge_to) != P_DEST["death"]
    adm = au.table("admissions", {
        "admission_id": adm_ids,
        "patient_id": pat_ids,
        "hospital_id": pa.array(hosp.ids[h_idx], pa.int32()),
        "admit_date": au.dates(admit),
        "discharge_date": au.dates(discharge),
        "age": pa.array(age.astype(np.int16), pa.int16()),
        "sex": au.vocab_take(["F", "M"], male.astype(np.int32)),
        "emergency": pa.array(emergency),
        "ambulance": pa.array(ambulance),
        "discharge_to": au.vocab_take(list(P_DEST), discharge_to_idx(discharge_to)),
        "height_cm": pa.array(np.round(height, 1).astype(np.float32), pa.float32(), mask=miss_hw),
        "weight_kg": pa.array(np.round(weight, 1).astype(np.float32), pa.float32(), mask=miss_hw),
        "jcs": pa.array(jcs.astype(np.int16), pa.int16(), mask=rng.random(n) < 0.01),
        "adl_adm": D.adl_strings(rng, walking_adm, rng.random(n) < 0.03),
        "adl_dis": D.adl_strings(rng, walking_dis, (~alive) | (rng.random(n) < 0.04)),
        "spinal_level": pa.nulls(n, pa.string()),
    })
    d_idx, d_vocab, d_code, d_role = diag
    dx = au.table("diagnoses", {
        "admission_id": au.take_fixed(adm_ids, d_idx),
        "icd10": au.vocab_take(d_vocab, d_code),
        "role": au.vocab_take(P_ROLES, d_role),
        "suspected": pa.array(np.zeros(len(d_idx), dtype=bool)),
    })
    p_idx, p_vocab, p_code, p_day = procs
    px = au.table("procedures", {
        "admission_id": au.take_fixed(adm_ids, p_idx),
        "proc_code": au.vocab_take(p_vocab, p_code),
        "proc_date": au.dates(p_day),
    })
    return adm, dx, px, adm_ids


P_DEST = {"home": 0, "other_hospital": 1, "care_facility": 2, "death": 3, "other": 4}
P_ROLES = ["main", "trigger", "resource", "comorbidity", "complication"]


def discharge_to_idx(codes: np.ndarray) -> np.ndarray:
    return np.asarray(codes, dtype=np.int32)


def _with_complications(rng, n, rate, vocab_index, vocab, rows, codes, roles):
    """Add complication-role codes to a share ``rate`` of the rows, then the diagnosis table as
    (row, vocabulary, code index, role index) sorted by row."""
    comp = np.flatnonzero(rng.random(n) < rate)
    rows.append(comp)
    codes.append(np.array([vocab_index[c] for c in P.COMPLICATION_CODES], np.int32)[D.choice(rng, P.COMPLICATION_CODES, len(comp))])
    roles.append(np.full(len(comp), 4, np.int32))
    d_idx = np.concatenate(rows)
    order = np.argsort(d_idx, kind="stable")
    return d_idx[order], vocab, np.concatenate(codes)[order], np.concatenate(roles)[order]


def _comorbidities(rng, n, prev_factor, vocab_index, rows_list, code_list, role_list):
    """Charlson-item codes as comorbidities (prevalence scaled by ``prev_factor`` per row)."""
    for item in P.CHARLSON_ITEMS.values():
        has = rng.random(n) < item["prev"] * prev_factor
        sel = np.flatnonzero(has)
        codes = item["codes"]
        rows_list.append(sel)
        code_list.append(np.array([vocab_index[c] for c in codes], np.int32)[rng.integers(0, len(codes), len(sel))])
        role_list.append(np.full(len(sel), 3, np.int32))


def _vocab(*tables) -> tuple[list[str], dict]:
    vocab: list[str] = []
    for t in tables:
        for c in t:
            if c not in vocab:
                vocab.append(c)
    return vocab, {c: i for i, c in enumerate(vocab)}


_NONMET_VOCAB, _NONMET_INDEX = _vocab(
    P.NONMET_DIAGNOSES, [c for it in P.CHARLSON_ITEMS.values() for c in it["codes"]], P.COMPLICATION_CODES,
    P.OTHER_COMPLICATION_CODES,
)
_NONMET_PROC_VOCAB = list(P.NONMET_PROCEDURES)


def nonmetastatic_spine(rng: np.random.Generator, hosp: Hospitals, j: int, with_billing: bool):
    """Non-metastatic spine-surgery admissions of fiscal-year index ``j`` (counts fixed by the
    hospitals' draw, so that the volumes the outcome model used are the volumes in the data)."""
    fy = int(hosp.years[j])
    counts = hosp.nonmet_count[:, j]
    h_idx = _expand_rows(counts)
    n = len(h_idx)
    main = D.choice(rng, P.NONMET_DIAGNOSES, n)
    main_codes = _OBJ(P.NONMET_DIAGNOSES)[main]
    fracture = np.isin(main_codes, ["S320", "S220", "M4849"])
    age = np.clip(np.rint(np.where(fracture, rng.normal(76, 10, n), rng.normal(65, 14, n))), 15, 99).astype(np.int64)
    male = rng.random(n) < np.where(fracture, 0.35, 0.58)
    emergency = rng.random(n) < np.where(fracture, 0.55, 0.04)
    ambulance = rng.random(n) < np.where(emergency, 0.45, 0.01)
    starts, length = au.fy_start(fy), au.fy_length(fy)
    admit = starts + np.floor(rng.random(n) * length).astype(np.int64)
    preop = np.where(emergency, rng.integers(0, 5, n), rng.integers(0, 3, n))
    admit = np.maximum(starts, np.minimum(admit, starts + length - 1 - preop))
    surgery = admit + preop
    postop = np.maximum(2, np.rint(rng.lognormal(np.log(13.0 * (1 - 0.015 * (fy - 2012))), 0.5, n))).astype(np.int64)
    postop = np.where(fracture, postop + 7, postop)
    r = rng.random(n)
    dest = np.where(r < 0.003, 3, np.where(r < 0.88, 0, np.where(r < 0.95, 1, np.where(r < 0.98, 2, 4))))
    discharge = surgery + postop
    walking = rng.choice(4, n, p=[0.02, 0.08, 0.30, 0.60])
    walking = np.where(fracture, rng.choice(4, n, p=[0.10, 0.30, 0.40, 0.20]), walking)
    walking_dis = np.minimum(3, walking + (rng.random(n) < 0.4))

    rows, codes, roles = [np.arange(n)], [np.array([_NONMET_INDEX[c] for c in P.NONMET_DIAGNOSES], np.int32)[main]], [np.zeros(n, np.int32)]
    _comorbidities(rng, n, 1.2, _NONMET_INDEX, rows, codes, roles)
    diag = _with_complications(rng, n, 0.03, _NONMET_INDEX, _NONMET_VOCAB, rows, codes, roles)

    proc = D.choice(rng, P.NONMET_PROCEDURES, n)
    two = np.flatnonzero(rng.random(n) < 0.01)
    p_idx = np.concatenate([np.arange(n), two])
    p_code = np.concatenate([proc, np.full(len(two), _NONMET_PROC_VOCAB.index("K1422"))])
    p_day = np.concatenate([surgery, surgery[two] + np.minimum(7, postop[two])])
    order = np.argsort(p_idx, kind="stable")
    procs = (p_idx[order], _NONMET_PROC_VOCAB, p_code[order], p_day[order])

    bmi = np.clip(rng.normal(23.5, 3.6, n), 14, 45)
    jcs_p = np.array([0.985, 0.01, 0.003, 0.001, 0.001, 0, 0, 0, 0, 0])
    adm, dx, px, ids = _common_tables(
        rng, kind_digit=2, fy=fy, hosp=hosp, h_idx=h_idx, admit=admit, discharge=discharge, age=age, male=male,
        emergency=emergency, ambulance=ambulance, discharge_to=dest, bmi=bmi, walking_adm=walking,
        walking_dis=walking_dis, jcs_p=jcs_p / jcs_p.sum(), patient_no=(fy - 1990) * 10**8 + np.arange(n), diag=diag, procs=procs,
    )
    spec = None
    if with_billing:
        spec = BillingSpec(admit=admit, discharge=discharge, surgery=surgery, drug_rate=np.full(n, 0.2),
                           rehab=rng.random(n) < 0.8, radiotherapy=np.zeros(n, np.int64),
                           transfusion=rng.random(n) < 0.03, targeted=np.zeros(n, bool))
    return adm, dx, px, ids, spec


_BG_NAMES = list(P.BACKGROUND)
_BG_VOCAB, _BG_INDEX = _vocab(
    *[c["codes"] for c in P.BACKGROUND.values()], [c for it in P.CHARLSON_ITEMS.values() for c in it["codes"]],
    P.COMPLICATION_CODES, ["C349", "C509", "C189", "C61"],
)
_BG_PROC_VOCAB, _BG_PROC_INDEX = _vocab(*[c.get("procs", {}) for c in P.BACKGROUND.values()])


def background(rng: np.random.Generator, hosp: Hospitals, j: int, n: int, with_billing: bool = True):
    """``n`` background admissions (other diagnoses) in fiscal-year index ``j``."""
    fy = int(hosp.years[j])
    cat = D.choice(rng, P.BACKGROUND, n)
    cats = list(P.BACKGROUND.values())
    f = lambda key, default=0.0: np.array([c.get(key, default) for c in cats])[cat]  # noqa: E731
    w = hosp.beds * hosp.present[:, j]
    cw = np.cumsum(w)
    h_idx = np.minimum(np.searchsorted(cw, rng.random(n) * cw[-1], side="right"), hosp.n - 1)
    age = np.clip(np.rint(rng.normal(f("age"), f("age_sd", 12.0))), 0, 105).astype(np.int64)
    male = rng.random(n) < f("male")
    emergency = rng.random(n) < f("emerg")
    ambulance = rng.random(n) < np.where(emergency, 0.4, 0.01)
    starts, length = au.fy_start(fy), au.fy_length(fy)
    admit = starts + np.floor(rng.random(n) * length).astype(np.int64)
    los = np.maximum(1, np.rint(rng.lognormal(np.log(f("los")), 0.6))).astype(np.int64)
    discharge = admit + los
    dead = rng.random(n) < f("death")
    # Patients: most admissions are a new patient; some are readmissions, 7-66 days after the
    # discharge of an earlier admission of the same category this year (same patient number,
    # sex and age; one readmission per source; never after a death; stays never overlap).
    patient_no = (fy - 1990) * 10**8 + np.arange(n)
    re = np.flatnonzero(rng.random(n) < 0.15)
    if len(re):
        order_cat = np.argsort(cat, kind="stable")
        start = np.searchsorted(cat[order_cat], cat[re], side="left")
        end = np.searchsorted(cat[order_cat], cat[re], side="right")
        src = order_cat[start + np.floor(rng.random(len(re)) * (end - start)).astype(np.int64)]
        is_re = np.zeros(n, bool)
        is_re[re] = True
        new_admit = discharge[src] + 7 + rng.integers(0, 60, len(re))
        ok = (~is_re[src]) & (~dead[src]) & (new_admit < starts + length)
        re, src, new_admit = re[ok], src[ok], new_admit[ok]
        _, first = np.unique(src, return_index=True)
        re, src, new_admit = re[first], src[first], new_admit[first]
        patient_no[re] = patient_no[src]
        male[re] = male[src]
        age[re] = age[src]
        admit[re] = new_admit
        discharge[re] = admit[re] + los[re]

    hip = cat == _BG_NAMES.index("hip_fracture")
    stroke = cat == _BG_NAMES.index("stroke")
    p_home = np.where(hip, 0.35, np.where(stroke, 0.5, 0.88))
    r = rng.random(n)
    dest = np.where(dead, 3, np.where(r < p_home, 0, np.where(r < p_home + (1 - p_home) * 0.5, 1, np.where(r < p_home + (1 - p_home) * 0.85, 2, 4))))
    p_ind = np.clip(1.35 - age / 100, 0.15, 0.95)
    walking = np.where(rng.random(n) < p_ind, 3, rng.integers(0, 3, n))
    walking = np.where(hip, rng.choice(4, n, p=[0.45, 0.45, 0.08, 0.02]), walking)
    walking = np.where(age < 2, 0, walking)
    walking_dis = np.where(hip, np.minimum(3, walking + rng.integers(0, 3, n)), walking)

    # Diagnoses: the category's main code, comorbidities (more with age), a few complications.
    main = np.empty(n, np.int32)
    for k, c in enumerate(cats):
        sel = np.flatnonzero(cat == k)
        main[sel] = np.array([_BG_INDEX[x] for x in c["codes"]], np.int32)[D.choice(rng, c["codes"], len(sel))]
    rows, codes, roles = [np.arange(n)], [main], [np.zeros(n, np.int32)]
    _comorbidities(rng, n, np.clip(age / 60.0, 0.05, 1.8), _BG_INDEX, rows, codes, roles)
    nonsurg_mets = np.flatnonzero(cat == _BG_NAMES.index("spinal_metastasis_nonsurgical"))
    rows.append(nonsurg_mets)
    codes.append(np.array([_BG_INDEX[c] for c in ("C349", "C509", "C189", "C61")], np.int32)[rng.integers(0, 4, len(nonsurg_mets))])
    roles.append(np.full(len(nonsurg_mets), 3, np.int32))
    diag = _with_complications(rng, n, 0.02, _BG_INDEX, _BG_VOCAB, rows, codes, roles)

    # Procedures of surgical categories.
    p_rows, p_codes = [], []
    for k, c in enumerate(cats):
        procs = c.get("procs")
        if not procs:
            continue
        sel = np.flatnonzero(cat == k)
        probs = np.array(list(procs.values()))
        pick = rng.choice(len(probs) + 1, len(sel), p=np.append(probs, max(0.0, 1 - probs.sum())) / max(1.0, probs.sum()))
        has = pick < len(probs)
        p_rows.append(sel[has])
        p_codes.append(np.array([_BG_PROC_INDEX[x] for x in procs], np.int32)[pick[has]])
    p_idx = np.concatenate(p_rows) if p_rows else np.zeros(0, np.int64)
    p_code = np.concatenate(p_codes) if p_codes else np.zeros(0, np.int32)
    p_day = admit[p_idx] + np.minimum(rng.integers(0, 3, len(p_idx)), los[p_idx])
    order = np.argsort(p_idx, kind="stable")
    p_idx, p_code, p_day = p_idx[order], p_code[order], p_day[order]
    surgery = np.full(n, -1, np.int64)
    surgery[p_idx] = p_day

    bmi = np.clip(rng.normal(22.5, 3.8, n), 12, 50)
    jcs_p = np.array([0.9, 0.04, 0.02, 0.01, 0.012, 0.008, 0.005, 0.003, 0.001, 0.001])
    adm, dx, px, ids = _common_tables(
        rng, kind_digit=3, fy=fy, hosp=hosp, h_idx=h_idx, admit=admit, discharge=discharge, age=age, male=male,
        emergency=emergency, ambulance=ambulance, discharge_to=dest, bmi=bmi, walking_adm=walking,
        walking_dis=walking_dis, jcs_p=jcs_p / jcs_p.sum(), patient_no=patient_no, diag=diag,
        procs=(p_idx, _BG_PROC_VOCAB, p_code, p_day),
    )
    spec = None
    if with_billing:
        targeted = rng.random(n) < f("targeted")
        radio = np.where(rng.random(n) < f("radiotherapy"), rng.integers(5, 11, n), 0)
        spec = BillingSpec(admit=admit, discharge=discharge, surgery=surgery, drug_rate=np.full(n, 0.2),
                           rehab=hip | stroke | (rng.random(n) < 0.1), radiotherapy=radio,
                           transfusion=(surgery >= 0) & (rng.random(n) < 0.05), targeted=targeted)
    return adm, dx, px, ids, spec
