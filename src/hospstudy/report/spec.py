"""The ``[report]`` section of a study file: settings of the published outputs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from hospstudy.privacy import DEFAULT_THRESHOLD
from hospstudy.settings import Settings, load_section

DEFAULT_DISCLOSURE_THRESHOLD = DEFAULT_THRESHOLD

#: The report's sections in the default order (ids of hospstudy.report.sections' modules).
DEFAULT_SECTIONS = ("overview", "cohort-flow", "table1", "crude", "adjusted", "volume", "weighting", "los", "variation",
                    "trends", "reference", "methods", "checklist", "appendix")


class ReportSpec(Settings):
    """The optional ``[report]`` section: settings of the published outputs."""

    disclosure_threshold: int = Field(
        DEFAULT_DISCLOSURE_THRESHOLD, strict=True, ge=1,
        description="Smallest count shown outside OUT/private/ (smaller counts print as '<N').",
    )
    sections: tuple[str, ...] | None = Field(
        None, description="Sections of report.html in order, from " + ", ".join(DEFAULT_SECTIONS) + "; a section not "
                          "named is not rendered (the overview always comes first). All, in that order, when absent.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Readable names that extend the report's label map: a column, model or "
                                          "adjustment set (death_30d = \"Death within 30 days\") or a level (\"sex=M\" = \"Male\").",
    )

    table1_variables: Literal["as_modelled", "continuous", "grouped", "both"] | tuple[str, ...] = Field(
        "as_modelled", description="How Table 1 shows a variable that the study also groups (a `cut` covariate and the "
        "column it cuts, e.g. bmi and bmi_group): 'as_modelled' the form [analyses] covariates use (the group when "
        "neither or both are), 'continuous', 'grouped', 'both'; or the list of Table 1's variables, in order.",
    )

    @field_validator("table1_variables")
    @classmethod
    def _names(cls, v):
        if isinstance(v, tuple):
            dup = sorted({x for x in v if v.count(x) > 1})
            if not v or dup:
                raise ValueError(f"{dup} named more than once" if dup else "name at least one variable")
        return v

    @field_validator("sections")
    @classmethod
    def _known_sections(cls, v):
        if v is None:
            return v
        unknown = [x for x in v if x not in DEFAULT_SECTIONS]
        if unknown:
            raise ValueError(f"unknown section(s) {unknown}; allowed {list(DEFAULT_SECTIONS)}")
        dup = sorted({x for x in v if v.count(x) > 1})
        if dup:
            raise ValueError(f"{dup} named more than once")
        return v


def report_settings(raw: dict | None, path=None) -> ReportSpec:
    """The validated ``[report]`` section of a parsed study file (defaults when absent).

    Raises
    ------
    StudyFileError
        The section is not a table or a value breaks its rule; the message names the field path.
    """
    return load_section(ReportSpec, raw, "report", path)


