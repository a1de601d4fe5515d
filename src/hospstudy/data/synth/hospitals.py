"""Hospitals: attributes, cancer-center designation by fiscal year, spine-surgery activity and
the hospital random intercepts of every outcome model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from hospstudy.data.synth import arrowutil as au
from hospstudy.data.synth import params as P

OUTCOMES_WITH_INTERCEPTS = ("death_30d", "in_hospital_death", "complication", "unfavorable_ambulatory", "los_to_home", "discharged_home")


@dataclass
class Hospitals:
    ids: np.ndarray  # int32 hospital_id, one per hospital
    years: np.ndarray  # fiscal years, in order
    present: np.ndarray  # (H, Y) bool: hospital in the database that fiscal year
    cancer_center: np.ndarray  # (H, Y) bool
    kind: np.ndarray  # (H,) hospital type name
    activity: np.ndarray  # (H,) spine-surgery activity before normalisation
    expected: np.ndarray  # (H, Y) expected non-metastatic spine-surgery admissions
    nonmet_count: np.ndarray  # (H, Y) non-metastatic spine-surgery admissions drawn
    beds: np.ndarray
    teaching: np.ndarray
    region: np.ndarray  # (H,) region index
    intercepts: dict  # outcome -> (H,) random intercept

    @property
    def n(self) -> int:
        return len(self.ids)

    def facilities_table(self) -> pa.Table:
        h_idx, y_idx = np.nonzero(self.present)
        regions = list(P.REGIONS)
        return au.table(
            "facilities",
            {
                "hospital_id": pa.array(self.ids[h_idx], pa.int32()),
                "fiscal_year": pa.array(self.years[y_idx].astype(np.int16), pa.int16()),
                "cancer_center": pa.array(self.cancer_center[h_idx, y_idx]),
                "beds": pa.array(self.beds[h_idx].astype(np.int32), pa.int32()),
                "teaching": pa.array(self.teaching[h_idx]),
                "region": au.vocab_take(regions, self.region[h_idx]),
            },
        )


def _spine_years_growth(years: np.ndarray) -> np.ndarray:
    return 1.0 + P.SPINE_GROWTH_PER_YEAR * (years - P.CURVE_FIRST)


def make_hospitals(rng: np.random.Generator, scale: float, years: np.ndarray, prm: dict) -> Hospitals:
    """Draw the hospitals of the database.

    The expected national number of non-metastatic spine-surgery admissions is normalised to
    ``targets.non_metastatic_spine_admissions`` x scale (pro rata for other year ranges), so the
    per-hospital distribution is the same at every scale.
    """
    tg = prm["targets"]
    H = max(4, int(round(tg["hospitals"] * scale)))
    n_cc = max(1, int(round(tg["cancer_centers"] * scale)))
    Y = len(years)
    ids = (rng.permutation(H) + 1001).astype(np.int32)
    is_cc0 = np.zeros(H, bool)
    is_cc0[rng.choice(H, n_cc, replace=False)] = True

    kind = np.empty(H, dtype=object)
    act = np.zeros(H)
    t = P.HOSPITAL_TYPES
    cc_idx = np.flatnonzero(is_cc0)
    active = rng.random(len(cc_idx)) < t["cc_spine_active"]["p_of_cc"]
    a = t["cc_spine_active"]
    kind[cc_idx[active]] = "cc_spine_active"
    act[cc_idx[active]] = np.maximum(rng.normal(a["mean"], a["sd"], active.sum()), a["min"])
    o = t["cc_other"]
    kind[cc_idx[~active]] = "cc_other"
    act[cc_idx[~active]] = rng.lognormal(np.log(o["median"]), o["sigma"], (~active).sum())
    non_idx = np.flatnonzero(~is_cc0)
    spec = rng.random(len(non_idx)) < t["spine_specialist"]["p_of_noncc"]
    s = t["spine_specialist"]
    kind[non_idx[spec]] = "spine_specialist"
    act[non_idx[spec]] = rng.lognormal(np.log(s["median"]), s["sigma"], spec.sum())
    g = t["general"]
    gen = non_idx[~spec]
    kind[gen] = "general"
    act[gen] = rng.lognormal(np.log(g["median"]), g["sigma"], len(gen)) * (rng.random(len(gen)) >= g["p_none"])

    # Beds, teaching status and region.
    beds = np.where(
        is_cc0,
        np.clip(rng.normal(600, 180, H), 300, 1300),
        np.clip(rng.lognormal(np.log(220), 0.55, H), 20, 1000),
    ).round()
    beds = np.where(kind == "spine_specialist", np.clip(beds, 120, 600), beds)
    teaching = np.where(is_cc0, rng.random(H) < 0.70, rng.random(H) < np.where(beds > 400, 0.45, 0.08))
    region = rng.choice(len(P.REGIONS), H, p=np.array(list(P.REGIONS.values())) / sum(P.REGIONS.values()))

    # Presence by year: cancer centers throughout; some other hospitals join DPC later.
    first = years[0]
    entry = np.full(H, first)
    late = (~is_cc0) & (rng.random(H) < P.P_HOSPITAL_LATE_ENTRY) & (Y > 1)
    entry[late] = rng.integers(first + 1, years[-1] + 1, late.sum()) if Y > 1 else first
    present = years[None, :] >= entry[:, None]

    # Cancer-center designation: a few non-CC large hospitals gain it, a few CCs lose it.
    cc = np.repeat(is_cc0[:, None], Y, axis=1)
    for j in range(1, Y):
        cc[:, j] = cc[:, j - 1]
        cand = np.flatnonzero((~cc[:, j]) & present[:, j] & (beds > 400))
        k = min(len(cand), rng.poisson(P.CC_GAIN_PER_YEAR * scale))
        if k:
            cc[rng.choice(cand, k, replace=False), j:] = True
        cur = np.flatnonzero(cc[:, j])
        k = min(len(cur), rng.poisson(P.CC_LOSS_PER_YEAR * scale))
        if k:
            cc[rng.choice(cur, k, replace=False), j:] = False
    cc &= present

    growth = _spine_years_growth(years)
    expected = act[:, None] * growth[None, :] * present
    # National total of non-metastatic spine surgery, pro rata per year of the 2012-2020 target.
    per_year_target = tg["non_metastatic_spine_admissions"] * scale * growth / _spine_years_growth(
        np.arange(P.CURVE_FIRST, P.CURVE_LAST + 1)
    ).sum()
    norm = per_year_target / np.maximum(expected.sum(axis=0), 1e-9)
    expected = expected * norm[None, :]
    nonmet = rng.poisson(expected).astype(np.int64)

    intercepts = {}
    for name in OUTCOMES_WITH_INTERCEPTS:
        intercepts[name] = rng.normal(0.0, prm[name]["hospital_sd"], H)

    return Hospitals(
        ids=ids, years=years, present=present, cancer_center=cc, kind=kind.astype(str),
        activity=act, expected=expected, nonmet_count=nonmet, beds=beds,
        teaching=teaching, region=region, intercepts=intercepts,
    )
