"""Public API: run/fit/step behaviour, determinism, and clear errors for bad input."""
import json
import os

import numpy as np
import pandas as pd
import pytest
from conftest import random_problem

import fastgrok as fg
from fastgrok import reference as ref
from fastgrok.driver import eval_schedule


def test_run_history_and_summary_shape(small_cfg):
    res = fg.run(small_cfg, progress=False)
    h = res.history
    assert list(h.columns[:6]) == ["run", "step", "train_acc", "train_loss", "test_acc", "test_loss"]
    assert len(h) == small_cfg.runs * (small_cfg.steps + 1)
    s = res.summary()
    assert list(s["step"]) == list(range(small_cfg.steps + 1))
    for col in ("train_acc_median", "test_acc_q20", "test_acc_q80", "pos_mu1_median"):
        assert col in s
    assert (s["test_acc_q20"] <= s["test_acc_median"]).all()
    assert (s["test_acc_median"] <= s["test_acc_q80"]).all()


def test_run_equals_reference_trajectory(small_cfg):
    """fg.run with the numpy backend is the reference applied to the generated run."""
    from fastgrok.weights import draw_second_layer, init_weights

    res = fg.run(small_cfg.replace(runs=1), progress=False)
    c = small_cfg
    ds = fg.xor_clusters(c.n, c.p, n_test=c.n_test, seed=c.seed, run=0)
    a, W = draw_second_layer(c.m, c.seed, 0), init_weights(c.m, c.p, c.init_scale, c.seed, 0)
    for t in range(c.steps + 1):
        ev = ref.evaluate(ds.X, ds.y, W, a, ds.X_test, ds.y_test, ds.mu1, ds.mu2)
        row = res.history.iloc[t]
        assert row["train_acc"] == ev["train_acc"] and row["test_acc"] == ev["test_acc"]
        assert row["train_loss"] == pytest.approx(ev["train_loss"], rel=1e-12)
        ref.step(ds.X, ds.y, W, a, c.lr)


def test_same_seed_same_history_other_seed_differs(small_cfg):
    h1 = fg.run(small_cfg, progress=False).history
    h2 = fg.run(small_cfg, progress=False).history
    pd.testing.assert_frame_equal(h1, h2)
    h3 = fg.run(small_cfg.replace(seed=1), progress=False).history
    assert not h1.equals(h3)


def test_projections_kept_at_hist_steps(small_cfg):
    res = fg.run(small_cfg.replace(snapshot_steps=(0, 2, 5)), progress=False)
    pr = res.projections
    assert list(pr["steps"]) == [0, 2, 5]
    assert pr["P1"].shape == (small_cfg.runs, 3, small_cfg.m) == pr["P2"].shape
    assert pr["a"].shape == (small_cfg.runs, small_cfg.m)
    # The training data in the plane of the means, for the plane figure (Figure 2).
    for r in range(small_cfg.runs):
        ds = fg.xor_clusters(small_cfg.n, small_cfg.p, n_test=small_cfg.n_test,
                             mu_norm=small_cfg.mean_norm, seed=small_cfg.seed, run=r)
        np.testing.assert_allclose(pr["X_mu"][r], ds.X @ np.stack([ds.mu1, ds.mu2]).T, rtol=1e-12)
        np.testing.assert_array_equal(pr["y"][r], ds.y)
    gram = fg.run(small_cfg.replace(snapshot_steps=(0, 2, 5), method="gram"), progress=False)
    np.testing.assert_allclose(gram.projections["X_mu"], pr["X_mu"], rtol=1e-10)


