"""Faults a researcher's machine meets: each as a test that failed before it was handled.

A grid's points are their values as the Config holds them; diverging runs are flagged, never
reported as 0.0 accuracy; a figure never costs the data; damaged files are refused or set
aside; SIGTERM is Ctrl-C; a dying worker is reported and its point retried; a full disk is
refused before training.
"""
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from conftest import child_processes

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


# ------------------------------------------------------------------ divergence
def _diverging_data():
    g = np.random.default_rng(0)
    X = g.standard_normal((30, 60))
    return X, np.where(g.random(30) < 0.5, 1.0, -1.0)


@pytest.mark.parametrize("method", ["gram", "direct"])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_a_diverging_run_is_flagged_never_zero_accuracy(method, backend):
    X, y = _diverging_data()
    with pytest.warns(RuntimeWarning, match=r"2 run\(s\) diverged at lr=1e\+30 \(the exponential "
                                            r"loss .*\(run 0 at step 1\)"):
        res = fg.fit(X, y, X_test=X, y_test=y, m=8, lr=1e30, steps=4, loss="exponential",
                     method=method, backend=backend, runs=2, progress=False)
    h = res.history
    assert res.info["diverged"] == {"runs": [0, 1], "last_finite_step": [0, 0],
                                    "first_nonfinite_step": [1, 1]}
    assert h.diverged.tolist() == [s >= 1 for s in h.step]
    later = h[h.step >= 1]
    assert later[["train_acc", "test_acc", "train_loss", "test_loss"]].isna().all().all()
    assert (h.loc[h.step == 0, "train_acc"] > 0).all()
    assert res.summary()["runs_diverged"].tolist() == [0, 2, 2, 2, 2]


def test_a_finite_run_has_no_divergence_column():
    X, y = _diverging_data()
    res = fg.fit(X, y, m=8, lr=1e-2, steps=3, progress=False)
    assert "diverged" not in res.history and "diverged" not in res.info


def test_a_sweep_counts_diverged_runs_and_says_so(tmp_path):
    base = fg.preset("quick", loss="exponential", steps=4, runs=20, n=60, p=2000, m=10,
                     n_test=40, dtype="float64")
    with ThreadPoolExecutor(1) as ex, pytest.warns(RuntimeWarning,
                                                    match=r"point \{'lr': 1e\+30\}: 20 of 20"):
        res = fg.sweep(base, {"lr": [1e-3, 1e30]}, out=tmp_path / "s", executor=ex,
                       progress=False)
    assert res.points["runs_diverged"].tolist() == [0, 20]
    assert res.table["diverged"].dtype == bool
    assert (tmp_path / "s" / "fig_sweep.png").exists()


