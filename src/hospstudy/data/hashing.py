"""Content hashes of a database folder and of settings: what the stage caches key on.

``hospstudy run`` (run.pipeline) keys every stage on them, and ``hospstudy cohort`` uses
them to skip re-validating a database whose files did not change since they validated clean.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hospstudy.errors import DataUnusableError


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content; a file that cannot be read is a DataUnusableError naming it."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except OSError as e:
        raise DataUnusableError(f"{path}: cannot read the file ({e.strerror or e})") from None
    return h.hexdigest()


def input_file_hashes(data_dir: Path, memo: dict | None = None) -> dict[str, str]:
    """SHA-256 of every file of a database folder, keyed by its path relative to the folder.

    ``memo`` maps a relative path to ``[size, mtime_ns, sha256]`` from an earlier run; a file
    whose size and modification time did not change is not read again (a cached re-run of a
    large database stays fast). The memo is updated in place.
    """
    data_dir = Path(data_dir)
    memo = {} if memo is None else memo
    out: dict[str, str] = {}
    for p in sorted(data_dir.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        rel = p.relative_to(data_dir).as_posix()
        st = p.stat()
        known = memo.get(rel)
        if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            out[rel] = known[2]
            continue
        digest = sha256_file(p)
        memo[rel] = [st.st_size, st.st_mtime_ns, digest]
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
