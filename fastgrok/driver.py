"""The one training driver shared by every engine.

It owns the step loop, the evaluation schedule, the progress bar and the history; engines only
step and evaluate (see :mod:`fastgrok.engines`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import reference, tunables

METRICS = ("train_acc", "train_loss", "test_acc", "test_loss", "test_acc_se",
           "pos_mu1", "pos_mu2", "neg_mu1", "neg_mu2")


def eval_schedule(steps: int, snapshot_steps=()) -> np.ndarray:
    """Steps at which to evaluate: every step for short runs, else log-spaced in t + 1.

    Always includes 0, 1, ..., 10, the last step and every histogram step.
    """
    if steps <= tunables.EVAL_EVERY_STEP_UP_TO:
        base = np.arange(steps + 1)
    else:
        logs = np.rint(np.geomspace(1, steps + 1, tunables.EVAL_LOG_POINTS)).astype(np.int64) - 1
        base = np.concatenate([np.arange(min(steps, 10) + 1), logs, [steps]])
    extra = np.asarray(list(snapshot_steps or ()), dtype=np.int64)
    return np.unique(np.concatenate([base, extra]).clip(0, steps))


def default_snapshot_steps(steps: int) -> tuple:
    """A few log-spaced steps for the projection histograms when the config names none."""
    cand = {0, 1, steps} | {int(round(steps ** f)) for f in (0.25, 0.5, 0.75)}
    return tuple(sorted(s for s in cand if 0 <= s <= steps))


def alignment_summaries(P1, P2, a, mu_norm) -> dict:
    """Mean |<w_j, mu_k>| / ||mu|| over positive (a_j > 0) and negative neurons.

    The paper's mechanism: positive neurons align with +-mu1, negative ones with +-mu2.
    NaN where a group is empty or no means are known.
    """
    out = {}
    for group, sel in (("pos", a > 0), ("neg", a < 0)):
        count = np.count_nonzero(sel)
        for k, P in (("mu1", P1), ("mu2", P2)):
            # sum / count is np.mean's own arithmetic, without its per-call overhead (the driver
            # calls this for every run at every evaluation: 5100 times in the left panel).
            ok = P is not None and count
            out[f"{group}_{k}"] = float(np.abs(P[sel]).sum() / count) / mu_norm if ok else np.nan
    return out


@dataclass(frozen=True, eq=False)
class RunState:
    """A read-only view of one run at one evaluated step, for stop rules and metrics.

    What :func:`fastgrok.fit`'s ``stop`` and ``metrics`` callables receive. The arrays are
    read-only views (copy them to keep them).

    Attributes
    ----------
    step : int
        Steps taken.
    run : int
        The run's index.
    outputs : (n,) float64 array
        Training outputs f(x_i).
    test_outputs : (n_test,) float64 array or None
        Test outputs (None without a test set).
    y, y_test : arrays
        Training labels (as trained on, flips included) and test labels (or None).
    flipped : (n,) bool array or None
        Which training labels were flipped, where known.
    projections : dict
        Name -> (m,) float64 array <w_j, v> for "mu1", "mu2" (where means are known) and each
        tracked direction; filled at the snapshot steps and wherever the engine gives them.
    """

    step: int
    run: int
    outputs: np.ndarray
    test_outputs: np.ndarray | None
    y: np.ndarray
    y_test: np.ndarray | None
    flipped: np.ndarray | None
    projections: dict
    _network: object = None

    def network(self):
        """The run's network now (:class:`fastgrok.network.Network`; costs a copy of its state)."""
        return self._network()

    def weights(self):
        """(W, a) now: the first layer (m, p) and the second layer (m,) (forms W: costly)."""
        return self._network().weights()


@dataclass
class Trained:
    """What :func:`drive` gives back.

    ``rows`` (one dict per run and recorded step, sorted), ``projections`` (see :func:`drive`),
    ``counts`` (the engines' counters, summed), ``networks`` ((run, step) -> Network, at the kept
    steps), ``stop_steps`` (run -> the step at which its stop rule fired) and ``diverged`` (run
    -> (its last evaluated step with finite outputs and loss, its first evaluated step
    without)).
    """

    rows: list
    projections: dict
    counts: dict
    networks: dict = field(default_factory=dict)
    stop_steps: dict = field(default_factory=dict)
    diverged: dict = field(default_factory=dict)


