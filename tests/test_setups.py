"""The training setups of the neighbouring papers: the square loss and exact label noise."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgrok as fg
from fastgrok import reference as ref
from fastgrok.data import flip_mask
from fastgrok.model import Model


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


@pytest.mark.parametrize("method,backend", [("gram", "numba"), ("gram", "numpy"),
                                            ("direct", "numba"), ("direct", "numpy")])
@given(seed=st.integers(0, 2**31 - 1), activation=st.sampled_from(
    ["relu", "leaky_relu", "relu_power", "smoothed_leaky_relu"]),
    decay=st.sampled_from([0.0, 0.05]), trained=st.booleans())
@settings(max_examples=6)
def test_square_loss_regression_targets_follow_the_reference(method, backend, seed, activation,
                                                              decay, trained):
    """Real-valued targets: the residual y - f, through every engine, 20+ steps in float64."""
    g = np.random.default_rng(seed)
    n, p, m, lr, steps = 12, 30, 5, 0.01, 22  # small enough that ReLU^2 does not diverge
    X, Xt = g.standard_normal((n, p)), g.standard_normal((7, p))
    w = g.standard_normal(p)
    y, yt = np.tanh(X @ w) * 1.5 + 0.2, np.tanh(Xt @ w) * 1.5 + 0.2
    W0 = 0.15 * g.standard_normal((m, p))
    a0 = g.standard_normal(m) / np.sqrt(m)
    model = Model(activation, None, "square")
    res = fg.fit(X, y, m=m, lr=lr, steps=steps, X_test=Xt, y_test=yt, W0=W0, a=a0,
                 loss="square", activation=activation, weight_decay=decay,
                 train_second_layer=trained, method=method, backend=backend, dtype="float64",
                 snapshot_steps=[0, 7, steps], progress=False)
    W, a = W0.copy(), a0.copy()
    for t in range(1, steps + 1):
        ref.step(X, y, W, a, lr, model.act, "square", decay, lr if trained else None)
        if t in (7, steps):
            got_W, got_a = res.weights(step=t)
            np.testing.assert_allclose(got_W, W, rtol=1e-10, atol=1e-12 * np.abs(W).max())
            np.testing.assert_allclose(got_a, a, rtol=1e-10, atol=1e-14)
    h = res.history
    assert h.train_acc.isna().all() and h.test_acc.isna().all()
    last = h[h.step == steps].iloc[0]
    ft = ref.forward(Xt, W, a, model.act)[1]
    assert last.test_mse == pytest.approx(np.mean((yt - ft) ** 2), rel=1e-9)
    assert last.train_loss == pytest.approx(
        0.5 * np.mean((y - ref.forward(X, W, a, model.act)[1]) ** 2), rel=1e-9)


def test_square_loss_regression_through_trainer_step_and_torch():
    torch = pytest.importorskip("torch")
    g = np.random.default_rng(3)
    X = g.standard_normal((15, 25))
    y = X[:, 0] - 0.5 * X[:, 1]
    tr = fg.Trainer(X, y, m=6, lr=0.1, init_scale=0.3, loss="square", dtype="float64")
    W0, a = tr.weights()
    W = W0.copy()
    for _ in range(5):
        tr.step()
        fg.step(X, y, W, a, 0.1, loss="square")
    np.testing.assert_allclose(tr.weights()[0], W, rtol=1e-10, atol=1e-14)
    from fastgrok.torch_export import to_module

    net = to_module(W, a, loss="square")
    loss = net.loss(torch.from_numpy(X), torch.from_numpy(y))
    assert float(loss.detach()) == pytest.approx(0.5 * np.mean((y - tr.outputs()) ** 2),
                                                 rel=1e-10)


def test_square_loss_with_labels_is_unchanged_and_other_losses_need_labels():
    ds = fg.xor_clusters(10, 20, seed=1)
    res = fg.fit(ds.X, ds.y, m=3, lr=0.1, steps=2, loss="square", progress=False)
    assert "test_mse" not in res.history and res.history.train_acc.notna().all()
    # Booleans are labels (True is +1), not 0/1 targets, with the square loss too.
    W_bool, W_sign = (np.full((3, 20), 0.1) for _ in range(2))
    a = np.array([1.0, -1.0, 1.0])
    fg.step(ds.X, ds.y > 0, W_bool, a, 0.1, loss="square")
    fg.step(ds.X, ds.y, W_sign, a, 0.1, loss="square")
    np.testing.assert_array_equal(W_bool, W_sign)
    with pytest.raises(ValueError, match="only -1 and \\+1"):  # other losses: the label error
        fg.fit(ds.X, ds.y * 0.5 + 0.1, m=3, lr=0.1, steps=2, loss="hinge")


def test_regression_targets_with_an_accuracy_only_option_are_refused():
    ds = fg.xor_clusters(10, 20, seed=1)
    y = ds.y * 0.5 + 0.1
    with pytest.raises(ValueError, match="stop='interpolation' needs labels -1/\\+1"):
        fg.fit(ds.X, y, m=3, lr=0.1, steps=2, loss="square", stop="interpolation")
    with pytest.raises(ValueError, match="flipped= needs labels -1/\\+1"):
        fg.fit(ds.X, y, m=3, lr=0.1, steps=2, loss="square", flipped=ds.flipped)
    with pytest.raises(ValueError, match="y has 9 labels but the inputs have 10 rows"):
        fg.fit(ds.X, y[:9], m=3, lr=0.1, steps=2, loss="square")


ENGINES = [("gram", "numba"), ("gram", "numpy"), ("direct", "numba"), ("direct", "numpy")]


def _reference_trajectory(X, y, W0, a, lr, steps, leak=0.0, loss="logistic", weight_decay=0.0):
    W, out = W0.copy(), [W0.copy()]
    for _ in range(steps):
        ref.step(X, y, W, a, lr, leak, loss, weight_decay)
        out.append(W.copy())
    return out


@pytest.mark.parametrize("method,backend", ENGINES)
def test_weight_decay_fit_follows_the_reference(method, backend, tmp_path):
    """W = s_t W0 + C X in the gram method: every kept network, its outputs, save and load."""
    ds = fg.xor_clusters(20, 60, n_test=10, noise_rate=0.1, seed=7, mu_norm=4.0)
    lr, wd, steps = 0.5, 0.3, 25
    res = fg.fit(ds.X, ds.y, m=6, lr=lr, steps=steps, X_test=ds.X_test, y_test=ds.y_test,
                 init_scale=0.3, weight_decay=wd, activation="leaky_relu", leak=0.1,
                 method=method, backend=backend, dtype="float64",
                 snapshot_steps=range(steps + 1))
    W0, a = res.weights(step=0)
    want = _reference_trajectory(ds.X, ds.y, W0, a, lr, steps, 0.1, "logistic", wd)
    for t in range(steps + 1):
        np.testing.assert_allclose(res.weights(step=t)[0], want[t], rtol=1e-10,
                                   atol=1e-12 * np.abs(want[t]).max())
    f_want = ref.forward(ds.X_test, want[-1], a, 0.1)[1]
    np.testing.assert_allclose(res.decision_function(ds.X_test), f_want, rtol=1e-10, atol=1e-13)
    last = res.history[res.history.step == steps].iloc[0]
    assert last.train_loss == pytest.approx(
        ref.mean_loss(ds.y, ref.forward(ds.X, want[-1], a, 0.1)[1]), rel=1e-10)
    res.save(tmp_path / "r")
    back = fg.Result.load(tmp_path / "r", X=ds.X, W0=W0)
    np.testing.assert_allclose(back.weights(step=steps)[0], want[-1], rtol=1e-10,
                               atol=1e-12 * np.abs(want[-1]).max())
    if method == "gram":
        assert res.info["linear_regime"].startswith("off")


def test_weight_decay_trainer_and_step_follow_the_reference():
    ds = fg.linear_clusters(15, 40, n_test=5, mu_norm=3.0, seed=2)
    tr = fg.Trainer(ds.X, ds.y, m=4, lr=0.4, init_scale=0.2, weight_decay=0.5, method="gram",
                    dtype="float64")
    W0, a = tr.weights()
    want = _reference_trajectory(ds.X, ds.y, W0, a, 0.4, 12, weight_decay=0.5)
    W = W0.copy()
    for t in range(1, 13):
        tr.step()
        fg.step(ds.X, ds.y, W, a, 0.4, weight_decay=0.5)
        np.testing.assert_allclose(tr.weights()[0], want[t], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(W, want[t], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(tr.outputs(), ref.forward(ds.X, want[t], a)[1], rtol=1e-10,
                                   atol=1e-14)


@pytest.mark.parametrize("representation", ["full", "reduced"])
def test_weight_decay_gram_equals_direct_on_generated_runs(representation):
    cfg = fg.Config(n=30, p=3000, m=20, n_test=40, steps=30, runs=2, lr=0.05, init_scale=0.05,
                    weight_decay=2.0, dtype="float64", backend="numba",
                    representation=representation, activation="leaky_relu", loss="hinge")
    if representation == "reduced":  # the direct method has no reduced representation
        h = fg.run(cfg.replace(method="gram"), progress=False).history
        h0 = fg.run(cfg.replace(method="gram", weight_decay=0.0), progress=False).history
        assert not np.allclose(h.train_loss, h0.train_loss)  # the decay changed the training
        return
    h_direct = fg.run(cfg.replace(method="direct"), progress=False).history
    h_gram = fg.run(cfg.replace(method="gram"), progress=False).history
    assert (h_direct.train_acc == h_gram.train_acc).all()
    np.testing.assert_allclose(h_gram.train_loss, h_direct.train_loss, rtol=1e-9)
    np.testing.assert_allclose(h_gram.pos_mu1, h_direct.pos_mu1, rtol=1e-9, atol=1e-12)


def test_bad_weight_decay_names_the_field():
    ds = fg.xor_clusters(10, 20, seed=1)
    with pytest.raises(ValueError, match="weight_decay"):
        fg.Config(weight_decay=-1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        fg.Config(lr=0.1, weight_decay=10.0)  # lr * weight_decay = 1: W would vanish
    with pytest.raises(ValueError, match="weight_decay"):
        fg.fit(ds.X, ds.y, m=3, lr=0.5, steps=2, weight_decay=4.0)
    with pytest.raises(ValueError, match="weight_decay"):
        fg.step(ds.X, ds.y, np.zeros((3, 20)), np.ones(3), 0.5, weight_decay=-0.1)


def _reference_pair(X, y, W0, a0, lr, steps, leak=0.0, loss="logistic", weight_decay=0.0,
                    lr_second=None):
    W, a, out = W0.copy(), np.array(a0, np.float64), [(W0.copy(), np.array(a0, np.float64))]
    for _ in range(steps):
        ref.step(X, y, W, a, lr, leak, loss, weight_decay, lr_second)
        out.append((W.copy(), a.copy()))
    return out


@pytest.mark.parametrize("method,backend", ENGINES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.2])
def test_trained_second_layer_follows_the_reference(method, backend, weight_decay):
    ds = fg.xor_clusters(20, 60, n_test=10, noise_rate=0.1, seed=3, mu_norm=4.0)
    lr, lr2, steps = 0.5, 0.3, 22
    a0 = np.array([1.0, -1.0, 0.0, 0.5, -0.25, 2.0])  # any values, zeros included
    res = fg.fit(ds.X, ds.y, m=6, lr=lr, steps=steps, X_test=ds.X_test, y_test=ds.y_test,
                 init_scale=0.3, a=a0, train_second_layer=True, lr_second=lr2,
                 weight_decay=weight_decay, loss="hinge", activation="leaky_relu", leak=0.2,
                 method=method, backend=backend, dtype="float64",
                 snapshot_steps=range(steps + 1))
    W0 = res.weights(step=0)[0]
    want = _reference_pair(ds.X, ds.y, W0, a0, lr, steps, 0.2, "hinge", weight_decay, lr2)
    for t in range(steps + 1):
        W, a = res.weights(step=t)
        np.testing.assert_allclose(W, want[t][0], rtol=1e-10, atol=1e-12 * np.abs(W).max())
        np.testing.assert_allclose(a, want[t][1], rtol=1e-10, atol=1e-13)
    assert not np.allclose(want[-1][1], a0)  # the second layer moved
    f_want = ref.forward(ds.X_test, *want[-1], 0.2)[1]
    np.testing.assert_allclose(res.decision_function(ds.X_test), f_want, rtol=1e-10, atol=1e-13)
    assert res.config["train_second_layer"] and res.config["lr_second"] == lr2


def test_trained_second_layer_in_generated_runs_gram_equals_direct():
    cfg = fg.Config(n=30, p=2000, m=20, n_test=40, steps=25, runs=2, lr=0.05, init_scale=0.05,
                    train_second_layer=True, lr_second=0.02, second_layer_scale=0.01,
                    dtype="float64", backend="numba", representation="full")
    h_direct = fg.run(cfg.replace(method="direct"), progress=False).history
    h_gram = fg.run(cfg.replace(method="gram"), progress=False).history
    assert (h_direct.train_acc == h_gram.train_acc).all()
    np.testing.assert_allclose(h_gram.train_loss, h_direct.train_loss, rtol=1e-9)
    fixed = fg.run(cfg.replace(method="gram", train_second_layer=False, lr_second=None),
                   progress=False).history
    assert not np.allclose(fixed.train_loss, h_gram.train_loss)


def test_second_layer_options_are_checked():
    ds = fg.xor_clusters(10, 20, seed=1)
    with pytest.raises(ValueError, match="lr_second"):
        fg.Config(lr_second=0.1)  # without train_second_layer
    with pytest.raises(ValueError, match="lr_second"):
        fg.fit(ds.X, ds.y, m=3, lr=0.1, steps=2, lr_second=0.1)
    with pytest.raises(TypeError, match="train_second_layer"):
        fg.Config(train_second_layer="yes")
    with pytest.raises(ValueError, match="second_layer_scale"):
        fg.Config(second_layer_scale=0.0)
    a = fg.weights.draw_second_layer(8, 0, 0, "random", scale=0.25)
    np.testing.assert_array_equal(np.abs(a), 0.25)
    np.testing.assert_array_equal(np.sign(a), np.sign(fg.weights.draw_second_layer(8, 0, 0)))


@pytest.mark.parametrize("method,backend", ENGINES)
@pytest.mark.parametrize("setup", [{}, {"weight_decay": 0.2, "train_second_layer": True}],
                         ids=["sgd", "sgd-decay-second"])
def test_minibatch_sgd_replays_the_public_schedule(method, backend, setup):
    """An independent loop over fg.batch_schedule and reference.step takes the same steps."""
    ds = fg.xor_clusters(22, 50, n_test=10, noise_rate=0.1, seed=5, mu_norm=4.0)
    lr, b, steps, seed = 0.4, 5, 21, 3  # 22 // 5 = 4 batches per epoch, 2 samples left over
    res = fg.fit(ds.X, ds.y, m=5, lr=lr, steps=steps, X_test=ds.X_test, y_test=ds.y_test,
                 init_scale=0.3, batch_size=b, seed=seed, loss="logistic", method=method,
                 backend=backend, dtype="float64", snapshot_steps=range(steps + 1), **setup)
    W, a = (np.array(v) for v in res.weights(step=0))
    lr_second = lr if setup.get("train_second_layer") else None
    for t, B in enumerate(fg.batch_schedule(22, b, steps, seed=seed, run=0), start=1):
        ref.step(ds.X[B], ds.y[B], W, a, lr, 0.0, "logistic", setup.get("weight_decay", 0.0),
                 lr_second)
        got_W, got_a = res.weights(step=t)
        np.testing.assert_allclose(got_W, W, rtol=1e-10, atol=1e-12 * np.abs(W).max())
        np.testing.assert_allclose(got_a, a, rtol=1e-10, atol=1e-14)
    assert res.config["batch_size"] == b


def test_batch_schedule_is_epochs_without_replacement():
    B = fg.batch_schedule(23, 4, steps=15, seed=9, run=2)  # 5 batches per epoch, 3 left over
    assert B.shape == (15, 4)
    for e in range(3):
        epoch = B[5 * e:5 * (e + 1)].ravel()
        assert len(set(epoch)) == 20 and set(epoch) <= set(range(23))
    assert not np.array_equal(B[:5], B[5:10])
    np.testing.assert_array_equal(B, fg.batch_schedule(23, 4, steps=15, seed=9, run=2))
    assert not np.array_equal(B, fg.batch_schedule(23, 4, steps=15, seed=9, run=3))


def test_minibatch_runs_are_reproducible_and_gram_equals_direct():
    cfg = fg.Config(n=30, p=2000, m=10, n_test=20, steps=20, runs=2, lr=0.1, init_scale=0.05,
                    batch_size=7, dtype="float64", backend="numba", representation="full")
    h_gram = fg.run(cfg.replace(method="gram"), progress=False).history
    h_direct = fg.run(cfg.replace(method="direct"), progress=False).history
    np.testing.assert_allclose(h_gram.train_loss, h_direct.train_loss, rtol=1e-9)
    again = fg.run(cfg.replace(method="gram"), progress=False, n_threads=1).history
    pd.testing.assert_frame_equal(h_gram, again)
    full = fg.run(cfg.replace(method="gram", batch_size=None), progress=False).history
    assert not np.allclose(full.train_loss, h_gram.train_loss)


def test_bad_batch_size_names_the_field():
    ds = fg.xor_clusters(10, 20, seed=1)
    with pytest.raises(ValueError, match="batch_size"):
        fg.Config(n=10, batch_size=11)
    with pytest.raises(ValueError, match="batch_size"):
        fg.Config(batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        fg.fit(ds.X, ds.y, m=3, lr=0.1, steps=2, batch_size=20)


def _stable_rank(W):
    s = np.linalg.svd(W, compute_uv=False)
    return float((s**2).sum() / s[0] ** 2)


@pytest.mark.parametrize("method,backend", ENGINES)
def test_stable_rank_column_at_the_snapshot_steps(method, backend):
    ds = fg.xor_clusters(20, 80, n_test=10, noise_rate=0.1, seed=3, mu_norm=4.0)
    res = fg.fit(ds.X, ds.y, m=6, lr=0.5, steps=12, init_scale=0.1, weight_decay=0.1,
                 snapshot_steps=[0, 5, 12], stable_rank=True, method=method, backend=backend,
                 dtype="float64")
    h = res.history
    for t in (0, 5, 12):
        got = h.loc[h.step == t, "stable_rank"].iloc[0]
        assert got == pytest.approx(_stable_rank(res.weights(step=t)[0]), rel=1e-9)
    assert h.loc[~h.step.isin([0, 5, 12]), "stable_rank"].isna().all()
    assert "stable_rank" not in fg.fit(ds.X, ds.y, m=6, lr=0.5, steps=3).history


@pytest.mark.parametrize("representation", ["full", "reduced"])
def test_stable_rank_in_generated_runs(representation):
    cfg = fg.Config(n=20, p=3000, m=10, n_test=10, steps=30, runs=2, lr=0.05, init_scale=0.01,
                    stable_rank=True, snapshot_steps=(0, 7, 30), dtype="float64",
                    representation=representation)
    res = fg.run(cfg, progress=False, keep_networks=representation == "full")
    h = res.history
    snap = h[h.step.isin([0, 7, 30])]
    assert snap.stable_rank.notna().all() and (snap.stable_rank >= 1).all()
    assert (snap.stable_rank <= cfg.m + 1e-9).all()
    if representation == "full":
        for r in range(2):
            want = _stable_rank(res.weights(run=r, step=30)[0])
            got = h[(h.run == r) & (h.step == 30)].stable_rank.iloc[0]
            assert got == pytest.approx(want, rel=1e-9)


SMOOTH = [("relu_power", {"power": 2.5}), ("relu_power", {}),
          ("smoothed_leaky_relu", {"leak": 0.2, "smoothing": 0.3}), ("smoothed_leaky_relu", {})]
SMOOTH_IDS = ["relu^2.5", "relu^2", "smoothed-leaky-0.2-h0.3", "smoothed-leaky-default"]


def _smooth_model(act, kw, loss="logistic"):
    from fastgrok.model import Model

    return Model(act, kw.get("leak"), loss, power=kw.get("power"), smoothing=kw.get("smoothing"))


@pytest.mark.parametrize("act,kw", SMOOTH, ids=SMOOTH_IDS)
def test_smooth_activation_gradient_equals_finite_differences(act, kw):
    """The reference's step is the gradient of the loss as written, phi written out here."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((7, 5)), np.where(rng.random(7) < 0.5, 1.0, -1.0)
    W, a = rng.standard_normal((4, 5)) * 0.5, rng.standard_normal(4)
    model = _smooth_model(act, kw)
    q, h, g = model.act_param, model.act_param, model.slope

    def phi(z):
        if act == "relu_power":
            return np.maximum(z, 0) ** q
        return np.where(z < 0, g * z, np.where(z <= h, g * z + (1 - g) * z * z / (2 * h),
                                               g * z + (1 - g) * (z - h / 2)))

    def loss(W):
        return np.mean(np.log1p(np.exp(-y * (phi(X @ W.T) @ a))))

    grad = ref.gradient(X, y, W, a, model.act, "logistic")
    eps = 1e-6
    for j, k in [(0, 0), (1, 3), (3, 4), (2, 1)]:
        E = np.zeros_like(W)
        E[j, k] = eps
        assert grad[j, k] == pytest.approx((loss(W + E) - loss(W - E)) / (2 * eps), rel=1e-6,
                                           abs=1e-9)


