"""What the benchmark scripts share: a best-of-N timer and the table a script prints when run alone."""

from __future__ import annotations

import time


def best_of(f, repeat: int = 3):
    """Best wall time of ``repeat`` calls of ``f`` and the last call's result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t0)
    return best, out


def print_rows(rows: list[dict]) -> None:
    """The rows as the markdown table bench/run.py writes (for ``python bench/bench_x.py``)."""
    print("| area | case | metric | value | unit | note |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        v = r.get("value")
        v = f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else v
        print(f"| {r.get('area', '')} | {r.get('case', '')} | {r.get('metric', '')} | {v} | {r.get('unit', '')} | {r.get('note', '')} |")
