"""CuPy engines (backend="cupy"): direct and gram on the GPU, without host copies in the loop.

Both are written against an operations object (:mod:`fastgrok.kernels.gpu`): ``CupyOps`` on a
GPU, ``NumpyOps`` anywhere; the tests run the same engine code with both, so the orchestration
is checked on machines without a GPU and the kernels on machines with one.
"""
from __future__ import annotations

import numpy as np

from .. import reference
from . import Engine, register


def _gpu_ops():
    from . import gpu_usable

    if not gpu_usable():
        raise RuntimeError("backend='cupy' needs CuPy (pip install fastgrok[gpu]) and a usable "
                           "CUDA GPU; none was found. Use backend='numba' or 'auto'.")
    from ..kernels.gpu import cupy_ops

    return cupy_ops()


def _metrics(f, y, ft=None, yt=None):
    """Train/test accuracy and loss from host copies of the outputs (n floats per run)."""
    out = {"train_acc": reference.accuracy(y, f), "train_loss": reference.logistic_loss(y, f),
           "test_acc": np.nan, "test_loss": np.nan, "P1": None, "P2": None}
    if ft is not None:
        out["test_acc"], out["test_loss"] = reference.accuracy(yt, ft), reference.logistic_loss(yt, ft)
    return out


class XpDirectEngine(Engine):
    """Direct method on ``ops.xp`` arrays: Z = X W^T (cuBLAS), one fused coefficient kernel,
    W += V^T X in place (cuBLAS beta = 1)."""

    method = "direct"

    def __init__(self, sources, lr, dtype="float32", n_threads=None, on_built=None, ops=None):
        self.ops = ops or _gpu_ops()
        xp = self.ops.xp
        self.sources = sources
        (src,) = sources
        pb = src.problem(dtype)
        dev = lambda v: None if v is None else xp.ascontiguousarray(xp.asarray(v), dtype=dtype)  # noqa: E731
        self.X, self.W, self.Xt = dev(pb.X), dev(pb.W0), dev(pb.X_test)
        self.mus = None if pb.mu1 is None else dev(np.stack([pb.mu1, pb.mu2]))
        self.y, self.yt = np.asarray(pb.y, np.float64), pb.y_test
        self.y_dev, self.a = xp.asarray(self.y), xp.asarray(np.asarray(pb.a, np.float64))
        self.lr, self.n = float(lr), self.X.shape[0]
        self.V = xp.empty((self.n, self.W.shape[0]), dtype)
        self.Z = self.X @ self.W.T
        if on_built:
            on_built()

    @staticmethod
    def step_fn(X, y, W, a, lr, n_threads=None, ops=None):
        """One in-place step on the caller's device arrays."""
        ops = ops or _gpu_ops()
        xp = ops.xp
        Z = X @ W.T
        V = xp.empty(Z.shape, W.dtype)
        ops.coefficients(Z, xp.asarray(y, dtype=xp.float64), xp.asarray(a, dtype=xp.float64),
                         lr, X.shape[0], V, False)
        ops.gemm_update(V, X, W)
        return W

    def step(self, prepare_eval=True):
        self.ops.coefficients(self.Z, self.y_dev, self.a, self.lr, self.n, self.V, False)
        self.ops.gemm_update(self.V, self.X, self.W)
        self.ops.xp.matmul(self.X, self.W.T, out=self.Z)

    def evaluate(self, projections=True):
        host = self.ops.to_host
        f = host(self.ops.outputs(self.Z, self.a, self.n))
        ft = None
        if self.Xt is not None:
            ft = host(self.ops.outputs(self.Xt @ self.W.T, self.a, self.Xt.shape[0]))
        out = _metrics(f, self.y, ft, self.yt)
        if projections and self.mus is not None:
            P = self.ops.to_host(self.W @ self.mus.T).astype(np.float64)
            out["P1"], out["P2"] = P[:, 0], P[:, 1]
        return [out]

    @staticmethod
    def estimate_bytes(n, p, m, n_test, dtype):
        # Host: the run's arrays are drawn there first, then copied to the device.
        return (n + n_test + m + 2) * p * np.dtype(dtype).itemsize + 8 * (n + m) * 8192


