"""Numba kernels for the elementwise work between the big products, shared by both methods.

One pass over the (n, m) pre-activations gives the outputs f = phi(Z) a (summed in float64)
and the update coefficients V = (lr/n) g(y f) y phi'(Z) a (docs/design.md section 1), written
into V (direct method) or added straight into the gram state C^T (gram method, so V is never
stored). Compiled on first use with explicit float32/float64 signatures, cached on disk.

The model enters as two scalars. The activation is one branch-free formula for every member,
phi(z) = max(z, leak z) and phi'(z) = leak + (1 - leak) 1[z > 0], so ReLU (leak = 0) gives
exactly the bits of max(z, 0) and 1[z > 0] (max(z, -0.0) adds a signed zero, which changes no
sum; the derivative is 0 + 1 * 1[z > 0]). The loss enters only through the per-sample weight
g_i = -l'(y_i f_i), one scalar per row computed between the row's reduction and its update,
so its switch runs n times per step, never in the (n, m) element loops.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import numba_cache  # noqa: F401  (before any kernel is defined: where its cache goes)
from .numba_cache import kernel

#: Loss codes of the kernels: the index in fastgrok.config.LOSSES.
LOGISTIC, EXPONENTIAL, HINGE, SQUARE = 0, 1, 2, 3

# (Z, y, a, lr, V, accumulate, leak, loss): Z float64 (direct: summed over p in float64) or
# float32 (gram).
_SIG_COEF = [f"float64[:]({z}[:,::1], float64[::1], float64[::1], float64, {v}[:,::1], boolean, "
             "float64, int64)"
             for z, v in (("float64", "float32"), ("float64", "float64"), ("float32", "float32"))]


# reassoc lets LLVM vectorise the row sums (a fixed, thread-independent summation order for a
# given build); the mask is applied arithmetically so the loops are branch-free.
_FAST = {"reassoc", "nsz"}


@njit(inline="always")  # float64(float64, int64)
def loss_weight(z, loss):
    """G = -l'(z) of one margin z = y f (see :func:`fastgrok.reference.loss_weights`)."""
    if loss == LOGISTIC:
        # sigmoid(-z) = exp(-softplus(z)), accurate in relative terms for large |z|
        return math.exp(-(max(z, 0.0) + math.log1p(math.exp(-abs(z)))))
    if loss == EXPONENTIAL:
        return math.exp(-z)
    if loss == HINGE:
        return 1.0 if z < 1.0 else 0.0
    return 1.0 - z  # SQUARE


@njit(inline="always")  # float64(float64, float64, int64)
def loss_residual(y, f, loss):
    """-dl/df of one sample: g(y f) y, and for the square loss y - f (any real target).

    (See :func:`fastgrok.reference.loss_residuals`: for labels +-1 the same bits as g y.)
    """
    if loss == SQUARE:
        return y - f
    return loss_weight(y * f, loss) * y


@njit(fastmath=_FAST, inline="always")  # float64(float{32,64}[:,::1], int64, float64[::1], float64)
def row_output(Z, i, a, leak):
    """f_i = sum_j phi(Z_ij) a_j, accumulated in float64."""
    s = 0.0
    for j in range(Z.shape[1]):
        z = np.float64(Z[i, j])
        s += max(z, leak * z) * a[j]
    return s


@kernel(_SIG_COEF, cache=True, nogil=True, fastmath=_FAST)
def outputs_and_coefficients(Z, y, a, lr, V, accumulate, leak, loss):
    """F = phi(Z) a, and the update coefficients (lr/n) g(y f) y phi'(Z) a; returns f.

    The coefficients are written into V, or added to it when ``accumulate`` (the gram method
    adds them straight into its state C^T, so V is never stored).
    """
    n, m = Z.shape
    f = np.empty(n)
    scale = lr / n
    rise = 1.0 - leak
    for i in range(n):
        s = row_output(Z, i, a, leak)
        f[i] = s
        c = scale * loss_residual(y[i], s, loss)
        if accumulate:
            for j in range(m):
                V[i, j] += (c * a[j]) * (leak + rise * (Z[i, j] > 0.0))
        else:
            for j in range(m):
                V[i, j] = (c * a[j]) * (leak + rise * (Z[i, j] > 0.0))
    return f


@kernel(["float64[:](float64[:,::1], float64[::1], float64)",
       "float64[:](float32[:,::1], float64[::1], float64)"],
      cache=True, nogil=True, fastmath=_FAST)
