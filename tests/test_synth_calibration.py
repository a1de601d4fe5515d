"""Calibration of the synthetic database to reference/published.toml, computed independently
of the cohort engine (one DuckDB SQL query: hospstudy.data.synth.check).

The cohort figures are checked on a scale-1 database without background admissions (same
hospitals, volumes and cohort as the full database; ~5 s). Tolerances are about 3 binomial
standard errors at ~10,300 patients (the realised rates scatter around their targets from seed
to seed) or the issue's stated tolerance, whichever is wider. The full database (background
and billing) is measured in bench/bench_synth.py.
"""

from __future__ import annotations

import pytest

from hospstudy.data.synth import check, generate

# figure: (published target, absolute tolerance)
TOLERANCES = {
    "patients": (10320, 0.03 * 10320),
    "cancer_center_share": (0.51, 0.02),
    "mortality_30d": (0.062, 0.008),
    "in_hospital_mortality": (0.086, 0.009),
    "discharged_home": (0.584, 0.02),
    "complications": (0.078, 0.008),
    "unfavorable_ambulatory": (0.394, 0.02),
    "median_postop_los": (33, 1.5),
    "median_volume_patient_level": (166, 15),
    "non_metastatic_spine_admissions": (473391, 0.01 * 473391),
    "hospitals": (1700, 0),
    "cancer_centers_per_year": (400, 20),
}
# fiscal year: (patients, fusion share, in-hospital death, median postoperative stay)
YEARS = {2012: (877, 0.84, 0.099, 37), 2020: (1479, 0.87, 0.068, 30)}
YEAR_TOL = (0.03, 0.035, 0.025, 3)


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    out = tmp_path_factory.mktemp("calib") / "db"
    generate(out, seed=20240601, scale=1.0, background=False)
    return check.figures(out)


@pytest.mark.parametrize("name", list(TOLERANCES))
def test_marginal_figure(figures, name):
    target, tol = TOLERANCES[name]
    assert abs(figures[name] - target) <= tol, f"{name}: {figures[name]} vs {target} ± {tol}"


@pytest.mark.parametrize("year", list(YEARS))
def test_yearly_trend_endpoints(figures, year):
    got = figures["by_year"][year]
    n, fusion, death, los = YEARS[year]
    assert abs(got["patients"] - n) <= YEAR_TOL[0] * n
    assert abs(got["fusion_share"] - fusion) <= YEAR_TOL[1]
    assert abs(got["in_hospital_death"] - death) <= YEAR_TOL[2]
    assert abs(got["median_postop_los"] - los) <= YEAR_TOL[3]


def test_trends_run_the_published_way(figures):
    by = figures["by_year"]
    first, last = by[2012], by[2020]
    assert last["patients"] > 1.5 * first["patients"]
    assert last["median_postop_los"] < first["median_postop_los"]
    assert last["in_hospital_death"] < first["in_hospital_death"]


def test_cancer_center_patients_see_volumes_near_200(figures):
    assert 175 <= figures["median_volume_cancer_center_patients"] <= 235


def test_ambulatory_status_is_sometimes_missing(figures):
    assert 0.01 < figures["unfavorable_ambulatory_missing"] < 0.10
