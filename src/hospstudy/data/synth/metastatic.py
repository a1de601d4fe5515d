"""Admissions with surgery for spinal metastasis: covariates, hospital allocation, and the
outcome model with hospital random intercepts (docs/synthetic.md, "Outcome model")."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from hospstudy.data.synth import arrowutil as au
from hospstudy.data.synth import draws as D
from hospstudy.data.synth import params as P
from hospstudy.data.synth.hospitals import Hospitals

# Kinds of metastatic-like surgical admissions.
INDEX, MINOR, C795_COMPLICATION_ONLY, SECOND = 0, 1, 2, 3

SITE_NAMES = list(P.PRIMARY_SITES)
SITE_LABEL = np.array([v.get("label", k) for k, v in P.PRIMARY_SITES.items()])
_GROWTH = np.array([v["growth"] for v in P.PRIMARY_SITES.values()])
_WALKING_P = np.array([0.25, 0.20, 0.25, 0.30])  # walking level 0..3 at admission
_JCS = np.array([0, 1, 2, 3, 10, 20, 30, 100, 200, 300])
_JCS_P = np.array([0.93, 0.04, 0.015, 0.007, 0.005, 0.002, 0.001, 0.0, 0.0, 0.0])
NOT_HOME = {"other_hospital": 0.55, "care_facility": 0.30, "other": 0.15}


@dataclass
class Met:
    """Column arrays of metastatic-like surgical admissions (one element per admission)."""

    kind: np.ndarray
    patient: np.ndarray  # patient number (index into patients)
    year_idx: np.ndarray
    hosp: np.ndarray  # hospital index
    age: np.ndarray
    male: np.ndarray
    site: np.ndarray
    primary_code: np.ndarray  # index into the site's code list
    targeted: np.ndarray
    visceral: np.ndarray
    visceral_code: np.ndarray
    brain: np.ndarray
    charlson_items: np.ndarray  # (n, items) bool
    charlson: np.ndarray
    walking_adm: np.ndarray
    emergency: np.ndarray
    ambulance: np.ndarray
    jcs: np.ndarray
    bmi: np.ndarray
    height: np.ndarray
    spinal_level: np.ndarray
    surgery_type: np.ndarray  # 'fusion', 'decompression', 'vertebroplasty', 'tumour_resection'
    surgery_code: np.ndarray  # K-code string
    admit: np.ndarray  # day numbers
    preop: np.ndarray
    cc: np.ndarray = field(default=None)
    volume: np.ndarray = field(default=None)
    out: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.kind)

    def subset(self, idx) -> "Met":
        kw = {}
        for k, v in self.__dict__.items():
            if k == "out":
                kw[k] = {ok: ov[idx] for ok, ov in v.items()}
            elif v is None:
                kw[k] = None
            else:
                kw[k] = v[idx]
        return Met(**kw)

    @staticmethod
    def concat(a: "Met", b: "Met") -> "Met":
        kw = {}
        for k, v in a.__dict__.items():
            if k == "out":
                kw[k] = {ok: np.concatenate([ov, b.out[ok]]) for ok, ov in v.items()}
            elif v is None:
                kw[k] = None
            else:
                kw[k] = np.concatenate([v, getattr(b, k)])
        return Met(**kw)


def year_counts(years: np.ndarray, scale: float, tg: dict) -> tuple[np.ndarray, np.ndarray]:
    """Index patients per fiscal year: geometric growth from the first- to the last-year figure,
    normalised so that FY2012-2020 hold ``patients`` x scale. Returns (counts, expected)."""
    span = P.CURVE_LAST - P.CURVE_FIRST
    r = (tg["surgeries_last_year"] / tg["surgeries_first_year"]) ** (1 / span)
    ref = tg["surgeries_first_year"] * r ** np.arange(span + 1)
    factor = tg["patients"] / ref.sum()
    expected = tg["surgeries_first_year"] * r ** (years - P.CURVE_FIRST) * factor * scale
    return np.rint(expected).astype(np.int64), expected


def yearly_curves(years: np.ndarray, tg: dict) -> dict:
    """Per-year targets (in-hospital and 30-day death, median postoperative stay, fusion share)."""
    span = P.CURVE_LAST - P.CURVE_FIRST
    ref_years = np.arange(P.CURVE_FIRST, P.CURVE_LAST + 1)
    _, w = year_counts(ref_years, 1.0, tg)
    t_ref = (ref_years - P.CURVE_FIRST) / span
    p_death = D.curve_exponent(tg["in_hospital_mortality_first_year"], tg["in_hospital_mortality_last_year"], tg["in_hospital_mortality"], w, t_ref)
    p_los = D.curve_exponent(tg["median_postop_los_first_year"], tg["median_postop_los_last_year"], tg["median_postop_los"], w, t_ref)
    t = np.clip((years - P.CURVE_FIRST) / span, 0, 1)
    inhosp = tg["in_hospital_mortality_first_year"] - (tg["in_hospital_mortality_first_year"] - tg["in_hospital_mortality_last_year"]) * t**p_death
    d30 = inhosp * tg["mortality_30d"] / tg["in_hospital_mortality"]
    late = (inhosp - d30) / (1 - d30)
    los = tg["median_postop_los_first_year"] - (tg["median_postop_los_first_year"] - tg["median_postop_los_last_year"]) * t**p_los
    fusion = tg["fusion_share_first_year"] + (tg["fusion_share_last_year"] - tg["fusion_share_first_year"]) * t
    return {
        "exponent_in_hospital_death": p_death, "exponent_postop_los": p_los,
        "in_hospital_death": inhosp, "death_30d": d30, "late_death_given_alive_day30": late,
        "median_postop_los": los, "fusion_share": fusion,
    }


def _codes_of(table: dict, idx: np.ndarray) -> np.ndarray:
    return np.array(list(table), dtype=object)[idx]


def draw_covariates(rng: np.random.Generator, kind: np.ndarray, year_idx: np.ndarray, fusion_share: np.ndarray) -> dict:
    n = len(kind)
    site = D.choice(rng, P.PRIMARY_SITES, n)
    male_p = np.array([v["male"] for v in P.PRIMARY_SITES.values()])[site]
    male = rng.random(n) < male_p
    age = np.clip(np.rint(rng.normal(66.0, 11.0, n)), 18, 95)
    minors = kind == MINOR
    age[minors] = rng.integers(10, 18, minors.sum())
    n_codes = np.array([len(v["codes"]) for v in P.PRIMARY_SITES.values()])
    primary_code = np.floor(rng.random(n) * n_codes[site]).astype(np.int64)
    is_lung = np.array(SITE_NAMES)[site] == "lung"
    targeted = is_lung & (rng.random(n) < P.P_TARGETED_DRUG_LUNG)
    visceral = rng.random(n) < P.P_VISCERAL
    visceral_code = D.choice(rng, P.VISCERAL_CODES, n)
    brain = rng.random(n) < np.where(is_lung, 2 * P.P_BRAIN, P.P_BRAIN)

    walking = rng.choice(4, n, p=_WALKING_P)
    emergency = rng.random(n) < np.where(walking <= 1, 0.45, 0.12)
    ambulance = rng.random(n) < np.where(emergency, 0.55, 0.02)
    jcs = _JCS[rng.choice(len(_JCS), n, p=_JCS_P / _JCS_P.sum())]

    items = list(P.CHARLSON_ITEMS)
    prev = np.array([v["prev"] for v in P.CHARLSON_ITEMS.values()])
    ch = rng.random((n, len(items))) < prev[None, :]
    hemi = items.index("hemiplegia")
    ch[:, hemi] |= (walking == 0) & (rng.random(n) < 0.10)
    ch[:, items.index("diabetes")] &= ~ch[:, items.index("diabetes_compl")]
    ch[:, items.index("liver_mild")] &= ~ch[:, items.index("liver_severe")]
    weights = np.array([v["weight"] for v in P.CHARLSON_ITEMS.values()])
    charlson = (ch * weights[None, :]).sum(axis=1)

    bmi = np.clip(rng.normal(21.5, 3.5, n), 13.0, 40.0)
    height = np.where(male, rng.normal(167.0, 6.5, n), rng.normal(154.0, 6.0, n)) - 0.1 * (age - 65)
    spinal_level = np.array(list(P.SPINAL_LEVEL_SHARES))[D.choice(rng, P.SPINAL_LEVEL_SHARES, n)]

    fusion = rng.random(n) < fusion_share[year_idx]
    nf_type = np.array(list(P.NONFUSION_TYPES))[D.choice(rng, P.NONFUSION_TYPES, n)]
    stype = np.where(fusion, "fusion", nf_type)
    code = np.empty(n, dtype=object)
    for name, table in (("fusion", P.FUSION_CODES), ("decompression", P.DECOMPRESSION_CODES),
                        ("vertebroplasty", P.VERTEBROPLASTY_CODES), ("tumour_resection", P.TUMOUR_RESECTION_CODES)):
        m = stype == name
        code[m] = _codes_of(table, D.choice(rng, table, m.sum()))
    return dict(
        age=age.astype(np.int64), male=male, site=site, primary_code=primary_code, targeted=targeted,
        visceral=visceral, visceral_code=visceral_code, brain=brain, charlson_items=ch, charlson=charlson,
        walking_adm=walking, emergency=emergency, ambulance=ambulance, jcs=jcs, bmi=bmi, height=height,
        spinal_level=spinal_level, surgery_type=stype, surgery_code=code,
    )


def _design(m: Met) -> dict:
    """The covariates the outcome models use (true values, before any recording gaps)."""
    growth = _GROWTH[m.site].copy()
    growth[(np.array(SITE_NAMES)[m.site] == "lung") & m.targeted] = "moderate"
    return {
        "cancer_center": m.cc.astype(float),
        "volume_per50": m.volume / 50.0,
        "male": m.male.astype(float),
        "emergency": m.emergency.astype(float),
        "rapid_growth": (growth == "rapid").astype(float),
        "moderate_growth": (growth == "moderate").astype(float),
        "visceral_mets": (m.visceral | m.brain).astype(float),
        "age_per10": (m.age - 65) / 10.0,
        "charlson_per1": m.charlson.astype(float),
        "nonambulatory_adm": (m.walking_adm <= 1).astype(float),
        "fusion": (m.surgery_type == "fusion").astype(float),
    }


def _eta(x: dict, table: dict, suffix: str) -> np.ndarray:
    eta = np.zeros(len(x["male"]))
    for key, value in table.items():
        if key.endswith(suffix):
            eta += np.log(value) * x[key[: -len(suffix)]]
    return eta


def katagiri_group(m: Met) -> np.ndarray:
    growth = _GROWTH[m.site].copy()
    growth[(np.array(SITE_NAMES)[m.site] == "lung") & m.targeted] = "moderate"
    return growth


def simulate_outcomes(rng: np.random.Generator, m: Met, hosp: Hospitals, prm: dict, curves: dict,
                      solved: dict | None, calibrate: np.ndarray | None) -> dict:
    """Draw the outcomes of admissions ``m``. With ``solved=None`` the intercepts are solved on
    the admissions in ``calibrate`` (the index admissions) so that the expected marginal figures
    hit the targets; the solved values are returned and can be reused for other admissions."""
    n = len(m)
    x = _design(m)
    tg = prm["targets"]
    u = hosp.intercepts
    yi = m.year_idx
    Y = len(hosp.years)
    solve = solved is None
    if solve:
        solved = {}
        cal = calibrate
    # Complications (one intercept; no year trend).
    x_c = _eta(x, prm["complication"], "_or") + u["complication"][m.hosp]
    if solve:
        solved["complication"] = D.solve_intercept(x_c[cal], tg["complications"])
    complication = rng.random(n) < D.expit(solved["complication"] + x_c)
    x["complication"] = complication.astype(float)

    # Death within 30 days, then death in hospital after day 30 among those alive on day 30.
    x_d = _eta(x, prm["death_30d"], "_or") + u["death_30d"][m.hosp]
    x_l = _eta(x, prm["in_hospital_death"], "_or") + u["in_hospital_death"][m.hosp]
    if solve:
        solved["death_30d"] = np.array([D.solve_intercept(x_d[cal & (yi == j)], curves["death_30d"][j]) for j in range(Y)])
    d30 = rng.random(n) < D.expit(solved["death_30d"][yi] + x_d)
    if solve:
        solved["in_hospital_death"] = np.array(
            [D.solve_intercept(x_l[cal & (yi == j) & ~d30], curves["late_death_given_alive_day30"][j]) for j in range(Y)]
        )
    late = (~d30) & (rng.random(n) < D.expit(solved["in_hospital_death"][yi] + x_l))
    alive = ~(d30 | late)

    x_u = _eta(x, prm["unfavorable_ambulatory"], "_or") + u["unfavorable_ambulatory"][m.hosp]
    if solve:
        solved["unfavorable_ambulatory"] = D.solve_intercept(x_u[cal & alive], tg["unfavorable_ambulatory"])
    unfav = alive & (rng.random(n) < D.expit(solved["unfavorable_ambulatory"] + x_u))
    x["unfavorable_ambulatory"] = unfav.astype(float)

    x_h = _eta(x, prm["discharged_home"], "_or") + u["discharged_home"][m.hosp]
    if solve:
        share_alive = (cal & alive).sum() / max(cal.sum(), 1)
        target = min(tg["discharged_home"] / max(share_alive, 1e-9), 0.999)
        solved["discharged_home"] = D.solve_intercept(x_h[cal & alive], target)
    home = alive & (rng.random(n) < D.expit(solved["discharged_home"] + x_h))

    # Death days, then the Weibull time to discharge alive (scale solved per year so that the
    # median postoperative stay of all index patients, deaths included, follows the curve).
    death_day = np.where(d30, 1 + np.floor(30 * rng.beta(1.2, 1.5, n)), 0)
    death_day = np.where(late, np.minimum(31 + np.floor(rng.exponential(35.0, n)), 365), death_day).astype(np.int64)
    k = prm["los_to_home"]["weibull_shape"]
    x_t = _eta(x, prm["los_to_home"], "_hr") + u["los_to_home"][m.hosp]
    if solve:
        cal_rng = np.random.default_rng(np.random.SeedSequence(20240601, spawn_key=(99,)))
        reps = max(1, int(np.ceil(20000 / max(cal.sum(), 1))))
        log_lam = np.zeros(Y)
        for j in range(Y):
            sel = cal & (yi == j)
            if not sel.any():
                log_lam[j] = np.log(np.log(2) / curves["median_postop_los"][j] ** k)
                continue
            e = cal_rng.exponential(1.0, (reps, sel.sum()))
            dead_days = np.tile(death_day[sel & ~alive], reps)
            xs = x_t[sel & alive]
            ea = e[:, alive[sel]]
            lo, hi = -20.0, 10.0
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                tt = np.maximum(2, np.ceil((ea / np.exp(mid + xs)) ** (1 / k)))
                med = np.median(np.concatenate([tt.ravel(), dead_days]))
                if med > curves["median_postop_los"][j]:
                    lo = mid
                else:
                    hi = mid
            log_lam[j] = 0.5 * (lo + hi)
        solved["los_to_home_log_scale"] = log_lam
    t_alive = np.minimum(365, np.maximum(2, np.ceil((rng.exponential(1.0, n) / np.exp(solved["los_to_home_log_scale"][yi] + x_t)) ** (1 / k))))
    postop = np.where(alive, t_alive, death_day).astype(np.int64)

    # Walking level at discharge consistent with (un)favorable ambulatory status.
    w = m.walking_adm
    r = rng.random(n)
    w_dis = np.where(
        unfav,
        np.where(w == 3, np.where(r < 0.25, 0, np.where(r < 0.6, 1, 2)), np.where(r < 0.35, 0, 1)),
        np.where(w == 3, 3, np.where(r < 0.6, 2, 3)),
    )
    dest_other = np.array(list(NOT_HOME))[D.choice(rng, NOT_HOME, n)]
    discharge_to = np.where(alive, np.where(home, "home", dest_other), "death")
    n_other_compl = rng.random(n) < P.P_OTHER_COMPLICATION
    return solved, {
        "complication": complication, "death_30d": d30, "late_death": late, "alive": alive,
        "unfavorable_ambulatory": unfav, "home": home, "postop_los": postop, "walking_dis": w_dis,
        "discharge_to": discharge_to, "other_complication": n_other_compl,
    }


def allocate_hospitals(rng: np.random.Generator, m_year: np.ndarray, x: dict, hosp: Hospitals, prm: dict,
                       calibrate: np.ndarray) -> tuple[np.ndarray, float]:
    """Hospital of each admission: cancer center or not by a logistic model of case mix (its
    intercept solved so that the index admissions hit the target share), then a hospital of that
    group in proportion to its expected spine-surgery activity that year."""
    n = len(m_year)
    a = prm["cancer_center_allocation"]
    eta = (np.log(a["visceral_mets_or"]) * (x["visceral"] | x["brain"]) + np.log(a["lung_or"]) * (np.array(SITE_NAMES)[x["site"]] == "lung")
           + np.log(a["breast_or"]) * (np.array(SITE_NAMES)[x["site"]] == "breast") + np.log(a["emergency_or"]) * x["emergency"]
           + np.log(a["age_per10_or"]) * (x["age"] - 65) / 10)
    alpha = D.solve_intercept(eta[calibrate], prm["targets"]["cancer_center_share"])
    to_cc = rng.random(n) < D.expit(alpha + eta)
    hosp_idx = np.empty(n, dtype=np.int64)
    for j in range(len(hosp.years)):
        for group in (True, False):
            sel = np.flatnonzero((m_year == j) & (to_cc == group))
            if not len(sel):
                continue
            w = hosp.expected[:, j] * (hosp.cancer_center[:, j] == group) * hosp.present[:, j]
            if w.sum() <= 0:  # no hospital of that group this year (tiny scales): use the other
                w = hosp.expected[:, j] * hosp.present[:, j]
            cw = np.cumsum(w)
            hosp_idx[sel] = np.minimum(np.searchsorted(cw, rng.random(len(sel)) * cw[-1], side="right"), len(w) - 1)
    return hosp_idx, alpha


def admission_days(rng: np.random.Generator, years: np.ndarray, year_idx: np.ndarray, emergency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Admission day and preoperative days, with the surgery in the admission's fiscal year."""
    n = len(year_idx)
    starts = np.array([au.fy_start(y) for y in years])
    lengths = np.array([au.fy_length(y) for y in years])
    admit = starts[year_idx] + np.floor(rng.random(n) * lengths[year_idx]).astype(np.int64)
    preop = np.where(emergency, rng.integers(0, 4, n), 1 + rng.poisson(4.0, n)).astype(np.int64)
    admit = np.minimum(admit, starts[year_idx] + lengths[year_idx] - 1 - preop)
    admit = np.maximum(admit, starts[year_idx])
    preop = np.minimum(preop, starts[year_idx] + lengths[year_idx] - 1 - admit)
    return admit, preop


