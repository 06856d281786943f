"""The one rule for every file a spec names: imports, ``init: {file: ...}``, ``train: {data: ...}``.

A spec is input that may come from someone else, so the files it names are
confined: a path is relative (an absolute path is refused), has no ``..`` part,
and must resolve (symbolic links followed) to a file below the folder of the
spec file that names it or below a folder the user named with ``--import-path``
(``import_paths=[...]`` in Python).  URLs are refused: nothing is ever fetched.
Otherwise a spec could read, and print in its error messages, any file the user
can read (``init: {file: ../../secret.npy}``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path, PurePath
from typing import Any

from engine.errors import UsageError
from engine.io.paths import not_a_regular_file

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


#: The folder of the standard function library (``nn.yaml``), inside the package so that an
#: installed engine has it too (a copy of graphs/lib/nn.yaml, which tests keep identical).
#: Imports look here last, after the spec's folder and every --import-path, so that
#: ``imports: {nn: nn.yaml}`` works from any folder.
STDLIB = Path(__file__).resolve().parent.parent / "stdlib"


class Refused(Exception):
    """A path a spec may not name; the message says why and what to do."""


def confine(text: str, folder: Path, roots: Sequence[Path]) -> tuple[str, Path]:
    """(path to show in messages, resolved path) of a file named in a spec, or Refused.

    ``folder`` is the folder of the spec file that names it; ``roots`` the resolved
    ``--import-path`` folders, where the path is looked up too.
    """
    if _URL.match(text) and not PurePath(text).drive:
        raise Refused(f"{text!r} is a URL; a spec names files on disk, and nothing is fetched")
    if PurePath(text).is_absolute() or PurePath(text).drive:
        raise Refused(f"{text!r} is an absolute path; a spec names files relative to its own "
                      "folder (or to an --import-path DIR), so that it cannot read any file "
                      "on disk")
    if ".." in PurePath(text).parts:
        raise Refused(f"{text!r} goes up a folder ('..'); a spec may only name files below "
                      "its own folder, or below an --import-path DIR")
    allowed = [_resolved(folder, text), *roots]
    outside = None
    for base in (folder, *roots):
        candidate = base / text
        resolved = _resolved(candidate, text)
        if not any(resolved.is_relative_to(r) for r in allowed):
            outside = outside or resolved  # a symbolic link that leads out
            continue
        problem = not_a_regular_file(resolved)  # not is_file(): a long name raises there
        if problem is None:
            return os.path.normpath(candidate), resolved
        if problem != "no such file":  # a FIFO would block, /dev/zero never end
            raise Refused(f"{text!r}: {problem}")
    if outside is not None:
        raise Refused(f"{text!r} resolves to {str(outside)!r}, outside the spec's folder "
                      f"({str(allowed[0])!r}) and every --import-path; a spec may only read "
                      "files below those folders (name another folder with --import-path DIR)")
    tried = ", ".join(repr(os.path.normpath(b / text)) for b in (folder, *roots))
    raise Refused(f"no such file {text!r} (looked for {tried}); paths are relative to the "
                  "spec's folder, or to an --import-path")


def _resolved(path: Path, text: str) -> Path:
    try:
        return path.resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # NUL byte, name too long, link loop
        raise Refused(f"{text!r} cannot name a file ({exc})") from None


def folders(import_paths: Any) -> list[Path]:
    """``import_paths`` as resolved folders; a single string or path, where a list is
    expected, is refused (iterating it would make every character a root, '/' included)."""
    if isinstance(import_paths, (str, bytes, PathLike)):
        raise UsageError(f"import_paths must be a list of folders, found "
                         f"{type(import_paths).__name__} {import_paths!r}; write "
                         f"import_paths=[{import_paths!r}]")
    try:
        items = list(import_paths)
    except TypeError:
        raise UsageError(f"import_paths must be a list of folders, found "
                         f"{type(import_paths).__name__}") from None
    for item in items:
        if not isinstance(item, (str, PathLike)):
            raise UsageError(f"import_paths must be a list of folders, found the item "
                             f"{item!r} ({type(item).__name__})")
    return [Path(item).resolve() for item in items]
