"""Drawing a ``Picture`` as DOT or Mermaid text, and DOT as SVG, PNG or PDF through Graphviz.

Only looks are decided here (colours, box shapes, fonts); what is drawn comes
from ``engine/picture.py``.  DOT and Mermaid are plain text and need nothing
installed; images need Graphviz's ``dot`` program, run through the ``graphviz``
Python package.
"""

from __future__ import annotations

import html
import json
from typing import Any

from engine.draw.picture import Arrow, Box, Picture
from engine.errors import EngineError

IMAGE_FORMATS = ("svg", "png", "pdf")
TEXT_FORMATS = ("dot", "mermaid")
FORMATS = IMAGE_FORMATS + TEXT_FORMATS

RED = "#c62828"
GREY = "#9e9e9e"
# Fill colour by kind of box: inputs green, parameters blue, constants grey, ops white.
_FILL = {"input": "#e8f5e9", "parameter": "#e3f2fd", "constant": "#f5f5f5", "node": "#ffffff",
         "sum": "#ffebee", "seed": "#ffffff"}
_SHAPE = {"input": "ellipse", "parameter": "box3d", "constant": "note", "node": "box",
          "sum": "circle", "seed": "plaintext"}


def install_hint() -> str:
    return ("install Graphviz (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install "
            "graphviz; conda: conda install graphviz) and the Python package (pip install "
            "graphviz), or write text that needs no program: --format dot or --format mermaid")


def to_dot(picture: Picture) -> str:
    """Graphviz DOT text: one ``"tail" -> "head"`` line per arrow, in the picture's order."""
    rankdir = "RL" if picture.backward else "LR"
    lines = [
        "digraph G {",
        f"  graph [rankdir={rankdir}, label={_title(picture)}, labelloc=t, fontsize=16, "
        'fontname="Helvetica", nodesep=0.35, ranksep=0.55];',
        '  node [fontname="Helvetica", fontsize=12, style="rounded,filled", penwidth=1.2];',
        '  edge [fontname="Helvetica", fontsize=11];',
    ]
    for event, depth, item in _nested(picture):
        indent = "  " * depth
        if event == "box":
            lines.append(f"{indent}{_quote(item.id)} [{_dot_box(item)}];")
        elif event == "open":
            lines.append(f"{indent}subgraph {_quote('cluster_' + item)} {{")
            lines.append(f'{indent}  graph [label={_quote(picture.groups[item])}, '
                         f'style="rounded,dashed", color="{GREY}", fontcolor="{GREY}"];')
        else:
            lines.append(f"{indent}}}")
    lines += [f"  {_quote(a.tail)} -> {_quote(a.head)} [{_dot_arrow(a)}];"
              for a in picture.arrows]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _nested(picture: Picture) -> list[tuple[str, int, Any]]:
    """Boxes inside the (nested) groups of function calls, as ("open", depth, group),
    ("box", depth, box) and ("close", depth, group) events, so that every format
    nests them alike.  Groups come parent first (``probs`` before ``probs/inner``).
    """
    events: list[tuple[str, int, Any]] = [("box", 1, b) for b in picture.boxes if not b.group]
    members: dict[str, list[Box]] = {}
    for box in picture.boxes:
        members.setdefault(box.group, []).append(box)
    open_groups: list[str] = []
    for group in picture.groups:
        while open_groups and not group.startswith(open_groups[-1] + "/"):
            events.append(("close", len(open_groups), open_groups.pop()))
        open_groups.append(group)
        events.append(("open", len(open_groups), group))
        events += [("box", len(open_groups) + 1, b) for b in members.get(group, [])]
    while open_groups:
        events.append(("close", len(open_groups), open_groups.pop()))
    return events


def _dot_box(box: Box) -> str:
    colour = GREY if box.muted else "#212121"
    rows = [f"<b>{html.escape(box.title)}</b>"]
    rows += [f'<font point-size="10">{html.escape(line)}</font>' for line in box.lines]
    styles = [s for s in ("rounded" if box.kind == "node" else "",
                          "" if box.kind == "seed" else "filled",
                          "dashed" if box.muted else "") if s]
    attrs = [f"label=<{'<br/>'.join(rows)}>", f"shape={_SHAPE[box.kind]}",
             f'style="{",".join(styles)}"',
             f'fillcolor="{"#fafafa" if box.muted else _FILL[box.kind]}"']
    if box.kind == "sum":
        attrs += ["fixedsize=true", "width=0.45", f'color="{RED}"', f'fontcolor="{RED}"']
    else:
        attrs += [f'color="{colour}"', f'fontcolor="{colour}"']
    if box.output:
        attrs.append("penwidth=2.4")
    if box.kept:
        attrs.append("peripheries=2")
    return ", ".join(attrs)


