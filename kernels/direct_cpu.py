"""CPU kernels of the direct method (docs/design.md 2.1): the fused step over column tiles of p.

A training step is one pass over p. For each column tile [j0, j1) of X and W, still in cache:

    W[:, j0:j1] += V^T X[:, j0:j1]                  (the update of step t, in place, BLAS beta=1)
    Z  += X[:, j0:j1]  W[:, j0:j1]^T                (pre-activations of step t + 1)
    Zt += Xt[:, j0:j1] W[:, j0:j1]^T, P += W[:, j0:j1] mu[:, j0:j1]^T   (only at evaluation steps)

so X and W are read once and W written once per step, and nothing of size p is allocated. The
(n, m) elementwise work between passes (ReLU outputs, logistic-loss weights, the masked and
scaled coefficients V) is one Numba kernel (:mod:`fastgrok.kernels.numba_fused`). Tiles are
grouped into a fixed number of chunks; each chunk accumulates its partial Z in float64 on one
thread, and the chunks are summed in order, so the result does not depend on the thread count.

The engine (:class:`fastgrok.engines.direct.DirectEngine` over the CPU operations) calls the
passes and the fused kernel in turn; fastgrok imports this module only when a numba engine is
first used.
"""
from __future__ import annotations

import numpy as np

from .blas import gemm
from .memory import empty_aligned, zeros_aligned
from .threads import map_chunks, ordered_sum

#: A p that one tile would cover is still cut in two from this many columns on, so that a pass
#: over a small p (a research loop's fg.step) uses two threads.
MIN_SPLIT_P = 4096


def tile_width(n, m, itemsize, tile_bytes, tile_cols=0, p=None):
    """Columns per tile.

    ``tile_cols`` when set, else X and W tiles of about ``tile_bytes`` together (a multiple of 64
    columns, at most 65536), and at most half of p when p >= :data:`MIN_SPLIT_P`. Depends on
    the problem only, never on the thread count.
    """
    if tile_cols:
        return int(tile_cols)
    cols = tile_bytes // ((n + m) * itemsize)
    if p is not None and p >= MIN_SPLIT_P and cols >= p:
        cols = -(-p // 128) * 64  # two tiles
    return int(min(max(cols // 64 * 64, 64), 1 << 16))


def tile_pass(X, W, V=None, Xt=None, mus=None, forward=True, n_threads=None, *, tile_bytes,
              tile_cols, chunks):
    """One pass over the column tiles of X and W (see the module docstring).

    Parameters
    ----------
    X : (n, p) array
    W : (m, p) array, same dtype, C-contiguous; updated in place when ``V`` is given.
    V : (n, m) array of W's dtype, optional
        Update coefficients: W += V^T X, applied tile by tile before the products.
    Xt : (nt, p) array, optional
        Test inputs: also return Zt = Xt W^T.
    mus : (k, p) array, optional
        Directions: also return P = W mus^T (m, k).
    forward : bool
        Return Z = X W^T (False: only update, e.g. for a standalone step).
    n_threads : int, optional
        Worker threads (default: all CPUs); must be called inside
        :func:`fastgrok.kernels.threads.threads` or BLAS may oversubscribe.
    tile_bytes, tile_cols : int
        The tile width (:func:`tile_width`).
    chunks : int
        Chunks of tiles, each reduced on one thread in float64 and merged in order: fixed, not
        the thread count, so that the result does not depend on the thread count.

    Returns
    -------
    Z, Zt, P : float64 arrays or None
    """
    n, p = X.shape
    m = W.shape[0]
    dt = W.dtype
    tw = tile_width(n, m, dt.itemsize, tile_bytes, tile_cols, p)
    starts = list(range(0, p, tw))
    Vt = None if V is None else V.T  # a transposed view: gemm passes the Trans flag, no copy

    def chunk(tiles):
        Zc = zeros_aligned((n, m), np.float64) if forward else None
        Ztc = zeros_aligned((Xt.shape[0], m), np.float64) if Xt is not None else None
        Pc = zeros_aligned((m, mus.shape[0]), np.float64) if mus is not None else None
        zb = empty_aligned((n, m), dt) if forward else None
        ztb = empty_aligned((Xt.shape[0], m), dt) if Xt is not None else None
        pb = empty_aligned((m, mus.shape[0]), dt) if mus is not None else None
        for t in tiles:
            j0 = starts[t]
            j1 = min(j0 + tw, p)
            Wb = W[:, j0:j1]
            if Vt is not None:
                gemm(Vt, X[:, j0:j1], Wb, beta=1.0)
            if forward:
                Zc += gemm(X[:, j0:j1], Wb.T, zb)
            if Xt is not None:
                Ztc += gemm(Xt[:, j0:j1], Wb.T, ztb)
            if mus is not None:
                Pc += gemm(Wb, mus[:, j0:j1].T, pb)
        return Zc, Ztc, Pc

    parts = map_chunks(len(starts), chunk, n_threads, chunks)
    return tuple(ordered_sum([pt[k] for pt in parts]) for k in range(3))
