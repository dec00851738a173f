"""Aligned allocation for every array the engines and kernels compute on."""
from __future__ import annotations

import numpy as np

#: Alignment of every array fastgrok allocates for its engines, bytes (one cache line, and a
#: multiple of every SIMD width in use).
ALIGN = 64


def empty_aligned(shape, dtype, zero=False):
    """An uninitialised (or zeroed) C-contiguous array whose data start on an ALIGN boundary.

    Why: where an array starts relative to a cache line decides how a vectorised kernel splits
    its loops (peeled head, aligned body, tail), and in some BLAS and NumPy kernels that changes
    the order of a sum. malloc gives different offsets in different processes (small arrays come
    from a heap whose state depends on everything the process did before), so an engine state
    allocated with plain ``np.empty`` could round differently from one process to the next.
    Allocating every engine array on the same boundary takes the address out of the result.
    """
    dt = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    count = int(np.prod(shape, dtype=np.int64))
    raw = (np.zeros if zero else np.empty)(count * dt.itemsize + ALIGN, np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + count * dt.itemsize].view(dt).reshape(shape)


def copy_aligned(x, dtype):
    """An aligned C-contiguous copy of ``x`` in ``dtype`` (:func:`empty_aligned`)."""
    out = empty_aligned(np.shape(x), dtype)
    out[...] = x
    return out


def zeros_aligned(shape, dtype):
    """:func:`empty_aligned`, filled with zeros."""
    return empty_aligned(shape, dtype, zero=True)
