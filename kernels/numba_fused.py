"""Numba kernels for the elementwise work between the big products, shared by both methods.

One pass over the (n, m) pre-activations gives the outputs f = relu(Z) a (summed in float64)
and the update coefficients V = (lr/n) sigmoid(-y f) y 1[Z > 0] a (docs/design.md section 1),
written into V (direct method) or added straight into the gram state C^T (gram method, so V is
never stored). Compiled on first use with explicit float32/float64 signatures, cached on disk.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

# (Z, y, a, lr, V, accumulate): Z float64 (direct: summed over p in float64) or float32 (gram).
_SIG_COEF = [f"float64[:]({z}[:,::1], float64[::1], float64[::1], float64, {v}[:,::1], boolean)"
             for z, v in (("float64", "float32"), ("float64", "float64"), ("float32", "float32"))]


# reassoc lets LLVM vectorise the row sums (a fixed, thread-independent summation order for a
# given build); the mask is applied arithmetically so the loops are branch-free.
_FAST = {"reassoc", "nsz"}


@njit(_SIG_COEF, cache=True, nogil=True, fastmath=_FAST)
def outputs_and_coefficients(Z, y, a, lr, V, accumulate=False):
    """f = relu(Z) a, and the update coefficients (lr/n) sigmoid(-y f) y 1[Z > 0] a; returns f.

    The coefficients are written into V, or added to it when ``accumulate`` (the gram method
    adds them straight into its state C^T, so V is never stored).
    """
    n, m = Z.shape
    f = np.empty(n)
    scale = lr / n
    for i in range(n):
        s = 0.0
        for j in range(m):
            s += max(np.float64(Z[i, j]), 0.0) * a[j]
        f[i] = s
        z = y[i] * s
        # sigmoid(-z) = exp(-softplus(z)), accurate in relative terms for large |z|
        softplus = max(z, 0.0) + math.log1p(math.exp(-abs(z)))
        c = scale * math.exp(-softplus) * y[i]
        if accumulate:
            for j in range(m):
                V[i, j] += (c * a[j]) * (Z[i, j] > 0.0)
        else:
            for j in range(m):
                V[i, j] = (c * a[j]) * (Z[i, j] > 0.0)
    return f


@njit(["float64[:](float64[:,::1], float64[::1])", "float64[:](float32[:,::1], float64[::1])"],
      cache=True, nogil=True, fastmath=_FAST)
def relu_outputs(Z, a):
    """f = relu(Z) a, accumulated in float64."""
    n, m = Z.shape
    f = np.empty(n)
    for i in range(n):
        s = 0.0
        for j in range(m):
            s += max(np.float64(Z[i, j]), 0.0) * a[j]
        f[i] = s
    return f
