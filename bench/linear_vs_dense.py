"""The gram method's incremental regimes against dense steps, side by side in one process.

    python bench/linear_vs_dense.py [--runs 100] [--steps 5000] [--threads N] [--out DIR]
    python bench/linear_vs_dense.py --near [--runs 20] [--steps 20000]

Default: the preset ``paper-fig1-right`` with the linear regime (``tunables.GRAM_LINEAR_REGIME``
True), then dense steps only (False). ``--near``: the left panel's step size past the frozen
weights (``paper-fig1-left`` with m = 100, 20 runs x 20 000 steps by default) with the
near-linear regime (``tunables.GRAM_NEAR_LINEAR``) on, then off (dense steps once the weights
move). Prints each run's training time, the train and test medians of both at the evaluated
steps nearest to 1, 40, 100, 1000, 2000 and the last, the largest gap between the medians over
every evaluated step, and how many of the (run, step) train and test accuracies differ.
``--threads``: the threads of both runs (default: every CPU of the process).
"""
from __future__ import annotations

import argparse
import time


def main(argv=None):
    import numpy as np

    import fastgrok as fg
    from fastgrok import tunables

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--near", action="store_true", help="the near-linear regime (see above)")
    ap.add_argument("--runs", type=int, default=None, help="default 100 (20 with --near)")
    ap.add_argument("--steps", type=int, default=None, help="default 5000 (20000 with --near)")
    ap.add_argument("--threads", type=int, default=None, help="n_threads of both runs")
    ap.add_argument("--out", default=None, help="also save both results under DIR/linear, DIR/dense")
    args = ap.parse_args(argv)
    if args.near:
        runs, steps = args.runs or 20, args.steps or 20_000
        cfg = fg.preset("paper-fig1-left", m=100, runs=runs, steps=steps, snapshot_steps=())
        switch, what = "GRAM_NEAR_LINEAR", "left panel's step size, m = 100"
    else:
        runs, steps = args.runs or 100, args.steps or 5000
        cfg = fg.preset("paper-fig1-right", runs=runs, steps=steps)
        switch, what = "GRAM_LINEAR_REGIME", "right panel"
    fg.warmup()
    results, seconds = {}, {}
    old = getattr(tunables, switch)
    try:
        for name, flag in (("linear", True), ("dense", False)):
            setattr(tunables, switch, flag)  # read when the engine is built
            t0 = time.perf_counter()
            results[name] = fg.run(cfg, progress=False, n_threads=args.threads)
            seconds[name] = time.perf_counter() - t0
            if args.out:
                results[name].save(f"{args.out}/{name}", figures=False)
    finally:
        setattr(tunables, switch, old)
    lin, den = results["linear"], results["dense"]
    fraction = lin.info["near_linear_fraction" if args.near else "linear_fraction"]
    print(f"{what}, {runs} runs x {steps} steps, {args.threads or 'all'} thread(s): "
          f"{'near-linear' if args.near else 'linear'} regime "
          f"{seconds['linear']:.1f} s (its fraction of the run-steps {fraction:.4f}, "
          f"{lin.info['pattern_changes_per_step']:.0f} pattern changes per step), "
          f"without it {seconds['dense']:.1f} s: {seconds['dense'] / seconds['linear']:.2f}x")
    s_lin, s_den = (r.summary().set_index("step") for r in (lin, den))
    # The evaluated step nearest to each (long runs are evaluated on a log grid).
    evaluated = s_lin.index.to_numpy()
    marks = sorted({int(evaluated[np.abs(evaluated - t).argmin()]) for t in (1, 40, 100, 1000, 2000, cfg.steps)})
    print(f"{'step':>6} {'train (linear)':>15} {'train (dense)':>14} {'test (linear)':>14} "
          f"{'test (dense)':>13}")
    for t in marks:
        print(f"{t:>6} {s_lin.loc[t, 'train_acc_median']:>15.4f} {s_den.loc[t, 'train_acc_median']:>14.4f} "
              f"{s_lin.loc[t, 'test_acc_median']:>14.4f} {s_den.loc[t, 'test_acc_median']:>13.4f}")
    for key in ("train_acc", "test_acc"):
        gap = np.nanmax(np.abs(s_lin[f"{key}_median"] - s_den[f"{key}_median"]))
        differ = int((lin.history[key] != den.history[key]).sum())
        print(f"{key}: largest median gap over the {len(s_lin)} evaluated steps {gap:.4f}; "
              f"{differ} of {len(lin.history)} (run, step) accuracies differ")


if __name__ == "__main__":
    main()
