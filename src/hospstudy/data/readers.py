"""Find and read the tables of a database folder (Parquet files, Parquet part folders, CSV).

A database is a folder with one entry per canonical table (see :mod:`hospstudy.data.schema`):
``NAME.parquet``, a folder ``NAME/`` of Parquet (or CSV) parts, possibly hive-partitioned by
``fiscal_year`` (the partition column is ignored), or ``NAME.csv``. CSV files may be UTF-8 (with
or without a byte-order mark) or CP932 (Shift_JIS as Windows writes it, common in DPC exports);
the encoding is detected unless given. Every value is read as text from CSV and cast to the
schema type here, so one set of casting rules serves validation and the cohort engine alike:

* integers: integer, integral float or decimal, or text such as ``"12"`` or ``"12.0"``;
* floats: any number or numeric text;
* booleans: boolean, integer 0/1, or text ``true/false``, ``t/f``, ``1/0``, ``yes/no``, ``y/n``;
* dates: date, timestamp (the date part), integer ``YYYYMMDD``, or text ``YYYY-MM-DD``,
  ``YYYYMMDD`` or ``YYYY/MM/DD``;
* strings: text, or integers (identifiers stored as numbers).

Rows are numbered from 1 within each file (for CSV the header is not counted, so a record
that spans one line sits on line ``row + 1``).
"""

from __future__ import annotations

import codecs
import csv
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from hospstudy.data.schema import TABLE_NAMES, TABLES, arrow_schema
from hospstudy.errors import DataUnusableError, DataValidationError, InputError

# Columns the CSV conversion adds so that every finding can name the file and row.
FILE_COL = "__hospstudy_file"
ROW_COL = "__hospstudy_row"

_ENCODING_ALIASES = {
    "utf8": "utf-8", "utf-8": "utf-8", "utf_8": "utf-8", "utf-8-sig": "utf-8", "utf_8_sig": "utf-8",
    "cp932": "cp932", "ms932": "cp932", "windows-31j": "cp932", "shift_jis": "cp932",
    "shift-jis": "cp932", "sjis": "cp932", "s_jis": "cp932",
}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class TableSource:
    """Where one canonical table lives.

    Attributes
    ----------
    name : str
        Canonical table name (``admissions``, ...).
    format : str
        ``'parquet'`` or ``'csv'``.
    paths : tuple of Path
        Every file of the table, sorted.
    root : Path
        The file, or the folder of parts.
    encoding : str
        CSV encoding (``'utf-8'`` or ``'cp932'``); ``'utf-8'`` for Parquet.
    hive : bool
        Whether the parts sit in ``key=value`` folders (the partition column is ignored).
    """

    name: str
    format: str  # 'parquet' | 'csv'
    paths: tuple[Path, ...]
    root: Path  # the file, or the folder of parts
    encoding: str = "utf-8"
    hive: bool = False

    @property
    def glob(self) -> str:
        """A glob an engine can read (DuckDB read_parquet, Spark path)."""
        if self.root.is_dir():
            return str(self.root / "**" / f"*.{self.format}")
        return str(self.root)

    @property
    def database(self) -> Path:
        """The database folder the table belongs to."""
        return self.root.parent

    def relpath(self, path: str | Path) -> str:
        """A file's path relative to the database folder, as findings show it."""
        try:
            return Path(path).relative_to(self.database).as_posix()
        except ValueError:
            return str(path)


def normalize_encoding(encoding: str | None) -> str | None:
    """Map an encoding name to ``'utf-8'`` or ``'cp932'`` (``None`` stays ``None``: detect).

    Shift_JIS and its aliases map to CP932, the Windows superset DPC exports are written in.
    Raises InputError for any other encoding.
    """
    if encoding is None:
        return None
    key = encoding.strip().lower()
    if key not in _ENCODING_ALIASES:
        raise InputError(
            f"The 'encoding' parameter must be one of utf-8, cp932 (or shift_jis). Got {encoding!r} instead."
        )
    return _ENCODING_ALIASES[key]


