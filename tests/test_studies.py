"""Built-in studies: each runs end to end (tiny sizes) and writes its figure; bad overrides fail."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

import fastgrok as fg
from fastgrok import studies
from fastgrok.cli import main
from fastgrok.sweeps import grid_points

TINY = dict(n=12, m=6, n_test=16, runs=2, dtype="float64", backend="numba")


@pytest.mark.parametrize("name,steps", [("long", 30), ("dimension", 8), ("snr", 8), ("init", 8),
                                        ("loss", 8), ("second", 8), ("decay", 8)])
def test_study_runs_and_writes_its_figure(tmp_path, name, steps):
    with ThreadPoolExecutor(2) as ex:
        res = fg.study(name, out=tmp_path / name, executor=ex, progress=False, steps=steps, **TINY)
    base = studies.STUDIES[name].base(steps=steps, **TINY)
    pts = grid_points(base, studies.STUDIES[name].grid(base))
    assert len(res.points) == len(pts)
    assert len(res.table) == res.table.groupby(list(pts[0][0])).ngroups * TINY["runs"] * (
        len(fg.run(pts[0][1].replace(runs=1), progress=False).history))
    assert (tmp_path / name / "fig_study.png").stat().st_size > 10_000
    assert res.figure == str(tmp_path / name / "fig_study.png")


def test_study_points_follow_the_base():
    base = studies.STUDIES["dimension"].base(n=50)
    assert studies.STUDIES["dimension"].grid(base)["p"][0] == 50
    assert max(studies.STUDIES["dimension"].grid(base)["p"]) == 50_000
    init = studies.STUDIES["init"].grid(base)
    ratios = {round(np.log10(p["init_scale"] / p["lr"]), 9) for p in init}
    assert ratios == {-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0}
    # The paper's two panels are points of the init study, with exactly the paper's values.
    assert {"lr": 1e-12, "init_scale": 1e-15} in init and {"lr": 1e-16, "init_scale": 1e-15} in init


def test_second_and_decay_studies_pair_their_arms():
    base = studies.STUDIES["second"].base()
    second = grid_points(base, studies.STUDIES["second"].grid(base), paired=("train_second_layer",))
    seeds = {}
    for values, cfg in second:
        seeds.setdefault(values["init_scale"], set()).add(cfg.seed)
    assert all(len(s) == 1 for s in seeds.values())  # fixed and trained share data and W0
    decay = studies.STUDIES["decay"].grid(base)
    rates = sorted({round(p["weight_decay"] * base.lr, 12) for p in decay})
    assert rates == [0.0, 1e-6, 1e-5, 1e-4, 1e-3]


def test_study_bad_input():
    with pytest.raises(ValueError, match="unknown study 'nope'"):
        fg.study("nope")
    with pytest.raises(ValueError, match="sweeps p"):
        fg.study("dimension", p=1000)
    with pytest.raises(ValueError, match="sweeps init_scale, lr"):
        fg.study("init", lr=1e-3, init_scale=1.0)
    with pytest.raises(ValueError, match="m must be"):
        fg.study("snr", m=0)


@pytest.mark.parametrize("grid,match", [
    ([{"mu_norm": 1.0}, {"p": 100}], "same fields"),
    ([{"mu_norm": 1.0}, {"mu_norm": 1.0}], "repeated"),
    ([], "non-empty"),
    ([{"mu_norm": float("nan")}], "finite"),
])
def test_point_list_grids_are_validated(grid, match):
    with pytest.raises(ValueError, match=match):
        grid_points(fg.Config(**{**TINY, "p": 100}), grid)


def test_point_list_grid_equals_the_product_grid(tmp_path):
    base = fg.Config(**{**TINY, "p": 100, "steps": 3, "lr": 1e-2, "init_scale": 1e-3})
    with ThreadPoolExecutor(1) as ex:
        prod = fg.sweep(base, {"mu_norm": [2.0, 4.0], "noise_rate": [0.0]}, executor=ex, progress=False)
        listed = fg.sweep(base, [{"mu_norm": 2.0, "noise_rate": 0.0}, {"mu_norm": 4.0, "noise_rate": 0.0}],
                          executor=ex, progress=False)
    pd.testing.assert_frame_equal(prod.table, listed.table)


def test_cli_study(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["study", "dimension", "--out", str(out), "--no-progress", "--workers", "1",
                 "--steps", "3", "--runs", "1", "--n", "8", "--m", "4", "--n-test", "8"]) == 0
    assert (out / "fig_study.png").exists() and (out / "table.parquet").exists()
    assert "fig_study.png" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["study", "snr", "--mu-norm", "3", "--out", str(tmp_path / "x")])
    assert "sweeps mu_norm" in capsys.readouterr().err
