"""The gram method (docs/design.md 2.2) against the direct reference: the same trajectory to rounding."""
import numpy as np
import pytest
from conftest import random_problem

import fastgrok as fg
from fastgrok import tunables
from fastgrok.engines import ENGINES, NumbaOps
from fastgrok.engines.gram import build
from fastgrok.sources import ArraySource, GeneratedSource

EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}


def _gram(sources, lr, dtype, backend="numba", n_threads=None):
    cls = ENGINES[("gram", backend)]
    with cls.runtime(n_threads) as nt:
        return cls(sources, lr, dtype, n_threads=nt)


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(tunables, "DATA_BLOCK", 16)  # several blocks, a ragged last one


def test_fifty_steps_of_the_paper_model_match_direct_in_float64():
    cfg = fg.Config(n=30, p=3000, m=40, n_test=50, steps=50, runs=2, lr=1e-12, init_scale=1e-15,
                    dtype="float64", backend="numba")
    h_direct = fg.run(cfg.replace(method="direct", backend="numpy"), progress=False).history
    h_gram = fg.run(cfg.replace(method="gram"), progress=False).history
    assert (h_direct["train_acc"] == h_gram["train_acc"]).all()
    assert (h_direct["test_acc"] == h_gram["test_acc"]).all()
    for col in ("train_loss", "test_loss", "pos_mu1", "pos_mu2", "neg_mu1", "neg_mu2"):
        np.testing.assert_allclose(h_gram[col], h_direct[col], rtol=1e-9)


@pytest.mark.parametrize("means", ["axis", "random"])
def test_streamed_build_equals_build_from_materialised_arrays(small_blocks, means):
    cfg = fg.Config(n=9, p=100, m=7, n_test=5, runs=1, dtype="float64", means=means)
    gen = GeneratedSource(cfg, run=0)
    pb = gen.problem("float64")
    arr = ArraySource(pb.X, pb.y, cfg.m, X_test=pb.X_test, y_test=pb.y_test, mu1=pb.mu1,
                      mu2=pb.mu2, W0=pb.W0, a=pb.a)
    s1, s2 = build([gen], "float64", NumbaOps()), build([arr], "float64", NumbaOps())
    M = np.stack([pb.mu1, pb.mu2])
    want = {"K": pb.X @ pb.X.T, "Kt": pb.X_test @ pb.X.T, "Z0": pb.X @ pb.W0.T,
            "Zt0": pb.X_test @ pb.W0.T, "XM": pb.X @ M.T, "W0M": pb.W0 @ M.T}
    for k, v in want.items():
        assert np.array_equal(s1[k], s2[k]), k  # same blocks, same arithmetic
        scale = np.abs(v).max() + 1e-300
        np.testing.assert_allclose(s1[k][0], v, rtol=0, atol=1e-12 * scale)


def test_batched_runs_equal_single_runs_and_thread_counts_agree():
    cfg = fg.Config(n=10, p=500, m=6, n_test=8, runs=3, dtype="float32", lr=1e-3, init_scale=1e-3)
    srcs = [GeneratedSource(cfg, r) for r in range(3)]
    batched = _gram(srcs, cfg.lr, "float32", n_threads=2)
    single = [_gram([s], cfg.lr, "float32", n_threads=1) for s in srcs]
    for _ in range(4):
        batched.step()
        for e in single:
            e.step()
    for r, e in enumerate(single):
        assert np.array_equal(batched.Ct[r], e.Ct[0]) and np.array_equal(batched.Z[r], e.Z[0])


def test_auto_method_picks_gram_for_the_paper_presets():
    from fastgrok.plan import resolve_method

    c = fg.preset("paper-fig1-left")
    assert resolve_method("auto", "numba", c.n, c.p, c.m, c.n_test, c.steps) == "gram"
    assert resolve_method("auto", "numba", 1000, 3, 10, 10, 5) == "direct"


def test_fit_with_gram_equals_fit_with_direct():
    X, y, _, _ = random_problem(4, 20, 200, 1)
    kw = dict(m=8, lr=1e-2, steps=10, X_test=X[:5], y_test=y[:5], init_scale=1e-2,
              dtype="float64")
    h1 = fg.fit(X, y, method="gram", backend="numba", **kw).history
    h2 = fg.fit(X, y, method="direct", backend="numpy", **kw).history
    np.testing.assert_allclose(h1["train_loss"], h2["train_loss"], rtol=1e-10)
    assert (h1["test_acc"] == h2["test_acc"]).all()


def test_gram_memory_does_not_grow_with_p():
    small = ENGINES[("gram", "numba")].estimate_bytes(200, 10**4, 1000, 200, "float32")
    huge = ENGINES[("gram", "numba")].estimate_bytes(200, 10**12, 1000, 200, "float32")
    assert huge == small