class XpGramEngine(Engine):
    """Gram method with all runs of a batch stacked on the device: one kernel launch for every
    run's coefficients, batched (strided) cuBLAS products for Z = Z0 + K C^T."""

    method = "gram"

    def __init__(self, sources, lr, dtype="float32", n_threads=None, on_built=None, ops=None):
        self.ops = ops or _gpu_ops()
        xp = self.ops.xp
        self.sources, self.lr, self.dtype = list(sources), float(lr), np.dtype(dtype)
        s0 = self.sources[0]
        if getattr(s0, "population_test", 0):
            raise NotImplementedError("population_test is implemented for the CPU gram engines "
                                      "(backend='numba' or 'numpy'), not yet for cupy")
        n, m, nt, R = s0.n, s0.m, s0.n_test, len(self.sources)
        self.n, self.nt = n, nt
        G = xp.zeros((R, n + nt, n + m + 2), xp.float64)
        W0M = xp.zeros((R, m, 2), xp.float64)
        for r, src in enumerate(self.sources):
            for j0, j1, X, Xt, W0, M in src.blocks(self.dtype):
                A = xp.asarray(np.vstack([X, Xt]) if nt else X)
                B = xp.asarray(np.vstack([X, W0, M if M is not None else np.zeros((2, j1 - j0), self.dtype)]))
                G[r] += (A @ B.T).astype(xp.float64)  # block products in dtype, sum in float64
                W0M[r] += (B[n:n + m] @ B[n + m:].T).astype(xp.float64)
            if on_built:
                on_built()
        cast = lambda v: xp.ascontiguousarray(v, dtype=self.dtype)  # noqa: E731
        self.K, self.Z0, self.XM = cast(G[:, :n, :n]), cast(G[:, :n, n:n + m]), cast(G[:, :n, n + m:])
        self.Kt, self.Zt0, self.W0M = cast(G[:, n:, :n]), cast(G[:, n:, n:n + m]), cast(W0M)
        self.Ct = xp.zeros((R, n, m), self.dtype)
        self.Z = self.Z0.copy()
        self.y = np.stack([np.asarray(s.y, np.float64) for s in self.sources])
        self.yt = np.stack([np.asarray(s.y_test, np.float64) for s in self.sources]) if nt else None
        self.y_dev = xp.asarray(self.y.reshape(-1))
        self.a = xp.asarray(np.stack([np.asarray(s.a, np.float64) for s in self.sources]))
        self.has_means = s0.mu_norm is not None

    def step(self, prepare_eval=True):
        R, n, m = self.Z.shape
        self.ops.coefficients(self.Z.reshape(R * n, m), self.y_dev, self.a, self.lr, n,
                              self.Ct.reshape(R * n, m), True)
        self.ops.xp.matmul(self.K, self.Ct, out=self.Z)
        self.Z += self.Z0

    def evaluate(self, projections=True):
        xp, R, n, m = self.ops.xp, *self.Z.shape
        f = self.ops.to_host(self.ops.outputs(self.Z.reshape(R * n, m), self.a, n)).reshape(R, n)
        ft = None
        if self.nt:
            Zt = xp.matmul(self.Kt, self.Ct) + self.Zt0
            ft = self.ops.to_host(self.ops.outputs(Zt.reshape(R * self.nt, m), self.a, self.nt))
            ft = ft.reshape(R, self.nt)
        P = None
        if projections and self.has_means:
            P = self.ops.to_host(xp.matmul(self.Ct.transpose(0, 2, 1), self.XM) + self.W0M)
        outs = []
        for r in range(R):
            out = _metrics(f[r], self.y[r], None if ft is None else ft[r],
                           None if self.yt is None else self.yt[r])
            if P is not None:
                out["P1"], out["P2"] = P[r, :, 0].astype(np.float64), P[r, :, 1].astype(np.float64)
            outs.append(out)
        return outs

    @classmethod
    def max_batch(cls, n, p, m, n_test, dtype):
        from .gram import GramEngine

        return GramEngine.max_batch(n, p, m, n_test, dtype)

    @classmethod
    def estimate_bytes(cls, n, p, m, n_test, dtype):
        from .gram import GramEngine

        return GramEngine.estimate_bytes(n, p, m, n_test, dtype)


@register
class CupyDirectEngine(XpDirectEngine):
    backend = "cupy"


@register
class CupyGramEngine(XpGramEngine):
    backend = "cupy"
