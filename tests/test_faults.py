"""Faults a researcher's machine meets: each as a test that failed before it was handled.

A grid's points are their values as the Config holds them; diverging runs are flagged, never
reported as 0.0 accuracy; a figure never costs the data; damaged files are refused or set
aside; SIGTERM is Ctrl-C; a dying worker is reported and its point retried; a full disk is
refused before training.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

import fastgrok as fg
from fastgrok import sweeps as sw
from fastgrok.cli import main

BASE = fg.Config(n=10, p=400, m=6, n_test=20, runs=2, steps=4, lr=1e-3, init_scale=1e-3,
                 dtype="float64", backend="numba")


# ------------------------------------------------------------------ a grid point's identity
def test_a_grid_point_is_its_config_values_from_python_and_the_cli(tmp_path, monkeypatch):
    ints = sw.grid_points(BASE, {"mu_norm": [10, 20, 35]})
    floats = sw.grid_points(BASE, {"mu_norm": [10.0, 20.0, 35.0]})
    assert [(v, c) for v, c in ints] == [(v, c) for v, c in floats]
    out = tmp_path / "grid"
    assert main(["sweep", "--out", str(out), "--grid", "mu_norm=10,20", "--no-progress",
                 "--workers", "1", "--n", "10", "--p", "400", "--m", "6", "--n-test", "20",
                 "--runs", "2", "--steps", "4", "--lr", "1e-3", "--init-scale", "1e-3",
                 "--dtype", "float64", "--backend", "numba"]) == 0
    cli = pd.read_parquet(out / "table.parquet")
    # The same grid from Python, written with ints, resumes the CLI's folder: no point recomputed.
    monkeypatch.setattr(sw, "_run_point", lambda *a: pytest.fail("recomputed a finished point"))
    base = fg.preset("quick", n=10, p=400, m=6, n_test=20, runs=2, steps=4, lr=1e-3,
                     init_scale=1e-3, dtype="float64", backend="numba")
    again = fg.sweep(base, {"mu_norm": [10, 20]}, out=out, progress=False)
    pd.testing.assert_frame_equal(again.table, cli)


@pytest.mark.parametrize("grid", [{"noise_rate": [0, 0.0]}, [{"lr": 1e-3}, {"lr": 0.001}]])
def test_repeated_points_after_normalisation_are_an_error(grid):
    with pytest.raises(ValueError, match="repeated points"):
        sw.grid_points(BASE, grid)
