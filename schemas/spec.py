"""Pydantic models of a graph spec (the YAML file a user writes), apart from the ops.

These models check each field on its own (types, allowed values, unknown keys).
Checks that need the whole graph (names resolve, no cycles, shapes agree) live
in ``engine.graph.build``.

Nothing here knows the ops, so this package imports nothing from ``engine``.
``Spec`` on its own takes every node as a call; ``spec_model(node_models)``
builds the Spec whose ``op`` key selects each op's node model, and
``node_model`` builds one such model from an op's attribute model.  The engine
fills them in from its op registry (``engine.spec.models``), so the schema and
the ops can never disagree and a new op needs no edit here.  A node whose
``op`` is not an op calls a function (``functions:`` or an import); its
attributes can only be checked against the function, so ``engine.spec.inline``
checks them when it expands the call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    Tag,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from schemas.base import StrictModel, did_you_mean
from schemas.numbers import LARGEST_SIZE, MAX_RANK, Seed, Size
from schemas.train import TrainConfig

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
_WORD = r"[A-Za-z_][A-Za-z0-9_]*"
#: What a node reads: a name, or ``call.out_name`` for one output of a function call.
Ref = Annotated[str, StringConstraints(pattern=rf"^{_WORD}(\.{_WORD})?$")]
#: What a node's input may also be in a function body: ``$attr``, the number an attribute holds.
InputRef = Annotated[str, StringConstraints(pattern=rf"^(\${_WORD}|{_WORD}(\.{_WORD})?)$")]
#: What outputs and loss name: also values inside calls, such as ``probs/raised``.
ValueRef = Annotated[str, StringConstraints(pattern=rf"^{_WORD}(/{_WORD})*(\.{_WORD})?$")]
#: Built-in ops are CamelCase (Softmax) and functions lower_case (softmax), so that a call,
#: ``softmax`` or ``nn.softmax`` for one imported as ``nn``, is never a misspelt op (Sofmax):
#: the JSON Schema can then refuse unknown ops, and editors underline them.
FUNCTION_NAME_PATTERN = r"^[a-z_][A-Za-z0-9_]*$"
CALL_PATTERN = rf"^({_WORD}\.)?[a-z_][A-Za-z0-9_]*$"
#: An op or a call, before the ops are known (``spec_model`` applies the naming rule).
FunctionRef = Annotated[str, StringConstraints(pattern=rf"^{_WORD}(\.{_WORD})?$")]
DType = Literal["float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8",
                "uint16", "uint32", "uint64", "bool"]
Dim = Size | Name


def unknown_op(op: str, ops: frozenset[str]) -> str:
    """The message for an ``op`` that is neither a built-in op nor a function's name."""
    return (f"unknown op {op!r}{did_you_mean(op, ops)}: built-in ops are CamelCase "
            f"({', '.join(sorted(ops))}); functions are lower_case or alias.name "
            "(softmax, nn.softmax)")


def _function_name(name: str) -> str:
    if re.match(FUNCTION_NAME_PATTERN, name) is None:
        raise ValueError(f"a function's name starts with a lowercase letter or _ (built-in ops "
                         f"are CamelCase, so calls and ops never look alike): found {name!r}"
                         + (f"; rename it {re.sub(r'(?<!^)(?=[A-Z])', '_', name).lower()!r}"
                            if name[:1].isupper() else ""))
    return name


#: The name of a function, under ``functions:``.
FunctionName = Annotated[str, AfterValidator(_function_name),
                         WithJsonSchema({"type": "string", "pattern": FUNCTION_NAME_PATTERN})]


def rectangular(value: Any) -> Any:
    """Check that a literal is a number or a rectangular nested list of numbers."""
    if isinstance(value, bool):
        raise ValueError("expected a number or a nested list of numbers, got a boolean")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise ValueError("expected a number or a rectangular nested list of numbers "
                         "(every row the same length)") from None
    if array.dtype == object:  # pragma: no cover - asarray with a float dtype never yields object
        raise ValueError("expected numbers")
    return value


Literal_ = Annotated[StrictFloat | StrictInt | list[Any], Field(description="A number or a "
                                                                "nested list of numbers.")]


