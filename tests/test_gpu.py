"""The GPU backend. One test body runs with the GPU code path on a CPU stand-in for CuPy
(everywhere: every launch checked against the kernels' C signatures, the kernels emulated block
by block) and with CuPy and the compiled CUDA kernels (marked gpu).

On a GPU check run (``FASTGROK_REQUIRE_GPU=1``, set by ``bench/gpu_check.py``) a GPU test that
cannot run fails with the reason instead of skipping. This module imports no Numba: the GPU
machine may not have it.
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import random_problem
from fastgrok.kernels import cuda

import fastgrok as fg
from fastgrok import reference as ref
from fastgrok.config import LOSSES
from fastgrok.engines import CupyOps, DirectEngine, GramEngine, NumpyOps
from fastgrok.sources import ArraySource, GeneratedSource
from fastgrok.testing import StandInCupy

# The CuPy engines are experimental until verified on a GPU; that is what these tests verify.
pytestmark = pytest.mark.filterwarnings("ignore::fastgrok.plan.ExperimentalWarning")
REQUIRE_GPU = os.environ.get("FASTGROK_REQUIRE_GPU") == "1"


def _need_gpu():
    status = cuda.gpu_status()
    if status != "ok":
        if REQUIRE_GPU:  # a GPU check run: a skip would read as a pass
            pytest.fail(f"FASTGROK_REQUIRE_GPU=1 but no usable GPU: {status}")
        pytest.skip(f"no usable CUDA GPU with CuPy here ({status}); the same test body runs "
                    "on the CPU stand-in")


def standin_ops():
    """The GPU operations over the CPU stand-in for CuPy (checked, emulated launches)."""
    cp = StandInCupy()
    return CupyOps(kernels=cuda.CudaKernels(cupy=cp), xp=cp)


@pytest.fixture(params=["standin", pytest.param("cupy", marks=pytest.mark.gpu)])
def ops(request):
    if request.param == "standin":
        return standin_ops()
    _need_gpu()
    from fastgrok.engines import get_ops

    return get_ops("cupy")


def _gram_pair(srcs, lr, dtype, ops, steps):
    """The gram engine over ``ops`` and over NumPy, both stepped ``steps`` times."""
    eng = GramEngine(srcs, lr, dtype, ops=ops)
    cpu = GramEngine(srcs, lr, dtype, ops=NumpyOps())
    for _ in range(steps):
        eng.step()
        cpu.step()
    return eng, cpu


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
    np.testing.assert_allclose(ops.to_host(eng.W), W64, rtol=0, atol=rel * np.abs(W64).max())


@pytest.mark.parametrize("n_test", [6, 0], ids=["test-set", "no-test-set"])
def test_gram_m_beyond_one_block_two_stacked_runs_match_the_numpy_engine(ops, n_test):
    """m = 300 > THREADS: every row's reduction spans two strides of the block; two runs
    stacked (row -> run indexing); a test set of another size than the training set, or none."""
    assert 300 > cuda.THREADS
    cfg = fg.Config(n=10, p=700, m=300, n_test=max(n_test, 1), runs=2, lr=1e-2, init_scale=1e-2,
                    dtype="float64", representation="full")
    srcs = [GeneratedSource(cfg, r) for r in range(2)]
    if n_test == 0:
        srcs = [ArraySource(*[getattr(s.problem("float64"), k) for k in ("X", "y")], cfg.m,
                            W0=s.problem("float64").W0, a=s.a) for s in srcs]
    eng = GramEngine(srcs, cfg.lr, "float64", ops=ops)
    cpu = GramEngine(srcs, cfg.lr, "float64", ops=NumpyOps())
    for _ in range(6):
        for got, want in zip(eng.evaluate(), cpu.evaluate()):
            assert got["train_acc"] == want["train_acc"]
            for k in ("train_loss", "test_loss"):
                assert got[k] == pytest.approx(want[k], rel=1e-12, nan_ok=True)
            if got["P1"] is not None:
                np.testing.assert_allclose(got["P1"], want["P1"], rtol=1e-12, atol=1e-300)
        eng.step()
        cpu.step()
    np.testing.assert_allclose(ops.to_host(eng.Ct), cpu.Ct, rtol=1e-12, atol=1e-300)


FAMILY = [(act, leak, loss) for act, leak in (("relu", None), ("leaky_relu", 0.2))
          for loss in LOSSES]


@pytest.mark.parametrize("act,leak,loss", FAMILY, ids=[f"{a}-{l}" for a, _, l in FAMILY])
def test_every_activation_and_loss_matches_the_numpy_engines(ops, act, leak, loss):
    """The model family through the GPU kernels: the gram engine against NumPy's over 8 steps
    that leave the tiny-output regime (so the losses differ), and one direct step against
    the reference, float64."""
    from fastgrok.model import Model

    model = Model(act, leak, loss)
    cfg = fg.Config(n=10, p=600, m=20, n_test=6, runs=2, lr=3e-2, init_scale=3e-2,
                    dtype="float64", representation="full")
    srcs = [GeneratedSource(cfg, r) for r in range(2)]
    eng = GramEngine(srcs, cfg.lr, "float64", ops=ops, model=model)
    cpu = GramEngine(srcs, cfg.lr, "float64", ops=NumpyOps(), model=model)
    for _ in range(8):
        eng.step()
        cpu.step()
    for got, want in zip(eng.evaluate(), cpu.evaluate()):
        assert got["train_acc"] == want["train_acc"] and got["test_acc"] == want["test_acc"]
        for k in ("train_loss", "test_loss"):
            assert got[k] == pytest.approx(want[k], rel=1e-12)
    np.testing.assert_allclose(ops.to_host(eng.Ct), cpu.Ct, rtol=1e-11, atol=1e-300)
    assert abs(cpu.evaluate()[0]["train_loss"] - cfg_loss0(loss)) > 1e-6  # outputs not tiny
    X, y, W, a = random_problem(3, 7, 50, 5)
    xp = ops.xp
    Wd = xp.asarray(W.copy())
    DirectEngine.step_fn(xp.asarray(X), xp.asarray(y), Wd, xp.asarray(a), 0.1, ops=ops, model=model)
    want = ref.step(X, y, W.copy(), a, 0.1, model.slope, model.loss)
    np.testing.assert_allclose(ops.to_host(Wd), want, rtol=1e-12)


def cfg_loss0(loss):
    """The loss of a zero output: log 2 (logistic) or 1 (exponential, hinge)."""
    return np.log(2) if loss == "logistic" else 1.0


def test_float32_gram_on_the_gpu_path_stays_within_float32_rounding_of_the_cpu(ops):
    """The documented difference: the GPU sums a row in a tree (the CPU in a vectorised loop),
    so float32 runs agree to rounding, not to the bit. Its size, measured here: accuracies equal,
    losses and projections to 1e-6 relative over 20 steps."""
    cfg = fg.Config(n=30, p=2000, m=40, n_test=20, runs=2, lr=1e-3, init_scale=1e-3,
                    representation="full")
    eng, cpu = _gram_pair([GeneratedSource(cfg, r) for r in range(2)], cfg.lr, "float32", ops, 20)
    for got, want in zip(eng.evaluate(), cpu.evaluate()):
        assert got["train_acc"] == want["train_acc"] and got["test_acc"] == want["test_acc"]
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6)
        np.testing.assert_allclose(got["P1"], want["P1"], rtol=1e-6, atol=1e-6 * np.abs(want["P1"]).max())


def test_single_step_matches_reference(ops):
    X, y, W, a = random_problem(3, 7, 50, 5)
    xp = ops.xp
    Wd = xp.asarray(W.copy())
    DirectEngine.step_fn(xp.asarray(X), xp.asarray(y), Wd, xp.asarray(a), 0.1, ops=ops)
    np.testing.assert_allclose(ops.to_host(Wd), ref.step(X, y, W.copy(), a, 0.1), rtol=1e-12)


def test_step_with_float64_inputs_and_float32_weights_is_memory_safe(ops):
    """A float64 X with float32 W used to give a float64 Z, so the float64 kernel wrote doubles
    into the float32 V buffer: past its end. X now takes W's dtype, and a launch whose pointers
    do not match the kernel's signature is refused before it runs."""
    X, y, W, a = random_problem(5, 8, 40, 6)
    xp = ops.xp
    W32 = xp.asarray(W.astype(np.float32))
    DirectEngine.step_fn(xp.asarray(X), xp.asarray(y), W32, xp.asarray(a), 0.1, ops=ops)
    want = ref.step(X.astype(np.float32).astype(np.float64), y, W.astype(np.float32).astype(np.float64), a, 0.1)
    np.testing.assert_allclose(ops.to_host(W32), want, rtol=1e-5, atol=1e-6)


