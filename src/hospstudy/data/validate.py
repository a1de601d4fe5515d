"""Check a database against the data model: one finding per rule broken, with examples.

The checks run as DuckDB SQL over the Parquet files (CSV tables are first converted to Parquet
in a temporary folder, streamed), one aggregate scan per table, so memory stays bounded by
DuckDB's ``memory_limit`` however long the billing table is; DuckDB spills to the temporary
folder when a join or window needs more. When the admission keys do not fit in a third of the
limit, the checks that join them run in passes over shares of the keys, reading only their
columns (:func:`key_parts`); window checks are computed once into a small table of flagged
rows. Each rule keeps its count and the five examples with the lowest (file, row), so the
report is the same from run to run.

Rules (severity): see :data:`RULES` and docs/data_model.md. Input that cannot be used at all
(missing folder or table, unreadable or corrupt file, CSV that is neither UTF-8 nor CP932)
raises :class:`hospstudy.errors.DataUnusableError` instead of giving findings.
"""

from __future__ import annotations

import datetime
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from hospstudy.data import readers
from hospstudy.data.readers import ACCEPTS, TARGET_KIND, arrow_kind, is_exact, quote, sql_str
from hospstudy.data.schema import (
    ADL_ITEMS, ADL_MAX_LEVEL, ICD10_PATTERN, KCODE_PATTERN, TABLE_NAMES, TABLES,
)
from hospstudy.errors import DataUnusableError, DataValidationError, InputError

MAX_EXAMPLES = 5
MAX_VALUE_CHARS = 200  # example values are cut to this length

# Plausibility limits (warnings). Japanese law defines a hospital as having at least 20 beds;
# the largest Japanese hospitals have about 1,500.
STAY_MAX_DAYS = 365
# Adults (age >= 18); children get wider bounds and no BMI check.
HEIGHT_CM = (100.0, 220.0)
WEIGHT_KG = (20.0, 250.0)
BMI = (12.0, 60.0)
CHILD_HEIGHT_CM = (40.0, 200.0)
CHILD_WEIGHT_KG = (1.0, 150.0)
BEDS = (20, 3000)


@dataclass(frozen=True)
class Rule:
    severity: str  # 'error' | 'warning'
    description: str


RULES: dict[str, Rule] = {
    "missing_column": Rule("error", "a required column is absent from a file"),
    "column_type": Rule("error", "a column is stored in a type that cannot be cast to the schema type"),
    "not_null": Rule("error", "a null or empty value in a column that must be filled"),
    "value_type": Rule("error", "a value that does not cast to the column's type"),
    "allowed_values": Rule("error", "a value outside the column's allowed set"),
    "unique_admission_id": Rule("error", "admission_id appears on more than one admissions row"),
    "duplicate_facility": Rule("error", "more than one facilities row for a hospital and fiscal year"),
    "admission_facility": Rule(
        "error", "no facilities row for the admission's hospital_id and the fiscal year of admit_date"),
    "admission_exists": Rule("error", "admission_id not found in admissions"),
    "discharge_before_admit": Rule("error", "discharge_date before admit_date"),
    "proc_date_in_stay": Rule("error", "proc_date outside the stay (admit_date to discharge_date)"),
    "billing_in_stay": Rule("error", "service_date outside the stay (admit_date to discharge_date)"),
    "date_in_future": Rule("error", "a date after today (admit, discharge, procedure or service date)"),
    "admit_after_last_fiscal_year": Rule(
        "error", "admit_date after the end of the last fiscal year in facilities (31 March of the next year)"),
    "age_range": Rule("error", "age outside 0-120"),
    "icd10_syntax": Rule("error", f"ICD-10 code not written as DPC Form 1 does (no dot), pattern {ICD10_PATTERN}"),
    "kcode_syntax": Rule("error", f"K-code not written as DPC Form 1 does, pattern {KCODE_PATTERN}"),
    "adl_syntax": Rule(
        "error", "ADL string not 10 digits each within its item's levels "
        f"({'/'.join(f'0-{m}' for m in ADL_MAX_LEVEL)}) or 9 (unknown)"),
    "defaulted_column": Rule("warning", "a column added to the data model later is absent from a file (written before it); "
                             "its default is read"),
    "castable_type": Rule("warning", "a column is stored in another type than the schema's; it is cast"),
    "empty_table": Rule("warning", "a table has no rows"),
    "stay_over_365": Rule("warning", f"a stay longer than {STAY_MAX_DAYS} days"),
    "overlapping_stays": Rule("warning", "a patient's admission starts before the previous one ended"),
    "patient_sex_inconsistent": Rule("warning", "one patient_id recorded with both sexes"),
    "main_diagnosis_count": Rule("warning", "an admission without exactly one diagnosis of role main (DPC Form 1 has one)"),
    "height_implausible": Rule("warning", f"height_cm outside {HEIGHT_CM[0]:g}-{HEIGHT_CM[1]:g} "
                               f"({CHILD_HEIGHT_CM[0]:g}-{CHILD_HEIGHT_CM[1]:g} under age 18)"),
    "weight_implausible": Rule("warning", f"weight_kg outside {WEIGHT_KG[0]:g}-{WEIGHT_KG[1]:g} "
                               f"({CHILD_WEIGHT_KG[0]:g}-{CHILD_WEIGHT_KG[1]:g} under age 18)"),
    "bmi_implausible": Rule("warning", f"BMI from height_cm and weight_kg outside {BMI[0]:g}-{BMI[1]:g} (age 18 or over)"),
    "beds_implausible": Rule("warning", f"beds outside {BEDS[0]}-{BEDS[1]}"),
    "quantity_nonpositive": Rule("warning", "billing quantity zero or negative"),
}


