"""The one training driver shared by every engine.

It owns the step loop, the evaluation schedule, the progress bar and the history; engines only
step and evaluate (see :mod:`fastgrok.engines`).
"""
from __future__ import annotations

import numpy as np

from . import tunables

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


def drive(make_engine, runs, batch, steps, snapshot_steps, mu_norm, progress=False, desc="fastgrok",
          second_mean=True):
    """Train every run and collect the history and the histogram projections.

    Parameters
    ----------
    make_engine : callable
        ``make_engine(batch_runs, on_built) -> engine`` for a list of run indices; the engine
        calls ``on_built()`` as each run's state is ready (a progress tick for long builds).
    runs : sequence of int
        Run indices.
    batch : int
        Runs per engine (engines that batch runs step them together).
    steps : int
        Gradient steps per run.
    snapshot_steps : sequence of int
        Steps at which W mu1 and W mu2 are kept whole.
    mu_norm : float or None
        ||mu||, to normalise the alignment summaries (None: no means known).
    progress : bool
        Show a progress bar over all runs x steps.
    second_mean : bool
        False when the data do not use mu2 (linear data): its projections and alignment
        columns are NaN rather than numbers about a direction no sample has.

    Returns
    -------
    rows : list of dict
        One per (run, evaluated step), sorted by run then step: run, step and :data:`METRICS`.
    projections : dict
        "steps" (H,), "P1", "P2" (R, H, m) and "a" (R, m); with them, where the engine gives
        them, the training data's projections "X_mu" (R, n, 2) and labels "y" (R, n); empty
        without means.
    counts : dict
        The engines' counters (``engine.counters()``) summed over batches.
    """
    from .progress import progress_bar

    schedule = eval_schedule(steps, snapshot_steps)
    runs = list(runs)
    history = _History(set(int(s) for s in snapshot_steps), mu_norm, second_mean)
    counts = {}
    # One bar over all runs x steps; a batch's build shows as the bar's phase, not a second bar.
    bar = progress_bar(len(runs) * steps, desc, "step", enabled=progress)
    try:
        for b0 in range(0, len(runs), batch):
            engine = _build(make_engine, runs, b0, batch, bar)
            _drive_batch(engine, runs[b0:b0 + batch], schedule, steps, history, bar)
            for k, val in engine.counters().items():
                counts[k] = counts.get(k, 0) + val
            del engine
    finally:
        bar.close()
    rows, proj, snapshot_set = history.rows, history.proj, history.snapshot_set
    rows.sort(key=lambda row: (row["run"], row["step"]))
    projections = {}
    if proj:
        order = sorted(proj)
        projections = {"steps": np.array(sorted(snapshot_set)),
                       "P1": np.stack([np.stack(proj[r][0]) for r in order]),
                       "P2": np.stack([np.stack(proj[r][1]) for r in order]),
                       "a": np.stack([proj[r][2] for r in order])}
        if all(proj[r][3] is not None for r in order):
            projections["X_mu"] = np.stack([proj[r][3][0] for r in order])
            projections["y"] = np.stack([proj[r][3][1] for r in order])
    return rows, projections, counts


def segments(schedule, steps, per_call):
    """The driver's calls from step 0 to ``steps``, each a segment for the engine.

    A segment is a list of (steps, evaluate) in order (:meth:`fastgrok.engines.Engine.segment`):
    at most ``per_call`` steps in all, ending at each step of ``schedule`` with evaluate True.
    Yields (segment, the evaluated steps of the segment).
    """
    t = 0
    while t < steps:
        end = min(t + per_call, steps)
        evaluated = [int(s) for s in schedule if t < s <= end]
        ends = sorted(set(evaluated) | {end})
        segment = [(e - s0, e in evaluated)
                   for s0, e in zip([t] + ends[:-1], ends, strict=True)]
        yield segment, evaluated
        t = end


class _History:
    """The rows of the history and the projections kept at the snapshot steps, as recorded."""

    def __init__(self, snapshot_set, mu_norm, second_mean):
        self.snapshot_set, self.mu_norm, self.second_mean = snapshot_set, mu_norm, second_mean
        self.rows = []
        self.proj = {}  # run -> ([P1 at snapshot steps], [P2 ...], a, data)

    def record(self, t, ids, A, data, evs):
        """Record the evaluations ``evs`` of runs ``ids`` (second layers ``A``) at step t."""
        for r, a, ev in zip(ids, A, evs, strict=True):
            P1, P2 = _host(ev["P1"]), _host(ev["P2"])
            if P2 is not None and not self.second_mean:
                P2 = np.full_like(P2, np.nan)
            self.rows.append({"run": r, "step": t,
                              **{k: float(ev.get(k, np.nan)) for k in METRICS[:5]},
                              **alignment_summaries(P1, P2, a, self.mu_norm or 1.0)})
            if t in self.snapshot_set and P1 is not None:
                entry = self.proj.setdefault(r, ([], [], a, data[r]))
                entry[0].append(P1)
                entry[1].append(P2)


def _build(make_engine, runs, b0, batch, bar):
    """The engine of the batch of runs starting at index b0, its build shown on the bar."""
    built = [0]

    def on_built():
        built[0] += 1
        bar.phase(f"building runs {b0 + built[0]}/{len(runs)}")

    bar.phase(f"building runs {b0}/{len(runs)}")
    engine = make_engine(runs[b0:b0 + batch], on_built)
    bar.phase("")
    return engine


def _drive_batch(engine, ids, schedule, steps, history, bar):
    """Take every step of the batch's runs ``ids``, recording the evaluations of ``schedule``."""
    means = history.mu_norm is not None
    A = [np.asarray(s.a, dtype=np.float64) for s in engine.sources]
    # The training data in the plane of the means, with their labels, for the figures.
    xm = engine.data_projections() if history.snapshot_set and means else None
    data = {r: None if xm is None else (xm[i], np.asarray(s.y, np.float64))
            for i, (r, s) in enumerate(zip(ids, engine.sources, strict=True))}
    engine.plan_evaluations(schedule)
    history.record(0, ids, A, data, engine.evaluate(projections=means))  # 0: always evaluated
    # At most tunables.STEPS_PER_CALL steps per call (so the progress bar keeps moving).
    for segment, evaluated in segments(schedule, steps, tunables.STEPS_PER_CALL):
        for s, evs in zip(evaluated, engine.segment(segment, projections=means), strict=True):
            history.record(s, ids, A, data, evs)
        bar.update(sum(k for k, _ in segment) * len(ids))


def _host(x):
    """A NumPy float64 copy of a host or device array (None stays None)."""
    if x is None:
        return None
    if hasattr(x, "get"):  # CuPy
        x = x.get()
    return np.asarray(x, dtype=np.float64)
