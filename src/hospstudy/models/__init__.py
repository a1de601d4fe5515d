"""The models: one public function per model, each returning a result with ``tidy()`` (the
coefficient table), ``glance()`` (one row: N, events, clusters, log-likelihood, ...) and
``summary()``.

>>> from hospstudy.models import logit, mixed_logit, gee_logit   # doctest: +SKIP

Across the functions one argument name means one thing: ``cluster`` is the hospital (the
clustering column, for random intercepts, GEE and cluster-robust errors), ``weights`` prior or
inverse-probability weights, ``conf_level`` the interval level, ``max_iter`` and ``tol`` the
iteration limits. Every fit runs with BLAS on one thread (see
:func:`hospstudy.models.base.single_threaded_blas`).

The functions are imported on first use, so ``import hospstudy.models`` stays light.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "logit": "glm",
    "mixed_logit": "mixed",
    "gee_logit": "gee",
    "cause_specific_cox": "competing",
    "fine_gray": "competing",
    "cumulative_incidence": "competing",
    "propensity_weights": "weighting",
    "weighted_logit": "weighting",
    "balance_table": "weighting",
    "risk_standardized_rates": "profiling",
    "hospital_profiles": "profiling",
    "funnel_limits": "profiling",
    "volume_curve": "splines",
    "rcs": "splines",
    "quartiles": "splines",
    "cochran_armitage": "trends",
    "jonckheere_terpstra": "trends",
    "trend_table": "trends",
    "evalue": "evalue",
    "add_evalues": "evalue",
    "run_analyses": "analyses",
    "ModelResult": "base",
    "MixedLogitResult": "mixed",
    "single_threaded_blas": "base",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"hospstudy.models.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hospstudy.models' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
