"""CPU kernels of the gram method (docs/design.md 2.2): the one-pass build and the per-step update.

With W(t) = W0 + C(t) X, everything training needs is a product of small matrices:

    Z  = Z0  + K  C^T      K  = X X^T,      Z0  = X W0^T
    Zt = Zt0 + Kt C^T      Kt = X_test X^T, Zt0 = X_test W0^T
    W mu_k = W0 mu_k + C (X mu_k)

The build is one pass over the column blocks of the run's source: per block,
[X; X_test] [X; W0_chunk... ] products accumulated in float64 (block products in the working
dtype, so float32 runs use SGEMM; the sum over blocks is float64). Blocks are generated inside
the worker threads, so X, X_test and W0 are never held whole. State is kept as Ct = C^T (n, m)
so that the step's update and product are contiguous: Ct += V; Z = Z0 + K Ct.
"""
from __future__ import annotations

import numpy as np

from .._memory import empty_aligned, zeros_aligned
from .cpu_blas import gemm, pool
from .cpu_direct import outputs_and_coefficients


def build_block(source, k, j0, j1, dtype):
    """Float64 partial products of one column block of one run.

    Returns
    -------
    G : ((n + nt), (n + m + 2)) float64
        [X; X_test] [X; W0; M]^T for this block (M: the two means, zero rows without them).
    W0M : (m, 2) float64
        W0 M^T for this block.
    """
    dt = np.dtype(dtype)
    X, Xt, W0, M = source.block(k, j0, j1, dt)
    n, m, nt, cols = source.n, source.m, source.n_test, j1 - j0
    A = empty_aligned((n + nt, cols), dt)
    A[:n] = X
    if nt:
        A[n:] = Xt
    B = zeros_aligned((n + m + 2, cols), dt)
    B[:n] = X
    B[n:n + m] = W0
    if M is not None:
        B[n + m:] = M
    G = gemm(A, B.T, empty_aligned((n + nt, n + m + 2), dt))
    W0M = gemm(B[n:n + m], B[n + m:].T, empty_aligned((m, 2), dt))
    return G.astype(np.float64), W0M.astype(np.float64)


def build(sources, dtype, n_threads=None, on_built=None):
    """Build the gram state of every run in ``sources`` in one pass over each run's blocks.

    Blocks of all runs are processed in parallel on the pool; each run's block partials are
    summed in block order, so the result does not depend on the thread count. ``on_built()`` is
    called as each run is complete.

    Returns
    -------
    dict of stacked arrays in ``dtype``: K (R, n, n), Kt (R, nt, n), Z0 (R, n, m),
    Zt0 (R, nt, m), XM (R, n, 2), W0M (R, m, 2).
    """
    s0 = sources[0]
    n, m, nt = s0.n, s0.m, s0.n_test
    dt = np.dtype(dtype)
    R = len(sources)
    shapes = {"K": (n, n), "Kt": (nt, n), "Z0": (n, m), "Zt0": (nt, m), "XM": (n, 2), "W0M": (m, 2)}
    out = {k: empty_aligned((R, *s), dt) for k, s in shapes.items()}
    tasks = [(r, blk) for r, src in enumerate(sources) for blk in src.block_list()]

    def task(t):
        r, (k, j0, j1) = t
        return build_block(sources[r], k, j0, j1, dt)

    results = (map(task, tasks) if not n_threads or n_threads == 1
               else pool(n_threads).map(task, tasks))
    # Results arrive in task order: each run's block partials are added as they come, in block
    # order (the same bits as summing them all at the end), so only one partial per run is held.
    acc, left = {}, {r: len(src.block_list()) for r, src in enumerate(sources)}
    for (r, _), (G, W0M) in zip(tasks, results):
        if r in acc:
            acc[r][0] += G
            acc[r][1] += W0M
        else:
            acc[r] = [G, W0M]
        left[r] -= 1
        if left[r] == 0:
            G, W0M = acc.pop(r)
            out["W0M"][r] = W0M
            out["K"][r], out["Z0"][r], out["XM"][r] = G[:n, :n], G[:n, n:n + m], G[:n, n + m:]
            out["Kt"][r], out["Zt0"][r] = G[n:, :n], G[n:, n:n + m]
            if on_built:
                on_built()
    return out


def step_run(K, Z0, Z, Ct, y, a, lr):
    """One GD step of one run, in place: Ct += V(Z) (fused, V never stored); Z = Z0 + K Ct.

    Z is recomputed from Ct rather than accumulated (Z += K V costs the same), so it never
    drifts from the state it describes.
    """
    outputs_and_coefficients(Z, y, a, lr, Ct, True)
    np.copyto(Z, Z0)
    gemm(K, Ct, Z, beta=1.0)
