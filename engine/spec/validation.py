"""Pydantic's validation errors as located problems, in the user's words.

Pydantic reports errors by field path; we translate each path back to the
line and column where the user wrote it (the approach of Dagster's
``pydantic_yaml``), and reword pydantic's messages into what was expected, what
was found and, where possible, the likely fix.  ``engine.spec.inline`` uses the
same translation for the nodes of a function body, which can only be validated
once a call has supplied the function's attributes.
"""

from __future__ import annotations

import types
from collections import defaultdict
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from engine.errors import Problem, SpecError, did_you_mean
from engine.spec.models import NODE_MODELS, OpSpec
from engine.spec.source import PathKey, SourceMap
from schemas.spec import Spec


def validate_spec(data: Any, source: SourceMap) -> Spec:
    """Validate parsed data against the Spec model, raising every problem at once."""
    if not isinstance(data, dict):
        raise SpecError([source.problem((), f"a spec is a mapping of keys such as name, inputs, "
                                             f"nodes; found {type(data).__name__}")])
    try:
        return OpSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(located_problems(exc, data, source)) from None


def located_problems(exc: ValidationError, data: Any, source: SourceMap,
                     prefix: PathKey = ()) -> list[Problem]:
    """One problem per location: alternatives of a union at one place are merged.

    ``prefix`` is where in ``data`` the validated object sits, when it is not the root.
    """
    by_path: dict[PathKey, list[dict[str, Any]]] = defaultdict(list)
    for error in exc.errors(include_url=False):
        by_path[_data_path(error["loc"], source, prefix)].append(error)
    return [source.problem(path, _message(path, errors, data) + _boolean_hint(path, errors, source))
            for path, errors in by_path.items()]


def _boolean_hint(path: PathKey, errors: list[dict[str, Any]], source: SourceMap) -> str:
    """``outputs: [on]`` reads as [True]: say why, where a name was expected."""
    text = source.booleans.get(path)
    if text is None or not any(e["type"] in ("string_type", "literal_error") for e in errors):
        return ""
    return (f"; YAML 1.1 reads {text} as a boolean: write it in quotes ('{text}') to use it "
            "as a name")


def _data_path(loc: tuple[Any, ...], source: SourceMap, prefix: PathKey) -> PathKey:
    """Drop the parts of a pydantic location that are not in the data (union tags, types)."""
    path: PathKey = prefix
    for part in loc:
        candidate = (*path, part)
        if candidate in source:
            path = candidate
    # An unknown key is not in the model, but it is in the data: keep it for the position.
    if loc and loc[-1] not in path and (*path, loc[-1]) in source:
        path = (*path, loc[-1])
    return path


_TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "float_type": "a number",
    "float_parsing": "a number", "string_type": "a string", "bool_type": "true or false",
    "bool_parsing": "true or false", "finite_number": "a finite number", "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping", "model_attributes_type": "a mapping",
    "string_pattern_mismatch": "a name (letters, digits and _, not starting with a digit)",
}

_BOUND_WORDS = {"greater_than": "greater than", "greater_than_equal": "at least",
                "less_than": "less than", "less_than_equal": "at most"}


def _message(path: PathKey, errors: list[dict[str, Any]], data: Any) -> str:
    first = errors[0]
    kind = first["type"]
    found = first.get("input")
    if kind == "missing":
        return f"missing required key {first['loc'][-1]!r}"
    if kind == "extra_forbidden":
        return _unknown_key(path, data)
    if kind == "union_tag_not_found":
        return "missing key 'op': every node names its op, for example {op: Exp, inputs: [x]}"
    if kind == "literal_error":
        return f"expected {first['ctx']['expected']}, found {found!r}"
    if kind == "too_long":
        return (f"expected at most {first['ctx']['max_length']} entries, found "
                f"{first['ctx']['actual_length']}")
    if kind in _BOUND_WORDS:
        (limit,) = first["ctx"].values()
        return f"expected a number {_BOUND_WORDS[kind]} {limit}, found {found!r}"
    words = [_TYPE_WORDS.get(e["type"]) for e in errors]
    if all(words):
        expected = " or ".join(dict.fromkeys(w for w in words if w))
        return f"expected {expected}, found {_describe(found)}{_number_hint(found)}"
    messages = dict.fromkeys(str(e["msg"]).removeprefix("Value error, ") for e in errors)
    return "; ".join(messages)


def _number_hint(found: Any) -> str:
    """A quoted number and 'inf' are text in YAML; say how to write them as numbers."""
    if not isinstance(found, str):
        return ""
    try:
        number = float(found)
    except ValueError:
        return ""
    if number != number or number in (float("inf"), float("-inf")):
        return "; YAML writes not-a-number and infinity as .nan, .inf and -.inf"
    return f"; quoted, a number is text: write {number!r} without quotes"


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{value!r}"


def _unknown_key(path: PathKey, data: Any) -> str:
    key = path[-1]
    allowed = _allowed_keys(path[:-1], data)
    if allowed is None:
        return f"unknown key {key!r}"
    hint = did_you_mean(str(key), allowed)
    return f"unknown key {key!r}{hint}; allowed here: {', '.join(allowed)}"


def _allowed_keys(path: PathKey, data: Any) -> list[str] | None:
    """The keys the model at ``path`` accepts, for 'did you mean' on unknown keys."""
    model = _model_at(path, data)
    return None if model is None else list(model.model_fields)


def _model_at(path: PathKey, data: Any) -> type[BaseModel] | None:
    """The model that checks the mapping at ``path``, found by walking the models' fields
    from ``OpSpec`` (so no table here can fall behind the models)."""
    return _walk(OpSpec, path, data)


def _walk(annotation: Any, path: PathKey, data: Any) -> type[BaseModel] | None:
    """The model ``annotation`` gives at ``path`` below it; ``data`` is the data there."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _walk(get_args(annotation)[0], path, data)
    if origin in (Union, types.UnionType):
        found = [model for member in get_args(annotation)
                 if (model := _walk(member, path, data)) is not None]
        return _pick(found, data if not path else None)
    if origin is dict:
        return _walk(get_args(annotation)[1], path[1:], _get(data, path[:1])) if path else None
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return None
    if not path:
        return _as_op_node(annotation, data)
    field = annotation.model_fields.get(str(path[0]))
    return None if field is None else _walk(field.annotation, path[1:], _get(data, path[:1]))


def _pick(models: list[type[BaseModel]], data: Any) -> type[BaseModel] | None:
    """One model of a union: the node model whose ``op`` is the data's, else the only one
    that names no op (a call)."""
    op = data.get("op") if isinstance(data, dict) else None
    by_op = [m for m in models if op in _literal_ops(m)]
    if by_op:
        return by_op[0]
    rest = [m for m in models if not _literal_ops(m)]
    return rest[0] if len(rest) == 1 else None


def _literal_ops(model: type[BaseModel]) -> tuple[Any, ...]:
    field = model.model_fields.get("op")
    return get_args(field.annotation) if field and get_origin(field.annotation) is Literal else ()


def _as_op_node(model: type[BaseModel], data: Any) -> type[BaseModel]:
    """A node of a function body takes any keys until its call is expanded; then, when its
    ``op`` is an op, the op's node model checks it (``engine.spec.inline``)."""
    op = data.get("op") if isinstance(data, dict) else None
    if model.model_config.get("extra") == "allow" and isinstance(op, str) and op in NODE_MODELS:
        return NODE_MODELS[op]
    return model


def _get(data: Any, path: PathKey) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data
