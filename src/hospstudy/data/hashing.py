"""Content hashes of a database folder and of settings: what the stage caches key on.

``hospstudy run`` (run.pipeline) keys every stage on them, and ``hospstudy cohort`` uses
them to skip re-validating a database whose files did not change since they validated clean.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from hospstudy.errors import DataUnusableError


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content; DataUnusableError naming the file if it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except OSError as e:
        raise DataUnusableError(f"{path}: cannot read file ({e.strerror or e})") from None
    return h.hexdigest()


def database_files(data_dir: Path) -> list[Path]:
    """Every file the readers read from a database folder, sorted: the parts of each table
    present, as :func:`hospstudy.data.readers.find_table_files` lists them (the one list of
    what is read). A missing table is left to validation to report."""
    from hospstudy.data.readers import find_table_files

    files = [p for _, _, parts in find_table_files(data_dir, missing_ok=True).values() for p in parts]
    return sorted(files)


def _signature(st: os.stat_result) -> list[int]:
    # the change time and inode move whenever the content is rewritten, also by a tool that
    # puts back the modification time (touch -d, rsync -t, cp -p)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def input_file_hashes(data_dir: Path, memo: dict | None = None) -> dict[str, str]:
    """SHA-256 of every file the readers read from a database folder (:func:`database_files`),
    keyed by its path relative to the folder.

    ``memo`` maps a relative path to ``[size, mtime_ns, ctime_ns, inode, device, sha256]``
    from an earlier run; a file whose signature did not change is not read again (a cached
    re-run of a large database stays fast). The memo is updated in place.
    """
    data_dir = Path(data_dir)
    memo = {} if memo is None else memo
    out: dict[str, str] = {}
    for p in database_files(data_dir):
        rel = os.path.relpath(p, data_dir).replace(os.sep, "/")
        try:
            sig = _signature(p.stat())
        except OSError as e:
            raise DataUnusableError(f"{p}: cannot read file ({e.strerror or e})") from None
        known = memo.get(rel)
        if isinstance(known, list) and len(known) == len(sig) + 1 and known[:-1] == sig:
            out[rel] = known[-1]
            continue
        digest = sha256_file(p)
        memo[rel] = [*sig, digest]
        out[rel] = digest
    return out


def settings_key(*parts: Any) -> str:
    """A stable hash of JSON-serialisable settings (key order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def validation_key(hashes: dict[str, str]) -> str:
    """The key of a validation of the database whose files have these content hashes: equal
    keys, equal files, so a clean validation need not be repeated."""
    return settings_key("validate", hashes)