@pytest.mark.parametrize("method,backend", ENGINES)
@pytest.mark.parametrize("act,kw", SMOOTH[::2], ids=SMOOTH_IDS[::2])
def test_smooth_activation_fit_follows_the_reference(method, backend, act, kw):
    ds = fg.xor_clusters(20, 60, n_test=10, noise_rate=0.1, seed=7, mu_norm=4.0)
    model = _smooth_model(act, kw, "hinge")
    res = fg.fit(ds.X, ds.y, m=6, lr=0.2, steps=20, X_test=ds.X_test, y_test=ds.y_test,
                 init_scale=0.3, activation=act, loss="hinge", method=method, backend=backend,
                 dtype="float64", snapshot_steps=range(21), **kw)
    W, a = (np.array(v) for v in res.weights(step=0))
    for t in range(1, 21):
        ref.step(ds.X, ds.y, W, a, 0.2, model.act, "hinge")
        np.testing.assert_allclose(res.weights(step=t)[0], W, rtol=1e-10,
                                   atol=1e-12 * np.abs(W).max())
    np.testing.assert_allclose(res.decision_function(ds.X_test),
                               ref.forward(ds.X_test, W, a, model.act)[1], rtol=1e-10, atol=1e-13)
    assert res.info.get("linear_fraction") is None  # not piecewise linear: dense steps


