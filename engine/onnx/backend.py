"""The engine as an ``onnx.backend.base.Backend``, so that ONNX's own test runner
(``onnx.backend.test.BackendTest``) runs its node tests through it.

``prepare`` checks the model; ``run`` imports it with ``engine import``'s translation,
loads the spec as ``engine run`` would, feeds the inputs and returns the outputs in the
model's order.  The import waits for ``run`` because ONNX may pass as inputs what the
engine takes as attributes (a Reshape's shape, a Slice's starts): the given values are
then fixed into the spec, and every other input is fed.  What the engine cannot
compute as ONNX defines it raises ``engine.onnx.importer.Unsupported`` with the reason.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from onnx.backend.base import Backend, BackendRep

from engine.onnx.importer import Imported, import_model, verify
from engine.runtime.backends import to_numpy
from engine.runtime.executor import Executor
from engine.spec.loader import loads


class EngineRep(BackendRep):
    """A prepared model: imported at the first ``run`` (and again when the values of
    inputs fixed into the spec change)."""

    def __init__(self, model: Any, source: str):
        self.model, self.source = model, source
        initializers = {t.name for t in model.graph.initializer}
        self.input_names = [v.name for v in model.graph.input if v.name not in initializers]
        self._folder = tempfile.TemporaryDirectory()  # the .npz of the imported spec
        self._imported: Imported | None = None
        self._executor: Executor | None = None

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        fed = self._named(inputs)
        imported, executor = self._prepared(fed)
        onnx_names = {spec: onnx for onnx, spec in imported.inputs.items()}
        feeds = {spec: fed[onnx] for spec, onnx in onnx_names.items() if onnx in fed}
        result = executor.forward(feeds)
        return tuple(np.array(to_numpy(result[name])) for name in imported.outputs)

    def _named(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            return {k: np.asarray(v) for k, v in inputs.items()}
        if not isinstance(inputs, Sequence | np.ndarray):
            inputs = [inputs]
        return {name: np.asarray(v) for name, v in zip(self.input_names, inputs, strict=False)}

    def _prepared(self, fed: dict[str, np.ndarray]) -> tuple[Imported, Executor]:
        if self._imported is None or self._executor is None or any(
                name not in fed or not _same(fed[name], value)
                for name, value in self._imported.fixed.items()):
            imported = import_model(self.model, source=self.source, npz="weights.npz",
                                    static=fed)
            verify(imported, self.model, self.source)
            if imported.arrays:
                np.savez(Path(self._folder.name) / imported.npz, **imported.arrays)
            graph = loads(imported.text, file=f"{self.source} (imported)",
                          base_dir=self._folder.name)
            self._imported, self._executor = imported, Executor(graph)
        return self._imported, self._executor


class EngineBackend(Backend):
    """ONNX models run by the engine (on NumPy, on the CPU)."""

    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> EngineRep:
        super().prepare(model, device, **kwargs)
        return EngineRep(model, model.graph.name or "model")

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
