"""Benchmark `hospstudy import-dpc`: EF lines per second and peak memory at two input sizes, and
the import's share of a full study run.

Writes EF-like raw input in CP932 with CRLF (31 tab-separated fields, Japanese item names, 20
EF lines per stay, both EF layouts: FY2015 and FY2016 files) and the matching Form 1 (4 lines
per stay) and facilities.csv, then imports it in a fresh process that reports its peak RSS, its
CPU seconds and those of each phase. 1,000,000, 5,000,000 and 20,000,000 EF lines with DuckDB's
memory limit at the import's default (1GB), and 5,000,000 again at 512MB: the peak is the limit
plus the reader's share, so it stops growing once DuckDB's work tables reach the limit
(BENCH_FULL=1 adds 50,000,000).

Share of a study run: ``hospstudy synth --format dpc-raw --scale 0.2`` (the synthetic world as raw
files), ``hospstudy import-dpc`` of them, then ``hospstudy run studies/spinal_metastasis.toml`` on
the imported database (no cache): share = import / (import + run), in wall and CPU seconds.

    python bench/bench_import.py          # prints a markdown table
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_rows  # bench/ is on sys.path: the script's folder, or run.py puts it there

from hospstudy.data.dpc.ef import PATIENT_BYTES, STAY_BYTES

FULL = os.environ.get("BENCH_FULL") == "1"
SHARE_SCALE = 0.2
ROOT = Path(__file__).resolve().parent.parent
# EF lines -> the DuckDB memory limits to import them with ("1GB/3 passes": 1GB, the stays' budget
# forced down so that EF is read in 3 passes, as past ~20M stays at 1GB; "/by hospital": the EF
# lines of the same input ordered by hospital, as the Ministry's per-hospital files, where the
# first pass reads only the keys of the blocks none of whose lines is its and the passes after it
# pass over the blocks holding none of their patients)
SIZES = {1_000_000: ["1GB"], 5_000_000: ["1GB", "512MB", "1GB/3 passes", "1GB/3 passes/by hospital"],
         20_000_000: ["1GB", "1GB/3 passes"], **({50_000_000: ["1GB"]} if FULL else {})}
EF_PER_STAY = 20
HOSPITALS = 200

_CHILD = r"""
import json, resource, sys, time
from hospstudy.data.dpc import import_dpc, importer
if len(sys.argv) > 5:  # the stays' budget in bytes (forces EF to be read in passes)
    importer.stays_budget = lambda limit, b=int(sys.argv[5]): b
t0 = time.perf_counter()
r = import_dpc(sys.argv[1], sys.argv[2], sys.argv[3], show_progress=False, memory_limit=sys.argv[4])
secs = time.perf_counter() - t0
me, ch = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
# VmHWM, not ru_maxrss: Linux carries a forked child's pre-exec peak (the bench process, which
# has just built the input with DuckDB: 3.7 GB at 20M lines) into ru_maxrss
hwm = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM"))
print(json.dumps({"seconds": secs, "rss_mib": hwm / 1024, "cpu_s": me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime,
                  "lines": r.lines, "tables": r.tables, "timings": r.report["timings"], "cpu": r.report["cpu_seconds"],
                  "exit": r.exit_code, "passes": r.report["ef_passes"], "skipped": r.report["ef_blocks_skipped"],
                  "keys_only": r.report["ef_blocks_keys_only"]}))
