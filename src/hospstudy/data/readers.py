"""Find and read the tables of a database folder (Parquet files, Parquet part folders, CSV)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hospstudy.data.schema import TABLE_NAMES
from hospstudy.errors import DataUnusableError


@dataclass(frozen=True)
class TableSource:
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


def locate_tables(path: str | Path, required: tuple[str, ...] = TABLE_NAMES) -> dict[str, TableSource]:
    """Find each canonical table in a database folder.

    Raises DataUnusableError naming the folder and the missing table when a required table
    is absent.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataUnusableError(f"{root}: no such database folder")
    found: dict[str, TableSource] = {}
    missing = []
    for name in required:
        single = root / f"{name}.parquet"
        folder = root / name
        csv = root / f"{name}.csv"
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
            found[name] = TableSource(name, fmt, parts, folder, hive=hive)
        elif csv.is_file():
            found[name] = TableSource(name, "csv", (csv,), csv)
        else:
            missing.append(name)
    if missing:
        raise DataUnusableError(
            f"{root}: missing table(s) {', '.join(missing)}; expected NAME.parquet, NAME/ (Parquet parts) "
            f"or NAME.csv for each of {', '.join(required)}"
        )
    return found