@pytest.mark.parametrize("act,kw", SMOOTH[::2], ids=SMOOTH_IDS[::2])
def test_smooth_activation_torch_step_equals_the_next_step(act, kw):
    torch = pytest.importorskip("torch")
    ds = fg.xor_clusters(16, 40, n_test=8, noise_rate=0.1, seed=4, mu_norm=3.0)
    k = dict(m=7, lr=0.3, init_scale=0.3, activation=act, dtype="float64", **kw)
    net = fg.fit(ds.X, ds.y, steps=3, **k).to_torch()
    opt = torch.optim.SGD(net.parameters(), lr=0.3)
    opt.zero_grad()
    net.loss(torch.from_numpy(ds.X), torch.from_numpy(ds.y)).backward()
    opt.step()
    nxt = fg.fit(ds.X, ds.y, steps=4, **k).weights()[0]
    np.testing.assert_allclose(net.weight.detach().numpy(), nxt, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("act,kw", SMOOTH, ids=SMOOTH_IDS)
@pytest.mark.parametrize("loss", ["logistic", "square"])
def test_smooth_activations_on_the_gpu_path_match_the_cpu_kernels(act, kw, loss):
    """The CUDA launches (arguments checked against gpu_kernels.cu, arithmetic emulated) give the
    CPU's smooth kernels' f and V, both runs of a stacked batch."""
    from fastgrok.kernels.cuda import CudaKernels
    from fastgrok.kernels.numba_fused import smooth_outputs_and_coefficients

    from fastgrok.testing import StandInCupy

    model = _smooth_model(act, kw, loss)
    rng = np.random.default_rng(1)
    R, n, m = 2, 5, 7
    Z = rng.standard_normal((R * n, m))
    y = (rng.standard_normal(R * n) if loss == "square"
         else np.where(rng.random(R * n) < 0.5, 1.0, -1.0))
    A = rng.standard_normal((R, m))
    k = CudaKernels(cupy=StandInCupy())
    V = np.zeros((R * n, m))
    f = k.coefficients(Z, y, A, 0.3, n, V, False, model.slope, model.loss_code, model.act_code,
                       model.act_param)
    for r in range(R):
        rows = slice(r * n, (r + 1) * n)
        V_cpu = np.zeros((n, m))
        f_cpu = smooth_outputs_and_coefficients(Z[rows], y[rows], A[r], 0.3, V_cpu, False,
                                                model.act_code, model.slope, model.act_param,
                                                model.loss_code)
        np.testing.assert_allclose(f[rows], f_cpu, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(V[rows], V_cpu, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(k.outputs(Z, A, n, model.slope, model.act_code, model.act_param),
                               f, rtol=0, atol=0)
    assert k.module.launches == ["coefficients_f64", "outputs_f64"]


def test_smooth_activation_parameters_are_checked():
    with pytest.raises(ValueError, match="power"):
        fg.Config(power=3.0)  # relu has no power
    with pytest.raises(ValueError, match="power"):
        fg.Config(activation="relu_power", power=1.0)
    with pytest.raises(ValueError, match="smoothing"):
        fg.Config(activation="leaky_relu", smoothing=0.5)
    with pytest.raises(ValueError, match="leak"):
        fg.Config(activation="relu_power", leak=0.1)
    cfg = fg.Config(activation="smoothed_leaky_relu", leak=0.3, smoothing=0.5)
    assert cfg.smoothing == 0.5


def test_trained_second_layer_change_is_a_history_column():
    ds = fg.xor_clusters(20, 60, n_test=10, noise_rate=0.1, seed=3, mu_norm=4.0)
    a0 = np.array([1.0, -1.0, 0.5, -0.5])
    res = fg.fit(ds.X, ds.y, m=4, lr=0.5, steps=6, init_scale=0.3, a=a0,
                 train_second_layer=True, snapshot_steps=range(7), dtype="float64")
    h = res.history
    for t in range(7):
        want = np.linalg.norm(res.weights(step=t)[1] - a0) / np.linalg.norm(a0)
        assert h.loc[h.step == t, "second_layer_change"].iloc[0] == pytest.approx(want, rel=1e-12,
                                                                                abs=1e-300)
    assert "second_layer_change" not in fg.fit(ds.X, ds.y, m=4, lr=0.5, steps=2).history
