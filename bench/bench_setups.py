"""What each training setup of issue 25 costs on the paper's experiment, side by side in one run.

    python bench/bench_setups.py [--runs 20] [--steps 2000] [--repeats 3]

The preset ``paper-fig1-left`` with m = 100 (the studies' width), trained with the gram method
on the CPU once per setup: the paper's (fixed second layer, full batch, logistic loss), then
each feature alone. Prints the median wall time of the training (``Result.info["wall_s"]``), its
ratio to the paper's setup, the fraction of run-steps the linear regime took, and the final
median test accuracy. Every setup that changes the step's algebra (weight decay, a trained
second layer, minibatches) takes dense steps, which is most of the difference.
"""
from __future__ import annotations

import argparse
import statistics

SETUPS = {
    "paper (fixed a, full batch, logistic)": {},
    "loss=square": {"loss": "square"},
    "label_noise=exact": {"label_noise": "exact"},
    "weight_decay=1e9 (lr lambda = 1e-3)": {"weight_decay": 1e9},
    "train_second_layer": {"train_second_layer": True},
    "batch_size=50": {"batch_size": 50},
    "stable_rank (6 snapshots)": {"stable_rank": True},
}


def main(argv=None):
    import fastgrok as fg

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    base = fg.preset("paper-fig1-left", m=100, runs=args.runs, steps=args.steps,
                     method="gram", backend="numba")
    fg.run(base.replace(runs=1, steps=5), progress=False)  # compile and warm
    times = {name: [] for name in SETUPS}
    last = {}
    for _ in range(args.repeats):  # interleaved, so that drifts of the machine hit all alike
        for name, setup in SETUPS.items():
            res = fg.run(base.replace(**setup), progress=False)
            times[name].append(res.info["wall_s"])
            last[name] = res
    ref = statistics.median(times["paper (fixed a, full batch, logistic)"])
    print(f"paper-fig1-left, m={base.m}, {base.runs} runs x {base.steps} steps, gram/numba, "
          f"median of {args.repeats}")
    print(f"{'setup':40s} {'wall s':>8s} {'ratio':>7s} {'linear':>7s} {'test acc':>9s}")
    for name, ts in times.items():
        res = last[name]
        h = res.history
        acc = h[h.step == h.step.max()].test_acc.median()
        lin = res.info.get("linear_fraction", 0.0)
        print(f"{name:40s} {statistics.median(ts):8.2f} {statistics.median(ts) / ref:7.1f} "
              f"{lin:7.2f} {acc:9.3f}")


if __name__ == "__main__":
    main()
