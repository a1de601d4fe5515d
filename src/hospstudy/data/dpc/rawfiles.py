"""Find raw DPC files, tell their kind, encoding, header and line ends, and read them in chunks.

A file's kind is told from its content, not its name: 17 tab-separated fields with a payload
code in field 6 is Form 1; 31 fields is the EF integrated file (inpatient when 入外区分, field 30,
is 0). Outpatient EF (``EFg_``), D, H and other DPC files are recognised by name or content and
listed as skipped, with their lines counted.

Reading never holds a whole file: :func:`iter_tables` cuts the file into blocks that end at a
line end; worker processes decode each block (Python's CP932 codec holds the GIL, so threads
would not help) and parse it (numpy, :mod:`.split`) into a typed Arrow table, at most
``workers + 1`` blocks in flight; the caller receives the tables in file order with their line
numbers.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from hospstudy.data.dpc import layouts as L
from hospstudy.errors import DataUnusableError, InputError

SAMPLE_BYTES = 256 << 10
CHUNK_BYTES = 16 << 20
_PAYLOAD_CODE = re.compile(r"^[A-Z]{1,3}[0-9]{4,6}$")
_FACILITY = re.compile(r"^[0-9]{9}$")
ENCODINGS = ("auto", "cp932", "utf-8")


@dataclass
class RawFile:
    """One input file and what was detected of it."""

    path: Path
    rel: str
    kind: str = "unknown"  # form1 | ef | other | unknown | empty
    label: str = ""  # what it is, for the report (e.g. 'outpatient EF (EFg)')
    encoding: str = "utf-8"
    header: bool = False
    line_end: str = "LF"
    fields: int = 0
    layout: str = ""
    fiscal_years: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    file_id: int = 0
    size: int = 0
    forced: bool = False  # encoding given by --encoding (no fallback)

    def to_dict(self) -> dict:
        return {"file": self.rel, "kind": self.kind, "label": self.label, "encoding": self.encoding,
                "header": self.header, "line_end": self.line_end, "fields": self.fields, "layout": self.layout,
                "fiscal_years": self.fiscal_years, "notes": self.notes}


def find_files(raw: Path) -> list[Path]:
    """Every regular file under RAW (a file or a folder tree), sorted; hidden files skipped."""
    raw = Path(raw)
    if raw.is_file():
        return [raw]
    if not raw.is_dir():
        raise DataUnusableError(f"{raw}: no such file or folder of raw DPC files")
    out = [p for p in sorted(raw.rglob("*")) if p.is_file() and not any(part.startswith(".") for part in p.relative_to(raw).parts)]
    return out


def _decode_sample(data: bytes, encoding: str) -> str | None:
    cut = data.rfind(b"\n")
    if cut > 0 and len(data) == SAMPLE_BYTES:
        data = data[: cut + 1]
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return None


def detect(path: Path, rel: str, encoding: str = "auto") -> RawFile:
    """Kind, encoding, header and line ends of one file, from its first 256 KiB.

    Raises DataUnusableError when the file cannot be read or its bytes are neither UTF-8 nor
    CP932 (or not the forced ``encoding``).
    """
    f = RawFile(path=path, rel=rel)
    try:
        with open(path, "rb") as fh:
            data = fh.read(SAMPLE_BYTES)
        f.size = path.stat().st_size
    except OSError as e:
        raise DataUnusableError(f"{rel}: cannot read ({e.strerror or e})") from None
    if not data.strip():
        f.kind, f.label = "empty", "empty file"
        return f
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
        f.notes.append("UTF-8 byte-order mark")
        if encoding == "auto":
            encoding = "utf-8"
    if encoding == "auto":
        text = _decode_sample(data, "utf-8")
        f.encoding = "utf-8"
        if text is None:
            text = _decode_sample(data, "cp932")
            f.encoding = "cp932"
    else:
        f.encoding, f.forced = encoding, True
        text = _decode_sample(data, encoding)
    if text is None:
        raise DataUnusableError(
            f"{rel}: cannot be decoded as {'UTF-8 or CP932 (Shift_JIS)' if encoding == 'auto' else encoding} "
            f"in its first {len(data):,} bytes; check the file or pass --encoding")
    f.line_end = "CRLF" if "\r\n" in text else "LF"
    lines = [ln.rstrip("\r") for ln in text.split("\n")]
    lines = [ln for ln in lines[:50] if ln.strip()]
    name = path.name
    prefix = name.split("_", 1)[0] if "_" in name else ""
    first = lines[0].split("\t")
    f.header = not _FACILITY.match(first[0].strip())
    data_lines = lines[1:] if f.header else lines
    probe = data_lines[0].split("\t") if data_lines else first
    f.fields = len(probe)
    if prefix in ("EFg", "Ef") or (f.fields == L.EF_N and probe[29].strip() not in ("", "0")):
        f.kind, f.label = "other", "outpatient EF (EFg)"
    elif prefix in L.OTHER_FILE_PREFIXES and prefix not in ("EFn", "FF1"):
        f.kind, f.label = "other", L.OTHER_FILE_PREFIXES[prefix]
    elif f.fields == L.FORM1_N and _PAYLOAD_CODE.match(probe[5].strip()):
        f.kind, f.label = "form1", "Form 1 (様式1)"
    elif f.fields == L.EF_N:
        f.kind, f.label = "ef", "inpatient EF (入院EF統合ファイル)"
        w = len(probe[16].strip())
        f.layout = L.ef_layout_of_flag(w) or ""
        if not f.layout:
            f.notes.append(f"EF field 17 is {w} characters wide (expected 1 before FY2016 or 12 from FY2016)")
    elif prefix in ("FF1", "EFn"):
        f.kind, f.label = "unknown", f"named {prefix}_ but its first line has {f.fields} fields"
    else:
        f.kind, f.label = "unknown", f"not a Form 1 or EF file (first data line has {f.fields} tab-separated fields)"
    if f.kind == "form1":
        f.layout = "form1-2014"
    return f


def count_lines(path: Path) -> int:
    """Lines in a file (a last line without a line end counts)."""
    n, last = 0, b"\n"
    with open(path, "rb") as fh:
        while True:
            b = fh.read(CHUNK_BYTES)
            if not b:
                break
            n += b.count(b"\n")
            last = b[-1:]
    return n + (last != b"\n")


def _boundaries(path: Path, size: int, chunk: int) -> list[tuple[int, int]]:
    """Byte ranges of about ``chunk`` bytes, each ending just after a line end (or at EOF)."""
    out, start = [], 0
    with open(path, "rb") as fh:
        while start < size:
            end = start + chunk
            if end >= size:
                out.append((start, size))
                break
            fh.seek(end)
            while True:
                b = fh.read(1 << 16)
                if not b:
                    end = size
                    break
                i = b.find(b"\n")
                if i >= 0:
                    end += i + 1
                    break
                end += len(b)
            out.append((start, end))
            start = end
    return out


def _decode_block(args) -> tuple[bytes, bool, str]:
    """Read one byte range and return it as UTF-8 (runs in a worker). Line ends stay as in the
    file: :func:`hospstudy.data.dpc.split.split` drops the CR of a CRLF (rewriting the block
    without them cost 5% of the import's CPU time)."""
    path, start, end, encoding = args
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    if start == 0 and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    used = encoding
    if encoding == "cp932":
        try:
            data = data.decode("cp932").encode("utf-8")
        except UnicodeDecodeError as e:
            return b"", False, f"byte {start + e.start:,}: not CP932"
    else:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            if encoding == "utf-8-or-cp932":
                try:
                    data = data.decode("cp932").encode("utf-8")
                    used = "cp932"
                except UnicodeDecodeError:
                    return b"", False, f"byte {start + e.start:,}: neither UTF-8 nor CP932"
            else:
                return b"", False, f"byte {start + e.start:,}: not UTF-8"
    return data, True, used


def _parse_block(args):
    """Decode one byte range and parse it with ``parser`` (runs in a worker): returns the
    block's line count and its table as Arrow IPC bytes (line numbers relative to the block)."""
    path, start, end, encoding, parser = args
    data, ok, info = _decode_block((path, start, end, encoding))
    if not ok:
        return 0, b"", ok, info
    import importlib

    mod, fn, extra = parser
    table = getattr(importlib.import_module(mod), fn)(data, 1 if start == 0 else 2, *extra)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return table.num_rows, sink.getvalue().to_pybytes(), ok, info


def iter_tables(f: RawFile, parser: tuple, workers: int = 1, chunk_bytes: int | None = None):
    """Yield ``(first_line_number, table)`` for a file, each block decoded *and parsed* by
    ``parser`` = (module, function, extra args) in the worker processes: the function takes
    (utf-8 bytes, first line number, *extra) and returns an Arrow table with a ``line_no``
    column, renumbered here to the file's line numbers."""
    ranges = _boundaries(f.path, f.size, chunk_bytes or CHUNK_BYTES)
    enc = f.encoding
    if enc == "utf-8" and not f.forced:
        enc = "utf-8-or-cp932"
    jobs = [(str(f.path), a, b, enc, parser) for a, b in ranges]
    pool = _POOL if workers > 1 else None  # started by start_pool, before any DuckDB thread exists
    results = map(_parse_block, jobs) if pool is None else _bounded_map(pool, jobs, workers + 1, _parse_block)
    line_no = 1
    for n, ipc, ok, info in results:
        if not ok:
            raise DataUnusableError(f"{f.rel}: cannot decode as {f.encoding} at {info}; check the file or pass --encoding")
        if info == "cp932" and f.encoding != "cp932":
            f.encoding = "cp932"
        if n == 0:
            continue
        table = pa.ipc.open_stream(ipc).read_all()
        i = table.schema.get_field_index("line_no")
        table = table.set_column(i, "line_no", pa.array(np.arange(line_no, line_no + n, dtype=np.int64)))
        yield line_no, table
        line_no += n


_POOL: ProcessPoolExecutor | None = None


def start_pool(workers: int) -> None:
    """Start the decoding workers now (before any thread-heavy library opens)."""
    pool = _pool(workers)
    if pool is not None:
        list(pool.map(len, [b""] * workers))


def _pool(workers: int) -> ProcessPoolExecutor | None:
    global _POOL
    if workers <= 1:
        return None
    if _POOL is None or _POOL._max_workers != workers:  # noqa: SLF001
        if _POOL is not None:
            _POOL.shutdown()
        import multiprocessing as mp

        # fork: workers only decode bytes (no DuckDB, no Arrow), and a forked worker needs no
        # re-import of the caller's main module (spawn would, and fails in unguarded scripts).
        # The pool is started before the DuckDB connection opens (see import_dpc).
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
        _POOL = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    return _POOL


def shutdown_pool() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.shutdown()
        _POOL = None


def _bounded_map(pool, jobs, depth, fn=_decode_block):
    from collections import deque

    q = deque()
    it = iter(jobs)
    for job in it:
        q.append(pool.submit(fn, job))
        if len(q) >= depth:
            break
    while q:
        fut = q.popleft()
        nxt = next(it, None)
        if nxt is not None:
            q.append(pool.submit(fn, nxt))
        yield fut.result()


def check_encoding_option(encoding: str) -> str:
    e = (encoding or "auto").strip().lower().replace("_", "-")
    e = {"utf8": "utf-8", "shift-jis": "cp932", "sjis": "cp932", "ms932": "cp932", "windows-31j": "cp932"}.get(e, e)
    if e not in ENCODINGS:
        raise InputError(f"The 'encoding' parameter must be one of auto, cp932, utf-8. Got {encoding!r} instead.")
    return e


def cpu_workers() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))
