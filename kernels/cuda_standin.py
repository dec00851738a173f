"""A stand-in for the parts of CuPy the GPU backend uses, on the CPU with NumPy arrays.

``CudaKernels(cupy=StandInCupy())`` compiles nothing: ``RawModule`` checks the compile options;
``get_function`` returns a function that checks the launch shape (one block of THREADS threads
per row), records the launch and computes what the kernel computes (:class:`EmulatedKernels`).
The arguments are checked against the kernel's C signature by ``CudaKernels`` before every
launch, real or not;
``cublas.gemm`` checks its operands and computes alpha op(a) op(b) + beta out in place. So the
whole GPU code path, launches included, runs and is checked on a machine without a GPU
(``tests/test_gpu.py``, ``python bench/gpu_check.py --logic``).
"""
from __future__ import annotations

import numpy as np

from .cuda import THREADS, EmulatedKernels, signatures


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
            Z, a, n_per_run, _, f, leak = args
            f[...] = em.outputs(Z.reshape(rows, m), a, int(n_per_run), float(leak))
        else:
            Z, y, a, lr, n_per_run, _, V, f, acc, leak, loss = args
            f[...] = em.coefficients(Z.reshape(rows, m), y, a, float(lr), int(n_per_run),
                                     V.reshape(rows, m), bool(acc), float(leak), int(loss))


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
        return np.asarray(x)
