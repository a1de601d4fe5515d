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
* dates: date, timestamp (the date part; a time-zone-aware timestamp is first converted to
  Japan's time, :data:`DATA_TIME_ZONE`), integer ``YYYYMMDD``, or text ``YYYY-MM-DD``,
  ``YYYYMMDD`` or ``YYYY/MM/DD``;
* strings: text, or integers (identifiers stored as numbers).

Rows are numbered from 1 within each file (for CSV the header is not counted, so a record
that spans one line sits on line ``row + 1``).
"""

from __future__ import annotations

import codecs
import csv
import io
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
# Timestamps that carry a time zone become dates in this zone (DPC data are Japanese).
DATA_TIME_ZONE = "Asia/Tokyo"


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
    decoded as UTF-8 and, failing that, as CP932. A pure-ASCII file is UTF-8. The reader then
    decodes the whole file strictly (a file that changes encoding further down stops there).

    Raises
    ------
    DataUnusableError
        The file cannot be read, or its bytes are neither UTF-8 nor CP932.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            lines = 0
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
                    # neither decodes: the encoding that reads further is the file's, up to
                    # the line where it changes (or where the bytes are neither)
                    stops = {}
                    for enc in ("utf-8", "cp932"):
                        try:
                            chunk.decode(enc)
                        except UnicodeDecodeError as e:
                            stops[enc] = e.start
                    enc = max(stops, key=stops.get)
                    where = stops[enc]
                    line = lines + chunk.count(b"\n", 0, where) + 1
                    name = "UTF-8" if enc == "utf-8" else "CP932"
                    if not chunk[:where].isascii():
                        raise DataUnusableError(
                            f"{path} line {line}: byte 0x{chunk[where]:02x} is not {name}, and the lines before it "
                            f"are {name}: the file mixes encodings. Re-export it in one encoding (UTF-8 or CP932)"
                        )
                    raise DataUnusableError(
                        f"{path} line {line}: not decodable as UTF-8 or CP932 (byte 0x{chunk[where]:02x}); "
                        "re-export the file as UTF-8 or CP932 (Shift_JIS)"
                    )
                lines += chunk.count(b"\n")
    except OSError as e:
        raise DataUnusableError(f"{path}: cannot read file ({e.strerror or e})") from None
    return "utf-8"


# Files that hold no rows, written beside the parts by Spark, Hadoop and desktop file managers:
# not read and not hashed. Every other file under a table folder is a part, read and hashed.
_BOOKKEEPING = ("_SUCCESS", ".DS_Store", "Thumbs.db", "desktop.ini")
_PART_FORMATS = {".parquet": "parquet", ".csv": "csv"}


def _is_bookkeeping(name: str) -> bool:
    return name in _BOOKKEEPING or name.endswith(".crc") or name.startswith(("_committed_", "_started_"))


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _folder_parts(folder: Path, root: Path) -> list[Path]:
    """Every file under a table folder (following symbolic links), sorted; bookkeeping files
    left out. A folder that cannot be listed, a link that leads nowhere or in a loop, and a
    folder or file reached twice (its rows would be read twice) are errors, never skipped."""
    seen_dirs: dict[str, Path] = {}
    seen_files: dict[str, Path] = {}
    parts: list[Path] = []

    def visit(d: Path) -> None:
        real = os.path.realpath(d)
        if real in seen_dirs:
            raise DataUnusableError(
                f"{_rel(d, root)}: the folder {_rel(seen_dirs[real], root)} reached again through a symbolic link "
                "(a loop, or its files would be read twice); remove the link"
            )
        seen_dirs[real] = d
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            raise DataUnusableError(
                f"{_rel(d, root)}: cannot list the folder ({e.strerror or e}); every file under a table is read: "
                "make it readable or move it out of the database"
            ) from None
        for e in entries:
            p = Path(e.path)
            try:
                is_dir, is_file = e.is_dir(), e.is_file()
            except OSError as err:
                raise DataUnusableError(f"{_rel(p, root)}: cannot read ({err.strerror or err})") from None
            if is_dir:
                visit(p)
            elif is_file:
                if _is_bookkeeping(e.name):
                    continue
                rf = os.path.realpath(p)
                if rf in seen_files:
                    raise DataUnusableError(
                        f"{_rel(p, root)}: the same file as {_rel(seen_files[rf], root)} (a symbolic link); "
                        "its rows would be read twice: remove one"
                    )
                seen_files[rf] = p
                parts.append(p)
            elif e.is_symlink():
                raise DataUnusableError(
                    f"{_rel(p, root)}: a symbolic link that cannot be followed (a loop, or its target is missing)"
                )
            else:
                raise DataUnusableError(f"{_rel(p, root)}: not a regular file or folder; move it out of the database")

    visit(folder)
    return parts


def find_table_files(path: str | Path, required: tuple[str, ...] = TABLE_NAMES,
                     missing_ok: bool = False) -> dict[str, tuple[str, Path, tuple[Path, ...]]]:
    """The files of each table of a database folder: name to ``(format, root, parts)``.

    This is the one list of what is read: the readers, the engines and the content hashes of
    the stage caches all use it, so a file is read if and only if it is hashed. A table is
    exactly one of ``NAME.parquet`` (a file, or a folder of parts as Spark writes it),
    ``NAME/`` (a folder of parts, possibly hive-partitioned) or ``NAME.csv``. Every file under
    a table folder is a part (hidden files too), except the bookkeeping files that hold no
    rows (``_SUCCESS``, ``*.crc``, ``_committed_*``, ``_started_*``, ``.DS_Store``,
    ``Thumbs.db``, ``desktop.ini``); the parts of a table share one format.

    Raises
    ------
    DataUnusableError
        Naming the file or folder: the database folder is missing; a table is given twice;
        a table is missing (unless ``missing_ok``); a link cannot be followed; a folder cannot
        be listed; a part is neither ``.parquet`` nor ``.csv``; parts mix formats; a table
        folder holds no parts.
    """
    root = Path(path)
    if not root.is_dir():
        if os.path.islink(root) and not root.exists():
            raise DataUnusableError(f"{root}: a symbolic link that cannot be followed (a loop, or its target is missing)")
        raise DataUnusableError(f"{root}: no such database folder")
    found: dict[str, tuple[str, Path, tuple[Path, ...]]] = {}
    missing = []
    for name in required:
        given = [p for p in (root / f"{name}.parquet", root / name, root / f"{name}.csv") if os.path.lexists(p)]
        if len(given) > 1:
            raise DataUnusableError(
                f"{root}: table {name} is given {len(given)} times ({', '.join(p.name for p in given)}); "
                "keep one: a table is NAME.parquet, NAME/ or NAME.csv"
            )
        if not given:
            missing.append(name)
            continue
        (p,) = given
        if not p.exists():
            raise DataUnusableError(
                f"{_rel(p, root)}: table {name} is a symbolic link that cannot be followed (a loop, or its target is missing)"
            )
        if p.is_dir():
            parts = _folder_parts(p, root)
            if not parts:
                raise DataUnusableError(f"{_rel(p, root)}: table folder holds no .parquet or .csv parts")
            by_fmt: dict[str, list[Path]] = {}
            for part in parts:
                fmt = _PART_FORMATS.get(part.suffix.lower())
                if fmt is None:
                    raise DataUnusableError(
                        f"{_rel(part, root)}: not a .parquet or .csv part of table {name}; every file under a table "
                        "folder is read: move it out of the database"
                    )
                by_fmt.setdefault(fmt, []).append(part)
            if len(by_fmt) > 1:
                few = min(by_fmt.values(), key=len)
                counts = " and ".join(f"{len(v)} {k}" for k, v in sorted(by_fmt.items()))
                raise DataUnusableError(
                    f"{_rel(few[0], root)}: table {name} mixes part formats ({counts} parts); the parts of a table "
                    "share one format: convert this file (and the others of its format) or move it out"
                )
            (fmt,) = by_fmt
            found[name] = (fmt, p, tuple(parts))
        elif p.is_file():
            fmt = "csv" if p.suffix == ".csv" else "parquet"
            found[name] = (fmt, p, (p,))
        else:
            raise DataUnusableError(f"{_rel(p, root)}: table {name} is not a regular file or folder")
    if missing and not missing_ok:
        raise DataUnusableError(
            f"{root}: missing table(s) {', '.join(missing)}; expected NAME.parquet, NAME/ (Parquet parts) "
            f"or NAME.csv for each of {', '.join(required)}"
        )
    return found


def locate_tables(
    path: str | Path, required: tuple[str, ...] = TABLE_NAMES, encoding: str | None = None
) -> dict[str, TableSource]:
    """Find each canonical table in a database folder (see :func:`find_table_files`).

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
        As :func:`find_table_files`, or a CSV table is neither UTF-8 nor CP932.
    """
    enc = normalize_encoding(encoding)
    found: dict[str, TableSource] = {}
    for name, (fmt, p, parts) in find_table_files(path, required).items():
        table_enc = (enc or detect_encoding(parts[0])) if fmt == "csv" else "utf-8"
        hive = p.is_dir() and any("=" in q.parent.name for q in parts)
        found[name] = TableSource(name, fmt, parts, p, encoding=table_enc, hive=hive)
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
    except csv.Error as e:
        raise DataUnusableError(f"{label} line 1: the header is not well-formed CSV ({e})") from None
    except OSError as e:
        raise DataUnusableError(f"{label}: cannot read file ({e.strerror or e})") from None
    if not row:
        raise DataUnusableError(f"{label}: empty CSV file (no header line)")
    names = [c.strip() for c in row]
    if len(names) == 1 and any(sep in names[0] for sep in (";", "\t", "|")):
        seps = " or ".join(n for sep, n in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")) if sep in names[0])
        raise DataUnusableError(
            f"{label} line 1: the header has one field: is the file separated by {seps}? "
            "CSV tables must be separated by commas"
        )
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise DataUnusableError(f"{label}: header names column(s) {', '.join(dupes)} more than once")
    return names


class _StrictText(io.RawIOBase):
    """A CSV file's bytes as UTF-8, decoded strictly in its encoding, for Arrow's CSV reader.

    The whole file is decoded (in blocks ending at a line end), not only the part encoding
    detection looked at: a file that is UTF-8 in its first rows and CP932 further down (or the
    other way round) stops naming the first line that does not belong, instead of being read
    as mojibake. In a CP932 file a non-ASCII line that is valid UTF-8 counts as such a line
    (Japanese CP932 text is practically never valid UTF-8)."""

    def __init__(self, path: Path, encoding: str, label: str):
        super().__init__()
        self._f = open(path, "rb")
        self._enc = encoding
        self._label = label
        self._buf = b""
        self._pos = 0
        self._lines = 0  # lines before the current block
        self._eof = False

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._f.close()
        super().close()

    def _fail(self, block: bytes, at: int, why: str) -> None:
        line = self._lines + block.count(b"\n", 0, at) + 1
        other = "CP932 (Shift_JIS)" if self._enc == "utf-8" else "UTF-8"
        raise DataUnusableError(
            f"{self._label} line {line}: {why}; the lines before it were read as "
            f"{'UTF-8' if self._enc == 'utf-8' else 'CP932 (Shift_JIS)'}: the file mixes encodings, or is {other}. "
            "Re-export it in one encoding (UTF-8 or CP932)"
        )

    def _next_block(self) -> bytes:
        block = self._f.read(_CHUNK)
        if not block:
            self._eof = True
            return b""
        if not block.endswith(b"\n"):
            block += self._f.readline()
        if self._enc == "utf-8":
            try:
                block.decode("utf-8")
            except UnicodeDecodeError as e:
                self._fail(block, e.start, f"byte 0x{block[e.start]:02x} is not UTF-8")
            out = block
        else:
            try:
                text = block.decode("cp932")
            except UnicodeDecodeError as e:
                self._fail(block, e.start, f"byte 0x{block[e.start]:02x} is not CP932 (Shift_JIS)")
            if not block.isascii():
                at = 0
                for line in block.split(b"\n"):
                    if not line.isascii():
                        try:
                            line.decode("utf-8")
                        except UnicodeDecodeError:
                            pass
                        else:
                            self._fail(block, at, "the line is UTF-8")
                    at += len(line) + 1
            out = text.encode("utf-8")
        self._lines += block.count(b"\n")
        return out

    def readinto(self, b) -> int:
        while self._pos >= len(self._buf) and not self._eof:
            self._buf, self._pos = self._next_block(), 0
        n = min(len(b), len(self._buf) - self._pos)
        b[:n] = self._buf[self._pos:self._pos + n]
        self._pos += n
        return n


def _ragged_record(path: Path, encoding: str, expected: int) -> tuple[int, int] | None:
    """The line and field count of the first record of a CSV file without ``expected``
    fields (Arrow's parser does not say where it is)."""
    with open(path, "r", encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        for row in reader:
            if len(row) != expected and row:
                return reader.line_num, len(row)
    return None


def csv_to_parquet(source: TableSource, dest: str | Path, on_rows=None) -> list[Path]:
    """Convert a CSV table to Parquet files of text columns, streamed in blocks.

    Each output file gets two extra columns: ``__hospstudy_file`` (the CSV path relative to the
    database folder) and ``__hospstudy_row`` (the 1-based record number in that file).
    Empty fields become nulls. ``on_rows(n)`` is called after each block with its row count.

    Raises
    ------
    DataUnusableError
        A file cannot be decoded in the table's encoding (naming the first line that does
        not decode) or is not well-formed CSV (naming the line).
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
        read_opts = pacsv.ReadOptions(encoding="utf8", block_size=4 << 20, column_names=names, skip_rows=1)
        conv = pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=True, null_values=[""],
            quoted_strings_can_be_null=True,
        )
        row = 0
        writer = None
        stream = None
        try:
            stream = _StrictText(path, source.encoding, rel)
            reader = pacsv.open_csv(stream, read_options=read_opts, convert_options=conv)
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
        except (pa.ArrowInvalid, OSError) as e:
            msg = str(e).splitlines()[0]
            where = f"after record {row}"
            if "Expected" in msg and "columns" in msg:
                found = _ragged_record(path, source.encoding, len(names))
                if found is not None:
                    where = f"line {found[0]}"
                    msg = f"{found[1]} field(s) where the header has {len(names)}"
            raise DataUnusableError(f"{rel} {where}: cannot read as {source.encoding} CSV: {msg}") from None
        finally:
            if writer is not None:
                writer.close()
            if stream is not None:
                stream.close()
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
    "date": {"date", "timestamp", "timestamptz", "int", "string", "null"},
    "string": {"string", "int", "null"},
}


def arrow_kind(t: pa.DataType) -> str:
    """Classify an Arrow type: int, float, decimal, bool, date, timestamp, timestamptz (with a
    time zone), string, null or other."""
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
        return "timestamptz" if t.tz else "timestamp"
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
    if t in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        return "timestamptz"
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


_SIZE_UNITS = {"": 1, "b": 1, "byte": 1, "bytes": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
               "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def size_bytes(text) -> int | None:
    """A size as DuckDB reads and shows it ('1GB' = 10^9 bytes, '953.6 MiB' = 953.6 x 2^20) in
    bytes; None when it is not a size."""
    import re

    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*", str(text), re.I)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        return None
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


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
        if kind == "timestamptz":
            # the day in the data's own zone, not the session's (UTC would move an evening
            # in Japan to the day before)
            return f"CAST(timezone({sql_str(DATA_TIME_ZONE)}, {raw}) AS DATE)"
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
                check_casts(con, plan, schema.names, select)
                cols = ", ".join(quote(n) for n in schema.names)
                table = _to_arrow(con.sql(f"SELECT {cols} FROM ({select})"))
            except duckdb.Error as e:
                raise DataUnusableError(f"table {source.name}: cannot read its files ({_first_line(e)})") from None
    finally:
        con.close()
    return table.cast(schema)


def check_casts(con, plan: ScanPlan, names, select: str | None = None) -> None:
    """Raise DataValidationError naming the file, row and value of the first stored value of
    the columns ``names`` that does not cast to the schema (a cast gives NULL otherwise, and
    nothing may be dropped silently). Only columns whose cast can fail are scanned.

    ``select`` is ``plan.typed_select(names, keep_raw=True)[0]`` when the caller has it."""
    source = plan.source
    types = {c.name: c.type for c in TABLES[source.name]}
    if select is None:
        select, _ = plan.typed_select(list(names), keep_raw=True)
    bad_checks = [
        f"({quote(n + '__raw')} IS NOT NULL AND {quote(n)} IS NULL)"
        for n in names
        if plan.kinds.get(n, "null") != "null"
        and not _exact_kind(plan.kinds[n], types[n])
        and not all(n in ft and is_exact(ft[n], types[n]) for ft in plan.file_types.values())
    ]
    if not bad_checks:
        return
    shown = ", ".join(f"{quote(n)}, CAST({quote(n + '__raw')} AS VARCHAR) AS {quote(n + '__txt')}" for n in names)
    row = con.execute(
        f"SELECT _file, _row, {shown} FROM ({select}) WHERE {' OR '.join(bad_checks)} "
        f"ORDER BY _file, _row LIMIT 1"
    ).fetchone()
    if row is not None:
        vals = dict(zip([d[0] for d in con.description], row))
        col = next(n for n in names if vals[n] is None and vals[n + "__txt"] is not None)
        raise DataValidationError(
            f"{row[0]} row {row[1]}: {source.name}.{col} value {vals[col + '__txt']!r} is not a "
            f"valid {TARGET_KIND[types[col]]}; run `hospstudy validate` for every problem"
        )


def _exact_kind(kind: str, target: pa.DataType) -> bool:
    """Whether a DuckDB-side kind casts to the target without any chance of failure."""
    tk = TARGET_KIND[target]
    if tk == "int":
        return False  # a wider integer may overflow the narrower schema type
    return kind == tk or (tk == "string" and kind == "int") or (tk == "date" and kind in ("timestamp", "timestamptz")) or (
        tk == "float" and kind in ("int", "decimal"))