def test_plane_sign_is_the_network_on_the_plane():
    """The plane figure's decision regions: the sign of f at cos(t) e1 + sin(t) e2, from the
    projections alone, equals the network's sign there."""
    from fastgrok.plots import plane_sign

    rng = np.random.default_rng(3)
    p, m = 30, 12
    W, a = rng.standard_normal((m, p)), rng.choice([-1.0, 1.0], m) / np.sqrt(m)
    mu1, mu2 = 4.0 * np.eye(p)[0], 4.0 * np.eye(p)[1]
    theta = np.linspace(-np.pi, np.pi, 97)
    pts = np.cos(theta)[:, None] * mu1 / 4.0 + np.sin(theta)[:, None] * mu2 / 4.0
    for leak in (0.0, 0.3):
        got = plane_sign(W @ mu1, W @ mu2, a, theta, leak)
        want = np.sign(ref.forward(pts, W, a, leak)[1])
        np.testing.assert_array_equal(got, want)
        assert len(set(got)) == 2  # both classes appear: the check can fail


def test_eval_schedule_long_runs_are_log_spaced_and_keep_hist_steps():
    s = eval_schedule(5000, (25, 100, 1000, 2000, 5000))
    assert s[0] == 0 and s[-1] == 5000 and len(s) < 300
    assert set([0, 1, 2, 10, 25, 100, 1000, 2000]).issubset(s)
    assert list(eval_schedule(7)) == list(range(8))


def test_preset_matches_the_paper():
    left, right = fg.preset("paper-fig1-left"), fg.preset("paper-fig1-right")
    for c in (left, right):
        assert (c.n, c.p, c.m, c.n_test, c.noise_rate, c.init_scale, c.runs) == \
            (200, 40_000, 1000, 200, 0.05, 1e-15, 100)
        assert c.mean_norm == pytest.approx(2.5 * np.sqrt(40_000 / 200))
    assert (left.lr, left.steps, right.lr, right.steps) == (1e-12, 50, 1e-16, 5000)
    assert fg.preset("paper-fig1-left", runs=10).runs == 10
    # The plotted right panel: the stated one with kappa = alpha (-l'(0)) / omega_init doubled
    # through alpha, nothing else changed.
    assert fg.preset("paper-fig1-right-plotted") == right.replace(lr=2e-16)


def test_fit_on_user_data_and_step_in_place():
    ds = fg.xor_clusters(40, 4000, n_test=100, mu_norm=60.0, seed=0)
    res = fg.fit(ds.X, ds.y, m=20, lr=1e-3, steps=20, X_test=ds.X_test, y_test=ds.y_test,
                 mu1=ds.mu1, mu2=ds.mu2, init_scale=1e-7, backend="numpy")
    last = res.history.iloc[-1]
    assert last["train_acc"] >= 0.9 and last["test_acc"] >= 0.9  # learns the clean rule
    res2 = fg.fit(ds.X, ds.y, m=10, lr=1e-3, steps=3, backend="numpy")
    assert res2.history["test_acc"].isna().all()
    X, y, W, a = random_problem(0, 5, 9, 4)
    W0 = W.copy()
    out = fg.step(X, y, W, a, 0.1, backend="numpy")
    assert out is W
    np.testing.assert_allclose(W, ref.step(X, y, W0, a, 0.1))


def test_save_writes_every_file_and_nothing_else(small_cfg, tmp_path):
    res = fg.run(small_cfg, progress=False)
    files = res.save(tmp_path / "out")
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == sorted(["config.json", "history.parquet", "history.csv", "summary.csv",
                            "projections.npz",
                            "fig_accuracy.png", "fig_projections.png", "fig_plane.png"])
    assert set(files) == set(names)
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())["config"]
    assert fg.Config.from_dict(cfg) == small_cfg
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "history.csv"), res.history,
                                  check_dtype=False)


def test_a_saved_result_loads_back(small_cfg, tmp_path):
    res = fg.run(small_cfg.replace(snapshot_steps=(0, 2, 5)), progress=False)
    res.save(tmp_path / "out", figures=False)
    from fastgrok.results import Result

    back = Result.load(tmp_path / "out")
    assert back.config == json.loads(json.dumps(res.config))
    pd.testing.assert_frame_equal(back.history, res.history, check_dtype=False)
    assert set(back.projections) == set(res.projections)
    for k, v in res.projections.items():
        np.testing.assert_array_equal(back.projections[k], v)


