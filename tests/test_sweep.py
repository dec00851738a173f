"""Sweeps: validation before work, local and Dask executors, atomic per-point files, resume."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import fastgrok as fg
from fastgrok import sweeps as sw

BASE = fg.Config(n=10, p=400, m=6, n_test=20, runs=2, steps=4, lr=1e-3, init_scale=1e-3,
                 dtype="float64", backend="numba")
GRID = {"mu_norm": [5.0, 20.0], "noise_rate": [0.0, 0.1]}


@pytest.mark.parametrize("grid,match", [
    ({"bogus": [1]}, "not a Config field"),
    ({"mu_norm": []}, "non-empty"),
    ({"mu_norm": "5"}, "non-empty list"),
    ({"mu_norm": ["a"]}, "finite numbers"),
    ({"noise_rate": [0.7]}, "noise_rate must be in"),
    ({}, "non-empty dict"),
])
def test_bad_grids_fail_before_any_work(grid, match):
    with pytest.raises(ValueError, match=match):
        sw.grid_points(BASE, grid)


def test_points_have_their_own_seeds_independent_of_the_grid():
    pts = sw.grid_points(BASE, GRID)
    assert len(pts) == 4 and len({c.seed for _, c in pts}) == 4
    bigger = sw.grid_points(BASE, {"mu_norm": [5.0, 20.0, 40.0], "noise_rate": [0.0, 0.1]})
    seeds = {tuple(v.values()): c.seed for v, c in bigger}
    for v, c in pts:
        assert seeds[tuple(v.values())] == c.seed


def test_local_sweep_table_points_and_resume(tmp_path, monkeypatch):
    res = fg.sweep(BASE, GRID, out=tmp_path / "s", n_workers=2, progress=False)
    t = res.table
    assert len(t) == 4 * BASE.runs * (BASE.steps + 1)
    assert {"mu_norm", "noise_rate", "run", "step", "test_acc"} <= set(t.columns)
    assert len(res.points) == 4 and "grok_step_median" in res.points
    assert os.path.exists(tmp_path / "s" / "table.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s" / "table.parquet"), t)
    # A point equals a plain run of its config.
    values, cfg = sw.grid_points(BASE, GRID)[0]
    h = fg.run(cfg, progress=False).history
    got = t[(t.mu_norm == values["mu_norm"]) & (t.noise_rate == values["noise_rate"])]
    np.testing.assert_allclose(got.test_loss.to_numpy(), h.test_loss.to_numpy(), rtol=1e-12)
    # Rerun: nothing is recomputed, same table.
    monkeypatch.setattr(sw, "_run_point", lambda *a: pytest.fail("recomputed a finished point"))
    again = fg.sweep(BASE, GRID, out=tmp_path / "s", progress=False)
    pd.testing.assert_frame_equal(again.table, t)
    with pytest.raises(ValueError, match="different base"):
        fg.sweep(BASE.replace(m=7), GRID, out=tmp_path / "s", progress=False)


def test_a_grown_grid_reuses_the_finished_points(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        small = fg.sweep(BASE, {"mu_norm": [5.0, 20.0]}, out=tmp_path / "g", executor=ex, progress=False)
        computed = []
        real = sw._run_point
        monkeypatch.setattr(sw, "_run_point", lambda c, v, t: computed.append(v) or real(c, v, t))
        grown = fg.sweep(BASE, {"mu_norm": [5.0, 10.0, 20.0]}, out=tmp_path / "g", executor=ex,
                         progress=False)
        assert computed == [{"mu_norm": 10.0}]
        fresh = fg.sweep(BASE, {"mu_norm": [5.0, 10.0, 20.0]}, executor=ex, progress=False)
    pd.testing.assert_frame_equal(grown.table, fresh.table)
    pd.testing.assert_frame_equal(grown.table[grown.table.mu_norm != 10.0].reset_index(drop=True),
                                  small.table)


def test_kill_and_resume_gives_the_uninterrupted_table(tmp_path):
    grid = {"mu_norm": [5.0, 10.0, 20.0, 40.0]}
    code = ("import fastgrok as fg, sys\n"
            "from test_sweep import BASE\n"
            f"fg.sweep(BASE.replace(steps=60), {grid!r}, out=sys.argv[1], n_workers=1, progress=False)\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(__file__))
    out = tmp_path / "k"
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], env=env)
    deadline = time.time() + 120

    def finished_points():
        d = out / "points"
        return [f for f in os.listdir(d) if f.endswith(".csv")] if d.exists() else []

    while time.time() < deadline and not finished_points():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(finished_points())
    assert 1 <= finished <= 4
    resumed = fg.sweep(BASE.replace(steps=60), grid, out=out, n_workers=1, progress=False).table
    clean = fg.sweep(BASE.replace(steps=60), grid, out=tmp_path / "c", n_workers=1,
                     progress=False).table
    pd.testing.assert_frame_equal(resumed, clean)
    assert not [f for f in os.listdir(out / "points") if f.startswith(".tmp")]


def test_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask[distributed] not installed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        res = fg.sweep(BASE, GRID, out=tmp_path / "d", executor=client, progress=False)
    local = fg.sweep(BASE, GRID, out=tmp_path / "l", n_workers=1, progress=False)
    pd.testing.assert_frame_equal(res.table, local.table)


def test_grokking_time_and_never():
    t = pd.DataFrame({"g": 1, "run": [0, 0, 0, 1, 1, 1, 2, 2, 2], "step": [0, 1, 2] * 3,
                      "train_acc": 1.0, "test_acc": [0.5, 0.95, 1, 0.5, 0.5, 0.92, 0.5, 0.5, 0.5]})
    p = sw.point_summaries(t, ["g"], threshold=0.9)
    assert p.loc[0, "runs_never"] == 1 and p.loc[0, "grok_step_median"] == 2
    t2 = t.assign(test_acc=0.5)
    assert pd.isna(sw.point_summaries(t2, ["g"]).loc[0, "grok_step_median"])