def test_every_launch_is_checked_against_the_kernel_signatures():
    k = cuda.CudaKernels(cupy=StandInCupy())
    # Fetched (so compiled) once, at construction: every kernel of the source, no more.
    assert sorted(k.module.fetched) == sorted(cuda.signatures()) and len(k.module.fetched) == 4
    Z = np.zeros((6, 3), np.float64)
    V32 = np.zeros((6, 3), np.float32)
    y, a = np.ones(6), np.ones((2, 3))
    with pytest.raises(TypeError, match="argument 6 must be a float64 array"):
        k.coefficients(Z, y, a, 0.1, 3, V32, False)  # the old step_fn bug: float64 Z, float32 V
    with pytest.raises(TypeError, match="C-contiguous"):
        k.outputs(np.zeros((3, 6))[:, ::2], a, 3)
    with pytest.raises(TypeError, match="argument 2 must be a int32 scalar"):
        cuda.check_launch("outputs_f64", (Z, a, 3, np.int32(3), np.zeros(6), np.float64(0),
                                          np.int32(0), np.float64(0)))
    with pytest.raises(TypeError, match="argument 5 must be a float64 scalar"):
        cuda.check_launch("outputs_f64", (Z, a, np.int32(3), np.int32(3), np.zeros(6), 0.1,
                                          np.int32(0), np.float64(0)))
    with pytest.raises(TypeError, match="5 arguments for 13"):
        cuda.check_launch("coefficients_f32", (Z, y, a, 0.1, 3))
    # What the engines launch passes, and the launches happen (none was skipped).
    eng = GramEngine([GeneratedSource(fg.Config(n=5, p=50, m=4, n_test=3, runs=1), 0)], 1e-3,
                     "float32", ops=CupyOps(kernels=k, xp=StandInCupy()))
    eng.step()
    eng.evaluate()
    assert {"coefficients_f32", "outputs_f32"} <= set(k.module.launches)


