"""Engines: one per method (direct, gram), each bound to every backend's operations.

:mod:`.base` defines the interface the driver uses; :mod:`.direct` and :mod:`.gram` implement
the two methods once; :mod:`.ops` and :mod:`.ops_cupy` hold what differs between backends. The
registry below binds each method to each backend, so ``get_engine("gram", "numba")`` is the gram
engine over the CPU kernels. Choosing a method and a backend for an experiment is the planning
step's job (:mod:`fastgrok.plan`).
"""
from __future__ import annotations

from .base import Engine, run_metrics
from .direct import DirectEngine
from .gram import GramEngine

#: Every backend an engine can be bound to.
BACKENDS = ("numpy", "numba", "cupy")

#: (method, backend) -> engine class (the method's engine with ``backend`` set).
ENGINES: dict[tuple[str, str], type[Engine]] = {}


def register(cls: type[Engine], backend: str) -> type[Engine]:
    """Bind the engine ``cls`` to ``backend`` and make it the engine of (cls.method, backend)."""
    bound = type(f"{backend.capitalize()}{cls.__name__}", (cls,),
                 {"backend": backend, "__doc__": cls.__doc__, "__module__": cls.__module__})
    ENGINES[(cls.method, backend)] = bound
    return bound


for _backend in BACKENDS:
    register(DirectEngine, _backend)
    register(GramEngine, _backend)


def get_engine(method: str, backend: str) -> type[Engine]:
    """The engine class for (method, backend); NotImplementedError if that pair does not exist."""
    try:
        return ENGINES[(method, backend)]
    except KeyError:
        have = ", ".join(f"{m}/{b}" for m, b in sorted(ENGINES))
        raise NotImplementedError(
            f"method={method!r} with backend={backend!r} is not implemented yet (available: {have})"
        ) from None


__all__ = ["Engine", "DirectEngine", "GramEngine", "ENGINES", "BACKENDS", "register",
           "get_engine", "run_metrics"]
