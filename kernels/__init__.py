"""Compute kernels of fastgrok (installed as ``fastgrok.kernels``).

Numba CPU kernels and CUDA C sources for CuPy live here, separate from the Python API. Nothing
in this package is compiled at import: Numba kernels compile (or load from the on-disk cache) on
first call, CUDA sources when a CuPy engine is first built.
"""
