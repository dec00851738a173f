"""Sweeps: a grid of experiments, each point an independent :func:`fastgrok.run`, resumable.

Every grid point x run is an experiment with its own seed, derived from the base seed and the
point's values (so adding values to a grid never changes the points already there). Each
finished point is written atomically to ``out/points/`` as soon as it completes; rerunning the
same sweep skips the finished points, so a sweep killed at any moment ends, when rerun, with
exactly the table an uninterrupted sweep gives. Points run in local worker processes by default,
or on a Dask cluster (``executor=client``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import numbers
import os
import signal
import sys
import warnings
import zlib
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed

import numpy as np
import pandas as pd

from ._io import (
    TMP_PREFIX,
    DamagedFileError,
    atomic_path,
    figure_or_warning,
    read_table,
    write_table,
)
from .analysis import point_summaries
from .config import FIELDS, Config

_NUMERIC = {name for name, spec in FIELDS.items() if spec.numeric}


def point_key(values: dict) -> str:
    """The canonical text of a grid point's values (as the Config holds them).

    The point's identity for its seed, its file name and the check for repeated points.
    """
    return json.dumps(values, sort_keys=True, default=str)


def _point_seed(base_seed: int, values: dict) -> int:
    key = zlib.crc32(point_key(values).encode())
    return int(np.random.SeedSequence(base_seed, spawn_key=(key,)).generate_state(1)[0] % 2**31)


def grid_points(base: Config, grid, paired=()) -> list:
    """Validate ``grid`` and return [(values, Config), ...] for every point, before any work.

    Parameters
    ----------
    base : Config
        The experiment every point modifies.
    grid : dict or list of dict
        ``{field: [v1, v2, ...]}``: the Cartesian product of the lists; or
        ``[{field: v, ...}, ...]``: these points exactly (all with the same fields), for grids
        whose axes are not independent (e.g. init_scale = ratio x lr).
    paired : sequence of str
        Grid fields left out of the point seeds: points that differ only in these fields draw
        the same data and initialisation, a paired comparison (e.g. ``("loss",)``: each loss
        trains the same networks on the same data). By default every point has its own seed.

    Raises
    ------
    ValueError
        Unknown field, empty or non-numeric value list, or a value the Config rejects.
    """
    if not isinstance(base, Config):
        raise TypeError(f"base must be a fastgrok.Config, got {type(base).__name__}")
    if isinstance(grid, dict) and grid:
        names = list(grid)
        for name, values in grid.items():
            listed = not isinstance(values, (str, bytes)) and hasattr(values, "__len__")
            if not listed or len(values) == 0:
                raise ValueError(f"grid[{name!r}] must be a non-empty list of values, "
                                 f"got {values!r}")
        combos = list(itertools.product(*(grid[k] for k in names)))
    elif isinstance(grid, (list, tuple)) and grid and all(isinstance(g, dict) and g for g in grid):
        names = list(grid[0])
        for g in grid:
            if set(g) != set(names):
                raise ValueError(f"every grid point must set the same fields {names}, "
                                 f"got {list(g)}")
        combos = [tuple(g[k] for k in names) for g in grid]
    else:
        raise ValueError("grid must be a non-empty dict {field: [values, ...]} or a non-empty "
                         f"list of dicts {{field: value}}, got {grid!r}")
    fields = {f.name for f in dataclasses.fields(Config)}
    stray = sorted(set(paired) - set(names))
    if stray:
        raise ValueError(f"paired fields {stray} are not grid fields ({names})")
    for i, name in enumerate(names):
        if name not in fields or name in ("seed", "snapshot_steps"):
            raise ValueError(f"grid field {name!r} is not a Config field that can be swept")
        if name in _NUMERIC:
            bad = [c[i] for c in combos if isinstance(c[i], bool)
                   or not isinstance(c[i], numbers.Real) or not math.isfinite(c[i])]
            if bad:
                raise ValueError(f"grid[{name!r}] must hold finite numbers, got {bad!r}")
    points, seen = [], {}
    for combo in combos:
        given = {k: (v.item() if isinstance(v, np.generic) else v)
                 for k, v in zip(names, combo, strict=True)}
        try:
            cfg = base.replace(**given)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"grid point {given} is not a valid Config: {exc}") from None
        # A point is its values as the Config holds them: 10 and 10.0 (what the command line
        # reads) are one point, with one seed and one file.
        values = {k: getattr(cfg, k) for k in names}
        key = point_key(values)
        if key in seen:
            raise ValueError(f"grid has repeated points: {seen[key]} and {given} are both the "
                             f"point {values}")
        seen[key] = given
        cfg = cfg.replace(seed=_point_seed(
            base.seed, {k: v for k, v in values.items() if k not in paired}))
        points.append((values, cfg))
    return points


def _run_point(cfg_dict: dict, values: dict, n_threads: int):
    """Worker: one grid point's history, with the grid values as columns (module level: pickles)."""
    from .api import run

    if _REPORT is not None:  # a local worker: the parent learns which point it runs
        _REPORT.put((os.getpid(), point_key(values)))
    with warnings.catch_warnings():  # divergence: the sweep reports it per point (keep())
        warnings.filterwarnings("ignore", ".* diverged at lr=", RuntimeWarning)
        res = run(Config.from_dict(cfg_dict), progress=False, n_threads=n_threads)
    h = res.history
    for k, v in values.items():
        h.insert(0, k, v)
    return h


