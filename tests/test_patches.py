"""Patches: the two-layer CNN f(x) = sum_j a_j sum_p phi(<w_j, x^(p)>) against its reference.

The reference here is :func:`fastgrok.reference.patch_step`, written from the formula on
(n, P, d) arrays (einsum over the patches), independent of the engines' row layout.

Coverage (each row: hypothesis draws the problem, P in 1..4, the second layer with zeros and
repeated signs, the activation and the loss):

=========================  ======================================================================
fit, gram x {numba, numpy}   weights at every snapshot step against patch_step, 1e-10 relative
fit, direct x {numba, numpy} the same
P = 1                        bit-identical to the fully connected network (X of shape (n, d))
generated patch data         gram equals direct; the coefficients rebuild W; reduced draw's law
=========================  ======================================================================
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastgrok as fg
from fastgrok import reference as ref
from fastgrok.config import LOSSES
from fastgrok.model import Model

ACTIVATIONS = ("relu", "leaky_relu", "relu_power", "smoothed_leaky_relu")


def _problem(seed, n, P, d, m, a_kind):
    g = np.random.default_rng(seed)
    X = g.standard_normal((n, P, d))
    y = np.where(g.random(n) < 0.5, 1.0, -1.0)
    W0 = 0.3 * g.standard_normal((m, d)) / np.sqrt(d)
    if a_kind == "signs":
        a = np.where(g.random(m) < 0.5, 1.0, -1.0) / m
    elif a_kind == "zeros":  # zeros, and the same sign repeated
        a = np.where(np.arange(m) % 3 == 0, 0.0, 0.5)
    else:
        a = g.standard_normal(m)
    return X, y, W0, a


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 9), P=st.integers(1, 4),
       d=st.integers(3, 40), m=st.integers(1, 6), a_kind=st.sampled_from(["signs", "zeros", "any"]),
       activation=st.sampled_from(ACTIVATIONS), loss=st.sampled_from(LOSSES),
       method=st.sampled_from(["gram", "direct"]), backend=st.sampled_from(["numba", "numpy"]),
       decay=st.sampled_from([0.0, 0.5]))
def test_fit_on_patches_follows_the_reference_cnn(seed, n, P, d, m, a_kind, activation, loss,
                                                   method, backend, decay):
    X, y, W0, a = _problem(seed, n, P, d, m, a_kind)
    model = Model(activation, 0.2 if "leaky" in activation else None, loss)
    lr, steps, snaps = 0.2, 6, [0, 2, 3, 6]
    trajectory, W = [W0.copy()], W0.copy()
    with np.errstate(all="ignore"):
        for _ in range(steps):
            ref.patch_step(X, y, W, a, lr, model.act, loss, weight_decay=decay)
            trajectory.append(W.copy())
    # A problem whose outputs blow up (the exponential loss at a large second layer) diverges:
    # that is tested elsewhere; here the trajectories are compared.
    assume(all(np.abs(ref.patch_forward(X, Wt, a, model.act)).max() < 30 for Wt in trajectory))
    res = fg.fit(X, y, m=m, lr=lr, steps=steps, W0=W0, a=a, activation=activation,
                 leak=model.leak, loss=loss, method=method, backend=backend, dtype="float64",
                 snapshot_steps=snaps, weight_decay=decay)
    for t in snaps:
        W = trajectory[t]
        got, _ = res.weights(run=0, step=t)
        scale = max(np.abs(W).max(), 1e-300)
        assert np.abs(got - W).max() <= 1e-10 * scale, (t, np.abs(got - W).max() / scale)
        f = res.decision_function(X, run=0, step=t)
        want = ref.patch_forward(X, W, a, model.act)
        assert np.allclose(f, want, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("method", ["gram", "direct"])
def test_one_patch_is_the_fully_connected_network_bit_for_bit(method):
    X, y, W0, a = _problem(3, 12, 1, 30, 5, "signs")
    kw = dict(m=5, lr=0.3, steps=8, W0=W0, a=a, method=method, dtype="float64",
              snapshot_steps=[4, 8], loss="hinge", X_test=X[:4], y_test=y[:4])
    patches = fg.fit(X, y, **kw)
    plain = fg.fit(X[:, 0, :], y, **{**kw, "X_test": X[:4, 0, :]})
    assert patches.history.equals(plain.history)
    for t in (4, 8):
        assert np.array_equal(patches.weights(step=t)[0], plain.weights(step=t)[0])


def _cfg(**kw):
    base = dict(data="patches", patches=3, n=10, p=300, m=4, n_test=12, mu_norm=6.0, sigma_p=0.7,
                lr=0.05, steps=8, runs=2, init_scale=0.01, noise_rate=0.2, dtype="float64",
                representation="full", snapshot_steps=(0, 8))
    return fg.Config(**{**base, **kw})


@pytest.mark.parametrize("data", ["patches", "xor_patches"])
def test_generated_patch_data_gram_equals_direct_and_its_coefficients_rebuild_w(data):
    cfg = _cfg(data=data, signal_patches=2 if data == "patches" else 1)
    out = {}
    for method in ("gram", "direct"):
        res = fg.run(cfg.replace(method=method), progress=False, keep_networks=True)
        out[method] = res
        for run in range(cfg.runs):
            net = res.network(run, 8)
            pc = net.patch_coefficients()
            W, _ = net.weights()
            pb = net.source.problem("float64")
            M = pb.directions[:pc["gamma"].shape[1]]
            Xi = pb.X[pc["noise_rows"]]
            rebuilt = pb.W0 + pc["gamma"] @ (M / (M * M).sum(1)[:, None]) + \
                pc["rho"] @ (Xi / (Xi * Xi).sum(1)[:, None])
            assert np.abs(W - rebuilt).max() <= 1e-12 * np.abs(W).max()
            h = res.history[(res.history.run == run) & (res.history.step == 8)].iloc[0]
            assert h.signal_learning == pytest.approx(np.abs(pc["gamma"]).max(), rel=1e-12)
            assert h.noise_memorization == pytest.approx(np.abs(pc["rho"]).max(), rel=1e-12)
    cols = ["train_loss", "test_loss", "signal_learning", "noise_memorization"]
    np.testing.assert_allclose(out["gram"].history[cols], out["direct"].history[cols],
                               rtol=1e-9)


def test_patch_data_is_what_the_engines_train_on():
    cfg = _cfg(runs=1)
    ds = fg.patch_data(cfg.n, cfg.p, n_test=cfg.n_test, patches=3, mu_norm=6.0, noise_rate=0.2,
                       sigma_p=0.7, seed=cfg.seed)
    src = fg.sources.GeneratedSource(cfg, 0)
    pb = src.problem("float64")
    assert np.array_equal(pb.X, ds.X.reshape(-1, cfg.p))
    assert np.array_equal(pb.y, ds.y)
    # One signal patch y_clean mu1; noise orthogonal to mu1 with variance sigma_p^2.
    assert np.array_equal(ds.X[:, 0], ds.y_clean[:, None] * ds.mu1)
    assert np.all(ds.X[:, 1:, 0] == 0)
    assert np.var(ds.X[:, 1:, 1:]) == pytest.approx(0.49, rel=0.05)


def test_the_reduced_draw_has_the_law_of_the_full_one():
    # The inner products training sees: noise rows' squared norms sigma_p^2 (p - 1), noise
    # against noise and against W0 centred; the signal rows exactly +-mu1, orthogonal to noise.
    cfg = _cfg(p=20_000, n=6, n_test=4, m=3, runs=1, representation="reduced")
    src = fg.sources.ReducedSource(cfg, 0)
    pb = src.problem("float64")
    rows = pb.X.reshape(cfg.n, cfg.patches, -1)
    assert np.array_equal(rows[:, 0, 0], src.y * 0 + src.draw.y_clean * 6.0)
    assert np.all(rows[:, 0, 1:] == 0) and np.all(rows[:, 1:, 0] == 0)
    sq = np.einsum("ipd,ipd->ip", rows[:, 1:], rows[:, 1:])
    assert sq.mean() == pytest.approx(0.49 * (cfg.p - 1), rel=0.01)
    full = fg.sources.GeneratedSource(cfg.replace(representation="full"), 0).problem("float64")
    fr = full.X.reshape(cfg.n, cfg.patches, -1)
    sq_full = np.einsum("ipd,ipd->ip", fr[:, 1:], fr[:, 1:])
    assert sq_full.mean() == pytest.approx(sq.mean(), rel=0.01)
    G = rows[:, 1:].reshape(-1, rows.shape[2])
    off = (G @ G.T)[np.triu_indices(len(G), 1)]
    assert abs(off.mean()) < 4 * 0.49 * np.sqrt(cfg.p) / np.sqrt(len(off))
    assert np.std(off) == pytest.approx(0.49 * np.sqrt(cfg.p - 1), rel=0.5)


def test_generated_patch_runs_match_between_representations_in_distribution():
    cfg = _cfg(p=4000, n=20, n_test=50, m=6, runs=8, mu_norm=10.0, steps=40, lr=0.02,
               snapshot_steps=(0, 40))
    full = fg.run(cfg, progress=False).summary().iloc[-1]
    reduced = fg.run(cfg.replace(representation="reduced"), progress=False).summary().iloc[-1]
    assert reduced.test_acc_median == pytest.approx(full.test_acc_median, abs=0.1)
    assert reduced.signal_learning_median == pytest.approx(full.signal_learning_median, rel=0.3)


def test_the_existing_api_works_with_patches():
    X, y, W0, a = _problem(5, 16, 2, 25, 4, "signs")
    mu = np.zeros(25)
    mu[0] = 1.0
    res = fg.fit(X, y, m=4, lr=0.5, steps=200, W0=W0, a=a, stop="interpolation", mu1=mu,
                 track={"e1": mu}, metrics={"mean_f": lambda s: float(np.mean(s.outputs))},
                 snapshot_steps=[0, 1], loss="hinge", dtype="float64")
    # Stops where a plain loop over the reference CNN first classifies every label.
    W, t = W0.copy(), 0
    while not ref.interpolates(y, ref.patch_forward(X, W, a)):
        ref.patch_step(X, y, W, a, 0.5, loss="hinge")
        t += 1
    assert int(res.stop_steps[0]) == t
    assert "mean_f" in res.history and "signal_learning" in res.history
    assert res.projections["e1"].shape == (1, 2, 4)
    tr = fg.Trainer(X, y, m=4, lr=0.5, W0=W0, a=a, loss="hinge", dtype="float64")
    tr.step(3)
    W = W0.copy()
    for _ in range(3):
        ref.patch_step(X, y, W, a, 0.5, loss="hinge")
    np.testing.assert_allclose(tr.decision_function(X), ref.patch_forward(X, W, a), rtol=1e-10)
    np.testing.assert_allclose(tr.outputs(), ref.patch_forward(X, W, a), rtol=1e-10)
    sw = fg.sweep(_cfg(runs=2, steps=4, snapshot_steps=(0, 4)), {"noise_rate": [0.0, 0.2]},
                  progress=False)
    assert "final_signal_learning_median" in sw.points.columns


@pytest.mark.parametrize("kw,exc,match", [
    (dict(patches=0), ValueError, "patches must be >= 1"),
    (dict(data="xor", patches=2), ValueError, "patches=2 needs data='patches'"),
    (dict(signal_patches=4), ValueError, "signal_patches must be <= patches=3"),
    (dict(patches=1), ValueError, "leaves no noise patch"),
    (dict(signal_patches=0), ValueError, "mu_norm=6.0 is the norm of a signal patch"),
    (dict(backend="cupy"), NotImplementedError, "backend='cupy'"),
    (dict(train_second_layer=True), NotImplementedError, "trained second layer"),
    (dict(means="random"), NotImplementedError, "means='random'"),
])
def test_bad_patch_settings_are_named(kw, exc, match):
    with pytest.raises(exc, match=match):
        _cfg(**kw)


def test_bad_patch_arrays_are_named():
    X, y, W0, a = _problem(0, 6, 2, 10, 3, "signs")
    with pytest.raises(ValueError, match="X_test must have 2 patch"):
        fg.fit(X, y, m=3, lr=0.1, steps=2, X_test=X[:, :1], y_test=y)
    with pytest.raises(ValueError, match="X_test has 9 columns but X has 10"):
        fg.fit(X, y, m=3, lr=0.1, steps=2, X_test=X[:, :, :9], y_test=y)
    with pytest.raises(ValueError, match="y has 12 labels but the inputs have 6 rows"):
        fg.fit(X, np.tile(y, 2), m=3, lr=0.1, steps=2)
    res = fg.fit(X, y, m=3, lr=0.1, steps=2)
    with pytest.raises(ValueError, match=r"X must have shape \(q, 2, 10\)"):
        res.decision_function(X[:, 0])
    with pytest.raises(ValueError, match="patch_coefficients\\(\\) needs a run on patch data"):
        res.network().patch_coefficients()


def test_the_cnn_hands_off_to_torch():
    torch = pytest.importorskip("torch")
    X, y, W0, a = _problem(2, 8, 3, 12, 4, "signs")
    res = fg.fit(X, y, m=4, lr=0.3, steps=3, W0=W0, a=a, loss="logistic", dtype="float64")
    net = res.to_torch()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    np.testing.assert_allclose(net(Xt).detach().numpy(), res.decision_function(X), rtol=1e-12)
    opt = torch.optim.SGD(net.parameters(), lr=0.3)
    opt.zero_grad()
    net.loss(Xt, yt).backward()
    opt.step()
    W, _ = res.weights()
    ref.patch_step(X, y, W, a, 0.3)
    np.testing.assert_allclose(net.weight.detach().numpy(), W, rtol=1e-12, atol=1e-15)


def test_fit_on_patch_data_reports_what_run_reports():
    # The same data through fit (arrays, signal_patches=1, mu1) and through run: the same
    # signal learning and noise memorisation (W0 given as run draws it).
    cfg = _cfg(runs=1, steps=5, snapshot_steps=(0, 5), method="gram")
    ds = fg.patch_data(cfg.n, cfg.p, n_test=cfg.n_test, patches=3, mu_norm=6.0, noise_rate=0.2,
                       sigma_p=0.7, seed=cfg.seed)
    run = fg.run(cfg, progress=False, keep_networks=True)
    W0 = fg.sources.GeneratedSource(cfg, 0).problem("float64").W0
    a = fg.sources.GeneratedSource(cfg, 0).a
    res = fg.fit(ds.X, ds.y, m=cfg.m, lr=cfg.lr, steps=5, W0=W0, a=a, mu1=ds.mu1,
                 signal_patches=1, X_test=ds.X_test, y_test=ds.y_test, dtype="float64")
    cols = ["train_loss", "test_acc", "signal_learning", "noise_memorization"]
    np.testing.assert_allclose(res.history[cols], run.history[cols], rtol=1e-12)
    with pytest.raises(ValueError, match="signal_patches needs inputs of patches"):
        fg.fit(ds.X[:, 0], ds.y, m=2, lr=0.1, steps=1, signal_patches=1)
    with pytest.raises(ValueError, match="signal_patches must be <= the patches per sample"):
        fg.fit(ds.X, ds.y, m=2, lr=0.1, steps=1, signal_patches=4)
