"""The training setups of the neighbouring papers: the square loss and exact label noise."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgrok as fg
from fastgrok import reference as ref
from fastgrok.data import flip_mask


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), eta=st.floats(0.0, 0.49), seed=st.integers(0, 2**32 - 1),
       share=st.floats(0.0, 1.0))
def test_exact_label_noise_flips_round_eta_n_split_over_the_classes(n, eta, seed, share):
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    y = np.where(rng.random(n) < share, 1.0, -1.0)
    flipped = flip_mask(u, y, eta, "exact")
    k = int(np.rint(eta * n))
    n_pos = int((y > 0).sum())
    assert flipped.sum() == k
    want_pos = min(int(np.rint(k * n_pos / n)), n_pos)
    want_pos = max(want_pos, k - (n - n_pos))  # the other class cannot take more than its size
    assert (flipped & (y > 0)).sum() == want_pos
    # Within a class, the flipped samples are those with the smallest draws.
    for cls in (y > 0, y <= 0):
        if flipped[cls].any() and (~flipped[cls]).any():
            assert u[cls][flipped[cls]].max() < u[cls][~flipped[cls]].min()
    np.testing.assert_array_equal(flip_mask(u, y, eta), u < eta)


@pytest.mark.parametrize("representation", ["full", "reduced"])
@pytest.mark.parametrize("data", ["xor", "linear"])
def test_generated_runs_take_exact_label_noise(representation, data):
    from fastgrok.sources import GeneratedSource, ReducedSource

    cfg = fg.Config(n=60, p=400, m=10, n_test=20, steps=3, runs=3, noise_rate=0.1,
                    label_noise="exact", representation=representation, data=data)
    make = ReducedSource if representation == "reduced" else GeneratedSource
    for src in (make(cfg, r) for r in range(cfg.runs)):
        assert src.flipped.sum() == 6
        np.testing.assert_array_equal(src.y[src.flipped], -src.draw.y_clean[src.flipped])
    ds = (fg.xor_clusters if data == "xor" else fg.linear_clusters)(
        60, 400, noise_rate=0.1, seed=0, label_noise="exact")
    indep = (fg.xor_clusters if data == "xor" else fg.linear_clusters)(60, 400, noise_rate=0.1,
                                                                       seed=0)
    assert ds.flipped.sum() == 6
    np.testing.assert_array_equal(ds.X, indep.X)  # only the flips differ
    np.testing.assert_array_equal(ds.y_clean, indep.y_clean)


def test_bad_label_noise_names_the_field():
    with pytest.raises(ValueError, match="label_noise"):
        fg.Config(label_noise="balanced")
    with pytest.raises(ValueError, match="label_noise"):
        fg.xor_clusters(10, 20, label_noise="sometimes")


@pytest.mark.parametrize("method", ["gram", "direct"])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_square_loss_fit_follows_the_reference_loop(method, backend):
    """Twenty-five steps of the square loss, past the target (negative weights), in float64."""
    ds = fg.xor_clusters(20, 60, n_test=10, noise_rate=0.1, seed=7, mu_norm=4.0)
    m, lr = 6, 0.8
    res = fg.fit(ds.X, ds.y, m=m, lr=lr, steps=25, X_test=ds.X_test, y_test=ds.y_test,
                 init_scale=0.1, loss="square", activation="leaky_relu", leak=0.2,
                 method=method, backend=backend, dtype="float64", snapshot_steps=range(26))
    W, a = res.weights(step=0)
    W = W.copy()
    for t in range(26):
        got, _ = res.weights(step=t)
        np.testing.assert_allclose(got, W, rtol=1e-10, atol=1e-13)
        row = res.history[res.history.step == t]
        if len(row):
            want = ref.mean_loss(ds.y, ref.forward(ds.X, W, a, 0.2)[1], "square")
            assert row.train_loss.iloc[0] == pytest.approx(want, rel=1e-10)
        ref.step(ds.X, ds.y, W, a, lr, 0.2, "square")
    margins = ds.y * ref.forward(ds.X, W, a, 0.2)[1]
    assert (margins > 1).any(), "some margin passed the target: the weight 1 - z went negative"


def test_square_loss_regression_targets_are_not_implemented_yet():
    ds = fg.xor_clusters(10, 20, seed=1)
    with pytest.raises(NotImplementedError, match="real-valued targets"):
        fg.fit(ds.X, ds.y * 0.5 + 0.1, m=3, lr=0.1, steps=2, loss="square")
    with pytest.raises(ValueError, match="only -1 and \\+1"):  # other losses: the label error
        fg.fit(ds.X, ds.y * 0.5 + 0.1, m=3, lr=0.1, steps=2, loss="hinge")
