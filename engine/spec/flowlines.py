"""Read the one-line entries of a large generated spec without PyYAML.

A spec of 100,000 nodes is mostly lines such as ``  n12: {op: Mul, inputs: [n11, c]}``
under ``nodes:``; composing them with PyYAML costs about 20 µs a line (its Python
node objects and the resolver's regular expressions for every scalar), far more
than everything this module does.  ``split`` finds each top-level block whose lines
are all such entries, written in a small, conservative subset of YAML's flow style,
and reads the lines whose every scalar can only be text (``Block.values``); every
other line (a number, ``yes``, ``null``, a duplicate key, ...) stays where it was
for PyYAML (``Block.composed``).  Anything outside the subset (a multi-line value,
an anchor, a tag, a tab, non-ASCII text, ...) leaves its whole block to PyYAML.

``engine.spec.source.parse_yaml`` composes the rest of the text, with the fast
lines emptied so that every other line keeps its number, checks that PyYAML saw
each block where ``split`` did, and puts the lines back in written order.  Whether
a scalar can only be text is asked of the resolver PyYAML composes with (its own
regular expressions), never of a copy of its rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

#: What a plain scalar that YAML or ``source._EXPONENT`` may read as a number starts
#: with; a plain string starting with anything else is a number in no reading.
NUMBER_START = frozenset("0123456789+-.")

# The subset, over printable ASCII only.  A plain scalar: no space, no indicator
# anywhere (``: , [ ] { } # & * ! | > ' " % @ ` ?``), and a sign only before a word
# character, so YAML reads it as exactly these characters in flow and block context.
# The possessive quantifiers (*+) never give back what the next part could not start with
# anyway; they only spare the matcher from trying.
_PLAIN = r"(?:[A-Za-z0-9_.~]|[-+][A-Za-z0-9_.])[A-Za-z0-9_.~/+-]*+"
_SINGLE = r"'(?:[ -&(-~]|'')*'"  # '' is a quote; no other escape
_DOUBLE = r'"[ !#-\[\]-~]*"'  # without backslash escapes
_SCALAR = rf"(?:{_PLAIN}|{_SINGLE}|{_DOUBLE})"
# A key stays far below the 1,024 characters YAML allows a key on one line.
_KEY = (r"(?:(?:[A-Za-z0-9_.~]|[-+][A-Za-z0-9_.])[A-Za-z0-9_.~/+-]{0,255}+"
        r"|'(?:[ -&(-~]|''){0,255}'|\"[ !#-\[\]-~]{0,255}\")")
_COMMA = r" *+, *+"
_COLON = r": ++"
_SEQ = rf"\[ *+(?:{_SCALAR}(?:{_COMMA}{_SCALAR})*)? *\]"
_INNER = (rf"\{{ *+(?:{_KEY}{_COLON}(?:{_SCALAR}|{_SEQ})"
          rf"(?:{_COMMA}{_KEY}{_COLON}(?:{_SCALAR}|{_SEQ}))*)? *\}}")
_VALUE = rf"(?:{_SCALAR}|{_SEQ}|{_INNER})"
_ENTRY_PATTERN = rf"({_KEY}){_COLON}({_VALUE})"
_MORE = rf"((?:{_COMMA}{_KEY}{_COLON}{_VALUE})*)"
#: One line of a block: an entry ``KEY: {KEY: VALUE, ...}`` with an optional comment
#: (groups: indent, key, the first three keys and values, the text of any more entries),
#: or a blank or comment line (all groups empty).
_LINE = re.compile(rf"^( +)({_KEY}){_COLON}\{{ *+(?:{_ENTRY_PATTERN}(?:{_COMMA}{_ENTRY_PATTERN}"
                   rf"(?:{_COMMA}{_ENTRY_PATTERN}{_MORE})?)?)? *\}} *(?: #[ -~]*)?$"
                   r"|^ *(?:#[ -~]*)?$", re.MULTILINE)
#: A top-level key with nothing after it on its line, followed by an indented line.
_BLOCK_KEY = re.compile(rf"^({_PLAIN}):(?: +#[ -~]*| *)\n(?=[ #\n])", re.MULTILINE)
#: The end of a block: the next line that starts with anything but a space or a comment.
_BLOCK_END = re.compile(r"\n(?=[^ #\n])")
_ENTRY = re.compile(_ENTRY_PATTERN)
_INNER_ENTRY = re.compile(rf"({_KEY}){_COLON}({_SCALAR}|{_SEQ})")
_ITEM = re.compile(_SCALAR)


def _implicit(resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]],
              ) -> dict[str, re.Pattern[str]]:
    """For each first character, one expression that matches where one of the resolver's
    expressions for that character does (PyYAML tries only those)."""
    flags = ((re.ASCII, "a"), (re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"),
             (re.VERBOSE, "x"))
    return {first: re.compile("|".join(
        f"(?{''.join(c for f, c in flags if p.flags & f)}:{p.pattern})" for _, p in entries))
        for first, entries in resolvers.items() if first}


#: What a plain scalar may be read as by PyYAML's safe resolver (that of CSafeLoader and
#: SafeLoader alike), other than a string.
_IMPLICIT = _implicit(yaml.resolver.Resolver.yaml_implicit_resolvers)
#: Characters whose presence anywhere leaves the whole text to PyYAML: an anchor (the
#: alias-expansion bound counts the composed tree) and line breaks other than ``\n``.
_UNSAFE = re.compile("[&\r\x85\u2028\u2029]")


@dataclass
class Block:
    """A top-level key whose value is written as one-line entries at one indentation."""

    key: str
    line: int  # of ``key:``, 0-based
    column: int  # of each entry's key, 1-based
    #: The fast lines' entries, in written order, and the 0-based line of each.
    values: dict[str, Any] = field(default_factory=dict)
    lines: list[int] = field(default_factory=list)
    #: The 0-based lines left in the text for PyYAML, in order.
    composed: list[int] = field(default_factory=list)


def split(text: str) -> tuple[str, list[Block]]:
    """The text with every fast line emptied, and the blocks they came from.

    No blocks (and the text unchanged) when nothing can be read here, or when two
    fast lines of a block have the same key (PyYAML's path reports it).
    """
    if _UNSAFE.search(text):
        return text, []
    blocks: list[Block] = []
    pieces: list[str] = []
    done = 0  # text[:done] is in pieces
    seen: set[str] = set()  # plain scalars known to be text
    position = breaks = 0  # text[:position] holds ``breaks`` line breaks
    while (head := _BLOCK_KEY.search(text, position)) is not None:
        start = head.end()
        tail = _BLOCK_END.search(text, start)
        end = len(text) if tail is None else tail.start()
        line = breaks + text.count("\n", position, start)  # the block's first line
        position, breaks = end, line + text.count("\n", start, end)
        key = head.group(1)
        if _text(key, seen) is None:
            continue
        block = _read(text, start, end, Block(key, line - 1, 0), seen)
        if block is None:
            continue
        if len(block.values) < len(block.lines):  # a duplicate key
            return text, []
        if not block.values:
            continue
        blocks.append(block)
        pieces.append(text[done:start])
        if block.composed:
            kept = set(block.composed)
            pieces.append("\n".join(text_line if number in kept else "" for number, text_line
                                    in enumerate(text[start:end].split("\n"), line)))
        else:
            pieces.append("\n" * text.count("\n", start, end))
        done = end
    if not blocks:
        return text, []
    pieces.append(text[done:])
    return "".join(pieces), blocks


def _read(text: str, start: int, end: int, block: Block, seen: set[str]) -> Block | None:
    """Read the lines text[start:end] into ``block``; None unless each is in the subset."""
    rows = _LINE.findall(text, start, end)
    if len(rows) != text.count("\n", start, end) + 1:  # some line is not in the subset
        return None
    values, lines, composed = block.values, block.lines, block.composed
    indent = ""
    number = block.line
    for spaces, name, key1, raw1, key2, raw2, key3, raw3, more in rows:
        number += 1
        if not spaces:  # a blank or comment line
            continue
        if spaces != indent:
            if indent:  # another indentation: not one plain block of entries
                return None
            indent = spaces
        if name not in seen:
            name = _text(name, seen)
        node: dict[str, Any] = {}
        # One statement per slot rather than a loop: this runs once per line.
        ok = name is not None and (not key1 or _put(node, key1, raw1, seen))
        ok = ok and (not key2 or _put(node, key2, raw2, seen))
        ok = ok and (not key3 or _put(node, key3, raw3, seen))
        if ok and (not more or _put_all(node, _ENTRY.findall(more), seen)):
            values[name] = node
            lines.append(number)
        else:
            composed.append(number)
    block.column = len(indent) + 1
    return block


def _put(mapping: dict[str, Any], key: str, raw: str, seen: set[str]) -> bool:
    """Add the entry ``key: raw`` to a flow mapping; False when some scalar may not be
    text or the key repeats (PyYAML's path decides those)."""
    name = key if key in seen else _text(key, seen)
    if name is None or name in mapping:
        return False
    value: Any
    if raw in seen:  # most values: a plain scalar known to be text
        value = raw
    elif raw[0] == "[":
        if "'" in raw or '"' in raw:
            value = [_text(item, seen) for item in _ITEM.findall(raw)]
            if None in value:
                return False
        else:  # plain scalars only: no space is part of one
            inside = raw[1:-1].replace(" ", "")
            value = inside.split(",") if inside else []
            if not seen.issuperset(value) and None in [
                    item if item in seen else _text(item, seen) for item in value]:
                return False
    elif raw[0] == "{":
        value = {}
        if not _put_all(value, _INNER_ENTRY.findall(raw), seen):
            return False
    else:
        value = _text(raw, seen)
        if value is None:
            return False
    mapping[name] = value
    return True


def _put_all(mapping: dict[str, Any], entries: list[tuple[str, str]], seen: set[str]) -> bool:
    return all(_put(mapping, key, raw, seen) for key, raw in entries)


def _text(token: str, seen: set[str]) -> str | None:
    """The string a scalar token reads as, or None when it may be anything else; plain
    scalars found to be text go into ``seen``."""
    first = token[0]
    if first == "'":
        return token[1:-1].replace("''", "'")
    if first == '"':
        return token[1:-1]
    if first in NUMBER_START:
        return None
    implicit = _IMPLICIT.get(first)
    if implicit is not None and implicit.match(token):
        return None
    seen.add(token)
    return token