def test_failed_save_leaves_nothing_half_written(small_cfg, tmp_path, monkeypatch):
    res = fg.run(small_cfg, progress=False)
    real = np.savez

    def boom(path, **arrays):
        real(path, **arrays)  # half the file, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        res.save(tmp_path / "out")
    assert os.listdir(tmp_path / "out") == []


# ---- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value,exc", [
    ("n", 0, ValueError), ("p", -5, ValueError), ("m", 0, ValueError), ("steps", 0, ValueError),
    ("runs", 0, ValueError), ("n_test", 0, ValueError), ("n", 2.5, TypeError),
    ("n", True, TypeError), ("lr", 0.0, ValueError), ("lr", -1e-3, ValueError),
    ("lr", float("nan"), ValueError), ("noise_rate", 0.5, ValueError),
    ("noise_rate", -0.1, ValueError), ("init_scale", -1.0, ValueError),
    ("mu_norm", 0.0, ValueError), ("backend", "tpu", ValueError), ("method", "sgd", ValueError),
    ("dtype", "float16", ValueError), ("second_layer", "half", ValueError),
    ("means", "diagonal", ValueError), ("seed", -1, ValueError), ("snapshot_steps", (0, 99), ValueError),
])
def test_config_rejects_bad_values_naming_the_field(field, value, exc):
    with pytest.raises(exc, match=field):
        fg.Config(**{field: value})


def test_unknown_preset_and_fields():
    with pytest.raises(ValueError, match="preset"):
        fg.preset("paper-fig9")
    with pytest.raises(TypeError, match="bogus"):
        fg.preset("quick", bogus=1)


def test_bad_arrays_are_rejected_with_the_argument_named():
    X, y, W, a = random_problem(0, 5, 9, 4)
    Xn = X.copy()
    Xn[1, 2] = np.nan
    cases = [
        (dict(X=Xn), ValueError, "X contains NaN"),
        (dict(X=np.where(X > 0, np.inf, X)), ValueError, "X contains NaN or inf"),
        (dict(y=np.arange(5.0)), ValueError, "y must contain only -1 and \\+1"),
        (dict(y=y[:4]), ValueError, "y has 4 labels"),
        (dict(W=W[:, :8].copy()), ValueError, "W has 8 columns"),
        (dict(a=a[:3]), ValueError, "a has length 3"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(W=W.astype(np.int64)), TypeError, "W must be a float32 or float64"),
        (dict(X=X.astype(complex)), TypeError, "X must hold real numbers"),
        (dict(backend="tpu"), ValueError, "backend"),
    ]
    for change, exc, msg in cases:
        args = dict(X=X, y=y, W=W.copy(), a=a, lr=0.1, backend="numpy") | change
        with pytest.raises(exc, match=msg):
            fg.step(**args)
    with pytest.raises(ValueError, match="y has 4 labels"):
        fg.fit(X, y[:4], m=3, lr=0.1, steps=2)
    with pytest.raises(ValueError, match="X_test has 8 columns"):
        fg.fit(X, y, m=3, lr=0.1, steps=2, X_test=X[:, :8], y_test=y)
    with pytest.raises(ValueError, match="X_test and y_test"):
        fg.fit(X, y, m=3, lr=0.1, steps=2, X_test=X)
    with pytest.raises(ValueError, match="m must be"):
        fg.fit(X, y, m=0, lr=0.1, steps=2)
    with pytest.raises(ValueError, match="steps must be"):
        fg.fit(X, y, m=2, lr=0.1, steps=0)


def test_memory_is_estimated_before_allocating():
    with pytest.raises(MemoryError, match="GiB"):
        fg.run(fg.Config(n=200, p=10**12, m=1000, backend="numpy", method="direct",
                         representation="full"), progress=False)
    with pytest.raises(ValueError, match="GiB"):
        fg.xor_clusters(10**6, 10**7)


def test_unwritable_output_directory(small_cfg, tmp_path):
    res = fg.run(small_cfg.replace(steps=1, runs=1), progress=False)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="out="):
        res.save(blocker)
    with pytest.raises(ValueError, match="out="):
        res.save(blocker / "sub")


