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

Compiled kernels call the same functions through :func:`cblas_gemm`, a Numba intrinsic that
takes the function's address as an argument (so the kernels stay in Numba's on-disk cache):
the direct pass runs its tiles in a Numba parallel region (:mod:`.direct_cpu`), whose threads
take a task in microseconds where a sleeping Python pool thread takes a hundred.
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
    """{'s': sgemm, 'd': dgemm, 'ilp64': bool} from NumPy's BLAS, or {} if none is exported."""
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
                found["ilp64"] = int_t is ctypes.c_int64
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


def gemm_addresses():
    """(sgemm, dgemm) addresses for :func:`cblas_gemm`, or None.

    None where the CBLAS found takes 32-bit integers (the intrinsic passes 64-bit ones) or where
    there is none: callers then use :func:`gemm` from Python.
    """
    fns = cblas()
    if not fns or not fns["ilp64"]:
        return None
    if "addresses" not in fns:
        fns["addresses"] = tuple(ctypes.cast(fns[k], ctypes.c_void_p).value for k in ("s", "d"))
    return fns["addresses"]


def _cblas_gemm_codegen(context, builder, signature, args):
    from llvmlite import ir
    from numba.core import types

    single = signature.args[-1].dtype == types.float32
    real = ir.FloatType() if single else ir.DoubleType()
    i32, i64, ptr = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, real, ptr, i64, ptr, i64,
                                          real, ptr, i64])
    addr, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, _ = args

    def enum(v):  # CBLAS enums are C ints
        return builder.trunc(v, i32)

    def scalar(v):  # alpha and beta in the matrices' precision
        return builder.fptrunc(v, real) if single else v

    def pointer(v):
        return builder.inttoptr(v, ptr)

    fn = builder.inttoptr(addr, fnty.as_pointer())
    builder.call(fn, [ir.Constant(i32, _ROW_MAJOR), enum(ta), enum(tb), M, N, K, scalar(alpha),
                      pointer(A), lda, pointer(B), ldb, scalar(beta), pointer(C), ldc])
    return context.get_dummy_value()


def _define_intrinsic():
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def cblas_gemm(typingctx, addr, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, like):
        """Row-major C = alpha op(A) op(B) + beta C through the ILP64 CBLAS ?gemm at ``addr``.

        All integers int64, alpha and beta float64, A, B and C addresses (int64); ``like`` is an
        array whose dtype (float32/float64) chooses sgemm's or dgemm's argument types. Called
        from compiled code only; the caller guarantees the shapes and addresses.
        """
        sig = types.void(addr, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, like)
        return sig, _cblas_gemm_codegen

    return cblas_gemm


cblas_gemm = _define_intrinsic()
#: CBLAS transpose flags, for :func:`cblas_gemm`.
NO_TRANS, TRANS = _NO_TRANS, _TRANS


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
