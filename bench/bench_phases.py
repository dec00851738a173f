"""Where a run's time goes: seconds in each phase of a preset's training, summed over threads.

    python bench/bench_phases.py [--preset paper-fig1-left] [--threads 1] [--rounds 2]
                                 [--set runs=20 --set steps=1000 ...]

The engine's functions are wrapped with timers (a few microseconds a call): the build (the data
drawn, ``src.block``, and its products), the dense steps and evaluations before a run enters the
linear regime, the entry (with its exact refresh), the exact refreshes after it, the regime's
kernels (step by step and in blocks), the evaluations from C (``write_c`` and the product with Kt),
and the recording on the calling thread; and their calls are counted. With more than one thread the
per-phase seconds are summed over the threads (compare them with the wall time times the threads);
on two threads or more the metrics are computed inside the recording, which runs behind the steps.
The first line adds the process's user and system seconds and page faults (on a VM, returned and
refaulted memory costs system time). The kernels are compiled (or loaded) first; best round by
wall time.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import resource
import time


def _wrap(table, obj, name, label, calls):
    """Replace ``obj.name`` by a timer adding into ``table[label]`` and 1 into calls[label]."""
    fn = getattr(obj, name)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            table[label] += time.perf_counter() - t0
            calls[label] += 1

    setattr(obj, name, timed)


class _Kernels:
    """The regime's kernels module, each kernel call timed and counted, with its changes.

    ``changes`` receives each stepping kernel's pattern changes under its name, and under
    "tracked width" the widest tracked rows (KtT's columns) ``linear_steps`` took.
    """

    def __init__(self, module, table, calls, changes):
        self._module, self._table = module, table
        self._calls, self._changes = calls, changes

    def __getattr__(self, name):
        fn = getattr(self._module, name)
        if name not in ("linear_steps", "linear_blocks", "write_c"):
            return fn

        def timed(*args):
            t0 = time.perf_counter()
            out = fn(*args)
            label = f"kernel {name}"
            self._table[label] += time.perf_counter() - t0
            self._calls[label] += 1
            if name != "write_c":
                self._changes[name] += out
            if name == "linear_steps":
                width = max(self._changes["tracked width"], args[11].shape[1])
                self._changes["tracked width"] = width
            return out

        return timed


@contextlib.contextmanager
def kernels_wrapped(wrap):
    """Inside: every linear regime built holds ``wrap(its kernels' module)`` as its kernels."""
    from fastgrok.engines import linear_regime

    init = linear_regime.LinearRegime.__init__

    def wrapped_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.kernels = wrap(self.kernels)

    linear_regime.LinearRegime.__init__ = wrapped_init
    try:
        yield
    finally:
        linear_regime.LinearRegime.__init__ = init


def phases(cfg, threads, rounds):
    """The best of ``rounds`` runs by wall time: (wall s, {phase: (seconds, calls)}, info).

    ``info``: that run's ``Result.info``, with "changes": the pattern changes of each stepping
    kernel (and "tracked width", see :class:`_Kernels`), and "process": the process's user and
    system seconds and page faults during that run.
    """
    from fastgrok.kernels import gram_cpu

    import fastgrok as fg
    from fastgrok import driver, sources
    from fastgrok.engines import gram, linear_regime, ops_numba

    table, calls = collections.defaultdict(float), collections.Counter()
    changes = collections.Counter()
    for obj, name, label in ((gram, "build", "build (calling thread)"),
                             (sources.ReducedSource, "block", "build: data drawn"),
                             (gram_cpu, "step_run", "dense steps"),
                             (ops_numba.NumbaOps, "evaluation", "evaluations from C (product)"),
                             (linear_regime.LinearRegime, "_enter", "regime: entry"),
                             # (behind the steps, on the recording thread: inside recording)
                             (gram, "runs_metrics", "metrics (calling thread)"),
                             (driver._History, "record", "recording (calling thread)")):
        _wrap(table, obj, name, label, calls)
    entering = [False]
    enter, refresh = linear_regime.LinearRegime._enter, linear_regime.LinearRegime._refresh_d

    def timed_enter(self, *args):
        entering[0] = True
        try:
            return enter(self, *args)
        finally:
            entering[0] = False

    def timed_refresh(self, st):
        t0 = time.perf_counter()
        try:
            return refresh(self, st)
        finally:
            if not entering[0]:  # (the entry's own refresh is in the entry's time)
                table["regime: refreshes after entry"] += time.perf_counter() - t0
                calls["regime: refreshes after entry"] += 1

    linear_regime.LinearRegime._enter = timed_enter
    linear_regime.LinearRegime._refresh_d = timed_refresh
    best = None
    with kernels_wrapped(lambda module: _Kernels(module, table, calls, changes)):
        fg.run(cfg.replace(runs=1, steps=2), progress=False, n_threads=threads)
        for _ in range(rounds):
            for counter in (table, calls, changes):
                counter.clear()
            before = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            res = fg.run(cfg, progress=False, n_threads=threads)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_SELF)
            if best is None or wall < best[0]:
                system = {"system s": after.ru_stime - before.ru_stime,
                          "user s": after.ru_utime - before.ru_utime,
                          "page faults": after.ru_minflt - before.ru_minflt}
                best = (wall, {k: (table[k], calls[k]) for k in table},
                        {**res.info, "changes": dict(changes), "process": system})
    return best


def preset_overrides(preset, items):
    """{field: value} from ``--set`` items "name=value", each value in the preset field's type."""
    import fastgrok as fg

    over = {}
    for item in items:
        key, value = item.split("=", 1)
        over[key] = type(getattr(fg.preset(preset), key))(value)
    return over


def main(argv=None):
    import fastgrok as fg

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper-fig1-left")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="a Config field, name=value")
    args = ap.parse_args(argv)
    over = preset_overrides(args.preset, args.set)
    wall, table, info = phases(fg.preset(args.preset, **over), args.threads, args.rounds)
    proc = info["process"]
    print(f"{args.preset} {over} on {args.threads} thread(s): {wall:.2f} s wall "
          f"({wall * args.threads:.2f} thread-s); the process: {proc['user s']:.2f} s user, "
          f"{proc['system s']:.2f} s system, {proc['page faults']} page faults")
    print("| phase | s | share of wall x threads |")
    print("|---|---|---|")
    for name, (sec, _) in sorted(table.items(), key=lambda kv: -kv[1][0]):
        print(f"| {name} | {sec:.2f} | {sec / (wall * args.threads):.0%} |")


if __name__ == "__main__":
    main()
