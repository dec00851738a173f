"""The CUDA kernels of gpu_kernels.cu, compiled by CuPy on first use and launched from here.

Nothing here imports CuPy at module import. :func:`kernels` compiles the module and fetches
every kernel once (CuPy compiles a ``RawModule`` lazily, when a function is first fetched, so
fetching them all up front is what makes :func:`fastgrok.warmup` and its timing real).
"""
from __future__ import annotations

import os

import numpy as np

_CU = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_kernels.cu")
THREADS = 256  # threads per block; must equal FG_THREADS in gpu_kernels.cu
_NAMES = ("coefficients", "outputs")
_cache = {}


def gpu_usable() -> bool:
    """True when CuPy imports and sees a CUDA device (never raises)."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - any failure means "no usable GPU"
        return False


class CudaKernels:
    """The compiled module and its kernels, fetched once: ``fn[(name, dtype)]``."""

    def __init__(self):
        import cupy

        self.cupy = cupy
        with open(_CU) as fh:
            src = fh.read()
        self.module = cupy.RawModule(code=src, options=("--std=c++14",))
        self.fn = {(name, dt): self.module.get_function(f"{name}_{suffix}")
                   for name in _NAMES for dt, suffix in ((np.float32, "f32"), (np.float64, "f64"))}

    def outputs(self, Z, a, n_per_run):
        """f (rows,) float64 = relu(Z) a per row, rows grouped by run (a: (R, m))."""
        cp = self.cupy
        rows, m = Z.shape
        f = cp.empty(rows, cp.float64)
        a = cp.ascontiguousarray(a, dtype=cp.float64)
        self.fn[("outputs", Z.dtype.type)]((rows,), (THREADS,), (Z, a, np.int32(n_per_run), np.int32(m), f))
        return f

    def coefficients(self, Z, y, a, lr, n_per_run, V, accumulate):
        """f = relu(Z) a; V (=, or += when accumulate) (lr/n) sigmoid(-y f) y a 1[Z > 0]."""
        cp = self.cupy
        rows, m = Z.shape
        f = cp.empty(rows, cp.float64)
        y = cp.ascontiguousarray(y, dtype=cp.float64)
        a = cp.ascontiguousarray(a, dtype=cp.float64)
        self.fn[("coefficients", Z.dtype.type)](
            (rows,), (THREADS,),
            (Z, y, a, np.float64(lr), np.int32(n_per_run), np.int32(m), V, f, np.int32(accumulate)))
        return f


    @staticmethod
    def gemm_update(V, X, W):
        """W += V^T X in place with cuBLAS (beta = 1): no m x p temporary."""
        from cupy import cublas

        cublas.gemm("T", "N", V, X, out=W, alpha=1.0, beta=1.0)


class EmulatedKernels:
    """The CUDA kernels' arithmetic in NumPy, as the launches compute it: one block per row
    (a (run, sample) pair), the row's run ``row // n_per_run`` and its second layer, each of
    the THREADS threads summing a strided slice of the row in order, then a fixed tree over the
    threads' partial sums. Lets the GPU engine's orchestration (stacked runs, row-to-run
    indexing, accumulate flags) run and be tested on any machine. (The device may contract a
    multiply-add into an FMA, so the GPU agrees with this to rounding, not to the bit.)"""

    @staticmethod
    def _row_sums(Z, a, n_per_run):
        rows, m = Z.shape
        A = np.asarray(a, np.float64).reshape(-1, m)
        run = np.arange(rows) // n_per_run
        terms = np.maximum(Z.astype(np.float64), 0.0) * A[run]
        k = -(-m // THREADS)
        padded = np.zeros((rows, k * THREADS))
        padded[:, :m] = terms
        partial = np.zeros((rows, THREADS))
        for i in range(k):  # thread t adds j = t, t + THREADS, ... in that order
            partial += padded[:, i * THREADS:(i + 1) * THREADS]
        stride = THREADS // 2
        while stride:  # the shared-memory tree
            partial[:, :stride] += partial[:, stride:2 * stride]
            stride //= 2
        return partial[:, 0], A[run]

    def outputs(self, Z, a, n_per_run):
        return self._row_sums(Z, a, n_per_run)[0]

    def coefficients(self, Z, y, a, lr, n_per_run, V, accumulate):
        f, A = self._row_sums(Z, a, n_per_run)
        yf = np.asarray(y, np.float64) * f
        softplus = np.maximum(yf, 0.0) + np.log1p(np.exp(-np.abs(yf)))
        c = lr / n_per_run * np.exp(-softplus) * np.asarray(y, np.float64)
        vals = (c[:, None] * A * (Z.astype(np.float64) > 0.0)).astype(V.dtype)
        if accumulate:
            V += vals
        else:
            V[...] = vals
        return f

    @staticmethod
    def gemm_update(V, X, W):
        W += V.T @ X


def kernels() -> CudaKernels:
    """The (cached) compiled kernels; compiles on the first call (needs CuPy and a GPU)."""
    if "k" not in _cache:
        _cache["k"] = CudaKernels()
    return _cache["k"]
