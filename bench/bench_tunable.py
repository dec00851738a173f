"""One tunable at two values, side by side in one process: wall times and whether the bits agree.

    python bench/bench_tunable.py NAME A B [--preset paper-fig1-left] [--rounds 10]
                                  [--threads 2] [--set runs=32 ...]

``NAME`` is a name in ``fastgrok.tunables``, ``A`` and ``B`` Python literals (``False``,
``1024``). The preset runs ``--rounds`` times at each value, the two alternating (A B, then B A,
...) so that a noisy spell of a shared machine hits both alike; the kernels are compiled (or
loaded) first. Prints the best and the median wall time of each value, their ratios, and
whether the last history and projections of the two are the same bits.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import time


def main(argv=None):
    import numpy as np

    import fastgrok as fg
    from fastgrok import tunables

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_phases import preset_overrides

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="a name in fastgrok.tunables")
    ap.add_argument("a", help="the first value (a Python literal)")
    ap.add_argument("b", help="the second value")
    ap.add_argument("--preset", default="paper-fig1-left")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="n_threads (default: every CPU)")
    ap.add_argument("--set", action="append", default=[], help="a Config field, name=value")
    args = ap.parse_args(argv)
    if not hasattr(tunables, args.name):
        raise SystemExit(f"fastgrok.tunables has no {args.name!r}")
    values = [ast.literal_eval(args.a), ast.literal_eval(args.b)]
    cfg = fg.preset(args.preset, **preset_overrides(args.preset, args.set))
    fg.warmup()
    fg.run(cfg.replace(runs=2, steps=3), progress=False, n_threads=args.threads)
    old = getattr(tunables, args.name)
    times, last = ([], []), [None, None]
    try:
        for r in range(args.rounds):
            for k in ((0, 1) if r % 2 == 0 else (1, 0)):
                setattr(tunables, args.name, values[k])
                t0 = time.perf_counter()
                last[k] = fg.run(cfg, progress=False, n_threads=args.threads)
                times[k].append(time.perf_counter() - t0)
    finally:
        setattr(tunables, args.name, old)
    best = [min(t) for t in times]
    median = [float(np.median(t)) for t in times]
    print(f"{args.preset} {dict(a.split('=', 1) for a in args.set)}, "
          f"{args.threads or 'all'} thread(s), {args.rounds} rounds each, alternating")
    print("| tunables." + args.name + " | best s | median s |")
    print("|---|---|---|")
    for k in (0, 1):
        print(f"| {values[k]!r} | {best[k]:.3f} | {median[k]:.3f} |")
    print(f"{values[0]!r} / {values[1]!r}: best {best[0] / best[1]:.3f}, "
          f"median {median[0] / median[1]:.3f}")
    h = [res.history.to_numpy(np.float64).tobytes() for res in last]
    p = [b"".join(np.ascontiguousarray(v).tobytes() for _, v in sorted(res.projections.items())
                  if v is not None)
         for res in last]
    print("the same bits (history, projections):", h[0] == h[1], p[0] == p[1])


if __name__ == "__main__":
    main()
