"""`make bench`: run every bench/bench_*.py and write bench/RESULTS.md.

Each benchmark module exposes ``run() -> list[dict]`` with rows (area, case, metric, value,
unit, note). Timings vary up to 2x between runs on shared machines (ENGINE_NOTES.md): compare
ratios measured in one run. Set BENCH_FULL=1 for the slow full-scale cases; BENCH_ONLY=synth,cohort
runs only those areas.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{platform.node()} · {cpu} · {os.cpu_count()} cores · {mem} · Python {platform.python_version()} · {platform.platform()}"


def main() -> int:
    only = {s.strip() for s in os.environ.get("BENCH_ONLY", "").split(",") if s.strip()}
    sys.path.insert(0, str(HERE))
    rows, failures = [], []
    for path in sorted(HERE.glob("bench_*.py")):
        area = path.stem.removeprefix("bench_")
        if only and area not in only:
            continue
        print(f"== {path.name}", flush=True)
        t0 = time.perf_counter()
        try:
            spec = importlib.util.spec_from_file_location(path.stem, path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            got = mod.run()
        except Exception:
            failures.append((path.name, traceback.format_exc()))
            print(failures[-1][1], file=sys.stderr)
            continue
        for r in got:
            r.setdefault("area", area)
        rows.extend(got)
        print(f"   {len(got)} rows in {time.perf_counter() - t0:.0f} s", flush=True)
    out = [
        "# Benchmark results",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- machine: {machine()}",
        f"- command: `make bench`{' with BENCH_FULL=1' if os.environ.get('BENCH_FULL') else ''}"
        f"{' BENCH_ONLY=' + ','.join(sorted(only)) if only else ''}",
        "",
        "| area | case | metric | value | unit | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        v = r.get("value")
        v = f"{v:,.3g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
        out.append(f"| {r.get('area','')} | {r.get('case','')} | {r.get('metric','')} | {v} | {r.get('unit','')} | {r.get('note','')} |")
    for name, tb in failures:
        out += ["", f"**{name} failed:**", "", "```", tb.strip().splitlines()[-1], "```"]
    (HERE / "RESULTS.md").write_text("\n".join(out) + "\n")
    print(f"wrote {HERE / 'RESULTS.md'}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