"""


def _to_cp932(src: Path, dest: Path) -> None:
    """UTF-8 LF text -> CP932 CRLF, in blocks."""
    with open(src, "rb") as fi, open(dest, "wb") as fo:
        rest = b""
        while True:
            b = fi.read(32 << 20)
            if not b:
                break
            b = rest + b
            cut = b.rfind(b"\n") + 1
            rest = b[cut:]
            fo.write(b[:cut].decode("utf-8").replace("\n", "\r\n").encode("cp932"))
        if rest:
            fo.write(rest.decode("utf-8").encode("cp932"))
    src.unlink()


def build(folder: Path, ef_lines: int, by_hospital: bool = False) -> None:
    """Raw Form 1 and EF files of ``ef_lines`` EF lines, a file per kind and fiscal year, the
    hospitals' stays interleaved (or, ``by_hospital``, the EF lines ordered by hospital)."""
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    stays = ef_lines // EF_PER_STAY
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    with open(folder / "facilities.csv", "w") as fh:
        fh.write("facility_code,fiscal_year,cancer_center,beds,teaching,region\n")
        for h in range(HOSPITALS):
            for fy in (2015, 2016):
                fh.write(f"{100000001 + h},{fy},{int(h % 5 == 0)},{200 + h},{int(h % 7 == 0)},region {h % 47}\n")
    con.execute(f"""CREATE TABLE s AS SELECT i,
        (100000001 + i % {HOSPITALS})::VARCHAR AS fac, lpad((i // {HOSPITALS})::VARCHAR, 10, '0') AS did,
        DATE '2015-04-01' + (i * 700 // {stays})::INTEGER AS adm, (3 + i % 25)::INTEGER AS los
        FROM range({stays}) r(i)""")
    for fy, lo, hi, flag in ((2015, "2015-04-01", "2016-03-31", "0"), (2016, "2016-04-01", "2017-03-31", "000000000000")):
        where = f"adm BETWEEN DATE '{lo}' AND DATE '{hi}'"
        con.execute(f"""COPY (
          SELECT concat_ws(chr(9), fac, did, strftime(adm, '%Y%m%d'), '1', '0', code, '20140401', '1', p1, p2, p3, '', p5, p6, '', '', p9)
          FROM (
            SELECT fac, did, adm, 'A000010' AS code, '19500101' AS p1, '1' AS p2, '1000001' AS p3, '' AS p5, '' AS p6, '' AS p9, i, 1 AS o FROM s WHERE {where}
            UNION ALL SELECT fac, did, adm, 'A000020', strftime(adm, '%Y%m%d'), '1', '0', '200', '1', '', i, 2 FROM s WHERE {where}
            UNION ALL SELECT fac, did, adm, 'A000030', strftime(adm + los, '%Y%m%d'), '1', '1', '', '', '', i, 3 FROM s WHERE {where}
            UNION ALL SELECT fac, did, adm, 'A006010', '', 'C795', '', '', '', '転移性胸椎腫瘍', i, 4 FROM s WHERE {where}
          ) ORDER BY i, o) TO '{folder}/FF1_{fy}.utf8' (FORMAT csv, HEADER false, QUOTE '', DELIMITER chr(1))""")
        con.execute(f"""COPY (
          SELECT concat_ws(chr(9), fac, did, strftime(adm + los, '%Y%m%d'), strftime(adm, '%Y%m%d'),
                 CASE WHEN k % 4 = 0 THEN '21' WHEN k % 4 = 1 THEN '90' WHEN k % 4 = 2 THEN '80' ELSE '60' END,
                 lpad(k::VARCHAR, 4, '0'), '001',
                 CASE WHEN k % 4 = 0 THEN '6200000' || lpad((k % 90)::VARCHAR, 2, '0') ELSE '19007741' || (k % 10) END,
                 CASE WHEN k % 4 = 0 THEN '6200000' || lpad((k % 90)::VARCHAR, 2, '0') ELSE '19007741' || (k % 10) END,
                 CASE WHEN k % 4 = 2 THEN 'H002' ELSE 'A100' END,
                 CASE WHEN k % 4 = 0 THEN 'ロキソプロフェンナトリウム錠６０ｍｇ' ELSE '急性期一般入院料１' END,
                 (1 + k % 3)::VARCHAR, '錠', '1650', '0', '1650', '{flag}', '1650', '0', '0', '1', '06139999', '1112',
                 strftime(adm + (k % los)::INTEGER, '%Y%m%d'), '00', '010', '0000012345', '0101', '0', '0', '001')
          FROM s, range({EF_PER_STAY}) r(k) WHERE {where} ORDER BY {"fac, " if by_hospital else ""}i, k
        ) TO '{folder}/EFn_{fy}.utf8' (FORMAT csv, HEADER false, QUOTE '', DELIMITER chr(1))""")
    con.close()
    for p in sorted(folder.glob("*.utf8")):
        _to_cp932(p, p.with_suffix(".txt"))


