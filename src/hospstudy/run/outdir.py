"""The output folder of a run: checked before any work is done, and held by one run at a time.

- :func:`prepare_out` refuses an OUT that is a file, that lies inside the database folder
  (outputs would become part of the input), or that cannot be written, and says so in one
  line (exit 2) before a single stage runs.
- :class:`OutLock` holds ``OUT/private/run.lock`` (an advisory ``flock``, released by the
  operating system when the process ends, even when it is killed) for the whole run: a second
  run into the same OUT stops at once, naming the lock file and the process that holds it.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from hospstudy.errors import InputError


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def prepare_out(out, data=None) -> Path:
    """Create ``out`` (and ``out/private``) and prove it writable; refuse it when it is a file or
    lies inside ``data``. Raises :class:`InputError` (exit 2) naming the folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: --out is an existing file, not a folder; choose a folder for the outputs")
    if data is not None and "://" not in str(data):
        d, o = Path(data).resolve(), out.resolve()
        if _inside(o, d):
            raise InputError(
                f"{out}: --out lies inside the database folder {data}; outputs written there would become part "
                "of the database. Choose a folder outside it"
            )
    try:
        (out / "private").mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out / "private")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"{out}: cannot write the output folder ({e.strerror or e})") from None
    return out


class OutLock:
    """``with OutLock(out):`` holds ``out/private/run.lock`` for one run (see the module doc)."""

    def __init__(self, out):
        self.path = Path(out) / "private" / "run.lock"
        self._fd: int | None = None

    def __enter__(self) -> "OutLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                os.close(fd)
                raise InputError(f"{self.path}: cannot lock the output folder ({e.strerror})") from None
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InputError(
                f"{self.path.parent.parent}: another hospstudy run is writing this output folder "
                f"(process {holder}, lock {self.path}); wait for it to finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
