"""fastgrok's Figure 1 against the paper's own medians: tables, gaps and overlay figures.

    fastgrok run --out left                                   # the left panel
    fastgrok run --preset paper-fig1-right --out stated       # the right panel as stated
    fastgrok run --preset paper-fig1-right-plotted --out plotted
    python bench/compare_fig1.py left:left/history.csv right:stated/history.csv \\
        right:plotted/history.csv [--figure-dir docs/reproduction] [--markdown]

Each argument is PANEL:PATH (PANEL left or right, PATH a run's history.csv); an optional
third field names it in the output (right:plotted/history.csv:2alpha). For each: the median over
runs at each of the paper's read-off steps (per run interpolated in log(t + 1) between evaluated
steps), a 95% bootstrap interval of that median (1000 resamples of the runs), and the largest
and mean gap to the paper's medians. ``--figure-dir`` draws, per history, fastgrok's median and
20-80% band with the paper's medians on top; ``--markdown`` prints the tables as markdown.
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd

#: The paper's Figure 1 medians, read off its vector figure (t is the step; the figure plots
#: t + 1). "1.000 from t = T" is entered as the value at T and at the last step.
PAPER = {
    "left": {"train_acc": {1: 1.0, 10: 1.0, 50: 1.0},
             "test_acc": {0: .495, 1: .505, 2: .820, 4: .915, 5: .960, 7: .990, 10: 1.0,
                          50: 1.0}},
    "right": {"train_acc": {1: .520, 5: .640, 9: .755, 17: .900, 24: .960, 29: .985, 39: 1.0,
                            5000: 1.0},
              "test_acc": {105: .563, 316: .585, 495: .625, 686: .70, 1000: .774, 1556: .90,
                           1827: .95, 2101: .975, 2396: .995, 2950: 1.0, 5000: 1.0}},
}


def _values_at(piv, t):
    """Each run's value at step t (interpolated in log(t + 1) between evaluated steps)."""
    steps = piv.columns.to_numpy()
    lo, hi = steps[steps <= t].max(), steps[steps >= t].min()
    if lo == hi:
        return piv[lo].to_numpy()
    w = (np.log(t + 1) - np.log(lo + 1)) / (np.log(hi + 1) - np.log(lo + 1))
    return (1 - w) * piv[lo].to_numpy() + w * piv[hi].to_numpy()


def compare(history, panel, boot=1000, seed=0):
    """One row per read-off point: metric, t, paper, median, ci_lo, ci_hi, gap."""
    rng = np.random.default_rng(seed)
    rows = []
    for col, points in PAPER[panel].items():
        piv = history.pivot(index="run", columns="step", values=col)
        for t, paper in points.items():
            if t > piv.columns.max():
                continue
            v = _values_at(piv, t)
            meds = np.median(rng.choice(v, (boot, v.size)), axis=1)
            lo, hi = np.percentile(meds, [2.5, 97.5])
            med = float(np.median(v))
            rows.append((col, t, paper, med, float(lo), float(hi), abs(med - paper)))
    return pd.DataFrame(rows, columns=["metric", "t", "paper", "median", "ci_lo", "ci_hi", "gap"])


def overlay(history, panel, path, title):
    """fastgrok's median and 20-80% band (train dashed, test solid) with the paper's medians."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastgrok.plots import plot_accuracy
    from fastgrok.results import summarize

    fig, ax = plt.subplots(figsize=(5.5, 4))
    plot_accuracy(summarize(history), ax, label_suffix=" (fastgrok)")
    for col, marker, color in (("train_acc", "s", "C1"), ("test_acc", "o", "C0")):
        pts = PAPER[panel][col]
        ax.plot(np.array(list(pts)) + 1, list(pts.values()), marker, color="k",
                markerfacecolor=color, markersize=5, linestyle="none",
                label=f"{col.split('_')[0]} median (paper)")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("histories", nargs="+", help="PANEL:PATH[:NAME], PANEL left or right")
    ap.add_argument("--figure-dir", default=None, help="write fig1_<panel>_<name>.png here")
    ap.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    args = ap.parse_args(argv)
    for spec in args.histories:
        panel, path, *name = spec.split(":")
        if panel not in PAPER:
            ap.error(f"{spec!r}: the panel must be 'left' or 'right'")
        name = name[0] if name else os.path.basename(os.path.dirname(os.path.abspath(path)))
        h = pd.read_csv(path)
        d = compare(h, panel)
        worst = d.loc[d.gap.idxmax()]
        print(f"{panel} panel, {name} ({path}, {h.run.nunique()} runs): largest gap "
              f"{worst.gap:.3f} ({worst.metric}, t = {worst.t}: {worst['median']:.3f} vs paper "
              f"{worst.paper:.3f}), mean gap {d.gap.mean():.3f} over {len(d)} points; median "
              f"width of the 95% intervals {(d.ci_hi - d.ci_lo).median():.3f}")
        if args.markdown:
            print("\n| metric | t | paper | fastgrok median [95% interval] | gap |")
            print("| --- | --- | --- | --- | --- |")
            for row in d.itertuples():
                print(f"| {row.metric.split('_')[0]} | {row.t} | {row.paper:.3f} | {row.median:.3f} "
                      f"[{row.ci_lo:.3f}, {row.ci_hi:.3f}] | {row.gap:.3f} |")
            print()
        if args.figure_dir:
            os.makedirs(args.figure_dir, exist_ok=True)
            out = os.path.join(args.figure_dir, f"fig1_{panel}_{name}.png")
            overlay(h, panel, out, f"Figure 1 {panel}: fastgrok ({name}, {h.run.nunique()} runs) "
                                   "and the paper's medians")
            print(f"wrote {out}")


if __name__ == "__main__":
    main()
