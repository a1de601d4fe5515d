"""Shared formatting of the report: numbers, HTML blocks and the table markup.

Every section builds its blocks with these helpers. Text from the study file or the data is
escaped here (:func:`esc`); what these helpers return is our own markup, marked safe
(:class:`markupsafe.Markup`) so that the template, which autoescapes everything else, prints it
as is.
"""

from __future__ import annotations

import html as _html
import re
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from hospstudy.report.tables import ReportTable, fmt_ci, fmt_num, fmt_p  # noqa: F401  (re-exported)


def esc(x: Any) -> str:
    return _html.escape(str(x), quote=True)


def p(text: str) -> Markup:
    return Markup(f"<p>{esc(text)}</p>")


def absent(text: str) -> Markup:
    return Markup(f'<div class="absent">{esc(text)}</div>')


def failed(text: str) -> Markup:
    return Markup(f'<div class="failed">{esc(text)}</div>')


_NUMERIC_CELL = re.compile(r"^(<\d+|—|[-−]?\d[\d,]*(\.\d+)?%?)(\s*[(\[].*)?(;.*)?$")


def is_num(s: str) -> bool:
    """Cells that read as numbers (right-aligned): counts, '<10', '—', estimates with intervals."""
    return bool(_NUMERIC_CELL.match(s.strip()))


TEXT_COLUMNS = {"Role", "Variable", "Column", "Definition", "Level", "Criterion", "Term", "Adjustment", "Analysis", "Outcome",
                "Exposure", "Model", "Source", "Figure", "Quartile", "Statistic", "Test", "Covariate", "List", "Description",
                "Codes", "File", "SHA-256", "Characteristic", "Verdict", "Definition difference", "Group"}


def table_html(t: ReportTable) -> Markup:
    head = "".join(f"<th>{esc(c)}</th>" for c in t.frame.columns)
    text_cols = {j for j, c in enumerate(t.frame.columns) if str(c) in TEXT_COLUMNS}
    body = []
    starts = set(t.group_rows[1:]) if t.group_rows else set()
    for i, row in enumerate(t.frame.itertuples(index=False)):
        cells = "".join(
            f'<td class="num">{esc(v)}</td>' if j > 0 and j not in text_cols and is_num(str(v)) else f"<td>{esc(v)}</td>"
            for j, v in enumerate(row)
        )
        body.append(f'<tr class="block">{cells}</tr>' if i in starts else f"<tr>{cells}</tr>")
    notes = "".join(f"<div>{esc(n)}</div>" for n in t.notes)
    return Markup(f'<div class="scroll"><table id="tbl-{esc(t.key)}"><caption>{esc(t.title)}</caption><thead><tr>{head}</tr></thead>'
                  f"<tbody>{''.join(body)}</tbody></table></div><div class=\"notes\">{notes}</div>")


def figure_html(svg: str, caption: str, name: str) -> Markup:
    """A figure: ``svg`` is matplotlib's output for our own figure (its text escaped by the SVG
    writer), the caption is escaped here."""
    return Markup(f'<figure id="fig-{esc(name)}">{svg}<figcaption>{esc(caption)}</figcaption></figure>')


def dl(items: list[tuple[str, str]]) -> Markup:
    return Markup('<dl class="meta">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items) + "</dl>")


# --------------------------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------------------------
def is_bool(s: pd.Series) -> bool:
    return str(s.dtype) in ("bool", "boolean") or (s.dropna().map(type).eq(bool).all() and s.notna().any())


def to_int(v) -> int | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if not np.isfinite(f) else int(round(f))


def to_float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def array(d: dict, *names: str):
    """The first of ``names`` in ``d`` that holds a non-empty 1-d numeric array."""
    for n in names:
        if n in d and d[n] is not None:
            a = np.asarray(d[n], dtype=float)
            if a.ndim == 1 and a.size:
                return a
    return None


def ratio(x: pd.Series) -> tuple[float, float, float]:
    """A result row's ratio (OR/HR) and its interval."""
    est = x.get("exp_estimate")
    if est is None or not np.isfinite(float(est)):
        with np.errstate(over="ignore"):  # a separated fit's estimate: inf, shown as not estimable
            return float(np.exp(x["estimate"])), float(np.exp(x["conf_low"])), float(np.exp(x["conf_high"]))
    return float(est), float(x["exp_conf_low"]), float(x["exp_conf_high"])


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"