@dataclass(frozen=True)
class Example:
    """One row (or file) breaking a rule. ``row`` is 1-based within ``file`` (None: whole file)."""

    table: str
    file: str | None
    row: int | None
    value: str | None
    column: str | None = None

    def to_dict(self) -> dict:
        return {"table": self.table, "column": self.column, "file": self.file, "row": self.row, "value": self.value}


@dataclass(frozen=True)
class Finding:
    """One rule broken in one table (and column, for per-column rules).

    ``count`` is the number of rows breaking the rule (files, for the per-file rules
    ``missing_column``, ``column_type`` and ``castable_type``).
    """

    rule: str
    severity: str
    table: str
    column: str | None
    count: int
    message: str
    examples: tuple[Example, ...] = ()

    def to_dict(self) -> dict:
        return {
            "rule": self.rule, "severity": self.severity, "table": self.table, "column": self.column,
            "count": self.count, "message": self.message, "examples": [e.to_dict() for e in self.examples],
        }


@dataclass
class ValidationReport:
    """The findings of :func:`validate_database`.

    Attributes
    ----------
    path : str
        The database folder.
    tables : dict
        Per table: ``format``, ``encoding`` (CSV), ``files``, ``rows``.
    findings : list of Finding
        Errors first, then warnings; in table and rule order.
    seconds : float
        Wall time of the validation.
    """

    path: str
    tables: dict[str, dict] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when no rule of severity 'error' is broken (warnings allowed)."""
        return not self.errors

    @property
    def exit_code(self) -> int:
        """0 clean or warnings only, 1 errors."""
        return 0 if self.ok else 1

    def find(self, rule: str, table: str | None = None, column: str | None = None) -> list[Finding]:
        """The findings of one rule (optionally one table / column)."""
        return [
            f for f in self.findings
            if f.rule == rule and (table is None or f.table == table) and (column is None or f.column == column)
        ]

    def raise_for_errors(self) -> None:
        """Raise DataValidationError (carrying this report) if any error was found."""
        if not self.ok:
            worst = "; ".join(f"{f.rule} {f.table}{'.' + f.column if f.column else ''} ({f.count:,})" for f in self.errors[:3])
            more = f" and {len(self.errors) - 3} more" if len(self.errors) > 3 else ""
            raise DataValidationError(
                f"{self.path}: database breaks the data model: {worst}{more}; run `hospstudy validate {self.path}`",
                report=self,
            )

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "seconds": round(self.seconds, 3),
            "tables": self.tables,
            "findings": [f.to_dict() for f in self.findings],
        }

    def render(self, console) -> None:
        """Print the tables read and a table of findings (rule, severity, count, examples)."""
        from rich.table import Table

        rows = ", ".join(f"{name} {info['rows']:,}" for name, info in self.tables.items())
        console.print(f"[bold]{self.path}[/]: {rows} rows ({self.seconds:.1f} s)", soft_wrap=True)
        if not self.findings:
            console.print("[green]✓[/] the database follows the data model: no errors, no warnings")
            return
        t = Table(show_lines=True, header_style="bold")
        t.add_column("severity")
        t.add_column("rule")
        t.add_column("where")
        t.add_column("count", justify="right")
        t.add_column("what, and examples (file:row value)")
        for f in self.findings:
            sev = "[red]error[/]" if f.severity == "error" else "[yellow]warning[/]"
            where = f.table + (f".{f.column}" if f.column else "")
            ex = "\n".join(
                f"  {e.file or ''}{':' + str(e.row) if e.row is not None else ''}"
                f"{' ' + repr(e.value) if e.value is not None else (' (null)' if e.row is not None else '')}"
                for e in f.examples
            )
            t.add_row(sev, f.rule, where, f"{f.count:,}", _escape(f.message + ("\n" + ex if ex else "")))
        console.print(t)
        n_e, n_w = len(self.errors), len(self.warnings)
        verdict = "[red]✗ errors[/]" if n_e else "[green]✓ no errors[/]"
        console.print(f"{verdict}: {n_e} rule(s) broken as errors, {n_w} warning(s)")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    rule: str
    column: str | None
    flag: str  # SQL boolean over the row
    value: str  # SQL text shown as the example value
    message: str | None = None
    keyed: bool = False  # reads a per-admission table joined on admission_id (checked in passes)


def _fy(col: str) -> str:
    return f"(year({col}) - CASE WHEN month({col}) < 4 THEN 1 ELSE 0 END)"


def _adl_regex() -> str:
    return "".join(f"[0-{m}9]" for m in ADL_MAX_LEVEL)


def _txt(expr: str) -> str:
    return f"CAST({expr} AS VARCHAR)"


class _Validator:
    def __init__(self, path: Path, encoding, memory_limit: str, threads: int | None, show_progress: bool,
                 key_parts: int | None = None, temp_directory: str | Path | None = None):
        self.path = path
        self.key_parts = key_parts  # None: chosen from the admissions' count and the memory limit
        self.encoding = encoding
        self.memory_limit = memory_limit
        self.threads = threads
        self.show_progress = show_progress
        self.findings: list[Finding] = []
        self.tables: dict[str, dict] = {}
        self.absent: dict[str, set[str]] = {}
        self.plans: dict[str, readers.ScanPlan] = {}
        self.today = datetime.date.today()
        self.temp_directory = temp_directory

    # -- findings helpers
    def add(self, rule: str, table: str, column: str | None, count: int, examples, message: str | None = None):
        if count <= 0:
            return
        r = RULES[rule]
        self.findings.append(Finding(rule, r.severity, table, column, int(count), message or r.description, tuple(examples)))

    def run(self) -> ValidationReport:
        import duckdb

        t0 = time.perf_counter()
        sources = readers.locate_tables(self.path, encoding=self.encoding)
        where = None
        if self.temp_directory:
            where = Path(self.temp_directory)
            where.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="hospstudy-validate-", dir=where) as tmp:
            con = duckdb.connect(os.path.join(tmp, "validate.duckdb"))
            try:
                try:
                    con.execute(f"SET memory_limit = {sql_str(self.memory_limit)}")
                except duckdb.Error:
                    raise InputError(
                        f"The memory limit (memory_limit or $HOSPSTUDY_MEMORY_LIMIT) must be a size such as "
                        f"'2GB' or '512MB'. Got {self.memory_limit!r} instead."
                    ) from None
                con.execute(f"SET temp_directory = {sql_str(os.path.join(tmp, 'spill'))}")
                con.execute("SET preserve_insertion_order = false")
                # DuckDB's own progress bar writes to stdout, which --json keeps for the report.
                con.execute("SET enable_progress_bar = false")
                if self.threads:
                    con.execute(f"SET threads = {int(self.threads)}")
                self._run(con, sources, tmp)
            finally:
                con.close()
        order = {name: i for i, name in enumerate(RULES)}
        tables = {name: i for i, name in enumerate(TABLE_NAMES)}
        self.findings.sort(key=lambda f: (f.severity != "error", tables[f.table], order[f.rule], f.column or ""))
        return ValidationReport(str(self.path), self.tables, self.findings, time.perf_counter() - t0)

    def _run(self, con, sources, tmp):
        from hospstudy.console import progress

        steps = ["read"] * len(sources) + ["keys", "keys"] + list(sources)
        prog = progress(transient=True)
        if not self.show_progress:
            prog.disable = True
        with prog:
            task = prog.add_task("validating", total=len(steps))
            for name, src in sources.items():
                prog.update(task, description=f"reading {name} ({src.format})")
                self._prepare(con, name, src, tmp)
                prog.advance(task)
            prog.update(task, description="building keys")
            self._keys(con)
            prog.advance(task, 2)
            for name in sources:
                prog.update(task, description=f"checking {name}")
                self._check_table(con, name)
                prog.advance(task)

    # -- stage 1: structure, typed views
    def _prepare(self, con, name: str, src, tmp):
        plan = readers.plan_scan(con, src, tmp)
        spec = TABLES[name]
        missing: dict[str, list[str]] = {}
        badtype: dict[str, list[tuple[str, pa.DataType]]] = {}
        cast: dict[str, list[tuple[str, pa.DataType]]] = {}
        for file, types in plan.file_types.items():
            for c in spec:
                t = types.get(c.name)
                if t is None:
                    missing.setdefault(c.name, []).append(file)
                elif arrow_kind(t) not in ACCEPTS[TARGET_KIND[c.type]]:
                    badtype.setdefault(c.name, []).append((file, t))
                elif src.format == "parquet" and not is_exact(t, c.type):
                    cast.setdefault(c.name, []).append((file, t))
        for c in spec:
            if c.name in missing and c.default is not None:
                files = missing[c.name]
                self.add("defaulted_column", name, c.name, len(files),
                         [Example(name, f, None, c.name, c.name) for f in files[:MAX_EXAMPLES]],
                         f"{c.name} ({_type_name(c.type)}) is absent (a database written before the column was "
                         f"added); read as {str(c.default).lower()} for every row")
            elif c.name in missing:
                files = missing[c.name]
                self.add("missing_column", name, c.name, len(files),
                         [Example(name, f, None, c.name, c.name) for f in files[:MAX_EXAMPLES]],
                         f"required column {c.name} ({_type_name(c.type)}) is absent"
                         + (" from the CSV header (headers must use the data model's column names, "
                            "see docs/data_model.md)" if src.format == "csv" else ""))
            if c.name in badtype:
                files = badtype[c.name]
                self.add("column_type", name, c.name, len(files),
                         [Example(name, f, None, str(t), c.name) for f, t in files[:MAX_EXAMPLES]],
                         f"{c.name} is stored as {files[0][1]}, which cannot be cast to {_type_name(c.type)}")
            if c.name in cast:
                files = cast[c.name]
                kinds = sorted({str(t) for _, t in files})
                self.add("castable_type", name, c.name, len(files),
                         [Example(name, f, None, str(t), c.name) for f, t in files[:MAX_EXAMPLES]],
                         f"{c.name} is stored as {', '.join(kinds)}, not {_type_name(c.type)}; values are cast"
                         + (f" (time-zone-aware timestamps to the date in {readers.DATA_TIME_ZONE})"
                            if any(arrow_kind(t) == "timestamptz" for _, t in files) else ""))
        select, absent = plan.typed_select(keep_raw=True)
        self.absent[name] = set(absent)
        self.plans[name] = plan
        con.execute(f"CREATE TEMP VIEW {quote('t_' + name)} AS {select}")
        rows = self._query(con, name, f"SELECT count(*) FROM {quote('t_' + name)}").fetchone()[0]
        info = {"format": src.format, "files": len(src.paths), "rows": int(rows)}
        if src.format == "csv":
            info["encoding"] = src.encoding
        self.tables[name] = info
        if rows == 0:
            self.add("empty_table", name, None, 1, [Example(name, src.relpath(src.paths[0]), None, None)])

    def _has(self, table: str, *cols: str) -> bool:
        return table in self.absent and not (set(cols) & self.absent[table])

    def _query(self, con, table: str, sql: str):
        import duckdb

        try:
            return con.execute(sql)
        except duckdb.Error as e:
            raise DataUnusableError(
                f"table {table}: cannot read its files ({readers._first_line(e)})"
            ) from None

    # -- stage 2: key tables
    def _keys(self, con):
        if self._has("admissions", "admission_id"):
            cols = ["admission_id", "count(*) AS n"]
            cols.append("min(admit_date) AS admit_date" if self._has("admissions", "admit_date") else "NULL::DATE AS admit_date")
            cols.append("max(discharge_date) AS discharge_date" if self._has("admissions", "discharge_date") else "NULL::DATE AS discharge_date")
            self._query(con, "admissions", f"CREATE TABLE adm_keys AS SELECT {', '.join(cols)} FROM t_admissions "
                        "WHERE admission_id IS NOT NULL GROUP BY admission_id")
            if self.key_parts is None:
                n = con.execute("SELECT count(*) FROM adm_keys").fetchone()[0]
                self.key_parts = key_parts(int(n), self.memory_limit)
        if self._has("diagnoses", "admission_id", "role"):
            self._query(con, "diagnoses", "CREATE TABLE dx_main AS SELECT admission_id, count_if(role = 'main') AS n_main "
                        "FROM t_diagnoses WHERE admission_id IS NOT NULL GROUP BY admission_id")
        if self._has("facilities", "hospital_id", "fiscal_year"):
            self._query(con, "facilities", "CREATE TABLE fac_keys AS SELECT hospital_id, fiscal_year, count(*) AS n "
                        "FROM t_facilities WHERE hospital_id IS NOT NULL AND fiscal_year IS NOT NULL "
                        "GROUP BY hospital_id, fiscal_year")

    # -- stage 3: one aggregate scan per table
    def _column_checks(self, table: str) -> list[_Check]:
        plan = self.plans[table]
        checks = []
        for c in TABLES[table]:
            if c.name in self.absent[table]:
                continue
            col, raw = f"t.{quote(c.name)}", f"t.{quote(c.name + '__raw')}"
            if not c.nullable:
                checks.append(_Check("not_null", c.name, f"{raw} IS NULL", "NULL",
                                     f"{c.name} must be filled ({_type_name(c.type)})"))
            kind = plan.kinds.get(c.name, TARGET_KIND[c.type])  # absent with a default: typed already
            if not (kind == TARGET_KIND[c.type] and kind in ("string", "bool", "date", "float")):
                checks.append(_Check("value_type", c.name, f"{raw} IS NOT NULL AND {col} IS NULL", _txt(raw),
                                     f"{c.name} values that are not a valid {_type_name(c.type)}"
                                     + (" (dates: YYYY-MM-DD, YYYYMMDD or YYYY/MM/DD)" if TARGET_KIND[c.type] == "date" else "")))
            if c.allowed:
                listing = ", ".join(sql_str(v) if isinstance(v, str) else str(v) for v in c.allowed)
                checks.append(_Check("allowed_values", c.name, f"{col} NOT IN ({listing})", _txt(col),
                                     f"{c.name} must be one of {', '.join(map(str, c.allowed))}"))
        return checks

    def _future(self, col: str) -> _Check:
        today = sql_str(self.today.isoformat())
        return _Check("date_in_future", col, f"t.{quote(col)} > DATE {today}", _txt(f"t.{quote(col)}"),
                      f"{col} after today ({self.today.isoformat()}): a typo? (a stay of years would follow)")

    def _check_table(self, con, table: str):
        checks = self._column_checks(table)
        joins, kjoins, extra, window = [], [], [], ""
        has = lambda *cols: self._has(table, *cols)  # noqa: E731
        adm_keys = self._has("admissions", "admission_id")
        if table == "facilities":
            if has("hospital_id", "fiscal_year"):
                joins.append("LEFT JOIN fac_keys k ON k.hospital_id = t.hospital_id AND k.fiscal_year = t.fiscal_year")
                checks.append(_Check("duplicate_facility", None, "k.n > 1",
                                     "'hospital_id ' || t.hospital_id || ', fiscal_year ' || t.fiscal_year"))
            if has("beds"):
                checks.append(_Check("beds_implausible", "beds", f"t.beds NOT BETWEEN {BEDS[0]} AND {BEDS[1]}", _txt("t.beds")))
        elif table == "admissions":
            if has("admission_id"):
                kjoins.append(("adm_keys", "k"))
                checks.append(_Check("unique_admission_id", "admission_id", "k.n > 1", "t.admission_id",
                                     "admission_id appears on more than one row (count: rows sharing an id)", keyed=True))
            if has("hospital_id", "admit_date") and self._has("facilities", "hospital_id", "fiscal_year"):
                joins.append(f"LEFT JOIN fac_keys f ON f.hospital_id = t.hospital_id AND f.fiscal_year = {_fy('t.admit_date')}")
                checks.append(_Check(
                    "admission_facility", "hospital_id",
                    "t.hospital_id IS NOT NULL AND t.admit_date IS NOT NULL AND f.hospital_id IS NULL",
                    f"'hospital_id ' || t.hospital_id || ', fiscal_year ' || {_fy('t.admit_date')}"))
            if has("admission_id") and self._has("diagnoses", "admission_id", "role"):
                kjoins.append(("dx_main", "m"))
                checks.append(_Check("main_diagnosis_count", "admission_id", "coalesce(m.n_main, 0) <> 1",
                                     "t.admission_id || ': ' || coalesce(m.n_main, 0) || ' main diagnoses'", keyed=True))
            if has("admit_date", "discharge_date"):
                checks.append(_Check("discharge_before_admit", "discharge_date", "t.discharge_date < t.admit_date",
                                     "'admit ' || t.admit_date || ', discharge ' || t.discharge_date"))
                checks.append(_Check("stay_over_365", "discharge_date",
                                     f"date_diff('day', t.admit_date, t.discharge_date) > {STAY_MAX_DAYS}",
                                     "date_diff('day', t.admit_date, t.discharge_date) || ' days'"))
            for col in ("admit_date", "discharge_date"):
                if has(col):
                    checks.append(self._future(col))
            if has("admit_date") and self._has("facilities", "hospital_id", "fiscal_year"):
                last = "(SELECT max(fiscal_year) FROM fac_keys)"
                checks.append(_Check(
                    "admit_after_last_fiscal_year", "admit_date", f"{_fy('t.admit_date')} > {last}",
                    f"'admit ' || t.admit_date || ', last fiscal year ' || {last}",
                    "admit_date after the last fiscal year of the facilities table (a typo, or a table of "
                    "another database?)"))
            if has("age"):
                checks.append(_Check("age_range", "age", "t.age NOT BETWEEN 0 AND 120", _txt("t.age")))
            for col in ("adl_adm", "adl_dis"):
                if has(col):
                    checks.append(_Check("adl_syntax", col, f"NOT regexp_full_match(t.{col}, '{_adl_regex()}')",
                                         f"t.{col}"))
            child = "coalesce(t.age < 18, false)" if has("age") else "false"
            for col, adult, young, rule in (("height_cm", HEIGHT_CM, CHILD_HEIGHT_CM, "height_implausible"),
                                            ("weight_kg", WEIGHT_KG, CHILD_WEIGHT_KG, "weight_implausible")):
                if has(col):
                    checks.append(_Check(
                        rule, col, f"CASE WHEN {child} THEN t.{col} NOT BETWEEN {young[0]} AND {young[1]} "
                        f"ELSE t.{col} NOT BETWEEN {adult[0]} AND {adult[1]} END", _txt(f"t.{col}")))
            if has("height_cm", "weight_kg"):
                bmi = "(t.weight_kg / ((t.height_cm / 100.0) * (t.height_cm / 100.0)))"
                # BMI is judged to one decimal, as it is reported, so float32 noise at a bound is not flagged.
                checks.append(_Check("bmi_implausible", None,
                                     f"NOT {child} AND t.height_cm > 0 AND round({bmi}, 1) NOT BETWEEN {BMI[0]} AND {BMI[1]}",
                                     f"'BMI ' || round({bmi}, 1) || ' (' || t.height_cm || ' cm, ' || t.weight_kg || ' kg)'"))
            if has("patient_id", "admit_date", "discharge_date", "admission_id"):
                extra.append(("t.admit_date AS _adm, lag(t.discharge_date) OVER w AS _prev_dis, lag(t.admission_id) OVER w AS _prev_id",
                              "_prev_dis > _adm"))
                window = "WINDOW w AS (PARTITION BY t.patient_id ORDER BY t.admit_date, t.admission_id)"
                checks.append(_Check("overlapping_stays", "admit_date", "w._prev_dis > t.admit_date",
                                     "'patient ' || t.patient_id || ': ' || t.admission_id || ' admitted ' || t.admit_date "
                                     "|| ' before ' || w._prev_id || ' discharged ' || w._prev_dis"))
            if has("patient_id", "sex"):
                sx = "CASE WHEN t.sex IN ('M', 'F') THEN t.sex END"
                extra.append((f"min({sx}) OVER (PARTITION BY t.patient_id) <> max({sx}) OVER (PARTITION BY t.patient_id) AS _sex_mixed",
                              "_sex_mixed"))
                checks.append(_Check("patient_sex_inconsistent", "sex", "w._sex_mixed",
                                     "'patient ' || t.patient_id || ' sex ' || t.sex"))
        else:
            if has("admission_id") and adm_keys:
                kjoins.append(("adm_keys", "k"))
                checks.append(_Check("admission_exists", "admission_id",
                                     "t.admission_id IS NOT NULL AND k.admission_id IS NULL", "t.admission_id", keyed=True))
            date_col, rule = {"procedures": ("proc_date", "proc_date_in_stay"),
                              "billing": ("service_date", "billing_in_stay")}.get(table, (None, None))
            if date_col and has("admission_id", date_col) and adm_keys:
                d = f"t.{date_col}"
                checks.append(_Check(rule, date_col, f"{d} < k.admit_date OR {d} > k.discharge_date",
                                     f"'{date_col} ' || {d} || ', stay ' || coalesce(CAST(k.admit_date AS VARCHAR), '?') || "
                                     f"' to ' || coalesce(CAST(k.discharge_date AS VARCHAR), '?') || ' (' || t.admission_id || ')'",
                                     keyed=True))
            if date_col and has(date_col):
                checks.append(self._future(date_col))
            if table == "diagnoses" and has("icd10"):
                checks.append(_Check("icd10_syntax", "icd10", f"NOT regexp_full_match(t.icd10, {sql_str(_re2(ICD10_PATTERN))})", "t.icd10"))
            if table == "procedures" and has("proc_code"):
                checks.append(_Check("kcode_syntax", "proc_code", f"NOT regexp_full_match(t.proc_code, {sql_str(_re2(KCODE_PATTERN))})", "t.proc_code"))
            if table == "billing" and has("quantity"):
                checks.append(_Check("quantity_nonpositive", "quantity", "t.quantity <= 0", _txt("t.quantity")))
        if not checks:
            return
        base = quote("t_" + table)
        if extra:
            # Window columns are computed once, on the table alone, over the few columns they
            # read; only the rows they flag are kept and joined back by (file, row). A window
            # in the scan sorted whole rows (every typed and raw column) in every pass over the
            # admission keys: scale 1's 1.7 M admissions took 7.7 s, now 1.5 + 3.2 s.
            cols = ", ".join(e for e, _ in extra)
            flagged = " OR ".join(f"coalesce({f}, false)" for _, f in extra)
            self._query(con, table, f"CREATE TEMP TABLE {quote('w_' + table)} AS SELECT * FROM "
                                    f"(SELECT t._file, t._row, {cols} FROM {base} t {window}) WHERE {flagged}")
            joins.append(f"LEFT JOIN {quote('w_' + table)} w ON w._file = t._file AND w._row = t._row")
        # The per-admission tables (the admission keys, the main-diagnosis counts) are joined in
        # ``parts`` passes, each over the rows and keys of one share of hash(admission_id): a
        # nationwide database's keys (67 M at scale 40) do not fit in the memory limit, and the
        # one-pass join spilled more than 33 GB of billing rows and filled the disk
        # (bench/RESULTS.md, scale). Only the checks that read them run in the passes (a pass
        # reads just their columns); the others run once over every row. Counts add up and the
        # first examples are kept, so the findings do not depend on the number of passes (tested).
        parts = (self.key_parts or 1) if kjoins else 1
        found: dict[int, tuple[int, list]] = {}
        if parts == 1:
            self._scan(con, table, base, checks, range(len(checks)),
                       joins + [f"LEFT JOIN {t} {a} ON {a}.admission_id = t.admission_id" for t, a in kjoins], "", found)
        else:
            plain = [i for i, c in enumerate(checks) if not c.keyed]
            keyed = [i for i, c in enumerate(checks) if c.keyed]
            if plain:
                self._scan(con, table, base, checks, plain, joins, "", found)
            for k in range(parts):
                share = f"hash(admission_id) % {parts} = {k}"
                self._scan(con, table, base, checks, keyed,
                           [f"LEFT JOIN (SELECT * FROM {t} WHERE {share}) {a} ON {a}.admission_id = t.admission_id"
                            for t, a in kjoins], f"WHERE hash(t.admission_id) % {parts} = {k}", found)
        for i, c in enumerate(checks):
            n, ex = found.get(i, (0, []))
            ex = sorted(ex, key=lambda e: (e["file"], e["row"]))[:MAX_EXAMPLES]
            self.add(c.rule, table, c.column, n,
                     [Example(table, e["file"], int(e["row"]), e["value"], c.column) for e in ex], c.message)

    def _scan(self, con, table, base, checks, which, joins, where, found):
        """One scan of ``table`` for the checks ``which`` (indexes into ``checks``): their counts
        and first examples are added to ``found``."""
        cs = [checks[i] for i in which]
        if not cs:
            return
        flags = ", ".join(f"coalesce({c.flag}, false) AS _f{j}" for j, c in enumerate(cs))
        # Example text only for flagged rows: building it for every row of a 40 M-line billing
        # table cost more than the checks themselves.
        values = ", ".join(f"CASE WHEN coalesce({c.flag}, false) THEN left({c.value}, {MAX_VALUE_CHARS}) END AS _v{j}"
                           for j, c in enumerate(cs))
        aggs = ", ".join(
            f"count_if(_f{j}), min_by({{'file': _file, 'row': _row, 'value': _v{j}}}, (_file, _row), {MAX_EXAMPLES}) "
            f"FILTER (WHERE _f{j})"
            for j in range(len(cs))
        )
        inner = f"SELECT t._file, t._row, {flags}, {values} FROM {base} t {' '.join(joins)} {where}"
        row = self._query(con, table, f"SELECT {aggs} FROM ({inner})").fetchone()
        for j, i in enumerate(which):
            n, ex = found.get(i, (0, []))
            found[i] = (n + (row[2 * j] or 0), ex + (row[2 * j + 1] or []))


# Memory allowed per admission key in a join to the keys. Measured (DuckDB 1.5.6, 5 M keys of
# 29 characters with a count and two dates, joined by 20 M rows): the join raised peak RSS by
# 95 bytes per key over the stored keys; 160 adds room for the keys read back from the work
# database. With it, scale 40's 67 M keys under a 6GB limit are joined in 6 passes, scale
# 10's 17 M in 2, scale 1's 1.7 M under the default 2GB in 1.
KEY_BYTES = 160


def key_parts(n_keys: int, memory_limit: str) -> int:
    """Passes for the joins to the admission keys: enough that a pass's keys take at most a
    third of the memory limit (1 when the limit cannot be read)."""
    import math

    limit = readers.size_bytes(memory_limit)
    if not limit:
        return 1
    return max(1, math.ceil(n_keys * KEY_BYTES / (limit / 3)))


def _re2(pattern: str) -> str:
    """Our patterns are anchored for Python's re; regexp_full_match anchors by itself."""
    return pattern.removeprefix("^").removesuffix("$")


