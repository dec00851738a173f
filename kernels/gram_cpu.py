"""CPU kernels of the gram method (docs/design.md 2.2): a build block's products, and one step.

With W(t) = W0 + C(t) X, everything training needs is a product of small matrices:

    Z  = Z0  + K  C^T      K  = X X^T,      Z0  = X W0^T
    Zt = Zt0 + Kt C^T      Kt = X_test X^T, Zt0 = X_test W0^T
    W mu_k = W0 mu_k + C (X mu_k)

The build (one pass over the column blocks of each run, shared by every backend, in
:mod:`fastgrok.engines.gram`) asks for each block's products [X; X_test] [X; W0; M]^T, formed in
the working dtype (float32 runs use SGEMM) and summed over blocks in float64.
State is kept as Ct = C^T (n, m) so that the step's update and product are contiguous:
Ct += V; Z = Z0 + K Ct.
"""
from __future__ import annotations

import numpy as np

from .blas import gemm
from .memory import empty_aligned, joined_rows, zeros_aligned
from .numba_fused import outputs_and_coefficients


def block_products(X, Xt, W0, M, dtype):
    """The partial products of one column block of one run, in the blocks' ``dtype``.

    Returns
    -------
    G : ((n + nt), (n + m + k)) ``dtype``
        [X; X_test] [X; W0; M]^T for this block (M: k directions, the two means first; two
        zero rows when M is None).
    W0M : (m, k) ``dtype``
        W0 M^T for this block.

    Where X, W0 and M are consecutive rows of one buffer (as the reduced draw lays them out),
    that buffer is the right operand as it stands; otherwise they are copied into one.
    """
    dt = np.dtype(dtype)
    (n, cols), m = X.shape, W0.shape[0]
    nt = 0 if Xt is None else Xt.shape[0]
    A = empty_aligned((n + nt, cols), dt)
    A[:n] = X
    if nt:
        A[n:] = Xt
    k = 2 if M is None else M.shape[0]
    B = None if M is None or X.dtype != dt else joined_rows(X, W0, M)
    if B is None:
        B = zeros_aligned((n + m + k, cols), dt)
        B[:n] = X
        B[n:n + m] = W0
        if M is not None:
            B[n + m:] = M
    G = gemm(A, B.T, empty_aligned((n + nt, n + m + k), dt))
    W0M = gemm(B[n:n + m], B[n + m:].T, empty_aligned((m, k), dt))
    return G, W0M


def step_run(K, Z0, Z, Ct, y, a, lr, leak=0.0, loss=0):
    """One GD step of one run, in place: Ct += V(Z) (fused, V never stored); Z = Z0 + K Ct.

    ``leak`` and ``loss`` are the model's kernel scalars (:class:`fastgrok.model.Model`).

    Z is recomputed from Ct rather than accumulated (Z += K V costs the same), so it never
    drifts from the state it describes.
    """
    outputs_and_coefficients(Z, y, a, lr, Ct, True, leak, loss)
    np.copyto(Z, Z0)
    gemm(K, Ct, Z, beta=1.0)
