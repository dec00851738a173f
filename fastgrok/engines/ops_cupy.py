"""GPU operations (backend "cupy"): the CUDA kernels of :mod:`fastgrok.kernels.cuda` and cuBLAS.

The same engines as on the CPU (:mod:`fastgrok.engines.gram`, :mod:`fastgrok.engines.direct`)
run over these operations. A gram batch is stacked on the device: one kernel launch computes
every run's coefficients, and batched (strided) cuBLAS products give Z = Z0 + K C^T for all
runs at once. Importing this module does not import CuPy; :func:`cupy_ops` does.
"""
from __future__ import annotations

import numpy as np

from .ops_base import Ops, block_operands


class CupyOps(Ops):
    """Device arrays (``xp`` is CuPy); outputs and projections come back to the host."""

    name = "cupy"
    host_threads = False  # one host thread drives the device

    def __init__(self, kernels=None, xp=None):
        """``kernels`` and ``xp`` default to the compiled CUDA kernels and CuPy.

        The tests pass :class:`fastgrok.testing.EmulatedKernels` and NumPy to run this code
        anywhere.
        """
        if xp is None:
            import cupy as xp
        if kernels is None:
            from ..kernels.cuda import kernels as compiled

            kernels = compiled()
        self.xp, self.k = xp, kernels

    def empty(self, shape, dtype):
        """An uninitialised device array."""
        return self.xp.empty(shape, dtype)

    def zeros(self, shape, dtype):
        """A zeroed device array."""
        return self.xp.zeros(shape, dtype)

    def asarray(self, x, dtype):
        """``x`` on the device in ``dtype``, C-contiguous (None stays None)."""
        return None if x is None else self.xp.ascontiguousarray(self.xp.asarray(x), dtype=dtype)

    def to_host(self, x):
        """A NumPy copy of a device array."""
        return self.xp.asnumpy(x) if hasattr(self.xp, "asnumpy") else np.asarray(x)

    def block_products(self, X, Xt, W0, M, dtype):
        """The block's products on the device (cuBLAS, in the working dtype)."""
        xp = self.xp
        A, B = (xp.asarray(v) for v in block_operands(X, Xt, W0, M))
        n, m = X.shape[0], W0.shape[0]
        return A @ B.T, B[n:n + m] @ B[n + m:].T

    def gram_step(self, K, Z0, Z, Ct, y, a, lr, model, n_threads=None, state=None, steps=1):
        """Every run stacked in each launch: one coefficients kernel, one batched product."""
        R, n, m = Z.shape
        for _ in range(steps):  # every run stacked in each launch
            self.k.coefficients(Z.reshape(R * n, m), y.reshape(-1), a, lr, n, Ct.reshape(R * n, m),
                                True, loss=model.loss_code, **_activation(model))
            self.xp.matmul(K, Ct, out=Z)
            Z += Z0

    def _outputs(self, Z, a, model):
        R, n, m = Z.shape
        return self.to_host(self.k.outputs(Z.reshape(R * n, m), a, n,
                                           **_activation(model))).reshape(R, n)

    def gram_evaluate(self, Z, Kt, Ct, Zt0, XM, W0M, a, model, test=True, means=True,
                      n_threads=None, state=None):
        """Stacked products on the device; outputs and projections back on the host."""
        xp = self.xp
        f = self._outputs(Z, a, model)
        ft = self._outputs(xp.matmul(Kt, Ct) + Zt0, a, model) if test else None
        P = None
        if means:
            P = self.to_host(xp.matmul(Ct.transpose(0, 2, 1), XM) + W0M).astype(np.float64)
        return f, ft, P

    def coefficients(self, Z, y, a, lr, V, model, accumulate=False):
        """The fused CUDA kernel of f and V."""
        return self.k.coefficients(Z, y, a, lr, Z.shape[0], V, accumulate,
                                   loss=model.loss_code, **_activation(model))

    def outputs(self, Z, a, model):
        """The CUDA outputs kernel, f on the host."""
        return self.to_host(self.k.outputs(Z, a, Z.shape[0], **_activation(model)))

    def direct_pass(self, X, W, V=None, Xt=None, mus=None, forward=True, n_threads=None,
                    decay=1.0):
        """The update with cuBLAS in place (no m x p temporary), then the products."""
        if V is not None:
            # W <- decay W + V^T X in place (cuBLAS beta = decay): no m x p temporary
            self.k.gemm_update(V, X, W, beta=decay)
        Z = X @ W.T if forward else None
        Zt = Xt @ W.T if Xt is not None else None
        P = W @ mus.T if mus is not None else None
        return Z, Zt, P


def _activation(model) -> dict:
    """The CUDA kernels' activation arguments: the leak, the activation code and its parameter."""
    return {"leak": model.slope, "act": model.act_code, "param": model.act_param}


def require_gpu() -> None:
    """RuntimeError saying what is missing unless CuPy sees a usable CUDA GPU."""
    from ..kernels.cuda import gpu_status

    status = gpu_status()
    if status != "ok":
        raise RuntimeError("backend='cupy' needs CuPy (pip install fastgrok[gpu]) and a usable "
                           f"CUDA GPU ({status}). Use backend='numba' or 'auto'.")