def test_the_contract_is_read_from_the_cuda_source():
    sig = cuda.signatures()
    assert sig["coefficients_f32"] == [("float", True), ("double", True), ("double", True),
                                       ("double", False), ("int", False), ("int", False),
                                       ("float", True), ("double", True), ("int", False),
                                       ("double", False), ("int", False), ("double", False),
                                       ("int", False)]
    assert sig["outputs_f64"] == [("double", True), ("double", True), ("int", False),
                                  ("int", False), ("double", True), ("double", False),
                                  ("int", False), ("double", False)]


@pytest.mark.gpu
def test_public_api_on_device_arrays():
    _need_gpu()
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


def test_device_arrays_are_checked_once_per_buffer(monkeypatch):
    """fg.step on device arrays: each check is a device sync; an unchanged buffer is checked
    once, not at every step."""
    from fastgrok import _validate as v

    class Dev(np.ndarray):  # a host array that reports itself as a device array
        pass

    calls = []
    monkeypatch.setattr(v, "_xp", lambda x: "device" if isinstance(x, Dev) else np)
    monkeypatch.setattr(v, "_checked", v.collections.OrderedDict())
    arr = np.ones(4).view(Dev)
    arr_data = type("D", (), {"ptr": arr.ctypes.data})()
    monkeypatch.setattr(Dev, "data", property(lambda self: arr_data), raising=False)
    for _ in range(3):
        v.once_per_buffer(arr, lambda x: calls.append(1) or x)
    assert len(calls) == 1
    host = np.ones(4)
    for _ in range(3):
        v.once_per_buffer(host, lambda x: calls.append(2) or x)
    assert calls.count(2) == 3