#: In a local worker: the queue on which it tells the parent (pid, point) as a point starts.
_REPORT = None


def _worker_init(report=None):
    """Start of every local worker process.

    Ctrl-C is the parent's to handle, and the worker exits as soon as its parent is gone (a ``kill
    -9`` of the sweep leaves no idle worker). ``report``: the queue of :data:`_REPORT`.
    """
    import multiprocessing
    import threading

    global _REPORT
    _REPORT = report
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent.sentinel,), daemon=True,
                         name="fastgrok-parent-watch").start()


def _exit_with_parent(sentinel):
    from multiprocessing.connection import wait

    wait([sentinel])  # ready when the parent process has exited, however it died
    os._exit(1)


@contextlib.contextmanager
def _spawning():
    """Around the submissions that start local workers.

    * The workers do not import the user's ``__main__``: multiprocessing's "spawn" re-runs the
      main script in every worker, so a plain research script without an
      ``if __name__ == "__main__":`` guard would start the sweep again inside each worker and
      die with BrokenProcessPool. The workers only need fastgrok, so the main module's
      ``__file__`` and ``__spec__`` are hidden while they start.
    * SIGINT is ignored while they start, so they are born ignoring it (an ignored signal stays
      ignored across exec): a Ctrl-C never prints a traceback from a worker that is starting.
    """
    import threading

    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main and k in main.__dict__}
    in_main_thread = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__spec__ = None
        yield
    finally:
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)
        if in_main_thread:
            signal.signal(signal.SIGINT, old)


