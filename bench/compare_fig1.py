"""Right-panel histories against the paper's plotted Figure 1 (right) medians.

    fastgrok run --preset paper-fig1-right --out stated --no-figures
    fastgrok run --preset paper-fig1-right-plotted --out plotted --no-figures
    python bench/compare_fig1.py stated/history.csv plotted/history.csv

For each history: the median over runs at each of the paper's read-off steps (interpolated in
log(t + 1) between evaluated steps), its bootstrap standard error, and the largest and mean gap
to the paper's medians.
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

#: The paper's Figure 1 (right) medians, read off its vector figure (t is the step).
PAPER = {"train_acc": {1: .520, 5: .640, 9: .755, 17: .900, 24: .960, 29: .985, 39: 1.0},
         "test_acc": {105: .563, 316: .585, 495: .625, 686: .70, 1000: .774, 1556: .90,
                      1827: .95, 2101: .975, 2396: .995, 2950: 1.0}}


def median_at(history, col, t, rng, boot=400):
    """(median over runs of ``col`` at step t, bootstrap standard error of that median)."""
    piv = history.pivot(index="run", columns="step", values=col)
    steps = piv.columns.to_numpy()
    lo, hi = steps[steps <= t].max(), steps[steps >= t].min()
    if lo == hi:
        v = piv[lo].to_numpy()
    else:
        w = (np.log(t + 1) - np.log(lo + 1)) / (np.log(hi + 1) - np.log(lo + 1))
        v = (1 - w) * piv[lo].to_numpy() + w * piv[hi].to_numpy()
    boots = [np.median(rng.choice(v, v.size)) for _ in range(boot)]
    return float(np.median(v)), float(np.std(boots))


def compare(path):
    h = pd.read_csv(path)
    rng = np.random.default_rng(0)
    rows = []
    for col, points in PAPER.items():
        for t, paper in points.items():
            med, se = median_at(h, col, t, rng)
            rows.append((col, t, paper, med, se, abs(med - paper)))
    return pd.DataFrame(rows, columns=["metric", "t", "paper", "median", "se", "gap"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("histories", nargs="+", help="history.csv files of right-panel runs")
    args = ap.parse_args(argv)
    for path in args.histories:
        d = compare(path)
        worst = d.loc[d.gap.idxmax()]
        print(f"{path}: largest gap {worst.gap:.3f} ({worst.metric}, t = {worst.t}: "
              f"{worst['median']:.3f} vs {worst.paper:.3f}), mean gap {d.gap.mean():.3f}, "
              f"bootstrap se of the medians {d.se.median():.3f} (median), {d.se.max():.3f} (max)")


if __name__ == "__main__":
    main()
