"""A synthetic analytic dataset with known effects, built with numpy, for the analyses tests
(the layout of docs/architecture.md; no database, no cohort stage)."""

import numpy as np
import pandas as pd

PLANTED = {"death_30d": {"cancer_center": np.log(0.6), "volume_per50": np.log(0.85)}}


def analytic(n_hosp: int = 60, mean_patients: int = 40, seed: int = 11, hosp_sd: float = 0.4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    years = np.arange(2012, 2021)
    cc_h = rng.random(n_hosp) < 0.45
    base_vol = np.where(cc_h, rng.normal(200, 40, n_hosp), rng.gamma(3, 40, n_hosp)).clip(5, 600)
    u = rng.normal(0, hosp_sd, n_hosp)
    rows = []
    size = rng.poisson(mean_patients, n_hosp).clip(3, None)
    hosp = np.repeat(np.arange(n_hosp), size)
    n = hosp.size
    fy = rng.choice(years, n)
    volume = np.round(base_vol[hosp] * np.exp(rng.normal(0, 0.1, n))).astype(int)
    age = rng.normal(68, 11, n).round()
    sex = np.where(rng.random(n) < 0.6, "M", "F")
    emergency = rng.random(n) < 0.3
    site = rng.choice(["lung", "breast", "prostate", "kidney", "other"], n, p=[0.3, 0.2, 0.2, 0.1, 0.2])
    cc = cc_h[hosp]
    eff = PLANTED["death_30d"]
    lp = (-2.9 + eff["cancer_center"] * cc + eff["volume_per50"] * (volume / 50 - 3) + 0.03 * (age - 68)
          + 0.8 * (sex == "M") + 0.6 * emergency + 0.7 * (site == "lung") + u[hosp])
    death_30d = rng.random(n) < 1 / (1 + np.exp(-lp))
    lp2 = -2.3 + 0.03 * (age - 68) + 0.5 * emergency + u[hosp] * 0.5
    in_hosp = death_30d | (rng.random(n) < 1 / (1 + np.exp(-lp2)))
    complication = rng.random(n) < 1 / (1 + np.exp(-(-2.4 + 0.3 * emergency + 0.3 * u[hosp])))
    unfav = (rng.random(n) < 0.4).astype(object)
    unfav[in_hosp] = None
    los = np.ceil(rng.gamma(2.5, 14, n)).astype(float)
    ev = np.where(in_hosp, 2, np.where(rng.random(n) < 0.7, 1, 0))
    q = pd.qcut(volume, 4, labels=False) + 1
    return pd.DataFrame({
        "patient_id": [f"P{i:06d}" for i in range(n)], "hospital_id": hosp.astype("int32"), "fiscal_year": fy,
        "cancer_center": cc, "volume": volume, "volume_per50": volume / 50, "volume_quartile": q.astype(int),
        "age": age, "sex": sex, "emergency": emergency, "primary_site": site,
        "death_30d": death_30d, "in_hospital_death": in_hosp, "complication": complication,
        "unfavorable_ambulatory": pd.array(unfav, dtype="boolean"),
        "discharged_home": ev == 1, "postop_los": los, "los_to_home": los, "los_to_home_event": ev,
    })


SPEC = {
    "outcomes": ["death_30d", "complication", "los_to_home"],
    "exposures": ["cancer_center", "volume_per50"],
    "covariates": ["age", "sex", "emergency", "primary_site"],
    "reference": {"sex": "F", "primary_site": "other"},
    "cluster": "hospital_id",
    "models": ["mixed_logit", "gee_logit", "logit"],
    "volume": {"spline_knots": 4, "outcomes": ["death_30d"]},
    "weighting": {"exposure": "cancer_center"},
    "competing_risks": {"outcome": "los_to_home", "event_column": "los_to_home_event"},
    "profiling": {"outcome": "death_30d"},
    "trends": {"by": "fiscal_year", "proportions": ["death_30d", "in_hospital_death"], "continuous": ["postop_los"]},
}