def _dot_arrow(arrow: Arrow) -> str:
    label = f"label={_quote(arrow.label)}" if arrow.label else ""
    style = {"value": "", "gradient": f'color="{RED}", fontcolor="{RED}", penwidth=1.6',
             "no-gradient": f'color="{GREY}", style=dotted, arrowhead=none'}[arrow.kind]
    return ", ".join(part for part in (label, style) if part)


def _title(picture: Picture) -> str:
    return (f'<<b>{html.escape(picture.title)}</b><br/><font point-size="10">'
            f"{html.escape(picture.legend)}</font>>")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_mermaid(picture: Picture) -> str:
    """A Mermaid flowchart; ids are ``n0, n1, ...`` since value names may hold dots and brackets."""
    ids = {box.id: f"n{index}" for index, box in enumerate(picture.boxes)}
    lines = ["---", f"title: {json.dumps(picture.title)}", "---",
             f"flowchart {'RL' if picture.backward else 'LR'}", f"  %% {picture.legend}"]
    groups = {group: f"g{index}" for index, group in enumerate(picture.groups)}
    for event, depth, item in _nested(picture):
        indent = "  " * depth
        if event == "open":
            label = _mermaid_text(picture.groups[item])
            lines.append(f'{indent}subgraph {groups[item]} ["{label}"]')
            continue
        if event == "close":
            lines.append(f"{indent}end")
            continue
        text = "<br/>".join([f"<b>{_mermaid_text(item.title)}</b>",
                             *(_mermaid_text(line) for line in item.lines)])
        opening, closing = {"input": ("([", "])"), "parameter": ("[[", "]]"),
                            "constant": ("[/", "/]"), "sum": ("((", "))"),
                            "seed": ("[", "]"), "node": ("[", "]")}[item.kind]
        lines.append(f'{indent}{ids[item.id]}{opening}"{text}"{closing}')
    styles = []
    for index, arrow in enumerate(picture.arrows):
        link = "-.-" if arrow.kind == "no-gradient" else "-->"
        label = f'|"{_mermaid_text(arrow.label)}"|' if arrow.label else ""
        lines.append(f"  {ids[arrow.tail]} {link}{label} {ids[arrow.head]}")
        if arrow.kind == "gradient":
            styles.append(f"  linkStyle {index} stroke:{RED},color:{RED},stroke-width:2px")
    classes = {"input": f"fill:{_FILL['input']}", "parameter": f"fill:{_FILL['parameter']}",
               "constant": f"fill:{_FILL['constant']}", "node": f"fill:{_FILL['node']}",
               "sum": f"fill:{_FILL['sum']},stroke:{RED},color:{RED}", "seed": "fill:#ffffff",
               "muted": f"fill:#fafafa,stroke:{GREY},color:{GREY},stroke-dasharray:4 3",
               "kept": "stroke-width:4px,stroke:#6a1b9a"}
    lines += [f"  classDef {name} {style}" for name, style in classes.items()]
    for box in picture.boxes:
        lines.append(f"  class {ids[box.id]} {'muted' if box.muted else box.kind}")
    kept = [ids[box.id] for box in picture.boxes if box.kept]
    if kept:
        lines.append(f"  class {','.join(kept)} kept")
    return "\n".join(lines + styles) + "\n"


def _mermaid_text(text: str) -> str:
    """Mermaid labels are quoted strings: a double quote must become an entity."""
    return html.escape(text, quote=True).replace("&#x27;", "'")


def to_image(picture: Picture, fmt: str) -> bytes:
    """SVG, PNG or PDF bytes, by running Graphviz's ``dot`` on ``to_dot(picture)``."""
    try:
        import graphviz
    except ImportError:
        raise EngineError("drawing images needs the graphviz Python package; "
                          + install_hint()) from None
    try:
        return graphviz.Source(to_dot(picture)).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise EngineError("Graphviz's 'dot' program was not found on PATH; "
                          + install_hint()) from None
    except graphviz.CalledProcessError as exc:  # a bug of ours in the DOT text, or a broken dot
        stderr = (exc.stderr or b"").decode(errors="replace").strip()
        raise EngineError(f"Graphviz's dot failed: {stderr}") from None


def render(picture: Picture, fmt: str) -> bytes:
    """The picture in ``fmt`` (one of ``FORMATS``), as the bytes of a file."""
    if fmt == "dot":
        return to_dot(picture).encode()
    if fmt == "mermaid":
        return to_mermaid(picture).encode()
    return to_image(picture, fmt)
