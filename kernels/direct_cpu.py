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

Where NumPy's BLAS exports an ILP64 CBLAS (NumPy's own wheels do), the chunks run in one Numba
parallel region that calls it directly (:func:`_native_pass`); otherwise on fastgrok's Python
thread pool. Both compute the same products in the same order: the same bits.

The engine (:class:`fastgrok.engines.direct.DirectEngine` over the CPU operations) calls the
passes and the fused kernel in turn; fastgrok imports this module only when a numba engine is
first used.
"""
from __future__ import annotations

import functools
import threading

import numba
import numpy as np
from numba import njit, prange

from . import numba_cache  # noqa: F401  (before any kernel is defined: where its cache goes)
from .blas import NO_TRANS, TRANS, cblas_gemm, gemm, gemm_addresses
from .memory import empty_aligned, zeros_aligned
from .numba_cache import kernel
from .numba_fused import outputs_and_coefficients
from .threads import map_chunks, ordered_sum

# One native pass at a time: Numba's workqueue threading layer (where OpenMP and TBB are
# missing) aborts the process when a parallel region is entered from two threads at once.
_native_lock = threading.Lock()
_layer = {}

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


def tile_pass(X, W, V=None, Xt=None, mus=None, forward=True, n_threads=None, decay=1.0, *,
              tile_bytes, tile_cols, chunks, native=True):
    """One pass over the column tiles of X and W (see the module docstring).

    Parameters
    ----------
    X : (n, p) array
    W : (m, p) array, same dtype, C-contiguous; updated in place when ``V`` is given.
    V : (n, m) array of W's dtype, optional
        Update coefficients: W <- decay W + V^T X, applied tile by tile before the products.
    Xt : (nt, p) array, optional
        Test inputs: also return Zt = Xt W^T.
    mus : (k, p) array, optional
        Directions: also return P = W mus^T (m, k).
    forward : bool
        Return Z = X W^T (False: only update, e.g. for a standalone step).
    decay : float
        The factor of W in the update (1 - lr lambda with weight decay; 1.0: W += V^T X).
    n_threads : int, optional
        Worker threads (default: all CPUs); must be called inside
        :func:`fastgrok.kernels.threads.threads` or BLAS may oversubscribe.
    tile_bytes, tile_cols : int
        The tile width (:func:`tile_width`).
    chunks : int
        Chunks of tiles, each reduced on one thread in float64 and merged in order: fixed, not
        the thread count, so that the result does not depend on the thread count.
    native : bool
        Run the chunks in a Numba parallel region where the BLAS allows it (same bits).

    Returns
    -------
    Z, Zt, P : float64 arrays or None
    """
    n, p = X.shape
    m = W.shape[0]
    dt = W.dtype
    tw = tile_width(n, m, dt.itemsize, tile_bytes, tile_cols, p)
    starts = list(range(0, p, tw))
    addresses = native_addresses() if native else None
    if addresses is not None and all(A is None or _rows_of_one_dtype(A, dt) for A in (X, Xt, mus)):
        none = np.empty((0, 0), dt)
        with _native_lock:
            out = _native_pass(addresses[int(dt == np.float64)], X, W,
                               none if V is None else np.ascontiguousarray(V, dtype=dt),
                               none if Xt is None else Xt, none if mus is None else mus,
                               _chunk_bounds(len(starts), chunks), tw, forward, V is not None,
                               Xt is not None, mus is not None, float(decay))
        return tuple(z if want else None
                     for z, want in zip(out, (forward, Xt is not None, mus is not None),
                                        strict=True))
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
                gemm(Vt, X[:, j0:j1], Wb, beta=decay)
            if forward:
                Zc += gemm(X[:, j0:j1], Wb.T, zb)
            if Xt is not None:
                Ztc += gemm(Xt[:, j0:j1], Wb.T, ztb)
            if mus is not None:
                Pc += gemm(Wb, mus[:, j0:j1].T, pb)
        return Zc, Ztc, Pc

    parts = map_chunks(len(starts), chunk, n_threads, chunks)
    return tuple(ordered_sum([pt[k] for pt in parts]) for k in range(3))


def native_addresses():
    """(sgemm, dgemm) addresses for the native pass, or None where it does not run.

    It needs an ILP64 CBLAS (:func:`fastgrok.kernels.blas.gemm_addresses`) and a Numba threading
    layer whose idle threads spin (OpenMP, TBB): with the workqueue layer the hand-off to a
    sleeping thread costs more than the Python pool's.
    """
    addresses = gemm_addresses()
    if addresses is None:
        return None
    if "layer" not in _layer:
        numba.get_num_threads()  # starts Numba's threads, which chooses the layer
        _layer["layer"] = numba.threading_layer()
    return addresses if _layer["layer"] in ("omp", "tbb") else None


def native_step(X, y, W, a, lr, leak, loss, decay=1.0, *, tile_bytes, tile_cols, chunks,
                native=True):
    """One whole direct-method step in one compiled call, or None where that does not run.

    The forward pass, the coefficients (:func:`fastgrok.kernels.numba_fused.
    outputs_and_coefficients`) and the update pass of :func:`tile_pass`, with no Python between
    them (``fg.step`` in a research loop). y and a float64; X and W of one dtype.

    Returns
    -------
    (f, V, updated) or None
        The outputs before the update, the coefficients, and whether W was updated: it is not
        when an output is not finite (the caller reports it, or applies V itself).
    """
    addresses = native_addresses() if native else None
    dt = W.dtype
    if addresses is None or not _rows_of_one_dtype(X, dt):
        return None
    n, p = X.shape
    tw = tile_width(n, W.shape[0], dt.itemsize, tile_bytes, tile_cols, p)
    with _native_lock:
        return _native_step(addresses[int(dt == np.float64)], X, W,
                            np.ascontiguousarray(y, np.float64),
                            np.ascontiguousarray(a, np.float64), float(lr),
                            _chunk_bounds(-(-p // tw), chunks), tw, float(leak), int(loss),
                            float(decay))


def _rows_of_one_dtype(A, dt):
    """True if ``A`` is in dtype ``dt`` with unit column stride and a valid row stride."""
    item = A.itemsize
    return A.dtype == dt and A.strides[1] == item and A.strides[0] >= A.shape[1] * item


@functools.lru_cache(maxsize=64)
def _chunk_bounds(n_tiles, chunks):
    """Tile bounds of the chunks, as :func:`fastgrok.kernels.threads.map_chunks` splits them."""
    sizes = [len(c) for c in np.array_split(np.arange(n_tiles), max(1, min(chunks, n_tiles)))]
    return np.cumsum([0, *sizes]).astype(np.int64)  # (shared: never written)


def _for_both_dtypes(template):
    """Signature ``template`` for float32 and float64: {f} the dtype, {A} a 2D view of it."""
    return [template.format(f=f, A=f"{f}[:, :]") for f in ("float32", "float64")]


@njit(inline="always")
def _add(total, part):
    for i in range(total.shape[0]):
        for j in range(total.shape[1]):
            total[i, j] += part[i, j]


@kernel(_for_both_dtypes("void(int64, {A}, {f}[:, ::1], {f}[:, ::1], {A}, {A}, int64, int64, "
                       "int64, boolean, boolean, float64[:, ::1], float64[:, ::1], "
                       "float64[:, ::1], {f}[:, ::1], {f}[:, ::1], {f}[:, ::1], float64)"),
      nogil=True, cache=True)
def _chunk(addr, X, W, V, Xt, mus, t0, t1, tw, forward, update, Z, Zt, P, zb, ztb, pb, decay):
    """Tiles t0:t1 of one chunk, on the calling thread: the products added into Z, Zt and P.

    Z, Zt, P (float64) and their blocks zb, ztb, pb have zero rows where not wanted.
    """
    n, p = X.shape
    m = W.shape[0]
    item = X.itemsize
    ldx, ldw = X.strides[0] // item, W.strides[0] // item
    ldt, ldm = max(Xt.strides[0] // item, 1), max(mus.strides[0] // item, 1)
    x0, w0, xt0, mu0 = X.ctypes.data, W.ctypes.data, Xt.ctypes.data, mus.ctypes.data
    for t in range(t0, t1):
        j0 = t * tw
        cols = min(tw, p - j0)
        off = j0 * item
        if update:  # W[:, j0:j1] <- decay W[:, j0:j1] + V^T X[:, j0:j1]
            cblas_gemm(addr, TRANS, NO_TRANS, m, cols, n, 1.0, V.ctypes.data, m, x0 + off, ldx,
                       decay, w0 + off, ldw, X)
        if forward:  # Z += X[:, j0:j1] W[:, j0:j1]^T
            cblas_gemm(addr, NO_TRANS, TRANS, n, m, cols, 1.0, x0 + off, ldx, w0 + off, ldw, 0.0,
                       zb.ctypes.data, m, X)
            _add(Z, zb)
        if Zt.shape[0]:
            cblas_gemm(addr, NO_TRANS, TRANS, Zt.shape[0], m, cols, 1.0, xt0 + off, ldt,
                       w0 + off, ldw, 0.0, ztb.ctypes.data, m, X)
            _add(Zt, ztb)
        if P.shape[0]:  # P += W[:, j0:j1] mus[:, j0:j1]^T
            cblas_gemm(addr, NO_TRANS, TRANS, m, mus.shape[0], cols, 1.0, w0 + off, ldw,
                       mu0 + off, ldm, 0.0, pb.ctypes.data, mus.shape[0], X)
            _add(P, pb)


@kernel(_for_both_dtypes("void(int64, {A}, {f}[:, ::1], {f}[:, ::1], {A}, {A}, int64[::1], "
                       "int64, boolean, boolean, float64[:, :, ::1], float64[:, :, ::1], "
                       "float64[:, :, ::1], {f}[:, :, ::1], {f}[:, :, ::1], {f}[:, :, ::1], "
                       "float64)"),
      parallel=True, nogil=True, cache=True)
def _parallel_chunks(addr, X, W, V, Xt, mus, bounds, tw, forward, update, Zc, Ztc, Pc, zb, ztb,
                     pb, decay):
    """Chunk c (tiles bounds[c]:bounds[c + 1]) on one of Numba's threads, into Zc[c] and so on.

    Nothing else in this parallel function: its compilation stays small.
    """
    for c in prange(bounds.size - 1):
        _chunk(addr, X, W, V, Xt, mus, bounds[c], bounds[c + 1], tw, forward, update, Zc[c],
               Ztc[c], Pc[c], zb[c], ztb[c], pb[c], decay)


@kernel(_for_both_dtypes("UniTuple(float64[:, ::1], 3)(int64, {A}, {f}[:, ::1], {f}[:, ::1], "
                       "{A}, {A}, int64[::1], int64, boolean, boolean, boolean, boolean, "
                       "float64)"),
      nogil=True, cache=True)
def _native_pass(addr, X, W, V, Xt, mus, bounds, tw, forward, update, with_xt, with_mus,
                 decay):
    """:func:`tile_pass` with its chunks in one parallel region (:func:`_parallel_chunks`).

    X, Xt and mus have unit column stride, W and V are C-contiguous; the arrays not wanted are
    (0, 0) placeholders. Returns (Z, Zt, P) in float64, empty where not wanted.
    """
    n, m, k = X.shape[0], W.shape[0], mus.shape[0]
    n_chunks = bounds.size - 1
    rows_z, rows_t = n if forward else 0, Xt.shape[0] if with_xt else 0
    rows_p = m if with_mus else 0
    Zc = np.zeros((n_chunks, rows_z, m))
    Ztc = np.zeros((n_chunks, rows_t, m))
    Pc = np.zeros((n_chunks, rows_p, k))
    _parallel_chunks(addr, X, W, V, Xt, mus, bounds, tw, forward, update, Zc, Ztc, Pc,
                     np.empty((n_chunks, rows_z, m), X.dtype),
                     np.empty((n_chunks, rows_t, m), X.dtype),
                     np.empty((n_chunks, rows_p, k), X.dtype), decay)
    for c in range(1, n_chunks):  # in chunk order: the same sums for every thread count
        _add(Zc[0], Zc[c])
        _add(Ztc[0], Ztc[c])
        _add(Pc[0], Pc[c])
    return Zc[0].copy(), Ztc[0].copy(), Pc[0].copy()


@kernel(_for_both_dtypes("Tuple((float64[:], {f}[:, ::1], boolean))(int64, {A}, {f}[:, ::1], "
                       "float64[::1], float64[::1], float64, int64[::1], int64, float64, "
                       "int64, float64)"),
      nogil=True, cache=True)
def _native_step(addr, X, W, y, a, lr, bounds, tw, leak, loss, decay):
    """:func:`native_step`: two native passes around the coefficients kernel."""
    none = np.empty((0, 0), X.dtype)
    Z = _native_pass(addr, X, W, none, none, none, bounds, tw, True, False, False, False,
                     1.0)[0]
    V = np.empty((X.shape[0], W.shape[0]), X.dtype)
    f = outputs_and_coefficients(Z, y, a, lr, V, False, leak, loss)
    for i in range(f.size):
        if not np.isfinite(f[i]):
            return f, V, False
    _native_pass(addr, X, W, V, none, none, bounds, tw, False, True, False, False, decay)
    return f, V, True
