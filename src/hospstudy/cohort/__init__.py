"""The cohort stage: from a DPC-layout database and a cohort definition to the analytic dataset.

>>> from hospstudy import Study
>>> study = Study.load("studies/spinal_metastasis.toml")          # doctest: +SKIP
>>> result = study.build_cohort("data/demo", engine="duckdb")     # doctest: +SKIP
>>> result.analytic.head(); result.attrition                      # doctest: +SKIP
"""

from hospstudy.cohort.spec import CohortDefinition

__all__ = ["CohortDefinition", "CohortResult", "build_cohort"]


def __getattr__(name):
    # the engine imports Ibis; keep `import hospstudy.cohort` light for the CLI's start-up
    if name in ("CohortResult", "build_cohort"):
        from hospstudy.cohort import engine

        return getattr(engine, name)
    if name == "Study":
        # deprecated (until 0.3): the whole study file is read above the stages now
        import warnings

        warnings.warn("hospstudy.cohort.Study moved to hospstudy.Study (hospstudy.study.Study)",
                      DeprecationWarning, stacklevel=2)
        from hospstudy.study import Study  # layering: allowed as a deprecated re-export only

        return Study
    raise AttributeError(name)