Finite = Annotated[float, Field(allow_inf_nan=False)]
AllowNonfinite = Annotated[bool, Field(
    description="Set to true to keep .nan, .inf or -.inf in value: without it, a non-finite "
                "literal is refused as a likely mistake.")]


class Uniform(StrictModel):
    low: Finite = Field(default=0.0, description="Smallest value (inclusive).")
    high: Finite = Field(default=1.0, description="Largest value (exclusive).")

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be less than high ({self.high})")
        if not np.isfinite(self.high - self.low):
            raise ValueError(f"the range high - low ({self.high} - {self.low}) overflows "
                             "float64; choose bounds closer together")
        return self


class Normal(StrictModel):
    mean: Finite = Field(default=0.0, description="Mean of the distribution.")
    std: Finite = Field(default=1.0, gt=0, description="Standard deviation (> 0).")


class Labels(StrictModel):
    classes: int = Field(gt=0, le=LARGEST_SIZE,
                         description="Number of classes; labels are 0 .. classes-1.")


_INIT_FORMS = ("zeros", "ones", "one_hot", "uniform", "normal", "labels", "value", "file")


class Init(StrictModel):
    """How a tensor is filled when nothing is fed: exactly one of the forms below.

    The bare words ``zeros``, ``ones`` and ``one_hot`` may be written alone
    (``init: one_hot``).  Random forms draw from the spec's ``seed``.
    """

    zeros: Literal[True] | None = Field(default=None, description="All zeros.")
    ones: Literal[True] | None = Field(default=None, description="All ones.")
    one_hot: Literal[True] | None = Field(
        default=None, description="One random class per row, as the lesson makes y: a 1 in "
                                  "one position of the last axis, 0 elsewhere.")
    uniform: Uniform | None = Field(default=None, description="Uniform random numbers.")
    normal: Normal | None = Field(default=None, description="Normal random numbers.")
    labels: Labels | None = Field(default=None, description="Random integer class labels.")
    value: Literal_ | None = Field(default=None, description="A literal number or nested list.")
    file: str | None = Field(
        default=None, description="A .npy file, or an .npz file whose array named after the "
                                  "tensor is taken (engine import writes one per model), "
                                  "relative to the spec.")
    allow_nonfinite: AllowNonfinite = False

    @model_validator(mode="before")
    @classmethod
    def _bare_word(cls, data: Any) -> Any:
        if isinstance(data, str):
            if data in ("zeros", "ones", "one_hot"):
                return {data: True}
            raise ValueError(f"unknown init {data!r}; expected one of zeros, ones, one_hot, or "
                             "a mapping such as {uniform: {low: 0, high: 1}}")
        return data

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        # Editors must accept the bare words too (init: one_hot), as the validator does.
        return {"anyOf": [{"enum": ["zeros", "ones", "one_hot"]}, handler(core_schema)]}

    @field_validator("value")
    @classmethod
    def _rectangular(cls, value: Any) -> Any:
        return rectangular(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> Init:
        chosen = [form for form in _INIT_FORMS if getattr(self, form) is not None]
        if len(chosen) != 1:
            found = ", ".join(chosen) if chosen else "none"
            raise ValueError(f"expected exactly one init form ({', '.join(_INIT_FORMS)}), "
                             f"found {found}")
        if self.allow_nonfinite and chosen != ["value"]:
            raise ValueError("allow_nonfinite applies to init: {value: ...} only; remove it")
        return self

    @property
    def form(self) -> str:
        """The name of the one form that is set."""
        return next(form for form in _INIT_FORMS if getattr(self, form) is not None)


class TensorDecl(StrictModel):
    """An input or parameter: its shape, dtype, default fill and whether it gets a gradient."""

    shape: list[Dim] = Field(max_length=MAX_RANK,
                             description="Sizes of the axes (at most 64): integers, or names "
                                         "such as batch that are bound when data is fed.")
    dtype: DType = Field(default="float64", description="Element type. Integers and bool take "
                                                        "no gradient and no uniform, normal or "
                                                        "one_hot init; int64 is the usual one "
                                                        "for class labels.")
    init: Init | None = Field(default=None, description="Fill used when nothing is fed.")
    requires_grad: bool | None = Field(
        default=None, description="Compute d loss / d this tensor. Defaults to false for "
                                  "inputs and true for parameters.")


class Constant(StrictModel):
    """A fixed value: a bare number or nested list, or ``{value: ..., dtype: ...}``.

    A bare number without a dtype takes the dtype of what it meets (as a Python
    scalar does in NumPy), so ``-1`` does not turn a float32 graph into float64.
    """

    value: Literal_ = Field(description="The number or nested list.")
    dtype: DType | None = Field(default=None, description="Element type; default float64, or "
                                                          "for a bare number, that of its use.")
    allow_nonfinite: AllowNonfinite = False

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, data: Any) -> Any:
        return data if isinstance(data, dict) else {"value": data}

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        # Editors must accept a bare number or list too (minus_one: -1.0), as the validator does.
        return {"anyOf": [{"type": "number"}, {"type": "array"}, handler(core_schema)]}

    @field_validator("value")
    @classmethod
    def _rectangular(cls, value: Any) -> Any:
        return rectangular(value)


