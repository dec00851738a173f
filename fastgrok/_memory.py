"""Memory estimates, checked before anything large is allocated."""
from __future__ import annotations

import os

from . import tunables


def available_bytes() -> int:
    """Memory the OS reports as available now (MemAvailable), or total RAM as a fallback."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 1 << 62


class InsufficientMemoryError(MemoryError, ValueError):
    """Raised before allocating what the estimate says cannot fit (also a ValueError)."""


def check_fits(nbytes: int, what: str) -> None:
    """Raise :class:`InsufficientMemoryError` naming ``what`` and the estimate if it cannot fit."""
    limit = tunables.MEMORY_FRACTION * available_bytes()
    if nbytes > limit:
        raise InsufficientMemoryError(
            f"{what} needs about {nbytes / 2**30:.2f} GiB, but only {limit / 2**30:.2f} GiB "
            f"({tunables.MEMORY_FRACTION:.0%} of available memory) may be used; reduce p, n, m "
            f"or n_test, or use a method that streams over p"
        )


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
    import numpy as np

    dt = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    count = int(np.prod(shape, dtype=np.int64))
    raw = (np.zeros if zero else np.empty)(count * dt.itemsize + ALIGN, np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + count * dt.itemsize].view(dt).reshape(shape)


def zeros_aligned(shape, dtype):
    """:func:`empty_aligned`, filled with zeros."""
    return empty_aligned(shape, dtype, zero=True)
