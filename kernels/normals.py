"""Standard normals from a fresh SFC64 stream, bit for bit NumPy's ``Generator.standard_normal``.

The data and the first layer are drawn as standard normals from one SFC64 stream per block
(``fastgrok.data.rng``): the stream definition, which fixes every number a seed gives. NumPy
draws them with its ziggurat (256 layers, Marsaglia and Tsang), whose C loop branches on each
number's random sign, a branch mispredicted every other number. These kernels are the same
algorithm on the same 64-bit words, with SFC64 held in registers and the sign applied as a
factor of +-1 (exact): the same numbers, about three times faster. The ziggurat's tables are
NumPy's, as Numba ships them for its own ``np.random.Generator`` support.

The 32-bit draw follows NumPy's C code where Numba's own port does not: its rejection test
compares against ``exp(-0.5 x^2)`` in double precision (``0.5`` is a double in C).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, uint64

from . import numba_cache  # noqa: F401  (before any kernel is defined: where its cache goes)
from .numba_cache import kernel

try:  # NumPy's ziggurat tables (numpy/random/src/distributions/ziggurat_constants.h)
    from numba.np.random._constants import (
        fi_double,
        fi_float,
        ki_double,
        ki_float,
        wi_double,
        wi_float,
        ziggurat_nor_inv_r,
        ziggurat_nor_inv_r_f,
        ziggurat_nor_r,
        ziggurat_nor_r_f,
    )
    AVAILABLE = True
except ImportError:  # pragma: no cover - a Numba without them: NumPy draws (the same numbers)
    AVAILABLE = False
    fi_double = fi_float = ki_double = ki_float = wi_double = wi_float = np.zeros(256)
    ziggurat_nor_inv_r = ziggurat_nor_inv_r_f = ziggurat_nor_r = ziggurat_nor_r_f = 1.0

_MASK52 = 0x000fffffffffffff  # the 52 bits of a double's draw below its layer and sign bits
_MASK23 = 0x007fffff  # the 23 bits of a float's


@njit(inline="always")
def _sfc64(a, b, c, k):
    """One SFC64 step: (output word, a, b, c, counter) from the state (a, b, c, counter)."""
    out = a + b + k
    return (out, b ^ (b >> uint64(11)), c + (c << uint64(3)),
            ((c << uint64(24)) | (c >> uint64(40))) + out, k + uint64(1))


@njit(inline="always")
def _unit_double(word):
    """A uniform double in [0, 1) from a 64-bit word, as NumPy's ``next_double``."""
    return np.int64(word >> uint64(11)) * (1.0 / 9007199254740992.0)


@kernel("void(uint64[::1], float64[::1])", cache=True, nogil=True)
def normals64(state, out):
    """Fill ``out`` with the standard normals (float64) of the SFC64 state (a, b, c, counter).

    NumPy's ``random_standard_normal``: a word's low byte picks the layer, the next bit the
    sign, the 52 bits above the magnitude; 99% of words are accepted at once.
    """
    a, b, c, k = state[0], state[1], state[2], state[3]
    for q in range(out.shape[0]):
        while True:
            r, a, b, c, k = _sfc64(a, b, c, k)
            idx = r & uint64(0xff)
            r >>= uint64(8)
            rabs = (r >> uint64(1)) & uint64(_MASK52)
            # rabs < 2^52: its int64 conversion is exact; times +-1: the sign without a branch
            x = np.int64(rabs) * wi_double[idx] * (1.0 - 2.0 * np.int64(r & uint64(1)))
            if rabs < ki_double[idx]:
                break
            if idx == 0:  # the tail beyond the last layer
                while True:
                    u, a, b, c, k = _sfc64(a, b, c, k)
                    xx = -ziggurat_nor_inv_r * math.log1p(-_unit_double(u))
                    u, a, b, c, k = _sfc64(a, b, c, k)
                    yy = -math.log1p(-_unit_double(u))
                    if yy + yy > xx * xx:
                        x = ziggurat_nor_r + xx
                        if (rabs >> uint64(8)) & uint64(1):
                            x = -x
                        break
                break
            u, a, b, c, k = _sfc64(a, b, c, k)
            if (fi_double[idx - 1] - fi_double[idx]) * _unit_double(u) + fi_double[idx] \
                    < math.exp(-0.5 * x * x):
                break
        out[q] = x