def detect_encoding(path: str | Path) -> str:
    """Detect whether a CSV file is UTF-8 or CP932.

    The file is read in 1 MiB chunks up to the first chunk holding non-ASCII bytes, which is
    decoded as UTF-8 and, failing that, as CP932. A pure-ASCII file is UTF-8.

    Raises
    ------
    DataUnusableError
        The file cannot be read, or its bytes are neither UTF-8 nor CP932.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            offset = 0
            while chunk := f.read(_CHUNK):
                if not chunk.isascii():
                    # Extend to a line end so a multi-byte character is not cut in two.
                    chunk += f.readline()
                    for enc in ("utf-8", "cp932"):
                        try:
                            codecs.getincrementaldecoder(enc)().decode(chunk, final=False)
                            return enc
                        except UnicodeDecodeError:
                            continue
                    try:
                        chunk.decode("utf-8")
                    except UnicodeDecodeError as e:
                        where = offset + e.start
                    raise DataUnusableError(
                        f"{path}: not decodable as UTF-8 or CP932 (first bad byte at offset {where}); "
                        "re-export the file as UTF-8 or CP932 (Shift_JIS)"
                    )
                offset += len(chunk)
    except OSError as e:
        raise DataUnusableError(f"{path}: cannot read file ({e.strerror or e})") from None
    return "utf-8"


def locate_tables(
    path: str | Path, required: tuple[str, ...] = TABLE_NAMES, encoding: str | None = None
) -> dict[str, TableSource]:
    """Find each canonical table in a database folder.

    Parameters
    ----------
    path : str or Path
        The database folder.
    required : tuple of str
        Tables that must be present.
    encoding : str, optional
        Encoding of CSV tables (``'utf-8'`` or ``'cp932'``); detected per table when omitted.

    Returns
    -------
    dict
        Table name to :class:`TableSource`.

    Raises
    ------
    DataUnusableError
        The folder does not exist, a required table is absent, a table folder holds no parts,
        or a CSV table is neither UTF-8 nor CP932.
    """
    enc = normalize_encoding(encoding)
    root = Path(path)
    if not root.is_dir():
        raise DataUnusableError(f"{root}: no such database folder")
    found: dict[str, TableSource] = {}
    missing = []
    for name in required:
        single = root / f"{name}.parquet"
        folder = root / name
        csv_file = root / f"{name}.csv"
        if single.is_file():
            found[name] = TableSource(name, "parquet", (single,), single)
        elif folder.is_dir():
            parts = tuple(sorted(folder.rglob("*.parquet")))
            fmt = "parquet"
            if not parts:
                parts = tuple(sorted(folder.rglob("*.csv")))
                fmt = "csv"
            if not parts:
                raise DataUnusableError(f"{folder}: table folder holds no .parquet or .csv parts")
            hive = any("=" in p.parent.name for p in parts)
            table_enc = (enc or detect_encoding(parts[0])) if fmt == "csv" else "utf-8"
            found[name] = TableSource(name, fmt, parts, folder, encoding=table_enc, hive=hive)
        elif csv_file.is_file():
            found[name] = TableSource(name, "csv", (csv_file,), csv_file, encoding=enc or detect_encoding(csv_file))
        else:
            missing.append(name)
    if missing:
        raise DataUnusableError(
            f"{root}: missing table(s) {', '.join(missing)}; expected NAME.parquet, NAME/ (Parquet parts) "
            f"or NAME.csv for each of {', '.join(required)}"
        )
    return found


# --------------------------------------------------------------------------------------------
# CSV → Parquet (streamed), so that CSV and Parquet tables are read by the same SQL.


def csv_header(path: Path, encoding: str, label: str | None = None) -> list[str]:
    """The column names on a CSV file's first line (a UTF-8 byte-order mark is dropped).

    ``label`` is how errors name the file (default: its path).
    """
    label = label or str(path)
    try:
        with open(path, "r", encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline="") as f:
            row = next(csv.reader(f), None)
    except UnicodeDecodeError as e:
        other = "cp932" if encoding == "utf-8" else "utf-8"
        raise DataUnusableError(
            f"{label}: cannot read as {encoding} CSV: header line has bytes that are not {encoding} ({e.reason}); "
            f"is it {other.upper()}? give --encoding {other}"
        ) from None
    except OSError as e:
        raise DataUnusableError(f"{label}: cannot read file ({e.strerror or e})") from None
    if not row:
        raise DataUnusableError(f"{label}: empty CSV file (no header line)")
    names = [c.strip() for c in row]
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise DataUnusableError(f"{label}: header names column(s) {', '.join(dupes)} more than once")
    return names


def csv_to_parquet(source: TableSource, dest: str | Path, on_rows=None) -> list[Path]:
    """Convert a CSV table to Parquet files of text columns, streamed in blocks.

    Each output file gets two extra columns: ``__hospstudy_file`` (the CSV path relative to the
    database folder) and ``__hospstudy_row`` (the 1-based record number in that file).
    Empty fields become nulls. ``on_rows(n)`` is called after each block with its row count.

    Raises
    ------
    DataUnusableError
        A file cannot be decoded in the table's encoding or is not well-formed CSV.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    outs = []
    for i, path in enumerate(source.paths):
        rel = source.relpath(path)
        names = csv_header(path, source.encoding, rel)
        out = dest / f"{source.name}-{i:05d}.parquet"
        read_opts = pacsv.ReadOptions(
            encoding="utf8" if source.encoding == "utf-8" else source.encoding,
            block_size=4 << 20, column_names=names, skip_rows=1,
        )
        conv = pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=True, null_values=[""],
            quoted_strings_can_be_null=True,
        )
        row = 0
        writer = None
        try:
            reader = pacsv.open_csv(path, read_options=read_opts, convert_options=conv)
            schema = reader.schema.append(pa.field(FILE_COL, pa.string())).append(pa.field(ROW_COL, pa.int64()))
            writer = pq.ParquetWriter(out, schema, compression="zstd")
            for batch in reader:
                n = batch.num_rows
                cols = list(batch.columns) + [
                    pa.array([rel] * n, pa.string()) if n else pa.array([], pa.string()),
                    pa.array(range(row + 1, row + n + 1), pa.int64()),
                ]
                writer.write_batch(pa.RecordBatch.from_arrays(cols, schema=schema))
                row += n
                if on_rows:
                    on_rows(n)
            if row == 0:
                writer.write_table(schema.empty_table())
        except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as e:
            msg = str(e).splitlines()[0]
            other = "cp932" if source.encoding == "utf-8" else "utf-8"
            hint = (f"; is it {other.upper()}? give --encoding {other}"
                    if isinstance(e, UnicodeDecodeError) or "UTF8" in msg or "decode" in msg.lower() else "")
            raise DataUnusableError(
                f"{rel}: cannot read as {source.encoding} CSV after record {row}: {msg}{hint}"
            ) from None
        finally:
            if writer is not None:
                writer.close()
        outs.append(out)
    return outs


