"""Benchmark `hospstudy validate`: wall time and peak memory on a large billing table.

Builds a DPC-layout database with DuckDB (1,700 hospitals x 9 fiscal years, one admission per
20 billing lines, billing hive-partitioned by fiscal year, a few planted errors), then
validates it in a fresh process that reports its own peak RSS. 5,000,000 billing lines by
default, 50,000,000 with BENCH_FULL=1; plus the same tables as CSV (CP932) at 1,000,000 lines.

    python bench/bench_validate.py          # prints a markdown table
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_rows  # bench/ is on sys.path: the script's folder, or run.py puts it there

FULL = os.environ.get("BENCH_FULL") == "1"
LINES = 50_000_000 if FULL else 5_000_000
CSV_LINES = 1_000_000
LINES_PER_ADMISSION = 20

_CHILD = r"""
import json, resource, sys, time
from hospstudy.data.validate import validate_database
t0 = time.perf_counter()
rep = validate_database(sys.argv[1], progress=False)
secs = time.perf_counter() - t0
print(json.dumps({"seconds": secs, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "findings": {f"{f.rule}:{f.table}": f.count for f in rep.findings},
                  "rows": {k: v["rows"] for k, v in rep.tables.items()}}))
"""


def build(folder: Path, lines: int, csv: bool = False) -> dict:
    """Write the benchmark database into ``folder``; returns the planted error counts."""
    import duckdb

    n_adm = lines // LINES_PER_ADMISSION
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    fmt = "(FORMAT csv, HEADER)" if csv else "(FORMAT parquet, COMPRESSION zstd)"
    ext = "csv" if csv else "parquet"
    con.execute(f"""COPY (SELECT (h + 1)::INTEGER AS hospital_id, fy::SMALLINT AS fiscal_year,
        (h % 4 = 0) AS cancer_center, (100 + h % 900)::INTEGER AS beds, (h % 7 = 0) AS teaching,
        'region ' || (h % 47) AS region
        FROM range(1700) r(h), range(2012, 2021) y(fy)) TO '{folder}/facilities.{ext}' {fmt}""")
    con.execute(f"""CREATE TABLE adm AS SELECT 'A' || i AS admission_id, 'P' || (i % ({n_adm} // 2)) AS patient_id,
        (1 + hash(i) % 1700)::INTEGER AS hospital_id,
        DATE '2012-04-01' + ((i * 3287) // {n_adm})::INTEGER AS admit_date,
        (hash(i * 7) % 40)::INTEGER AS los, i FROM range({n_adm}) r(i)""")
    con.execute(f"""COPY (SELECT admission_id, patient_id, hospital_id, admit_date,
        admit_date + los AS discharge_date, (20 + hash(i) % 80)::SMALLINT AS age,
        CASE WHEN i % 2 = 0 THEN 'M' ELSE 'F' END AS sex, (i % 3 = 0) AS emergency, (i % 5 = 0) AS ambulance,
        CASE WHEN i % 20 = 0 THEN 'death' ELSE 'home' END AS discharge_to,
        (150 + hash(i) % 40)::FLOAT AS height_cm, (45 + hash(i * 3) % 40)::FLOAT AS weight_kg,
        0::SMALLINT AS jcs, '2312132222' AS adl_adm, '2312132222' AS adl_dis,
        CASE WHEN i % 10 = 0 THEN 'lumbar' END AS spinal_level FROM adm)
        TO '{folder}/admissions.{ext}' {fmt}""")
    con.execute(f"""COPY (SELECT admission_id, CASE WHEN i % 3 = 0 THEN 'C795' ELSE 'M4806' END AS icd10,
        'main' AS role FROM adm) TO '{folder}/diagnoses.{ext}' {fmt}""")
    con.execute(f"""COPY (SELECT admission_id, 'K1422' AS proc_code, admit_date + 1 AS proc_date FROM adm
        WHERE i % 4 = 0 AND los >= 1) TO '{folder}/procedures.{ext}' {fmt}""")
    # Planted: every 100,003rd line dated after discharge; every 250,007th an unknown admission.
    billing = f"""SELECT CASE WHEN j % 250007 = 0 THEN 'X' || j ELSE a.admission_id END AS admission_id,
        a.admit_date + CAST(CASE WHEN j % 100003 = 0 THEN a.los + 1
            ELSE (j % {LINES_PER_ADMISSION}) % (a.los + 1) END AS INTEGER) AS service_date,
        CASE j % 6 WHEN 0 THEN 'drug' WHEN 1 THEN 'procedure' WHEN 2 THEN 'radiotherapy' WHEN 3 THEN 'transfusion'
            WHEN 4 THEN 'rehabilitation' ELSE 'other' END AS kind,
        (620000000 + j % 9973)::VARCHAR AS code, (1 + j % 3)::FLOAT AS quantity,
        (year(a.admit_date) - (month(a.admit_date) < 4)::INTEGER) AS fiscal_year
        FROM range({lines}) r(j) JOIN adm a ON a.i = j // {LINES_PER_ADMISSION}"""
    if csv:
        con.execute(f"COPY (SELECT * EXCLUDE (fiscal_year) FROM ({billing})) TO '{folder}/billing.csv' {fmt}")
    else:
        con.execute(f"COPY ({billing}) TO '{folder}/billing' (FORMAT parquet, COMPRESSION zstd, "
                    "PARTITION_BY (fiscal_year), OVERWRITE_OR_IGNORE)")
    con.close()
    if csv:
        # DPC exports are often CP932: rewrite the facilities table with Japanese region names.
        text = (folder / "facilities.csv").read_text().replace("region ", "都道府県")
        (folder / "facilities.csv").write_bytes(text.encode("cp932"))
    return {"billing_in_stay": (lines - 1) // 100003 + 1 - ((lines - 1) // (100003 * 250007) + 1),
            "admission_exists": (lines - 1) // 250007 + 1}


def _validate(folder: Path, memory_limit: str | None = None) -> dict:
    env = dict(os.environ)
    if memory_limit:
        env["HOSPSTUDY_MEMORY_LIMIT"] = memory_limit
    r = subprocess.run([sys.executable, "-c", _CHILD, str(folder)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout)


def run() -> list[dict]:
    note_machine = f"{platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        for label, lines, csv in ((f"parquet, {LINES:,} billing lines", LINES, False),
                                  (f"csv cp932, {CSV_LINES:,} billing lines", CSV_LINES, True)):
            folder = Path(tmp) / ("csv" if csv else "parquet")
            t0 = time.perf_counter()
            planted = build(folder, lines, csv=csv)
            build_s = time.perf_counter() - t0
            res = _validate(folder)
            found = res["findings"]
            ok = (found.get("billing_in_stay:billing") == planted["billing_in_stay"]
                  and found.get("admission_exists:billing") == planted["admission_exists"])
            note = (f"{res['rows']['admissions']:,} admissions; planted errors found: {'yes' if ok else 'NO ' + str(found)}; "
                    f"build {build_s:.0f} s; {note_machine}")
            rows += [
                {"area": "validate", "case": label, "metric": "wall time", "value": round(res["seconds"], 1),
                 "unit": "s", "note": note},
                {"area": "validate", "case": label, "metric": "billing lines per second",
                 "value": round(lines / res["seconds"]), "unit": "lines/s", "note": ""},
                {"area": "validate", "case": label, "metric": "peak RSS", "value": round(res["rss_mib"]),
                 "unit": "MiB", "note": "DuckDB memory_limit 2GB (default)"},
            ]
            if not csv:
                low = _validate(folder, "512MB")
                same = low["findings"] == found
                rows += [
                    {"area": "validate", "case": label + ", memory_limit 512MB", "metric": "wall time",
                     "value": round(low["seconds"], 1), "unit": "s",
                     "note": f"same findings as with 2GB: {'yes' if same else 'NO'}"},
                    {"area": "validate", "case": label + ", memory_limit 512MB", "metric": "peak RSS",
                     "value": round(low["rss_mib"]), "unit": "MiB", "note": "HOSPSTUDY_MEMORY_LIMIT=512MB"},
                ]
            import shutil

            shutil.rmtree(folder)
    return rows


if __name__ == "__main__":
    print_rows(run())
