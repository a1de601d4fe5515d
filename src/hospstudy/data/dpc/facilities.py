"""FACILITIES.csv: the user's table of facility attributes, keyed by 施設コード and fiscal year.

The raw DPC files carry no facility attributes (cancer-center designation, beds, teaching
status, region); the research group supplies them. Columns: ``facility_code`` (9 digits),
``fiscal_year``, ``cancer_center`` and ``teaching`` (1/0 or true/false), ``beds``, ``region``;
UTF-8 (with or without BOM) or CP932. The hospital_id of the data model is a stable pseudonym of
the facility code (the same code gives the same id in every import); the map is written to
``DB/private/hospital_ids.csv``.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import pyarrow as pa

from hospstudy.data.schema import arrow_schema
from hospstudy.errors import DataUnusableError

COLUMNS = ("facility_code", "fiscal_year", "cancer_center", "beds", "teaching", "region")
_BOOL = {"1": True, "0": False, "true": True, "false": False, "t": True, "f": False, "yes": True, "no": False}


def hospital_id(facility_code: str) -> int:
    """Stable int32 pseudonym of a facility code: the first 31 bits of its SHA-256 (never 0)."""
    h = int.from_bytes(hashlib.sha256(b"hospstudy-facility:" + facility_code.encode()).digest()[:4], "big") & 0x7FFFFFFF
    return h or 1


def read_facilities(path: Path, fiscal_years: tuple[int, int] | None = None) -> tuple[pa.Table, dict[str, int], str]:
    """Read and check FACILITIES.csv.

    Returns the facilities table (data-model schema), the map facility_code -> hospital_id and
    the detected encoding. Raises DataUnusableError (exit 2) naming the line and rule for a
    missing file or column, a bad value, or a duplicate facility and fiscal year.
    """
    path = Path(path)
    if not path.is_file():
        raise DataUnusableError(f"{path}: no such facilities file (give --facilities FACILITIES.csv)")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for enc in ("utf-8", "cp932"):
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise DataUnusableError(f"{path}: neither UTF-8 nor CP932 text")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise DataUnusableError(f"{path}: empty; expected a header line {','.join(COLUMNS)}")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataUnusableError(f"{path}: missing column(s) {', '.join(missing)}; the header must name {', '.join(COLUMNS)}")
    ix = {c: header.index(c) for c in COLUMNS}
    out = {c: [] for c in ("hospital_id", "fiscal_year", "cancer_center", "beds", "teaching", "region")}
    ids: dict[str, int] = {}
    seen: set[tuple[str, int]] = set()
    for n, row in enumerate(rows[1:], start=2):
        if not any(x.strip() for x in row):
            continue
        if len(row) < len(header):
            raise DataUnusableError(f"{path} line {n}: {len(row)} fields, the header has {len(header)}")
        v = {c: row[i].strip() for c, i in ix.items()}
        code = v["facility_code"]
        if not (len(code) == 9 and code.isdigit()):
            raise DataUnusableError(f"{path} line {n}: facility_code {code!r} is not 9 digits (施設コード)")
        try:
            fy = int(v["fiscal_year"])
            beds = int(v["beds"])
        except ValueError:
            raise DataUnusableError(f"{path} line {n}: fiscal_year {v['fiscal_year']!r} and beds {v['beds']!r} must be integers") from None
        flags = {}
        for c in ("cancer_center", "teaching"):
            b = _BOOL.get(v[c].lower())
            if b is None:
                raise DataUnusableError(f"{path} line {n}: {c} {v[c]!r} must be 1/0 or true/false")
            flags[c] = b
        if not v["region"]:
            raise DataUnusableError(f"{path} line {n}: region is empty")
        if (code, fy) in seen:
            raise DataUnusableError(f"{path} line {n}: facility {code} has a second row for fiscal year {fy}")
        seen.add((code, fy))
        if fiscal_years and not (fiscal_years[0] <= fy <= fiscal_years[1]):
            continue
        hid = ids.setdefault(code, hospital_id(code))
        out["hospital_id"].append(hid)
        out["fiscal_year"].append(fy)
        out["cancer_center"].append(flags["cancer_center"])
        out["beds"].append(beds)
        out["teaching"].append(flags["teaching"])
        out["region"].append(v["region"])
    if len(set(ids.values())) != len(ids):  # pragma: no cover - 31-bit collision among a few thousand codes
        raise DataUnusableError(f"{path}: two facility codes share a hospital_id pseudonym; report this as a bug")
    # every facility code seen (also outside --fiscal-years) keeps its id
    for code, _ in seen:
        ids.setdefault(code, hospital_id(code))
    table = pa.table(out, schema=arrow_schema("facilities"))
    order = sorted(range(table.num_rows), key=lambda i: (out["hospital_id"][i], out["fiscal_year"][i]))
    return table.take(pa.array(order, pa.int64())), ids, enc