def drive(make_engine, runs, batch, steps, snapshot_steps, mu_norm, progress=False, desc="fastgrok",
          second_mean=True, *, network_steps=(), stop=None, metrics=None, track=(),
          stable_rank=False, checkpoint=None, reattach=None, overlap=None) -> Trained:
    """Train every run and collect the history and the histogram projections.

    Parameters
    ----------
    make_engine : callable
        ``make_engine(batch_runs, on_built) -> engine`` for a list of run indices; the engine
        calls ``on_built()`` as each run's state is ready (a progress tick for long builds).
    runs : sequence of int
        Run indices.
    batch : int
        Runs per engine (engines that batch runs step them together); a resumed checkpoint
        keeps the batches it was written with.
    steps : int
        Gradient steps per run.
    snapshot_steps : sequence of int
        Steps at which the projections W mu1, W mu2 (and the tracked ones) are kept whole.
    mu_norm : float or None
        ||mu||, to normalise the alignment summaries (None: no means known).
    progress : bool
        Show a progress bar over all runs x steps.
    second_mean : bool
        False when the data do not use mu2 (linear data): its projections and alignment
        columns are NaN rather than numbers about a direction no sample has.
    network_steps : sequence of int
        Steps at which each run's network is kept (:class:`fastgrok.network.Network`); a run
        that stops keeps its network at its stop step for every later one.
    stop : None, "interpolation" or callable
        A run stops after the first step at which the rule holds ("interpolation": every
        training label is classified correctly; a callable gets a :class:`RunState` and returns
        a bool). It leaves its batch and is frozen: its later rows repeat its stop step's.
    metrics : dict, optional
        Name -> callable(RunState) -> float, recorded as history columns.
    track : sequence of str
        Names of the tracked directions (after mu1 and mu2 in the engines' projections).
    stable_rank : bool
        Add the history column stable_rank, ||W||_F^2 / ||W||_2^2 at the snapshot steps (NaN
        at the other steps), from each run's network there.
    checkpoint : fastgrok.checkpoint.Checkpoint, optional
        Resume from its state where it has one; save the state to it at the end of a segment
        when it is due (not with a stop rule).
    reattach : callable, optional
        ``reattach(engine)`` gives a resumed engine its backend operations and threads.
    overlap : callable, optional
        Record each segment's evaluations on this thread while the next segment steps on
        another (:func:`_record_behind`), where the recording reads nothing but the
        evaluations (no stop rule, metrics, kept networks or stable rank): ``overlap()`` is
        the context the stepping thread runs in (the engine's thread runtime). For engines
        whose work runs on host threads of their own, where the calling thread would wait.

    Returns
    -------
    Trained
        ``projections`` holds "steps" (H,), "P1", "P2" (R, H, m), "a" (R, m) and each tracked
        name (R, H, m); with them, where the engine gives them, the training data's projections
        "X_mu" (R, n, 2) and labels "y" (R, n); empty without directions.
    """
    from .progress import progress_bar

    schedule = eval_schedule(steps, snapshot_steps)
    runs = list(runs)
    history = _History(set(int(s) for s in snapshot_steps), mu_norm, second_mean, set(schedule),
                       set(int(s) for s in network_steps), stop, dict(metrics or {}), list(track),
                       stable_rank)
    counts, first, resumed = {}, 0, None
    if checkpoint is not None:
        resumed = checkpoint.load()
        if resumed is not None:
            history, counts, first = resumed["history"], resumed["counts"], resumed["batch"]
            batch = resumed["batch_size"]  # the batches it was written with (the CPUs may differ)
    done = min(first, len(runs)) * steps
    if resumed is not None and resumed["engine"] is not None:
        done += resumed["t"] * len(runs[first:first + batch])
    # One bar over all runs x steps; a batch's build shows as the bar's phase, not a second bar.
    bar = progress_bar(len(runs) * steps, desc, "step", enabled=progress, initial=done)
    # The recording reads only the evaluations it is given unless a stop rule, a metric, a kept
    # network or the stable rank reads the engine: then it keeps in step with the steps.
    behind = overlap is not None and history.stop is None and not history.metrics \
        and not history.network_set and not history.stable_rank

    def train(emit):
        nonlocal resumed
        for b0 in range(first, len(runs), batch):
            start = 0
            if resumed is not None and resumed["engine"] is not None:
                engine, start = resumed["engine"], resumed["t"]
                reattach(engine)
            else:
                engine = _build(make_engine, runs, b0, batch, bar, emit)
            resumed = None

            def save(t, engine=engine, b0=b0):
                if checkpoint is not None and checkpoint.due():
                    # (on the recording's side, once it has recorded every step up to t)
                    emit(checkpoint.save, {"history": history, "counts": counts, "batch": b0,
                                           "batch_size": batch, "engine": engine, "t": t},
                         _state_bytes(engine), wait=True)

            _drive_batch(engine, runs[b0:b0 + batch], schedule, steps, history, bar, start,
                         save, emit, behind)
            emit(_add_counts, counts, engine.counters())
            del engine
            if checkpoint is not None and checkpoint.due() and b0 + batch < len(runs):
                emit(checkpoint.save, {"history": history, "counts": counts,
                                       "batch": b0 + batch, "batch_size": batch,
                                       "engine": None, "t": 0}, wait=True)

    try:
        if behind:
            _record_behind(train, overlap)
        else:
            train(_now)
    finally:
        bar.close()
    return history.result(counts)


