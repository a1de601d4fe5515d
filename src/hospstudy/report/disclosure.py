"""Deprecated location (until hospstudy 0.3): the disclosure rules and the checker moved below the
stages, to :mod:`hospstudy.privacy`. Import from there."""

import warnings as _w

from hospstudy.privacy.checker import *  # noqa: F401,F403
from hospstudy.privacy.checker import _check_cell, _check_free_text, _private_ids  # noqa: F401
from hospstudy.privacy.rules import *  # noqa: F401,F403
from hospstudy.privacy.rules import DEFAULT_THRESHOLD, IDENTIFIER_NAMES  # noqa: F401

_w.warn("hospstudy.report.disclosure moved to hospstudy.privacy", DeprecationWarning, stacklevel=2)
