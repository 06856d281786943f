"""Pattern fusion on the forward graph, before its derivative is taken.

- **Staged softmax.** ``Mul(e, Pow(Sum(e, axis, keepdims), -1))`` (either order) or
  ``Div(e, Sum(e, axis, keepdims))`` with ``e = Exp(x)`` becomes ``Softmax(x, axis)``.
  Mathematically the same function; ``Softmax`` subtracts the row maximum before
  ``exp``, so it differs from the staged form by rounding where the staged form is
  finite, and it stays finite where the staged form overflows (``exp(710)`` is inf,
  and inf/inf is NaN; in float16 already ``exp(12)``).  The backward is then
  Softmax's vjp, ``p * (g - sum(g * p))``, instead of the Exp, Sum, Pow and Mul rules.
- **Softmax into NLL (cross-entropy).** ``NLL(Softmax(x, last axis), y)`` becomes
  ``CrossEntropy(x, y)`` with NLL's reduction (sum or mean), for a float target of the
  probabilities' dtype (one-hot or soft rows) and for class indices.  The same loss,
  since log softmax(x) = x - max - log(sum exp(x - max)); its gradient is
  ``p * sum(y) - y``, which is ``p - y`` for one-hot rows and class indices, and the
  quotient ``-y / p`` of the staged backward is never formed.  Where a probability
  underflows to 0 the staged NLL is inf (log 0) and its gradient -y/p inf or NaN;
  the fused loss and gradient stay finite.  An NLL with any other attribute set
  (a class weight, an ignored index, no reduction) is left alone.  The Softmax node
  stays where something else reads it (an output ``probs``).
- **Dense.** ``Add(MatMul(x, w), b)`` (either order), where nothing else reads the
  MatMul, becomes ``Dense(x, w, b)``: the same two NumPy operations on the same
  arrays (addition is commutative in IEEE arithmetic), so exact; one node instead
  of two, and the backward is Dense's vjp.
- **Dense and Relu.** ``Relu(Dense(x, w, b))``, where nothing else reads the Dense,
  becomes ``Dense(x, w, b, activation: relu)``: max(z, 0) on the same z, exact; its
  vjp masks the upstream gradient where the output is 0, as Relu's does.

So this pass, unlike the others, changes rounding (and turns overflow into finite
numbers) in its softmax and cross-entropy rules; it runs on the forward graph,
before differentiation, and can be left out (``--passes fold,simplify,cse,dce``,
``Executor(graph, optimize=False)``).  A value that must stay (an output, the loss)
is never fused away: it may be computed another way, never dropped.
One walk in order over the nodes its rules start from (``engine.transform.passes.census``;
none where the graph lacks the ops a pattern needs): linear.
"""

from __future__ import annotations

from engine.graph.model import Node
from engine.ops.base import FLOAT_DTYPES
from engine.transform.passes.census import Census
from engine.transform.passes.stage import Rewrite, Stage
from engine.transform.passes.written import op_attrs


def fuse(stage: Stage) -> Stage:
    anchors = stage.census.nodes_of(_anchors(stage.census))
    if not anchors:
        return stage.unchanged()
    return _Fuser(stage).run(anchors)


def _anchors(census: Census) -> set[str]:
    """The ops of the nodes each rule starts from, where the graph has the other ops its
    pattern needs (or this pass makes them: ``Dense``, and ``Softmax`` for an ``NLL``)."""
    has = census.has
    staged = has("Exp") and has("Sum")  # a staged softmax's Exp and its sums
    by_power, by_division = staged and has("Pow") and has("Mul"), staged and has("Div")
    anchors = {"Mul"} if by_power else set()
    if by_division:
        anchors.add("Div")
    if has("MatMul"):
        anchors.add("Add")
    if has("Dense") or (has("MatMul") and has("Add")):
        anchors.add("Relu")
    if has("Softmax") or by_power or by_division:
        anchors.add("NLL")
    return anchors


