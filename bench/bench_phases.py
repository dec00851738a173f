"""Where a run's time goes: seconds in each phase of a preset's training, summed over threads.

    python bench/bench_phases.py [--preset paper-fig1-left] [--threads 1] [--rounds 2]
                                 [--set runs=20 --set steps=1000 ...]

The engine's functions are wrapped with timers (a few microseconds a call): the build (the
data drawn, ``src.block``, and its products), the dense steps and evaluations before a run
enters the linear regime, the entry, the exact refreshes, the regime's kernels (step by step
and in blocks), the evaluations from C (``write_c`` and the product with Kt), and the
recording on the calling thread. With more than one thread the per-phase seconds are summed
over the threads (compare them with the wall time times the threads). The kernels are
compiled (or loaded) first; best round by wall time.
"""
from __future__ import annotations

import argparse
import collections
import time


def _wrap(table, obj, name, label, calls=None):
    """Replace ``obj.name`` by a timer adding into ``table[label]`` (and 1 into calls[label])."""
    fn = getattr(obj, name)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            table[label] += time.perf_counter() - t0
            if calls is not None:
                calls[label] += 1

    setattr(obj, name, timed)


class _Kernels:
    """The regime's kernels module, each kernel call timed (and counted, with its changes).

    ``changes`` (when given) receives each stepping kernel's pattern changes under its name,
    and under "tracked width" the widest tracked rows (KtT's columns) ``linear_steps`` took.
    """

    def __init__(self, module, table, calls=None, changes=None):
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
            if self._calls is not None:
                self._calls[label] += 1
            if self._changes is not None and name != "write_c":
                self._changes[name] += out
                if name == "linear_steps":
                    width = max(self._changes["tracked width"], args[11].shape[1])
                    self._changes["tracked width"] = width
            return out

        return timed


def phases(cfg, threads, rounds):
    from fastgrok.kernels import gram_cpu

    import fastgrok as fg
    from fastgrok import driver, sources
    from fastgrok.engines import gram, linear_regime, ops_numba

    table = collections.defaultdict(float)
    _wrap(table, gram, "build", "build (calling thread)")
    _wrap(table, sources.ReducedSource, "block", "build: data drawn")
    _wrap(table, gram_cpu, "step_run", "dense steps")
    _wrap(table, ops_numba.NumbaOps, "evaluation", "evaluations from C (product)")
    _wrap(table, linear_regime.LinearRegime, "_enter", "regime: entry")
    _wrap(table, linear_regime.LinearRegime, "_refresh_d", "regime: D refreshed")
    _wrap(table, gram.GramEngine, "_metrics", "metrics (calling thread)")
    _wrap(table, driver._History, "record", "recording (calling thread)")
    init = linear_regime.LinearRegime.__init__

    def timed_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.kernels = _Kernels(self.kernels, table)

    linear_regime.LinearRegime.__init__ = timed_init
    fg.run(cfg.replace(runs=1, steps=2), progress=False, n_threads=threads)
    best = None
    for _ in range(rounds):
        table.clear()
        t0 = time.perf_counter()
        fg.run(cfg, progress=False, n_threads=threads)
        wall = time.perf_counter() - t0
        if best is None or wall < best[0]:
            best = (wall, dict(table))
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
    wall, table = phases(fg.preset(args.preset, **over), args.threads, args.rounds)
    print(f"{args.preset} {over} on {args.threads} thread(s): {wall:.2f} s wall "
          f"({wall * args.threads:.2f} thread-s)")
    print("| phase | s | share of wall x threads |")
    print("|---|---|---|")
    for name, sec in sorted(table.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {sec:.2f} | {sec / (wall * args.threads):.0%} |")


if __name__ == "__main__":
    main()