# --------------------------------------------------------------------------------------------
# Column kinds and casting rules (shared by validation and read_table).

TARGET_KIND = {
    pa.int16(): "int", pa.int32(): "int", pa.float32(): "float", pa.bool_(): "bool",
    pa.date32(): "date", pa.string(): "string",
}
DUCK_TYPE = {
    pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.float32(): "FLOAT", pa.bool_(): "BOOLEAN",
    pa.date32(): "DATE", pa.string(): "VARCHAR",
}
# Source kinds each target kind accepts (anything else is an unusable column type).
ACCEPTS = {
    "int": {"int", "float", "decimal", "string", "null"},
    "float": {"int", "float", "decimal", "string", "null"},
    "bool": {"bool", "int", "string", "null"},
    "date": {"date", "timestamp", "int", "string", "null"},
    "string": {"string", "int", "null"},
}


def arrow_kind(t: pa.DataType) -> str:
    """Classify an Arrow type: int, float, decimal, bool, date, timestamp, string, null or other."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", lambda _: False)(t):
        return "string"
    if pa.types.is_null(t):
        return "null"
    return "other"


def duck_kind(type_name: str) -> str:
    """Classify a DuckDB type name the same way as :func:`arrow_kind`."""
    t = type_name.upper()
    if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
             "UBIGINT", "UHUGEINT"):
        return "int"
    if t in ("FLOAT", "DOUBLE", "REAL"):
        return "float"
    if t.startswith("DECIMAL"):
        return "decimal"
    if t == "BOOLEAN":
        return "bool"
    if t == "DATE":
        return "date"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    if t == "VARCHAR":
        return "string"
    if t == '"NULL"' or t == "NULL":
        return "null"
    return "other"


def is_exact(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether a stored Arrow type needs no cast (string, large_string and dictionary count as text)."""
    if pa.types.is_dictionary(source):
        return False
    if TARGET_KIND[target] == "string":
        return arrow_kind(source) == "string"
    return source == target


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def cast_expression(raw: str, kind: str, target: pa.DataType) -> str:
    """SQL (DuckDB) turning ``raw`` of source kind ``kind`` into ``target``; NULL where it cannot."""
    tk = TARGET_KIND[target]
    dt = DUCK_TYPE[target]
    if kind == "null":
        return f"CAST(NULL AS {dt})"
    if tk == "string":
        return f"CAST({raw} AS VARCHAR)"
    if tk == "int":
        if kind == "int":
            return f"TRY_CAST({raw} AS {dt})"
        num = f"TRY_CAST({raw} AS DOUBLE)" if kind == "string" else f"CAST({raw} AS DOUBLE)"
        return f"(CASE WHEN {num} = round({num}) THEN TRY_CAST({num} AS {dt}) END)"
    if tk == "float":
        return f"TRY_CAST({raw} AS {dt})"
    if tk == "bool":
        if kind == "bool":
            return raw
        if kind == "int":
            return f"(CASE {raw} WHEN 1 THEN TRUE WHEN 0 THEN FALSE END)"
        s = f"lower(trim({raw}))"
        return (f"(CASE WHEN {s} IN ('true','t','1','yes','y') THEN TRUE "
                f"WHEN {s} IN ('false','f','0','no','n') THEN FALSE END)")
    if tk == "date":
        if kind == "date":
            return raw
        if kind == "timestamp":
            return f"CAST({raw} AS DATE)"
        if kind == "int":
            return f"CAST(TRY_STRPTIME(CAST({raw} AS VARCHAR), '%Y%m%d') AS DATE)"
        s = f"trim({raw})"
        return (
            f"CAST(CASE WHEN regexp_full_match({s}, '[0-9]{{8}}') THEN TRY_STRPTIME({s}, '%Y%m%d') "
            f"WHEN regexp_full_match({s}, '[0-9]{{4}}/[0-9]{{1,2}}/[0-9]{{1,2}}') THEN TRY_STRPTIME({s}, '%Y/%m/%d') "
            f"WHEN regexp_full_match({s}, '[0-9]{{4}}-[0-9]{{1,2}}-[0-9]{{1,2}}') THEN TRY_STRPTIME({s}, '%Y-%m-%d') "
            f"END AS DATE)"
        )
    raise ValueError(f"no cast to {target}")  # pragma: no cover - TARGET_KIND is closed


