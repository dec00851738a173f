"""The registry: which operations serve each backend, and which engine each (method, backend).

Two plain tables, :data:`OPS` and :data:`ENGINES`; :func:`get_ops` and :func:`get_engine`
look them up. An :class:`EngineBinding` is an engine class paired with a backend: what the
planning step chooses and the driver builds engines from.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import Engine
from .direct import DirectEngine
from .gram import GramEngine
from .ops_base import Ops
from .ops_cupy import CupyOps
from .ops_numba import NumbaOps
from .ops_numpy import NumpyOps

#: backend -> its operations class.
OPS: dict[str, type[Ops]] = {"numpy": NumpyOps, "numba": NumbaOps, "cupy": CupyOps}

#: Every backend an engine can be bound to.
BACKENDS = tuple(OPS)

_ops_cache: dict[str, Ops] = {}


def get_ops(backend: str) -> Ops:
    """The (cached) operations object of ``backend`` ("numpy", "numba" or "cupy").

    For "cupy" this needs CuPy and a usable GPU (RuntimeError otherwise) and compiles the CUDA
    kernels on the first call.
    """
    if backend not in OPS:
        raise ValueError(f"unknown backend {backend!r}; expected one of "
                         f"{', '.join(map(repr, OPS))}")
    if backend not in _ops_cache:
        if backend == "cupy":
            from .ops_cupy import require_gpu

            require_gpu()
        _ops_cache[backend] = OPS[backend]()
    return _ops_cache[backend]


@dataclass(frozen=True)
class EngineBinding:
    """One method's engine over one backend's operations (an entry of :data:`ENGINES`).

    Calling it builds the engine over the backend's operations; its other methods are the
    engine class's planning questions answered for that backend.
    """

    method: str
    backend: str
    engine: type[Engine]

    @property
    def ops(self) -> type[Ops]:
        """The backend's operations class."""
        return OPS[self.backend]

    def operations(self) -> Ops:
        """The backend's (cached) operations object."""
        return get_ops(self.backend)

    def __call__(self, sources, lr, dtype="float32", **kwargs) -> Engine:
        """The engine of ``sources`` over this backend (``ops=`` overrides the operations)."""
        kwargs.setdefault("ops", self.operations())
        return self.engine(sources, lr, dtype, **kwargs)

    def runtime(self, n_threads=None):
        """Context manager around a whole training; yields the thread count to pass on."""
        return self.operations().runtime(n_threads)

    def max_batch(self, n, p, m, n_test, dtype) -> int:
        """Runs one engine may hold at once."""
        return self.engine.max_batch(n, p, m, n_test, dtype, self.ops)

    def batch_multiple(self) -> int:
        """What a batch's size is best a multiple of (the threads sharing out its runs)."""
        return self.engine.batch_multiple(self.ops)

    def estimate_bytes(self, n, p, m, n_test, dtype) -> int:
        """Bytes of one run's state (used to refuse what cannot fit)."""
        return self.engine.estimate_bytes(n, p, m, n_test, dtype, self.ops)

    def describe(self, counters: dict) -> dict:
        """``Result.info`` entries from the engines' counters summed over batches."""
        return self.ops.describe_counters(counters)

    def step_fn(self, *args, **kwargs):
        """The engine's in-place step on the caller's arrays, over this backend."""
        return self.engine.step_fn(*args, ops=self.operations(), **kwargs)


#: (method, backend) -> its engine binding.
ENGINES: dict[tuple[str, str], EngineBinding] = {
    ("direct", "numpy"): EngineBinding("direct", "numpy", DirectEngine),
    ("direct", "numba"): EngineBinding("direct", "numba", DirectEngine),
    ("direct", "cupy"): EngineBinding("direct", "cupy", DirectEngine),
    ("gram", "numpy"): EngineBinding("gram", "numpy", GramEngine),
    ("gram", "numba"): EngineBinding("gram", "numba", GramEngine),
    ("gram", "cupy"): EngineBinding("gram", "cupy", GramEngine),
}


def get_engine(method: str, backend: str) -> EngineBinding:
    """The engine of (method, backend); NotImplementedError if that pair does not exist."""
    try:
        return ENGINES[(method, backend)]
    except KeyError:
        have = ", ".join(f"{m}/{b}" for m, b in sorted(ENGINES))
        raise NotImplementedError(
            f"method={method!r} with backend={backend!r} is not implemented yet (available: {have})"
        ) from None
