"""The model family: leaky ReLU, the exponential and hinge losses, linear (two-cluster) data.

The engines are checked against the reference on drawn problems for every (activation, loss)
pair in ``test_properties.py``; here the reference itself is checked against finite differences
of the loss as written, the formulations against each other on generated experiments, the
representations in distribution, and the bad inputs.
"""
import warnings

import numpy as np
import pytest

import fastgrok as fg
from fastgrok import reference as ref
from fastgrok.cli import main
from fastgrok.config import LOSSES
from fastgrok.model import Model

FAMILY = [(act, leak, loss) for act, leak in (("relu", None), ("leaky_relu", 0.1), ("leaky_relu", 0.5))
          for loss in LOSSES]
IDS = [f"{a}{'' if k is None else k}-{l}" for a, k, l in FAMILY]


def _mean_loss(X, y, W, a, model):
    """The training loss exactly as written: (1/n) sum_i l(y_i sum_j a_j phi(<w_j, x_i>))."""
    Z = X @ W.T
    phi = np.where(Z > 0, Z, model.slope * Z)
    margins = y * (phi @ a)
    return {"logistic": np.mean(np.log1p(np.exp(-margins))),
            "exponential": np.mean(np.exp(-margins)),
            "hinge": np.mean(np.maximum(0.0, 1.0 - margins)),
            "square": np.mean((y - phi @ a) ** 2) / 2}[model.loss]


@pytest.mark.parametrize("act,leak,loss", FAMILY, ids=IDS)
def test_reference_gradient_equals_finite_differences_of_the_written_loss(act, leak, loss):
    model = Model(act, leak, loss)
    g = np.random.default_rng(3)
    checked = 0
    for _ in range(20):
        n, p, m = 5, 6, 4
        # Margins of order 1, so the loss (and the differences' rounding) stays moderate.
        X, W = g.standard_normal((n, p)), 0.3 * g.standard_normal((m, p))
        y, a = np.where(g.random(n) < 0.5, 1.0, -1.0), g.standard_normal(m) / 2
        # Central differences are exact to O(h^2) only away from the kinks: z = 0, and the
        # hinge's margin 1. Problems within 1e-3 of one are skipped (none is for most seeds).
        Z = X @ W.T
        margins = y * (ref.activation(Z, model.slope) @ a)
        if np.abs(Z).min() < 1e-3 or (loss == "hinge" and np.abs(margins - 1).min() < 1e-3):
            continue
        grad = ref.gradient(X, y, W, a, model.slope, model.loss)
        h = 1e-6
        fd = np.zeros_like(W)
        for idx in np.ndindex(W.shape):
            Wp, Wm = W.copy(), W.copy()
            Wp[idx] += h
            Wm[idx] -= h
            fd[idx] = (_mean_loss(X, y, Wp, a, model) - _mean_loss(X, y, Wm, a, model)) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
        checked += 1
    assert checked >= 10


