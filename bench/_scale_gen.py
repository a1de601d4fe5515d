"""Generate a synthetic database for bench/bench_scale.py in this process and print what it
cost as JSON (wall time, CPU time, peak RSS of this process alone): ``python bench/_scale_gen.py OUT SCALE``.

The record is also written to OUT/../OUT.generate.json so a later bench run that reuses the
database (scale 40 takes many minutes) reports the generation it measured, with its date."""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import sys
import time
from pathlib import Path


def main() -> None:
    out, scale = Path(sys.argv[1]), float(sys.argv[2])
    from hospstudy.data.synth import generate

    t0, c0 = time.perf_counter(), time.process_time()
    s = generate(out, seed=20240601, scale=scale, overwrite=True)
    s["wall_s"] = time.perf_counter() - t0
    s["cpu_s"] = time.process_time() - c0
    s["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s["disk_mib"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    s["measured"] = f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    s["load_average_end"] = os.getloadavg()[0]
    Path(str(out) + ".generate.json").write_text(json.dumps(s, indent=1))
    print(json.dumps(s))


if __name__ == "__main__":
    main()
