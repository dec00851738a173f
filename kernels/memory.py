"""Aligned allocation for every array the engines and kernels compute on.

Inside :func:`reusing` (a training), big buffers that are freed are kept and handed out again
for the next request of the same size: a training's batches and runs allocate the same arrays
over and over, and the C allocator gives big blocks back to the system when they are freed, so
that each is mapped again, a page fault per 4 KiB, the next time (on a VM with several threads
that is slow). Outside it, and for small arrays, allocation is NumPy's.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

#: Alignment of every array fastgrok allocates for its engines, bytes (one cache line, and a
#: multiple of every SIMD width in use).
ALIGN = 64
#: Smallest buffer, bytes, that :func:`reusing` keeps for reuse.
REUSE_MIN = 1 << 18
#: Most bytes of freed buffers kept for reuse at a time (beyond: given back).
REUSE_MAX = 1 << 30


class _Pool:
    """Freed buffers by size, kept while a :func:`reusing` context is open."""

    def __init__(self):
        self.free = {}  # size in bytes -> raw uint8 buffers
        self.held = 0   # bytes in free
        self.open = 0   # reusing() contexts open
        self.lock = threading.Lock()

    def take(self, size):
        with self.lock:
            stack = self.free.get(size) if self.open else None
            if not stack:
                return None
            self.held -= size
            return stack.pop()

    def give(self, raw):
        with self.lock:
            if self.open and self.held + raw.nbytes <= REUSE_MAX:
                self.free.setdefault(raw.nbytes, []).append(raw)
                self.held += raw.nbytes

    def enter(self):
        with self.lock:
            self.open += 1

    def leave(self):
        with self.lock:
            self.open -= 1
            if not self.open:
                self.free.clear()
                self.held = 0


_POOL = _Pool()


class _Lease:
    """The owner of a pooled buffer's arrays.

    When the last of them is gone, the buffer goes back to the pool (or to NumPy, once no
    :func:`reusing` context is open).
    """

    __slots__ = ("raw", "__array_interface__")

    def __init__(self, raw, start, size):
        self.raw = raw
        self.__array_interface__ = {"shape": (size,), "typestr": "|u1", "version": 3,
                                    "data": (raw.ctypes.data + start, False)}

    def __del__(self, _pool=_POOL):  # (bound here: module globals may be gone at exit)
        _pool.give(self.raw)


@contextlib.contextmanager
def reusing():
    """Keep the big buffers of :func:`empty_aligned` for reuse inside this context.

    Buffers of :data:`REUSE_MIN` bytes or more are kept when freed and handed out again for
    the next request of their size; on leaving the outermost context they are let go.
    Contexts nest, from any thread.
    """
    _POOL.enter()
    try:
        yield
    finally:
        _POOL.leave()


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
    size = count * dt.itemsize
    if size >= REUSE_MIN and _POOL.open:
        raw = _POOL.take(size + ALIGN)
        if raw is None:
            raw = np.empty(size + ALIGN, np.uint8)
        start = (-raw.ctypes.data) % ALIGN
        buf = np.asarray(_Lease(raw, start, size))
        if zero:
            buf.fill(0)
        return buf.view(dt).reshape(shape)
    raw = (np.zeros if zero else np.empty)(size + ALIGN, np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + size].view(dt).reshape(shape)


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