def _cu():
    src = os.path.join(os.path.dirname(fg.__file__), "kernels", "gpu_kernels.cu")
    if not os.path.exists(src):  # editable install: kernels/ sits beside fastgrok/
        import fastgrok.kernels

        src = os.path.join(os.path.dirname(fastgrok.kernels.__file__), "gpu_kernels.cu")
    return src


@pytest.mark.slow  # a subprocess
@pytest.mark.parametrize("threads,ok", [(cuda.THREADS, True), (200, False), (None, False)],
                         ids=["launch-threads", "not-a-power-of-two", "undefined"])
def test_cuda_sources_compile_with_nvcc_only_with_a_valid_block_size(tmp_path, threads, ok):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found: the CUDA sources are not compile-checked here")
    define = [] if threads is None else [f"-DFG_THREADS={threads}"]
    out = subprocess.run([nvcc, "-arch=sm_90", "-cubin", *define, "-o", str(tmp_path / "k.cubin"),
                          _cu()], capture_output=True, text=True)
    assert (out.returncode == 0) == ok, out.stderr


@pytest.mark.slow  # a subprocess
def test_import_touches_neither_cupy_nor_numba():
    code = "import sys, fastgrok; print('cupy' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.slow  # a subprocess
def test_the_gpu_path_and_its_tests_need_no_numba(tmp_path):
    """The GPU machine may have no working Numba: this module and the GPU code path (with the
    NumPy engine it is compared with) must run with Numba unimportable."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['numba'] = None\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.path.dirname(__file__)]),
               FASTGROK_REQUIRE_GPU="0")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          __file__, "-k", "standin"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout


def test_population_accuracy_and_weights_on_the_gpu_path(ops):
    """The GPU gram engine is the CPU's: it has weights() and population test accuracy."""
    from fastgrok.sources import ReducedSource

    cfg = fg.Config(n=12, p=10**6, m=8, n_test=4, runs=2, lr=1e-3, init_scale=1e-3,
                    population_test_samples=50, dtype="float64")
    eng, cpu = _gram_pair([ReducedSource(cfg, r) for r in range(2)], cfg.lr, "float64", ops, 3)
    for got, want in zip(eng.evaluate(), cpu.evaluate()):
        assert got["test_acc"] == want["test_acc"] and got["test_acc_se"] == want["test_acc_se"]
    np.testing.assert_allclose(eng.weights(1), cpu.weights(1), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("Engine", [GramEngine, DirectEngine])
def test_research_paths_on_the_device_ops(ops, Engine):
    """Kept networks, interpolation stops and dropped runs on the device operations."""
    from fastgrok.sources import ArraySource

    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((12, 40)), np.where(rng.random(12) < 0.5, 1.0, -1.0)
    runs = 3 if Engine is GramEngine else 1
    srcs = [ArraySource(X, y, 5, 0.1, 0, r, a=rng.standard_normal(5)) for r in range(runs)]
    eng = Engine(srcs, 0.3, "float64", ops=ops)
    taken, fired = eng.advance_until_interpolation(50)
    for i, src in enumerate(srcs):
        W = src.problem("float64").W0
        t = fired[i] or taken
        for _ in range(t):
            ref.step(X, y, W, src.a, 0.3)
        np.testing.assert_allclose(eng.network(i).weights()[0], W, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(eng.outputs()[i], ref.forward(X, W, src.a)[1], rtol=1e-10,
                                   atol=1e-14)
    if Engine is GramEngine:
        keep = [2, 0]
        before = [eng.network(i).weights()[0] for i in keep]
        eng.select(keep)
        for j in range(2):
            np.testing.assert_array_equal(eng.network(j).weights()[0], before[j])
