"""The [analyses] settings object: defaults, every error named by its field, consistency rules."""

import tomllib

import pytest

from hospstudy.errors import InputError, StudyFileError
from hospstudy.models.spec import AnalysesSpec

FLAGSHIP = """
outcomes = ["death_30d", "in_hospital_death", "complication", "unfavorable_ambulatory", "los_to_home"]
exposures = ["cancer_center", "volume_per50"]
covariates = ["age", "sex", "emergency", "primary_site", "fiscal_year"]
categorical = ["fiscal_year"]
reference = { sex = "F" }
cluster = "hospital_id"
models = ["mixed_logit", "gee_logit", "logit"]
nagq = 1

[volume]
spline_knots = 4

[weighting]
exposure = "cancer_center"

[competing_risks]
outcome = "los_to_home"

[profiling]
outcome = "death_30d"

[trends]
proportions = ["death_30d"]
continuous = ["postop_los"]
"""


def test_flagship_table_parses_with_defaults():
    s = AnalysesSpec.from_table(tomllib.loads(FLAGSHIP))
    assert s.binary_outcomes == ("death_30d", "in_hospital_death", "complication", "unfavorable_ambulatory")
    assert s.primary_model == "mixed_logit"
    assert s.adjustment == ("alone", "mutual")
    assert s.volume.per == 50 and s.volume.reference_volume == "median"
    assert s.weighting.methods == ("iptw", "overlap")
    assert s.profiling.limits == (0.95, 0.998)
    assert s.competing_risks.event == 1 and s.competing_risks.competing == (2,)
    with pytest.raises(Exception):
        s.nagq = 10  # frozen


def test_every_problem_reported_at_once_with_field_paths():
    table = {
        "outcomes": ["death_30d"],
        "exposures": ["cancer_center"],
        "models": ["lmer"],
        "nagq": 40,
        "volume": {"knots": 3},
        "profiling": {"limits": [1.2]},
    }
    with pytest.raises(StudyFileError) as ei:
        AnalysesSpec.from_table(table)
    probs = ei.value.problems
    assert any(p.startswith("analyses.models[0]:") and "mixed_logit" in p for p in probs)
    assert any(p.startswith("analyses.nagq:") and "25" in p for p in probs)
    assert any(p.startswith("analyses.volume.knots:") and "spline_knots" in p for p in probs)
    assert any(p.startswith("analyses.profiling.limits:") for p in probs)
    assert len(probs) == 4
    assert isinstance(ei.value, ValueError)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"covariates": ["age", "cancer_center"]}, "also exposures"),
        ({"weighting": {"exposure": "teaching"}}, "weighting.exposure"),
        ({"competing_risks": {"outcome": "postop_los"}}, "competing_risks.outcome"),
        ({"outcomes": ["death_30d", "death_30d"]}, "more than once"),
        ({"competing_risks": {"event": 2, "competing": 2}}, "must differ"),
        ({"models": []}, "at least one"),
        ({"volume": {"linear_exposure": "volume_per100"}}, "volume.linear_exposure"),
    ],
)
def test_consistency_rules(change, needle):
    table = {"outcomes": ["death_30d", "los_to_home"], "exposures": ["cancer_center", "volume_per50"]}
    table.update(change)
    with pytest.raises(StudyFileError) as ei:
        AnalysesSpec.from_table(table)
    assert needle in str(ei.value)


def test_check_columns_names_the_field():
    s = AnalysesSpec.from_table(tomllib.loads(FLAGSHIP))
    cols = set(s.columns()) - {"postop_los", "primary_site"}
    with pytest.raises(InputError) as ei:
        s.check_columns(cols)
    msg = str(ei.value)
    assert "trends.continuous: 'postop_los'" in msg and "covariates: 'primary_site'" in msg
    s.check_columns(s.columns())


def test_load_spec_from_the_flagship_study_file_and_study_object():
    from pathlib import Path

    from hospstudy.models.analyses import load_spec

    path = Path(__file__).parents[1] / "studies" / "spinal_metastasis.toml"
    spec = load_spec(path)
    assert spec.primary_model == "mixed_logit" and "los_to_home" not in spec.binary_outcomes
    from hospstudy import Study

    assert load_spec(Study.load(path)) == spec
