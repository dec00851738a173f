"""Test doubles for the GPU path: it runs, launches included, on a machine without a GPU.

:class:`EmulatedKernels` computes in NumPy what the CUDA kernels compute, as the launches
compute it. :class:`StandInCupy` stands in for the parts of CuPy the GPU backend uses:
``CudaKernels(cupy=StandInCupy())`` compiles nothing: ``RawModule`` checks the compile options;
``get_function`` returns a function that checks the launch shape (one block of THREADS threads
per row), records the launch and computes what the kernel computes (:class:`EmulatedKernels`).
The arguments are checked against the kernel's C signature by ``CudaKernels`` before every
launch, real or not; ``cublas.gemm`` checks its operands and computes alpha op(a) op(b) +
beta out in place. Used by ``tests/test_gpu.py``, ``tests/test_properties.py`` and
``python bench/gpu_check.py --logic``; not by the library itself.
"""
from __future__ import annotations

import numpy as np

from .kernels.cuda import THREADS, signatures


class EmulatedKernels:
    """The CUDA kernels' arithmetic in NumPy, as the launches compute it.

    One block per row (a (run, sample) pair), the row's run ``row // n_per_run`` and its second
    layer, each of the THREADS threads summing a strided slice of the row in order, then a fixed
    tree over the threads' partial sums; V in double, rounded once. Lets the GPU engine's
    orchestration (stacked runs, row-to-run indexing, accumulate flags) run and be tested on any
    machine. (The device may contract a multiply-add into an FMA, so the GPU agrees with this to
    rounding, not to the bit.)
    """

    @staticmethod
    def activation(act, leak, param):
        """The kernels' activation code as :mod:`fastgrok.reference` takes it."""
        if act == 0:
            return leak
        from .reference import SmoothActivation

        return SmoothActivation(("relu_power", "smoothed_leaky_relu")[act - 1], leak, param)

    @classmethod
    def row_sums(cls, Z, a, n_per_run, leak=0.0, act=0, param=0.0):
        """(f, A): the rows' outputs summed as the kernel does, and each row's second layer."""
        from .reference import activation

        rows, m = Z.shape
        A = np.asarray(a, np.float64).reshape(-1, m)
        run = np.arange(rows) // n_per_run
        z = np.asarray(Z, np.float64)
        phi = (np.where(z > 0.0, z, leak * z) if act == 0
               else activation(z, cls.activation(act, leak, param)))
        terms = phi * A[run]
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

    @staticmethod
    def loss_weights(z, loss):
        """G = -l'(z) per row, as the kernel's loss_weight computes it."""
        if loss == 0:
            return np.exp(-(np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))))
        if loss == 1:
            with np.errstate(over="ignore"):
                return np.exp(-z)
        if loss == 2:
            return np.where(z < 1.0, 1.0, 0.0)
        return 1.0 - z

    def outputs(self, Z, a, n_per_run, leak=0.0, act=0, param=0.0):
        """The outputs kernel's f."""
        return self.row_sums(Z, a, n_per_run, leak, act, param)[0]

    def coefficients(self, Z, y, a, lr, n_per_run, V, accumulate, leak=0.0, loss=0, act=0,
                     param=0.0):
        """The coefficients kernel's f, and V written as it writes it."""
        from .reference import activation_derivative

        f, A = self.row_sums(Z, a, n_per_run, leak, act, param)
        y = np.asarray(y, np.float64)
        c = lr / n_per_run * (y - f if loss == 3 else self.loss_weights(y * f, loss) * y)
        z = np.asarray(Z, np.float64)
        dphi = (np.where(z > 0.0, 1.0, leak) if act == 0
                else activation_derivative(z, self.activation(act, leak, param)))
        vals = c[:, None] * A * dphi
        V[...] = (V.astype(np.float64) + vals) if accumulate else vals
        return f

    @staticmethod
    def gemm_update(V, X, W, beta=1.0):
        """W <- beta W + V^T X in place."""
        update = V.T @ X
        if beta != 1.0:
            W *= beta
        W += update


class _Function:
    def __init__(self, name, module):
        self.name, self.module = name, module

    def __call__(self, grid, block, args):
        # The arguments were checked against the contract by CudaKernels before the launch.
        m = int(args[3]) if self.name.startswith("outputs") else int(args[5])
        rows = args[0].size // m
        if block != (THREADS,) or grid != (rows,):
            raise TypeError(f"{self.name}: launched as grid={grid}, block={block}; expected "
                            f"one block of {THREADS} threads per row, grid=({rows},)")
        self.module.launches.append(self.name)
        em = EmulatedKernels()
        if self.name.startswith("outputs"):
            Z, a, n_per_run, _, f, leak, act, param = args
            f[...] = em.outputs(Z.reshape(rows, m), a, int(n_per_run), float(leak), int(act),
                                float(param))
        else:
            Z, y, a, lr, n_per_run, _, V, f, acc, leak, act, param, loss = args
            f[...] = em.coefficients(Z.reshape(rows, m), y, a, float(lr), int(n_per_run),
                                     V.reshape(rows, m), bool(acc), float(leak), int(loss),
                                     int(act), float(param))


class _RawModule:
    def __init__(self, code, options=()):
        if f"-DFG_THREADS={THREADS}" not in options:
            raise TypeError(f"the module must be compiled with -DFG_THREADS={THREADS}")
        self.contract = signatures(code)
        self.fetched, self.launches = [], []

    def get_function(self, name):
        if name not in self.contract:
            raise AttributeError(f"no kernel named {name!r} in the module")
        self.fetched.append(name)
        return _Function(name, self)


class _Cublas:
    @staticmethod
    def gemm(transa, transb, a, b, out, alpha=1.0, beta=0.0):
        for name, arr in (("a", a), ("b", b), ("out", out)):
            if not arr.flags.c_contiguous:
                raise TypeError(f"cublas.gemm: {name} must be C-contiguous")
        if not a.dtype == b.dtype == out.dtype:
            raise TypeError(f"cublas.gemm: dtypes {a.dtype}, {b.dtype}, {out.dtype} differ")
        op = {"N": lambda x: x, "T": lambda x: x.T}
        prod = op[transa](a) @ op[transb](b)
        if prod.shape != out.shape:
            raise TypeError(f"cublas.gemm: op(a) op(b) is {prod.shape}, out is {out.shape}")
        out *= beta
        out += alpha * prod


class StandInCupy:
    """The CuPy functions fastgrok's GPU path calls, on NumPy arrays."""

    float32, float64, int32 = np.float32, np.float64, np.int32
    RawModule = _RawModule
    cublas = _Cublas()
    empty, zeros, asarray = staticmethod(np.empty), staticmethod(np.zeros), staticmethod(np.asarray)
    ascontiguousarray, matmul = staticmethod(np.ascontiguousarray), staticmethod(np.matmul)

    @staticmethod
    def asnumpy(x):
        """A NumPy view."""
        return np.asarray(x)
