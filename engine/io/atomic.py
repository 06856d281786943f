"""Output files that appear whole or not at all.

Data goes to a temporary file in the target's folder, which then replaces the
target in one step, so a reader sees the old file or the new one, never half of
one, even if the process is killed mid-write.
"""

from __future__ import annotations

import glob
import io
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import numpy as np

from engine.errors import DataError


def check_writable(path: Path) -> None:
    """Raise a DataError if ``path`` cannot be an output file: commands call this before long
    work, so that a typo in an output path does not cost a training run."""
    folder = path.parent if str(path.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{path}: {str(folder)!r} is a file, not a folder")
    if not folder.is_dir():
        raise DataError(f"{path}: folder {str(folder)!r} does not exist")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; name a file to write")
    try:  # the only sure test of permission (root, ACLs, read-only mounts): write there
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise DataError(f"{path}: cannot write in folder {str(folder)!r} "
                        f"({exc.strerror or exc})") from None


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then move it into place."""
    write_together({Path(path): write})


def write_together(writes: Mapping[Path, Callable[[IO[bytes]], None]]) -> None:
    """Write files that belong together (a spec and the .npz its inits name): every one goes
    to a temporary file beside its target first, and only once all are whole are they moved
    into place, one rename after the other; a failure before that leaves every target as it
    was."""
    for path in writes:
        check_writable(path)
        _remove_stale(path)
    written: dict[Path, str] = {}
    try:
        for path, write in writes.items():
            written[path] = _temporary(path, write)
        for path, temporary in written.items():
            os.replace(temporary, path)
    except BaseException as exc:
        for temporary in written.values():
            Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise DataError(f"{path}: cannot write there ({exc.strerror or exc})") from None
        raise


def _temporary(path: Path, write: Callable[[IO[bytes]], None]) -> str:
    """The name of a temporary file beside ``path`` that ``write`` filled and synced."""
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, before the rename
            dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", delete=False)
    except OSError as exc:
        raise DataError(f"{path}: cannot write there ({exc.strerror or exc})") from None
    try:
        with handle:
            write(handle)
            handle.flush()
            os.chmod(handle.name, _mode_for(path))
            os.fsync(handle.fileno())
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return handle.name


def _remove_stale(path: Path) -> None:
    """Delete the temporary files that killed writers of ``path`` left beside it.

    Each temporary file is named after its writer's process id, so one whose process
    no longer runs can never be renamed into place; a live writer's file is kept.
    """
    folder = path.parent if str(path.parent) else Path(".")
    prefix = f".{path.name}."
    for stale in folder.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = stale.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            stale.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or a number we cannot ask about: keep it
    return True


def _mode_for(path: Path) -> int:
    """The target's mode if it exists, else what the umask gives a new file (tempfile's 0600
    would otherwise make every output private)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def save_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to an .npz file atomically (never half-written, even if killed)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomically(path, lambda handle: handle.write(buffer.getvalue()))
