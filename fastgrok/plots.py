"""Figures in the style of the paper (Figure 1 and Figures 3/4). Matplotlib is imported lazily."""
from __future__ import annotations

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(summary, ax, label_suffix=""):
    """Median train (dashed) and test (solid) accuracy with 20-80% bands against t + 1 (log x)."""
    x = summary["step"].to_numpy() + 1
    for metric, style, color in (("train_acc", "--", "C1"), ("test_acc", "-", "C0")):
        med = summary[f"{metric}_median"].to_numpy()
        if np.all(np.isnan(med)):
            continue
        ax.plot(x, med, style, color=color, label=f"{metric.split('_')[0]}{label_suffix}")
        ax.fill_between(x, summary[f"{metric}_q20"], summary[f"{metric}_q80"], color=color, alpha=0.2,
                        linewidth=0)
    ax.axhline(0.5, linestyle=":", color="gray", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("steps (t + 1)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.3, 1.02)
    ax.legend(loc="lower right")


def accuracy_figure(summary, path, title=""):
    """Write the Figure-1-style accuracy plot to ``path``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    plot_accuracy(summary, ax)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def histogram_figure(projections, path, title=""):
    """Write Figures 3/4: <w_j, mu1> and <w_j, mu2> over positive neurons, pooled over runs."""
    plt = _pyplot()
    steps = projections["steps"]
    pos = projections["a"] > 0  # (R, m)
    # Shared x per column: the narrow mu2 projections are then visibly narrow next to mu1.
    fig, axes = plt.subplots(2, len(steps), figsize=(2.6 * len(steps), 4.4), squeeze=False, sharex="col")
    for col, t in enumerate(steps):
        for row, key in enumerate(("P1", "P2")):
            ax = axes[row, col]
            vals = projections[key][:, col, :][pos]
            ax.hist(vals, bins=40, color="C0" if row == 0 else "C3")
            ax.set_title(f"t = {t}", fontsize=9)
            ax.set_xlabel(f"<w_j, mu{row + 1}>", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
    fig.suptitle(f"positive neurons; {title}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sweep_figures(points, names, out_dir) -> list:
    """Figures of a sweep's per-point summary: line plots over one grid axis, heatmaps over two.

    Returns the paths written (none for three or more grid axes).
    """
    import os

    plt = _pyplot()
    paths = []
    metrics = (("final_test_acc_median", "final test accuracy (median)"),
               ("grok_step_median", "grokking step (median; blank: never)"))
    if len(names) == 1:
        (x,) = names
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for ax, (col, label) in zip(axes, metrics):
            d = points.sort_values(x)
            ax.plot(d[x], d[col].astype(float), "o-")
            ax.set_xlabel(x)
            ax.set_ylabel(label)
            if col.startswith("grok"):
                ax.set_yscale("log")
        fig.tight_layout()
        paths.append(os.path.join(out_dir, "fig_sweep.png"))
    elif len(names) == 2:
        y, x = names
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, (col, label) in zip(axes, metrics):
            grid = points.pivot_table(index=y, columns=x, values=col, aggfunc="first", dropna=False)
            im = ax.imshow(grid.to_numpy(dtype=float), origin="lower", aspect="auto")
            ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns], rotation=45)
            ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
            ax.set_xlabel(x)
            ax.set_ylabel(y)
            ax.set_title(label, fontsize=9)
            fig.colorbar(im, ax=ax)
        fig.tight_layout()
        paths.append(os.path.join(out_dir, "fig_sweep.png"))
    else:
        return paths
    fig.savefig(paths[0] + ".tmp.png", dpi=110)
    plt.close(fig)
    os.replace(paths[0] + ".tmp.png", paths[0])
    return paths
