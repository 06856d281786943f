"""The ``engine`` command line: argument parsing, exit codes, problems printed for people,
and one module per verb under ``commands``."""
