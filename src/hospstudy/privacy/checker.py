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
_SCANNED = {".csv", ".json", ".xlsx", ".html", ".htm", ".svg", ".txt", ".md", ".tsv"}


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


def _check_cell(text: Any, column: str | None, threshold: int) -> str | None:
    """The rule a single table cell breaks, or None."""
    if text is None:
        return None
    if isinstance(text, (int, float, np.integer, np.floating)) and not isinstance(text, bool):
        if column is not None and is_count_name(column) and is_small(text, threshold):
            return f"count below {threshold} in count column {column!r}"
        return None
    s = str(text)
    m = _NPCT.match(s)
    if m and (v := _int_of(m.group(1))) is not None and 0 < v < threshold:
        return f"count below {threshold} in an n (%) cell"
    m = _BARE_INT.match(s)
    if m and column is not None and is_count_name(column):
        v = _int_of(m.group(1))
        if v is not None and 0 < v < threshold:
            return f"count below {threshold} in count column {column!r}"
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
    for col in header:
        if str(col).strip() in IDENTIFIER_NAMES:
            out.append(Violation(rel, f"{where}column {col!r}", "identifier column", str(col)))
    for i, row in enumerate(rows, start=2):
        for j, cell in enumerate(row):
            col = header[j] if j < len(header) else None
            rule = _check_cell(cell, col, threshold)
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


def check_file(path: Path, rel: str, threshold: int = DEFAULT_THRESHOLD, ids: frozenset[str] = frozenset()) -> list[Violation]:
    """The violations in one output file (see :func:`check_disclosure`)."""
    suffix = path.suffix.lower()
    out: list[Violation] = []
    if suffix in (".csv", ".tsv"):
        import csv

        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            rows = list(csv.reader(f, delimiter="\t" if suffix == ".tsv" else ","))
        if rows:
            out += _check_rows(rel, rows[0], rows[1:], threshold, "")
        text = path.read_text(encoding="utf-8", errors="replace")
    elif suffix == ".json":
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            return [Violation(rel, f"line {e.lineno}", "not valid JSON: cannot be checked", str(e.msg))]
        out += _check_json(rel, obj, threshold)
        out += _check_cif(rel, obj, threshold)
    elif suffix == ".xlsx":
        import openpyxl

        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
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
    elif suffix in (".html", ".htm", ".svg"):
        text = path.read_text(encoding="utf-8", errors="replace")
        out += _scan_markup(rel, text, threshold)
    else:
        text = path.read_text(encoding="utf-8", errors="replace")
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


def check_disclosure(out_dir: str | Path, threshold: int = DEFAULT_THRESHOLD) -> list["Violation"]:
    """Scan every shareable file of an output folder for small counts and identifiers.

    Every file under ``out_dir`` except ``out_dir/private/`` is scanned (csv, tsv, json, xlsx,
    html, svg, txt, md; binary figures are checked through their SVG twins):

    - columns, keys or table headers named ``patient_id``, ``admission_id``, ``hospital_id``;
    - any patient or admission identifier of ``private/analytic.parquet`` appearing as a token;
    - counts in ``1 .. threshold-1``: under count-named columns/keys (``n``, ``events``,
      ``deaths``, ``patients``, ``admissions_removed``, ...), in ``n (%)`` cells, and in text
      such as ``n = 5`` or ``5 patients``;
    - cumulative incidence curves of ``results.json`` with more points than steps of at least
      ``threshold`` events allow (``1 + n // threshold`` for a group of ``n`` patients).

    Returns the list of :class:`Violation` (empty when the folder is shareable).
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        from hospstudy.errors import InputError

        raise InputError(f"{out_dir}: no such output folder")
    ids = _private_ids(out_dir)
    found: list[Violation] = []
    for p in sorted(out_dir.rglob("*")):
        rel = p.relative_to(out_dir)
        if not p.is_file() or rel.parts[0] == "private" or p.suffix.lower() not in _SCANNED:
            continue
        found += check_file(p, rel.as_posix(), threshold, ids)
    return found
