"""`make bench`: run every benchmark and write bench/RESULTS.md.

Each benchmark module (bench/bench_*.py, and bench/coverage.py for the replicate study)
exposes ``run() -> list[dict]`` with rows (area, case, metric, value, unit, note). RESULTS.md
keeps one section per area with the date, machine and command that measured it, so a partial
run (``BENCH_ONLY=cohort,mixed make bench``) replaces only its own sections. Timings vary up
to 2x between runs on shared machines (ENGINE_NOTES.md): compare ratios measured in one run.
BENCH_FULL=1 adds the slow full-scale cases (scale 10, 50 M billing lines).
BENCH_SCALE40=1 adds the nationwide size to bench_scale.py (scale 40: generated once into
bench/_work, about 15 minutes and 8 GB of disk; then the cohort on DuckDB and the whole run).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import platform
import re
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
HEADER = """# Benchmark results

Written by `make bench` (bench/run.py). One section per area, each with the date, machine and
command that measured it; rerun one area with `BENCH_ONLY=area make bench`. Timings on shared
2-core machines vary up to 2x between runs: compare ratios within one section.
"""


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
    load = ""
    try:
        load = " · load average " + Path("/proc/loadavg").read_text().split()[0] + " at start"
    except OSError:
        pass
    return f"{cpu} · {os.cpu_count()} cores · {mem} · Python {platform.python_version()}{load}"


def _fmt(v) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def _section(area: str, rows: list[dict], when: str, seconds: float, error: str | None, summary=()) -> str:
    full = "".join(f" {k}=1" for k in ("BENCH_FULL", "BENCH_SCALE40") if os.environ.get(k))
    lines = [
        f"## {area}",
        "",
        f"- measured: {when} · {seconds:.0f} s",
        f"- machine: {machine()}",
        f"- command: `BENCH_ONLY={area}{full} make bench`",
        *(f"- {line}" for line in summary),
        "",
    ]
    if rows:
        lines += ["| case | metric | value | unit | note |", "|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r.get('case','')} | {r.get('metric','')} | {_fmt(r.get('value'))} | "
                         f"{r.get('unit','')} | {r.get('note','')} |")
    if error:
        lines += ["", f"**failed:** `{error}`"]
    return "\n".join(lines) + "\n"


def _existing_sections() -> dict[str, str]:
    if not RESULTS.exists():
        return {}
    text = RESULTS.read_text()
    parts = re.split(r"(?m)^## ", text)
    # each section ends with exactly one newline, so the blank line between sections stays one
    return {p.split("\n", 1)[0].strip(): "## " + p.rstrip("\n") + "\n" for p in parts[1:]}


def modules() -> list[tuple[str, Path]]:
    found = [(p.stem.removeprefix("bench_"), p) for p in sorted(HERE.glob("bench_*.py"))]
    if (HERE / "coverage.py").exists():
        found.append(("coverage", HERE / "coverage.py"))
    return found


def main() -> int:
    only = {s.strip() for s in os.environ.get("BENCH_ONLY", "").split(",") if s.strip()}
    sys.path.insert(0, str(HERE))
    sections = _existing_sections()
    failed = 0
    for area, path in modules():
        if only and area not in only:
            continue
        print(f"== {area} ({path.name})", flush=True)
        t0 = time.perf_counter()
        when = f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
        rows, error, summary = [], None, []
        try:
            spec = importlib.util.spec_from_file_location(f"_bench_{area}", path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mod
            spec.loader.exec_module(mod)
            rows = list(mod.run())
            # a module may state its goals against the rows just measured (computed, not typed)
            summary = list(mod.summary(rows)) if hasattr(mod, "summary") else []
        except Exception as e:
            failed += 1
            error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        seconds = time.perf_counter() - t0
        sections[area] = _section(area, rows, when, seconds, error, summary)
        print(f"   {len(rows)} rows in {seconds:.0f} s", flush=True)
        RESULTS.write_text(HEADER + "\n" + "\n".join(sections[k] for k in sorted(sections)))
    print(f"wrote {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
