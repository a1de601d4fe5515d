"""``OUT/tables.xlsx``: one sheet per report table, formatted for manuscripts (openpyxl).

Cells are the report's already disclosure-safe strings; a cell that is one number (``1,033``,
``0.840``, ``12.5%``, ``2012``) is written as a number with a matching number format, so Excel
computes with it and flags nothing; ``<10``, ``—``, ``<0.001`` and estimates with intervals stay
text. Each sheet: title in A1, header row in bold with a rule,
notes under the table, column widths fitted to the content, header frozen. Reproducible: the
workbook's creation and modification dates are fixed.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Sequence

from hospstudy.report.tables import ReportTable

_FIXED_DATE = _dt.datetime(2000, 1, 1)


def _sheet_name(key: str, used: set[str]) -> str:
    base = re.sub(r"[\[\]\*\?/\\:]", "_", key)[:31] or "table"
    name, k = base, 2
    while name.lower() in used:
        suffix = f"_{k}"
        name, k = base[: 31 - len(suffix)] + suffix, k + 1
    used.add(name.lower())
    return name


_INT = re.compile(r"^-?\d{1,3}(,\d{3})+$|^-?\d+$")
_DEC = re.compile(r"^-?\d+\.(\d+)$")
_PCT = re.compile(r"^-?\d+(\.(\d+))?%$")


def as_number(text: str):
    """(value, number format) of a cell that is one number, else None."""
    t = text.strip().replace("−", "-")
    if _INT.match(t):
        return int(t.replace(",", "")), "#,##0" if "," in t or len(t.lstrip("-")) > 4 else "0"
    m = _DEC.match(t)
    if m:
        return float(t), "0." + "0" * len(m.group(1))
    m = _PCT.match(t)
    if m:
        digits = len(m.group(2) or "")
        return float(t[:-1]) / 100, "0" + ("." + "0" * digits if digits else "") + "%"
    return None


def write_tables(tables: Sequence[ReportTable], path: str | Path, title: str = "", synthetic: bool = False) -> Path:
    """Write each table to its own sheet (named by ``ReportTable.key``) and return the path."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, Side
    from openpyxl.utils import get_column_letter

    path = Path(path)
    wb = Workbook()
    wb.remove(wb.active)
    rule = Side(style="thin")
    used: set[str] = set()
    for t in tables:
        ws = wb.create_sheet(_sheet_name(t.key, used))
        heading = t.title + (" [SYNTHETIC DATA]" if synthetic else "")
        ws.cell(row=1, column=1, value=heading).font = Font(bold=True, size=12)
        cols = [str(c) for c in t.frame.columns]
        for j, c in enumerate(cols, start=1):
            cell = ws.cell(row=3, column=j, value=c)
            cell.font = Font(bold=True)
            cell.border = Border(top=rule, bottom=rule)
            cell.alignment = Alignment(wrap_text=True, vertical="top")
        for i, row in enumerate(t.frame.itertuples(index=False), start=4):
            for j, v in enumerate(row, start=1):
                text = "" if v is None else str(v)
                num = as_number(text) if j > 1 else None
                cell = ws.cell(row=i, column=j, value=text if num is None else num[0])
                if num is not None:
                    cell.number_format = num[1]
                if j > 1:
                    cell.alignment = Alignment(horizontal="right" if text[:1].isdigit() or text[:1] in "<—-" else "left")
        last = 3 + len(t.frame)
        for j in range(1, len(cols) + 1):
            ws.cell(row=last, column=j).border = Border(bottom=rule)
        for k, note in enumerate(t.notes, start=last + 2):
            ws.cell(row=k, column=1, value=note).font = Font(italic=True, size=9)
        for j, c in enumerate(cols, start=1):
            width = max([len(c)] + [len(str(v)) for v in t.frame.iloc[:, j - 1]]) if len(t.frame) else len(c)
            ws.column_dimensions[get_column_letter(j)].width = min(max(8, width + 2), 60)
        ws.freeze_panes = "A4"
    if not tables:
        ws = wb.create_sheet("empty")
        ws["A1"] = "No table could be built for this run."
    wb.properties.creator = "hospstudy"
    wb.properties.title = title
    wb.properties.created = _FIXED_DATE
    wb.properties.modified = _FIXED_DATE
    wb.save(path)
    _fix_zip_dates(path)
    return path


def _fix_zip_dates(path: Path) -> None:
    """Rewrite the workbook's zip members with a fixed date, and its modification property, so
    the same tables give the same bytes (openpyxl stamps both with the current time)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = [(info, z.read(info.filename)) for info in z.infolist()]
    tmp = path.with_suffix(".xlsx.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for info, data in members:
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)", rb"\g<1>2000-01-01T00:00:00Z\g<2>", data)
            fixed = zipfile.ZipInfo(info.filename, date_time=(2000, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = info.external_attr
            z.writestr(fixed, data)
    tmp.replace(path)
