"""GPU operations for the cupy engines: the fused CUDA kernels (gpu_kernels.cu, compiled lazily
by CuPy) and cuBLAS products; and the same operations in NumPy (:class:`NumpyOps`), so the
engines' orchestration is tested on any machine with the very test bodies the GPU runs.

Nothing here imports CuPy at module import; :func:`cupy_ops` does, on first use.
"""
from __future__ import annotations

import os

import numpy as np

_CU = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_kernels.cu")
_THREADS = 256  # must equal FG_THREADS in gpu_kernels.cu
_cache = {}


class NumpyOps:
    """The operations with NumPy arrays (reference semantics of :class:`CupyOps`)."""

    xp = np

    @staticmethod
    def outputs(Z, a, n_per_run):
        """f (rows,) = relu(Z) a_run, rows grouped by run (a: (R, m) or (m,)), float64."""
        A = np.asarray(a, np.float64).reshape(-1, Z.shape[1])
        run = np.arange(Z.shape[0]) // n_per_run
        return np.einsum("ij,ij->i", np.maximum(Z.astype(np.float64), 0), A[run])

    @classmethod
    def coefficients(cls, Z, y, a, lr, n_per_run, V, accumulate):
        """f = relu(Z) a; V (=, or += when accumulate) (lr/n) sigmoid(-y f) y a 1[Z > 0]."""
        f = cls.outputs(Z, a, n_per_run)
        A = np.asarray(a, np.float64).reshape(-1, Z.shape[1])
        run = np.arange(Z.shape[0]) // n_per_run
        c = lr / n_per_run * np.exp(-np.logaddexp(0, y * f)) * y
        vals = ((c[:, None] * A[run]) * (Z > 0)).astype(V.dtype)
        if accumulate:
            V += vals
        else:
            V[...] = vals
        return f

    @staticmethod
    def gemm_update(V, X, W):
        """W += V^T X in place."""
        W += V.T @ X

    @staticmethod
    def to_host(x):
        return np.asarray(x)


class CupyOps(NumpyOps):
    """The operations on the GPU: one fused kernel launch and cuBLAS products."""

    def __init__(self):
        import cupy

        self.xp = cupy
        with open(_CU) as fh:
            src = fh.read()
        self.module = cupy.RawModule(code=src, options=("--std=c++14",))

    def _fn(self, name, dtype):
        return self.module.get_function(f"{name}_{'f32' if dtype == np.float32 else 'f64'}")

    def outputs(self, Z, a, n_per_run):
        cp = self.xp
        rows, m = Z.shape
        f = cp.empty(rows, cp.float64)
        a = cp.ascontiguousarray(a, dtype=cp.float64)
        self._fn("outputs", Z.dtype)((rows,), (_THREADS,), (Z, a, np.int32(n_per_run), np.int32(m), f))
        return f

    def coefficients(self, Z, y, a, lr, n_per_run, V, accumulate):
        cp = self.xp
        rows, m = Z.shape
        f = cp.empty(rows, cp.float64)
        y = cp.ascontiguousarray(y, dtype=cp.float64)
        a = cp.ascontiguousarray(a, dtype=cp.float64)
        self._fn("coefficients", Z.dtype)(
            (rows,), (_THREADS,),
            (Z, y, a, np.float64(lr), np.int32(n_per_run), np.int32(m), V, f, np.int32(accumulate)))
        return f

    def gemm_update(self, V, X, W):
        """W += V^T X with cuBLAS (beta = 1): in place, no m x p temporary."""
        from cupy import cublas

        cublas.gemm("T", "N", V, X, out=W, alpha=1.0, beta=1.0)

    def to_host(self, x):
        return self.xp.asnumpy(x)


def cupy_ops() -> CupyOps:
    """The (cached) GPU operations; compiles the CUDA module on the first call."""
    if "cupy" not in _cache:
        _cache["cupy"] = CupyOps()
    return _cache["cupy"]
