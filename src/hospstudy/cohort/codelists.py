"""Code lists: named sets of ICD-10 codes or K-codes, written the way researchers write them.

An entry of a code list is one of

* an exact code: ``C795``, ``K1422``, ``K142-4`` (a K-code branch such as ``-4`` is part of
  the code, never a range);
* a prefix wildcard: ``C78*`` matches every code that starts with ``C78``;
* a range of codes: ``C00-C26`` or ``I60-I69`` matches every code whose first characters
  (as many as the bound has) sort between the bounds, inclusive: ``C00-C26`` holds ``C001``
  and ``C269`` but not ``C27``. Both bounds must look like codes (letter and two digits at
  least), which is what tells ``C00-C26`` (a range) from ``K142-4`` (one K-code);
* a reference to another code list: ``@fusion`` includes every entry of the list ``fusion``.

Codes are compared as DPC Form 1 writes them: upper case, no dot, no spaces.
:func:`parse_entry` turns one entry into a :class:`Pattern`; :func:`resolve` expands references;
:func:`predicate` builds the backend-neutral Ibis predicate that tests a code column.
"""

from __future__ import annotations

import csv
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

_CODE = re.compile(r"^[A-Z][0-9]{2}[0-9A-Z]*$")
_KCODE = re.compile(r"^K[0-9]{3}(-[0-9]+)?[0-9]?$")
_ANY = re.compile(r"^[A-Z0-9]+(-[0-9]+)?[0-9]?$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Pattern:
    """One entry of a code list: ``kind`` is 'exact', 'prefix' or 'range'."""

    kind: str
    value: str
    high: str | None = None

    def matches(self, code: str) -> bool:
        """Pure-Python match (the engine uses :func:`predicate`; this is its reference)."""
        if code is None:
            return False
        if self.kind == "exact":
            return code == self.value
        if self.kind == "prefix":
            return code.startswith(self.value)
        return self.value <= code[: len(self.value)] and code[: len(self.high)] <= self.high

    def __str__(self) -> str:
        if self.kind == "exact":
            return self.value
        if self.kind == "prefix":
            return self.value + "*"
        return f"{self.value}-{self.high}"


def parse_entry(entry: str) -> Pattern:
    """Parse one code-list entry; raises ``ValueError`` with the rule it breaks."""
    if not isinstance(entry, str):
        raise ValueError(f"entry {entry!r} is not a string; write codes as \"C795\", \"C78*\" or \"C00-C26\"")
    text = entry.strip().upper().replace(".", "")
    if not text:
        raise ValueError("empty entry")
    if text.endswith("*"):
        stem = text[:-1]
        if not re.fullmatch(r"[A-Z][0-9A-Z\-]*", stem):
            raise ValueError(f"entry {entry!r}: a wildcard needs a code prefix before '*', like \"C78*\"")
        return Pattern("prefix", stem)
    if "-" in text and not _KCODE.match(text):
        lo, _, hi = text.partition("-")
        if not (_CODE.match(lo) and _CODE.match(hi)):
            raise ValueError(
                f"entry {entry!r}: a range needs two codes like \"C00-C26\" (a K-code branch is written \"K142-4\")"
            )
        if lo[: len(hi)] > hi[: len(lo)]:
            raise ValueError(f"entry {entry!r}: the range's first code sorts after its last")
        return Pattern("range", lo, hi)
    if not _ANY.match(text):
        raise ValueError(
            f"entry {entry!r} is not a code: letters and digits (ICD-10 \"C795\", K-code \"K1422\" or \"K142-4\", "
            "receipt code \"620008001\")"
        )
    return Pattern("exact", text)


def read_file(path: Path) -> list[str]:
    """Entries of a code-list file: CSV with a ``code`` column, or TOML with ``codes = [...]``."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            try:
                if reader.fieldnames is None or "code" not in reader.fieldnames:
                    raise ValueError(f"{path}: a code-list CSV needs a header with a 'code' column")
                return [row["code"] for row in reader if (row.get("code") or "").strip()]
            except csv.Error as e:
                raise ValueError(f"{path}: a row after line {reader.line_num} is not readable CSV ({e})") from None
    if path.suffix.lower() == ".toml":
        with path.open("rb") as f:
            data = tomllib.load(f)
        codes = data.get("codes")
        if not isinstance(codes, list):
            raise ValueError(f"{path}: a code-list TOML file needs `codes = [...]`")
        return codes
    raise ValueError(f"{path}: code-list files are .csv (column 'code') or .toml (codes = [...])")


def resolve(raw: dict[str, list[str]]) -> tuple[dict[str, tuple[Pattern, ...]], list[tuple[str, str]]]:
    """Parse every list and expand ``@name`` references.

    Returns the resolved lists and a list of (list name, problem) pairs: unknown references,
    cycles and unparseable entries, all of them.
    """
    problems: list[tuple[str, str]] = []
    out: dict[str, tuple[Pattern, ...]] = {}

    def expand(name: str, stack: tuple[str, ...]) -> tuple[Pattern, ...]:
        if name in out:
            return out[name]
        pats: list[Pattern] = []
        for i, entry in enumerate(raw[name]):
            if isinstance(entry, str) and entry.strip().startswith("@"):
                ref = entry.strip()[1:]
                if ref not in raw:
                    problems.append((f"{name}[{i}]", f"unknown code list '@{ref}'; known: {', '.join(sorted(raw))}"))
                    continue
                if ref in stack or ref == name:
                    problems.append((f"{name}[{i}]", f"'@{ref}' refers back to itself ({' -> '.join(stack + (name, ref))})"))
                    continue
                pats.extend(expand(ref, stack + (name,)))
                continue
            try:
                pats.append(parse_entry(entry))
            except ValueError as e:
                problems.append((f"{name}[{i}]", str(e)))
        seen: dict[Pattern, None] = dict.fromkeys(pats)
        out[name] = tuple(seen)
        return out[name]

    for name in raw:
        expand(name, ())
    return out, problems


def matches_any(patterns, code: str) -> bool:
    return any(p.matches(code) for p in patterns)


def predicate(column, patterns):
    """An Ibis boolean expression: does ``column`` match any of ``patterns``?

    Exact codes become one ``IN`` list, prefixes ``startswith``, ranges a comparison of the
    leading characters (``substr`` is 0-based in Ibis).
    """
    import ibis

    exact = [p.value for p in patterns if p.kind == "exact"]
    parts = []
    if exact:
        parts.append(column.isin(exact))
    for p in patterns:
        if p.kind == "prefix":
            parts.append(column.startswith(p.value))
        elif p.kind == "range":
            parts.append((column.substr(0, len(p.value)) >= p.value) & (column.substr(0, len(p.high)) <= p.high))
    if not parts:
        return ibis.literal(False)
    expr = parts[0]
    for p in parts[1:]:
        expr = expr | p
    return expr


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))
