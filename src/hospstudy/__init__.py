"""hospstudy: hospital-outcome studies from administrative data.

>>> from hospstudy import Study
>>> study = Study.load("studies/spinal_metastasis.toml")   # doctest: +SKIP
"""

__version__ = "0.1.0"

__all__ = ["Study", "__version__"]


def __getattr__(name):
    # the study module imports every stage's settings (pydantic, the cohort grammar): keep
    # `import hospstudy` light for the CLI's start-up and for the stages below it
    if name == "Study":
        from hospstudy.study import Study

        return Study
    raise AttributeError(name)