def build(rng_for, hosp: Hospitals, scale: float, prm: dict) -> tuple[Met, dict, dict, np.ndarray]:
    """All metastatic-like surgical admissions with outcomes.

    ``rng_for(name)`` returns the random generator of one component (so that components draw
    from independent streams). Returns (admissions, solved intercepts, yearly curves, volume
    matrix (H, Y) of admissions with any spine surgery).
    """
    years = hosp.years
    tg = prm["targets"]
    counts, _ = year_counts(years, scale, tg)
    curves = yearly_curves(years, tg)
    rng = rng_for("metastatic_covariates")
    n_minor = max(1, int(round(P.N_MINORS * scale)))
    n_compl = max(1, int(round(P.N_C795_COMPLICATION_ONLY * scale)))
    p_year = counts / max(counts.sum(), 1) if counts.sum() else np.full(len(years), 1 / len(years))
    year_idx = np.concatenate([
        np.repeat(np.arange(len(years)), counts),
        rng.choice(len(years), n_minor + n_compl, p=p_year),
    ])
    kind = np.concatenate([np.full(counts.sum(), INDEX), np.full(n_minor, MINOR), np.full(n_compl, C795_COMPLICATION_ONLY)])
    cov = draw_covariates(rng, kind, year_idx, curves["fusion_share"])
    calibrate = kind == INDEX
    hosp_idx, alloc_alpha = allocate_hospitals(rng_for("allocation"), year_idx, cov, hosp, prm, calibrate)
    admit, preop = admission_days(rng_for("metastatic_dates"), years, year_idx, cov["emergency"])
    m = Met(kind=kind, patient=np.arange(len(kind)), year_idx=year_idx, hosp=hosp_idx, admit=admit, preop=preop, **cov)

    H, Y = hosp.n, len(years)
    volume = hosp.nonmet_count.copy()
    np.add.at(volume, (m.hosp, m.year_idx), 1)
    m.cc = hosp.cancer_center[m.hosp, m.year_idx]
    m.volume = volume[m.hosp, m.year_idx].astype(float)
    solved, out = simulate_outcomes(rng_for("metastatic_outcomes"), m, hosp, prm, curves, None, calibrate)
    solved["cancer_center_allocation"] = alloc_alpha
    m.out = out

    # Second metastatic surgical admissions of index patients discharged alive.
    rng = rng_for("second_admissions")
    cand = np.flatnonzero((m.kind == INDEX) & out["alive"])
    pick = cand[rng.random(len(cand)) < P.P_SECOND_ADMISSION]
    if len(pick) == 0 and len(cand):
        pick = cand[:1]
    first_dis = m.admit[pick] + m.preop[pick] + out["postop_los"][pick]
    admit2 = first_dis + 30 + rng.integers(0, 365, len(pick))
    starts = np.array([au.fy_start(y) for y in years] + [au.fy_start(years[-1] + 1)])
    y2 = np.searchsorted(starts, admit2, side="right") - 1
    keep = y2 < Y
    pick, admit2, y2 = pick[keep], admit2[keep], y2[keep]
    s = m.subset(pick)
    s.kind = np.full(len(pick), SECOND)
    s.year_idx = y2
    s.age = s.age + (admit2 - s.admit) // 365
    s.admit = admit2
    s.emergency = rng.random(len(pick)) < 0.3
    s.ambulance = rng.random(len(pick)) < np.where(s.emergency, 0.5, 0.02)
    s.walking_adm = out["walking_dis"][pick]
    fusion = rng.random(len(pick)) < curves["fusion_share"][y2]
    s.surgery_type = np.where(fusion, "fusion", "decompression")
    s.surgery_code = np.where(fusion, "K1422", "K1425").astype(object)
    s.preop = np.where(s.emergency, rng.integers(0, 4, len(pick)), 1 + rng.poisson(3.0, len(pick)))
    s.preop = np.maximum(0, np.minimum(s.preop, starts[y2 + 1] - 1 - s.admit))
    np.add.at(volume, (s.hosp, s.year_idx), 1)
    s.cc = hosp.cancer_center[s.hosp, s.year_idx]
    s.volume = volume[s.hosp, s.year_idx].astype(float)
    _, s.out = simulate_outcomes(rng, s, hosp, prm, curves, solved, None)
    return Met.concat(m, s), solved, curves, volume