def test_loss_values_and_weights_are_stable_for_large_margins():
    z = np.array([-1000.0, -50.0, 0.0, 0.5, 1.0, 50.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        lg, ex, hi = (ref.loss_values(z, k) for k in ("logistic", "exponential", "hinge"))
        gl, ge, gh = (ref.loss_weights(z, 1.0, k) for k in ("logistic", "exponential", "hinge"))
        assert ref.mean_loss(np.ones(2), np.array([-1000.0, 1.0]), "exponential") == np.inf
    assert lg[0] == 1000.0 and lg[2] == np.log(2) and lg[-2] == pytest.approx(np.exp(-50.0))
    assert ex[0] == np.inf and ex[2] == 1.0 and ex[-1] == 0.0
    np.testing.assert_array_equal(hi, [1001.0, 51.0, 1.0, 0.5, 0.0, 0.0, 0.0])
    assert gl[2] == 0.5 and gl[0] == 1.0 and gl[-2] == pytest.approx(np.exp(-50.0))  # relative
    assert ge[0] == np.inf and ge[2] == 1.0
    np.testing.assert_array_equal(gh, [1, 1, 1, 1, 0, 0, 0])  # the kink: -l'(1) = 0
    for arr in (lg, ex, hi, gl, ge, gh):
        assert not np.isnan(arr).any()


def test_the_kernels_loss_weight_equals_the_reference():
    from fastgrok.kernels.numba_fused import loss_weight

    for code, name in enumerate(LOSSES):
        for z in (-1000.0, -3.0, -1e-9, 0.0, 1e-9, 0.999, 1.0, 1.001, 40.0, 800.0):
            assert loss_weight(z, code) == ref.loss_weights(np.array([z]), 1.0, name)[0], (name, z)


@pytest.mark.parametrize("data", ["xor", "linear"])
@pytest.mark.parametrize("act,leak,loss", FAMILY[:8], ids=IDS[:8])
def test_gram_equals_direct_on_generated_experiments(act, leak, loss, data):
    """Steps large enough that the outputs leave the tiny regime (the losses differ there)."""
    cfg = fg.Config(n=30, p=3000, m=40, n_test=50, steps=40, runs=2, lr=2e-3, init_scale=1e-3,
                    dtype="float64", backend="numba", activation=act, leak=leak, loss=loss,
                    data=data, snapshot_steps=(0, 40))
    h_direct = fg.run(cfg.replace(method="direct", backend="numpy"), progress=False).history
    h_gram = fg.run(cfg.replace(method="gram"), progress=False).history
    assert (h_direct["train_acc"] == h_gram["train_acc"]).all()
    assert (h_direct["test_acc"] == h_gram["test_acc"]).all()
    assert h_gram["train_loss"].iloc[-1] < h_gram["train_loss"].iloc[0]  # it trained
    for col in ("train_loss", "test_loss", "pos_mu1", "neg_mu1"):
        np.testing.assert_allclose(h_gram[col], h_direct[col], rtol=1e-9)
    mu2_cols = h_gram[["pos_mu2", "neg_mu2"]]
    assert mu2_cols.isna().all().all() if data == "linear" else mu2_cols.notna().all().all()


def test_linear_data_are_two_clusters_on_mu1():
    d = fg.linear_clusters(n=400, p=500, n_test=300, mu_norm=5.0, noise_rate=0.1, seed=2)
    assert set(d.clusters) == {0, 1} and set(d.clusters_test) == {0, 1}
    np.testing.assert_array_equal(d.y_clean, np.where(d.clusters == 0, 1.0, -1.0))
    np.testing.assert_array_equal(d.y, np.where(d.flipped, -d.y_clean, d.y_clean))
    # x = y_clean mu1 + xi: the projection on mu1 / ||mu|| is y_clean ||mu|| + N(0, 1), and
    # nothing of mu2 is in the data.
    proj1, proj2 = d.X @ d.mu1 / 5.0, d.X @ d.mu2 / 5.0
    assert abs(np.mean(proj1 * d.y_clean) - 5.0) < 0.2 and abs(np.std(proj2) - 1.0) < 0.1
    assert abs(np.mean(d.X_test @ d.mu1 / 5.0 * d.y_test) - 5.0) < 0.2
    assert 0.05 < d.flipped.mean() < 0.15


@pytest.mark.slow
@pytest.mark.parametrize("changes", [dict(data="linear", mu_norm=6.0),
                                     dict(activation="leaky_relu", leak=0.2, loss="exponential")],
                         ids=["linear", "leaky-exponential"])
def test_reduced_equals_full_in_distribution(changes):
    from test_reduced import assert_same_distribution

    cfg = fg.Config(n=20, p=5000, m=20, n_test=50, runs=300, steps=20, lr=1e-12, init_scale=1e-15,
                    dtype="float64", seed=11, snapshot_steps=(0,), **changes)
    h_full = fg.run(cfg.replace(representation="full"), progress=False).history
    h_red = fg.run(cfg.replace(representation="reduced"), progress=False).history
    for t in (1, 5, cfg.steps):
        for col in ("train_acc", "test_acc", "train_loss"):
            assert_same_distribution(h_full.loc[h_full.step == t, col],
                                     h_red.loc[h_red.step == t, col], f"{col} at step {t}")


def test_population_accuracy_of_linear_data_uses_its_two_clusters():
    cfg = fg.Config(n=40, p=20_000, m=20, n_test=20, runs=2, steps=3, lr=1e-12, init_scale=1e-15,
                    dtype="float64", data="linear", mu_norm=8.0, population_test_samples=2000,
                    activation="leaky_relu", snapshot_steps=(0,))
    h = fg.run(cfg, progress=False).history
    last = h[h.step == 3]
    # After a few steps the network is near the linear classifier sum_i y_i x_i: clean test
    # accuracy well above chance, with a standard error of about sqrt(acc (1 - acc) / 4000).
    assert (last.test_acc > 0.8).all() and (last.test_acc_se < 0.01).all()


@pytest.mark.parametrize("kwargs,match", [
    (dict(activation="tanh"), "unknown activation 'tanh'"),
    (dict(loss="squared"), "unknown loss 'squared'"),
    (dict(data="circles"), "unknown data 'circles'"),
    (dict(activation="leaky_relu", leak=1.0), r"leak must be in \[0, 1\)"),
    (dict(activation="leaky_relu", leak=-0.1), r"leak must be in \[0, 1\)"),
    (dict(leak=0.1), "leak=0.1 needs activation='leaky_relu'"),
])
def test_bad_model_fields_fail_before_any_work(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fg.Config(**kwargs)
    X, y = np.ones((2, 3)), np.array([1.0, -1.0])
    if "data" not in kwargs:  # the same checks in fit and step, before anything is drawn
        with pytest.raises(ValueError, match=match):
            fg.fit(X, y, m=2, lr=0.1, steps=1, **kwargs)
        with pytest.raises(ValueError, match=match):
            fg.step(X, y, np.zeros((2, 3)), np.ones(2), 0.1, **kwargs)


def test_leaky_relu_default_leak_and_the_cli_options(tmp_path, capsys):
    assert Model("leaky_relu").slope == 0.1 and Model().slope == 0.0 and Model().g0 == 0.5
    assert Model(loss="exponential").g0 == Model(loss="hinge").g0 == 1.0
    with pytest.raises(SystemExit) as exc:
        main(["run", "--leak", "0.2", "--out", str(tmp_path / "x")])
    assert exc.value.code == 2
    assert "leak=0.2 needs activation='leaky_relu'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_leaky_linear_preset_overfits_benignly():
    """Every noisy training label fitted after one step, while the clean test accuracy is near 1
    (a few runs of the preset)."""
    res = fg.run(fg.preset("frei2022-leaky-linear", runs=4), progress=False)
    h = res.history
    assert (h[h.step >= 1].train_acc == 1.0).all()
    assert (h[h.step >= 1].test_acc >= 0.97).all()
    assert h.pos_mu2.isna().all() and h.pos_mu1.notna().all()
    with pytest.raises(ValueError, match="needs activation='leaky_relu'"):
        fg.preset("frei2022-leaky-linear", activation="relu")  # leak stays: a clear error
