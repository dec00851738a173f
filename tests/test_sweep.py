"""Sweeps: validation before work, local and Dask executors, atomic per-point files, resume."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from conftest import alive, child_processes, default_ctrl_c

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


def test_paired_fields_share_seeds_and_a_folder_keeps_its_pairing(tmp_path):
    grid = {"loss": ["logistic", "exponential", "hinge"], "noise_rate": [0.0, 0.1]}
    pts = sw.grid_points(BASE, grid, paired=("loss",))
    seeds = {}
    for v, c in pts:
        seeds.setdefault(v["noise_rate"], set()).add(c.seed)
    assert all(len(s) == 1 for s in seeds.values()) and len(set.union(*seeds.values())) == 2
    with pytest.raises(ValueError, match="not grid fields"):
        sw.grid_points(BASE, grid, paired=("mu_norm",))
    # While the outputs are tiny the exponential loss's weight exp(-y f) is 1 to about |f|,
    # and the hinge's is exactly 1: paired, their points train the same networks on the same
    # data, to the same accuracies (unpaired, the data would differ).
    tiny = BASE.replace(lr=1e-9, init_scale=1e-12)
    res = sw.sweep(tiny, {"loss": ["exponential", "hinge"]}, out=tmp_path,
                   n_workers=1, progress=False, figures=False, paired=("loss",))
    t = res.table
    hinge, expo = (t[t.loss == k].reset_index(drop=True) for k in ("hinge", "exponential"))
    assert (hinge[["train_acc", "test_acc"]] == expo[["train_acc", "test_acc"]]).all().all()
    np.testing.assert_allclose(hinge[["pos_mu1", "neg_mu2"]], expo[["pos_mu1", "neg_mu2"]], rtol=1e-6)
    with pytest.raises(ValueError, match="paired"):
        sw.sweep(tiny, {"loss": ["exponential", "hinge"]}, out=tmp_path,
                 n_workers=1, progress=False, figures=False)


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


def test_a_sweep_written_before_a_field_existed_resumes(tmp_path, monkeypatch):
    """A field added later (here label_noise) is at its default in an older sweep.json."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    out = tmp_path / "old"
    with ThreadPoolExecutor(1) as ex:
        first = fg.sweep(BASE, {"mu_norm": [5.0, 20.0]}, out=out, executor=ex, progress=False)
        spec = json.loads((out / "sweep.json").read_text())
        del spec["base"]["label_noise"]
        (out / "sweep.json").write_text(json.dumps(spec))
        monkeypatch.setattr(sw, "_run_point", lambda *a: pytest.fail("a point was recomputed"))
        again = fg.sweep(BASE, {"mu_norm": [5.0, 20.0]}, out=out, executor=ex, progress=False)
        pd.testing.assert_frame_equal(first.table, again.table)
        with pytest.raises(ValueError, match="different base Config"):
            fg.sweep(BASE.replace(label_noise="exact"), {"mu_norm": [5.0]}, out=out,
                     executor=ex, progress=False)


