"""The run orchestration, above every stage: ``hospstudy run`` (validate → cohort → analyses →
report → disclosure check, each stage cached by its settings and inputs), ``hospstudy demo``, and
the commands that read a whole study file (``cohort``, ``analyze``)."""

from hospstudy.run.pipeline import DEFAULT_SEED, DemoResult, RunResult, demo, run_study

__all__ = ["DEFAULT_SEED", "DemoResult", "RunResult", "demo", "run_study"]
