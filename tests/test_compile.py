"""The kernels compile on first use, only what a plan uses, and only their declared types."""
import subprocess
import sys

import numba
import numpy as np
from numba.core import sigutils

import fastgrok as fg
from fastgrok.kernels import direct_cpu, gram_linear, normals, numba_fused
from fastgrok.kernels.numba_cache import compile_declared, declared_kernels

MODULES = (numba_fused, gram_linear, direct_cpu, normals)


def _matches(compiled, declared):
    """A compiled argument tuple is a declared one (a declared A layout admits any layout; a
    literal argument of a kernel called from a kernel is its type)."""
    def same(x, y):
        x = numba.types.unliteral(x)
        if isinstance(x, numba.types.Array) and isinstance(y, numba.types.Array):
            return x.dtype == y.dtype and x.ndim == y.ndim and y.layout in ("A", x.layout)
        return x == y

    return len(compiled) == len(declared) and all(map(same, compiled, declared))


def test_importing_the_kernels_compiles_nothing():
    code = ("import fastgrok\n"
            "from fastgrok.kernels import direct_cpu, gram_linear, normals, numba_fused\n"
            "from fastgrok.kernels.numba_cache import declared_kernels\n"
            "print(sum(len(d.signatures) for m in (direct_cpu, gram_linear, numba_fused, normals) "
            "for d in declared_kernels(m).values()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_every_compiled_kernel_has_a_declared_signature():
    # The main plans: the left panel's gram run in float32 (dense steps, then the linear
    # regime), the direct method in both dtypes, fit in float64 with the hinge loss, a smooth
    # activation, patches.
    fg.run(fg.preset("quick", runs=2, steps=12, m=20), progress=False)
    for dtype in ("float32", "float64"):
        fg.run(fg.preset("quick", runs=1, steps=2, m=8, p=500, method="direct",
                         representation="full", dtype=dtype), progress=False)
    X = np.random.default_rng(0).standard_normal((10, 30))
    y = np.where(np.arange(10) % 2, 1.0, -1.0)
    fg.fit(X, y, m=4, lr=0.1, steps=3, loss="hinge")
    fg.fit(X, y, m=4, lr=0.1, steps=3, activation="relu_power", method="direct")
    fg.fit(X.reshape(10, 3, 10), y, m=4, lr=0.1, steps=3)
    compiled = 0
    for module in MODULES:
        for name, d in declared_kernels(module).items():
            declared = [sigutils.normalize_signature(s)[0] for s in d.declared_signatures]
            for sig in d.signatures:
                compiled += 1
                assert any(_matches(sig, dec) for dec in declared), (module.__name__, name, sig)
    assert compiled >= 8


def test_compile_declared_compiles_every_declared_signature():
    compile_declared(numba_fused)
    for name, d in declared_kernels(numba_fused).items():
        assert len(d.signatures) >= len(d.declared_signatures), name
