"""What a path names, told in words before anything opens it.

Opening a FIFO blocks until a writer comes, and reading ``/dev/zero`` or
``/dev/urandom`` never ends, so every file the engine reads (specs, imports,
data, checkpoints) is first checked to be a regular file.  A path Python cannot
even ask about (a NUL byte, a name over the system's length limit) gets an
answer too, instead of a ValueError or OSError from deep inside.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def not_a_regular_file(path: Path) -> str | None:
    """None when ``path`` is a regular file (after symbolic links), else why not, in words."""
    try:
        mode = os.stat(path).st_mode
    except ValueError:  # an embedded NUL byte
        return "the path contains a NUL byte"
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return "the path is too long for the operating system"
        if exc.errno == errno.ELOOP:
            return "too many levels of symbolic links"
        return f"cannot read: {exc.strerror}"
    if stat.S_ISREG(mode) or (stat.S_ISDIR(mode) and path.suffix.lower() == ".zarr"):
        return None  # a .zarr store is a folder of chunks (engine.io.zarrs)
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    kind = next((words for test, words in _KINDS if test(mode)), "not a regular file")
    return f"is {kind}, not a regular file; only regular files are read"
