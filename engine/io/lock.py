"""One writer per output file: a lock that a second run asking for the same file is refused.

Two ``engine train --save p.npz`` runs at once would each replace the file after
every epoch, and one run's result would be lost while both report success.  The
lock is an advisory ``flock`` on a hidden file beside the target
(``.p.npz.lock``), held for the whole run and released by the OS if the process
dies, so a killed run never leaves a stale lock behind.  The lock file is
removed on release; a run that opened it just before removal notices (the path
no longer names the file it locked) and tries again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import DataError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; runs are not serialised there
    fcntl = None  # type: ignore[assignment]


def lock_path(path: Path) -> Path:
    """The hidden lock file that guards ``path``."""
    return path.parent / f".{path.name}.lock"


@contextmanager
def exclusive(path: Path, what: str) -> Iterator[None]:
    """Hold the lock of output file ``path`` for the body; a DataError at once if another
    process holds it.  ``what`` names the writer for the message (``engine train --save``)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    lock = lock_path(path)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DataError(f"{path}: cannot create the lock file {str(lock)!r} "
                            f"({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataError(f"{path}: another {what} is writing to this file (it holds "
                            f"{str(lock)!r}); wait for it to finish, or write to another "
                            "file") from None
        if _same_file(fd, lock):
            break
        os.close(fd)  # removed by the previous holder after we opened it: try again
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still held, so no one else locks it meanwhile
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
