"""The same experiment gives the same bits in every process, at every thread count, alone or
inside a sweep, before and after a resume."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import fastgrok as fg

BASE = fg.preset("paper-fig1-left").replace(runs=3, steps=12, n_test=30, m=24, p=1500,
                                            noise_rate=0.1)
#: Every CPU engine, in both representations and both dtypes where they differ.
CASES = [dict(method=me, backend=be, representation=rep, dtype=dt)
         for me in ("direct", "gram") for be in ("numpy", "numba")
         for rep in ("full", "reduced") for dt in ("float32",)] + [
    dict(method="gram", backend="numba", representation="reduced", dtype="float64"),
    dict(method="direct", backend="numba", representation="full", dtype="float64")]

_CHILD = r"""
import json, sys
import numpy as np
import fastgrok as fg
from fastgrok import tunables
tunables.DIRECT_TILE_COLS = 256   # several tiles and chunks at this small p
base = fg.Config.from_dict(json.loads(sys.argv[1]))
cases, n_threads, out = json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
arrays = {}
for i, case in enumerate(cases):
    res = fg.run(base.replace(**case), progress=False, n_threads=n_threads)
    arrays[f"h{i}"] = res.history.to_numpy(dtype=np.float64)
    for k, v in res.projections.items():
        arrays[f"p{i}_{k}"] = v
