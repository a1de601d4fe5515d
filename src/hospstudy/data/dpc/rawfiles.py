"""Find raw DPC files, tell their kind, encoding, header and line ends, and read them in chunks.

A file's kind is told from its content, not its name: 17 tab-separated fields with a payload
code in field 6 is Form 1; 31 fields is the EF integrated file (inpatient when 入外区分, field 30,
is 0). Outpatient EF (``EFg_``), D, H and other DPC files are recognised by name or content and
listed as skipped, with their lines counted.

Reading never holds a whole file: :func:`iter_files` cuts each file into blocks that end at a
line end, splits each into the fields asked for (:mod:`.split`: Arrow's CSV reader on the raw
bytes, or numpy over the block decoded to UTF-8 where Arrow would number the lines differently)
and hands each block to a parser that returns a typed Arrow table; the caller receives the
tables in file order with their line numbers. With ``workers`` threads, at most ``workers`` + 1
blocks are in memory (the one handed on, the others being split and typed by the threads).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hospstudy.data.dpc import layouts as L
from hospstudy.data.dpc import split as S
from hospstudy.errors import DataUnusableError, InputError

SAMPLE_BYTES = 256 << 10
# Bytes per block read and typed by one thread. 5M EF lines (2026-12-06): EF reading 4.7-5.5 CPU
# s with 16 MiB blocks, 4.2-4.7 with 8 MiB (five runs each; two threads' blocks and what they
# make fit the 32 MiB L3 cache better), 4.5-5.0 with 6 MiB (three runs), 5.4 with 2 MiB (two).
CHUNK_BYTES = 8 << 20
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


def _read(path: Path, start: int, end: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    if start == 0 and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data


def _to_utf8(data: bytes, encoding: str) -> tuple[bytes, str]:
    """A block as UTF-8 for :func:`hospstudy.data.dpc.split.split`; raises
    :class:`~hospstudy.data.dpc.split.Undecodable` (line index in the block)."""
    order = {"cp932": ("cp932",), "utf-8": ("utf-8",), "utf-8-or-cp932": ("utf-8", "cp932")}[encoding]
    for enc in order:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError as e:
            err = e
            continue
        return (data if enc == "utf-8" else text.encode("utf-8")), enc
    raise S.Undecodable(data.count(b"\n", 0, err.start), encoding)


def read_block(data: bytes, nf: int, cols, encoding: str) -> S.Block:
    """One block of raw lines split into fields: Arrow's reader (:func:`split.read_fields`), or,
    when its lines are not the block's LF-ended lines (a bare CR inside a line), the block decoded
    to UTF-8 and split with numpy."""
    blk = S.read_fields(data, nf, cols, encoding)
    if blk is None:
        text, used = _to_utf8(data, encoding)
        blk = S.split(text, nf, cols)
        blk.encoding = used
    return blk


def iter_files(items, workers: int = 1, chunk_bytes: int | None = None, skip=None, peek=None):
    """Yield ``(file, first_line_number, table)`` for each ``(file, parse, cols)`` of ``items``,
    file after file, in blocks of about ``chunk_bytes`` cut at line ends: only the fields ``cols``
    (0-based) are cut, and ``parse(block, first_line)`` turns each :class:`~.split.Block` into an
    Arrow table (one row per line).

    With ``workers`` > 1, one pool of that many threads splits *and* types the blocks (Arrow's
    parser and numpy's large operations release the GIL), across file boundaries: the next file's
    first blocks are typed while the caller takes this file's last ones. This thread reads each
    block and counts its lines (so every block knows its first line number before it is typed)
    and hands the tables on in order. At most ``workers`` + 1 blocks are in flight.

    ``skip(file, first_line, nbytes)``, when given, is asked before each block is read: a number
    of lines means the block is passed over unread (it has that many; the next block's line
    numbers follow it); None, the block is read. ``peek(file, data, first_line)``, when given, is
    asked in the threads before a block read is split: a table means the block is that table,
    unsplit (its lines are counted here all the same); None, it is split and parsed."""

    def job(f, nf, enc, parse, cols, data, first_line):
        try:
            if peek is not None and (table := peek(f, data, first_line)) is not None:
                return None, table, None
            blk = read_block(data, nf, cols, enc)
            return blk, parse(blk, first_line), None
        except S.Undecodable as e:
            return None, None, e

    def blocks():
        """The arguments of ``job`` for each block, in order."""
        for f, parse, cols in items:
            nf = L.FORM1_N if f.kind == "form1" else L.EF_N
            enc = f.encoding
            if enc == "utf-8" and not f.forced:
                enc = "utf-8-or-cp932"
            line_no = 1
            for start, end in _boundaries(f.path, f.size, chunk_bytes or CHUNK_BYTES):
                if skip is not None and (lines := skip(f, line_no, end - start)) is not None:
                    line_no += lines
                    continue
                data = _read(f.path, start, end)
                yield f, nf, enc, parse, cols, data, line_no
                line_no += S.count_lines(np.frombuffer(data, dtype=np.uint8))

    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(workers, thread_name_prefix="hospstudy-read")
        results = _in_order(pool, blocks(), job, workers)
    else:
        pool, results = None, ((b, job(*b)) for b in blocks())
    try:
        for b, (blk, table, err) in results:
            f, line_no = b[0], b[-1]
            if err is not None:
                enc_name = {"cp932": "CP932", "utf-8": "UTF-8", "utf-8-or-cp932": "UTF-8 or CP932"}[err.encoding]
                raise DataUnusableError(f"{f.rel} line {line_no + err.line}: cannot be decoded as {enc_name}; "
                                        "check the file or pass --encoding")
            if blk is not None and blk.encoding == "cp932" and f.encoding != "cp932":
                f.encoding = "cp932"
            if blk is not None and blk.n == 0:
                continue
            yield f, line_no, table
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _in_order(pool, items, fn, ahead: int):
    """``(item, fn(*item))`` for each item, run in ``pool``, in the order of ``items``: ``ahead``
    items are submitted while the caller holds the previous result, so at most ``ahead`` + 1 are
    in memory."""
    from collections import deque

    it = iter(items)
    queue: deque = deque()

    def refill():
        while len(queue) < ahead:
            item = next(it, None)
            if item is None:
                return
            queue.append((item, pool.submit(fn, *item)))

    refill()
    while queue:
        item, fut = queue.popleft()
        refill()
        yield item, fut.result()


def check_encoding_option(encoding: str) -> str:
    e = (encoding or "auto").strip().lower().replace("_", "-")
    e = {"utf8": "utf-8", "shift-jis": "cp932", "sjis": "cp932", "ms932": "cp932", "windows-31j": "cp932"}.get(e, e)
    if e not in ENCODINGS:
        raise InputError(f"The 'encoding' parameter must be one of auto, cp932, utf-8. Got {encoding!r} instead.")
    return e


def cpu_workers() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))
