"""CLI verbs: each module defines ``add_parser(subparsers)`` and ``run(args) -> exit code``."""