np.savez(out, **arrays)
"""


def _in_subprocess(tmp_path, n_threads, tag):
    out = tmp_path / f"{tag}.npz"
    subprocess.run([sys.executable, "-c", _CHILD, json.dumps(BASE.to_dict()), json.dumps(CASES),
                    str(n_threads), str(out)], check=True, timeout=600)
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def _same_bits(a, b, what):
    assert a.keys() == b.keys(), what
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, (what, k)
        # Compare the bytes: NaN == NaN, and -0.0 != 0.0.
        assert a[k].tobytes() == b[k].tobytes(), (
            f"{what}: {k} differs in {np.sum(a[k] != b[k])} entries")


@pytest.mark.slow
def test_same_bits_in_separate_processes_and_thread_counts(tmp_path):
    runs = {nt: _in_subprocess(tmp_path, nt, f"t{nt}") for nt in (1, 2, 3)}
    _same_bits(runs[1], runs[2], "1 thread vs 2 threads")
    _same_bits(runs[1], runs[3], "1 thread vs 3 threads")
    again = _in_subprocess(tmp_path, 2, "again")
    _same_bits(runs[2], again, "two processes with 2 threads")
    # The histories are not trivially equal to one another (the full and the reduced draws of
    # the same config differ): the comparison can fail.
    assert runs[1]["h0"].tobytes() != runs[1]["h1"].tobytes()


def test_a_sweep_point_has_the_bits_of_a_plain_run_before_and_after_resume(tmp_path):
    grid = {"noise_rate": [0.1, 0.05]}
    base = BASE.replace(runs=2)
    first = fg.sweep(base, grid, out=tmp_path / "s", n_workers=2, progress=False, figures=False)
    from fastgrok.sweeps import grid_points

    for values, cfg in grid_points(base, grid):
        h = fg.run(cfg, progress=False, n_threads=2).history
        got = first.table[first.table.noise_rate == values["noise_rate"]]
        got = got.drop(columns=list(values)).reset_index(drop=True)
        assert got.to_numpy(np.float64).tobytes() == h.to_numpy(np.float64).tobytes()
    # Resume after losing one point: the recomputed point (now alone, so on 2 threads) and the
    # table are bit-identical.
    points = sorted(os.listdir(tmp_path / "s" / "points"))
    os.remove(tmp_path / "s" / "points" / points[0])
    resumed = fg.sweep(base, grid, out=tmp_path / "s", progress=False, figures=False)
    pd.testing.assert_frame_equal(resumed.table, first.table, check_exact=True)


def test_same_bits_whatever_the_runs_per_batch(monkeypatch):
    from fastgrok import plan as planning
    from fastgrok import tunables

    cfg = BASE.replace(runs=4, method="gram", backend="numba", representation="reduced")
    whole = fg.run(cfg, progress=False, n_threads=2)
    monkeypatch.setattr(tunables, "GRAM_HOST_BATCH_BYTES", 1)  # one run per batch
    assert planning.plan_experiment(cfg).batch == 1
    alone = fg.run(cfg, progress=False, n_threads=2)
    assert alone.history.to_numpy(np.float64).tobytes() == \
        whole.history.to_numpy(np.float64).tobytes()
    _same_bits(dict(alone.projections), dict(whole.projections), "1 run vs 4 runs per batch")


def test_runs_per_batch_follow_the_host_and_device_budgets(monkeypatch):
    """The left panel's runs (about 15.5 MiB of state each on the host): 128 MiB per CPU, at
    most 2 GiB; the device's 2 GiB hold 608 of them (3.4 MiB each, no linear-regime state).
    The plan splits the runs into the fewest batches within the budget, no larger than that
    number needs, each a multiple of the threads that share out its runs where it can be."""
    from fastgrok.kernels import threads

    from fastgrok import plan as planning
    from fastgrok.engines.gram import GramEngine
    from fastgrok.engines.ops_cupy import CupyOps
    from fastgrok.engines.ops_numba import NumbaOps

    cfg = fg.preset("paper-fig1-left")
    for cpus, most, runs in ((1, 8, 8), (2, 16, 16), (3, 24, 21), (64, 131, 100)):
        monkeypatch.setattr(threads, "default_threads", lambda cpus=cpus: cpus)
        assert GramEngine.max_batch(cfg.n, cfg.p, cfg.m, cfg.n_test, "float32", NumbaOps) == most
        assert planning.plan_experiment(cfg).batch == runs
    monkeypatch.setattr(threads, "default_threads", lambda: 2)  # at most 16 a batch
    assert planning.plan_experiment(cfg.replace(runs=20)).batch == 10  # 10 + 10, not 16 + 4
    assert planning.plan_experiment(cfg.replace(runs=17)).batch == 10  # 10 + 7, not 16 + 1
    assert planning.plan_experiment(cfg.replace(runs=15)).batch == 15  # one batch
    assert planning.plan_experiment(cfg.replace(runs=16)).batch == 16
    assert GramEngine.max_batch(cfg.n, cfg.p, cfg.m, cfg.n_test, "float32", CupyOps) == 608


@pytest.mark.parametrize("case", [CASES[3], CASES[7]], ids=["direct-numba", "gram-numba"])
def test_the_recording_behind_the_steps_has_the_bits_of_the_recording_in_step(case, tmp_path,
                                                                              monkeypatch):
    # Two threads: the history is written on the calling thread while the next segment steps
    # on another; a run per batch and checkpoints at every call (each waits for the recording).
    import threading

    from fastgrok import driver, tunables

    cfg = BASE.replace(**case, steps=300)  # a log grid: several calls per batch
    monkeypatch.setattr(tunables, "GRAM_HOST_BATCH_BYTES", 1)
    threads_of = {"record": set(), "steps": set()}
    real_record, real_segment = driver._History.record, driver._drive_batch

    def record(self, *args, **kwargs):
        threads_of["record"].add(threading.current_thread().name)
        return real_record(self, *args, **kwargs)

    def drive_batch(*args, **kwargs):
        threads_of["steps"].add(threading.current_thread().name)
        return real_segment(*args, **kwargs)

    monkeypatch.setattr(driver._History, "record", record)
    monkeypatch.setattr(driver, "_drive_batch", drive_batch)
    results = {}
    for overlap, saved in ((False, False), (True, False), (True, True)):
        monkeypatch.setattr(tunables, "DRIVER_OVERLAP", overlap)
        kw = dict(checkpoint=tmp_path / "run.fastgrok", checkpoint_every=0) if saved else {}
        results[overlap, saved] = fg.run(cfg, progress=False, n_threads=2, **kw)
    assert results[True, True].info["checkpoints_written"] > 3
    assert threads_of == {"record": {threading.current_thread().name},
                          "steps": {threading.current_thread().name, "fastgrok-steps"}}
    for key in ((True, False), (True, True)):
        assert results[key].history.to_numpy(np.float64).tobytes() == \
            results[False, False].history.to_numpy(np.float64).tobytes(), key
        _same_bits(dict(results[key].projections), dict(results[False, False].projections),
                   f"recorded behind vs in step, {key}")
