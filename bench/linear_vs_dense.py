"""The paper's right panel with and without the gram method's linear regime, side by side.

    python bench/linear_vs_dense.py [--runs 100] [--steps 5000] [--out DIR]

Runs the preset ``paper-fig1-right`` twice in one process (``tunables.GRAM_LINEAR_REGIME``
True, then False), prints each run's training time, the train and test medians of both at
the evaluated steps nearest to 1, 40, 100, 1000, 2000 and the last, the largest gap between the medians over every
evaluated step, and how many of the (run, step) train and test accuracies differ.
"""
from __future__ import annotations

import argparse
import time


def main(argv=None):
    import numpy as np

    import fastgrok as fg
    from fastgrok import tunables

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--out", default=None, help="also save both results under DIR/linear, DIR/dense")
    args = ap.parse_args(argv)
    cfg = fg.preset("paper-fig1-right", runs=args.runs, steps=args.steps)
    fg.warmup()
    results, seconds = {}, {}
    old = tunables.GRAM_LINEAR_REGIME
    try:
        for name, flag in (("linear", True), ("dense", False)):
            tunables.GRAM_LINEAR_REGIME = flag  # read when the engine is built
            t0 = time.perf_counter()
            results[name] = fg.run(cfg, progress=False)
            seconds[name] = time.perf_counter() - t0
            if args.out:
                results[name].save(f"{args.out}/{name}", figures=False)
    finally:
        tunables.GRAM_LINEAR_REGIME = old
    lin, den = results["linear"], results["dense"]
    print(f"right panel, {args.runs} runs x {args.steps} steps: linear regime {seconds['linear']:.1f} s "
          f"(incremental fraction {lin.info['linear_fraction']:.4f}, "
          f"{lin.info['pattern_changes_per_step']:.0f} pattern changes per step), "
          f"dense {seconds['dense']:.1f} s: {seconds['dense'] / seconds['linear']:.2f}x")
    s_lin, s_den = (r.summary().set_index("step") for r in (lin, den))
    # The evaluated step nearest to each (long runs are evaluated on a log grid).
    steps = s_lin.index.to_numpy()
    marks = sorted({int(steps[np.abs(steps - t).argmin()]) for t in (1, 40, 100, 1000, 2000, args.steps)})
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
