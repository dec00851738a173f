"""Direct-method engines (docs/design.md 2.1): W (m, p) updated in place by W += V^T X."""
from __future__ import annotations

import numpy as np

from .. import reference
from .._memory import empty_aligned
from . import Engine, register


def _no_population(sources):
    if any(getattr(s, "population_test", 0) for s in sources):
        raise NotImplementedError("population_test is implemented for the gram method only")


@register
class NumpyDirectEngine(Engine):
    """The reference algebra of :mod:`fastgrok.reference`, in the working dtype."""

    method, backend = "direct", "numpy"

    @staticmethod
    def step_fn(X, y, W, a, lr, n_threads=None):
        """One in-place step (NumPy chooses its own threads)."""
        return reference.step(X, y, W, a, lr)

    def __init__(self, sources, lr: float, dtype="float32", n_threads=None, on_built=None):
        _no_population(sources)
        self.sources = sources
        (source,) = sources
        self.pb = source.problem(dtype).astype(dtype)
        self.W = self.pb.W0
        self.lr = lr
        if on_built:
            on_built()

    def step(self, prepare_eval=True):
        pb = self.pb
        reference.step(pb.X, pb.y, self.W, pb.a, self.lr)

    def evaluate(self, projections=True):
        pb = self.pb
        mu1, mu2 = (pb.mu1, pb.mu2) if projections else (None, None)
        return [reference.evaluate(pb.X, pb.y, self.W, pb.a, pb.X_test, pb.y_test, mu1, mu2)]

    @staticmethod
    def estimate_bytes(n, p, m, n_test, dtype):
        # X, X_test, W, mu1, mu2 in the working dtype; the reference's (n, m) temporaries; the
        # generator's float64 blocks.
        item = np.dtype(dtype).itemsize
        return (n + n_test + m + 2) * p * item + 8 * 6 * (n + n_test) * m + 8 * (n + m) * 8192


def _numba_step(X, y, W, a, lr, n_threads=None):
    from ..kernels import cpu_direct

    return cpu_direct.step(X, y, W, a, lr, n_threads=n_threads)


def _cpu_threads(n_threads=None):
    from ..kernels.cpu_blas import threads

    return threads(n_threads)


@register
class NumbaDirectEngine(Engine):
    """Fused tile passes over p on the CPU (:mod:`fastgrok.kernels.cpu_direct`).

    Each step is one pass over X and W that applies the pending update and computes the next
    pre-activations; at evaluation steps the same pass also computes the test pre-activations
    and the projections W mu1, W mu2.
    """

    method, backend = "direct", "numba"
    step_fn = staticmethod(_numba_step)
    runtime = staticmethod(_cpu_threads)

    def __init__(self, sources, lr: float, dtype="float32", n_threads=None, on_built=None):
        from ..kernels import cpu_direct

        self.K = cpu_direct
        _no_population(sources)
        self.sources = sources
        (source,) = sources
        pb = source.problem(dtype).astype(dtype)
        self.X, self.W, self.Xt = pb.X, pb.W0, pb.X_test
        f64 = lambda v: None if v is None else np.ascontiguousarray(v, dtype=np.float64)  # noqa: E731
        self.y, self.a, self.yt = f64(pb.y), f64(pb.a), f64(pb.y_test)
        self.mus = None if pb.mu1 is None else np.ascontiguousarray(np.stack([pb.mu1, pb.mu2]))
        self.lr, self.n_threads = float(lr), n_threads
        self.V = empty_aligned((self.X.shape[0], self.W.shape[0]), self.W.dtype)
        self._pass(update=False, with_eval=True)
        if on_built:
            on_built()

    def _pass(self, update, with_eval):
        self.Z, self.Zt, self.P = self.K.tile_pass(
            self.X, self.W, V=self.V if update else None, Xt=self.Xt if with_eval else None,
            mus=self.mus if with_eval else None, n_threads=self.n_threads)
        self._eval_ready = with_eval

    def step(self, prepare_eval=True):
        self.K.outputs_and_coefficients(self.Z, self.y, self.a, self.lr, self.V, False)
        self._pass(update=True, with_eval=prepare_eval)

    def evaluate(self, projections=True):
        if not self._eval_ready:  # the driver did not announce this evaluation: one extra pass
            _, self.Zt, self.P = self.K.tile_pass(self.X, self.W, Xt=self.Xt, mus=self.mus,
                                                  forward=False, n_threads=self.n_threads)
            self._eval_ready = True
        f = self.K.relu_outputs(self.Z, self.a)
        out = {"train_acc": reference.accuracy(self.y, f),
               "train_loss": reference.logistic_loss(self.y, f),
               "test_acc": np.nan, "test_loss": np.nan, "P1": None, "P2": None}
        if self.Zt is not None:
            ft = self.K.relu_outputs(self.Zt, self.a)
            out["test_acc"], out["test_loss"] = (reference.accuracy(self.yt, ft),
                                                 reference.logistic_loss(self.yt, ft))
        if projections and self.P is not None:
            out["P1"], out["P2"] = self.P[:, 0], self.P[:, 1]
        return [out]

    @staticmethod
    def estimate_bytes(n, p, m, n_test, dtype):
        from .. import tunables

        item = np.dtype(dtype).itemsize
        partials = tunables.DIRECT_CHUNKS * (n + n_test + 2) * m * (8 + item)
        return (n + n_test + m + 2) * p * item + partials + 8 * (n + m) * 8192
