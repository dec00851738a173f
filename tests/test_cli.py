"""The command line on a tiny configuration."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import default_ctrl_c

from fastgrok.cli import main

TINY = ["--n", "10", "--p", "200", "--m", "6", "--n-test", "20", "--steps", "4", "--runs", "2",
        "--lr", "1e-3", "--init-scale", "1e-3", "--backend", "numpy", "--dtype", "float64"]


def test_cli_run_writes_every_output(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", *TINY, "--snapshot-steps", "0,2,4", "--out", str(out), "--no-progress"]) == 0
    assert sorted(os.listdir(out)) == sorted(["config.json", "history.parquet", "history.csv",
                                              "summary.csv",
                                              "projections.npz", "fig_accuracy.png",
                                              "fig_projections.png", "fig_plane.png"])
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["p"] == 200 and cfg["snapshot_steps"] == [0, 2, 4] and cfg["n_test"] == 20
    text = capsys.readouterr().out
    assert "test_acc median" in text and str(out) in text


def test_cli_figures_redraws_a_saved_run_without_training(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", *TINY, "--snapshot-steps", "0,2,4", "--out", str(out), "--no-progress"]) == 0
    figs = ["fig_accuracy.png", "fig_plane.png", "fig_projections.png"]
    for name in figs:
        os.remove(out / name)
    assert main(["figures", str(out)]) == 0
    assert all((out / name).stat().st_size > 0 for name in figs)
    assert main(["figures", str(out), "--out", str(tmp_path / "f")]) == 0
    assert sorted(os.listdir(tmp_path / "f")) == figs
    with pytest.raises(SystemExit):
        main(["figures", str(tmp_path / "nothing")])
    assert "expected a folder written by" in capsys.readouterr().err


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


@pytest.mark.slow  # a subprocess
def test_console_script_is_installed(tmp_path):
    """The `fastgrok` script pip installed next to this interpreter runs the CLI."""
    script = shutil.which("fastgrok", path=os.path.dirname(sys.executable))
    assert script is not None, f"no fastgrok script in {os.path.dirname(sys.executable)}"
    r = subprocess.run([script, "run", "--help"], capture_output=True, text=True, check=True)
    assert "--noise-rate" in r.stdout and "--init-scale" in r.stdout


def test_cli_sweep_writes_table_points_and_figure(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", *TINY, "--grid", "mu_norm=5,20", "--grid", "noise-rate=0,0.1",
                 "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    assert {"table.parquet", "points.csv", "fig_sweep.png", "sweep.json", "points"} <= set(os.listdir(out))
    assert "grok_step_median" in capsys.readouterr().out


@pytest.mark.slow
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


@pytest.mark.slow  # a subprocess
def test_progress_in_a_redirected_log_is_clean_lines(tmp_path, monkeypatch):
    """`fastgrok run > log 2>&1`: whole lines only (no carriage returns, no partial bars), one
    reporter for build and steps, a first and a last line."""
    from fastgrok import tunables

    log = tmp_path / "log"
    cmd = [sys.executable, "-m", "fastgrok.cli", "run", "--preset", "quick", "--runs", "3",
           "--steps", "30", "--m", "10", "--p", "2000", "--out", str(tmp_path / "o")]
    with open(log, "w") as fh:
        subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=True, timeout=300)
    text = log.read_text()
    assert "\r" not in text and "\x1b" not in text
    progress = [ln.split(": ", 1)[1] for ln in text.splitlines()
                if re.match(r"fastgrok (direct|gram)/numba: ", ln)]
    assert progress[0].startswith("0/90 steps")
    assert progress[-1].startswith("90/90 steps in ")
    assert len(progress) <= 2 + 30 / tunables.PROGRESS_LOG_INTERVAL + 1


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere(capsys):
    import io

    from fastgrok.progress import _Bar, _Lines, _Null, progress_bar

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(progress_bar(10, "x", "step", stream=Tty()), _Bar)
    lines = io.StringIO()
    bar = progress_bar(10, "x", "step", stream=lines)
    assert isinstance(bar, _Lines)
    bar.phase("building runs 1/2")
    bar.update(10)
    bar.close()
    assert lines.getvalue().splitlines()[0] == "x: 0/10 steps"
    assert lines.getvalue().splitlines()[-1].startswith("x: 10/10 steps in ")
    assert isinstance(progress_bar(10, "x", "step", enabled=False), _Null)


@pytest.mark.slow  # a subprocess
def test_ctrl_c_during_a_run_exits_130_without_traceback(tmp_path):
    """Deterministic: the interrupt is sent once training has started (its first progress
    line), into a run of 10^8 steps that cannot end first on any machine."""
    import signal

    cmd = [sys.executable, "-m", "fastgrok.cli", "run", "--preset", "quick", "--runs", "2",
           "--steps", "100000000", "--out", str(tmp_path / "o")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_ctrl_c)
    first = proc.stderr.readline()  # the first progress line: training has started
    assert " steps" in first, first
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "fastgrok: interrupted: nothing was written"
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")


def test_options_are_never_abbreviated(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", *TINY, "--noise", "0.1"])
    assert exc.value.code == 2 and "--noise" in capsys.readouterr().err


def test_negative_numbers_are_values_and_are_checked(capsys):
    with pytest.raises(SystemExit):
        main(["run", *TINY, "--lr", "-1e-12"])
    err = capsys.readouterr().err
    assert "lr must be > 0, got -1e-12" in err and "expected one argument" not in err


def test_old_option_names_still_work_with_a_future_warning(tmp_path):
    with pytest.warns(FutureWarning, match="--hist-steps is renamed --snapshot-steps"):
        assert main(["run", *TINY, "--hist-steps", "0,2", "--out", str(tmp_path / "o"),
                     "--no-figures", "--no-progress"]) == 0
    with open(tmp_path / "o" / "config.json") as fh:
        assert json.load(fh)["config"]["snapshot_steps"] == [0, 2]
