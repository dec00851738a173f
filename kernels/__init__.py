"""Compute kernels of fastgrok (installed as ``fastgrok.kernels``).

Numba CPU kernels and CUDA C sources for CuPy live here, separate from the Python API. Nothing
in this package is compiled at import: Numba kernels compile (or load from the on-disk cache) on
first call, CUDA sources when a CuPy engine is first built.

Where Numba's cache goes
------------------------
Numba would write its cache (``*.nbi``, ``*.nbc``) into ``__pycache__`` next to this package
whenever that folder is writable, which for a ``pip install .`` is inside site-packages. Those
files are not in the wheel's RECORD, so an uninstall or a later ``pip install -e .`` leaves a
``site-packages/fastgrok/kernels/__pycache__`` behind, and the leftover ``fastgrok`` folder, now
without ``__init__.py``, is imported as an empty namespace package that hides the real one.
So fastgrok's kernels are cached in a user cache folder instead, never inside the package
(:mod:`.numba_cache`, imported by every module that defines Numba kernels, not by this package,
so that importing fastgrok imports no Numba):
``$NUMBA_CACHE_DIR`` when set (Numba's own rule), else ``$FASTGROK_CACHE_DIR``, else
``$XDG_CACHE_HOME/fastgrok`` (default ``~/.cache/fastgrok``). Numba functions elsewhere in the
user's process keep Numba's default behaviour.
"""
