"""The GPU backend. One test body runs with the GPU operations on NumPy arrays and emulated
kernels (everywhere: checks the orchestration, stacked runs and row indexing) and with CuPy and
the compiled CUDA kernels (marked gpu: the kernels and cuBLAS calls themselves)."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastgrok as fg
from conftest import random_problem
from fastgrok import reference as ref
from fastgrok.engines import DirectEngine, GramEngine
from fastgrok.engines.ops_cupy import CupyOps
from fastgrok.kernels.cuda import EmulatedKernels
from fastgrok.sources import ArraySource, GeneratedSource

# The CuPy engines are experimental until verified on a GPU; that is what these tests verify.
pytestmark = pytest.mark.filterwarnings("ignore::fastgrok.plan.ExperimentalWarning")

_NO_GPU = "no usable CUDA GPU with CuPy here (the same test body runs with emulated kernels)"


@pytest.fixture(params=["emulated", pytest.param("cupy", marks=pytest.mark.gpu)])
def ops(request):
    if request.param == "emulated":
        return CupyOps(kernels=EmulatedKernels(), xp=np)
    if not fg.gpu_usable():
        pytest.skip(_NO_GPU)
    from fastgrok.engines.ops_cupy import cupy_ops

    return cupy_ops()


def _host(ops, x):
    return ops.to_host(x)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_direct_engine_trajectory(ops, dtype):
    X, y, W, a = random_problem(0, 12, 300, 9, scale=0.1)
    Xt, yt = X[::-1] + 0.3, -y[::-1]
    mu1, mu2 = 3 * np.eye(300)[0], 3 * np.eye(300)[1]
    src = ArraySource(X, y, 9, X_test=Xt, y_test=yt, mu1=mu1, mu2=mu2, W0=W.copy(), a=a)
    eng = DirectEngine([src], 0.2, dtype, ops=ops)
    X64, Xt64, W64 = (v.astype(dtype).astype(np.float64) for v in (X, Xt, W))
    rel = 1e-9 if dtype == np.float64 else 1e-3
    for _ in range(10):
        (got,) = eng.evaluate()
        want = ref.evaluate(X64, y, W64, a, Xt64, yt, mu1, mu2)
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=rel)
        assert got["test_loss"] == pytest.approx(want["test_loss"], rel=rel)
        assert abs(got["train_acc"] - want["train_acc"]) <= 1 / 12 * (dtype == np.float32)
        np.testing.assert_allclose(got["P1"], want["P1"], rtol=0, atol=rel * np.abs(W64).max() * 3)
        ref.step(X64, y, W64, a, 0.2)
        eng.step()
    np.testing.assert_allclose(_host(ops, eng.W), W64, rtol=0, atol=rel * np.abs(W64).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gram_engine_batched_runs_match_cpu_gram(ops, dtype):
    cfg = fg.Config(n=10, p=200, m=7, n_test=6, runs=3, lr=1e-2, init_scale=1e-2, dtype="float64")
    srcs = [GeneratedSource(cfg, r) for r in range(3)]
    eng = GramEngine(srcs, cfg.lr, dtype, ops=ops)
    cpu = fg.engines.ENGINES[("gram", "numpy")](srcs, cfg.lr, "float64")
    rel = 1e-9 if dtype == np.float64 else 1e-3
    for _ in range(8):
        for got, want in zip(eng.evaluate(), cpu.evaluate()):
            assert got["train_loss"] == pytest.approx(want["train_loss"], rel=rel)
            assert got["test_loss"] == pytest.approx(want["test_loss"], rel=rel)
            np.testing.assert_allclose(got["P1"], want["P1"], rtol=rel, atol=1e-300)
        eng.step()
        cpu.step()
    np.testing.assert_allclose(_host(ops, eng.Ct), cpu.Ct, rtol=rel, atol=1e-300)


def test_single_step_matches_reference(ops):
    X, y, W, a = random_problem(3, 7, 50, 5)
    xp = ops.xp
    Wd = xp.asarray(W.copy())
    DirectEngine.step_fn(xp.asarray(X), xp.asarray(y), Wd, xp.asarray(a), 0.1, ops=ops)
    np.testing.assert_allclose(_host(ops, Wd), ref.step(X, y, W.copy(), a, 0.1), rtol=1e-12)


@pytest.mark.gpu
def test_public_api_on_device_arrays():
    if not fg.gpu_usable():
        pytest.skip(_NO_GPU)
    import cupy

    X, y, W, a = random_problem(4, 9, 80, 6)
    Wd = cupy.asarray(W.copy())
    out = fg.step(cupy.asarray(X), cupy.asarray(y), Wd, cupy.asarray(a), 0.1)
    assert out is Wd
    np.testing.assert_allclose(cupy.asnumpy(Wd), ref.step(X, y, W.copy(), a, 0.1), rtol=1e-12)
    cfg = fg.Config(n=20, p=3000, m=30, n_test=40, runs=2, steps=5, dtype="float64",
                    representation="full")
    for method in ("direct", "gram"):
        h_gpu = fg.run(cfg.replace(backend="cupy", method=method), progress=False).history
        h_cpu = fg.run(cfg.replace(backend="numpy", method="direct"), progress=False).history
        np.testing.assert_allclose(h_gpu["train_loss"], h_cpu["train_loss"], rtol=1e-9)


def test_cuda_sources_compile_with_nvcc(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found: the CUDA sources are not compile-checked here")
    src = os.path.join(os.path.dirname(fg.__file__), "kernels", "gpu_kernels.cu")
    if not os.path.exists(src):  # editable install: kernels/ sits beside fastgrok/
        import fastgrok.kernels

        src = os.path.join(os.path.dirname(fastgrok.kernels.__file__), "gpu_kernels.cu")
    out = subprocess.run([nvcc, "-arch=sm_90", "-cubin", "-o", str(tmp_path / "k.cubin"), src],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_import_touches_neither_cupy_nor_numba():
    code = "import sys, fastgrok; print('cupy' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