def run() -> list[dict]:
    rows = host_reference()
    load = os.getloadavg()[0]
    peaks = {}
    for n, limits in SIZES.items():
        with tempfile.TemporaryDirectory(prefix="hospstudy-bench-import-") as tmp:
            raw = Path(tmp) / "raw"
            t0 = time.perf_counter()
            build(raw, n)
            t_build = time.perf_counter() - t0
            # the input just written goes to disk before the import is timed: at 50M lines its
            # 10 GB of dirty pages otherwise competed with the import's reads (detect 7.5 s wall
            # instead of 0.3, EF reading 26.8 s instead of ~22; 2026-12-06)
            os.sync()
            size = sum(p.stat().st_size for p in raw.glob("*.txt"))
            for limit in limits:
                mem, _, passes = limit.partition("/")
                passes, _, order = passes.partition("/")
                src = raw
                if order:  # the same lines, EF ordered by hospital
                    src = Path(tmp) / "raw_by_hospital"
                    if not src.exists():
                        build(src, n, by_hospital=True)
                        os.sync()
                # the stays' arrays' bytes (here one patient per stay) over the passes wanted
                need = (STAY_BYTES + PATIENT_BYTES) * (n // EF_PER_STAY)
                budget = [str(need // int(passes.split()[0]) + 1)] if passes else []
                p = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(src / "facilities.csv"), str(Path(tmp) / f"db_{len(rows)}"),
                                    mem] + budget, capture_output=True, text=True)
                if p.returncode != 0:
                    raise RuntimeError(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "import failed")
                res = json.loads(p.stdout.strip().splitlines()[-1])
                ef = res["tables"]["billing"]
                case = f"{n:,} EF lines ({size / 2**20:,.0f} MiB CP932 incl. Form 1), memory limit {limit}"
                peaks[(n, limit)] = res["rss_mib"]
                assert res["exit"] == 0 and ef == n and res["passes"] == (int(passes.split()[0]) if passes else 1), res
                rows += [
                    {"area": "import", "case": case, "metric": "wall time", "value": round(res["seconds"], 1), "unit": "s",
                     "note": f"phases {res['timings']}; input built in {t_build:.0f} s; load average {load:.1f} at start"},
                    {"area": "import", "case": case, "metric": "EF lines per second", "value": int(n / res["seconds"]), "unit": "lines/s",
                     "note": f"all raw lines (EF + Form 1) {int(res['lines']['total'] / res['seconds']):,}/s"},
                    {"area": "import", "case": case, "metric": "EF lines per CPU second", "value": int(n / res["cpu_s"]), "unit": "lines/s",
                     "note": f"{res['cpu_s']:.1f} CPU s, every thread; per phase {res['cpu']}: what 1 core does, less sensitive to the machine's load"},
                    {"area": "import", "case": case, "metric": "peak RSS", "value": round(res["rss_mib"]), "unit": "MiB",
                     "note": f"VmHWM of one process (Arrow reader and typing in a pool of 2 threads; DuckDB memory_limit {mem}; "
                             f"EF read in {res['passes']} pass(es)"
                             + (f"; the first pass read only the keys of {res['keys_only']:,} blocks, the later passes passed over "
                                f"{res['skipped']:,}" if res["passes"] > 1 else "") + ")"},
                ]
                for r in rows[-4:]:
                    r.update(ef_lines=n, limit=limit)  # for summary(); not printed
    sizes = sorted({n for n, lim in peaks if lim == "1GB"})
    for a, b in zip(sizes, sizes[1:]):
        rows.append({"area": "import", "case": f"growth {a:,} -> {b:,} EF lines (memory limit 1GB)", "metric": "peak RSS ratio",
                     "value": round(peaks[(b, "1GB")] / peaks[(a, "1GB")], 2), "unit": "x",
                     "note": f"input {b / a:.0f}x; {peaks[(a, '1GB')]:,.0f} -> {peaks[(b, '1GB')]:,.0f} MiB"})
    rows += share()
    return rows


def host_reference() -> list[dict]:
    """Fixed single-thread work like the import's, timed before it (best of 3): the same code ran
    1.6-1.8x slower on this kind of machine at 23:10 UTC than at 15:57 on 2026-12-06 (bench_validate's
    cases, both 'AMD EPYC, 2 cores'), so a run's throughput is read beside its host's speed."""
    import duckdb
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    line = "\t".join(["100000001", "0000000001", "20150420", "20150401", "21", "0001", "001", "620000001", "620000001",
                      "A100", "ロキソプロフェン", "1", "錠", "1650", "0", "1650", "0", "1650", "0", "0", "1", "06139999", "1112",
                      "20150402", "00", "010", "0000012345", "0101", "0", "0", "001"]).encode("cp932") + b"\r\n"
    data = pa.py_buffer(line * 200_000)
    opts = (pcsv.ReadOptions(column_names=[f"f{k}" for k in range(31)], use_threads=False, block_size=data.size + 1),
            pcsv.ParseOptions(delimiter="\t", quote_char=False), pcsv.ConvertOptions(column_types={f"f{k}": pa.binary() for k in range(31)}))
    values = np.random.default_rng(0).random(5_000_000)
    con = duckdb.connect()
    con.execute("SET threads = 1")

    def best(fn) -> float:
        out = []
        for _ in range(3):
            t0 = time.process_time()
            fn()
            out.append(time.process_time() - t0)
        return min(out)

    work = {
        "Arrow CSV parse, 200,000 EF lines (31 fields)": lambda: pcsv.read_csv(data, *opts),
        "numpy sort, 5,000,000 doubles": lambda: np.sort(values),
        "DuckDB sort, 5,000,000 rows (1 thread)": lambda: con.execute(
            "CREATE OR REPLACE TEMP TABLE sorted AS SELECT hash(i) AS x FROM range(5000000) t(i) ORDER BY x"),
    }
    return [{"area": "import", "case": f"host reference: {name}", "metric": "CPU time (best of 3)", "value": round(best(fn), 3),
             "unit": "s", "note": "fixed single-thread work: compare hosts and days by it"} for name, fn in work.items()]


def summary(rows: list[dict]) -> list[str]:
    """The issue's goals against this run's rows."""
    def val(metric, limit="1GB"):
        return {r["ef_lines"]: r["value"] for r in rows if r["metric"] == metric and r.get("limit") == limit}

    speed, peak = val("EF lines per second"), val("peak RSS")
    out = []
    if speed:
        met = [n for n, v in sorted(speed.items()) if v >= 1e6]
        short = [f"{n:,} ({1e6 / v:.2f}x short)" for n, v in sorted(speed.items()) if v < 1e6]
        verdict = ("met at every size" if not short else
                   f"met at {', '.join(f'{n:,}' for n in met)} EF lines, not at {', '.join(short)}" if met else "not met at any size")
        out.append(f"goal (issue 9) at least 1,000,000 EF lines per wall second on 2 cores: {verdict}; "
                   + ", ".join(f"{v:,} at {n:,}" for n, v in sorted(speed.items())))
    if peak:
        sizes = sorted(peak)
        out.append(f"goal peak memory at most 2 GB: {'met' if max(peak.values()) <= 2048 else 'not met'} (largest {max(peak.values()):,} MiB); "
                   f"as the input grows ({' / '.join(f'{n:,}' for n in sizes)} EF lines): "
                   + " / ".join(f"{peak[n]:,} MiB" for n in sizes)
                   + f"; it grows until DuckDB's work tables reach the memory limit, then by {peak[sizes[-1]] / peak[sizes[-2]]:.2f}x "
                   f"for {sizes[-1] / sizes[-2]:g}x the input" * (len(sizes) > 2))
    return out


def _timed(args: list, cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds (the command and everything it ran) of one command."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(map(str, args[2:4]))}: exit {p.returncode}: {(p.stderr.strip().splitlines() or [''])[-1]}")
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def share() -> list[dict]:
    """The import's share of a full study run on the synthetic world written as raw files."""
    load = os.getloadavg()[0]
    hs = [sys.executable, "-m", "hospstudy"]
    with tempfile.TemporaryDirectory(prefix="hospstudy-bench-share-") as tmp:
        tmp = Path(tmp)
        subprocess.run(hs + ["synth", "--format", "dpc-raw", "--scale", str(SHARE_SCALE), "--out", str(tmp / "raw")],
                       check=True, capture_output=True)
        ef = sum(1 for p in (tmp / "raw").rglob("EFn_*") for _ in open(p, "rb"))
        size = sum(p.stat().st_size for p in (tmp / "raw").rglob("*") if p.is_file())
        imp = _timed(hs + ["import-dpc", str(tmp / "raw"), "--facilities", str(tmp / "raw" / "facilities.csv"), "--out", str(tmp / "db")], tmp)
        run = _timed(hs + ["run", str(ROOT / "studies" / "spinal_metastasis.toml"), "--data", str(tmp / "db"), "--out", str(tmp / "out")], tmp)
    case = f"synth --format dpc-raw --scale {SHARE_SCALE}: {ef:,} EF lines ({size / 2**20:,.0f} MiB), then the flagship study"
    note = (f"import {imp[0]:.0f} s wall / {imp[1]:.0f} CPU s; run studies/spinal_metastasis.toml {run[0]:.0f} s wall / "
            f"{run[1]:.0f} CPU s (no cache); load average {load:.1f} at start")
    return [
        {"area": "import", "case": case, "metric": "import share of import + run (wall)", "value": round(100 * imp[0] / (imp[0] + run[0]), 1),
         "unit": "%", "note": note},
        {"area": "import", "case": case, "metric": "import share of import + run (CPU)", "value": round(100 * imp[1] / (imp[1] + run[1]), 1),
         "unit": "%", "note": "CPU seconds of each command and its child processes"},
    ]


if __name__ == "__main__":
    print_rows(run())
