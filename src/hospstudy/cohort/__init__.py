"""Study files and the cohort engine: from a DPC-layout database to the analytic dataset.

>>> from hospstudy.cohort import Study
>>> study = Study.load("studies/spinal_metastasis.toml")          # doctest: +SKIP
>>> result = study.build_cohort("data/demo", engine="duckdb")     # doctest: +SKIP
>>> result.analytic.head(); result.attrition                      # doctest: +SKIP
"""

from hospstudy.cohort.spec import Study

__all__ = ["Study", "CohortResult", "build_cohort"]


def __getattr__(name):
    # the engine imports Ibis; keep `import hospstudy.cohort` light for the CLI's start-up
    if name in ("CohortResult", "build_cohort"):
        from hospstudy.cohort import engine

        return getattr(engine, name)
    raise AttributeError(name)