@njit(inline="always")
def _next32(a, b, c, k, has, held):
    """NumPy's ``next_uint32`` of SFC64: a word's low half, its high half held for the next."""
    if has:
        return held, a, b, c, k, uint64(0), held
    w, a, b, c, k = _sfc64(a, b, c, k)
    return w & uint64(0xffffffff), a, b, c, k, uint64(1), w >> uint64(32)


@njit(inline="always")
def _unit_float(word):
    """A uniform float in [0, 1) from a 32-bit word, as NumPy's ``next_float``."""
    return np.float32(np.int64(word >> uint64(8))) * np.float32(1.0 / 16777216.0)


@kernel("void(uint64[::1], float32[::1])", cache=True, nogil=True)
def normals32(state, out):
    """Fill ``out`` with the standard normals (float32) of the SFC64 state (a, b, c, counter).

    NumPy's ``random_standard_normal_f``, on 32-bit halves of the words (low half first): the
    low byte picks the layer, bit 8 the sign, the 23 bits above the magnitude.
    """
    a, b, c, k = state[0], state[1], state[2], state[3]
    has, held = uint64(0), uint64(0)
    for q in range(out.shape[0]):
        while True:
            r, a, b, c, k, has, held = _next32(a, b, c, k, has, held)
            idx = r & uint64(0xff)
            rabs = (r >> uint64(9)) & uint64(_MASK23)
            x = np.float32(np.float32(np.int64(rabs)) * wi_float[idx]) \
                * np.float32(1.0 - 2.0 * np.int64((r >> uint64(8)) & uint64(1)))
            if rabs < ki_float[idx]:
                break
            if idx == 0:
                while True:
                    u, a, b, c, k, has, held = _next32(a, b, c, k, has, held)
                    xx = np.float32(-ziggurat_nor_inv_r_f * np.log1p(-_unit_float(u)))
                    u, a, b, c, k, has, held = _next32(a, b, c, k, has, held)
                    yy = np.float32(-np.log1p(-_unit_float(u)))
                    if np.float32(yy + yy) > np.float32(xx * xx):
                        x = np.float32(ziggurat_nor_r_f + xx)
                        if (rabs >> uint64(8)) & uint64(1):
                            x = -x
                        break
                break
            u, a, b, c, k, has, held = _next32(a, b, c, k, has, held)
            # float arithmetic on the left, compared with a double exp (C's promotion)
            lhs = (fi_float[idx - 1] - fi_float[idx]) * _unit_float(u) + fi_float[idx]
            if np.float64(lhs) < math.exp(-0.5 * np.float64(x) * np.float64(x)):
                break
        out[q] = x


_SIG_ROWS = [f"void(float64[::1], float64[::1], float64[:,::1], int64, int64, int64, float64, "
             f"{t}[:,::1])" for t in ("float32", "float64")]


@kernel(_SIG_ROWS, cache=True, nogil=True)
def bartlett_rows(normals, diag, head, c0, n, nt, scale, out):
    """One column block of the reduced draw, a row per vector, rounded once to out's dtype.

    The block's columns are ``head`` (N, h) first (the means' coordinates, as given), then the
    columns c0, c0 + 1, ... of the lower-triangular L: entry (v, c) is 0 above the diagonal,
    ``diag[c - c0]`` on it, and below it the next number of column c's stretch of ``normals``
    (the columns' entries below the diagonal, one column after another). Vector v < n (a
    training point) goes to row nt + v, a test point to row v - n, a weight row (v >= n + nt)
    to row v, times ``scale`` in float64; out's rows from N on are left as they are.
    """
    N, h = head.shape
    starts = np.empty(diag.shape[0], np.int64)  # where each column's stretch begins
    at = 0
    for q in range(diag.shape[0]):
        starts[q] = at - (c0 + q) - 1  # (the entry of vector v is normals[starts[q] + v])
        at += N - 1 - (c0 + q)
    cols = diag.shape[0]
    for v in range(N):
        row = nt + v if v < n else (v - n if v < n + nt else v)
        s = scale if v >= n + nt else 1.0
        for q in range(h):
            out[row, q] = head[v, q] * s
        below = min(max(v - c0, 0), cols)  # the columns c < v: below the diagonal
        for q in range(below):
            out[row, h + q] = normals[starts[q] + v] * s
        if below < cols:
            out[row, h + below] = (diag[below] if c0 + below == v else 0.0) * s
            for q in range(below + 1, cols):
                out[row, h + q] = 0.0 * s