class _Fuser:
    def __init__(self, stage: Stage):
        self.stage = stage
        self.rewrite = Rewrite(stage)
        self.readers = stage.census.readers

    def run(self, anchors: list[str]) -> Stage:
        """Each rule at each of ``anchors`` (nodes, in order)."""
        for name in anchors:
            node = self.rewrite.node(name)
            if node is None:  # a MatMul or Dense that a later node took in
                continue
            op = node.op.name
            if op in ("Mul", "Div"):
                self.softmax(node)
            elif op == "Add":
                self.dense(node)
            elif op == "Relu":
                self.dense_relu(node)
            elif op == "NLL":
                self.cross_entropy(node)
        return self.rewrite.finish()

    def only_reader(self, name: str) -> bool:
        """Whether one node reads ``name`` and nothing needs it kept: it may be fused away."""
        return self.readers[name] == 1 and name not in self.stage.keep

    def is_minus_one(self, ref: str) -> bool:
        literal = self.rewrite.literal(ref)
        return literal is not None and literal.ndim == 0 and float(literal) == -1.0

    # -- Exp, Sum, Pow -1, Mul -> Softmax ----------------------------------------------------

    def softmax(self, node: Node) -> None:
        rewrite = self.rewrite
        a, b = node.inputs
        exp, total = a, None
        if node.op.name == "Div":
            total = rewrite.op_of(b, "Sum")
        else:
            for e, inverse in ((a, b), (b, a)):
                power = rewrite.op_of(inverse, "Pow")
                if power is not None and self.is_minus_one(power.inputs[1]):
                    exp, total = e, rewrite.op_of(power.inputs[0], "Sum")
                    break
        raised = rewrite.op_of(exp, "Exp")
        if raised is None or total is None or total.inputs != (exp,) \
                or not total.attrs.keepdims:
            return
        axis = total.attrs.axis
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        out, e = rewrite.value(node.name), rewrite.value(exp)
        if not isinstance(axis, int) or out.shape != e.shape or out.dtype != e.dtype:
            return
        rewrite.put(node.name, "Softmax", raised.inputs,
                    f"the staged softmax (Exp {exp}, Sum, {node.op.name}) is Softmax, "
                    f"axis {axis}", axis=axis)

    # -- Add(MatMul(x, w), b) -> Dense(x, w, b) ---------------------------------------------

    def dense(self, node: Node) -> None:
        rewrite = self.rewrite
        for product, bias in (node.inputs, node.inputs[::-1]):
            matmul = rewrite.op_of(product, "MatMul")
            if matmul is None or not self.only_reader(product) \
                    or any(len(rewrite.value(r).shape) < 2 for r in matmul.inputs):
                continue
            rewrite.drop(product)
            rewrite.put(node.name, "Dense", (*matmul.inputs, bias),
                        f"Add of MatMul {product} and {bias} is Dense")
            return

    # -- Relu(Dense(x, w, b)) -> Dense(x, w, b, activation: relu) ----------------------------

    def dense_relu(self, node: Node) -> None:
        rewrite = self.rewrite
        (ref,) = node.inputs
        dense = rewrite.op_of(ref, "Dense")
        if dense is None or dense.attrs.activation != "none" or not self.only_reader(ref):
            return
        rewrite.drop(ref)
        rewrite.put(node.name, "Dense", dense.inputs, f"Relu of Dense {ref} is Dense with its "
                                                       "activation relu", activation="relu")

    # -- NLL(Softmax) -> CrossEntropy ---------------------------------------------------------

    def cross_entropy(self, node: Node) -> None:
        rewrite = self.rewrite
        if len(node.inputs) != 2:  # a class weight given as an input: not this pattern
            return
        probs, target = node.inputs
        soft = rewrite.op_of(probs, "Softmax")
        attrs = op_attrs(node)
        reduction = attrs.pop("reduction")
        if soft is None or reduction not in ("sum", "mean") or any(
                value != node.op.attrs.model_fields[key].default
                for key, value in attrs.items()):
            return  # a weight, an ignored class or no reduction: not this pattern
        p, y = rewrite.value(probs), rewrite.value(target)
        rank = len(p.shape)
        one_hot = len(y.shape) == rank and y.dtype == p.dtype
        labels = len(y.shape) == rank - 1 and y.dtype not in FLOAT_DTYPES
        if rank == 0 or soft.attrs.axis % rank != rank - 1 or not (one_hot or labels):
            return
        if self.only_reader(probs):
            rewrite.drop(probs)
        rewrite.put(node.name, "CrossEntropy", (soft.inputs[0], target),
                    f"NLL of Softmax ({probs}) is CrossEntropy of {soft.inputs[0]}: its "
                    "gradient is p - y, without -y/p", reduction=reduction)
