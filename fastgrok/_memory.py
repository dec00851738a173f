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