def _add_counts(counts, more):
    for k, val in more.items():
        counts[k] = counts.get(k, 0) + val


def _now(fn, *args, wait=False):
    """``fn(*args)`` at once: the recording in step with the steps."""
    return fn(*args)


class _Cancelled(Exception):
    """The recording side stopped (an error or an interrupt): the steps stop too."""


def _record_behind(train, context):
    """``train(emit)`` on a thread of its own, what it emits done on this one, in order.

    The steps of the next segment (and the next batch's build) run while this thread records
    the last one's evaluations, so the threads are not idle while the history is written.
    ``emit(fn, *args, wait=False)`` queues ``fn(*args)`` for this thread (``wait``: and waits
    until it is done, as a checkpoint's save does, which must see the engine at its step). An
    error on either side stops both; the stepping thread's is raised here. The bits are those
    of the recording in step: the same calls in the same order on the same numbers.
    ``context()``: the context manager the stepping thread runs ``train`` in.
    """
    import contextvars
    import queue
    import threading

    # Bounded: a recording slower than the steps holds back the steps, not memory.
    todo = queue.Queue(maxsize=tunables.DRIVER_QUEUE)
    stop = threading.Event()
    end = object()
    failed = []

    def put(item):
        while True:
            if stop.is_set():
                raise _Cancelled
            try:
                todo.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def emit(fn, *args, wait=False):
        done = threading.Event() if wait else None
        put((fn, args, done))
        while done is not None and not done.wait(0.1):
            if stop.is_set():
                raise _Cancelled

    def steps():
        try:
            with context():
                train(emit)
        except _Cancelled:
            return
        except BaseException as exc:  # noqa: BLE001 - raised again on the recording's side
            failed.append(exc)
        try:
            put(end)
        except _Cancelled:
            pass

    # The stepping thread sees this thread's context (NumPy's error state is one of its
    # variables: the caller's np.errstate holds there too).
    worker = threading.Thread(target=contextvars.copy_context().run, args=(steps,),
                              name="fastgrok-steps", daemon=True)
    worker.start()
    try:
        while True:
            item = todo.get()
            if item is end:
                break
            fn, args, done = item
            fn(*args)
            if done is not None:
                done.set()
        if failed:
            raise failed[0]
    finally:
        stop.set()
        worker.join()


