"""The data generator: the paper's distribution, and one random stream however it is drawn."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastgrok as fg
from fastgrok import tunables
from fastgrok.data import RunDraw, block_ranges
from fastgrok.weights import draw_second_layer, init_block, init_weights


@pytest.mark.parametrize("means", ["axis", "random"])
def test_means_orthogonal_with_the_requested_norm(means):
    ds = fg.xor_clusters(50, 3000, n_test=10, mu_norm=7.5, seed=3, means=means)
    assert np.linalg.norm(ds.mu1) == pytest.approx(7.5, rel=1e-12)
    assert np.linalg.norm(ds.mu2) == pytest.approx(7.5, rel=1e-12)
    assert abs(ds.mu1 @ ds.mu2) < 1e-10


def test_default_mu_norm_is_the_papers():
    ds = fg.xor_clusters(20, 800, n_test=5)
    assert np.linalg.norm(ds.mu1) == pytest.approx(2.5 * np.sqrt(800 / 20))
    assert ds.mu1[0] > 0 and ds.mu2[1] > 0 and np.count_nonzero(ds.mu1) == 1


def test_clusters_labels_and_flip_rate_follow_the_distribution():
    n, eta = 20_000, 0.05
    ds = fg.xor_clusters(n, 2, n_test=4000, noise_rate=eta, seed=11)
    counts = np.bincount(ds.clusters, minlength=4)
    # Each count is Binomial(n, 1/4): 5 standard deviations either side.
    sd = np.sqrt(n * 0.25 * 0.75)
    assert np.all(np.abs(counts - n / 4) < 5 * sd)
    flips = int(ds.flipped.sum())
    assert abs(flips - n * eta) < 5 * np.sqrt(n * eta * (1 - eta))
    assert np.array_equal(ds.y == ds.y_clean, ~ds.flipped)
    assert np.array_equal(ds.y_clean, np.where(ds.clusters < 2, 1.0, -1.0))
    # Test labels are clean: they follow the clusters exactly.
    assert np.array_equal(ds.y_test, np.where(ds.clusters_test < 2, 1.0, -1.0))


def test_inputs_are_mean_plus_standard_gaussian_noise():
    ds = fg.xor_clusters(400, 500, n_test=300, mu_norm=5.0, seed=2)
    signs = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], float)[ds.clusters]
    noise = ds.X - signs @ np.stack([ds.mu1, ds.mu2])
    assert abs(noise.mean()) < 5 / np.sqrt(noise.size)
    assert noise.std() == pytest.approx(1.0, abs=0.01)


def test_no_flips_without_noise():
    ds = fg.xor_clusters(500, 10, n_test=5, noise_rate=0.0)
    assert not ds.flipped.any() and np.array_equal(ds.y, ds.y_clean)


@given(st.integers(1, 9), st.integers(2, 40), st.integers(1, 6), st.integers(1, 11),
       st.sampled_from(["axis", "random"]), st.integers(0, 1000))
def test_blockwise_and_whole_draws_are_identical(n, p, n_test, width, means, seed):
    old = tunables.DATA_BLOCK
    tunables.DATA_BLOCK = width
    try:
        ds = fg.xor_clusters(n, p, n_test=n_test, seed=seed, run=3, means=means)
        W = init_weights(4, p, 0.5, seed, 3)
        draw = RunDraw(n, p, n_test, 2.5 * np.sqrt(p / n), 0.05, seed, 3, means)
        blocks = list(block_ranges(p))
        for k, j0, j1 in reversed(blocks):  # any order: each block has its own stream
            X, Xt, mu1, mu2 = draw.block(k, j0, j1, "float64")
            assert np.array_equal(X, ds.X[:, j0:j1])
            assert np.array_equal(Xt, ds.X_test[:, j0:j1])
            assert np.array_equal(mu1, ds.mu1[j0:j1]) and np.array_equal(mu2, ds.mu2[j0:j1])
            assert np.array_equal(init_block(4, 0.5, seed, 3, k, j1 - j0), W[:, j0:j1])
    finally:
        tunables.DATA_BLOCK = old


@pytest.mark.parametrize("means", ["axis", "random"])
def test_float32_and_float64_draws_agree_to_float32_rounding(means):
    d64 = fg.xor_clusters(10, 300, n_test=3, seed=5, means=means)
    d32 = fg.xor_clusters(10, 300, n_test=3, seed=5, dtype="float32", means=means)
    assert d32.X.dtype == np.float32
    # Same noise draws; the mean is added in each dtype: they differ by the float32 rounding of
    # the two terms (relative to the terms, not to a sum that may cancel).
    signs = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], float)[d64.clusters]
    mean_term = signs @ np.stack([d64.mu1, d64.mu2])
    terms = np.abs(d64.X - mean_term) + np.abs(mean_term)
    assert (np.abs(d32.X - d64.X) <= 2 * np.finfo(np.float32).eps * terms).all()
    W32, W64 = init_weights(5, 300, 1e-15, 5, 0, "float32"), init_weights(5, 300, 1e-15, 5, 0)
    assert (np.abs(W32 - W64) <= 2 * np.spacing(np.abs(W32))).all()


def test_runs_and_seeds_give_different_data_and_repeat_exactly():
    a = fg.xor_clusters(5, 50, n_test=2, seed=1, run=0).X
    assert np.array_equal(a, fg.xor_clusters(5, 50, n_test=2, seed=1, run=0).X)
    assert not np.array_equal(a, fg.xor_clusters(5, 50, n_test=2, seed=1, run=1).X)
    assert not np.array_equal(a, fg.xor_clusters(5, 50, n_test=2, seed=2, run=0).X)


@pytest.mark.parametrize("m", [1, 7, 1000])
def test_second_layer(m):
    a = draw_second_layer(m, 0, 0, "random")
    assert np.allclose(np.abs(a), 1 / np.sqrt(m))
    b = draw_second_layer(m, 0, 0, "balanced")
    assert (b > 0).sum() == (m + 1) // 2 and np.allclose(np.abs(b), 1 / np.sqrt(m))


def test_random_second_layer_split_is_binomial():
    pos = [int((draw_second_layer(1000, 0, r) > 0).sum()) for r in range(40)]
    assert len(set(pos)) > 5  # not forced to 500
    assert abs(np.mean(pos) - 500) < 5 * np.sqrt(250 / 40)


def test_init_scale_is_a_standard_deviation():
    W = init_weights(200, 500, 1e-15, seed=4)
    assert W.std() == pytest.approx(1e-15, rel=0.01)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standard_normals_are_numpys_to_the_bit(dtype):
    # The kernels against NumPy's own draw of the same stream: sizes around the 32-bit halves'
    # parity, a 2-D shape, and 3 million numbers (some thousand of the ziggurat's rare
    # rejections and tail draws among them).
    from fastgrok.data import rng, standard_normals

    for seed, run, stream, block, shape in ((0, 0, 5, 0, 1), (1, 2, 8, 3, 2), (7, 1, 2, 0, 7),
                                            (3, 4, 5, 1, (13, 29)), (2, 0, 8, 2, 3_000_001)):
        want = rng(seed, run, stream, block).standard_normal(shape, dtype=dtype)
        got = standard_normals(seed, run, stream, block, shape, dtype)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got.view(f"u{got.itemsize}"), want.view(f"u{want.itemsize}"))
