"""Planning: from what was asked to what will run, in one step.

Every choice that turns an experiment (a :class:`~fastgrok.Config`, or a user's arrays) into
engine work is made here and nowhere else: the representation (full or reduced), the working
dimension and dtype, the backend, the method, the engine, the number of runs per batch, the
histogram steps, and whether it fits in memory. :func:`fastgrok.run` and :func:`fastgrok.fit`
plan, then hand the :class:`Plan` to the driver.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from . import tunables
from ._memory import check_fits
from .config import representation_for

#: Whether the CuPy engines have passed ``bench/gpu_check.py`` on a real GPU. Until they have,
#: backend="auto" never selects them (a user with a GPU gets the verified CPU engines) and an
#: explicit backend="cupy" warns that it is experimental. Flip to True once the check passes.
CUPY_VERIFIED = False


class ExperimentalWarning(UserWarning):
    """A backend that has not been verified on real hardware was selected."""


def warn_if_experimental(backend: str) -> None:
    """Warn when an unverified backend is used."""
    if backend == "cupy" and not CUPY_VERIFIED:
        warnings.warn("backend='cupy' is experimental: the CuPy engines have not yet been "
                      "verified on a GPU (bench/gpu_check.py); backend='auto' uses the CPU "
                      "engines until they are", ExperimentalWarning, stacklevel=4)


def resolve_backend(backend: str) -> str:
    """Map "auto" to the fastest available verified backend.

    Cupy with a usable GPU once the CuPy engines are verified (:data:`CUPY_VERIFIED`), else numba.
    """
    if backend != "auto":
        return backend
    from . import devices

    if CUPY_VERIFIED and devices.gpu_usable():
        return "cupy"
    return "numba"


def resolve_method(method: str, backend: str, n, p, m, n_test, steps) -> str:
    """Map "auto" to the cheaper method by flop count.

    direct: (steps + 1) x 4 n m p. gram: a build of 2 (n + n_test)(n + m) p, then steps x 2 n^2 m
    (test quantities, 2 n_test n m, only at evaluation steps: counted at every step here).
    """
    if method != "auto":
        return method
    direct = (steps + 1) * 4 * n * m * p
    gram = 2 * (n + n_test) * (n + m) * p + steps * 2 * n * m * (n + n_test)
    return "gram" if gram < direct else "direct"


@dataclass(frozen=True)
class Plan:
    """What will run.

    ``p`` is the working dimension (d = n + n_test + m + 2 when reduced); ``dtype`` the working
    dtype (float64 for reduced runs at p beyond float32's safe range).
    """

    method: str
    backend: str
    representation: str
    dtype: str
    n: int
    p: int
    m: int
    n_test: int
    steps: int
    batch: int
    engine: object  # a fastgrok.engines.EngineBinding
    snapshot_steps: tuple

    @property
    def engine_name(self) -> str:
        """The engine as method/backend, e.g. "gram/numba"."""
        return f"{self.method}/{self.backend}"


def plan_experiment(cfg, networks_kept=0) -> Plan:
    """The plan of :func:`fastgrok.run` for the experiment ``cfg`` (``networks_kept`` per run)."""
    # The engines hold a row per patch (patches = 1: a row per sample).
    n, n_test = cfg.n * cfg.patches, cfg.n_test * cfg.patches
    rep = representation_for(cfg.representation, n, n_test, cfg.m, cfg.p)
    p = n + n_test + cfg.m + 2 if rep == "reduced" else cfg.p
    dtype = cfg.dtype
    if rep == "reduced" and dtype == "float32" and cfg.p > tunables.REDUCED_FLOAT32_MAX_P:
        dtype = "float64"  # see tunables.REDUCED_FLOAT32_MAX_P
    method = "gram" if cfg.population_test_samples and cfg.method == "auto" else cfg.method
    return plan_arrays(n, p, cfg.m, n_test, dtype, method, cfg.backend, cfg.steps,
                       cfg.snapshot_steps, representation=rep, runs=cfg.runs,
                       networks_kept=networks_kept)


def plan_arrays(n, p, m, n_test, dtype, method, backend, steps, snapshot_steps=None,
                representation="full", runs=1, networks_kept=0) -> Plan:
    """The plan for training on arrays of these sizes (:func:`fastgrok.fit`).

    ``networks_kept`` networks per run are kept (snapshots): the gram method keeps C (m, n),
    the direct method W (m, p); their memory for ``runs`` runs is counted before any work.
    """
    from .driver import default_snapshot_steps
    from .engines import get_engine

    backend = resolve_backend(backend)
    if backend == "cupy":
        from .engines.ops_cupy import require_gpu

        require_gpu()  # before any data is drawn
    warn_if_experimental(backend)
    method = resolve_method(method, backend, n, p, m, n_test, steps)
    engine = get_engine(method, backend)
    check_fits(engine.estimate_bytes(n, p, m, n_test, dtype),
               f"one {method}/{backend} run (n={n}, p={p}, m={m}, n_test={n_test}, {dtype})")
    if networks_kept:
        per = 8 * m * n if method == "gram" else np.dtype(dtype).itemsize * m * p
        check_fits(engine.estimate_bytes(n, p, m, n_test, dtype) + runs * networks_kept * per,
                   f"{networks_kept} kept networks (snapshot_steps and the last step) of each of "
                   f"{runs} runs ({method}: {'C, m x n' if method == 'gram' else 'W, m x p'})")
    hist = tuple(snapshot_steps) if snapshot_steps is not None else default_snapshot_steps(steps)
    # As few batches as the budget allows, each a multiple of the threads that share out its
    # runs (one task per run: 15 runs on two threads take as long as 16), and the smallest such
    # batch that needs no more of them: 100 runs, at most 16 a batch, on two threads six of 16
    # and one of 4 (not six of 15, each leaving a thread idle for a run, and one of 10); 20
    # runs ten and ten (not 16 and 4, which would leave a thread idle at every step).
    runs = max(runs, 1)
    most, every = engine.max_batch(n, p, m, n_test, dtype), engine.batch_multiple()
    if most >= every:
        most -= most % every
    batches = -(-runs // most)
    batch = -(-runs // batches)
    if batch < most:
        batch = min(most, runs, -(-batch // every) * every)
    return Plan(method, backend, representation, dtype, n, p, m, n_test, steps, batch, engine,
                hist)
