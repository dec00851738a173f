"""Numba kernels of the gram method's linear regime (docs/design.md 2.4).

While every loss weight g_i is the same number at every step in the working precision (tiny
outputs: g = -l'(0), 1/2 for the logistic loss and 1 for the exponential and hinge losses), the
coefficients are V = c * phi'(Z) with a fixed c_ij = (lr/n) g y_i a_j, and phi'(Z) =
leak + (1 - leak) M with M the activation pattern 1[Z > 0]. Keeping D = K V, a step is

    C^T += V(t);  Z(t+1) = Z(t) + D(t);  M(t+1) = 1[Z(t+1) > 0];
    D(t+1) = D(t) + (1 - leak) K (c * dM)

and only the entries whose pattern changes cost O(n) each, instead of O(n^2 m) for the product.
The state is held transposed, (m, n), so that the update of D for a changed entry (i, j) is
the contiguous row D^T[j, :] += K[i, :] c_i a_j dM (K is symmetric). Everything is float64:
the increments are exact sums of exact terms in a fixed order, so rounding only accumulates
at float64 level (and the engine refreshes D and Z exactly every so many steps).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .numba_fused import loss_weight

_SIG_STEPS = [f"int64({k}[:,::1], float64[:,::1], float64[:,::1], uint8[:,::1], int32[:,::1], "
              "float64[::1], float64[::1], float64[:,::1], float64)" for k in ("float32", "float64")]


@njit(_SIG_STEPS, cache=True, nogil=True, fastmath={"reassoc", "nsz"})
def linear_steps(K, ZT, DT, MT, ST, c, a, F, leak):
    """k = F.shape[0] steps in the linear regime, in place; returns the number of pattern changes.

    ZT, DT (m, n) float64: pre-activations and D^T; MT (m, n) the pattern; ST (m, n) how many
    steps each entry has been active (C^T = C0^T + c * (leak steps + (1 - leak) S));
    c (n,) = (lr/n) g y; a (m,). ``F[s]`` receives the outputs phi(Z) a after step s + 1, for
    the regime checks (the caller checks them afterwards and redoes fewer steps if one fails).

    Row by row of the transposed state, all k steps of a row at a time: a row's update and its
    pattern changes touch only that row (K is symmetric), so a row (4 n numbers) stays in L1
    for the k steps, and the run's state is read from memory once per call instead of once per
    step. Every row and every F[s, i] sees the same operations in the same order as k calls of
    one step, so the numbers do not depend on k.
    """
    m, n = ZT.shape
    k = F.shape[0]
    rise = 1.0 - leak
    F[...] = 0.0
    changes = 0
    for j in range(m):
        aj = a[j]
        for s in range(k):
            for i in range(n):
                ST[j, i] += MT[j, i]
                z = ZT[j, i] + DT[j, i]
                ZT[j, i] = z
                F[s, i] += max(z, leak * z) * aj
            for i in range(n):
                new = np.uint8(ZT[j, i] > 0.0)
                if new != MT[j, i]:
                    delta = (np.float64(new) - np.float64(MT[j, i])) * rise * c[i] * aj
                    MT[j, i] = new
                    for q in range(n):
                        DT[j, q] += K[i, q] * delta
                    changes += 1
    return changes


@njit("boolean(float64[::1], float64[::1], float64, boolean, int64)", cache=True, nogil=True)
def frozen(f, y, g0, single, loss):
    """True when every loss weight -l'(y_i f_i) equals g0 in the working precision."""
    for i in range(f.shape[0]):
        g = loss_weight(y[i] * f[i], loss)
        if single:
            if np.float32(g) != np.float32(g0):
                return False
        elif g != g0:
            return False
    return True


_SIG_SYNC = [f"void(float64[:,::1], int32[:,::1], float64[:,::1], float64[::1], float64[::1], "
             f"float64, int64, {t}[:,::1], {t}[:,::1], boolean)" for t in ("float32", "float64")]


@njit(_SIG_SYNC, cache=True, nogil=True)
def write_state(ZT, ST, Ct0, c, a, leak, steps, Z, Ct, with_z):
    """C^T = Ct0 + (c a) (leak steps + (1 - leak) S^T) and, if ``with_z``, Z = ZT^T, in the
    working dtype.

    The same arithmetic, in the same order, as the engine's NumPy expression for C^T, so both
    give the same bits (no fastmath here). Row by row of the outputs, so the writes and the
    reads of Ct0 are contiguous; an evaluation needs only C^T (the train outputs after the last
    step come from the kernel), which halves the memory traffic.
    """
    m, n = ZT.shape
    rise = 1.0 - leak
    base = leak * steps
    for i in range(n):
        ci = c[i]
        for j in range(m):
            Ct[i, j] = Ct0[i, j] + (ci * a[j]) * (base + rise * ST[j, i])
        if with_z:
            for j in range(m):
                Z[i, j] = ZT[j, i]