@pytest.mark.slow
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
        return [f for f in os.listdir(d) if f.endswith(".parquet")] if d.exists() else []

    while time.time() < deadline and not finished_points():
        time.sleep(0.05)
    workers = [pid for pid, cmd in child_processes(proc.pid).items() if "resource_tracker" not in cmd]
    assert workers, "the sweep runs its points in worker processes"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The workers exit with their parent instead of idling for ever, re-parented to init.
    deadline = time.time() + 15
    while time.time() < deadline and any(alive(w) for w in workers):
        time.sleep(0.05)
    assert not any(alive(w) for w in workers), "workers outlived the killed sweep"
    finished = len(finished_points())
    assert 1 <= finished <= 4
    resumed = fg.sweep(BASE.replace(steps=60), grid, out=out, n_workers=1, progress=False).table
    clean = fg.sweep(BASE.replace(steps=60), grid, out=tmp_path / "c", n_workers=1,
                     progress=False).table
    pd.testing.assert_frame_equal(resumed, clean)
    assert not [f for f in os.listdir(out / "points") if f.startswith(".tmp")]


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_script_without_a_main_guard_can_sweep(tmp_path):
    """multiprocessing's spawn re-imports the main script in every worker: without an
    ``if __name__ == "__main__":`` guard, that used to start the sweep again in each worker."""
    script = tmp_path / "research.py"
    script.write_text("import fastgrok as fg\n"
                      "from test_sweep import BASE\n"
                      "res = fg.sweep(BASE, {'mu_norm': [5.0, 20.0]}, out='s', n_workers=2,\n"
                      "               progress=False)\n"
                      "print('points', len(res.points))\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(__file__))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, timeout=300,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "points 2" in done.stdout


def _interrupt_cli_sweep(tmp_path, whole_group, sig=signal.SIGINT):
    """Start `fastgrok sweep` (2 workers, 6 points), send ``sig`` after its first point."""
    out = tmp_path / "ctrl-c"
    cmd = [sys.executable, "-m", "fastgrok.cli", "sweep", "--preset", "quick", "--runs", "2",
           "--steps", "1000", "--m", "20", "--p", "3000", "--workers", "2", "--out", str(out),
           "--grid", "noise_rate=0,0.02,0.04,0.06,0.08,0.1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=default_ctrl_c)
    deadline = time.time() + 300
    pdir = out / "points"
    while time.time() < deadline and not (pdir.exists() and any(
            f.endswith(".parquet") for f in os.listdir(pdir))):
        time.sleep(0.05)
    workers = [p for p, c in child_processes(proc.pid).items() if "resource_tracker" not in c]
    if whole_group:  # what a terminal's Ctrl-C does: SIGINT to every process of the job
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    return proc.returncode, stderr, workers, out, cmd


@pytest.mark.parametrize("whole_group", [True, False], ids=["process-group", "main-only"])
@pytest.mark.slow
def test_ctrl_c_saves_finished_points_stops_workers_and_exits_130(tmp_path, whole_group):
    rc, stderr, workers, out, cmd = _interrupt_cli_sweep(tmp_path, whole_group)
    assert rc == 130, stderr
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("fastgrok: interrupted:") and "resume" in lines[-1], stderr
    assert workers and not any(alive(w) for w in workers), "workers outlived the Ctrl-C"
    saved = [f for f in os.listdir(out / "points") if f.endswith(".parquet")]
    assert 1 <= len(saved) < 6
    assert not [f for f in os.listdir(out / "points") if f.startswith(".tmp")]
    # Resuming finishes only the rest.
    done = subprocess.run(cmd + ["--no-progress"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(pd.read_parquet(out / "table.parquet").groupby("noise_rate")) == 6


@pytest.mark.parametrize("whole_group", [True, False], ids=["process-group", "main-only"])
@pytest.mark.slow
def test_sigterm_is_ctrl_c_with_status_143(tmp_path, whole_group):
    """What a batch scheduler sends before it kills a job (to the job's processes, or its
    main one)."""
    rc, stderr, workers, out, _ = _interrupt_cli_sweep(tmp_path, whole_group, signal.SIGTERM)
    assert rc == 143, stderr
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("fastgrok: terminated (SIGTERM):") and "resume" in lines[-1], \
        stderr
    assert workers and not any(alive(w) for w in workers), "workers outlived the SIGTERM"
    assert 1 <= len([f for f in os.listdir(out / "points") if f.endswith(".parquet")]) < 6


@pytest.mark.slow
def test_sigterm_during_a_run_writes_nothing_and_exits_143(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "fastgrok.cli", "run", "--preset", "quick",
                             "--steps", "200000", "--runs", "2", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("fastgrok: quick:")  # training has started
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "fastgrok: terminated (SIGTERM): nothing was written"
    assert not out.exists() or not [f for f in os.listdir(out) if not f.startswith(".")]


def test_missing_sweep_dependency_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "pyarrow":
            raise ImportError("No module named 'pyarrow'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"fastgrok\[sweeps\]"):
        fg.sweep(BASE, GRID, progress=False)