class NodeFields(StrictModel):
    """What every node has besides its op's attributes."""

    inputs: list[InputRef | StrictInt | StrictFloat] = Field(
        description="Names of the values this node reads (the graph's edges); a number is an "
                    "inline constant; call.out_name is one output of a function call; in a "
                    "function body, $attr is the number the attribute attr holds.")
    description: str = Field(default="", description="Free text, for people.")


def node_model(op_name: str, doc: str, attrs: type[BaseModel]) -> type[NodeFields]:
    """The model of a node applying op ``op_name``: the common fields plus its attributes."""
    return create_model(
        f"{op_name}Node",
        __base__=(NodeFields, attrs),
        __doc__=doc,
        op=(Literal[op_name], Field(description=doc)),
    )


class CallNode(NodeFields):
    """A node that calls a function, or any node of a function's body.

    Its other keys are attributes: of the function it calls (checked when the call
    is expanded), or of its op, where ``$name`` stands for the function's
    attribute ``name``.
    """

    model_config = ConfigDict(extra="allow")

    op: FunctionRef = Field(
        description="A function (softmax, or nn.softmax from an import): lower_case, where "
                    "built-in ops are CamelCase.")


class BodyNode(CallNode):
    """A node of a function's body: an op (with ``$name`` attributes) or a call."""

    op: FunctionRef = Field(
        description="An op, or a function (softmax, or nn.softmax from an import).")


class Function(StrictModel):
    """A reusable subgraph, inlined wherever a node calls it (as ONNX functions are)."""

    description: str = Field(default="", description="What the function computes, for people.")
    inputs: list[Name] = Field(description="Names of the values a call passes in, in order.")
    attrs: dict[Name, Any] = Field(
        default_factory=dict, description="Attributes with their defaults; the body's nodes "
                                          "refer to them as $name.")
    nodes: dict[Name, BodyNode] = Field(description="The body: ops and calls, as in nodes.")
    outputs: list[Ref] = Field(min_length=1, description="The body's values a call returns: "
                                                         "one, or several named call.out_name.")


_NODES = "Operations; a node's value has its name."
_FUNCTIONS = "Reusable subgraphs, called like ops."


