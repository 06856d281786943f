"""What the engine prints cannot drive the terminal: control characters are escaped.

A spec's ``name``, a key, a file name or a CSV header may hold ANSI escape
sequences (which can recolour, retitle or clear a terminal) or U+202E (which
reverses the text after it, so a message reads other than it is).  Every verb
writes through ``EscapingWriter``, which shows such characters as ``\\x1b`` or
``\\u202e`` instead; tabs and newlines pass.  The progress bar draws with escape
sequences of its own, so it writes to ``unescaped(stream)``.
"""

from __future__ import annotations

from typing import IO, Any

#: C0 and C1 controls (but tab and newline), DEL, and the Unicode bidirectional controls.
_CONTROLS = [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0), 0x061C, 0x200E,
             0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES = {code: (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") for code in _CONTROLS}


def escape_controls(text: str) -> str:
    """``text`` with every control character written as a visible escape."""
    return text.translate(_ESCAPES)


class EscapingWriter:
    """A text stream that escapes control characters on their way to ``stream``."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(escape_controls(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, ...
        return getattr(self.stream, name)


def unescaped(stream: IO[str]) -> IO[str]:
    """The stream beneath an ``EscapingWriter`` (for the progress bar's own escapes)."""
    return stream.stream if isinstance(stream, EscapingWriter) else stream
