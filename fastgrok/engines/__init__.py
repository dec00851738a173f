"""Engines: one (method, backend) pair each, behind one small interface the driver uses.

An engine knows how to hold the training state of a batch of runs (one run for most engines),
take a step and report the evaluation quantities. It is built from run sources
(:mod:`fastgrok.sources`), which give the arrays whole or column block by column block. The step loop, evaluation schedule, progress and history belong to the driver
(:mod:`fastgrok.driver`), which is shared by every engine.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np



@dataclass
class Problem:
    """Everything one run trains on, as arrays (float64 or the working dtype).

    ``X_test``/``y_test`` and ``mu1``/``mu2`` may be None (``fg.fit`` on a user's data).
    """

    X: np.ndarray
    y: np.ndarray
    W0: np.ndarray
    a: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    mu1: np.ndarray | None = None
    mu2: np.ndarray | None = None

    def astype(self, dtype) -> "Problem":
        """The same problem with every array in ``dtype`` (converted only where needed).

        Engines update W0 in place: the callers (``run``, ``fit``) always pass a fresh W0.
        """
        conv = lambda v: None if v is None else np.ascontiguousarray(v, dtype=dtype)  # noqa: E731
        return Problem(conv(self.X), conv(self.y), conv(self.W0), conv(self.a),
                       conv(self.X_test), conv(self.y_test), conv(self.mu1), conv(self.mu2))


class Engine:
    """Interface of a training engine for a batch of runs.

    Subclasses set ``method`` and ``backend`` and implement :meth:`step` and :meth:`evaluate`.

    Parameters
    ----------
    sources : list of fastgrok.sources.Source
        One per run of the batch (at most :meth:`max_batch`).
    lr : float
        Step size.
    dtype : {"float32", "float64"}
        Working precision.
    n_threads : int, optional
        Threads, as yielded by :meth:`runtime`.
    on_built : callable, optional
        Called once per run when its state is ready (progress of long builds).
    """

    method = ""
    backend = ""

    def __init__(self, sources, lr: float, dtype="float32", n_threads=None, on_built=None):
        raise NotImplementedError

    @classmethod
    def max_batch(cls, n, p, m, n_test, dtype) -> int:
        """How many runs one engine may hold at once (1 unless the engine batches runs)."""
        return 1

    @classmethod
    def runtime(cls, n_threads=None):
        """Context manager around a whole training with this engine; yields the thread count.

        The default does nothing (NumPy picks its own threads); CPU kernel engines run their own
        thread pool with single-threaded BLAS inside it.
        """
        return contextlib.nullcontext(n_threads)

    def step(self, prepare_eval: bool = True) -> None:
        """Advance the state by one full-batch gradient-descent step.

        ``prepare_eval`` says whether :meth:`evaluate` will be called before the next step, so
        engines that can fuse the evaluation quantities into the step's pass over p do so.
        """
        raise NotImplementedError

    def evaluate(self, projections: bool = True) -> list:
        """One dict per run: train_acc, train_loss, test_acc, test_loss and (if asked) P1, P2."""
        raise NotImplementedError

    @staticmethod
    def estimate_bytes(n, p, m, n_test, dtype) -> int:
        """Bytes of state this engine allocates for one run (used to refuse what cannot fit)."""
        raise NotImplementedError


#: (method, backend) -> engine class. Fast engines register themselves here.
ENGINES: dict[tuple[str, str], type[Engine]] = {}


def register(cls):
    """Class decorator: make ``cls`` the engine of its (method, backend)."""
    ENGINES[(cls.method, cls.backend)] = cls
    return cls


def gpu_usable() -> bool:
    """True when CuPy imports and sees a CUDA device (never raises)."""
    try:
        import cupy  # noqa: F401

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - any failure means "no usable GPU"
        return False


#: Whether the CuPy engines have passed ``bench/gpu_check.py`` on a real GPU. Until they have,
#: backend="auto" never selects them (a user with a GPU gets the verified CPU engines) and an
#: explicit backend="cupy" warns that it is experimental. Flip to True once the check passes.
CUPY_VERIFIED = False


class ExperimentalWarning(UserWarning):
    """A backend that has not been verified on real hardware was selected."""


def warn_if_experimental(backend: str) -> None:
    """Warn (once per call site) when an unverified backend is used."""
    if backend == "cupy" and not CUPY_VERIFIED:
        import warnings

        warnings.warn("backend='cupy' is experimental: the CuPy engines have not yet been "
                      "verified on a GPU (bench/gpu_check.py); backend='auto' uses the CPU "
                      "engines until they are", ExperimentalWarning, stacklevel=3)


def resolve_backend(backend: str) -> str:
    """Map "auto" to the fastest available verified backend: cupy with a usable GPU once the
    CuPy engines are verified (:data:`CUPY_VERIFIED`), else numba, else numpy."""
    if backend != "auto":
        return backend
    if CUPY_VERIFIED and gpu_usable() and any(b == "cupy" for _, b in ENGINES):
        return "cupy"
    if any(b == "numba" for _, b in ENGINES):
        return "numba"
    return "numpy"


def resolve_method(method: str, backend: str, n, p, m, n_test, steps) -> str:
    """Map "auto" to the cheaper registered method by flop count.

    direct: (steps + 1) x 4 n m p. gram: a build of 2 (n + n_test)(n + m) p, then steps x 2 n^2 m
    (test quantities, 2 n_test n m, only at evaluation steps: counted at every step here).
    """
    if method != "auto":
        return method
    direct = (steps + 1) * 4 * n * m * p
    gram = 2 * (n + n_test) * (n + m) * p + steps * 2 * n * m * (n + n_test)
    if ("gram", backend) in ENGINES and gram < direct:
        return "gram"
    return "direct"


def get_engine(method: str, backend: str) -> type[Engine]:
    """The engine class for (method, backend); NotImplementedError if that pair does not exist."""
    try:
        return ENGINES[(method, backend)]
    except KeyError:
        have = ", ".join(f"{m}/{b}" for m, b in sorted(ENGINES))
        raise NotImplementedError(
            f"method={method!r} with backend={backend!r} is not implemented yet (available: {have})"
        ) from None


from . import direct, gpu, gram  # noqa: E402,F401  (register the engines; import no kernels)


def warmup(backends=("numba",)) -> dict:
    """Compile (or load from the on-disk cache) the kernels of ``backends`` now.

    Returns the seconds each took. Training calls this implicitly on first use; call it up
    front to keep compile time out of a benchmark or a timed run.
    """
    import time

    times = {}
    for b in backends:
        t0 = time.perf_counter()
        if b == "numba":
            from ..kernels import cpu_direct  # noqa: F401  (compiles with explicit signatures)
        elif b == "cupy":
            from ..kernels.gpu import cupy_ops

            cupy_ops()  # compiles the CUDA module (needs CuPy and a GPU)
        else:
            raise ValueError(f"unknown backend {b!r}; expected 'numba' or 'cupy'")
        times[b] = time.perf_counter() - t0
    return times
