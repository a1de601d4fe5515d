"""The output checker: scans a finished output folder for small counts and identifiers, by the
rules of :mod:`hospstudy.privacy.rules`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from hospstudy.privacy.rules import DEFAULT_THRESHOLD, IDENTIFIER_NAMES, is_count_name, is_small

# A count cell as tables print it: "5", "5 (3.1%)", "5/120", "n = 5".
_NPCT = re.compile(r"^\s*([0-9][0-9,]*)\s*(?:\(|/)")
_BARE_INT = re.compile(r"^\s*([0-9][0-9,]*)\s*$")
_N_EQUALS = re.compile(r"\b[nN]\s*=\s*([0-9][0-9,]*)\b")
_N_NOUN = re.compile(r"\b([0-9][0-9,]*)\s+(patients|admissions|hospitals|deaths|events)\b", re.IGNORECASE)
_NUMERIC = re.compile(r"^\s*([0-9][0-9,]*(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*$")
# Columns that hold measures, not counts, even in a table of counts: a small whole number there
# is not a person (a step number, a year, an estimate that happens to be whole, a percentage).
MEASURE_WORDS = (
    "step", "year", "estimate", "std_error", "statistic", "p_value", "conf", "exp", "percent", "pct",
    "rate", "ratio", "mean", "median", "sd", "iqr", "q1", "q3", "time", "day", "days", "knot", "knots",
    "level", "quantile", "quartile", "score", "smd", "weight", "age", "bmi", "los", "threshold", "version",
    "seed", "beds", "or", "hr", "ci", "se", "z", "t", "p", "std", "error", "low", "high", "lower", "upper",
)
# a measure word as a whole token of the name ("conf_low", "exp_estimate", "fiscal_year", "95% CI")
_MEASURE_NAME = re.compile(
    r"(?:^|[^a-z0-9])(?:" + "|".join(re.escape(w) for w in MEASURE_WORDS) + r")(?:[^a-z0-9]|$)|%", re.IGNORECASE)
# Figures written twice: the checker reads the SVG, and a PNG or PDF is accepted beside its SVG.
_IMAGE_TWINS = {".png", ".pdf"}


# --------------------------------------------------------------------------------------------
# the checker
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Violation:
    """One finding: the file (relative to OUT), where in it, the rule broken, the offending text."""

    file: str
    location: str
    rule: str
    value: str

    def __str__(self) -> str:
        return f"{self.file}: {self.location}: {self.rule} ({self.value!r})"


def _int_of(text: str) -> int | None:
    try:
        return int(text.replace(",", ""))
    except ValueError:
        return None


def _number(text: Any) -> float | None:
    """A cell's value as a number: numbers, and text such as ``3``, ``3.0``, ``1,234`` or
    ``3e0`` (a count written as text is still a count); None otherwise."""
    if isinstance(text, bool) or text is None:
        return None
    if isinstance(text, (int, float, np.integer, np.floating)):
        return float(text)
    m = _NUMERIC.match(str(text))
    if not m:
        return None
    try:
        return float(m.group(1).replace(",", ""))
    except ValueError:
        return None


def _is_measure_name(name: str | None) -> bool:
    return name is not None and bool(_MEASURE_NAME.search(str(name).strip()))


def _check_cell(text: Any, column: str | None, threshold: int, counts_table: bool = False) -> str | None:
    """The rule a single table cell breaks, or None.

    In a count-named column (``n``, ``events``, ...) a number in ``1 .. threshold-1`` is a
    small count, whether stored as a number or as text (``"3"``, ``"3.0"``). In a table that
    holds counts (``counts_table``: it has a count-named column or an ``n (%)`` cell) every
    other column is judged by value too, unless its name says it holds a measure
    (:data:`MEASURE_WORDS`) or the column holds non-integral values (``numeric_columns``
    decides that per column before calling here)."""
    if text is None:
        return None
    if not isinstance(text, (int, float, np.integer, np.floating)) or isinstance(text, bool):
        m = _NPCT.match(str(text))
        if m and (v := _int_of(m.group(1))) is not None and 0 < v < threshold:
            return f"count below {threshold} in an n (%) cell"
    v = _number(text)
    if v is None or not is_small(v, threshold):
        return None
    if column is not None and is_count_name(column):
        return f"count below {threshold} in count column {column!r}"
    if counts_table and not _is_measure_name(column):
        return f"count below {threshold} in column {column!r} of a table that holds counts (judged by value)"
    return None


def _check_free_text(text: str, threshold: int) -> list[tuple[str, str]]:
    hits = []
    for rx in (_N_EQUALS, _N_NOUN):
        for m in rx.finditer(text):
            v = _int_of(m.group(1))
            if v is not None and 0 < v < threshold:
                hits.append((m.group(0), f"count below {threshold} in text"))
    return hits


def _check_tokens(text: str, ids: frozenset[str]) -> list[str]:
    if not ids:
        return []
    return sorted({t for t in re.findall(r"[A-Za-z0-9_\-]+", text) if t in ids})


def _check_rows(rel: str, header: list[str], rows: Iterable[list[Any]], threshold: int, where: str) -> list[Violation]:
    out = []
    header = ["" if c is None else str(c) for c in header]
    for col in header:
        if col.strip() in IDENTIFIER_NAMES:
            out.append(Violation(rel, f"{where}column {col!r}", "identifier column", col))
    rows = [list(r) for r in rows]
    width = max([len(header)] + [len(r) for r in rows])
    # a table holds counts when a column is named as one or a cell reads "n (%)"
    counts_table = any(is_count_name(c) for c in header) or any(
        isinstance(c, str) and _NPCT.match(c) for r in rows for c in r)
    # a column holding any non-integral number holds a measure, not counts
    measures = set()
    for j in range(width):
        vals = [_number(r[j]) for r in rows if j < len(r)]
        if any(v is not None and not float(v).is_integer() for v in vals):
            measures.add(j)
    for i, row in enumerate(rows, start=2):
        for j, cell in enumerate(row):
            col = header[j] if j < len(header) else None
            judged = counts_table and j not in measures
            rule = _check_cell(cell, col, threshold, counts_table=judged)
            if rule:
                out.append(Violation(rel, f"{where}row {i}, column {col!r}", rule, str(cell)))
    return out


def _check_json(rel: str, obj: Any, threshold: int, path: str = "$") -> list[Violation]:
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}.{k}"
            if str(k) in IDENTIFIER_NAMES:
                out.append(Violation(rel, p, "identifier key", str(k)))
            if is_count_name(k) and is_small(v, threshold):
                out.append(Violation(rel, p, f"count below {threshold}", str(v)))
            if is_count_name(k) and isinstance(v, list):
                for i, x in enumerate(v):
                    if is_small(x, threshold):
                        out.append(Violation(rel, f"{p}[{i}]", f"count below {threshold}", str(x)))
            if isinstance(v, str):
                rule = _check_cell(v, str(k), threshold)
                if rule:
                    out.append(Violation(rel, p, rule, v))
            out += _check_json(rel, v, threshold, p)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            if isinstance(v, str):
                rule = _check_cell(v, None, threshold)
                if rule:
                    out.append(Violation(rel, f"{path}[{i}]", rule, v))
            out += _check_json(rel, v, threshold, f"{path}[{i}]")
    return out


def _cif_curves(obj: Any) -> list[tuple[str, dict]]:
    """The cumulative incidence curves of a results document (``extras.cumulative_incidence``:
    a dict with ``curves`` / ``other_curves``, or a list of curves), with their JSON paths."""
    extras = obj.get("extras") if isinstance(obj, dict) else None
    cif = extras.get("cumulative_incidence") if isinstance(extras, dict) else None
    base = "$.extras.cumulative_incidence"
    found = []
    if isinstance(cif, list):
        found = [(f"{base}[{i}]", c) for i, c in enumerate(cif)]
    elif isinstance(cif, dict):
        for key in ("curves", "other_curves"):
            if isinstance(cif.get(key), list):
                found += [(f"{base}.{key}[{i}]", c) for i, c in enumerate(cif[key])]
    return [(p, c) for p, c in found if isinstance(c, dict)]


def _check_cif(rel: str, obj: Any, threshold: int) -> list[Violation]:
    """Cumulative incidence curves with more points than step grouping allows: each step after
    the origin must hold at least ``threshold`` events, so a curve of ``n`` patients has at most
    ``1 + n // threshold`` points (``n`` shown as ``<threshold``: the origin only). Curves
    without a group size are not checked."""
    out = []
    for path, c in _cif_curves(obj):
        t = c.get("time")
        n = c.get("n")
        if not isinstance(t, list):
            continue
        if isinstance(n, str) and n.strip().startswith("<"):
            allowed = 1
        elif isinstance(n, (int, float, np.integer, np.floating)) and not isinstance(n, bool) and np.isfinite(n):
            allowed = 1 + int(n) // threshold
        else:
            continue
        if len(t) > allowed:
            out.append(Violation(rel, f"{path}.time", f"cumulative incidence curve with steps of fewer than "
                                 f"{threshold} events ({len(t)} points for n = {n}; at most {allowed})",
                                 str(len(t))))
    return out


class _TableParser(HTMLParser):
    """Collects the tables of an HTML or SVG document (header cells, body cells) and its text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[tuple[list[str], list[list[str]]]] = []
        self._stack: list[tuple[list[str], list[list[str]]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._is_th = False
        self._skip = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script"):
            self._skip += 1
        elif tag == "table":
            self._stack.append(([], []))
        elif tag == "tr" and self._stack:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell, self._is_th = [], tag == "th"

    def handle_endtag(self, tag):
        if tag in ("style", "script"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(("TH:" if self._is_th else "") + " ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._stack:
            head, body = self._stack[-1]
            if self._row and all(c.startswith("TH:") for c in self._row) and not body:
                head[:] = [c[3:] for c in self._row]
            else:
                body.append([c[3:] if c.startswith("TH:") else c for c in self._row])
            self._row = None
        elif tag == "table" and self._stack:
            self.tables.append(self._stack.pop())

    def handle_data(self, data):
        if self._skip:
            return
        if self._cell is not None:
            self._cell.append(data)
        self.text.append(data)


def _scan_markup(rel: str, text: str, threshold: int) -> list[Violation]:
    p = _TableParser()
    p.feed(text)
    p.close()
    out = []
    for t, (head, body) in enumerate(p.tables, start=1):
        # a row label in the first column, the header names the others
        out += _check_rows(rel, head, body, threshold, f"table {t}, ")
    for chunk in p.text:
        for snippet, rule in _check_free_text(" ".join(chunk.split()), threshold):
            out.append(Violation(rel, "text", rule, snippet))
    return out


def read_text(path: Path) -> tuple[str, str]:
    """A file's text whatever its encoding, and the encoding used: a byte-order mark (UTF-8,
    UTF-16, UTF-32) decides; else NUL bytes at every other position mean byte-order-less
    UTF-16; else UTF-8, CP932 (strict), and finally Latin-1 (which reads any bytes, so no
    file goes unread)."""
    data = path.read_bytes()
    for bom, enc in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
                     (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return data.decode(enc, errors="replace"), enc
    enc = _utf16_guess(data)
    if enc:
        return data.decode(enc, errors="replace"), enc
    for enc in ("utf-8", "cp932"):
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"


def _printable(text: str) -> bool:
    return bool(text) and sum(c.isprintable() or c in "\r\n\t" for c in text) >= 0.95 * len(text)


def _utf16_guess(data: bytes) -> str | None:
    """'utf-16-le' or 'utf-16-be' for byte-order-less UTF-16 text (NULs at every other byte,
    decoding to printable text), else None."""
    head = data[:8192]
    if len(head) < 4:
        return None
    even, odd = head[0::2], head[1::2]
    for enc, zeros, other in (("utf-16-le", odd, even), ("utf-16-be", even, odd)):
        if zeros.count(0) > 0.4 * len(zeros) and other.count(0) < 0.1 * len(other):
            if _printable(head[: len(head) // 2 * 2].decode(enc, errors="replace")):
                return enc
    return None


def _looks_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(8192)
    if head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return False
    return b"\0" in head and _utf16_guess(head) is None


def _csv_rows(text: str, delimiter: str | None = None) -> list[list[str]]:
    import csv
    import io

    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:65536], delimiters=",\t;|").delimiter
        except csv.Error:
            delimiter = ","
    return list(csv.reader(io.StringIO(text), delimiter=delimiter))


def check_file(path: Path, rel: str, threshold: int = DEFAULT_THRESHOLD, ids: frozenset[str] = frozenset()) -> list[Violation]:
    """The violations in one output file (see :func:`check_disclosure`). Every file is read,
    whatever its name or encoding: tables (CSV/TSV, or any text that parses as a table of two
    or more columns), JSON, workbooks, HTML/SVG, Parquet; other text is searched for counts
    and identifiers; a binary file that is none of these cannot be checked and is reported."""
    suffix = path.suffix.lower()
    out: list[Violation] = []
    if suffix == ".parquet" or (suffix not in (".xlsx",) and path.read_bytes()[:4] == b"PAR1"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001 - any unreadable file is a finding, not a crash
            return [Violation(rel, "file", "Parquet file that cannot be read: cannot be checked", str(e).splitlines()[0])]
        out += _check_rows(rel, table.column_names, [list(r.values()) for r in table.to_pylist()], threshold, "")
        text = "\n".join(" ".join(str(v) for v in r.values()) for r in table.to_pylist())
    elif suffix == ".xlsx":
        import openpyxl

        try:
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as e:  # noqa: BLE001
            return [Violation(rel, "file", "workbook that cannot be read: cannot be checked", str(e).splitlines()[0])]
        chunks = []
        cells: list[list[tuple[str, str]]] = []
        for ws in wb.worksheets:
            rows = [list(r) for r in ws.iter_rows(values_only=True)]
            rows = [r for r in rows if any(c is not None for c in r)]
            # the header is the first row whose cells are all text (titles span one cell)
            start = next((i for i, r in enumerate(rows) if sum(c is not None for c in r) > 1), 0)
            if rows:
                header = ["" if c is None else str(c) for c in rows[start]]
                out += _check_rows(rel, header, rows[start + 1:], threshold, f"sheet {ws.title!r}, ")
            chunks += [" ".join("" if c is None else str(c) for c in r) for r in rows]
            cells.append([(f"sheet {ws.title!r}, cell text", str(c)) for r in rows for c in r if isinstance(c, str)])
        wb.close()
        text = "\n".join(chunks)
        for ws_rows in cells:
            for where, value in ws_rows:
                for snippet, rule in _check_free_text(value, threshold):
                    out.append(Violation(rel, where, rule, snippet))
    elif suffix in _IMAGE_TWINS and path.with_suffix(".svg").is_file():
        return []  # the figure is checked through its SVG twin
    elif _looks_binary(path):
        return [Violation(rel, "file", "binary file that cannot be checked (move it under private/ or delete it)",
                          suffix or path.name)]
    else:
        text, _enc = read_text(path)
        if suffix == ".json" or (suffix not in (".csv", ".tsv", ".html", ".htm", ".svg") and text.lstrip()[:1] in ("{", "[")):
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                if suffix == ".json":
                    return [Violation(rel, f"line {e.lineno}", "not valid JSON: cannot be checked", str(e.msg))]
                obj = None
            if obj is not None:
                out += _check_json(rel, obj, threshold)
                out += _check_cif(rel, obj, threshold)
        elif suffix in (".html", ".htm", ".svg") or text.lstrip()[:1] == "<":
            out += _scan_markup(rel, text, threshold)
        else:
            rows = _csv_rows(text, "\t" if suffix == ".tsv" else ("," if suffix == ".csv" else None))
            rows = [r for r in rows if r]
            if suffix in (".csv", ".tsv") or (len(rows) > 1 and len(rows[0]) > 1 and all(len(r) == len(rows[0]) for r in rows)):
                if rows:
                    out += _check_rows(rel, rows[0], rows[1:], threshold, "")
            for snippet, rule in _check_free_text(text, threshold):
                out.append(Violation(rel, "text", rule, snippet))
    for token in _check_tokens(text, ids):
        out.append(Violation(rel, "text", "patient or admission identifier", token))
    return out


def _private_ids(out_dir: Path) -> frozenset[str]:
    """Patient and admission identifiers of the private analytic dataset, to search for."""
    path = out_dir / "private" / "analytic.parquet"
    if not path.exists():
        return frozenset()
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    cols = [c for c in ("patient_id", "admission_id") if c in schema.names]
    if not cols:
        return frozenset()
    table = pq.read_table(path, columns=cols)
    ids: set[str] = set()
    for c in cols:
        ids.update(str(x) for x in table.column(c).to_pylist() if x is not None)
    # short or purely numeric ids would match ordinary numbers in the text
    return frozenset(i for i in ids if len(i) >= 6 and not i.isdigit())


def _links(out_dir: Path) -> tuple[list[tuple[Path, str]], list[Violation]]:
    """Every file of ``out_dir`` outside ``private/`` (relative name), walking without
    following links; and the violations of the links themselves: a symbolic link that leads
    into ``private/`` or out of ``out_dir`` (zipping OUT would ship its target), one that
    leads nowhere, and a hard link to a file of ``private/``."""
    import os

    root = out_dir.resolve()
    private = root / "private"
    private_inodes = set()
    if private.is_dir():
        for dirpath, _dirs, files in os.walk(private):
            for f in files:
                try:
                    st = os.stat(os.path.join(dirpath, f))
                    private_inodes.add((st.st_dev, st.st_ino))
                except OSError:
                    pass
    files: list[tuple[Path, str]] = []
    found: list[Violation] = []
    for dirpath, dirs, names in os.walk(out_dir):
        here = Path(dirpath)
        rel_dir = here.relative_to(out_dir)
        if rel_dir.parts[:1] == ("private",):
            dirs[:] = []
            continue
        for name in sorted(dirs + names):
            p = here / name
            rel = (rel_dir / name).as_posix()
            if rel == "private":
                continue  # not shared, wherever it lies
            if p.is_symlink():
                target = Path(os.path.realpath(p))
                if not target.exists():
                    found.append(Violation(rel, "link", "symbolic link that leads nowhere (or in a loop)", os.readlink(p)))
                elif target == private or private in target.parents:
                    found.append(Violation(rel, "link", "symbolic link into private/ (sharing OUT would ship it)",
                                           os.readlink(p)))
                elif target != root and root not in target.parents:
                    found.append(Violation(rel, "link", "symbolic link out of the output folder (sharing OUT would ship "
                                           "its target)", os.readlink(p)))
                # a link within OUT: its target is checked where it lies
                continue
            if name in names and p.is_file():
                if rel.split("/")[0] == "private":
                    continue
                try:
                    st = p.stat()
                except OSError as e:
                    found.append(Violation(rel, "file", "file that cannot be read: cannot be checked", str(e)))
                    continue
                if (st.st_dev, st.st_ino) in private_inodes:
                    found.append(Violation(rel, "file", "hard link to a file of private/", rel))
                    continue
                files.append((p, rel))
    return files, found


def check_disclosure(out_dir: str | Path, threshold: int = DEFAULT_THRESHOLD) -> list["Violation"]:
    """Scan every shareable file of an output folder for small counts and identifiers.

    Every file under ``out_dir`` except ``out_dir/private/`` is read, whatever its name or
    encoding (:func:`check_file`; a PNG or PDF beside its SVG twin is checked through the SVG,
    another binary file is reported as uncheckable), and links are judged:

    - columns, keys or table headers named ``patient_id``, ``admission_id``, ``hospital_id``;
    - any patient or admission identifier of ``private/analytic.parquet`` appearing as a token;
    - counts in ``1 .. threshold-1``: under count-named columns/keys (``n``, ``events``,
      ``deaths``, ``patients``, ``admissions_removed``, ...) whether stored as numbers or as
      text (``"3.0"``), in ``n (%)`` cells, and in text such as ``n = 5`` or ``5 patients``;
      and, in a table that holds counts (a count-named column or an ``n (%)`` cell), in
      every column judged by value unless its name says it holds a measure
      (:data:`MEASURE_WORDS`: step, year, estimate, conf_low, percent, ...) or it holds
      non-integral numbers. False alarms are preferred to leaks;
    - cumulative incidence curves of ``results.json`` with more points than steps of at least
      ``threshold`` events allow (``1 + n // threshold`` for a group of ``n`` patients);
    - symbolic links into ``private/``, out of ``out_dir`` or to nowhere, and hard links to
      files of ``private/``.

    Returns the list of :class:`Violation` (empty when the folder is shareable).
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        from hospstudy.errors import InputError

        raise InputError(f"{out_dir}: no such output folder")
    ids = _private_ids(out_dir)
    files, found = _links(out_dir)
    for p, rel in files:
        found += check_file(p, rel, threshold, ids)
    return found
