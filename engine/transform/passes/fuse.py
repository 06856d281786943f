"""Pattern fusion on the forward graph, before engine grad differentiates it.

- **Staged softmax.** ``Mul(e, Pow(Sum(e, axis, keepdims), -1))`` (either order) or
  ``Div(e, Sum(e, axis, keepdims))`` with ``e = Exp(x)`` becomes ``Softmax(x, axis)``.
  Mathematically the same function; ``Softmax`` subtracts the row maximum before
  ``exp``, so it differs from the staged form by rounding where the staged form is
  finite, and it stays finite where the staged form overflows (``exp(710)`` is inf,
  and inf/inf is NaN).  The backward that engine grad then writes is Softmax's vjp,
  ``p * (g - sum(g * p))``, instead of the Exp, Sum, Pow and Mul rules.
- **Softmax into NLL (cross-entropy).** ``NLL(Softmax(x, last axis), y)`` with a
  one-hot (or soft) float target ``y`` of the probabilities' dtype becomes
  ``-Sum(LogSoftmax(x) * y)`` (divided by ``Count`` of the rows for ``mean``).  The
  same loss, since log(softmax x) = x - max - log(sum exp(x - max)); its gradient,
  through LogSoftmax's vjp, is ``p * sum(y) - y``, which is ``p - y`` for rows
  that sum to 1, and the quotient ``-y / p`` is never formed.  Where a probability
  underflows to 0 the staged NLL is inf (log 0) and its gradient -y/p is inf or
  NaN; the fused form stays finite.  Class-index targets (int64) are left as they
  are.  The Softmax node stays where something else reads it (an output ``probs``).

- **Dense.** ``Add(MatMul(x, w), b)`` (either order), where nothing else reads the
  MatMul, becomes ``Dense(x, w, b)``: the same two NumPy operations on the same
  arrays (addition is commutative in IEEE arithmetic), so exact; one node instead
  of two, and the backward is Dense's vjp.

So this pass, unlike the others, changes rounding (and turns overflow into finite
numbers); it runs on the forward graph, before differentiation, and can be left
out (``--passes fold,simplify,cse,dce``).  One walk in order: linear.
"""

from __future__ import annotations

from typing import Any

from engine.transform.passes.stage import Match, Stage


def fuse(stage: Stage) -> Stage:
    return _Fuser(stage).run()


