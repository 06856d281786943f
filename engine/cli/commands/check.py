"""``engine check SPEC [SPEC ...]``: every mistake in a spec, found without running it.

Each spec is loaded exactly as ``run`` would load it (YAML, schema, graph,
shapes, dtypes, byte budget), and then summarized: its nodes, its parameters
with their element count, and a table of every value's shape and dtype.  All
specs are checked even when one fails, so one call reports a whole folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from engine.cli.commands.common import add_load_options
from engine.cli.diagnostics import SnippetMode, count, report
from engine.errors import Problem, SpecError
from engine.graph.budget import sizes
from engine.graph.model import Graph
from engine.graph.shapes import format_shape
from engine.limits import human_bytes
from engine.spec.loader import load

HELP = "validate specs without running them; summarize their values, shapes and dtypes"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check", help=HELP, description=HELP + ". Exit 1 if any spec has an error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m engine check graphs/*.yaml\n"
               "  python -m engine check graphs/mlp.yaml --strict --json")
    parser.add_argument("specs", type=Path, nargs="+", metavar="SPEC", help="YAML graph specs")
    add_load_options(parser)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document with every spec's errors, warnings and "
                             "values (nothing on stderr)")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")


@dataclass
class Verdict:
    """One spec's result: its problems, and its summary when it built."""

    file: str
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "ok": not self.errors,
                "errors": [asdict(p) for p in self.errors],
                "warnings": [asdict(p) for p in self.warnings], **self.summary}


def run(args: argparse.Namespace) -> int:
    verdicts = [_check(spec, args.import_path, args.strict, args.max_bytes)
                for spec in args.specs]
    failed = sum(1 for v in verdicts if v.errors)
    if args.json:
        document = {"ok": not failed, "specs": [v.to_json() for v in verdicts]}
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for verdict in verdicts:
            _print(verdict, args.snippets, sys.stdout, sys.stderr)
        if len(verdicts) > 1:
            print(f"checked {count(len(verdicts), 'spec')}: {len(verdicts) - failed} ok, "
                  f"{failed} with errors")
    return 1 if failed else 0


def _check(spec: Path, import_paths: list[Path], strict: bool, max_bytes: int) -> Verdict:
    try:
        graph = load(spec, import_paths, strict=strict, max_bytes=max_bytes)
    except SpecError as exc:
        return Verdict(str(spec), errors=exc.problems)
    return Verdict(str(spec), warnings=graph.warnings, summary=_summary(graph))


def _summary(graph: Graph) -> dict[str, Any]:
    known = sizes(graph)
    parameters = [n for n, v in graph.values.items() if v.kind == "parameter"]
    unknown = sorted({d for v in graph.values.values() for d in v.shape if isinstance(d, str)
                      and known[v.name].bytes is None and d not in graph.spec.dims})
    return {
        "name": graph.spec.name,
        "nodes": len(graph.nodes),
        "parameters": {"count": len(parameters),
                       "elements": _total(known[n] for n in parameters)},
        "bytes": _total_bytes(known.values()),
        "unknown_dims": unknown,
        "values": [{"name": name, "kind": value.kind, "shape": list(value.shape),
                    "dtype": value.dtype, "elements": known[name].elements,
                    "bytes": known[name].bytes}
                   for name, value in graph.values.items()],
    }


def _total(items: Any) -> int | None:
    """Sum of element counts, or None when any is unknown."""
    counts = [s.elements for s in items]
    return None if None in counts else sum(counts)


def _total_bytes(items: Any) -> int:
    return sum(s.bytes for s in items if s.bytes is not None)


def _print(verdict: Verdict, snippets: SnippetMode, out: IO[str], err: IO[str]) -> None:
    if verdict.errors:
        report(verdict.errors, "error", err, snippets)
        out.write(f"{verdict.file}: {count(len(verdict.errors), 'error')}\n")
        return
    report(verdict.warnings, "warning", err, snippets)
    summary = verdict.summary
    params = summary["parameters"]
    elements = "unknown" if params["elements"] is None else f"{params['elements']:,}"
    size = human_bytes(summary["bytes"])
    if summary["unknown_dims"]:
        size = f"at least {size} (unknown: {', '.join(summary['unknown_dims'])})"
    out.write(f"{verdict.file}: ok: {summary['name']}, {count(summary['nodes'], 'node')}, "
              f"{count(params['count'], 'parameter')} ({elements} elements), {size}, "
              f"{count(len(verdict.warnings), 'warning')}\n")
    if not summary["values"]:  # a library of functions only
        return
    rows = [("value", "kind", "shape", "dtype", "elements")]
    rows += [(v["name"], v["kind"], format_shape(v["shape"]), v["dtype"],
              "?" if v["elements"] is None else f"{v['elements']:,}") for v in summary["values"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        cells[-1] = row[-1].rjust(widths[-1])
        out.write("  " + "  ".join(cells).rstrip() + "\n")
