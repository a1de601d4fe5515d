"""The ``[report]`` section of a study file: settings of the published outputs."""

from __future__ import annotations

from pydantic import Field

from hospstudy.errors import StudyFileError
from hospstudy.privacy import DEFAULT_THRESHOLD
from hospstudy.settings import Settings, validate_section

DEFAULT_DISCLOSURE_THRESHOLD = DEFAULT_THRESHOLD


class ReportSpec(Settings):
    """The optional ``[report]`` section: settings of the published outputs."""

    disclosure_threshold: int = Field(
        DEFAULT_DISCLOSURE_THRESHOLD, strict=True, ge=1,
        description="Smallest count shown outside OUT/private/ (smaller counts print as '<N').",
    )


def report_settings(raw: dict | None, path=None) -> ReportSpec:
    """The validated ``[report]`` section of a parsed study file (defaults when absent).

    Raises
    ------
    StudyFileError
        The section is not a table or a value breaks its rule; the message names the field path.
    """
    problems: list[str] = []
    spec = validate_section(ReportSpec, (raw or {}).get("report"), "report", problems)
    if problems:
        where = str(path) if path is not None else "study file"
        raise StudyFileError(f"{where}: {len(problems)} problem(s):\n  " + "\n  ".join(problems), problems)
    return spec


