"""YAML text to plain Python data, remembering where every key and item came from.

PyYAML's safe loader forgets positions and silently keeps the last of two
duplicate keys (which would make a node vanish).  We compose the node tree
ourselves (with the C parser when available, so 100,000-node specs load in
seconds), build the data iteratively (no recursion), and record the line and
column of each mapping key and sequence item under its path.  Only the plain
YAML tags are constructed, so ``!!python/...`` can never build objects.  Before
anything is built, the size the document would expand to through its aliases
is counted on the composed tree (each distinct node once), so an alias bomb
("billion laughs") or a recursive alias is refused at once instead of eating
memory.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, mul
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Problem, Problems, SpecError
from engine.io.paths import not_a_regular_file
from engine.spec import flowlines
from engine.spec.flowlines import NUMBER_START

try:  # the C composer is much faster on large specs
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

PathKey = tuple[str | int, ...]

#: Upper bound on values built from one document; alias expansion counts too.
MAX_VALUES = 3_000_000

_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"
#: A number with an exponent but no dot (1e-3), which YAML 1.1 reads as text.
_EXPONENT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+\Z")
#: Integers beyond float64's range are refused; such a number has 309 decimal digits (1,024
#: in binary), so any longer literal is refused without being parsed.
_MAX_INT_DIGITS = 1100
_LARGEST_FLOAT = int(sys.float_info.max)
_MAP_TAG = "tag:yaml.org,2002:map"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SEQ_TAG = "tag:yaml.org,2002:seq"


#: ``SourceMap.positions`` packs (line, col) as line * _COLUMNS + col; no line of a spec is
#: that long (spec files are bounded far below it).
_COLUMNS = 1 << 40


def packed(line: int, col: int) -> int:
    """(line, col) as ``SourceMap.positions`` holds it."""
    return line * _COLUMNS + col


@dataclass
class SourceMap:
    """Where each part of a spec was written: path tuple -> (line, col), both 1-based.

    ``positions`` holds each place as one int, ``packed(line, col)``: a spec of 100,000
    nodes has half a million places, and a pair each would be as many more objects
    to allocate and for the cycle collector to scan.  The places inside a one-line
    entry that ``flowlines`` read (under a top-level key in ``deferred``) are recorded
    only when asked for (``position``, ``in``): nearly always none of them is.
    """

    file: str
    positions: dict[PathKey, int] = field(default_factory=dict)
    #: Where a YAML 1.1 boolean word (yes, on, off...) was written, and its text.
    booleans: dict[PathKey, str] = field(default_factory=dict)
    #: Top-level keys whose one-line entries were read without their inner places, and
    #: the text they were read from.
    deferred: frozenset[str | int] = frozenset()
    text: str = field(default="", repr=False, compare=False)
    _expanded: set[PathKey] = field(default_factory=set, init=False, repr=False, compare=False)
    _lines: list[str] = field(default_factory=list, init=False, repr=False, compare=False)

    def position(self, path: PathKey) -> tuple[int, int]:
        """The position of ``path``, or of its nearest recorded ancestor."""
        found = self.positions.get(path) if path.__class__ is tuple else None
        if found is not None:  # nearly always: the path itself was written
            return divmod(found, _COLUMNS)
        if self._expand(path):
            return self.position(path)
        for end in range(len(path), -1, -1):
            found = self.positions.get(tuple(path[:end]))
            if found is not None:
                return divmod(found, _COLUMNS)
        return (1, 1)

    def __contains__(self, path: PathKey) -> bool:
        """Whether ``path`` was written (it has a position of its own)."""
        return path in self.positions or (self._expand(path) and path in self.positions)

    def problem(self, path: PathKey, message: str) -> Problem:
        line, col = self.position(path)
        return Problem(self.file, line, col, dotted(path), message)

    def _expand(self, path: PathKey) -> bool:
        """Record the places inside the deferred one-line entry that ``path`` lies in, by
        composing that line alone; False when there is none."""
        if len(path) < 3 or path[0] not in self.deferred:
            return False
        entry = tuple(path[:2])
        place = self.positions.get(entry)
        if place is None or entry in self._expanded:
            return False
        self._expanded.add(entry)
        if not self._lines:
            self._lines = self.text.split("\n")
        number = place // _COLUMNS - 1
        ((_, value),) = yaml.compose(self._lines[number], Loader=_Loader).value
        line = SourceMap(self.file)  # as if the line were the first: move it down
        _build(value, line, entry, Problems())  # the data and problems are known already
        moved = number * _COLUMNS
        self.positions.update((p, where + moved) for p, where in line.positions.items())
        return True


@dataclass(eq=False, slots=True)
class Location:
    """Where a value or node was written, for specs that span files.

    ``calls`` names the chain of function calls that inlined it (empty for the
    spec's own nodes), so that an error inside a function body points both at
    the function's file and at the node that called it.

    Nothing changes a location once made, but it is not a frozen dataclass: a spec
    makes one per node, and a frozen one costs four times as much to make (each field
    set through ``object.__setattr__``).
    """

    source: SourceMap
    path: PathKey
    calls: str = ""

    def at(self, *more: str | int) -> Location:
        """The location of a part of this one (an attribute, an input)."""
        return Location(self.source, (*self.path, *more), self.calls)

    def problem(self, message: str) -> Problem:
        suffix = f" ({self.calls})" if self.calls else ""
        return self.source.problem(self.path, message + suffix)

    def sort_key(self) -> tuple[str, int, int]:
        return (self.source.file, *self.source.position(self.path))

    def where(self) -> str:
        """``file:line:col``, followed by the calls that inlined it, if any."""
        file, line, col = self.sort_key()
        return f"{file}:{line}:{col}" + (f", {self.calls}" if self.calls else "")


def dotted(path: PathKey) -> str:
    """``('nodes', 'z', 'inputs', 0)`` -> ``nodes.z.inputs[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data plus its source map; raises SpecError.

    The one-line entries ``flowlines`` can read are read there; PyYAML composes the
    rest.  Whenever the two might not agree on a text (PyYAML finds an error, or sees
    the blocks elsewhere than ``flowlines`` did), PyYAML reads the whole text instead.
    """
    rest, blocks = flowlines.split(text)
    parsed = _parse_split(text, rest, blocks, file) if blocks else None
    return parsed if parsed is not None else _parse(text, file)


def _parse(text: str, file: str) -> tuple[Any, SourceMap]:
    """``parse_yaml`` with PyYAML composing the whole text."""
    source = SourceMap(file)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(s for s in (exc.context, exc.problem) if s) + _tab_hint(text, mark)
        raise SpecError([Problem(file, line, col, "", f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(file, 1, 1, "", f"YAML error: {exc}")]) from None
    if root is None:
        raise SpecError([Problem(file, 1, 1, "", "the spec is empty; expected a mapping")])
    if "&" in text:  # without anchors there are no aliases, and nothing can expand
        _check_expansion(root, file)
    problems = Problems()
    source.positions[()] = packed(root.start_mark.line + 1, root.start_mark.column + 1)
    data = _build(root, source, (), problems)
    problems.raise_if_any()
    return data, source


def _parse_split(text: str, rest: str, blocks: list[flowlines.Block],
                 file: str) -> tuple[Any, SourceMap] | None:
    """``parse_yaml`` from PyYAML's reading of ``rest`` and the blocks ``flowlines`` read
    (``split`` leaves no anchor, so nothing expands); None to read the whole text."""
    try:
        root = yaml.compose(rest, Loader=_Loader)
    except yaml.YAMLError:
        return None
    if not _saw(root, blocks):
        return None
    source = SourceMap(file, deferred=frozenset(block.key for block in blocks), text=text)
    positions = source.positions
    problems = Problems()
    positions[()] = packed(root.start_mark.line + 1, root.start_mark.column + 1)
    data = _build(root, source, (), problems)
    for block in blocks:
        key = block.key
        if positions[(key,)] != packed(block.line + 1, 1):  # a repeated key, reported
            if not problems:
                return None
            continue
        fast = block.values
        # packed(line + 1, column) for each fast line, without a Python call per line
        places = map(add, map(mul, block.lines, repeat(_COLUMNS)), repeat(_COLUMNS + block.column))
        positions.update(zip(zip(repeat(key), fast), places, strict=True))
        composed = data[key]
        if composed:  # PyYAML's lines and the fast ones, in written order
            if any(name in fast for name in composed):
                return None  # a repeated key: PyYAML's reading names the first
            data[key] = dict(sorted([*composed.items(), *fast.items()],
                                    key=lambda item: positions[(key, item[0])]))
        else:
            data[key] = fast
    problems.raise_if_any()
    return data, source


def _saw(root: yaml.Node, blocks: list[flowlines.Block]) -> bool:
    """Whether PyYAML read each block's key as a top-level key of a block mapping,
    where ``flowlines`` found it, with the block's composed lines (if any) as its value."""
    if root.__class__ is not yaml.MappingNode or root.flow_style:
        return False
    pairs = {key.start_mark.line: (key, value) for key, value in root.value
             if key.start_mark.column == 0}
    for block in blocks:
        key, value = pairs.get(block.line, (None, None))
        if key.__class__ is not yaml.ScalarNode or key.style or key.tag != _STR_TAG \
                or key.value != block.key:
            return False
        if block.composed:
            if value.__class__ is not yaml.MappingNode or value.flow_style or \
                    [(k.start_mark.line, k.start_mark.column + 1) for k, _ in value.value] \
                    != [(line, block.column) for line in block.composed]:
                return False
        elif value.__class__ is not yaml.ScalarNode or value.tag != _NULL_TAG or value.value:
            return False
    return True


def _tab_hint(text: str, mark: yaml.Mark | None) -> str:
    """PyYAML says 'character that cannot start any token' for a tab; say what it is."""
    if mark is None:
        return ""
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    if line[mark.column:mark.column + 1] == "\t":
        return "; a tab cannot indent YAML: use spaces"
    return ""


_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: yaml.Node, file: str) -> None:
    """Refuse recursive aliases and documents that expand to more than MAX_VALUES values.

    An alias is the very node object it refers to, so counting each distinct node
    once (iteratively, memoized by identity) costs time proportional to the text,
    however large the expansion would be.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            continue
        if key in size:
            continue
        if key in on_path:
            raise SpecError([_at(node, file, "recursive alias: this anchored value contains an "
                                             "alias of itself, so it would never end; a spec "
                                             "must be a tree")])
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in size)
    total = size[id(root)]
    if total <= MAX_VALUES:
        return
    culprit, where = root, root
    if isinstance(root, yaml.MappingNode):  # name the top-level key that explodes
        for key_node, value_node in root.value:
            if size[id(value_node)] > MAX_VALUES:
                culprit, where = value_node, key_node
                break
    raise SpecError([_at(where, file, f"this expands through YAML aliases to "
                                      f"{size[id(culprit)]:,} values, more than the limit of "
                                      f"{MAX_VALUES:,} (an alias bomb?); refusing to load it; "
                                      "write the values out or use fewer aliases")])


def _boolean_name(text: str) -> str:
    """Why ``on:`` is not a name, and what to write instead."""
    return (f"{text!r} is read by YAML 1.1 as the boolean {_yaml11_bool(text)}, not as a name; "
            f"write it in quotes ('{text}') to use it as a name")


def _yaml11_bool(text: str) -> str:
    return "true" if text.lower() in ("y", "yes", "on", "true") else "false"


def _scalar(node: yaml.ScalarNode, source: SourceMap, problems: list[Problem],
            path: PathKey) -> Any:
    """A plain scalar's value; any other tag is a problem (and the value None)."""
    file = source.file
    if node.tag == _STR_TAG:  # most scalars; SafeConstructor would return the text as it is
        if not node.style and _EXPONENT.match(node.value):  # plain: None or "" (C parser)
            return float(node.value)  # YAML 1.2 reads 1e-3 as a number, and so do users
        return node.value
    if node.tag not in _SCALAR_TAGS:
        problems.append(_at(node, file, f"YAML tag {node.tag!r} is not allowed in a spec; only "
                                        "plain strings, numbers, booleans and null are", path))
        return None
    if node.tag == _INT_TAG:
        return _integer(node, file, problems, path)
    if node.tag == _BOOL_TAG and node.value.lower() not in ("true", "false"):
        source.booleans[path] = node.value  # yes, on, off...: a name, if text was expected
    return _CONSTRUCTOR.yaml_constructors[node.tag](_CONSTRUCTOR, node)


def _integer(node: yaml.ScalarNode, file: str, problems: list[Problem], path: PathKey) -> Any:
    """An integer literal, refused (as a problem, value None) beyond what float64 can hold.

    No size, seed, index or value in a spec can usefully be that large, and every
    later stage would otherwise fail on it in its own way (Python's 4,300-digit
    limit on parsing, OverflowError converting to float or int64).
    """
    digits = sum(c.isdigit() for c in node.value)
    number = None
    if digits <= _MAX_INT_DIGITS:
        number = _CONSTRUCTOR.yaml_constructors[_INT_TAG](_CONSTRUCTOR, node)
        if abs(number) <= _LARGEST_FLOAT:
            return number
    shown = node.value if len(node.value) <= 24 else node.value[:12] + "..." + node.value[-6:]
    problems.append(_at(node, file, f"the integer {shown} ({digits:,} digits) is too large: "
                                    "a number in a spec must fit float64 (about 1.8e308 at "
                                    "most)", path))
    return None


def _at(node: yaml.Node, file: str, message: str, path: PathKey = ()) -> Problem:
    mark = node.start_mark
    return Problem(file, mark.line + 1, mark.column + 1, dotted(path), message)


def _build(root: yaml.Node, source: SourceMap, path: PathKey, problems: list[Problem]) -> Any:
    """Turn the composed node tree written at ``path`` into dicts, lists and scalars,
    without recursion, recording the places below ``path``.

    This runs once per node of the document (half a million for a 100,000-node
    spec, unless ``flowlines`` read them), so the common case, a plain string that
    cannot be a number, is decided here without a call; everything else goes through
    ``_scalar``.
    """
    file = source.file
    positions = source.positions
    # Each work item: (yaml node, path, container to fill, key in that container).
    holder: dict[str, Any] = {}
    stack: list[tuple[yaml.Node, PathKey, Any, Any]] = [(root, path, holder, "root")]
    pop, push = stack.pop, stack.append
    scalar = yaml.ScalarNode
    while stack:
        node, path, container, slot = pop()
        kind = node.__class__
        if kind is scalar:
            value = node.value
            if node.tag == _STR_TAG and (node.style or value[:1] not in NUMBER_START):
                container[slot] = value
            else:
                container[slot] = _scalar(node, source, problems, path)
        elif node.tag not in (_SEQ_TAG, _MAP_TAG):
            problems.append(_at(node, file, f"YAML tag {node.tag!r} is not allowed in a spec",
                                path))
            container[slot] = None
        elif kind is yaml.SequenceNode:
            items: list[Any] = [None] * len(node.value)
            container[slot] = items
            for index, child in enumerate(node.value):
                child_path = (*path, index)
                mark = child.start_mark
                positions[child_path] = (mark.line + 1) * _COLUMNS + mark.column + 1  # packed
                push((child, child_path, items, index))
        else:
            mapping: dict[Any, Any] = {}
            container[slot] = mapping
            for key_node, value_node in node.value:
                if key_node.__class__ is scalar and key_node.tag == _STR_TAG and \
                        (key_node.style or key_node.value[:1] not in NUMBER_START):
                    key = key_node.value  # nearly every key, decided without a call
                else:
                    key = _key(key_node, source, problems, path)
                    if key is _NO_KEY:
                        continue
                child_path = (*path, key)
                if key in mapping:
                    first = source.position(child_path)
                    problems.append(_at(key_node, file, f"duplicate key {key!r} (first defined at "
                                        f"line {first[0]}); YAML would silently keep only the "
                                        "last one", child_path))
                    continue
                mark = key_node.start_mark
                positions[child_path] = (mark.line + 1) * _COLUMNS + mark.column + 1  # packed
                mapping[key] = None
                push((value_node, child_path, mapping, key))
    return holder["root"]


#: ``_key``'s answer for a key that is refused (the problem is reported).
_NO_KEY = object()


def _key(node: yaml.Node, source: SourceMap, problems: list[Problem], path: PathKey) -> Any:
    """A mapping key's value, or ``_NO_KEY`` when it cannot be one (the problem reported);
    ``_build`` decides the common case, a plain string key, itself."""
    if not isinstance(node, yaml.ScalarNode):
        problems.append(_at(node, source.file, "a mapping key must be a plain scalar", path))
        return _NO_KEY
    if node.tag == _MERGE_TAG:
        problems.append(_at(node, source.file, "YAML merge keys ('<<') are not supported in a "
                                               "spec; write the keys out", path))
        return _NO_KEY
    if node.tag not in _SCALAR_TAGS:
        _scalar(node, source, problems, path)  # reports the tag
        return _NO_KEY
    if node.tag == _BOOL_TAG:  # every key of a spec is a name
        problems.append(_at(node, source.file, _boolean_name(node.value), path))
        return _NO_KEY
    return _scalar(node, source, problems, path)


def read_text(path: Path, limit: int | None = None) -> str:
    """Read a spec file of at most ``limit`` bytes, turning OS errors into a located
    SpecError.  The read itself is bounded, so a huge file costs no more than the limit;
    only a regular file is read (a FIFO would block, /dev/zero never end)."""
    problem = not_a_regular_file(path)
    if problem is not None:
        raise SpecError([Problem(str(path), 1, 1, "", problem)])
    try:
        with path.open("rb") as handle:
            data = handle.read() if limit is None else handle.read(limit + 1)
        if limit is not None and len(data) > limit:
            raise SpecError([Problem(str(path), 1, 1, "", f"the spec file is larger than "
                                     f"{limit:,} bytes, the most that --max-bytes allows (parsing "
                                     "YAML takes about 100 times the text's size); raise "
                                     "--max-bytes")])
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as text mode
    except FileNotFoundError:
        raise SpecError([Problem(str(path), 1, 1, "", "no such file")]) from None
    except IsADirectoryError:
        raise SpecError([Problem(str(path), 1, 1, "", "is a directory, not a spec file")]) from None
    except UnicodeDecodeError as exc:
        before = exc.object[:exc.start]
        line, col = before.count(b"\n") + 1, exc.start - (before.rfind(b"\n") + 1) + 1
        raise SpecError([Problem(str(path), line, col, "", f"not UTF-8 text: byte "
                                 f"0x{exc.object[exc.start]:02x} ({exc.reason}); save the file "
                                 "as UTF-8")]) from None
    except OSError as exc:
        raise SpecError([Problem(str(path), 1, 1, "", f"cannot read: {exc.strerror}")]) from None
