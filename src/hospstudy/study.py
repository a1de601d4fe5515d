"""The study file as a whole, read above the stages.

Each section is parsed by the settings class of the stage that owns it, and no stage reads
another's section:

==============================================================  ==========================================
section                                                         parsed by
==============================================================  ==========================================
``[study]``, ``[codelists]``, ``[cohort]``, ``[exposures]``,    :class:`hospstudy.cohort.spec.CohortDefinition`
``[covariates]``, ``[outcomes]``
``[analyses]``                                                  :class:`hospstudy.models.spec.AnalysesSpec`
``[report]``                                                    :class:`hospstudy.report.spec.ReportSpec`
``[engine]`` (where the cohort runs)                            :class:`hospstudy.cohort.spec.EngineSpec`
==============================================================  ==========================================

:meth:`Study.load` reports every problem of every section at once (one
:class:`~hospstudy.errors.StudyFileError`, exit code 2), each naming its field path, and checks
what spans sections (an analysis may only use columns the analytic dataset holds).
"""

from __future__ import annotations

import re
from pathlib import Path

from hospstudy.cohort.spec import SECTION_KEYS, CohortDefinition, EngineSpec
from hospstudy.errors import StudyFileError
from hospstudy.models.spec import AnalysesSpec
from hospstudy.report.spec import ReportSpec
from hospstudy.settings import raise_problems, read_study_file, validate_section

__all__ = ["Study", "read_study_file", "TOP_KEYS"]

#: Every section a study file may hold, in the order the problems are reported.
TOP_KEYS = (*SECTION_KEYS, "analyses", "report", "engine")


class Study(CohortDefinition):
    """A validated study file: the cohort definition (what :meth:`build_cohort` runs) plus the
    other stages' settings, ``analyses`` (:class:`~hospstudy.models.spec.AnalysesSpec`, or None
    when the file has no ``[analyses]``), ``report`` (:class:`~hospstudy.report.spec.ReportSpec`)
    and ``engine`` (:class:`~hospstudy.cohort.spec.EngineSpec`: where the cohort runs).

    Examples
    --------
    >>> from hospstudy import Study
    >>> study = Study.load("studies/spinal_metastasis.toml")      # doctest: +SKIP
    >>> result = study.build_cohort("data/demo")                  # doctest: +SKIP
    >>> study.analyses.outcomes, study.report.disclosure_threshold  # doctest: +SKIP
    """

    def __init__(self, path, raw, info, codelists, codelist_meta, cohort, derivations, analyses, report=None,
                 engine=None):
        super().__init__(path, raw, info, codelists, codelist_meta, cohort, derivations)
        self.analyses = analyses
        self.report = report if report is not None else ReportSpec()
        self.engine = engine if engine is not None else EngineSpec()

    @classmethod
    def load(cls, path) -> "Study":
        """Read, parse and validate a study file; every problem at once in one StudyFileError."""
        return cls.from_dict(read_study_file(path), Path(path))

    @classmethod
    def from_dict(cls, raw: dict, path: Path | None = None) -> "Study":
        """Validate an already parsed study file (``path`` locates code-list files)."""
        problems: list[str] = []
        for k in raw:
            if k not in TOP_KEYS:
                problems.append(f"{k}: unknown section; allowed: {', '.join(TOP_KEYS)}")
        *cohort_parts, (have, defined) = CohortDefinition.parse(raw, path, problems)
        report = validate_section(ReportSpec, raw.get("report"), "report", problems)
        engine = validate_section(EngineSpec, raw.get("engine"), "engine", problems)
        analyses = _analyses(raw.get("analyses"), have, defined, problems)
        if report is not None and isinstance(report.table1_variables, tuple):
            for c in report.table1_variables:
                if c not in have:
                    problems.append(f"report.table1_variables: column '{c}' is not in the analytic dataset; "
                                    f"defined columns: {', '.join(defined)}")
        raise_problems(problems, path)
        return cls(path, raw, *cohort_parts, analyses, report, engine)


def _analyses(table, have: set[str], defined: list[str], problems: list[str]) -> AnalysesSpec | None:
    """The ``[analyses]`` section, and the cross-check that each column it names is in the
    analytic dataset (``have``)."""
    if table is None:
        return None
    try:
        analyses = AnalysesSpec.from_table(table, "analyses")
    except StudyFileError as e:
        problems.extend(re.sub(r"\.(\d+)(?=[.\[]|$)", r"[\1]", p.split(":", 1)[0]) + ":" + p.split(":", 1)[1]
                        if ":" in p else p for p in e.problems)
        return None
    for c, f in analyses.columns().items():
        if c not in have:
            problems.append(
                f"analyses.{f}: column '{c}' is not in the analytic dataset; "
                f"defined columns: {', '.join(defined)}"
            )
    return analyses
