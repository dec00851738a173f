"""The numba direct engine against the float64 reference (docs/design.md 1 and 2.1)."""
import numba
import numpy as np
import pytest
from conftest import random_problem
from fastgrok.kernels import blas
from fastgrok.kernels import threads as kthreads
from threadpoolctl import threadpool_info

import fastgrok as fg
from fastgrok import reference as ref
from fastgrok import tunables
from fastgrok.engines import ENGINES
from fastgrok.sources import ArraySource

Engine = ENGINES[("direct", "numba")]
EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}


@pytest.fixture(params=[7, 64, 0], ids=["tile7", "tile64", "tile-default"])
def tile(request, monkeypatch):
    """Force tiny tiles (tail tiles and many chunks run) as well as the default width."""
    monkeypatch.setattr(tunables, "DIRECT_TILE_COLS", request.param)
    return request.param


def _kink_free(X, W, rel):
    """True if no pre-activation is within ``rel`` of a ReLU kink (relative to its scale).

    A mask bit 1[z > 0] may legitimately differ between two correct engines where |z| is at the
    rounding level of the products; beyond such a step trajectories may diverge, so comparisons
    stop at the first step where this is False (and say so).
    """
    Z = X @ W.T
    scale = np.abs(X).sum(1)[:, None] * np.abs(W).max(1)[None, :] + 1e-300
    return bool((np.abs(Z) > rel * scale).all())


def _engine(X, y, W, a, lr, dtype, n_threads=None, X_test=None, y_test=None, mus=(None, None)):
    src = ArraySource(X, y, W.shape[0], X_test=X_test, y_test=y_test, mu1=mus[0], mu2=mus[1],
                      W0=W.copy(), a=a)
    with Engine.runtime(n_threads) as nt:
        return Engine([src], lr, dtype, n_threads=nt)


def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    monkeypatch.setattr(tunables, "DIRECT_TILE_COLS", 32)
    X, y, W, a = random_problem(1, 30, 1000, 20, dtype=np.float32, scale=0.01)
    out = []
    for nt in (1, 2, 3):
        e = _engine(X, y, W, a, 0.1, "float32", n_threads=nt, X_test=X, y_test=y)
        with Engine.runtime(nt):
            for _ in range(5):
                e.step()
        out.append((e.W.copy(), e.Z.copy(), e.Zt.copy()))
    for W_, Z_, Zt_ in out[1:]:
        assert np.array_equal(W_, out[0][0]) and np.array_equal(Z_, out[0][1])
        assert np.array_equal(Zt_, out[0][2])


def test_numpy_fallback_gemm_agrees(monkeypatch):
    X, y, W, a = random_problem(2, 12, 301, 7)
    W1 = fg.step(X, y, W.copy(), a, 0.1, backend="numba")
    monkeypatch.setattr(blas, "FORCE_NUMPY_FALLBACK", True)
    W2 = fg.step(X, y, W.copy(), a, 0.1, backend="numba")
    np.testing.assert_allclose(W1, W2, rtol=1e-13, atol=1e-15)


def test_cblas_found():
    """The fast path is the one in use (else the fallback is silently slower)."""
    assert blas.cblas(), "no CBLAS gemm found in NumPy's BLAS: the numba engine falls back"


@pytest.mark.parametrize("native", [True, False], ids=["native", "pool"])
def test_n_threads_is_honoured_and_restored(monkeypatch, native):
    from fastgrok.kernels import direct_cpu

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    monkeypatch.setattr(tunables, "DIRECT_TILE_COLS", 8)
    monkeypatch.setattr(tunables, "DIRECT_NATIVE_PASS", native)
    before_numba, before_blas = numba.get_num_threads(), blas_threads()
    X, y, W, a = random_problem(3, 5, 40, 3)
    seen = {}

    def spy(real, threads_of):
        def wrapped(*args, **kwargs):
            seen["n"] = threads_of(*args)
            seen["blas"] = blas_threads()
            return real(*args, **kwargs)
        return wrapped

    if native:  # the parallel region runs on Numba's threads
        monkeypatch.setattr(direct_cpu, "_native_step",
                            spy(direct_cpu._native_step, lambda *_: numba.get_num_threads()))
    else:
        monkeypatch.setattr(kthreads, "pool", spy(kthreads.pool, lambda n: n))
    fg.step(X, y, W, a, 0.1, backend="numba", n_threads=2)
    assert seen["n"] == 2 and set(seen["blas"]) == {1}  # our threads, single-threaded BLAS
    assert numba.get_num_threads() == before_numba and blas_threads() == before_blas


