"""Engines: one (method, backend) pair each, behind one small interface the driver uses.

An engine knows how to hold one run's training state, take a step and report the evaluation
quantities. The step loop, evaluation schedule, progress and history belong to the driver
(:mod:`fastgrok.driver`), which is shared by every engine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import reference


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
    """Interface of a training engine for one run.

    Subclasses set ``method`` and ``backend`` and implement :meth:`step` and :meth:`evaluate`.
    """

    method = ""
    backend = ""

    def __init__(self, problem: Problem, lr: float, dtype="float32"):
        raise NotImplementedError

    def step(self) -> None:
        """Advance the state by one full-batch gradient-descent step."""
        raise NotImplementedError

    def evaluate(self, projections: bool = True) -> dict:
        """Return train_acc, train_loss, test_acc, test_loss and (if asked) P1, P2."""
        raise NotImplementedError

    @staticmethod
    def estimate_bytes(n, p, m, n_test, dtype) -> int:
        """Bytes of state this engine allocates for one run (used to refuse what cannot fit)."""
        raise NotImplementedError


class DirectEngine(Engine):
    """The direct formulation (DESIGN.md 2.1): W (m, p) updated in place by W += V^T X.

    Backends differ only in the two functions below, which are also what ``fg.step`` calls.
    """

    method = "direct"
    backend = "numpy"
    step_fn = staticmethod(reference.step)
    evaluate_fn = staticmethod(reference.evaluate)

    def __init__(self, problem: Problem, lr: float, dtype="float32"):
        self.pb = problem.astype(dtype)
        self.W = self.pb.W0
        self.lr = lr

    def step(self):
        pb = self.pb
        self.step_fn(pb.X, pb.y, self.W, pb.a, self.lr)

    def evaluate(self, projections=True):
        pb = self.pb
        mu1, mu2 = (pb.mu1, pb.mu2) if projections else (None, None)
        return self.evaluate_fn(pb.X, pb.y, self.W, pb.a, pb.X_test, pb.y_test, mu1, mu2)

    @staticmethod
    def estimate_bytes(n, p, m, n_test, dtype):
        # X, X_test, W, mu1, mu2 in the working dtype, plus the float64 blocks of the generator
        # and the (n, m) temporaries of a step.
        item = np.dtype(dtype).itemsize
        return (n + n_test + m + 2) * p * item + 8 * (n + n_test + m) * 8192 + 8 * 4 * n * m


#: (method, backend) -> engine class. Fast engines register themselves here.
ENGINES: dict[tuple[str, str], type[Engine]] = {("direct", "numpy"): DirectEngine}


def gpu_usable() -> bool:
    """True when CuPy imports and sees a CUDA device (never raises)."""
    try:
        import cupy  # noqa: F401

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - any failure means "no usable GPU"
        return False


def resolve_backend(backend: str) -> str:
    """Map "auto" to the fastest available backend: cupy with a GPU, else numba, else numpy."""
    if backend != "auto":
        return backend
    if gpu_usable() and any(b == "cupy" for _, b in ENGINES):
        return "cupy"
    if any(b == "numba" for _, b in ENGINES):
        return "numba"
    return "numpy"


def resolve_method(method: str, backend: str, n, p, m, n_test) -> str:
    """Map "auto" to the cheapest registered method for this size (flop count per step)."""
    if method != "auto":
        return method
    if (("gram", backend) in ENGINES) and (n * (n + 1) < 2 * n * p):
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
