"""Reduced representation (docs/design.md 2.3): the same experiment in distribution, at any p.

The statistical tests use fixed seeds, so they are deterministic: each compares the full and the
reduced representation with a two-sample Kolmogorov-Smirnov test at level 0.001 and checks that
the means agree within 4 standard errors.
"""
import numpy as np
import pytest

import fastgrok as fg
from fastgrok import tunables
from fastgrok.sources import GeneratedSource, ReducedSource

KS_C = 1.949  # c(alpha) of the asymptotic two-sample KS test at alpha = 0.001
CFG = fg.Config(n=20, p=5000, m=20, n_test=50, runs=300, steps=20, lr=1e-12, init_scale=1e-15,
                dtype="float64", seed=7)


def assert_same_distribution(a, b, what):
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([a, b])
    d = np.abs(np.searchsorted(a, grid, side="right") / a.size
               - np.searchsorted(b, grid, side="right") / b.size).max()
    crit = KS_C * np.sqrt((a.size + b.size) / (a.size * b.size))
    assert d < crit, f"{what}: KS distance {d:.3f} >= {crit:.3f}"
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert abs(a.mean() - b.mean()) <= 4 * se + 1e-12 * abs(a.mean()), \
        f"{what}: means {a.mean():.6g} vs {b.mean():.6g} (se {se:.3g})"


def _inner_products(Src):
    stats = {k: [] for k in ("x0.x0", "x0.x1", "xt0.x0", "w0.w0/s2", "x0.w0/s", "w0.w1/s2",
                             "x0.mu1", "w0.mu2/s")}
    s = CFG.init_scale
    for r in range(CFG.runs):
        pb = Src(CFG, r).problem("float64")
        X, Xt, W = pb.X, pb.X_test, pb.W0
        stats["x0.x0"].append(X[0] @ X[0])
        stats["x0.x1"].append(X[0] @ X[1])
        stats["xt0.x0"].append(Xt[0] @ X[0])
        stats["w0.w0/s2"].append(W[0] @ W[0] / s**2)
        stats["x0.w0/s"].append(X[0] @ W[0] / s)
        stats["w0.w1/s2"].append(W[0] @ W[1] / s**2)
        stats["x0.mu1"].append(X[0] @ pb.mu1)
        stats["w0.mu2/s"].append(W[0] @ pb.mu2 / s)
    return stats


def test_inner_products_have_the_same_joint_law():
    full, red = _inner_products(GeneratedSource), _inner_products(ReducedSource)
    for k in full:
        assert_same_distribution(full[k], red[k], k)


@pytest.mark.parametrize("setup", [{}, {"weight_decay": 2e10}, {"loss": "square"},
                                   {"label_noise": "exact", "noise_rate": 0.15},
                                   {"train_second_layer": True, "lr_second": 1e-3},
                                   {"batch_size": 8},
                                   {"activation": "smoothed_leaky_relu", "smoothing": 1e-12}],
                         ids=["paper", "weight-decay", "square", "exact-noise", "second-layer",
                              "minibatch", "smoothed-leaky"])
def test_training_accuracies_have_the_same_distribution(setup):
    cfg = CFG.replace(**setup)
    h_full = fg.run(cfg.replace(representation="full"), progress=False).history
    h_red = fg.run(cfg.replace(representation="reduced"), progress=False).history
    for t in (0, 1, 5, CFG.steps):
        for col in ("train_acc", "test_acc"):
            assert_same_distribution(h_full.loc[h_full.step == t, col],
                                     h_red.loc[h_red.step == t, col], f"{col} at step {t}")


def test_reduced_dimension_and_blockwise_draws(monkeypatch):
    cfg = fg.Config(n=6, p=10**9, m=5, n_test=4)
    src = ReducedSource(cfg, 0)
    assert src.p == 6 + 4 + 5 + 2
    whole = src.problem("float64")
    G = np.vstack([whole.X, whole.X_test, whole.W0 / cfg.init_scale])
    # The Bartlett rows have squared norms ~ p (chi2 with ~p degrees of freedom) plus O(||mu||^2)
    assert np.all(np.abs(np.diag(G @ G.T)[6 + 4:] / 1e9 - 1) < 1e-3)
    # Blocks drawn in any order equal the whole draw (each column block has its own stream).
    monkeypatch.setattr(tunables, "DATA_BLOCK", 4)
    whole = src.problem("float64")
    for k, j0, j1 in reversed(src.block_list()):
        X, Xt, W0, M = src.block(k, j0, j1)
        assert np.array_equal(X, whole.X[:, j0:j1]) and np.array_equal(W0, whole.W0[:, j0:j1])


