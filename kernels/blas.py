"""GEMM through the CBLAS of NumPy's own BLAS, on strided views, in place (beta = 1).

Why not ``numpy.matmul``? Two reasons. (1) The weight update must be in place (``beta = 1``) on a
column tile of W, W[:, j0:j1] += V^T X[:, j0:j1], so that no m x p (or even m x tile) temporary
is written and W is read and written once per step; NumPy has no GEMM with beta. (2) A
multithreaded BLAS call gives results that depend on its thread count (OpenBLAS changes its
blocking), so fastgrok runs BLAS single-threaded and parallelises itself over a fixed partition
of the work (:mod:`fastgrok.kernels.threads`): results do not depend on n_threads.

The CBLAS symbols are looked up in the BLAS library NumPy itself loaded (found through
threadpoolctl). Where none is found, :func:`gemm` falls back to ``numpy.matmul`` (same results
for every thread count, slower, and with an m x tile temporary for the in-place update).
"""
from __future__ import annotations

import ctypes
import threading

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_lock = threading.Lock()
_state = {"cblas": None}
#: Set to True (tests do) to force the NumPy fallback.
FORCE_NUMPY_FALLBACK = False


def _find_cblas():
    """{'s': sgemm, 'd': dgemm} from NumPy's BLAS, or {} if no CBLAS symbol is exported."""
    try:
        from threadpoolctl import threadpool_info

        paths = [i["filepath"] for i in threadpool_info() if i.get("user_api") == "blas"]
    except Exception:  # noqa: BLE001 - threadpoolctl missing or confused: use the fallback
        return {}
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, int_t in (("scipy_cblas_", "64_", ctypes.c_int64),
                                      ("cblas_", "64_", ctypes.c_int64),
                                      ("scipy_cblas_", "", ctypes.c_int),
                                      ("cblas_", "", ctypes.c_int)):
            found = {}
            for kind, real in (("s", ctypes.c_float), ("d", ctypes.c_double)):
                fn = getattr(lib, f"{prefix}{kind}gemm{suffix}", None)
                if fn is None:
                    break
                P, E = ctypes.c_void_p, ctypes.c_int
                fn.argtypes = [E, E, E, int_t, int_t, int_t, real, P, int_t, P, int_t, real, P,
                               int_t]
                fn.restype = None
                found[kind] = fn
            if len(found) == 2:
                return found
    return {}


def cblas():
    """The CBLAS gemm functions in use ({} means the NumPy fallback)."""
    if FORCE_NUMPY_FALLBACK:
        return {}
    if _state["cblas"] is None:
        with _lock:
            if _state["cblas"] is None:
                _state["cblas"] = _find_cblas()
    return _state["cblas"]


def _layout(A, item):
    """(transpose flag, leading dimension) of a 2D view with one unit stride."""
    s0, s1 = A.strides
    if s1 == item or A.shape[1] == 1:
        return _NO_TRANS, max(s0 // item, A.shape[1], 1)
    if s0 == item or A.shape[0] == 1:
        return _TRANS, max(s1 // item, A.shape[0], 1)
    raise ValueError("gemm operands need one unit stride")


def gemm(A, B, C, beta=0.0):
    """C = A @ B + beta C in place, for 2D views of one dtype (float32/float64).

    A and B may be row-major or transposed views with any leading dimension; C must be row-major
    (unit last stride). Runs on the calling thread only.
    """
    fns = cblas()
    kind = "s" if C.dtype == np.float32 else "d"
    if not fns or C.strides[1] != C.itemsize:
        if beta == 0.0:
            np.matmul(A, B, out=C)
        else:
            C += A @ B
        return C
    item = C.itemsize
    ta, lda = _layout(A, item)
    tb, ldb = _layout(B, item)
    M, K = A.shape
    N = B.shape[1]
    ldc = max(C.strides[0] // item, N, 1)
    fns[kind](_ROW_MAJOR, ta, tb, M, N, K, 1.0, A.ctypes.data, lda, B.ctypes.data, ldb,
              beta, C.ctypes.data, ldc)
    return C