class _Fuser:
    def __init__(self, stage: Stage):
        self.stage = stage
        self.spec = stage.edit()
        self.nodes: dict[str, Any] = self.spec["nodes"]
        self.matches: list[Match] = []
        self.taken = {n for s in ("inputs", "parameters", "constants", "nodes")
                      for n in self.spec.get(s, {})}
        self.before: dict[str, dict[str, Any]] = {}  # new nodes, placed before their user

    def run(self) -> Stage:
        self.readers: dict[str, int] = {}
        for entry in self.nodes.values():
            for ref in entry["inputs"]:
                if isinstance(ref, str):
                    self.readers[ref] = self.readers.get(ref, 0) + 1
        for name in list(self.nodes):
            entry = self.nodes.get(name)
            if entry is None:  # a MatMul a Dense took in
                continue
            if entry["op"] in ("Mul", "Div"):
                self.softmax(name, entry)
            if entry["op"] == "Add":
                self.dense(name, entry)
            elif entry["op"] == "NLL":
                self.cross_entropy(name, entry)
        ordered: dict[str, Any] = {}
        for name, entry in self.nodes.items():
            ordered.update(self.before.get(name, {}))
            ordered[name] = entry
        self.spec["nodes"] = ordered
        stage = self.stage.rebuilt(self.spec, self.matches)
        for user, made in self.before.items():  # new nodes come from where their user does
            stage.origins.update({name: stage.origins.get(user, "") for name in made})
        return stage

    def node(self, ref: Any, op: str) -> dict[str, Any] | None:
        entry = self.nodes.get(ref) if isinstance(ref, str) else None
        return entry if entry is not None and entry["op"] == op else None

    def is_minus_one(self, name: str, index: int) -> bool:
        graph = self.stage.graph
        literal = self.stage.literal(graph.values[graph.nodes[name].inputs[index]])
        return literal is not None and literal.ndim == 0 and float(literal) == -1.0

    # -- Exp, Sum, Pow -1, Mul -> Softmax ----------------------------------------------------

    def softmax(self, name: str, entry: dict[str, Any]) -> None:
        a, b = entry["inputs"]
        if entry["op"] == "Div":
            exp, total = a, self.node(b, "Sum")
        else:
            exp, total = a, None
            for e, inverse in ((a, b), (b, a)):
                power = self.node(inverse, "Pow")
                if power is not None and self.is_minus_one(inverse, 1):
                    exp, total = e, self.node(power["inputs"][0], "Sum")
                    break
        raised = self.node(exp, "Exp")
        if raised is None or total is None or total["inputs"] != [exp] \
                or not total.get("keepdims"):
            return
        axis = total.get("axis")
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        graph = self.stage.graph
        if not isinstance(axis, int) or graph.values[name].shape != graph.values[exp].shape:
            return
        self.nodes[name] = {"op": "Softmax", "inputs": [raised["inputs"][0]], "axis": axis}
        self.matches.append(self.stage.match(
            name, f"the staged softmax (Exp {exp}, Sum, {entry['op']}) is Softmax, axis {axis}"))

    # -- Add(MatMul(x, w), b) -> Dense(x, w, b) ---------------------------------------------

    def dense(self, name: str, entry: dict[str, Any]) -> None:
        for product, bias in (entry["inputs"], entry["inputs"][::-1]):
            matmul = self.node(product, "MatMul")
            if matmul is None or not isinstance(bias, str) or self.readers.get(product) != 1 \
                    or product in self.spec["outputs"]:
                continue
            del self.nodes[product]
            self.nodes[name] = {"op": "Dense", "inputs": [*matmul["inputs"], bias]}
            self.matches.append(self.stage.match(
                name, f"Add of MatMul {product} and {bias} is Dense"))
            return

    # -- NLL(Softmax) -> -Sum(LogSoftmax * y) -------------------------------------------------

    def cross_entropy(self, name: str, entry: dict[str, Any]) -> None:
        if len(entry["inputs"]) != 2 or entry.get("reduction", "sum") == "none" or \
                entry.get("ignore_index") is not None:
            return  # class weights, skipped rows and per-row losses have no staged form here
        probs, target = entry["inputs"]
        soft = self.node(probs, "Softmax")
        graph = self.stage.graph
        if soft is None or not isinstance(target, str):
            return
        p, y = graph.values[graph.nodes[name].inputs[0]], graph.values[target]
        rank = len(p.shape)
        axis = soft.get("axis", -1)
        if axis % rank != rank - 1 or len(y.shape) != rank or y.dtype != p.dtype:
            return
        x = soft["inputs"][0]
        logp, terms, total = (self.fresh(f"{name}_{part}") for part in ("logp", "terms",
                                                                          "total"))
        made = {logp: {"op": "LogSoftmax", "inputs": [x], "axis": axis},
                terms: {"op": "Mul", "inputs": [logp, target]},
                total: {"op": "Sum", "inputs": [terms]}}
        if entry.get("reduction", "sum") == "mean" and rank > 1:
            negated, rows = self.fresh(f"{name}_sum"), self.fresh(f"{name}_rows")
            made[negated] = {"op": "Neg", "inputs": [total]}
            made[rows] = {"op": "Count", "inputs": [x], "axis": list(range(rank - 1))}
            self.nodes[name] = {"op": "Div", "inputs": [negated, rows]}
        else:
            self.nodes[name] = {"op": "Neg", "inputs": [total]}
        self.before[name] = made
        self.matches.append(self.stage.match(
            name, f"NLL of Softmax ({probs}) is the cross-entropy -sum(LogSoftmax * {target}): "
                  "its gradient is p - y, without -y/p"))

    def fresh(self, wanted: str) -> str:
        name, index = wanted, 1
        while name in self.taken:
            index += 1
            name = f"{wanted}_{index}"
        self.taken.add(name)
        return name


