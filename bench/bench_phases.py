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


def _wrap(table, obj, name, label):
    fn = getattr(obj, name)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            table[label] += time.perf_counter() - t0

    setattr(obj, name, timed)


class _Kernels:
    """The regime's kernels module, each kernel call timed."""

    def __init__(self, module, table):
        self._module, self._table = module, table

    def __getattr__(self, name):
        fn = getattr(self._module, name)
        if name not in ("linear_steps", "linear_blocks", "write_c"):
            return fn

        def timed(*args):
            t0 = time.perf_counter()
            out = fn(*args)
            self._table[f"kernel {name}"] += time.perf_counter() - t0
            return out

        return timed


def phases(cfg, threads, rounds):
    import fastgrok as fg
    from fastgrok import driver, sources
    from fastgrok.engines import gram, linear_regime, ops_numba
    from fastgrok.kernels import gram_cpu

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


def main(argv=None):
    import fastgrok as fg

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper-fig1-left")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="a Config field, name=value")
    args = ap.parse_args(argv)
    over = {}
    for item in args.set:
        key, value = item.split("=", 1)
        over[key] = type(getattr(fg.preset(args.preset), key))(value)
    wall, table = phases(fg.preset(args.preset, **over), args.threads, args.rounds)
    print(f"{args.preset} {over} on {args.threads} thread(s): {wall:.2f} s wall "
          f"({wall * args.threads:.2f} thread-s)")
    print("| phase | s | share of wall x threads |")
    print("|---|---|---|")
    for name, sec in sorted(table.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {sec:.2f} | {sec / (wall * args.threads):.0%} |")


if __name__ == "__main__":
    main()
