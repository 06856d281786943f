"""The ``engine`` command line: argument parsing, exit codes, problems printed for people,
and one module per verb under ``commands``."""

from __future__ import annotations

import sys


def entry() -> None:
    """The ``engine`` script and ``python -m engine``: Ctrl-C while the engine and NumPy are
    still being imported (the first second) exits 130 like any other interrupt, without a
    traceback; so the imports happen here, inside the handler."""
    try:
        from engine.cli.main import main

        code = main()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        code = 130
    sys.exit(code)
