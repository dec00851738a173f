"""The command line on a tiny configuration."""
import json
import os
import subprocess
import sys

import pytest

from fastgrok.cli import main

TINY = ["--n", "10", "--p", "200", "--m", "6", "--n-test", "20", "--steps", "4", "--runs", "2",
        "--lr", "1e-3", "--init-scale", "1e-3", "--backend", "numpy", "--dtype", "float64"]


def test_cli_run_writes_every_output(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", *TINY, "--hist-steps", "0,2,4", "--out", str(out), "--no-progress"]) == 0
    assert sorted(os.listdir(out)) == sorted(["config.json", "history.csv", "summary.csv",
                                              "projections.npz", "fig_accuracy.png",
                                              "fig_projections.png"])
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["p"] == 200 and cfg["hist_steps"] == [0, 2, 4] and cfg["n_test"] == 20
    text = capsys.readouterr().out
    assert "test_acc median" in text and str(out) in text


def test_cli_rejects_bad_values_before_running(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["run", *TINY, "--lr", "-1", "--out", str(tmp_path / "x")])
    assert "lr must be > 0" in capsys.readouterr().err
    blocker = tmp_path / "f"
    blocker.write_text("")
    with pytest.raises(SystemExit):
        main(["run", *TINY, "--out", str(blocker)])
    assert "out=" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--preset", "nope"])


def test_console_script_is_installed(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fastgrok.cli", "run", "--help"],
                       capture_output=True, text=True, check=True)
    assert "--noise-rate" in r.stdout and "--init-scale" in r.stdout


def test_cli_sweep_writes_table_points_and_figure(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", *TINY, "--grid", "mu_norm=5,20", "--grid", "noise-rate=0,0.1",
                 "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    assert {"table.parquet", "points.csv", "fig_sweep.png", "sweep.json", "points"} <= set(os.listdir(out))
    assert "grok_step_median" in capsys.readouterr().out


def test_cli_sweep_rejects_bad_grids_and_unreachable_schedulers(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["sweep", *TINY, "--grid", "bogus=1,2", "--out", str(tmp_path / "a")])
    assert "bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", *TINY, "--grid", "mu_norm=x", "--out", str(tmp_path / "b")])
    pytest.importorskip("distributed")
    with pytest.raises(SystemExit):
        main(["sweep", *TINY, "--grid", "mu_norm=5", "--scheduler", "tcp://127.0.0.1:9",
              "--out", str(tmp_path / "c")])
    assert "unreachable" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "c" / "points")