class Spec(StrictModel):
    """A whole graph: tensors, nodes, what to output and which node is the loss."""

    name: str = Field(description="Name of the graph.")
    description: str = Field(default="", description="What the graph computes, for people.")
    seed: Seed = Field(default=0, description="Seed of every random init, for reproducibility.")
    dims: dict[Name, Size] = Field(
        default_factory=dict, description="Default sizes of named dimensions, used for init "
                                          "values when no fed array binds the name.")
    inputs: dict[Name, TensorDecl] = Field(default_factory=dict,
                                           description="Data fed at run time.")
    parameters: dict[Name, TensorDecl] = Field(default_factory=dict,
                                               description="Trainable tensors.")
    constants: dict[Name, Constant] = Field(default_factory=dict, description="Fixed values.")
    imports: dict[Name, str] = Field(
        default_factory=dict, description="Alias to spec file (relative to this one) whose "
                                          "functions are then called as alias.function.")
    functions: dict[FunctionName, Function] = Field(
        default_factory=dict, description=_FUNCTIONS,
        json_schema_extra={"additionalProperties": False})  # names outside the pattern
    nodes: dict[Name, CallNode] = Field(default_factory=dict, description=_NODES)
    outputs: list[ValueRef] = Field(default_factory=list, description="Values to report.")
    loss: ValueRef | None = Field(default=None, description="A scalar node where backward "
                                                            "starts with gradient 1.")
    train: TrainConfig | None = Field(default=None, description="How `engine train` trains "
                                                                "the graph.")

    @model_validator(mode="after")
    def _has_nodes(self) -> Spec:
        if not {"nodes", "functions"} & self.model_fields_set:
            raise ValueError("missing required key 'nodes' (a library of functions may have "
                             "functions instead)")
        return self



def spec_model(node_models: Mapping[str, type[NodeFields]]) -> type[Spec]:
    """The ``Spec`` whose nodes are checked by ``node_models`` (op name -> model, as
    ``node_model`` builds them): the ``op`` key selects the model, and a node whose op
    is not among them is a ``CallNode`` (a function call)."""
    ops = frozenset(node_models)

    def kind(data: Any) -> str | None:
        """The union tag: the op itself for a known op, ``call`` for anything else."""
        if not isinstance(data, dict):
            return data.op if isinstance(data, BaseModel) and data.op in ops else "call"
        if "op" not in data:
            return None
        op = data["op"]
        return op if isinstance(op, str) and op in ops else "call"

    call = create_model(
        "CallNode", __base__=CallNode, __doc__=CallNode.__doc__,
        op=(_op_type(ops, calls_only=True),
            Field(description=CallNode.model_fields["op"].description)))
    body = create_model(
        "BodyNode", __base__=BodyNode, __doc__=BodyNode.__doc__,
        op=(_op_type(ops, calls_only=False),
            Field(description=BodyNode.model_fields["op"].description)))
    function = create_model(
        "Function", __base__=Function, __doc__=Function.__doc__,
        nodes=(dict[Name, body], Field(description=Function.model_fields["nodes"].description)))
    node = Annotated[
        Union[(*(Annotated[model, Tag(op)] for op, model in node_models.items()),
               Annotated[call, Tag("call")])],
        Discriminator(kind)]
    return create_model(
        "Spec", __base__=Spec, __doc__=Spec.__doc__,
        nodes=(dict[Name, node], Field(default_factory=dict, description=_NODES)),
        functions=(dict[FunctionName, function], Field(
            default_factory=dict, description=_FUNCTIONS,
            json_schema_extra={"additionalProperties": False})))


def _op_type(ops: frozenset[str], calls_only: bool) -> Any:
    """The ``op`` of a call node (``calls_only``), or of a function body's node (an op or a
    call), checked by the naming rule with a message that names the ops."""
    def check(op: str) -> str:
        if (calls_only or op not in ops) and re.match(CALL_PATTERN, op) is None:
            raise ValueError(unknown_op(op, ops))
        return op

    call = {"type": "string", "pattern": CALL_PATTERN}
    schema = call if calls_only else {"anyOf": [{"enum": sorted(ops)}, call]}
    checker: Callable[[str], str] = check
    return Annotated[str, AfterValidator(checker), WithJsonSchema(schema)]


#: Where the committed schema lives, relative to the repository root; graphs/ point here.
SCHEMA_FILE = "schemas/graph.schema.json"


def json_schema(spec: type[Spec]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a spec file, generated from ``spec_model``'s model."""
    schema = spec.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema,
            "title": "Graph spec of the yaml-graph-engine"}


def schema_text(spec: type[Spec]) -> str:
    """The schema as committed in ``schemas/graph.schema.json`` (stable, diff-friendly)."""
    return json.dumps(json_schema(spec), indent=2, ensure_ascii=False) + "\n"