def parquet_scan_sql(files: list[str]) -> str:
    """``read_parquet`` over the given files with file name and row number (hive keys ignored)."""
    listing = ", ".join(sql_str(f) for f in files)
    return (f"read_parquet([{listing}], filename=true, file_row_number=true, "
            f"hive_partitioning=false, union_by_name=true)")


@dataclass(frozen=True)
class ScanPlan:
    """How to read one table in DuckDB: the FROM clause, and the kind of every stored column."""

    source: TableSource
    from_sql: str
    file_expr: str  # SQL giving the file relative to the database folder
    row_expr: str  # SQL giving the 1-based row number within the file
    kinds: dict[str, str]  # stored column -> kind (union over files)
    file_types: dict[str, dict[str, pa.DataType]]  # file (relative) -> stored column -> Arrow type

    def typed_select(self, columns=None, keep_raw: bool = False) -> tuple[str, list[str]]:
        """``SELECT`` of the canonical columns cast to the schema, plus ``_file`` and ``_row``.

        With ``keep_raw`` each column's stored value is kept as ``<column>__raw``. Returns the
        SQL and the canonical columns absent from the table (selected as typed NULLs) or of a
        type that cannot be cast (also NULL).
        """
        wanted = [c for c in TABLES[self.source.name] if columns is None or c.name in columns]
        parts, absent = [], []
        for c in wanted:
            kind = self.kinds.get(c.name)
            if c.default is not None and (kind is None or any(c.name not in ft for ft in self.file_types.values())):
                # a column added to the data model later: files written before it read as the default
                lit = {True: "TRUE", False: "FALSE"}.get(c.default, repr(c.default))
                typed = f"CAST({lit} AS {DUCK_TYPE[c.type]})"
                if kind is not None and kind in ACCEPTS[TARGET_KIND[c.type]]:
                    typed = f"coalesce({cast_expression(quote(c.name), kind, c.type)}, {typed})"
                parts.append(f"{typed} AS {quote(c.name)}")
                if keep_raw:
                    parts.append(f"{typed} AS {quote(c.name + '__raw')}")
                continue
            if kind is None or kind not in ACCEPTS[TARGET_KIND[c.type]]:
                absent.append(c.name)
                parts.append(f"CAST(NULL AS {DUCK_TYPE[c.type]}) AS {quote(c.name)}")
                if keep_raw:
                    parts.append(f"NULL AS {quote(c.name + '__raw')}")
                continue
            parts.append(f"{cast_expression(quote(c.name), kind, c.type)} AS {quote(c.name)}")
            if keep_raw:
                raw = quote(c.name)
                if kind == "string":
                    raw = f"NULLIF(trim({raw}), '')"
                parts.append(f"{raw} AS {quote(c.name + '__raw')}")
        parts += [f"{self.file_expr} AS _file", f"{self.row_expr} AS _row"]
        return f"SELECT {', '.join(parts)} FROM {self.from_sql}", absent


