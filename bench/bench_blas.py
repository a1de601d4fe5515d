"""BLAS threads inside the model functions (issue 11, class 16).

The model functions run with BLAS on one thread (``hospstudy.models.base.model_function``).
Before, only the analysis runner set that limit, so the same fit called from a notebook ran
with every BLAS thread. This times each fit both ways in one run, as a notebook calls it (no
outer limit, no OPENBLAS_NUM_THREADS): ``before`` is the undecorated function
(``f.__wrapped__``, the code as it was), ``after`` the public one.

Run alone: ``python bench/bench_blas.py``.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, print_rows  # noqa: E402
from bench_mixed import make_data  # noqa: E402

AREA = "blas"


def run() -> list[dict]:
    from threadpoolctl import threadpool_info

    from hospstudy.models import gee_logit, logit, mixed_logit

    d, covs = make_data(n=10_000, hospitals=800)
    formula = "death_30d ~ " + " + ".join(covs)
    blas = [f"{i.get('internal_api')} {i.get('num_threads')} threads" for i in threadpool_info() if i.get("user_api") == "blas"]
    env = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    cases = {
        "logit": lambda f: f(formula, d, cluster="hospital_id"),
        "gee_logit (exchangeable)": lambda f: f(formula, d, cluster="hospital_id"),
        "mixed_logit (Laplace)": lambda f: f(formula, d, cluster="hospital_id"),
    }
    funcs = {"logit": logit, "gee_logit (exchangeable)": gee_logit, "mixed_logit (Laplace)": mixed_logit}
    rows = []
    for case, call in cases.items():
        f = funcs[case]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call(f)  # warm-up
            before, a = best_of(lambda: call(f.__wrapped__), repeat=3)
            after, b = best_of(lambda: call(f), repeat=3)
        assert np.allclose(a.estimate, b.estimate, rtol=1e-8, atol=1e-10)
        note = f"10,000 rows, 800 hospitals, {len(covs)} covariates; BLAS: {', '.join(blas) or 'none found'}; OPENBLAS_NUM_THREADS={env}"
        rows.append({"area": AREA, "case": case, "metric": "before: BLAS threads as loaded (best of 3)",
                     "value": round(before, 3), "unit": "s", "note": note})
        rows.append({"area": AREA, "case": case, "metric": "after: one BLAS thread inside the function (best of 3)",
                     "value": round(after, 3), "unit": "s", "note": f"before/after = {before / after:.2f}"})
    return rows


if __name__ == "__main__":
    print_rows(run())
