"""The CUDA kernels of gpu_kernels.cu: compiled by CuPy on first use, launched from here.

Nothing here imports CuPy at module import. :class:`CudaKernels` compiles the module and fetches
every kernel once (CuPy compiles a ``RawModule`` lazily, when a function is first fetched, so
fetching them all up front is what makes :func:`fastgrok.warmup` and its timing real).

The launch contract is read from the ``extern "C"`` signatures of gpu_kernels.cu itself
(:func:`signatures`) and every launch is checked against it before it runs (:func:`check_launch`):
argument count, pointer dtypes, C-contiguity, int and double scalars. A pointer of the wrong
dtype would otherwise make a kernel read or write past a buffer.
"""
from __future__ import annotations

import os
import re

import numpy as np

_CU = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_kernels.cu")
#: Threads per block of every launch; passed to the compiler as -DFG_THREADS (the kernels'
#: shared arrays are sized by it, and it must be a power of two: the source checks both).
THREADS = 256
_C_TYPES = {"float": np.float32, "double": np.float64, "int": np.int32}
_cache = {}


def gpu_usable() -> bool:
    """True when CuPy imports and sees a CUDA device (never raises)."""
    return gpu_status() == "ok"


def gpu_status() -> str:
    """"ok", or why no GPU is usable (the exception CuPy raised, as text)."""
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
        return "ok" if count > 0 else "CuPy sees no CUDA device"
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


def source() -> str:
    """The CUDA source of the kernels (gpu_kernels.cu)."""
    with open(_CU) as fh:
        return fh.read()


def signatures(src=None) -> dict:
    """{kernel name: [(C type, is_pointer), ...]} from the ``__global__`` declarations."""
    src = source() if src is None else src
    out = {}
    for name, args in re.findall(r"__global__\s+void\s+(\w+)\s*\(([^)]*)\)", src):
        if "<" in name:
            continue
        params = []
        for arg in args.split(","):
            words = arg.replace("const", " ").replace("*", " * ").split()
            params.append((words[0], "*" in words))
        out[name] = params
    return {k: v for k, v in out.items() if k.endswith(("_f32", "_f64"))}


def check_launch(name, args, contract=None):
    """Raise TypeError unless ``args`` match the kernel's C signature (see the module doc)."""
    params = (contract or signatures())[name]
    if len(args) != len(params):
        raise TypeError(f"{name}: {len(args)} arguments for {len(params)} parameters")
    for i, ((ctype, pointer), arg) in enumerate(zip(params, args, strict=True)):
        want = _C_TYPES[ctype]
        if pointer:
            if not hasattr(arg, "dtype") or arg.dtype != want:
                raise TypeError(f"{name}: argument {i} must be a {np.dtype(want)} array "
                                f"({ctype}*), got {getattr(arg, 'dtype', type(arg).__name__)}")
            if not arg.flags.c_contiguous:
                raise TypeError(f"{name}: argument {i} ({ctype}*) must be C-contiguous")
        elif type(arg) is not want:
            raise TypeError(f"{name}: argument {i} must be a {np.dtype(want)} scalar ({ctype}), "
                            f"got {type(arg).__name__}")


class CudaKernels:
    """The compiled module and its kernels, fetched once, launched with checked arguments.

    Parameters
    ----------
    cupy : module, optional
        CuPy (default), or a stand-in with the same ``RawModule`` interface
        (:class:`fastgrok.testing.StandInCupy`) that checks and emulates launches on the CPU.
    """

    def __init__(self, cupy=None):
        if cupy is None:
            import cupy
        self.cupy = cupy
        self.contract = signatures()
        self.module = cupy.RawModule(code=source(),
                                     options=("--std=c++14", f"-DFG_THREADS={THREADS}"))
        # Fetching compiles the module: done here, once, so that a launch never compiles.
        self.fn = {name: self.module.get_function(name) for name in self.contract}

    def _launch(self, name, rows, args):
        check_launch(name, args, self.contract)
        self.fn[name]((rows,), (THREADS,), args)

    @staticmethod
    def _suffix(dtype):
        return "f32" if dtype == np.float32 else "f64"

    def outputs(self, Z, a, n_per_run, leak=0.0, act=0, param=0.0):
        """F (rows,) float64 = phi(Z) a per row, rows grouped by run (a: (R, m)).

        ``act``, ``param``: the activation code (0: max(z, leak z); 1: ReLU^param; 2: the
        Huberised leaky ReLU of smoothing param).
        """
        cp = self.cupy
        rows, m = Z.shape
        f = cp.empty(rows, cp.float64)
        a = cp.ascontiguousarray(a, dtype=cp.float64)
        self._launch(f"outputs_{self._suffix(Z.dtype)}", rows,
                     (Z, a, np.int32(n_per_run), np.int32(m), f, np.float64(leak),
                      np.int32(act), np.float64(param)))
        return f

    def coefficients(self, Z, y, a, lr, n_per_run, V, accumulate, leak=0.0, loss=0, act=0,
                     param=0.0):
        """F = phi(Z) a; V (=, or += when accumulate) (lr/n) r(y, f) a phi'(Z)."""
        cp = self.cupy
        rows, m = Z.shape
        f = cp.empty(rows, cp.float64)
        y = cp.ascontiguousarray(y, dtype=cp.float64)
        a = cp.ascontiguousarray(a, dtype=cp.float64)
        self._launch(f"coefficients_{self._suffix(Z.dtype)}", rows,
                     (Z, y, a, np.float64(lr), np.int32(n_per_run), np.int32(m), V, f,
                      np.int32(accumulate), np.float64(leak), np.int32(act), np.float64(param),
                      np.int32(loss)))
        return f

    def gemm_update(self, V, X, W, beta=1.0):
        """W <- beta W + V^T X in place with cuBLAS: no m x p temporary."""
        cublas = getattr(self.cupy, "cublas", None)
        if cublas is None:
            from cupy import cublas
        cublas.gemm("T", "N", V, X, out=W, alpha=1.0, beta=float(beta))


def kernels() -> CudaKernels:
    """The (cached) compiled kernels; compiles on the first call (needs CuPy and a GPU)."""
    if "k" not in _cache:
        _cache["k"] = CudaKernels()
    return _cache["k"]