def plan_scan(con, source: TableSource, workdir: str | Path | None = None, on_rows=None) -> ScanPlan:
    """Prepare a DuckDB scan of a table (converting CSV to Parquet in ``workdir`` first).

    Raises
    ------
    DataUnusableError
        A file is not Parquet, is corrupt, or (CSV) cannot be decoded or parsed.
    """
    import duckdb

    if source.format == "csv":
        if workdir is None:
            raise ValueError("plan_scan needs a workdir for CSV tables")
        files = [str(p) for p in csv_to_parquet(source, Path(workdir) / source.name, on_rows=on_rows)]
        scan = parquet_scan_sql(files)
        file_expr, row_expr = quote(FILE_COL), quote(ROW_COL)
        # CSV has no types: every column is text, and casts are the normal way in.
        file_types = {source.relpath(p): {n: pa.string() for n in csv_header(p, source.encoding, source.relpath(p))} for p in source.paths}
    else:
        file_types = {source.relpath(p): {f.name: f.type for f in check_parquet(p, source)} for p in source.paths}
        files = [str(p) for p in source.paths]
        scan = parquet_scan_sql(files)
        prefix = str(source.database) + os.sep
        file_expr = f"(CASE WHEN starts_with(filename, {sql_str(prefix)}) THEN substr(filename, {len(prefix) + 1}) ELSE filename END)"
        row_expr = "(file_row_number + 1)"
    try:
        desc = con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()
    except duckdb.Error as e:
        raise DataUnusableError(f"table {source.name}: cannot read its files ({_first_line(e)})") from None
    skip = {"filename", "file_row_number", FILE_COL, ROW_COL}
    kinds = {name: duck_kind(t) for name, t, *_ in desc if name not in skip}
    return ScanPlan(source, scan, file_expr, row_expr, kinds, file_types)