def outputs(Z, a, leak):
    """F = phi(Z) a, accumulated in float64."""
    f = np.empty(Z.shape[0])
    for i in range(Z.shape[0]):
        f[i] = row_output(Z, i, a, leak)
    return f


# ---------------------------------------------------------------- smooth activations
#: Activation codes of the smooth kernels (the piecewise-linear ones use the kernels above).
RELU_POWER, SMOOTHED_LEAKY = 1, 2


@njit(inline="always")  # float64(float64, int64, float64, float64)
def smooth_phi(z, act, leak, param):
    """phi(z) of a smooth activation (:class:`fastgrok.reference.SmoothActivation`)."""
    if act == RELU_POWER:
        return max(z, 0.0) ** param
    if z < 0.0:
        return leak * z
    if z <= param:
        return leak * z + (1.0 - leak) * (z * z / (2.0 * param))
    return leak * z + (1.0 - leak) * (z - param / 2.0)


@njit(inline="always")  # float64(float64, int64, float64, float64)
def smooth_derivative(z, act, leak, param):
    """phi'(z) of a smooth activation."""
    if act == RELU_POWER:
        return param * max(z, 0.0) ** (param - 1.0) if z > 0.0 else 0.0
    if z < 0.0:
        return leak
    if z <= param:
        return leak + (1.0 - leak) * (z / param)
    return 1.0


# ---------------------------------------------------------------- patches (the two-layer CNN)
@njit(inline="always")  # float64(float64, int64, float64, float64)
def any_phi(z, act, leak, param):
    """phi(z) of any activation: act 0 is max(z, leak z), else :func:`smooth_phi`."""
    if act == 0:
        return max(z, leak * z)
    return smooth_phi(z, act, leak, param)


@njit(inline="always")  # float64(float64, int64, float64, float64)
def any_derivative(z, act, leak, param):
    """phi'(z) of any activation: act 0 is leak + (1 - leak) 1[z > 0]."""
    if act == 0:
        return leak + (1.0 - leak) * (z > 0.0)
    return smooth_derivative(z, act, leak, param)


_SIG_PATCH = [f"float64[:]({z}[:,::1], float64[::1], float64[::1], float64, {v}[:,::1], "
              "boolean, int64, float64, float64, int64, int64)"
              for z, v in (("float64", "float32"), ("float64", "float64"), ("float32", "float32"))]


@kernel(_SIG_PATCH, cache=True, nogil=True)
def patch_outputs_and_coefficients(Z, y, a, lr, V, accumulate, act, leak, param, loss, patches):
    """:func:`outputs_and_coefficients` of the two-layer CNN: Z has a row per patch.

    Sample i's ``patches`` rows follow each other; f_i = sum over them of phi(Z) a, and each of
    them takes the coefficients (lr/n) r_i phi'(Z) a with n the samples. Any activation (code 0:
    max(z, leak z); else :data:`RELU_POWER`, :data:`SMOOTHED_LEAKY`). Returns f (n,).
    """
    rows, m = Z.shape
    n = rows // patches
    f = np.empty(n)
    scale = lr / n
    for i in range(n):
        s = 0.0
        for row in range(i * patches, (i + 1) * patches):
            for j in range(m):
                s += any_phi(np.float64(Z[row, j]), act, leak, param) * a[j]
        f[i] = s
        c = scale * loss_residual(y[i], s, loss)
        for row in range(i * patches, (i + 1) * patches):
            for j in range(m):
                v = (c * a[j]) * any_derivative(np.float64(Z[row, j]), act, leak, param)
                if accumulate:
                    V[row, j] += v
                else:
                    V[row, j] = v
    return f


@kernel(["float64[:](float64[:,::1], float64[::1], int64, float64, float64, int64)",
       "float64[:](float32[:,::1], float64[::1], int64, float64, float64, int64)"],
      cache=True, nogil=True)
def patch_outputs(Z, a, act, leak, param, patches):
    """F_i = sum over sample i's patch rows of phi(Z) a (n,), accumulated in float64."""
    n = Z.shape[0] // patches
    f = np.empty(n)
    for i in range(n):
        s = 0.0
        for row in range(i * patches, (i + 1) * patches):
            for j in range(Z.shape[1]):
                s += any_phi(np.float64(Z[row, j]), act, leak, param) * a[j]
        f[i] = s
    return f


_SIG_SMOOTH = [f"float64[:]({z}[:,::1], float64[::1], float64[::1], float64, {v}[:,::1], "
               "boolean, int64, float64, float64, int64)"
               for z, v in (("float64", "float32"), ("float64", "float64"), ("float32", "float32"))]