def _type_name(t: pa.DataType) -> str:
    return {"int": str(t), "float": str(t), "bool": "boolean", "date": "date", "string": "string"}[TARGET_KIND[t]]


def validate_database(
    path: str | Path,
    encoding: str | None = None,
    *,
    memory_limit: str | None = None,
    threads: int | None = None,
    progress: bool = True,
    key_parts: int | None = None,
    temp_directory: str | Path | None = None,
) -> ValidationReport:
    """Check a database folder against the data model.

    Parameters
    ----------
    path : str or Path
        Database folder (see docs/data_model.md): Parquet tables, or CSV in UTF-8 or CP932.
    encoding : {'utf-8', 'cp932'}, optional
        Encoding of CSV tables; detected per table when omitted.
    memory_limit : str, optional
        DuckDB memory limit (e.g. ``'2GB'``); default ``$HOSPSTUDY_MEMORY_LIMIT`` or ``'2GB'``.
        Work beyond it spills to a temporary folder.
    threads : int, optional
        DuckDB threads (default: all cores).
    progress : bool
        Show a progress display on a terminal.
    temp_directory : path, optional
        Where the temporary folder (spill, CSV converted to Parquet) is made; default the
        system's (``$TMPDIR``).
    key_parts : int, optional
        Passes in which the diagnoses, procedures and billing are joined to the admission keys
        (each over one share of the keys); default: from the number of admissions and the
        memory limit (1 up to a few million admissions at 2GB). The findings are the same.

    Returns
    -------
    ValidationReport
        ``.findings`` (one per rule broken per table/column), ``.ok``, ``.exit_code``
        (0 clean or warnings only, 1 errors), ``.to_dict()``, ``.render(console)``.

    Raises
    ------
    DataUnusableError
        Missing folder or table, unreadable or corrupt file, CSV neither UTF-8 nor CP932.

    Examples
    --------
    >>> from hospstudy.data.validate import validate_database
    >>> report = validate_database("data/demo")  # doctest: +SKIP
    >>> report.ok, [f.rule for f in report.findings]  # doctest: +SKIP
    (True, [])
    """
    limit = memory_limit or os.environ.get("HOSPSTUDY_MEMORY_LIMIT") or "2GB"
    return _Validator(Path(path), encoding, limit, threads, progress, key_parts, temp_directory).run()
