"""pytest plugin: record the largest actual difference of every tolerance comparison.

Wraps ``np.testing.assert_allclose`` and ``pytest.approx`` (the tests' assertions still run
unchanged) and writes one JSON record per comparison: the test file and line, the largest
absolute and relative difference, and the tolerance asserted. Used to set the reference
tests' tolerances and the table in docs/statistics.md ("Tolerances and measured agreement"):

    PYTHONPATH=tools TOLERANCE_PROBE_OUT=/tmp/probe.json .venv/bin/pytest -p tolerance_probe \\
        -n 0 -q tests/test_*_reference.py tests/test_competing_three_state.py
    .venv/bin/python tools/tolerance_probe.py /tmp/probe.json     # table by test line

Comparisons written as ``abs(a - b) < tol`` are not seen.
"""

from __future__ import annotations

import inspect
import json
import os
import sys

import numpy as np

RECORDS: list[dict] = []


def _site() -> str:
    f = inspect.currentframe()
    while f is not None and "/tests/test_" not in f.f_code.co_filename.replace(os.sep, "/"):
        f = f.f_back
    return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}" if f is not None else "?"


def _record(actual, desired, atol, rtol, kind: str, site: str) -> None:
    try:
        a, d = np.broadcast_arrays(np.asarray(actual, float), np.asarray(desired, float))
    except (TypeError, ValueError):
        return
    keep = ~(np.isnan(a) & np.isnan(d))
    diff = np.abs(a[keep] - d[keep])
    rel = diff / np.maximum(np.abs(d[keep]), np.finfo(float).tiny)
    RECORDS.append({"site": site, "kind": kind, "abs": float(diff.max(initial=0)),
                    "rel": float(rel.max(initial=0)), "atol": atol, "rtol": rtol})


def pytest_configure(config):
    import pytest

    orig_allclose, orig_approx = np.testing.assert_allclose, pytest.approx

    def assert_allclose(actual, desired, rtol=1e-7, atol=0, *args, **kwargs):
        _record(actual, desired, atol, rtol, "allclose", _site())
        return orig_allclose(actual, desired, rtol, atol, *args, **kwargs)

    class Approx:
        __hash__ = None

        def __init__(self, expected, rel=None, abs=None, **kwargs):
            self.inner = orig_approx(expected, rel=rel, abs=abs, **kwargs)
            self.expected, self.rel, self.abs, self.site = expected, rel, abs, _site()

        def __eq__(self, actual):
            _record(actual, self.expected, self.abs, self.rel, "approx", self.site)
            return self.inner == actual

        def __repr__(self):
            return repr(self.inner)

    np.testing.assert_allclose = assert_allclose
    pytest.approx = Approx


def pytest_sessionfinish(session):
    with open(os.environ.get("TOLERANCE_PROBE_OUT", "tolerance_probe.json"), "w") as fh:
        json.dump(RECORDS, fh, indent=0)


def main(path: str) -> None:
    import pandas as pd

    r = pd.DataFrame(json.load(open(path)))
    g = r.groupby("site", sort=False).agg(n=("abs", "size"), max_abs=("abs", "max"), max_rel=("rel", "max"),
                                          atol=("atol", "first"), rtol=("rtol", "first"))
    print(g.to_string(float_format=lambda x: f"{x:.2g}"))


if __name__ == "__main__":
    main(sys.argv[1])