@pytest.mark.slow
def test_cli_run_that_diverges_writes_its_tables_and_figures(tmp_path):
    out = tmp_path / "div"
    done = subprocess.run(
        [sys.executable, "-m", "fastgrok.cli", "run", "--preset", "quick", "--lr", "1e30",
         "--loss", "exponential", "--steps", "3", "--runs", "2", "--n", "40", "--p", "800",
         "--m", "10", "--n-test", "40", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("fastgrok: warning: 2 run(s) diverged at lr=1e+30") and \
        done.stderr.count("\n") == 1, done.stderr
    for name in ("history.csv", "summary.csv", "fig_accuracy.png", "fig_projections.png"):
        assert (out / name).exists()
    h = pd.read_csv(out / "history.csv")
    assert h.loc[h.step > 0, "train_acc"].isna().all()


# ------------------------------------------------------------------ a figure never costs the data
def test_a_figure_that_cannot_be_drawn_is_skipped_with_a_warning(tmp_path, monkeypatch):
    from fastgrok import plots

    res = fg.run(BASE.replace(runs=1), progress=False)

    def broken(*args, **kwargs):
        raise ValueError("autodetected range of [nan, nan] is not finite")

    monkeypatch.setattr(plots, "histogram_figure", broken)
    with pytest.warns(RuntimeWarning, match=r"fig_projections.png was not drawn \(ValueError: "
                                            r"autodetected range.*the tables are written"):
        files = res.save(tmp_path / "r")
    assert "fig_projections.png" not in files and "fig_accuracy.png" in files
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(files)
    pd.testing.assert_frame_equal(fg.Result.load(tmp_path / "r").history, res.history,
                                  check_dtype=False)
    monkeypatch.setattr(plots, "sweep_figures", broken)
    with ThreadPoolExecutor(1) as ex, pytest.warns(RuntimeWarning, match="fig_sweep.png"):
        swept = fg.sweep(BASE, {"mu_norm": [5.0]}, out=tmp_path / "s", executor=ex,
                         progress=False)
    assert swept.figure is None and (tmp_path / "s" / "table.parquet").exists()


# ------------------------------------------------------------------ damaged files
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("saved") / "r"
    res = fg.run(BASE.replace(snapshot_steps=(0, 4), representation="full"), progress=False,
                 keep_networks=True)
    res.save(out, figures=False)
    return res, out


def test_a_saved_result_reads_back_exactly(saved):
    res, out = saved
    back = fg.Result.load(out)
    pd.testing.assert_frame_equal(back.history, res.history, check_exact=True)


@pytest.mark.slow
@pytest.mark.parametrize("name,junk,match", [
    ("history.parquet", b"PAR1 not really", r"history.parquet is damaged: it cannot be read as a "
                                            r"parquet table"),
    ("history.csv", b"hello,world\n1,2\n", r"history.csv is damaged: it has no column\(s\) run, "),
    ("config.json", b"{\"conf", r"config.json is damaged: it is not JSON"),
    ("projections.npz", b"PK\x03\x04junk", r"projections.npz is damaged: it cannot be read"),
    ("networks.npz", b"", r"networks.npz is damaged"),
])
def test_a_damaged_saved_file_is_refused_naming_it(saved, tmp_path, name, junk, match):
    import shutil

    _, out = saved
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    if name == "history.csv":  # a save of an older version: the CSV is the history
        (copy / "history.parquet").unlink()
    (copy / name).write_bytes(junk)
    with pytest.raises(fg.DamagedFileError, match=match):
        fg.Result.load(copy)
    done = subprocess.run([sys.executable, "-m", "fastgrok.cli", "figures", str(copy)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("fastgrok: error: ") and name in done.stderr


def test_a_history_of_other_runs_than_its_config_is_refused(saved, tmp_path):
    import shutil

    res, out = saved
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    res.history.assign(run=res.history.run + 5).to_parquet(copy / "history.parquet")
    with pytest.raises(fg.DamagedFileError, match="are not those of its config "):
        fg.Result.load(copy)


def test_a_damaged_point_file_is_set_aside_and_recomputed(tmp_path):
    grid = {"mu_norm": [5.0, 20.0]}
    with ThreadPoolExecutor(1) as ex:
        first = fg.sweep(BASE, grid, out=tmp_path / "s", executor=ex, progress=False)
        pdir = tmp_path / "s" / "points"
        damaged = sorted(pdir.glob("point-*.parquet"))[0]
        damaged.write_bytes(b"not parquet at all")
        with pytest.warns(RuntimeWarning, match=r"is damaged: it cannot be read as a parquet "
                                                r"table .*set aside in .*damaged, computing"):
            again = fg.sweep(BASE, grid, out=tmp_path / "s", executor=ex, progress=False)
    pd.testing.assert_frame_equal(first.table, again.table)
    assert (pdir / "damaged" / damaged.name).read_bytes() == b"not parquet at all"


# ------------------------------------------------------------------ a worker that dies
def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _kill_worker_in_its_point(parent, seen):
    """SIGKILL the parent's worker process (one not in ``seen``) once it is inside its point."""
    deadline = time.time() + 120
    while time.time() < deadline:
        for pid, cmd in child_processes(parent).items():
            if "resource_tracker" in cmd or pid in seen:
                continue
            try:
                busy = _cpu_seconds(pid) > 1.5  # started up (under 1 s) and into its point
            except OSError:
                continue
            if busy:
                os.kill(pid, signal.SIGKILL)
                seen.add(pid)
                return pid
        time.sleep(0.05)
    raise AssertionError("no worker got busy")


SWEEP = [sys.executable, "-m", "fastgrok.cli", "sweep", "--preset", "quick", "--runs", "2",
         "--steps", "30000", "--lr", "1e-4", "--m", "20", "--p", "3000", "--workers", "1",
         "--no-progress", "--grid", "noise_rate=0"]


@pytest.mark.slow
def test_a_killed_worker_is_reported_and_its_point_retried(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(SWEEP + ["--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    killed = _kill_worker_in_its_point(proc.pid, set())
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert stderr.splitlines()[0] == (
        f"fastgrok: warning: point {{'noise_rate': 0.0}}: its worker was killed by SIGKILL "
        f"(pid {killed}), probably out of memory; running it again once in a fresh worker "
        "(1 worker(s) now)"), stderr
    # The retried point is the point an uninterrupted sweep computes.
    table = pd.read_parquet(out / "table.parquet")
    values, cfg = sw.grid_points(fg.preset("quick", runs=2, steps=30000, lr=1e-4, m=20, p=3000),
                                 {"noise_rate": [0.0]})[0]
    got = table[table.noise_rate == 0.0].drop(columns="noise_rate").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, fg.run(cfg, progress=False).history)


@pytest.mark.slow
def test_a_point_whose_worker_dies_twice_stops_the_sweep_with_the_resume_line(tmp_path):
    out = tmp_path / "twice"
    proc = subprocess.Popen(SWEEP + ["--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = set()
    _kill_worker_in_its_point(proc.pid, seen)
    second = _kill_worker_in_its_point(proc.pid, seen)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == (
        f"fastgrok: error: point {{'noise_rate': 0.0}}: its worker died again (was killed by "
        f"SIGKILL (pid {second}), probably out of memory): 0 of 1 points saved in {out}; run the "
        "same sweep again to resume (with fewer workers: n_workers=1, --workers 1)"), stderr
    assert not [p for p in child_processes(proc.pid)]


# ------------------------------------------------------------------ a full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB filesystem (a tmpfs) where the machine allows mounting one, else None."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                             capture_output=True).returncode == 0
    yield where if mounted else None
    if mounted:
        subprocess.run(["umount", str(where)], check=True)


RUN = ["run", "--preset", "quick", "--runs", "20", "--steps", "50", "--n", "40", "--p", "800",
       "--m", "10", "--n-test", "40", "--no-progress"]


def test_a_run_whose_output_cannot_fit_is_refused_before_training(small_disk, tmp_path,
                                                                  monkeypatch, capsys):
    import shutil

    disk = small_disk
    if disk is None:  # no mount here: the disk reports 64 KiB free
        disk = tmp_path
        real = shutil.disk_usage
        monkeypatch.setattr(shutil, "disk_usage",
                            lambda p: real(p)._replace(free=64 << 10))
    assert main(RUN + ["--out", str(disk / "r")]) == 1
    out, err = capsys.readouterr()
    assert "fastgrok: quick" not in out  # nothing trained
    assert err.startswith(f"fastgrok: error: out={str(disk / 'r')!r} has ") and \
        "free on its disk, and this run writes about 2.5 MiB: free some space" in err, err


def test_a_failed_save_keeps_the_results_elsewhere_and_says_where(small_disk, tmp_path,
                                                                   monkeypatch, capsys):
    from fastgrok import _io

    monkeypatch.setattr(_io, "check_room", lambda *a: None)  # the estimate passes; the disk not
    out = (small_disk or tmp_path) / "r"
    if small_disk is None:  # no mount here: writes into out fail as on a full disk
        real = pd.DataFrame.to_csv

        def full(self, path, *args, **kwargs):
            if str(path).startswith(str(out)):
                raise OSError(28, "No space left on device")
            return real(self, path, *args, **kwargs)

        monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    assert main(RUN + ["--out", str(out)]) == 1
    err = capsys.readouterr().err
    prefix = (f"fastgrok: error: could not write to {out}: No space left on device; nothing "
              "half-written is left there; the results are saved in ")
    assert err.startswith(prefix) and err.endswith(" instead (no figures): move them once there "
                                                   "is room\n"), err
    rescue = err[len(prefix):].split(" instead")[0]
    try:
        assert [f for f in os.listdir(out) if not f.startswith(".")] == []
        saved = fg.Result.load(rescue)
        assert len(saved.history) == 20 * 51
    finally:
        import shutil

        shutil.rmtree(rescue)


def test_a_sweep_whose_disk_fills_up_stops_with_the_resume_line(tmp_path, monkeypatch):
    real = sw.write_table
    written = []

    def fills_up(df, path):
        if len(written) == 1:
            raise OSError(28, "No space left on device")
        written.append(path)
        real(df, path)

    grid = {"mu_norm": [5.0, 10.0, 20.0]}
    monkeypatch.setattr(sw, "write_table", fills_up)
    with ThreadPoolExecutor(1) as ex:
        with pytest.raises(fg.SweepFailed, match=r"could not write .*point-.*\.parquet: No space "
                                                 r"left on device: 1 of 3 points saved in .*; "
                                                 r"run the same sweep again to resume once there "
                                                 r"is room"):
            fg.sweep(BASE, grid, out=tmp_path / "s", executor=ex, progress=False)
        monkeypatch.setattr(sw, "write_table", real)
        resumed = fg.sweep(BASE, grid, out=tmp_path / "s", executor=ex, progress=False)
        fresh = fg.sweep(BASE, grid, executor=ex, progress=False)
    pd.testing.assert_frame_equal(resumed.table, fresh.table)


# ------------------------------------------------------------------ checkpoints of long runs
CHECKPOINTED = {
    "gram-linear-regime": fg.preset("quick", runs=4, steps=300),
    # evaluated rarely (below): the linear regime's calls take blocks, whose hints are saved
    "gram-linear-blocks": fg.preset("paper-fig1-right", runs=2, m=60, n=40, n_test=40, p=2000,
                                    steps=1500, snapshot_steps=(0, 1500)),
    "gram-float64-full": fg.preset("quick", runs=3, steps=300, dtype="float64",
                                   representation="full", p=2000),
    "gram-weight-decay": fg.preset("quick", runs=3, steps=300, weight_decay=10.0, lr=1e-4,
                                   init_scale=1e-3),
    "direct-two-batches": fg.preset("quick", runs=2, steps=200, method="direct", p=3000),
    "numpy-backend": fg.preset("quick", runs=2, steps=200, backend="numpy", p=2000, n=50, m=20,
                               n_test=50),
}


def _killed_at_a_checkpoint(cfg, path, monkeypatch, when=lambda state: True):
    """Run cfg with a checkpoint after every call, killed right after the first checkpoint
    whose state satisfies ``when``."""
    from fastgrok import checkpoint as ck

    real = ck.Checkpoint.save

    def save_then_die(self, state, nbytes=0):
        real(self, state, nbytes)
        if when(state):
            raise KeyboardInterrupt

    monkeypatch.setattr(ck.Checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        fg.run(cfg, progress=False, checkpoint=path, checkpoint_every=0)
    monkeypatch.setattr(ck.Checkpoint, "save", real)


def _resumed(cfg, path, monkeypatch):
    """(history, builds): cfg resumed from its checkpoint at ``path``, and the batches it built,
    as (first run, runs per batch)."""
    from fastgrok import driver

    builds = []
    real_build = driver._build
    monkeypatch.setattr(driver, "_build", lambda *a: builds.append(a[2:4]) or real_build(*a))
    return fg.run(cfg, progress=False, checkpoint=path, checkpoint_every="1h").history, builds


@pytest.mark.parametrize("name", list(CHECKPOINTED))
def test_a_run_killed_after_a_checkpoint_resumes_bit_for_bit(name, tmp_path, monkeypatch):
    from fastgrok import tunables

    # Checkpoints are taken between calls: calls of 64 steps give these short runs several (the
    # linear regime's runs would take 1024 at a time). With blocks, 128: the calls' lengths
    # change as the runs enter the regime, and the resumed run must make the same calls.
    blocks = name == "gram-linear-blocks"
    monkeypatch.setattr(tunables, "GRAM_LINEAR_STEPS_PER_CALL", 128 if blocks else 64)
    if blocks:
        monkeypatch.setattr(tunables, "EVAL_LOG_POINTS", 8)
    cfg = CHECKPOINTED[name]
    uninterrupted = fg.run(cfg, progress=False).history
    path = tmp_path / "run.fastgrok"
    saves = []  # killed right after its third checkpoint
    _killed_at_a_checkpoint(cfg, path, monkeypatch,
                            lambda state: saves.append(state["batch"]) or len(saves) == 3)
    resumed, builds = _resumed(cfg, path, monkeypatch)
    pd.testing.assert_frame_equal(resumed, uninterrupted, check_exact=True)
    # The checkpointed batch went on from its state; only the batches after it were built.
    assert all(b > saves[-1] for b, _ in builds)
    assert len(builds) == (1 if name == "direct-two-batches" and saves[-1] == 0 else 0)
    assert not path.exists()  # the run completed: its checkpoint is gone


def test_a_checkpoint_resumes_with_the_batches_it_was_written_with(tmp_path, monkeypatch):
    # The host's batches follow its CPU count: a run checkpointed with one run per batch goes
    # on with one run per batch where the budget would now hold them all.
    from fastgrok import tunables

    cfg = CHECKPOINTED["gram-linear-regime"]
    uninterrupted = fg.run(cfg, progress=False).history
    path = tmp_path / "run.fastgrok"
    monkeypatch.setattr(tunables, "GRAM_HOST_BATCH_BYTES", 1)
    _killed_at_a_checkpoint(cfg, path, monkeypatch,  # inside the second batch
                            lambda state: state["batch"] == 1 and state["engine"] is not None)
    monkeypatch.setattr(tunables, "GRAM_HOST_BATCH_BYTES", 1 << 40)
    resumed, builds = _resumed(cfg, path, monkeypatch)
    pd.testing.assert_frame_equal(resumed, uninterrupted, check_exact=True)
    assert builds == [(b, 1) for b in range(2, cfg.runs)]  # (first run, runs per batch)


def test_a_damaged_or_foreign_checkpoint_is_refused(tmp_path, monkeypatch):
    cfg = CHECKPOINTED["gram-linear-regime"]
    path = tmp_path / "run.fastgrok"
    _killed_at_a_checkpoint(cfg, path, monkeypatch)
    with pytest.raises(ValueError, match=r"belongs to another run \(config: .*steps.*remove it"):
        fg.run(cfg.replace(steps=400), progress=False, checkpoint=path)
    whole = path.read_bytes()
    flipped = bytearray(whole)
    flipped[100] ^= 1
    path.write_bytes(bytes(flipped))
    with pytest.raises(fg.DamagedFileError, match="does not match its checksum"):
        fg.run(cfg, progress=False, checkpoint=path)
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(fg.DamagedFileError, match="is not a whole fastgrok checkpoint"):
        fg.run(cfg, progress=False, checkpoint=path)
    with pytest.raises(ValueError, match="stop or metrics"):
        fg.run(cfg, progress=False, checkpoint=path, stop="interpolation")


@pytest.mark.slow
def test_cli_run_killed_and_rerun_resumes_from_its_checkpoint(tmp_path):
    out = tmp_path / "long"
    cmd = [sys.executable, "-m", "fastgrok.cli", "run", "--preset", "quick", "--runs", "2",
           "--steps", "15000", "--lr", "1e-4", "--m", "20", "--p", "3000", "--out", str(out),
           "--checkpoint-every", "0", "--no-progress", "--no-figures"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = out / "checkpoint.fastgrok"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a few more checkpoints
    proc.kill()
    proc.communicate(timeout=60)
    assert ckpt.exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"fastgrok: resuming from {ckpt}" in done.stdout
    assert not ckpt.exists()
    cfg = fg.preset("quick", runs=2, steps=15000, lr=1e-4, m=20, p=3000)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "history.parquet"),
                                  fg.run(cfg, progress=False).history, check_exact=True)


@pytest.mark.slow
def test_a_point_whose_dask_workers_keep_dying_is_reported(tmp_path):
    import threading

    distributed = pytest.importorskip("distributed", reason="dask[distributed] not installed")
    import dask

    base = fg.preset("quick", runs=2, steps=60000, lr=1e-4, m=20, p=3000)
    caught = []

    def sweep(client):
        try:
            fg.sweep(base, {"noise_rate": [0.0]}, out=tmp_path / "d", executor=client,
                     progress=False)
        except Exception as exc:
            caught.append(exc)

    before = set(child_processes())
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        thread = threading.Thread(target=sweep, args=(client,))
        thread.start()
        _kill_worker_in_its_point(os.getpid(), before)
        thread.join(timeout=120)
    assert len(caught) == 1 and isinstance(caught[0], fg.WorkerDied), caught
    assert str(caught[0]).startswith("point {'noise_rate': 0.0}: its Dask workers died each "
                                     "time it ran")


# ------------------------------------------------------------------ the recording behind the steps
@pytest.mark.parametrize("side", ["steps", "recording"])
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_error_on_either_side_of_the_recording_stops_both_and_is_raised(side, error,
                                                                          monkeypatch):
    # On two threads the steps run on a thread of their own while the calling thread records:
    # an error (or Ctrl-C) on either side reaches the caller, and the stepping thread ends.
    import threading

    from fastgrok import driver
    from fastgrok.engines.gram import GramEngine

    calls = []

    def failing(real):
        def call(*args, **kwargs):
            calls.append(threading.current_thread().name)
            if len(calls) == 3:
                raise error("boom")
            return real(*args, **kwargs)
        return call

    if side == "steps":
        monkeypatch.setattr(GramEngine, "segment", failing(GramEngine.segment))
    else:
        monkeypatch.setattr(driver._History, "record", failing(driver._History.record))
    cfg = BASE.replace(steps=300, runs=4, method="gram")
    with pytest.raises(error, match="boom"):
        fg.run(cfg, progress=False, n_threads=2)
    assert calls[-1] == ("fastgrok-steps" if side == "steps" else
                         threading.current_thread().name)
    assert not [t for t in threading.enumerate() if t.name == "fastgrok-steps"]