def _stop_workers(executor):
    """Cancel what has not started and end the worker processes now (not after their point)."""
    processes = list(getattr(executor, "_processes", {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
    # Nothing reads the call queue now: the exit must not wait to flush what it still holds
    # into the pipe of a dead worker (the queue's feeder thread is joined at exit).
    queue = getattr(executor, "_call_queue", None)
    if queue is not None:
        queue.cancel_join_thread()


def _normalised(base: dict):
    """A base Config's dict as JSON, with the fields it predates at their defaults.

    A sweep written before a field existed is over that field's default (which is how the
    field was added): it resumes under the version that has the field.
    """
    try:
        base = Config.from_dict(base).to_dict()
    except (TypeError, ValueError):  # a field this version does not know: compared as written
        pass
    return json.loads(json.dumps(base, default=str))


class SweepFailed(RuntimeError):
    """A sweep that cannot go on (a point's file cannot be written: a full disk).

    The finished points are saved; the message says what failed and how to resume.
    """


class WorkerDied(SweepFailed):
    """A sweep stopped because a point's worker died twice (its retry too).

    The finished points are saved; the message names the point, how its worker died and how
    to resume.
    """


class _WriteFailed(Exception):
    """A point's file could not be written (carries the path and the OSError)."""


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by Ctrl-C (SIGINT).

    The finished points are saved; ``message`` says how many and how to resume.
    """

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def require_sweep_extras():
    """ImportError naming the extra to install when pyarrow (the point files) is missing.

    (A Dask executor is the caller's, so Dask is there when one is passed.)
    """
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError("fastgrok sweeps and studies need pyarrow, which is not installed: "
                          "pip install 'fastgrok[sweeps]'") from None


class SweepResult:
    """What :func:`sweep` and :func:`fastgrok.study` return.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (grid point, run, evaluated step): the grid values and the history columns.
    points : pandas.DataFrame
        One row per grid point: the grid values, runs, final train and test accuracy medians,
        grok_step_median (<NA> when the median run never reaches ``threshold``), runs_never,
        runs_diverged (runs whose outputs stopped being finite).
    grid : list of dict
        The grid points.
    out : str or None
        The folder the sweep wrote.
    threshold : float
        The test accuracy that counted as grokked.
    figure : str or None
        The figure's path (a sweep's fig_sweep.png, a study's fig_study.png), None where none
        was drawn.
    """

    def __init__(self, table, points, grid, out=None, threshold=0.9, figure=None):
        self.table, self.points, self.grid, self.out = table, points, grid, out
        self.threshold, self.figure = threshold, figure


def sweep(base: Config, grid: dict | list, out: str | os.PathLike | None = None, executor=None,
          n_workers: int | None = None, threshold: float = 0.9, progress: bool = True,
          figures: bool = True, paired: tuple = ()) -> SweepResult:
    """Run every grid point of ``grid`` over ``base``; resumable when ``out`` is given.

    Parameters
    ----------
    base : Config
        The experiment every point modifies.
    grid : dict or list of dict
        ``{field: [values, ...]}`` (the points are the Cartesian product) or a list of
        ``{field: value}`` points (see :func:`grid_points`).
    out : path, optional
        Folder for the per-point files, table.parquet, points.csv and figures. A rerun with the
        same folder and the same sweep skips the points already there.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Where points run (default: local worker processes).
    n_workers : int, optional
        Local worker processes (default: one per CPU, each with 1 thread; fewer workers get
        more threads each).
    threshold : float
        Test accuracy that counts as "grokked" for the grokking time.
    progress : bool
        Show a progress bar over the points.
    figures : bool
        With ``out``: also write fig_sweep.png (line plots over one axis, heatmaps over two).
    paired : sequence of str
        Grid fields whose points share seeds (see :func:`grid_points`).

    Returns
    -------
    SweepResult
        The table over every point, run and step, and the per-point summaries.

    Raises
    ------
    ImportError
        The ``sweeps`` extra (pyarrow, Dask) is not installed.
    ValueError
        A bad grid (unknown fields, empty or non-numeric lists, values a Config rejects), or a
        folder that holds a sweep of another base Config.
    SweepInterrupted
        Ctrl-C (or SIGTERM on the command line): the finished points are kept, and the message
        says how to resume.
    SweepFailed
        A point's worker died twice (:class:`WorkerDied`) or a file could not be written: the
        finished points are kept, and the message says what failed and how to resume.
    fastgrok._io.NoRoomError
        ``out``'s disk has less free space than the sweep is estimated to write (before any
        work).

    See Also
    --------
    fastgrok.study : the built-in studies, each a sweep with its own figure.

    Examples
    --------
    >>> import fastgrok as fg
    >>> res = fg.sweep(fg.preset("quick", runs=2, steps=5), {"mu_norm": [10.0, 35.0]},
    ...                progress=False)
    >>> res.points[["mu_norm", "final_train_acc_median", "final_test_acc_median"]]
       mu_norm  final_train_acc_median  final_test_acc_median
    0     10.0                     1.0                 0.5325
    1     35.0                     1.0                 0.9175
    """
    points = grid_points(base, grid, paired)
    require_sweep_extras()
    names = list(points[0][0])
    folder = None if out is None else _SweepFolder(out, base, paired)
    done = {} if folder is None else folder.finished(points)
    todo = [i for i in range(len(points)) if i not in done]
    if folder is not None:
        folder.check_room(points, todo)
    _run_points(points, todo, done, folder, executor, n_workers, progress)
    if folder is not None:  # as written: a resumed sweep gives the table an uninterrupted one gives
        done = folder.read(points)
    table = pd.concat([done[i] for i in range(len(points))], ignore_index=True)
    if "diverged" in table:  # only the points where a run diverged have the column
        table["diverged"] = table["diverged"].eq(True)
    summary = point_summaries(table, names, threshold)
    figure = None
    if folder is not None:
        try:
            folder.write_tables(table, summary)
        except OSError as exc:
            raise SweepFailed(f"could not write the tables in {folder.out}: "
                              f"{exc.strerror or exc}: every point is saved in "
                              f"{folder.points_dir}; run the same sweep again once there is "
                              "room") from None
        if figures:
            from .plots import sweep_figures

            drawn = []  # its paths (none for three grid axes or more)
            figure_or_warning("fig_sweep.png", lambda: drawn.extend(sweep_figures(
                summary, names, folder.out, steps=base.steps, runs=base.runs,
                threshold=threshold)))
            figure = drawn[0] if drawn else None
    return SweepResult(table, summary, grid, None if folder is None else folder.out, threshold,
                       figure)


class _SweepFolder:
    """The folder of a resumable sweep: its spec, one file per finished point, its tables.

    A folder belongs to one base experiment; its points are keyed by their values, so the same
    folder can take a grid with points added (the finished ones are reused: a point's seed
    depends only on the base seed and its values) or removed.
    """

    def __init__(self, out, base: Config, paired):
        from .results import _writable_dir

        self.out = _writable_dir(out)
        self.points_dir = os.path.join(self.out, "points")
        os.makedirs(self.points_dir, exist_ok=True)
        for f in os.listdir(self.points_dir):  # half-written files of a killed sweep
            if f.startswith(TMP_PREFIX):
                os.remove(os.path.join(self.points_dir, f))
        spec = {"base": base.to_dict(), "paired": sorted(paired)}
        spec_path = os.path.join(self.out, "sweep.json")
        if os.path.exists(spec_path):
            with open(spec_path) as fh:
                old = json.load(fh)
            if _normalised(old["base"]) != _normalised(spec["base"]):
                raise ValueError(f"out={self.out!r} holds a sweep over a different base Config; "
                                 "use another folder")
            if old.get("paired", []) != spec["paired"]:
                raise ValueError(f"out={self.out!r} holds a sweep with "
                                 f"paired={old.get('paired', [])} (its points have other seeds); "
                                 "use another folder")
        else:
            with atomic_path(spec_path) as tmp, open(tmp, "w") as fh:
                json.dump(spec, fh, indent=2, default=str)

    def path(self, values: dict) -> str:
        """The file of the point with these grid values."""
        return _point_path(self.points_dir, values)

    def finished(self, points) -> dict:
        """{index: table} of the points already in the folder.

        A point file is a cache entry: one that is damaged (unreadable, or not the point's
        table) is set aside into ``points/damaged/`` with a warning, and its point is computed
        again.
        """
        done = {}
        for i, (values, cfg) in enumerate(points):
            path = self.path(values)
            if not os.path.exists(path):
                continue
            try:
                done[i] = self._read(path, values, cfg)
            except DamagedFileError as exc:
                aside = os.path.join(self.points_dir, "damaged")
                os.makedirs(aside, exist_ok=True)
                os.replace(path, os.path.join(aside, os.path.basename(path)))
                warnings.warn(f"point {values}: {exc}; set aside in {aside}, computing the point "
                              "again", RuntimeWarning, stacklevel=3)
        return done

    def read(self, points) -> dict:
        """{index: table} of every point, read back from its file."""
        return {i: self._read(self.path(values), values, cfg)
                for i, (values, cfg) in enumerate(points)}

    @staticmethod
    def _read(path, values, cfg) -> pd.DataFrame:
        """A point's table, checked: its grid values, runs and steps (DamagedFileError)."""
        from .results import HISTORY_COLUMNS

        table = read_table(path, HISTORY_COLUMNS, cfg.runs, cfg.steps)
        if any(k not in table or not (table[k] == v).all() for k, v in values.items()):
            raise DamagedFileError(f"{path} is damaged: its rows are not those of the point "
                                   f"{values}")
        return table

    def check_room(self, points, todo) -> None:
        """NoRoomError, with the numbers, when the disk cannot take the points still to run.

        (Their files and the sweep's tables, as :func:`fastgrok.results.output_bytes` counts
        a history.)
        """
        from ._io import check_room
        from .driver import eval_schedule
        from .results import output_bytes

        def rows(cfg):
            return cfg.runs * len(eval_schedule(cfg.steps, cfg.snapshot_steps or ()))

        todo_rows = sum(rows(points[i][1]) for i in todo)
        all_rows = sum(rows(cfg) for _, cfg in points)
        check_room(self.out, output_bytes(1, todo_rows + all_rows, figures=True),
                   f"the sweep's {len(todo)} points to run and its tables")

    def write_tables(self, table, summary) -> None:
        """table.parquet (every point, run and step) and points.csv (one row per point)."""
        write_table(table, os.path.join(self.out, "table.parquet"))
        write_table(summary, os.path.join(self.out, "points.csv"))


def _local_workers(n_workers, todo) -> tuple:
    """(worker processes, threads per worker) for ``todo`` points on this machine.

    One worker per CPU with one thread each by default; fewer workers get more threads each.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = max(1, min(n_workers or cpus, len(todo) or 1))
    return workers, max(1, cpus // workers)


def _run_points(points, todo, done, folder, executor, n_workers, progress) -> None:
    """Run the points ``todo`` on ``executor``, adding each finished point's table to ``done``.

    The default executor is local worker processes, started and stopped here
    (:func:`_run_local`); each finished point's file is written to ``folder`` (when there is
    one) as it arrives. Ctrl-C keeps every point that finished, stops the local workers at once
    and raises :class:`SweepInterrupted`.
    """
    from .progress import progress_bar

    bar = progress_bar(len(points), "fastgrok sweep", "point", enabled=progress, initial=len(done))
    now = {"executor": executor, "futures": {}, "own": False}  # what is running

    def keep(fut, i):
        h = _point_result(fut, points[i])
        if folder is not None:
            try:
                write_table(h, folder.path(points[i][0]))
            except OSError as exc:
                raise _WriteFailed(folder.path(points[i][0]), exc) from None
        done[i] = h
        bar.update(1)
        if "diverged" in h:
            _warn_diverged(points[i], h)

    try:
        if executor is None:
            _run_local(now, points, todo, done, keep, n_workers, folder)
        elif todo:
            _run_batch(now, points, todo, keep, 1)
    except KeyboardInterrupt:
        # Keep every point that finished, whether or not the loop had got to it yet.
        _keep_finished(now["futures"], done, keep)
        _stop(now)
        raise SweepInterrupted(f"interrupted: {len(done)} of {len(points)} points "
                               f"{_where(folder)}") from None
    except _WriteFailed as failed:
        _stop(now)
        path, exc = failed.args
        raise SweepFailed(f"could not write {path}: {exc.strerror or exc}: {len(done)} of "
                          f"{len(points)} points {_where(folder)} once there is room") from None
    finally:
        bar.close()
        if now["own"]:
            now["executor"].shutdown(wait=True, cancel_futures=True)


def _stop(now) -> None:
    """Stop what is running: the local workers at once, or the executor's futures."""
    if now["own"]:
        _stop_workers(now["executor"])
        now["own"] = False
    else:
        for fut in now["futures"]:
            fut.cancel()


def _where(folder) -> str:
    return (f"saved in {folder.out}; run the same sweep again to resume" if folder
            else "not saved (no out)")


def _keep_finished(futures, done, keep) -> None:
    """Keep the points of ``futures`` that finished and are not kept yet."""
    for fut, i in futures.items():
        if i not in done and fut.done() and not fut.cancelled() and fut.exception() is None:
            keep(fut, i)


def _run_batch(now, points, ids, keep, threads) -> None:
    """Submit the points ``ids`` to ``now["executor"]`` and keep each as it finishes."""
    with _spawning() if now["own"] else contextlib.nullcontext():
        now["futures"] = {_submit(now["executor"], _run_point, points[i][1].to_dict(),
                                  points[i][0], threads): i for i in ids}
    for fut, i in _completed(now["executor"], now["futures"]):
        keep(fut, i)


def _run_local(now, points, todo, done, keep, n_workers, folder) -> None:
    """The points ``todo`` in local worker processes; a point whose worker dies runs again once.

    Each worker tells the parent which point it starts, so a worker's death (the OOM killer's
    SIGKILL, a crash) is reported with its point and signal (:func:`_worker_deaths`). The
    finished points are kept, and the others run on in a fresh pool, with half the workers
    when the death was a SIGKILL (probably memory). A point whose worker dies a second time
    stops the sweep with :class:`WorkerDied`.
    """
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    workers, threads = _local_workers(n_workers, todo)
    pending, died = list(todo), {}  # died: point index -> its worker's exit code
    unexplained = 0
    while pending:
        report = context.SimpleQueue()
        now["executor"] = ProcessPoolExecutor(workers, mp_context=context,
                                              initializer=_worker_init, initargs=(report,))
        now["own"] = True
        try:
            _run_batch(now, points, pending, keep, threads)
            pending = []
        except BrokenProcessPool:
            _keep_finished(now["futures"], done, keep)
            deaths = _worker_deaths(now["executor"], report, points, done)
            now["own"] = False
            pending = [i for i in pending if i not in done]
            if not deaths:  # a worker died outside any point (while it started)
                unexplained += 1
                if unexplained > 1:
                    raise WorkerDied(f"worker processes die before they start a point: "
                                     f"{len(done)} of {len(points)} points "
                                     f"{_where(folder)}") from None
            for i, code, pid in deaths:
                if i in died:
                    raise WorkerDied(
                        f"point {points[i][0]}: its worker died again ({_ended(code, pid)}): "
                        f"{len(done)} of {len(points)} points {_where(folder)} (with fewer "
                        "workers: n_workers=1, --workers 1)") from None
                died[i] = code
            if any(code == -signal.SIGKILL for _, code, _ in deaths):
                workers = max(1, workers // 2)
            for i, code, pid in deaths:
                warnings.warn(f"point {points[i][0]}: its worker {_ended(code, pid)}; running it "
                              f"again once in a fresh worker ({workers} worker(s) now)",
                              RuntimeWarning, stacklevel=4)


def _worker_deaths(executor, report, points, done) -> list:
    """[(point index, exit code, pid)] of the workers that died in a point, after the pool broke.

    Shuts the pool down (its other workers are stopped by the pool itself), then reads which
    point each worker had started and how each worker ended.
    """
    processes = dict(executor._processes or {})
    executor.shutdown(wait=True, cancel_futures=True)
    started = {}
    while not report.empty():
        pid, key = report.get()
        started[pid] = key
    index = {point_key(values): i for i, (values, _) in enumerate(points)}
    deaths = []
    for pid, proc in processes.items():
        code = proc.exitcode
        # The pool ends its other workers with SIGTERM when one dies: those are not the cause.
        if code in (0, None, -signal.SIGTERM) or pid not in started:
            continue
        if index[started[pid]] not in done:
            deaths.append((index[started[pid]], code, pid))
    return deaths


def _ended(code, pid) -> str:
    """How a worker ended, from its exit code (negative: the signal that killed it)."""
    if code >= 0:
        return f"exited with status {code} (pid {pid})"
    probably = ", probably out of memory" if -code == signal.SIGKILL else ""
    return f"was killed by {signal.Signals(-code).name} (pid {pid}){probably}"


def _point_result(fut, point):
    """A finished point's table.

    A point whose Dask workers kept dying (the scheduler's ``allowed-failures`` retries,
    spent) is a :class:`WorkerDied`.
    """
    try:
        return fut.result()
    except Exception as exc:
        if type(exc).__name__ != "KilledWorker":
            raise
        raise WorkerDied(f"point {point[0]}: its Dask workers died each time it ran (the "
                         f"scheduler's allowed-failures; {exc}), probably out of memory; the "
                         "finished points are saved: run the same sweep again to resume") from None


def _warn_diverged(point, history) -> None:
    """One line for a point whose runs diverged (the run's own warning is the worker's)."""
    values, cfg = point
    runs = sorted(history.loc[history["diverged"].eq(True), "run"].unique())
    warnings.warn(f"point {values}: {len(runs)} of {cfg.runs} runs diverged at lr={cfg.lr:g} "
                  f"(runs {', '.join(map(str, runs))}); their metrics from there on are NaN and "
                  "points.csv counts them in runs_diverged", RuntimeWarning, stacklevel=2)


def _point_path(pdir, values: dict) -> str:
    """The file of the point with these grid values (a hash of them: any order, any grid)."""
    key = hashlib.sha1(point_key(values).encode()).hexdigest()[:16]
    return os.path.join(pdir, f"point-{key}.parquet")


def _submit(executor, fn, *args):
    if isinstance(executor, Executor):
        return executor.submit(fn, *args)
    # dask.distributed.Client: a point whose worker dies runs again on another, as the
    # scheduler's allowed-failures setting says (KilledWorker after that: _point_result).
    return executor.submit(fn, *args, pure=False)


def _completed(executor, futures):
    if isinstance(executor, Executor):
        for fut in as_completed(futures):
            yield fut, futures[fut]
    else:
        from distributed import as_completed as dask_completed

        for fut in dask_completed(list(futures)):
            yield fut, futures[fut]
