"""Array libraries the executor can run on, chosen by name: ``numpy``, ``torch``, ``jax``, ``dask``.

The ops are written against the Python array API standard, so another library
needs only its namespace: array-api-compat's wrappers for PyTorch and Dask, and
``jax.numpy`` (which is itself a namespace of the standard).  Each library is
imported only when it is chosen, so NumPy stays the only required one; a
missing one is an ``EngineError`` that names the ``pip install`` of its extra.

A ``Backend`` also converts at the boundary: NumPy arrays into its own arrays
(on its device), and its arrays back into NumPy (``to_numpy``), which is what
the command line prints and saves.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from engine.errors import EngineError, did_you_mean

#: Backend name -> (the module whose presence means it is installed, the pyproject extra).
BACKENDS: dict[str, tuple[str, str | None]] = {
    "numpy": ("numpy", None),
    "torch": ("torch", "torch"),
    "jax": ("jax", "jax"),
    "dask": ("dask.array", "dask"),
}

#: Backend name -> the engine dtypes its library cannot compute with.  torch 2.13 holds
#: uint16, uint32 and uint64 tensors but implements almost no op on them (add, mul, sum,
#: maximum, > are "not implemented for 'UInt32'"), so the backend refuses them up front,
#: naming the value, rather than failing inside some op or computing in another dtype.
LACKS: dict[str, tuple[str, ...]] = {"torch": ("uint16", "uint32", "uint64")}


@dataclass(frozen=True)
class Backend:
    """One array library: its array-API namespace ``xp`` and the device arrays go to."""

    name: str
    xp: ModuleType
    device: Any = None
    #: Dask only: rows per chunk of a batched array (default: about CHUNK_BYTES a chunk).
    chunk_rows: int | None = None

    def check_dtype(self, dtype: str, what: str) -> None:
        """Raise an EngineError naming ``what`` (a value and where it is defined) when this
        backend cannot compute with ``dtype``."""
        if dtype in LACKS.get(self.name, ()):
            others = ", ".join(name for name in BACKENDS if dtype not in LACKS.get(name, ()))
            raise EngineError(
                f"{what} is {dtype}, which the {self.name} backend cannot compute with "
                f"({self.name} implements almost no op on {', '.join(LACKS[self.name])}); "
                f"Cast it to a dtype {self.name} has (int64, or float64), or run on another "
                f"backend ({others})")

    def asarray(self, array: Any, dtype: str, *, rows: bool = False) -> Any:
        """A NumPy array (or anything ``np.asarray`` takes) as this backend's array.

        ``rows``: the array's first axis is the batch (an input's), which Dask splits into
        chunks of ``chunk_rows`` rows; parameters and constants stay one chunk.  A Dask array
        stays lazy on Dask: its chunks are read where they are computed."""
        self.check_dtype(dtype, f"an array to put on {self.name}")
        if self.name == "dask" and hasattr(array, "__dask_graph__"):
            lazy = array if array.dtype == dtype else array.astype(dtype)
            return lazy.rechunk({0: self.chunk_rows}) if rows and lazy.ndim and \
                self.chunk_rows is not None else lazy
        host = np.asarray(array, dtype=dtype)
        if self.name == "numpy":
            return host
        if not host.flags.c_contiguous:  # torch refuses negative strides (np.flip's views)
            host = host.copy()
        if self.name == "dask" and rows and host.ndim:
            da = importlib.import_module("dask.array")
            return da.from_array(host, chunks=(self.rows_per_chunk(host), *host.shape[1:]))
        if self.device is None:
            return self.xp.asarray(host, dtype=getattr(self.xp, dtype))
        return self.xp.asarray(host, dtype=getattr(self.xp, dtype), device=self.device)

    def rows_per_chunk(self, host: Any) -> int:
        """Rows of ``host`` (anything with ``shape`` and ``nbytes``) in one Dask chunk:
        ``chunk_rows``, else about CHUNK_BYTES of them."""
        if self.chunk_rows is not None:
            return self.chunk_rows
        row = max(1, host.nbytes // max(1, host.shape[0]))
        return max(1, CHUNK_BYTES // row)

    def compute(self, *results: Any) -> tuple[Any, ...]:
        """``results`` (dicts, lists, arrays) with every array as NumPy, computed together:
        on Dask one task graph, so values that several results share are computed once
        (on the dask.distributed cluster a client was made for, else by Dask's threaded
        scheduler in this process)."""
        if self.name == "dask":
            dask = importlib.import_module("dask")
            results = dask.compute(*results, scheduler=dask_scheduler())
        return tuple(_tree_to_numpy(result) for result in results)


def dask_scheduler() -> Any:
    """The default dask.distributed client (``engine.runtime.cluster`` makes one for
    ``--scheduler`` and ``--workers``; a Python caller may make their own), else Dask's
    threaded scheduler.  ``distributed`` is looked up only if something imported it."""
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:
            return distributed.default_client()
        except ValueError:  # no client
            pass
    return "threads"


def installed(name: str) -> bool:
    """Whether backend ``name``'s library can be imported (without importing it)."""
    module = BACKENDS[name][0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # dask.array with no dask
        return False


def install_hint(name: str) -> str:
    extra = BACKENDS[name][1]
    return f'pip install -e ".[{extra}]"' if extra else "pip install numpy"


def get_backend(name: str, device: str | None = None, chunk_rows: int | None = None) -> Backend:
    """The backend called ``name`` on ``device`` (torch only: ``cpu``, ``cuda``, ``cuda:1``),
    with ``chunk_rows`` rows a chunk (dask only)."""
    if name not in BACKENDS:
        raise EngineError(f"unknown backend {name!r}{did_you_mean(name, BACKENDS)}; the "
                          f"backends are: {', '.join(BACKENDS)}")
    if device is not None and name != "torch":
        raise EngineError(f"a device is chosen only on the torch backend, not on {name!r} "
                          f"(got device {device!r})")
    if chunk_rows is not None and name != "dask":
        raise EngineError(f"chunk rows are set only on the dask backend, not on {name!r}")
    if chunk_rows is not None and chunk_rows < 1:
        raise EngineError(f"chunk rows must be 1 or more, got {chunk_rows}")
    if not installed(name):
        raise EngineError(f"backend {name!r} needs {BACKENDS[name][0].split('.')[0]}, which is "
                          f"not installed: {install_hint(name)}")
    return Backend(name, _namespace(name), _device(name, device), chunk_rows)


def _namespace(name: str) -> ModuleType:
    if name == "numpy":
        return np
    if name == "torch":
        return importlib.import_module("array_api_compat.torch")
    if name == "dask":
        return importlib.import_module("array_api_compat.dask.array")
    jax = importlib.import_module("jax")
    # Without it JAX silently computes float64 specs in float32.
    jax.config.update("jax_enable_x64", True)
    return importlib.import_module("jax.numpy")


def _device(name: str, device: str | None) -> Any:
    if name != "torch" or device is None:
        return None
    torch = importlib.import_module("torch")
    try:
        chosen = torch.device(device)
    except RuntimeError as exc:
        raise EngineError(f"--device {device!r}: not a torch device ({exc}); use cpu, cuda or "
                          "cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {device!r}: this torch build sees no CUDA GPU (torch "
                          f"{torch.__version__}); use --device cpu")
    return chosen


#: Dask's default chunk: about 64 MiB of rows, a size its documentation recommends.
CHUNK_BYTES = 64 << 20


def _tree_to_numpy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _tree_to_numpy(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_tree_to_numpy(v) for v in value)
    return None if value is None else to_numpy(value)


def to_numpy(array: Any) -> np.ndarray:
    """Any backend's array as a NumPy array: a torch tensor is detached and copied to the
    host, a Dask array computed, a JAX array copied out; a NumPy array is returned as is."""
    if isinstance(array, np.ndarray):
        return array
    module = type(array).__module__
    if module.startswith("torch"):
        return array.detach().cpu().numpy()
    if module.startswith("dask"):
        return np.asarray(array.compute())
    return np.asarray(array)
