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


def empty_aligned_from(shape, dtype, row):
    """An uninitialised C-contiguous array whose row ``row`` starts on an ALIGN boundary.

    For an array whose rows from ``row`` on are a product's operand as they stand (no aligned
    copy needed; :func:`empty_aligned` gives the reason for the alignment).
    """
    dt = np.dtype(dtype)
    shape = tuple(shape)
    size = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    lead = (-row * int(np.prod(shape[1:], dtype=np.int64)) * dt.itemsize) % ALIGN
    raw = empty_aligned(size + lead, np.uint8)
    return raw[lead:lead + size].view(dt).reshape(shape)


def joined_rows(*parts):
    """The rows of ``parts`` as one array, where they are consecutive rows of one buffer.

    None where they are not (not views of one array, not C-contiguous, not adjacent in memory,
    or not starting on an ALIGN boundary): the caller then copies them into one.
    """
    first = parts[0]
    if first.base is None or first.ndim != 2:
        return None
    at = first.ctypes.data
    if at % ALIGN:
        return None
    for p in parts:
        if (p.base is not first.base or p.ndim != 2 or not p.flags.c_contiguous
                or p.dtype != first.dtype or p.shape[1] != first.shape[1]
                or p.ctypes.data != at):
            return None
        at += p.nbytes
    rows = sum(p.shape[0] for p in parts)
    return np.lib.stride_tricks.as_strided(first, (rows, first.shape[1]), first.strides,
                                           writeable=False)
