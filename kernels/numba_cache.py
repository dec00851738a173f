"""Where Numba caches fastgrok's kernels (see the package docstring).

Importing this module puts a locator first in Numba's list that sends this package's kernels to
:func:`cache_dir`.
"""
from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def cache_dir() -> str:
    """The folder that holds the Numba cache of fastgrok's kernels (see the module docstring)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    if os.environ.get("FASTGROK_CACHE_DIR"):
        return os.environ["FASTGROK_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastgrok")


def _other_stamps(own):
    """(name, mtime, size) of every module of this package but ``own``, in name order."""
    out = []
    for name in sorted(os.listdir(_HERE)):
        path = os.path.join(_HERE, name)
        if name.endswith(".py") and path != os.path.abspath(own):
            st = os.stat(path)
            out.append((name, st.st_mtime, st.st_size))
    return out


def _install_cache_locator():
    """Put a locator first in Numba's list that sends this package's kernels to cache_dir()."""
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover - numba missing: the GPU path does not need it
        return
    # The names lost their leading underscore in numba 0.61; accept both.
    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
    user_wide = (getattr(caching, "UserWideCacheLocator", None)
                 or caching._UserWideCacheLocator)
    if any(getattr(c, "_fastgrok", False) for c in impl._locator_classes):
        return

    class FastgrokCacheLocator(user_wide):
        _fastgrok = True

        def __init__(self, py_func, py_file):
            super().__init__(py_func, py_file)
            self._cache_path = os.path.join(cache_dir(), "numba",
                                            self.get_suitable_cache_subpath(py_file))

        def get_source_stamp(self):
            # Every kernel module, not only the function's own: kernels call kernels of other
            # modules (the coefficients kernel inside the direct step), and a cache keyed on one
            # file would keep a stale copy of an edited callee.
            return (super().get_source_stamp(), *_other_stamps(self._py_file))

        @classmethod
        def from_function(cls, py_func, py_file):
            ours = os.path.dirname(os.path.abspath(py_file)) == _HERE
            if not ours or os.environ.get("NUMBA_CACHE_DIR"):
                return None  # not ours, or the user chose a cache folder: Numba's own rules
            return super().from_function(py_func, py_file)

    impl._locator_classes = [FastgrokCacheLocator, *impl._locator_classes]


_install_cache_locator()



def kernel(signatures, **options):
    """``numba.njit(signatures, **options)``, its signatures compiled at the kernel's first use.

    Nothing compiles at import: the first call of the kernel (from Python, or the compilation
    of a kernel that calls it) compiles, or loads from the on-disk cache, its declared
    signatures and then locks the kernel to them, as ``njit(signatures)`` does at import. Calls
    then convert their arguments to a declared signature (a C-contiguous array to an ``A``
    layout) or fail, exactly as before, so a run compiles only the kernels its plan uses (a
    float32 gram run never builds the direct, smooth or patch kernels) and every kernel keeps
    its declared types (``declared_signatures``; :func:`compile_declared` compiles them up
    front).
    """
    from numba import njit
    from numba.core.compiler_lock import global_compiler_lock

    sigs = [signatures] if isinstance(signatures, str) else list(signatures)

    def wrap(fn):
        dispatcher = njit(**options)(fn)
        dispatcher.declared_signatures = sigs
        call_template = dispatcher.get_call_template

        def compile_once():
            # Numba's own compiler lock: two threads may reach a kernel's first call at once,
            # and a kernel's compilation compiles the kernels it calls under the same lock.
            with global_compiler_lock:
                if dispatcher._can_compile:
                    for sig in sigs:
                        dispatcher.compile(sig)
                    dispatcher.disable_compile()

        def first_call(*args, **kws):
            # Numba asks for a callable when no overload matches and compiling is allowed;
            # locked to the declared signatures, the dispatcher itself resolves the call.
            compile_once()
            return dispatcher

        def typed_call(args, kws):  # a kernel that calls this one is being compiled
            compile_once()
            return call_template(args, kws)

        dispatcher._compile_for_args = first_call
        dispatcher.get_call_template = typed_call
        return dispatcher

    return wrap


def declared_kernels(module):
    """The kernels of ``module`` made with :func:`kernel`, by name."""
    return {name: obj for name, obj in vars(module).items()
            if getattr(obj, "declared_signatures", None) is not None
            and getattr(obj, "__module__", None) == module.__name__}


def compile_declared(*modules) -> None:
    """Compile (or load from the cache) every declared signature of the modules' kernels."""
    from numba.core.compiler_lock import global_compiler_lock

    for module in modules:
        for dispatcher in declared_kernels(module).values():
            with global_compiler_lock:
                if dispatcher._can_compile:
                    for sig in dispatcher.declared_signatures:
                        dispatcher.compile(sig)
                    dispatcher.disable_compile()