def test_gram_build_reads_only_the_data_columns(monkeypatch):
    """The data rows end at column n + n_test + 2: the build's blocks stop there, a block cut
    short holds the same numbers as the whole block, and the gram state is that of all
    columns."""
    from fastgrok.engines import get_ops, gram

    monkeypatch.setattr(tunables, "DATA_BLOCK", 5)  # the span (6 + 4 + 2) ends inside block 2
    cfg = fg.Config(n=6, p=10**6, m=9, n_test=4, mu_norm=3.0)
    src = ReducedSource(cfg, 1)
    cut = src.data_block_list()
    assert cut == [(0, 0, 5), (1, 5, 10), (2, 10, 12)] and len(src.block_list()) == 5
    whole = src.problem("float64")
    X, Xt, W0, M = src.block(*cut[-1])
    assert np.array_equal(W0, whole.W0[:, 10:12]) and np.array_equal(X, whole.X[:, 10:12])
    assert not whole.X[:, 12:].any() and not whole.X_test[:, 12:].any()
    st = gram.build([src], np.float64, get_ops("numpy"))
    Xa, Xta, W0a = whole.X, whole.X_test, whole.W0
    M = np.stack([whole.mu1, whole.mu2])
    for key, exact in (("K", Xa @ Xa.T), ("Kt", Xta @ Xa.T), ("Z0", Xa @ W0a.T),
                       ("Zt0", Xta @ W0a.T), ("XM", Xa @ M.T), ("W0M", W0a @ M.T)):
        np.testing.assert_allclose(st[key][0], exact, rtol=1e-12, atol=1e-12 * np.abs(exact).max())


def test_same_labels_as_the_full_representation():
    full, red = GeneratedSource(CFG, 3), ReducedSource(CFG, 3)
    assert np.array_equal(full.y, red.y) and np.array_equal(full.y_test, red.y_test)
    assert np.array_equal(full.a, red.a)


def test_auto_representation_and_dtype():
    from fastgrok.plan import plan_experiment

    assert plan_experiment(fg.preset("paper-fig1-left")).representation == "reduced"
    assert plan_experiment(fg.Config(n=200, p=1000, m=1000)).representation == "full"
    big = plan_experiment(fg.preset("paper-fig1-left", p=10**12))
    assert big.p == 200 + 200 + 1000 + 2 and big.dtype == "float64"
    assert plan_experiment(fg.preset("paper-fig1-left", p=10**6)).dtype == "float32"


def test_reduced_needs_p_at_least_the_number_of_vectors():
    with pytest.raises(ValueError, match="p - 2 >= n \\+ n_test \\+ m"):
        fg.Config(n=20, p=50, m=20, n_test=20, representation="reduced")
    with pytest.raises(ValueError, match="representation"):
        fg.Config(representation="compressed")


def test_paper_preset_at_p_1e12_trains(monkeypatch):
    res = fg.run(fg.preset("paper-fig1-left", p=10**12, runs=2, steps=3), progress=False)
    assert res.info["representation"] == "reduced" and res.info["dtype"] == "float64"
    assert res.history.loc[res.history.step == 1, "train_acc"].min() == 1.0


@pytest.mark.slow
def test_population_accuracy_agrees_with_a_large_finite_test_set():
    cfg = fg.Config(n=20, p=5000, m=20, n_test=3000, runs=3, steps=8, lr=1e-12,
                    init_scale=1e-15, dtype="float64", seed=3, snapshot_steps=(0,))
    finite = fg.run(cfg, progress=False).history
    pop = fg.run(cfg.replace(population_test_samples=3000), progress=False).history
    # The standard error is a column only where it means something.
    assert "test_acc_se" not in finite.columns and (pop["test_acc_se"] > 0).any()
    assert (pop["train_acc"] == finite["train_acc"]).all()  # same networks
    for t in (0, 1, 8):
        a = finite[finite.step == t]["test_acc"].to_numpy()
        b = pop[pop.step == t]["test_acc"].to_numpy()
        se_b = pop[pop.step == t]["test_acc_se"].to_numpy()
        se_a = np.sqrt(np.maximum(a * (1 - a), 0.25 / cfg.n_test) / cfg.n_test)
        assert np.all(np.abs(a - b) <= 4 * np.sqrt(se_a**2 + se_b**2)), (t, a, b)


def test_population_test_needs_the_reduced_representation():
    with pytest.raises(ValueError, match="population_test_samples"):
        fg.Config(n=20, p=5000, m=20, n_test=30, population_test_samples=100, representation="full")
    with pytest.raises(ValueError, match="population_test_samples"):
        fg.Config(n=20, p=5000, m=20, n_test=30, population_test_samples=100, method="direct")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [None, 7])
def test_the_compiled_draw_of_a_block_is_numpys_to_the_bit(monkeypatch, dtype, width):
    """The reduced draw's rows written by its kernel (kernels/normals.py: bartlett_rows) are
    those of the NumPy path, bit for bit, in every block (the means' columns and blocks that
    start past them), and X, W0 and the means come as consecutive rows of one buffer."""
    if width:
        monkeypatch.setattr(tunables, "DATA_BLOCK", width)
    cfg = fg.Config(n=9, p=10**6, m=11, n_test=5, mu_norm=3.0)
    src = ReducedSource(cfg, 2)
    for k, j0, j1 in src.data_block_list() + [(0, 1, 6)]:
        M = np.zeros((2, j1 - j0))
        for row in (0, 1):
            if j0 <= row < j1:
                M[row, row - j0] = src.mu_norm
        fast, slow = src.block(k, j0, j1, dtype), src._block_numpy(k, j0, j1, dtype, M)
        for a, b in zip(fast, slow, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))
        X, _, W0, M = fast
        assert X.base is W0.base is M.base
        assert W0.ctypes.data == X.ctypes.data + X.nbytes == M.ctypes.data - W0.nbytes