def tables_by_year(rng: np.random.Generator, m: Met, hosp: Hospitals) -> dict:
    """Per fiscal-year index: admissions, diagnoses, procedures tables and the billing spec."""
    from hospstudy.data.synth.billing import BillingSpec

    years = hosp.years
    out = m.out
    n = len(m)
    surgery = m.admit + m.preop
    discharge = surgery + out["postop_los"]
    # Row order: fiscal year, admission date, hospital (stable, deterministic).
    order = np.lexsort((m.hosp, m.admit, m.year_idx))
    m = m.subset(order)
    out = m.out
    surgery, discharge = surgery[order], discharge[order]
    seq = np.zeros(n, dtype=np.int64)
    for j in range(len(years)):
        sel = m.year_idx == j
        seq[sel] = np.arange(sel.sum()) + 1
    adm_num = years[m.year_idx].astype(np.int64) * 10**9 + 1 * 10**8 + seq
    adm_ids = au.id_strings("A", adm_num, 13)
    pat_ids = au.id_strings("P", D.scramble(1 * 10**10 + m.patient), 11)

    # Recorded fields with their gaps.
    height = m.height
    weight = m.bmi * (height / 100) ** 2
    miss_hw = rng.random(n) < 0.03
    jcs_null = rng.random(n) < 0.01
    adl_adm = D.adl_strings(rng, m.walking_adm, rng.random(n) < 0.015)
    adl_dis = D.adl_strings(rng, out["walking_dis"], (~out["alive"]) | (rng.random(n) < 0.03))
    adm = au.table("admissions", {
        "admission_id": adm_ids,
        "patient_id": pat_ids,
        "hospital_id": pa.array(hosp.ids[m.hosp], pa.int32()),
        "admit_date": au.dates(m.admit),
        "discharge_date": au.dates(discharge),
        "age": pa.array(m.age.astype(np.int16), pa.int16()),
        "sex": pa.array(np.where(m.male, "M", "F")),
        "emergency": pa.array(m.emergency),
        "ambulance": pa.array(m.ambulance),
        "discharge_to": pa.array(out["discharge_to"].astype(str)),
        "height_cm": pa.array(np.round(height, 1).astype(np.float32), pa.float32(), mask=miss_hw),
        "weight_kg": pa.array(np.round(weight, 1).astype(np.float32), pa.float32(), mask=miss_hw),
        "jcs": pa.array(m.jcs.astype(np.int16), pa.int16(), mask=jcs_null),
        "adl_adm": adl_adm,
        "adl_dis": adl_dis,
        "spinal_level": pa.array(m.spinal_level.astype(str)),
    })

    # Diagnoses.
    d_idx, d_code, d_role = [], [], []

    def add(idx, codes, role):
        d_idx.append(np.asarray(idx))
        d_code.append(np.asarray(codes, dtype=object))
        d_role.append(np.asarray(role, dtype=object) if not isinstance(role, str) else np.full(len(idx), role, dtype=object))

    compl_only = m.kind == C795_COMPLICATION_ONLY
    r = rng.random(n)
    c795_role = np.array(["main", "trigger", "resource", "comorbidity"], dtype=object)[np.searchsorted([0.80, 0.90, 0.97], r, side="right")]
    c795_role[compl_only] = "complication"
    rows = np.arange(n)
    add(rows, np.full(n, "C795", dtype=object), c795_role)
    need_main = c795_role != "main"
    main_code = np.where(compl_only, np.array(list(P.NONMET_DIAGNOSES), dtype=object)[D.choice(rng, P.NONMET_DIAGNOSES, n)], "G952")
    add(rows[need_main], main_code[need_main], "main")
    site_codes = [np.array(v["codes"], dtype=object) for v in P.PRIMARY_SITES.values()]
    prim = np.array([site_codes[s][c] for s, c in zip(m.site, m.primary_code)], dtype=object)
    add(rows, prim, np.where(rng.random(n) < 0.7, "comorbidity", "resource"))
    v = rows[m.visceral]
    add(v, np.array(list(P.VISCERAL_CODES), dtype=object)[m.visceral_code[m.visceral]], "comorbidity")
    b = rows[m.brain]
    add(b, np.full(len(b), P.BRAIN_CODE, dtype=object), "comorbidity")
    for k, (name, item) in enumerate(P.CHARLSON_ITEMS.items()):
        sel = rows[m.charlson_items[:, k]]
        codes = np.array(item["codes"], dtype=object)
        add(sel, codes[rng.integers(0, len(codes), len(sel))], "comorbidity")
    c = rows[out["complication"]]
    add(c, np.array(list(P.COMPLICATION_CODES), dtype=object)[D.choice(rng, P.COMPLICATION_CODES, len(c))], "complication")
    c2 = c[rng.random(len(c)) < 0.10]
    add(c2, np.array(list(P.COMPLICATION_CODES), dtype=object)[D.choice(rng, P.COMPLICATION_CODES, len(c2))], "complication")
    o = rows[out["other_complication"]]
    add(o, np.array(list(P.OTHER_COMPLICATION_CODES), dtype=object)[D.choice(rng, P.OTHER_COMPLICATION_CODES, len(o))], "complication")
    d_idx = np.concatenate(d_idx)
    d_code = np.concatenate(d_code)
    d_role = np.concatenate(d_role)
    # A complication and a comorbidity may draw the same code (e.g. I219): keep both rows, as
    # DPC Form 1 records them in different fields.
    d_order = np.argsort(d_idx, kind="stable")
    d_idx, d_code, d_role = d_idx[d_order], d_code[d_order], d_role[d_order]

    # Procedures: the index spine surgery, sometimes a second one later in the stay.
    two = rng.random(n) < P.P_TWO_SURGERIES
    second_day = surgery + np.minimum(rng.integers(3, 15, n), out["postop_los"])
    second_code = np.where(m.surgery_type == "vertebroplasty", "K1422",
                           np.array(list(P.FUSION_CODES), dtype=object)[D.choice(rng, P.FUSION_CODES, n)])
    p_idx = np.concatenate([rows, rows[two]])
    p_code = np.concatenate([m.surgery_code.astype(object), second_code[two].astype(object)])
    p_day = np.concatenate([surgery, second_day[two]])
    p_order = np.argsort(p_idx, kind="stable")
    p_idx, p_code, p_day = p_idx[p_order], p_code[p_order], p_day[p_order]

    spec = BillingSpec(
        admit=m.admit, discharge=discharge, surgery=surgery, drug_rate=np.full(n, 0.6),
        rehab=np.ones(n, bool), radiotherapy=np.where(rng.random(n) < 0.3, rng.integers(5, 11, n), 0),
        transfusion=rng.random(n) < 0.15, targeted=m.targeted,
    )

    result = {}
    for j in range(len(years)):
        sel = np.flatnonzero(m.year_idx == j)
        if not len(sel):
            continue
        lo, hi = sel[0], sel[-1] + 1  # rows are ordered by fiscal year
        dsel = (d_idx >= lo) & (d_idx < hi)
        psel = (p_idx >= lo) & (p_idx < hi)
        result[j] = {
            "admissions": adm.slice(lo, hi - lo),
            "diagnoses": au.table("diagnoses", {
                "admission_id": au.take_fixed(adm_ids, d_idx[dsel]),
                "icd10": pa.array(d_code[dsel].astype(str)),
                "role": pa.array(d_role[dsel].astype(str)),
                "suspected": pa.array(np.zeros(int(dsel.sum()), dtype=bool)),
            }),
            "procedures": au.table("procedures", {
                "admission_id": au.take_fixed(adm_ids, p_idx[psel]),
                "proc_code": pa.array(p_code[psel].astype(str)),
                "proc_date": au.dates(p_day[psel]),
            }),
            "billing_spec": spec.slice(lo, hi),
            "admission_ids": adm_ids.slice(lo, hi - lo),
        }
    return result
