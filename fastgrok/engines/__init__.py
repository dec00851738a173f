"""Engines: one per method (direct, gram), each over every backend's operations.

:mod:`.base` defines the interface the driver uses; :mod:`.direct` and :mod:`.gram` implement
the two methods once; :mod:`.ops_base` is the operations interface, with one module per
backend (:mod:`.ops_numpy`, :mod:`.ops_numba`, :mod:`.ops_cupy`); :mod:`.linear_regime` is the
CPU's incremental gram steps. :mod:`.registry` pairs them: ``get_engine("gram", "numba")`` is
the gram engine over the CPU kernels. Choosing a method and a backend for an experiment is the
planning step's job (:mod:`fastgrok.plan`).
"""
from __future__ import annotations

from .base import Engine, run_metrics
from .direct import DirectEngine
from .gram import GramEngine
from .ops_base import Ops
from .ops_cupy import CupyOps
from .ops_numba import NumbaOps
from .ops_numpy import NumpyOps
from .registry import BACKENDS, ENGINES, OPS, EngineBinding, get_engine, get_ops

__all__ = ["Engine", "DirectEngine", "GramEngine", "EngineBinding", "ENGINES", "OPS", "BACKENDS",
           "Ops", "NumpyOps", "NumbaOps", "CupyOps", "get_engine", "get_ops", "run_metrics"]
