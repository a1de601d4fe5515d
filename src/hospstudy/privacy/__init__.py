"""Disclosure control, below every stage: what counts as small, how tables, attrition chains,
curves and JSON documents are suppressed (:mod:`~hospstudy.privacy.rules`), and the checker that
scans a finished output folder (:mod:`~hospstudy.privacy.checker`). The cohort (safe attrition),
the models (curve steps, funnel points) and the report all use these one set of rules.
"""

from hospstudy.privacy.checker import Violation, check_disclosure, check_file
from hospstudy.privacy.rules import (
    DEFAULT_THRESHOLD,
    IDENTIFIER_NAMES,
    coarsen_at_risk,
    coarsen_cif_steps,
    fmt_count,
    is_count_name,
    is_small,
    safe_attrition,
    sanitize_json,
    suppress_chain,
    suppress_table,
)

__all__ = [
    "DEFAULT_THRESHOLD", "IDENTIFIER_NAMES", "Violation", "check_disclosure", "check_file", "coarsen_at_risk", "coarsen_cif_steps",
    "fmt_count", "is_count_name", "is_small", "safe_attrition", "sanitize_json", "suppress_chain", "suppress_table",
]
