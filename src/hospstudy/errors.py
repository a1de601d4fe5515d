"""One exceptions module for the whole package.

Every error a user can cause subclasses both :class:`HospstudyError` and the matching built-in,
so ``except ValueError`` keeps working for callers who do not know hospstudy. The CLI catches
:class:`HospstudyError` and prints its message (no traceback) with the error's ``exit_code``.
Statistical hazards are warnings of our own categories, never silent garbage.
"""

from __future__ import annotations


class HospstudyError(Exception):
    """Base class of every hospstudy error. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InputError(ValueError, HospstudyError):
    """Input that cannot be used as given: a message names the file, row or field and the rule."""

    exit_code = 2


class DataUnusableError(InputError):
    """A database folder or file that cannot be read at all (missing, unreadable, wrong format)."""

    exit_code = 2


class DataValidationError(InputError):
    """A database that was read but breaks the data model; ``report`` holds the findings."""

    exit_code = 1

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class StudyFileError(InputError):
    """A study file that does not parse or breaks the schema; ``problems`` lists every one."""

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


class EngineError(RuntimeError, HospstudyError):
    """An engine (DuckDB, Spark) that cannot be started or failed on a query."""

    exit_code = 1


class EngineConnectionError(EngineError):
    """A Spark master or Spark Connect server that cannot be reached or used as given (a
    malformed URL, no answer, Java missing): one line naming the URL."""

    exit_code = 2


class ModelError(ValueError, HospstudyError):
    """Bad arguments to a model function (one template: 'The X parameter of f must be ... Got ...')."""

    exit_code = 2


class CohortEmptyError(HospstudyError):
    """A study whose selection steps leave no patient; the message names the step that emptied it."""

    exit_code = 1


class DisclosureError(HospstudyError):
    """An output folder that holds a small cell or an identifier."""

    exit_code = 1


class HospstudyWarning(UserWarning):
    """Base of hospstudy's warning categories."""


class ConvergenceWarning(HospstudyWarning):
    """An optimiser stopped before its convergence test passed."""


class SeparationWarning(HospstudyWarning):
    """Complete or quasi-complete separation: some estimates are infinite or unreliable."""


class BoundaryWarning(HospstudyWarning):
    """A variance parameter at its boundary (random-intercept SD estimated as 0)."""


class RankDeficiencyWarning(HospstudyWarning):
    """A design matrix without full column rank; columns were dropped or estimates are not identified."""


def param_error(func: str, param: str, must: str, got) -> ModelError:
    """The one template for bad arguments (scikit-learn style)."""
    return ModelError(f"The '{param}' parameter of {func} must be {must}. Got {got!r} instead.")
