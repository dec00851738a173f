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
    """``numba.njit(signatures, **options)``, each signature compiled when first needed.

    Nothing compiles at import. A kernel whose declared signatures all take C-contiguous
    arrays compiles (or loads from the on-disk cache) only the declared signature that a call
    needs, the first time a call (from Python, or the compilation of a kernel that calls it)
    needs it; a kernel with ``A``-layout arguments compiles all its declared signatures at its
    first call and is then locked to them, as ``njit(signatures)`` locks it at import. Either
    way a call converts its arguments to a declared signature (a C-contiguous array to an
    ``A`` layout, a float32 scalar to float64) or fails, and never compiles a specialisation
    of its own: the same code and the same bits as the signatures compiled at import, while a
    run compiles only what its plan uses (``declared_signatures``; :func:`compile_declared`
    compiles them all up front).
    """
    from numba import njit
    from numba.core import sigutils
    from numba.core.compiler_lock import global_compiler_lock

    sigs = [signatures] if isinstance(signatures, str) else list(signatures)

    def wrap(fn):
        dispatcher = njit(**options)(fn)
        dispatcher.declared_signatures = sigs
        call_template = dispatcher.get_call_template
        formals = []

        def declared():
            if not formals:
                formals.extend((sigutils.normalize_signature(sig)[0], sig) for sig in sigs)
            return formals

        def lock_all():
            if dispatcher._can_compile:
                for sig in sigs:
                    dispatcher.compile(sig)
                dispatcher.disable_compile()

        def matching(argtypes):
            """The declared signatures the argument types convert to, compiled; in order."""
            out = []
            for formal, sig in declared():
                if len(formal) == len(argtypes) and all(
                        dispatcher.typingctx.can_convert(a, f) is not None
                        for a, f in zip(argtypes, formal, strict=True)):
                    if formal not in dispatcher.overloads:
                        dispatcher.compile(sig)
                    out.append(formal)
            return out

        def strict():
            return any(getattr(t, "layout", "C") == "A" for f, _ in declared() for t in f)

        def first_call(*args, **kws):
            # Numba asks for a callable when no compiled signature matches the call exactly.
            with global_compiler_lock:
                if strict():
                    lock_all()
                    return dispatcher
                argtypes = [dispatcher.typeof_pyval(a) for a in args]
                found = matching(argtypes)
            if not found:
                raise TypeError(f"{fn.__name__}: no declared signature takes "
                                f"({', '.join(map(str, argtypes))}); declared: {sigs}")
            return dispatcher.overloads[found[0]].entry_point

        def typed_call(args, kws):  # a kernel that calls this one is being compiled
            with global_compiler_lock:
                if strict():
                    lock_all()
                    return call_template(args, kws)
                matching(list(args))
                allowed, dispatcher._can_compile = dispatcher._can_compile, False
                try:  # resolve among the declared signatures only
                    return call_template(args, kws)
                finally:
                    dispatcher._can_compile = allowed

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
