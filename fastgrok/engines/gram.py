"""Gram-method engines (docs/design.md 2.2): exact training whose per-step cost does not grow with p.

The state of each run is C (stored as Ct = C^T, (n, m)) with W = W0 + C X; training needs only
the Gram blocks K, Kt, Z0, Zt0 and the mean products, built once in one pass over p
(:func:`fastgrok.kernels.cpu_gram.build`). All runs of a batch are held together and stepped in
parallel (one run per task), so the paper's 100-run presets keep both cores busy.
"""
from __future__ import annotations

import numpy as np

from .. import reference, tunables
from .._memory import check_fits, copy_aligned, zeros_aligned
from . import Engine, register


def _cpu_threads(n_threads=None):
    from ..kernels.cpu_blas import threads

    return threads(n_threads)


class GramEngine(Engine):
    """Shared state, build, evaluation and weight reconstruction; backends differ in the step."""

    method = "gram"

    def __init__(self, sources, lr, dtype="float32", n_threads=None, on_built=None):
        from ..kernels import cpu_gram

        self.sources, self.lr, self.dtype = list(sources), float(lr), np.dtype(dtype)
        self.n_threads = n_threads
        st = cpu_gram.build(self.sources, self.dtype, n_threads, on_built=on_built)
        self.K, self.Kt, self.Z0, self.Zt0 = st["K"], st["Kt"], st["Z0"], st["Zt0"]
        self.XM, self.W0M = st["XM"], st["W0M"]
        R, n, m = self.Z0.shape
        self.Ct = zeros_aligned((R, n, m), self.dtype)
        self.Z = copy_aligned(self.Z0)
        self.y = np.stack([np.asarray(s.y, np.float64) for s in self.sources])
        self.a = np.stack([np.asarray(s.a, np.float64) for s in self.sources])
        has_test = self.sources[0].n_test > 0
        self.yt = np.stack([np.asarray(s.y_test, np.float64) for s in self.sources]) if has_test else None
        self.has_means = self.sources[0].mu_norm is not None
        self.steps_done = 0

    @classmethod
    def max_batch(cls, n, p, m, n_test, dtype):
        per_run = cls.state_bytes(n, m, n_test, dtype)
        return max(1, int(tunables.GRAM_BATCH_BYTES // per_run))

    @staticmethod
    def state_bytes(n, m, n_test, dtype):
        """Bytes of one run's state: K, Kt, Z0, Zt0, Z, Ct and the mean products."""
        item = np.dtype(dtype).itemsize
        return item * (n * n + n_test * n + (n + n_test) * m + 2 * n * m + 2 * (n + m))

    @classmethod
    def estimate_bytes(cls, n, p, m, n_test, dtype):
        from ..data import block_ranges

        width = min(p, next(iter(block_ranges(p)))[2])
        # State of one run, plus per build thread: the float64 blocks, their working-dtype
        # copies and the block products.
        build = width * (n + n_test + m + 2) * (8 + 2 * np.dtype(dtype).itemsize) \
            + 16 * (n + n_test) * (n + m + 2)
        return cls.state_bytes(n, m, n_test, dtype) + 2 * build

    def _map(self, fn, items):
        """[fn(i) for i in items], the runs spread over the threads in contiguous chunks (runs
        are independent, so any split gives the same bits)."""
        if self.n_threads and self.n_threads > 1 and len(items) > 1:
            from ..kernels.cpu_blas import pool

            chunks = np.array_split(np.asarray(items), min(len(items), 4 * self.n_threads))
            parts = pool(self.n_threads).map(lambda c: [fn(int(i)) for i in c], chunks)
            return [x for part in parts for x in part]
        return [fn(i) for i in items]

    @staticmethod
    def _outputs(Z, a):
        """f = relu(Z) a in float64 (backends may fuse it)."""
        return reference.forward_from_preactivations(Z, a)

    def _evaluate_run(self, r, projections):
        a, f = self.a[r], self._outputs(self.Z[r], self.a[r])
        out = {"train_acc": reference.accuracy(self.y[r], f),
               "train_loss": reference.logistic_loss(self.y[r], f),
               "test_acc": np.nan, "test_loss": np.nan, "test_acc_se": np.nan,
               "P1": None, "P2": None}
        src = self.sources[r]
        if getattr(src, "population_test", 0):
            out["test_acc"], out["test_loss"], out["test_acc_se"] = src.population_accuracy(
                self.weights(r), self.steps_done)
        elif self.yt is not None:
            Zt = self.Zt0[r] + self.Kt[r] @ self.Ct[r]
            ft = self._outputs(Zt, a)
            out["test_acc"] = reference.accuracy(self.yt[r], ft)
            out["test_loss"] = reference.logistic_loss(self.yt[r], ft)
        if projections and self.has_means:
            P = self.W0M[r] + self.Ct[r].T @ self.XM[r]
            out["P1"], out["P2"] = P[:, 0].astype(np.float64), P[:, 1].astype(np.float64)
        return out

    def evaluate(self, projections=True):
        return self._map(lambda r: self._evaluate_run(r, projections), list(range(len(self.sources))))

    def step(self, prepare_eval=True):
        self._map(self._step_run, list(range(len(self.sources))))
        self.steps_done += 1

    def weights(self, r=0):
        """W(t) = W0 + C(t) X of run ``r`` (m, p), rebuilt block by block from its source."""
        src = self.sources[r]
        check_fits(src.m * src.p * self.dtype.itemsize, f"the weights W (m={src.m}, p={src.p})")
        W = np.empty((src.m, src.p), self.dtype)
        C = self.Ct[r].T
        for j0, j1, X, _, W0, _ in src.blocks(self.dtype):
            W[:, j0:j1] = W0 + C @ X
        return W


@register
class NumpyGramEngine(GramEngine):
    """The gram step in plain NumPy, mirroring the reference (readable; runs one at a time)."""

    backend = "numpy"

    def _step_run(self, r):
        Z, a = self.Z[r], self.a[r]
        f = reference.forward_from_preactivations(Z, a)
        self.Ct[r] += reference.update_coefficients(Z, self.y[r], f, a, self.lr)
        self.Z[r] = self.Z0[r] + self.K[r] @ self.Ct[r]


@register
class NumbaGramEngine(GramEngine):
    """The gram step fused in one Numba kernel plus one in-place GEMM per run, runs in parallel."""

    backend = "numba"
    runtime = staticmethod(_cpu_threads)

    @staticmethod
    def _outputs(Z, a):
        from ..kernels.cpu_direct import relu_outputs

        return relu_outputs(np.ascontiguousarray(Z), a)

    def _step_run(self, r):
        from ..kernels.cpu_gram import step_run

        step_run(self.K[r], self.Z0[r], self.Z[r], self.Ct[r], self.y[r], self.a[r], self.lr)