@pytest.mark.skipif(fg.gpu_usable(), reason="checks the error raised without a GPU")
def test_cupy_without_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="backend='cupy' needs CuPy"):
        fg.run(fg.Config(n=4, p=10, m=2, n_test=2, steps=1, runs=1, backend="cupy",
                         method="direct"), progress=False)


def test_replace_with_fewer_steps_keeps_the_histogram_steps_that_exist():
    cfg = fg.preset("paper-fig1-right").replace(steps=500)
    assert cfg.snapshot_steps == (0, 25, 100)
    with pytest.raises(ValueError, match="snapshot_steps"):
        fg.preset("paper-fig1-right").replace(steps=500, snapshot_steps=(1000,))


@pytest.mark.parametrize("field,value,exc,match", [
    ("m", 2.5, TypeError, "m must be an integer"), ("steps", 0, ValueError, "steps must be >= 1"),
    ("lr", -1.0, ValueError, "lr must be > 0"), ("init_scale", -1.0, ValueError, "init_scale must be >= 0"),
    ("method", "sgd", ValueError, "unknown method 'sgd'"), ("dtype", "float16", ValueError, "unknown dtype"),
    ("runs", True, TypeError, "runs must be an integer"),
])
def test_the_same_mistake_gives_the_same_error_in_config_and_fit(field, value, exc, match):
    with pytest.raises(exc, match=match):
        fg.Config(**{field: value})
    X, y, _, _ = random_problem(0, 6, 10, 1)
    kw = dict(m=3, lr=0.1, steps=2)
    kw[field] = value
    with pytest.raises(exc, match=match):
        fg.fit(X, y, **kw)


def test_every_config_field_is_declared_once():
    import dataclasses

    from fastgrok.config import FIELDS

    assert list(FIELDS) == [f.name for f in dataclasses.fields(fg.Config)]


def test_renamed_names_keep_working_with_a_future_warning():
    with pytest.warns(FutureWarning, match="hist_steps is renamed snapshot_steps"):
        cfg = fg.Config(steps=5, hist_steps=(0, 5))
    assert cfg.snapshot_steps == (0, 5)
    with pytest.warns(FutureWarning, match="population_test is renamed"):
        assert cfg.replace(population_test=0).population_test_samples == 0
    with pytest.warns(FutureWarning, match="Config.mu is renamed Config.mean_norm"):
        assert cfg.mu == cfg.mean_norm
    with pytest.warns(FutureWarning, match="hist_steps is renamed"):
        assert fg.preset("quick", steps=3, hist_steps=(1,)).snapshot_steps == (1,)
    assert fg.Config.from_dict({**cfg.to_dict(), "snapshot_steps": None}).snapshot_steps is None
    # A config saved by 0.1 reads as it was (no warning: the file is not the user's code).
    old = {k: v for k, v in cfg.to_dict().items() if k != "snapshot_steps"}
    assert fg.Config.from_dict({**old, "hist_steps": [1]}).snapshot_steps == (1,)
    X, y, *_ = random_problem(0, 6, 20, 3)
    with pytest.warns(FutureWarning, match="second_layer_mode is renamed second_layer"):
        res = fg.fit(X, y, m=3, lr=0.1, steps=2, second_layer_mode="balanced")
    assert res.config["second_layer"] == "balanced"
    with pytest.raises(TypeError, match="give only snapshot_steps"):
        fg.Config(hist_steps=(0,), snapshot_steps=(0,))
    with pytest.raises(TypeError, match="unexpected keyword"):
        fg.fit(X, y, m=3, lr=0.1, steps=2, nonsense=1)


def test_saved_configs_hold_the_effective_leak_and_only_meaningful_columns():
    res = fg.run(fg.preset("quick", runs=1, steps=2, m=5, activation="leaky_relu"),
                 progress=False)
    assert res.config["leak"] == 0.1
    assert "test_acc_se" not in res.history.columns
    X, y, *_ = random_problem(0, 6, 20, 3)
    assert fg.fit(X, y, m=3, lr=0.1, steps=2, activation="leaky_relu").config["leak"] == 0.1
