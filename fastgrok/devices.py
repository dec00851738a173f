"""What this machine offers: a usable GPU, and compiling the kernels up front."""
from __future__ import annotations

import time

from . import tunables


def gpu_usable() -> bool:
    """True when CuPy imports and sees a CUDA device (never raises)."""
    from .kernels.cuda import gpu_usable as usable

    return usable()


def warmup(backends: tuple = ("numba",)) -> dict:
    """Compile (or load from the on-disk cache) the kernels of ``backends`` now.

    Returns the seconds each took. Training compiles on first use anyway; call this up front to
    keep compile time out of a benchmark or a timed run.
    """
    times = {}
    for b in backends:
        t0 = time.perf_counter()
        if b == "numba":
            from .kernels import direct_cpu, normals, numba_fused
            from .kernels.numba_cache import compile_declared

            modules = [numba_fused, direct_cpu, normals]
            if tunables.GRAM_LINEAR_REGIME:
                from .kernels import gram_linear

                modules.append(gram_linear)
            compile_declared(*modules)  # the kernels compile on first use otherwise
        elif b == "cupy":
            from .engines import get_ops

            get_ops("cupy")  # compiles the CUDA module and fetches every kernel (needs a GPU)
        else:
            raise ValueError(f"unknown backend {b!r}; expected 'numba' or 'cupy'")
        times[b] = time.perf_counter() - t0
    return times