def _state_bytes(obj, depth=0, seen=None) -> int:
    """About how many bytes of arrays ``obj`` holds (an engine: the size of its checkpoint)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 4:
        return 0
    seen.add(id(obj))
    if isinstance(obj, type):
        return 0
    if hasattr(obj, "dtype") and isinstance(getattr(obj, "nbytes", None), (int, np.integer)):
        return int(obj.nbytes)  # a host or device array
    if isinstance(obj, dict):
        items = obj.values()
    elif isinstance(obj, (list, tuple)):
        items = obj
    elif hasattr(obj, "__dict__"):
        items = vars(obj).values()
    else:
        return 0
    return sum(_state_bytes(x, depth + 1, seen) for x in items)


def segments(schedule, steps, per_call, breaks=(), start=0):
    """The driver's calls from step ``start`` to ``steps``, each a segment for the engine.

    A segment is a list of (steps, evaluate) in order (:meth:`fastgrok.engines.Engine.segment`):
    at most ``per_call()`` steps in all (asked before each call: the engine's
    :meth:`~fastgrok.engines.Engine.steps_per_call`), ending at each step of ``schedule`` with
    evaluate True. A call also ends at each step of ``breaks`` (where the engine's state is
    read after the call: the kept networks). Yields (segment, the evaluated steps of the
    segment).
    """
    t = start
    schedule = np.unique(np.asarray(schedule, dtype=np.int64))
    breaks = np.unique(np.asarray(list(breaks), dtype=np.int64))
    while t < steps:
        nxt = breaks[np.searchsorted(breaks, t, side="right"):][:1]
        end = min([t + per_call(), steps] + [int(b) for b in nxt])
        lo, hi = np.searchsorted(schedule, [t, end], side="right")
        evaluated = [int(s) for s in schedule[lo:hi]]
        ends = sorted(set(evaluated) | {end})
        segment = [(e - s0, e in evaluated)
                   for s0, e in zip([t] + ends[:-1], ends, strict=True)]
        yield segment, evaluated
        t = end


def _read_only(x):
    if x is None:
        return None
    view = np.asarray(x).view()
    view.flags.writeable = False
    return view


class _History:
    """The rows of the history, the projections and networks kept, the stops, as recorded."""

    def __init__(self, snapshot_set, mu_norm, second_mean, record_set=(), network_set=(),
                 stop=None, metrics=None, track=(), stable_rank=False):
        self.snapshot_set, self.mu_norm, self.second_mean = snapshot_set, mu_norm, second_mean
        self.record_set, self.network_set = set(record_set), set(network_set)
        self.stop, self.metrics, self.track = stop, dict(metrics or {}), list(track)
        self.stable_rank = stable_rank
        # The steps at which the engine must be at the step being recorded (not at the end of
        # a segment): the kept networks', and the snapshots' when the stable rank is asked.
        self.break_set = self.network_set | (self.snapshot_set if stable_rank else set())
        self.rows = []
        # run -> (its last evaluated step with finite outputs and loss, its first without)
        self.diverged, self.last_finite = {}, {}
        self.proj = {}  # run -> {step: (P1, P2, tracked)}; self.data: run -> (X mu, y)
        self.data, self.a = {}, {}
        self.networks, self.stop_steps = {}, {}
        self.frozen = {}  # run -> (stop step, its row, its projections, its network)

    def start_batch(self, ids, A, data):
        """A batch's runs: their second layers and their data in the means' plane (or None)."""
        for r, a, d in zip(ids, A, data, strict=True):
            self.a[r], self.data[r] = a, d

    def state(self, t, r, ev, source, network):
        """The :class:`RunState` of run r at step t from its evaluation ``ev``."""
        if self.stop == "interpolation" and not self.metrics:  # the rule reads y and f only
            return RunState(t, r, ev["f"], None, source.y, None, None, {}, None)
        P, names = ev.get("P"), ["mu1", "mu2"] if self.mu_norm is not None else []
        proj = {}
        if P is not None:
            for k, name in enumerate(names):
                proj[name] = _read_only(P[:, k])
            for k, name in enumerate(self.track):
                proj[name] = _read_only(P[:, 2 + k])
        return RunState(t, r, _read_only(ev["f"]), _read_only(ev.get("ft")),
                        _read_only(source.y), _read_only(source.y_test),
                        _read_only(source.flipped), proj, network)

    def record(self, t, ids, A, evs, sources=None, networks=None):
        """Record the evaluations ``evs`` of runs ``ids`` (second layers ``A``) at step t.

        Rows at the recorded steps, projections at the snapshot steps, networks at the network
        steps (``networks(i)`` gives position i's). Returns the positions whose stop rule fired.
        ``evs``: a list, or a function that gives it (an engine's deferred evaluation).
        """
        if callable(evs):
            evs = evs()
        stopped = []
        recorded = t in self.record_set
        columns = self._batch_columns(A, evs, sources) if recorded else None
        for i, (r, a, ev) in enumerate(zip(ids, A, evs, strict=True)):
            src = sources[i] if sources is not None else None
            state = None
            if recorded:
                row = self._row(t, r, a, ev, src, columns[i])
                if self.stable_rank:
                    row["stable_rank"] = (networks(i).stable_rank() if t in self.snapshot_set
                                          and not row.get("diverged") else np.nan)
                if self.metrics:
                    state = self.state(t, r, ev, src, lambda i=i: networks(i))
                    row.update(self._metrics(state))
                self.rows.append(row)
            if t in self.snapshot_set and ev.get("P") is not None:
                self.proj.setdefault(r, {})[t] = self._projections(ev["P"])
            if t in self.network_set:
                self.networks[(r, t)] = networks(i)
            if self.stop is not None and t > 0:
                if state is None:
                    state = self.state(t, r, ev, src, lambda i=i: networks(i))
                if self._stops(state):
                    self._freeze(t, r, i, a, ev, src, networks, state, row if recorded else None)
                    stopped.append(i)
        return stopped

    def stops(self, t, ids, outputs, sources, networks):
        """The positions whose stop rule fires at step t, from the training outputs alone.

        (Steps that are not recorded: no evaluation is made unless a rule fires.)
        """
        fired = []
        for i, (r, f) in enumerate(zip(ids, outputs, strict=True)):
            ev = {"f": f}
            if self._stops(self.state(t, r, ev, sources[i], lambda i=i: networks(i))):
                fired.append(i)
        return fired

    def record_stopped(self, t, ids, A, evs, sources, networks, fired):
        """Record the rows of the positions ``fired`` (stopped at step t) and freeze them."""
        for i in fired:
            r, ev, src = ids[i], evs[i], sources[i]
            state = self.state(t, r, ev, src, lambda i=i: networks(i))
            self._freeze(t, r, i, A[i], ev, src, networks, state, None)

    def _freeze(self, t, r, i, a, ev, src, networks, state, row):
        """Run r stopped at step t: its row there (recorded unless given) and what it keeps."""
        if row is None:
            row = self._row(t, r, a, ev, src)
            row.update(self._metrics(state))
            self.rows.append(row)
        net = self.networks.get((r, t)) or (networks(i) if self.network_set else None)
        P = self._projections(ev["P"]) if ev.get("P") is not None else None
        self.frozen[r] = (t, row, P, net)
        self.stop_steps[r] = t

    def _batch_columns(self, A, evs, sources):
        """What every run's row needs from its evaluation, for the batch at once.

        A tuple per run: its alignment summaries (one kernel call,
        :func:`fastgrok.kernels.numba_fused.group_abs_means`, the bits of
        :func:`alignment_summaries`, where every run has its P1 and Numba is there), its
        training accuracies on the clean and the flipped labels (None where the flips are not
        known), and whether its outputs and loss are finite.
        """
        R = len(evs)
        P1 = [_host(ev["P1"]) for ev in evs]
        P2 = [_host(ev["P2"]) if self.second_mean else None for ev in evs]
        try:
            from .kernels.numba_fused import group_abs_means
        except ImportError:  # no Numba (a GPU machine may lack it): NumPy, the same bits
            group_abs_means = None
        if not R or any(p is None for p in P1) or group_abs_means is None:
            aligned = [alignment_summaries(p1, p2, a, self.mu_norm or 1.0)
                       for p1, p2, a in zip(P1, P2, A, strict=True)]
        else:
            both = all(p is not None for p in P2)
            P = np.empty((R, 1 + both, len(P1[0])))
            for i, (p1, p2) in enumerate(zip(P1, P2, strict=True)):
                P[i, 0] = p1
                if both:
                    P[i, 1] = p2
            means = np.empty((R, 2, P.shape[1]))
            group_abs_means(P, np.stack(A), float(self.mu_norm or 1.0), means)
            aligned = [{"pos_mu1": float(o[0, 0]), "pos_mu2": float(o[0, 1]) if both else np.nan,
                        "neg_mu1": float(o[1, 0]), "neg_mu2": float(o[1, 1]) if both else np.nan}
                       for o in means]
        srcs = sources if sources is not None else [None] * R
        F = [None if ev.get("f") is None else np.asarray(ev["f"]) for ev in evs]
        finite = [bool(np.isfinite(ev["train_loss"]) and (f is None or np.isfinite(f).all()))
                  for ev, f in zip(evs, F, strict=True)]
        flips = [None] * R
        known = [i for i, src in enumerate(srcs) if src is not None and src.flipped is not None]
        if known:  # counts, not means of subsets, for the known runs in a few array operations
            right = np.stack([F[i] * srcs[i].y > 0 for i in known])
            for i, acc in zip(known, _flip_accuracies(right, np.stack(
                    [srcs[i].flipped for i in known])), strict=True):
                flips[i] = acc
        return list(zip(aligned, flips, finite, strict=True))

    def _row(self, t, r, a, ev, src, columns=None):
        aligned, flips, finite = columns or self._batch_columns([a], [ev], [src])[0]
        row = {"run": r, "step": t, **{k: float(ev.get(k, np.nan)) for k in METRICS[:5]},
               **aligned}
        for name in ("test_mse", "signal_learning", "noise_memorization"):
            if name in ev:  # real-valued targets; patch data
                row[name] = float(ev[name])
        if ev.get("a") is not None:  # a trained second layer: how far it moved from its start
            row["second_layer_change"] = float(np.linalg.norm(ev["a"] - a)
                                               / max(np.linalg.norm(a), 1e-300))
        if flips is not None:
            row.update(flips)
        if r in self.diverged or not finite:
            # A run whose outputs or loss are no longer finite has no accuracy: NaN says so
            # (a comparison with NaN would count every sample wrong, an accuracy of 0.0).
            # Non-finite weights stay non-finite, so every later row is flagged too.
            self.diverged.setdefault(r, (self.last_finite.get(r, 0), t))
            row.update({k: np.nan for k in row if k not in ("run", "step")}, diverged=True)
        else:
            self.last_finite[r] = t
        return row

    def _projections(self, P):
        P = _host(P)
        P2 = P[:, 1] if self.second_mean and self.mu_norm is not None else np.full(len(P), np.nan)
        P1 = P[:, 0] if self.mu_norm is not None else np.full(len(P), np.nan)
        return P1, P2, P[:, 2:]

    def _metrics(self, state):
        out = {}
        for name, fn in self.metrics.items():
            try:
                value = float(fn(state))
            except Exception as exc:  # a user's metric: say which, keep training
                import warnings

                warnings.warn(f"metric {name!r} raised {type(exc).__name__}: {exc} (run "
                              f"{state.run}, step {state.step}); recorded as NaN",
                              RuntimeWarning, stacklevel=2)
                value = np.nan
            out[name] = value
        return out

    def _stops(self, state):
        if self.stop == "interpolation":
            return reference.interpolates(state.y, state.outputs)
        verdict = self.stop(state)
        if not isinstance(verdict, (bool, np.bool_)):
            raise TypeError(f"the stop rule must return a bool, got {type(verdict).__name__} "
                            f"({verdict!r}) at run {state.run}, step {state.step}")
        return bool(verdict)

    def result(self, counts) -> Trained:
        """Fill the frozen runs' later rows and kept steps, and assemble what was recorded."""
        for r, (s, row, P, net) in self.frozen.items():
            for t in sorted(self.record_set):
                if t > s:
                    self.rows.append({**row, "step": int(t)})
            for t in self.snapshot_set:
                if t > s and P is not None:
                    self.proj.setdefault(r, {})[t] = P
            for t in self.network_set:
                if t > s and net is not None:
                    self.networks[(r, t)] = net
        self.rows.sort(key=lambda row: (row["run"], row["step"]))
        projections = {}
        if self.proj:
            order = sorted(self.proj)
            hs = sorted(self.snapshot_set)
            projections = {"steps": np.array(hs),
                           "P1": np.stack([np.stack([self.proj[r][t][0] for t in hs])
                                           for r in order]),
                           "P2": np.stack([np.stack([self.proj[r][t][1] for t in hs])
                                           for r in order]),
                           "a": np.stack([self.a[r] for r in order])}
            for k, name in enumerate(self.track):
                projections[name] = np.stack([np.stack([self.proj[r][t][2][:, k] for t in hs])
                                              for r in order])
            if all(self.data.get(r) is not None for r in order):
                projections["X_mu"] = np.stack([self.data[r][0] for r in order])
                projections["y"] = np.stack([self.data[r][1] for r in order])
        return Trained(self.rows, projections, counts, self.networks, self.stop_steps,
                       self.diverged)


def _build(make_engine, runs, b0, batch, bar, emit=_now):
    """The engine of the batch of runs starting at index b0, its build shown on the bar."""
    built = [0]

    def on_built():
        built[0] += 1
        emit(bar.phase, f"building runs {b0 + built[0]}/{len(runs)}")

    emit(bar.phase, f"building runs {b0}/{len(runs)}")
    engine = make_engine(runs[b0:b0 + batch], on_built)
    emit(bar.phase, "")
    return engine


def _drive_batch(engine, ids, schedule, steps, history, bar, start=0, save=None, emit=_now,
                 behind=False):
    """Take every step of the batch's runs ``ids``, recording the evaluations of ``schedule``.

    With a stop rule the rule is checked after every step (:func:`_steps_with_stop`) and a run
    that stops leaves the batch at once. ``start``: the step a resumed engine is at (its
    segments before it are skipped); ``save(t)``: called at the end of each segment, at step t
    (a checkpoint when one is due). What writes the history or the bar goes through ``emit``
    (:func:`_record_behind`); ``behind``: whether the recording runs behind the steps (it then
    reads no network, and each evaluation's metrics are left to it).
    """
    means = engine.sources[0].n_directions > 0
    ids = list(ids)
    A = [np.asarray(s.a, dtype=np.float64) for s in engine.sources]
    positions = list(range(len(ids)))  # the batch's runs still training, as ids positions
    if start == 0:
        _start_batch(engine, ids, A, schedule, history, means, emit)

    def leave(stopped):
        if stopped:
            keep = [k for k in range(len(positions)) if k not in stopped]
            positions[:] = [positions[k] for k in keep]
            engine.select(keep)

    sources = list(engine.sources)  # (as positions: a run that stops leaves both)

    def record(t, evs):
        # (without a stop rule nothing comes back: the recording may run behind the steps)
        leave(emit(history.record, t, [ids[i] for i in positions], [A[i] for i in positions],
                   evs, [sources[i] for i in positions], None if behind else engine.network))

    if start == 0:
        record(0, engine.evaluate(projections=means))  # 0: always evaluated
    if history.stop is not None:
        _steps_with_stop(engine, ids, A, positions, steps, history, bar, means, record, leave)
        return
    # As many steps per call as the engine asks (so the progress bar keeps moving); a resumed
    # engine starts at its step, where a call of the interrupted run ended.
    counted = start * len(ids)  # run-steps shown on the bar; stopped runs' at the end
    t = start
    for segment, evaluated in segments(schedule, steps, engine.steps_per_call,
                                       history.break_set, start):
        k = sum(k for k, _ in segment)
        t += k
        if not positions:
            break
        taken = k * len(positions)
        for s, evs in zip(evaluated, engine.segment(segment, projections=means, deferred=behind),
                          strict=True):
            record(s, evs)
        emit(bar.update, taken)
        counted += taken
        if save is not None and t < steps:
            save(t)
    emit(bar.update, steps * len(ids) - counted)


def _start_batch(engine, ids, A, schedule, history, means, emit=_now):
    """What a batch records before its first step.

    The second layers, the data in the means' plane (for the figures), and the engine's
    evaluation plan.
    """
    # The training data in the plane of the means, with their labels, for the figures.
    xm = engine.data_projections() \
        if history.snapshot_set and history.mu_norm is not None else None
    data = [None if xm is None else (xm[i], np.asarray(s.y, np.float64))
            for i, s in enumerate(engine.sources)]
    emit(history.start_batch, ids, A, data)
    engine.plan_evaluations(schedule)


def _steps_with_stop(engine, ids, A, positions, steps, history, bar, means, record, leave):
    """One step at a time, the stop rule checked after each.

    At the recorded, snapshot and network steps a full evaluation; elsewhere only what the
    rule reads: for "interpolation" (without metrics) the engine's own loop, which stops each
    run at its step; for a callable, the training outputs after each step.
    """
    full = sorted(history.record_set | history.snapshot_set | history.network_set)
    fast = history.stop == "interpolation"
    t = counted = 0
    while t < steps and positions:
        nxt = next((s for s in full if s > t), steps + 1)
        gap = min(nxt, steps + 1) - t - 1  # the steps before the next full evaluation
        taken = len(positions)
        if gap == 0:  # (one step and an evaluation: no segment machinery for one step)
            t += 1
            engine.advance(1, prepare_eval=True)
            record(t, engine.evaluate(projections=means))
            bar.update(taken)
            counted += taken
            continue
        now = [ids[i] for i in positions]
        if fast:
            k, offsets = engine.advance_until_interpolation(gap)
            fired = [i for i, o in enumerate(offsets) if o]
            ats = [t + offsets[i] for i in fired]
        else:
            k = 1
            engine.advance(1, prepare_eval=False)
            fired = history.stops(t + 1, now, engine.outputs(), engine.sources, engine.network)
            ats = [t + 1] * len(fired)
        if fired:
            evs = engine.evaluate(projections=means)
            for i, at in zip(fired, ats, strict=True):
                history.record_stopped(at, now, [A[j] for j in positions], evs, engine.sources,
                                       engine.network, [i])
            leave(fired)
        t += k
        bar.update(k * taken)
        counted += k * taken
    bar.update(steps * len(ids) - counted)


def _flip_accuracies(right, flipped) -> list:
    """Each run's training accuracies on its clean and its flipped labels (NaN where none).

    ``right``, ``flipped``: (runs, n) booleans, a sample classified right and one whose label
    was flipped; a dict per run.
    """
    n_flipped = np.count_nonzero(flipped, axis=1)
    right_flipped = np.count_nonzero(right & flipped, axis=1)
    n_clean = right.shape[1] - n_flipped
    right_clean = np.count_nonzero(right, axis=1) - right_flipped
    return [{"train_acc_clean": rc / nc if nc else np.nan,
             "train_acc_flipped": rf / nf if nf else np.nan}
            for rc, nc, rf, nf in zip(right_clean.tolist(), n_clean.tolist(),
                                      right_flipped.tolist(), n_flipped.tolist(), strict=True)]


def _host(x):
    """A NumPy float64 copy of a host or device array (None stays None)."""
    if x is None:
        return None
    if hasattr(x, "get"):  # CuPy
        x = x.get()
    return np.asarray(x, dtype=np.float64)
