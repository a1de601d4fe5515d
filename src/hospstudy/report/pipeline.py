"""Deprecated location (until hospstudy 0.3): the run orchestration moved above the stages, to
:mod:`hospstudy.run.pipeline`. Import from there."""

import warnings as _w

from hospstudy.run.pipeline import *  # noqa: F401,F403  layering: allowed as a deprecated re-export only
from hospstudy.run.pipeline import (  # noqa: F401
    DEFAULT_SEED, DEMO_DATA, DEMO_OUT, FLAGSHIP, STAGES, DemoResult, RunResult, demo, ensure_demo_database,
    find_flagship, publish_results, run_study, split_study_settings, validate_data, validated_before,
)

_w.warn("hospstudy.report.pipeline moved to hospstudy.run.pipeline", DeprecationWarning, stacklevel=2)