@pytest.mark.parametrize("ops_name", ["numpy", "numba"])
def test_the_gram_matrix_is_exactly_symmetric(ops_name):
    """The linear regime's kernels take a row of K for its column: K must be symmetric to the
    bit, which a GEMM's X X^T need not be (on some CPUs its triangles round apart)."""
    from fastgrok.engines.gram import GramEngine
    from fastgrok.engines.ops_numba import NumbaOps
    from fastgrok.engines.ops_numpy import NumpyOps
    from fastgrok.sources import GeneratedSource, ReducedSource

    ops = {"numpy": NumpyOps, "numba": NumbaOps}[ops_name]()
    cfg = fg.preset("paper-fig1-left", n=60, m=8, n_test=7, runs=2, p=3000)
    for sources in ([ReducedSource(cfg, r) for r in range(2)],
                    [GeneratedSource(cfg, r) for r in range(2)]):
        eng = GramEngine(sources, cfg.lr, "float32", ops=ops)
        K = np.asarray(eng.K)
        assert np.abs(K).max() > 0
        assert np.array_equal(K, K.transpose(0, 2, 1))


def test_the_products_of_a_joined_operand_are_those_of_a_copied_one():
    """block_products takes [X; W0; M] as it stands where the three are consecutive rows of
    one aligned buffer, and copies them into one otherwise: the same bits either way."""
    from fastgrok.kernels.gram_cpu import block_products
    from fastgrok.kernels.memory import ALIGN, empty_aligned_from, joined_rows

    rng = np.random.default_rng(3)
    n, nt, m, cols = 7, 4, 9, 13
    R = empty_aligned_from((nt + n + m + 2, cols), np.float32, nt)
    R[...] = rng.standard_normal(R.shape)
    X, Xt, W0, M = R[nt:nt + n], R[:nt], R[nt + n:nt + n + m], R[nt + n + m:]
    B = joined_rows(X, W0, M)
    assert X.ctypes.data % ALIGN == 0 and B is not None and np.shares_memory(B, R)
    assert joined_rows(X, M) is None and joined_rows(Xt, X) is None  # not adjacent; not aligned
    joined = block_products(X, Xt, W0, M, np.float32)
    copied = block_products(X.copy(), Xt, W0.copy(), M.copy(), np.float32)
    for a, b in zip(joined, copied, strict=True):
        assert a.dtype == np.float32 and np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_evaluation_before_the_first_step_has_the_bits_of_the_product(dtype):
    """With C = 0 the evaluation skips the products Kt C^T and C X mu: the same bits as
    forming them (BLAS gives +0 for each), -0 entries of Zt0 included."""
    from fastgrok.model import Model

    rng = np.random.default_rng(5)
    n, nt, m = 6, 5, 8
    Kt, Zt0 = rng.standard_normal((1, nt, n)).astype(dtype), rng.standard_normal((1, nt, m))
    Zt0 = Zt0.astype(dtype)
    Zt0[0, 0, :3] = -0.0
    XM, W0M = rng.standard_normal((1, n, 2)).astype(dtype), rng.standard_normal((1, m, 2))
    W0M = W0M.astype(dtype)
    a = rng.standard_normal((1, m))
    ct = np.zeros((n, m), dtype)
    ops, model = NumbaOps(), Model()
    f, ft, P = ops.evaluation(0, None, ct, Kt, Zt0, XM, W0M, a, model, True, True)
    want_ft = ops.outputs(Zt0[0] + Kt[0] @ ct, a[0], model)
    want_P = (W0M[0] + ct.T @ XM[0]).astype(np.float64)
    assert np.array_equal(ft.view(np.uint64), want_ft.view(np.uint64))
    assert np.array_equal(P.view(np.uint64), want_P.view(np.uint64))
    ct[2, 3] = 1.0  # a stepped run: the products are formed
    ft = ops.evaluation(0, None, ct, Kt, Zt0, XM, W0M, a, model, True, False)[1]
    assert np.array_equal(ft, ops.outputs(Zt0[0] + Kt[0] @ ct, a[0], model))


def test_big_buffers_are_reused_inside_a_training_and_let_go_after():
    """Inside ``reusing`` a freed buffer of REUSE_MIN bytes or more is handed out again for the
    next request of its size (aligned, zeroed when asked); a buffer that outlives the context
    stays valid, and nothing is kept once the context is left."""
    from fastgrok.kernels import memory

    with memory.reusing():
        a = memory.empty_aligned((300, 200), np.float64)
        view, where = a[5:], a.ctypes.data
        a[...] = 7.0
        del a
        assert memory._POOL.held == 0  # a view keeps the buffer
        del view
        assert memory._POOL.held > 0
        b = memory.zeros_aligned((200, 300), np.float64)
        assert b.ctypes.data == where and b.ctypes.data % memory.ALIGN == 0 and not b.any()
        small = memory.empty_aligned(10, np.float64)  # below REUSE_MIN: NumPy's
        kept = memory.empty_aligned((300, 200), np.float64)
        kept[...] = 1.0
        del small
    assert memory._POOL.held == 0 and not memory._POOL.free
    assert kept.sum() == 60000.0
    del kept, b
    assert memory._POOL.held == 0