def check_parquet(path: Path, source: TableSource) -> pa.Schema:
    """Read a Parquet file's footer; DataUnusableError if the file is not readable Parquet."""
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as e:
        raise DataUnusableError(
            f"{source.relpath(path)}: not a readable Parquet file ({_first_line(e)})"
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _to_arrow(rel) -> pa.Table:
    res = rel.arrow()
    return res.read_all() if isinstance(res, pa.RecordBatchReader) else res


def read_table(source: TableSource, columns=None) -> pa.Table:
    """Read a whole table, typed to the canonical schema.

    Parameters
    ----------
    source : TableSource
        From :func:`locate_tables`.
    columns : sequence of str, optional
        Canonical columns to read (default all), returned in schema order.

    Returns
    -------
    pyarrow.Table
        Columns of ``hospstudy.data.schema.arrow_schema(source.name)``.

    Raises
    ------
    DataUnusableError
        A file cannot be read (corrupt Parquet, undecodable or malformed CSV).
    DataValidationError
        A requested column is absent or of an unusable type, or a value does not cast; the
        message names the file, row and value (run ``hospstudy validate`` for every problem).

    Examples
    --------
    >>> from hospstudy.data.readers import locate_tables, read_table
    >>> tables = locate_tables("data/demo")  # doctest: +SKIP
    >>> read_table(tables["admissions"], columns=["admission_id", "age"]).schema  # doctest: +SKIP
    admission_id: string not null
    age: int16 not null
    """
    import duckdb

    if columns is not None:
        unknown = [c for c in columns if c not in {col.name for col in TABLES[source.name]}]
        if unknown:
            raise InputError(
                f"The 'columns' parameter of read_table must name columns of table {source.name}. "
                f"Got {unknown!r} instead."
            )
    schema = arrow_schema(source.name)
    if columns is not None:
        schema = pa.schema([f for f in schema if f.name in columns])
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        with tempfile.TemporaryDirectory(prefix="hospstudy-read-") as tmp:
            plan = plan_scan(con, source, tmp)
            select, absent = plan.typed_select(schema.names, keep_raw=True)
            if absent:
                why = ", ".join(
                    f"{c} ({'missing' if c not in plan.kinds else 'type ' + plan.kinds[c] + ' cannot be cast'})"
                    for c in absent
                )
                raise DataValidationError(f"table {source.name}: unusable column(s) {why}")
            try:
                # Only columns whose cast can fail are checked (an extra scan of those columns).
                bad_checks = [
                    f"({quote(n + '__raw')} IS NOT NULL AND {quote(n)} IS NULL)"
                    for n in schema.names
                    if n in plan.kinds and plan.kinds[n] != "null"
                    and not _exact_kind(plan.kinds[n], schema.field(n).type)
                    and not all(n in ft and is_exact(ft[n], schema.field(n).type) for ft in plan.file_types.values())
                ]
                if bad_checks:
                    names = ", ".join(f"{quote(n)}, CAST({quote(n + '__raw')} AS VARCHAR) AS {quote(n + '__txt')}" for n in schema.names)
                    row = con.execute(
                        f"SELECT _file, _row, {names} FROM ({select}) WHERE {' OR '.join(bad_checks)} "
                        f"ORDER BY _file, _row LIMIT 1"
                    ).fetchone()
                    if row is not None:
                        vals = dict(zip([d[0] for d in con.description], row))
                        col = next(n for n in schema.names if vals[n] is None and vals[n + "__txt"] is not None)
                        raise DataValidationError(
                            f"{row[0]} row {row[1]}: {source.name}.{col} value {vals[col + '__txt']!r} is not a "
                            f"valid {TARGET_KIND[schema.field(col).type]}; run `hospstudy validate` for every problem"
                        )
                cols = ", ".join(quote(n) for n in schema.names)
                table = _to_arrow(con.sql(f"SELECT {cols} FROM ({select})"))
            except duckdb.Error as e:
                raise DataUnusableError(f"table {source.name}: cannot read its files ({_first_line(e)})") from None
    finally:
        con.close()
    return table.cast(schema)


def _exact_kind(kind: str, target: pa.DataType) -> bool:
    """Whether a DuckDB-side kind casts to the target without any chance of failure."""
    tk = TARGET_KIND[target]
    if tk == "int":
        return False  # a wider integer may overflow the narrower schema type
    return kind == tk or (tk == "string" and kind == "int") or (tk == "date" and kind == "timestamp") or (
        tk == "float" and kind in ("int", "decimal"))