def test_native_pass_equals_the_pool_pass(monkeypatch):
    """The parallel region and the Python pool compute the same bits (every optional product)."""
    from fastgrok.kernels import direct_cpu

    assert direct_cpu.gemm_addresses() is not None, "no ILP64 CBLAS: the native pass never runs"
    rng = np.random.default_rng(11)
    for dt, (n, m, p, nt, k, tw) in [(np.float32, (13, 7, 1000, 5, 3, 64)),
                                     (np.float64, (9, 4, 333, 2, 1, 100)),
                                     (np.float32, (30, 20, 5000, 0, 2, 0))]:
        X, Xt = rng.standard_normal((n, p)).astype(dt), rng.standard_normal((nt, p)).astype(dt)
        W, mus = rng.standard_normal((m, p)).astype(dt), rng.standard_normal((k, p)).astype(dt)
        V = rng.standard_normal((n, m)).astype(dt)
        out = []
        for native in (True, False):
            Wc = W.copy()
            with kthreads.threads(2) as nth:
                res = direct_cpu.tile_pass(X, Wc, V=V, Xt=Xt if nt else None, mus=mus,
                                           n_threads=nth, tile_bytes=1 << 20, tile_cols=tw,
                                           chunks=3, native=native)
            out.append((Wc, *res))
        for a_, b_ in zip(*out, strict=True):
            assert (a_ is None and b_ is None) or np.array_equal(a_, b_)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("model", [{}, {"activation": "leaky_relu", "leak": 0.1, "loss": "hinge"},
                                   {"loss": "exponential"}], ids=["relu", "leaky-hinge", "exp"])
def test_native_step_equals_the_pool_step(monkeypatch, dtype, model):
    """fg.step in one compiled call gives the bits of the pass-by-pass step."""
    monkeypatch.setattr(tunables, "DIRECT_TILE_COLS", 64)
    X, y, W, a = random_problem(5, 17, 700, 9, dtype=dtype, scale=0.1)
    out = []
    for native in (True, False):
        monkeypatch.setattr(tunables, "DIRECT_NATIVE_PASS", native)
        Wc = W.copy()
        fs = [fg.step(X, y, Wc, a, 0.05, n_threads=2, return_outputs=True, **model)[1]
              for _ in range(3)]
        out.append((Wc, *fs))
    for a_, b_ in zip(*out, strict=True):
        assert np.array_equal(a_, b_)


def test_native_step_leaves_w_unchanged_on_overflow():
    X, y, W, a = random_problem(6, 8, 50, 4)
    W[:] = 1e308  # X W^T overflows
    before = W.copy()
    with pytest.raises(ValueError, match="not finite"):
        fg.step(X, y, W, a, 0.1, backend="numba", loss="exponential")
    assert np.array_equal(W, before)


def test_run_numba_equals_run_numpy_in_float64(small_cfg):
    h_np = fg.run(small_cfg, progress=False).history
    h_nb = fg.run(small_cfg.replace(backend="numba"), progress=False).history
    for col in ("train_acc", "test_acc"):
        assert (h_np[col] == h_nb[col]).all()
    for col in ("train_loss", "test_loss", "pos_mu1", "neg_mu2"):
        np.testing.assert_allclose(h_nb[col], h_np[col], rtol=1e-10)


def test_auto_backend_is_numba_even_with_a_gpu(small_cfg, monkeypatch):
    """The CuPy engines are unverified: "auto" must give the CPU engines on a GPU machine too."""
    from fastgrok import devices, plan

    monkeypatch.setattr(devices, "gpu_usable", lambda: True)
    assert plan.resolve_backend("auto") == "numba"
    res = fg.run(small_cfg.replace(backend="auto", steps=1, runs=1), progress=False)
    assert res.info["engine"].endswith("/numba")
    monkeypatch.setattr(plan, "CUPY_VERIFIED", True)  # the one line to flip after a GPU check
    assert plan.resolve_backend("auto") == "cupy"


@pytest.mark.parametrize("view", ["columns", "rows", "reversed"])
def test_step_takes_strided_views_of_x(view):
    X, y, W, a = random_problem(7, 6, 40, 5)
    Xv = {"columns": X[:, ::2], "rows": X[::1, :20], "reversed": X[:, 19::-1]}[view]
    W = W[:, :20].copy()
    expected = ref.step(np.ascontiguousarray(Xv), y, W.copy(), a, 0.1)
    got = fg.step(Xv, y, W.copy(), a, 0.1, backend="numba")
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_m_and_n_equal_one():
    X, y, W, a = random_problem(5, 1, 17, 1)
    X64 = X.copy()
    expected = ref.step(X64, y, W.copy(), a, 0.3)
    np.testing.assert_allclose(fg.step(X, y, W.copy(), a, 0.3, backend="numba"), expected,
                               rtol=1e-12)