@kernel(_SIG_SMOOTH, cache=True, nogil=True)
def smooth_outputs_and_coefficients(Z, y, a, lr, V, accumulate, act, leak, param, loss):
    """:func:`outputs_and_coefficients` for a smooth activation.

    Codes :data:`RELU_POWER`, :data:`SMOOTHED_LEAKY`: f = phi(Z) a and
    V = (lr/n) g(y f) y phi'(Z) a (written, or added with ``accumulate``): the patch kernel
    with one patch per sample (the same operations in the same order).
    """
    return patch_outputs_and_coefficients(Z, y, a, lr, V, accumulate, act, leak, param, loss, 1)


@kernel(["float64[:](float64[:,::1], float64[::1], int64, float64, float64)",
       "float64[:](float32[:,::1], float64[::1], int64, float64, float64)"],
      cache=True, nogil=True)
def smooth_outputs(Z, a, act, leak, param):
    """F = phi(Z) a for a smooth activation, accumulated in float64."""
    return patch_outputs(Z, a, act, leak, param, 1)


@njit(inline="always")  # float64(float64[::1], int64, int64)
def _pairwise_block(x, lo, n):
    """x[lo:lo + n].sum() for n <= 128, as NumPy sums a block: eight running sums, a fixed tree."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += x[lo + i]
        return res
    r0, r1, r2, r3 = x[lo], x[lo + 1], x[lo + 2], x[lo + 3]
    r4, r5, r6, r7 = x[lo + 4], x[lo + 5], x[lo + 6], x[lo + 7]
    i, end = 8, n - n % 8
    while i < end:
        b = lo + i
        r0 += x[b]
        r1 += x[b + 1]
        r2 += x[b + 2]
        r3 += x[b + 3]
        r4 += x[b + 4]
        r5 += x[b + 5]
        r6 += x[b + 6]
        r7 += x[b + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += x[lo + i]
        i += 1
    return res


@njit(inline="always")  # float64(float64[::1], int64)
def pairwise_sum(x, n):
    """x[:n].sum() with NumPy's own pairwise summation, bit for bit.

    NumPy sums a contiguous float64 array in blocks of at most 128 numbers
    (:func:`_pairwise_block`), halving a longer range (the first half rounded down to a
    multiple of eight) and adding the halves' sums. The same tree, walked with a stack of its
    open ranges instead of recursion (a recursive function does not load from Numba's cache).
    """
    los = np.empty(64, np.int64)  # a range per level: start, length, its left half's sum
    ns = np.empty(64, np.int64)
    lefts = np.empty(64)
    sides = np.zeros(64, np.int64)  # 0: its left half next, 1: its right half, 2: done
    los[0], ns[0], sp, value = 0, n, 1, 0.0
    while sp:
        top = sp - 1
        lo, size = los[top], ns[top]
        if size <= 128:
            value = _pairwise_block(x, lo, size)
            sp -= 1
        else:
            half = size // 2
            half -= half % 8
            if sides[top] == 0:
                sides[top] = 1
                los[sp], ns[sp], sides[sp] = lo, half, 0
                sp += 1
                continue
            if sides[top] == 1:
                lefts[top] = value  # the left half's sum, just returned
                sides[top] = 2
                los[sp], ns[sp], sides[sp] = lo + half, size - half, 0
                sp += 1
                continue
            value = lefts[top] + value
            sp -= 1
    return value


@kernel("void(float64[:,:,::1], float64[:,::1], float64, float64[:,:,::1])", cache=True,
        nogil=True)
def group_abs_means(P, A, scale, out):
    """out[r, g, k] = mean_j |P[r, k, j]| / scale over group g of run r's neurons; NaN if empty.

    Group 0 holds the neurons with a_j > 0 (A[r, j]), group 1 those with a_j < 0. Each mean is
    ``(np.abs(P[r, k][sel]).sum() / count) / scale`` to the bit (:func:`pairwise_sum`): the
    alignment summaries of every run of a batch in one call instead of a dozen NumPy calls
    per run and evaluation.
    """
    R, K, m = P.shape
    buf = np.empty(m)
    for r in range(R):
        for g in range(2):
            for k in range(K):
                count = 0
                for j in range(m):
                    if (A[r, j] > 0.0) if g == 0 else (A[r, j] < 0.0):
                        buf[count] = abs(P[r, k, j])
                        count += 1
                out[r, g, k] = (pairwise_sum(buf, count) / count) / scale if count \
                    else np.nan
