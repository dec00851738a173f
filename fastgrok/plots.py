"""Figures: the paper's (Figure 1, 2 and 3/4 styles), sweeps' and the studies'.

Matplotlib is imported lazily (:func:`_pyplot`), when a figure is drawn.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ._io import save_figure
from .analysis import cnn_boundary_variable, grok_median, per_run, round_sig, summarize
from .config import CLASSIFICATION_LOSSES, Config
from .model import Model


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
        ax.plot(x, med, style, color=color, label=f"{metric.split('_')[0]} median{label_suffix}")
        ax.fill_between(x, summary[f"{metric}_q20"], summary[f"{metric}_q80"], color=color,
                        alpha=0.2,
                        linewidth=0, label=f"{metric.split('_')[0]}: 20-80% of runs")
    ax.axhline(0.5, linestyle=":", color="gray", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("steps (t + 1)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.3, 1.02)
    ax.legend(loc="lower right", fontsize=8)


def accuracy_figure(summary, path, title=""):
    """Write the Figure-1-style accuracy plot to ``path``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    plot_accuracy(summary, ax)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def histogram_figure(projections, path, title=""):
    """Write Figures 3/4: <w_j, mu1> and <w_j, mu2> over positive neurons, pooled over runs."""
    plt = _pyplot()
    steps = projections["steps"]
    pos = projections["a"] > 0  # (R, m)
    # Linear data have no second mean: their P2 is NaN and gets no row.
    keys = ("P1", "P2") if np.isfinite(projections["P2"]).any() else ("P1",)
    # Shared x per column: the narrow mu2 projections are then visibly narrow next to mu1.
    fig, axes = plt.subplots(len(keys), len(steps),
                             figsize=(2.6 * len(steps), 2.2 * len(keys) + 0.4),
                             squeeze=False, sharex="col")
    for col, t in enumerate(steps):
        for row, key in enumerate(keys):
            ax = axes[row, col]
            vals = projections[key][:, col, :][pos]
            finite = np.isfinite(vals)  # a diverged run's projections are not
            if finite.any():
                # One filled step artist per panel (ax.hist draws a patch per bin: 10x slower).
                counts, edges = np.histogram(vals[finite], bins=40)
                ax.stairs(counts, edges, fill=True, color="C0" if row == 0 else "C3")
            if not finite.all():
                ax.text(0.02, 0.95, f"{np.count_nonzero(~finite)} not finite (diverged)",
                        transform=ax.transAxes, fontsize=6, va="top", color="C3")
            ax.set_title(f"t = {t}", fontsize=9)
            ax.set_xlabel(f"<w_j, mu{row + 1}>", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
    fig.suptitle(f"positive neurons; {title}", fontsize=8)
    # Fixed margins: tight_layout lays the 12 panels out by drawing them twice (a third of the
    # figure's time).
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.14, top=0.88, wspace=0.28, hspace=0.55)
    save_figure(fig, path)


def plane_steps(projections) -> list:
    """The steps the plane figure shows.

    The first two and the last of the projection steps (the left panel's 0, 1 and 15: the paper's
    Figure 2).
    """
    steps = [int(t) for t in projections["steps"]]
    return sorted({steps[0], steps[min(1, len(steps) - 1)], steps[-1]})


def plane_sign(P1, P2, a, theta, leak=0.0):
    """Sign f(cos(theta) e1 + sin(theta) e2) of the network, for each direction theta.

    The network has projections P_k = W mu_k (mu1, mu2 of equal norm, e_k = mu_k / ||mu||)
    and activation max(z, leak z).
    """
    u = np.cos(theta)[:, None] * P1[None, :] + np.sin(theta)[:, None] * P2[None, :]
    return np.sign(np.maximum(u, leak * u) @ a)


def plane_figure(projections, path, run=0, title="", leak=0.0):
    """Write Figure 2: one run in the plane of the means, at :func:`plane_steps`.

    Top row: the training data (<x_i, mu1>, <x_i, mu2>), coloured by their (noisy) training
    label, and the network's decision regions on the plane. On a point x = U mu1 + V mu2
    (equal norms), <w_j, x> is proportional to U <w_j, mu1> + V <w_j, mu2>, so f there needs
    only the projections, and f is positively homogeneous: its sign depends on the direction
    alone and is computed exactly on 1440 directions (the regions are wedges from the origin).
    Points whose label differs from their cluster's (the flipped ones, read off the larger
    projection) are crossed. Bottom row: the neurons (<w_j, mu1>, <w_j, mu2>), coloured by the
    sign of a_j (the paper's mechanism: positive neurons along +-mu1, negative along +-mu2).
    """
    plt = _pyplot()
    steps = [int(t) for t in projections["steps"]]
    show = plane_steps(projections)
    X, y, a = projections["X_mu"][run], projections["y"][run], projections["a"][run]
    P1, P2 = projections["P1"][run], projections["P2"][run]
    cluster = np.where(np.abs(X[:, 0]) >= np.abs(X[:, 1]), 1.0, -1.0)  # +-mu1: +1, +-mu2: -1
    flipped = y != cluster
    lim = 1.25 * np.abs(X).max()
    theta = np.linspace(-np.pi, np.pi, 1441)[:-1] + np.pi / 1440
    fig, axes = plt.subplots(2, len(show), figsize=(3.2 * len(show), 6.4), squeeze=False)
    for col, t in enumerate(show):
        k = steps.index(t)
        ax = axes[0, col]
        sign = plane_sign(P1[k], P2[k], a, theta, leak)
        g = np.linspace(-lim, lim, 401)
        U, V = np.meshgrid(g, g)
        idx = np.clip(np.searchsorted(theta, np.arctan2(V, U)), 0, theta.size - 1)
        ax.imshow(sign[idx], extent=(-lim, lim, -lim, lim), origin="lower", cmap="coolwarm_r",
                  vmin=-3, vmax=3, interpolation="nearest")
        for lab, color in ((1.0, "C0"), (-1.0, "C3")):
            sel = y == lab
            ax.scatter(X[sel, 0], X[sel, 1], s=9, color=color, edgecolors="white",
                       linewidths=0.3, label=f"y = {lab:+g}")
        ax.scatter(X[flipped, 0], X[flipped, 1], s=25, color="k", marker="x", linewidths=0.9,
                   label=f"flipped label ({flipped.sum()})")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(f"t = {t}: data, f > 0 (blue) / f < 0 (red)", fontsize=8)
        ax.set_xlabel("<x, mu1>", fontsize=8)
        ax.set_ylabel("<x, mu2>", fontsize=8)
        ax.tick_params(labelsize=7)
        if col == 0:
            ax.legend(fontsize=6, loc="upper right")
        ax = axes[1, col]
        for positive, color in ((True, "C0"), (False, "C3")):
            sel = (a > 0) == positive
            ax.scatter(P1[k][sel], P2[k][sel], s=4, color=color, alpha=0.6,
                       label="a_j > 0" if positive else "a_j < 0")
        r = 1.1 * max(np.abs(P1[k]).max(), np.abs(P2[k]).max())
        ax.set_xlim(-r, r)
        ax.set_ylim(-r, r)
        ax.set_aspect("equal")
        ax.axhline(0, color="gray", linewidth=0.5)
        ax.axvline(0, color="gray", linewidth=0.5)
        ax.set_title(f"t = {t}: neurons", fontsize=8)
        ax.set_xlabel("<w_j, mu1>", fontsize=8)
        ax.set_ylabel("<w_j, mu2>", fontsize=8)
        ax.ticklabel_format(style="sci", scilimits=(-2, 3))
        ax.tick_params(labelsize=7)
        if col == 0:
            ax.legend(fontsize=6, loc="upper right")
    fig.suptitle(f"run {run} in the plane of mu1, mu2; {title}", fontsize=8)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.07, top=0.93, wspace=0.35, hspace=0.3)
    save_figure(fig, path, dpi=110)


def sweep_figures(points, names, out_dir, steps=None, runs=None, threshold=0.9) -> list:
    """Figures of a sweep's per-point summary: line plots over one grid axis, heatmaps over two.

    Accuracy axes and colour scales span chance (0.5) to 1 whatever the data; grokking steps
    span 1 to ``steps`` on a log scale, and a point whose median run never groks is drawn as
    "never" (an x above the axis's top, or a grey cell), never dropped. Heatmap cells carry
    their values. Returns the paths written (none for three or more grid axes).
    """
    import os

    from matplotlib.colors import LogNorm

    plt = _pyplot()
    if len(names) not in (1, 2):
        return []
    title = ", ".join(t for t in (f"{runs} runs" if runs else "", f"{steps} steps" if steps else "",
                                  f"grokked: test accuracy >= {threshold:g}") if t)
    acc = points["final_test_acc_median"].to_numpy(dtype=float)
    grok = points["grok_step_median"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    top = float(steps) if steps else float(np.nanmax(grok, initial=10.0))
    diverged = (points["runs_diverged"].to_numpy(dtype=int) if "runs_diverged" in points
                else np.zeros(len(points), dtype=int))
    if len(names) == 1:
        (x,) = names
        order = np.argsort(points[x].to_numpy())
        xs = points[x].to_numpy()[order]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.5, 3.8))
        a1.plot(xs, acc[order], "o-")
        for xv, av, k in zip(xs, acc[order], diverged[order], strict=True):
            if k:
                a1.annotate(f"{k} diverged", (xv, av if np.isfinite(av) else 0.45), fontsize=7,
                            color="C3", textcoords="offset points", xytext=(0, 6), ha="center")
        a1.axhline(0.5, linestyle=":", color="gray", linewidth=1)
        a1.set_ylim(0.4, 1.02)
        a1.set_ylabel("final test accuracy (median over runs)")
        g = grok[order]
        ok = np.isfinite(g)
        a2.plot(xs[ok], np.maximum(g[ok], 1), "o-", color="C1")
        if (~ok).any():
            a2.plot(xs[~ok], np.full((~ok).sum(), top * 2), "x", color="C1", ms=8,
                    label="median run never groks")
            a2.legend(loc="lower right", fontsize=8)
        a2.set_yscale("log")
        a2.set_ylim(0.8, top * 3)
        a2.axhline(top, color="gray", linestyle=":", linewidth=1)
        a2.set_ylabel("grokking step (median over runs)")
        for ax in (a1, a2):
            ax.set_xlabel(x)
            if np.all(xs > 0) and xs.max() / xs.min() > 50:
                ax.set_xscale("log")
    else:
        y, x = names
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
        for ax, col, label in ((axes[0], "final_test_acc_median", "final test accuracy (median)"),
                               (axes[1], "grok_step_median", "grokking step (median)")):
            data = points.assign(**{col: acc if col.startswith("final") else grok,
                                    "_diverged": diverged})
            grid = data.pivot_table(index=y, columns=x, values=col, aggfunc="first", dropna=False)
            vals = grid.to_numpy(dtype=float)
            div = data.pivot_table(index=y, columns=x, values="_diverged", aggfunc="first",
                                   dropna=False).reindex_like(grid).to_numpy(dtype=float)
            if col.startswith("final"):
                im = ax.imshow(vals, origin="lower", aspect="auto", vmin=0.5, vmax=1.0,
                               cmap="viridis")
                texts = [[f"{v:.2f}" if np.isfinite(v) else "" for v in row] for row in vals]
                dark = vals < 0.8  # the dark end of viridis: white text there
            else:
                ax.set_facecolor("0.8")  # NaN cells (never grokked) show the background
                shown = np.where(np.isfinite(vals), np.maximum(vals, 1), np.nan)
                im = ax.imshow(shown, origin="lower", aspect="auto", cmap="magma_r",
                               norm=LogNorm(vmin=1, vmax=max(top, 2)))
                texts = [[f"{v:.0f}" if np.isfinite(v) else "never" for v in row] for row in vals]
                with np.errstate(invalid="ignore", divide="ignore"):
                    dark = np.log(np.maximum(vals, 1)) > 0.5 * np.log(max(top, 2))
            for i, row in enumerate(texts):
                for j, text in enumerate(row):
                    if div[i, j] > 0:  # NaN: no point there
                        text += f"\n{div[i, j]:.0f} div."
                    ax.text(j, i, text, ha="center", va="center", fontsize=7,
                            color="w" if dark[i, j] else "k")
            ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns], rotation=45)
            ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
            ax.set_xlabel(x)
            ax.set_ylabel(y)
            ax.set_title(label, fontsize=9)
            fig.colorbar(im, ax=ax)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = os.path.join(out_dir, "fig_sweep.png")
    save_figure(fig, path)
    return [path]


# ------------------------------------------------------------------ the studies' figures


def _band(ax, x, runs: pd.DataFrame, by, col, label, color, style="-o"):
    """Median over runs of ``col`` against ``x`` with the 20-80% band."""
    g = runs.groupby(by, sort=True)[col]
    med, lo, hi = g.median(), g.quantile(0.2), g.quantile(0.8)
    ax.plot(x(med.index.to_numpy()), med.to_numpy(), style, color=color, label=label, ms=4)
    ax.fill_between(x(med.index.to_numpy()), lo.to_numpy(), hi.to_numpy(), color=color, alpha=0.2,
                    linewidth=0)


def _grok_plot(ax, x, med: pd.Series, label, color, steps):
    """Median grokking step (log y); points whose median run never groks as 'x' at the top."""
    xs, ys = x(med.index.to_numpy()), med.to_numpy()
    ok = np.isfinite(ys)
    ax.plot(xs[ok], np.maximum(ys[ok], 0.8), "-o", color=color, label=label, ms=4)
    if (~ok).any():
        ax.plot(xs[~ok], np.full((~ok).sum(), steps * 2.0), "x", color=color, ms=7)
    ax.set_yscale("log")
    ax.axhline(steps, color="gray", linestyle=":", linewidth=1)
    ax.set_ylabel(f"grokking step (median; x: never in {steps:g})")


def _save_study(fig, path, title):
    """Title ``fig``, write it atomically and close it.

    Plain tick labels on log axes (no 2x10^0 minor labels).
    """
    from matplotlib.ticker import NullFormatter

    fig.suptitle(title, fontsize=9)
    for ax in fig.axes:
        ax.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    save_figure(fig, path)
    _pyplot().close(fig)


def _accuracy_axis(ax, steps=None, chance=False):
    """The y axis of a study's accuracy panel, in [0.3, 1.02].

    Labelled the test accuracy at step ``steps`` (any accuracy without it), with the chance
    level dotted if ``chance``.
    """
    what = f"test accuracy at step {steps}" if steps is not None else "accuracy"
    ax.set_ylabel(f"{what} (median, 20-80%)")
    if chance:
        ax.axhline(0.5, color="gray", linestyle=":", linewidth=1)
    ax.set_ylim(0.3, 1.02)


def _long_study_figure(res, base: Config, path):

    plt = _pyplot()
    s = summarize(res.table, by=["lr"])
    lrs = sorted(s.lr.unique(), key=lambda v: (v != 1e-12, v != 1e-16, v))
    fig, axes = plt.subplots(3, len(lrs), figsize=(5 * len(lrs), 10), squeeze=False, sharex=True)
    for col, lr in enumerate(lrs):
        d = s[s.lr == lr]
        x = d.step.to_numpy() + 1
        ax = axes[0, col]
        plot_accuracy(d, ax)
        ax.axvline(math.sqrt(base.n) + 1, color="k", linestyle="--", linewidth=0.8)
        ax.text(math.sqrt(base.n) + 1, 0.32, " sqrt(n): theory ends", fontsize=7)
        ax.set_title(f"lr = {lr:g}, init = {base.init_scale:g}", fontsize=9)
        ax.set_xlabel("")
        ax = axes[1, col]
        # While the outputs are tiny the loss differs from log 2 in the 6th digit: then show
        # how far it has come down from log 2 instead of the loss itself.
        near = d["train_loss_median"].min() > 0.99 * math.log(2)
        for key, color, style in (("train_loss", "C1", "--"), ("test_loss", "C0", "-")):
            v = d[f"{key}_median"].to_numpy()
            ax.plot(x, math.log(2) - v if near else v, style, color=color,
                    label=key.replace("_", " "))
        ax.set_yscale("log")
        ax.set_ylabel("log 2 - loss (median)" if near else "loss (median)")
        ax.legend(fontsize=7)
        ax = axes[2, col]
        for key, color, style in (("pos_mu1", "C0", "-"), ("pos_mu2", "C0", ":"),
                                  ("neg_mu2", "C3", "-"), ("neg_mu1", "C3", ":")):
            ax.plot(x, d[f"{key}_median"], style, color=color, label=key.replace("_", " neurons, "))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("steps (t + 1)")
        ax.set_ylabel("mean |<w_j, mu_k>| / ||mu|| (median)")
        ax.legend(fontsize=7)
    _save_study(fig, path,
                f"long training: n={base.n} p={base.p} m={base.m}, {base.runs} runs")


def _dimension_study_figure(res, base: Config, path):
    plt = _pyplot()
    runs = per_run(res.table, ["p"], res.threshold)
    def x(p):
        return p / base.n
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    _band(ax, x, runs, "p", "final_train", f"train, step {base.steps}", "C1", "--o")
    _band(ax, x, runs, "p", "final_test", f"test, step {base.steps}", "C0")
    _band(ax, x, runs, "p", "test_at_1", "test, step 1", "C2")
    ax.set_xscale("log")
    ax.set_xlabel("p / n")
    _accuracy_axis(ax, chance=True)
    ax.legend(fontsize=8)
    ax = axes[1]
    _grok_plot(ax, x, grok_median(runs, "p"), f"test acc >= {res.threshold}", "C0", base.steps)
    ax.set_xscale("log")
    ax.set_xlabel("p / n")
    _save_study(fig, path, f"dimension: ||mu|| = 2.5 sqrt(p/n), n={base.n} m={base.m} "
                           f"lr={base.lr:g} init={base.init_scale:g}, {base.runs} runs per point")


def _snr_study_figure(res, base: Config, path):
    plt = _pyplot()
    runs = per_run(res.table, ["p", "mu_norm"], res.threshold)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, (p, d) in enumerate(runs.groupby("p", sort=True)):
        color = f"C{i}"
        _band(axes[0], lambda v: v, d, "mu_norm", "final_test", f"p = {p:g}", color)
        axes[0].axvline(2.5 * math.sqrt(p / base.n), color=color, linestyle="--", linewidth=0.8)
        # The theory's test error bound is exp(-Omega(n ||mu||^4 / p)): if that is the right
        # scale, the curves for different p coincide against this variable.
        _band(axes[1], lambda v, p=p: base.n * v ** 4 / p, d, "mu_norm", "final_test", f"p = {p:g}",
              color)
    labels = ("||mu||  (dashed: the paper's 2.5 sqrt(p/n))", "n ||mu||^4 / p")
    for ax, label in zip(axes, labels, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel(label)
        _accuracy_axis(ax, base.steps, chance=True)
        ax.legend(fontsize=8)
    _save_study(fig, path, f"SNR threshold: n={base.n} m={base.m} lr={base.lr:g} "
                           f"init={base.init_scale:g}, {base.runs} runs per point")


def _runs_by_ratio(res, field, lr=None):
    """One row per (point, run) of a sweep over ``field`` and init_scale, with a "ratio" column.

    The ratio is omega_init / alpha, with alpha ``lr`` (None: each point's own lr).
    """
    runs = per_run(res.table, [field, "init_scale"], res.threshold)
    runs["ratio"] = (runs.init_scale / (runs.lr if lr is None else lr)).map(round_sig)
    return runs


def _init_study_figure(res, base: Config, path):
    plt = _pyplot()
    runs = _runs_by_ratio(res, "lr")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, (lr, d) in enumerate(runs.groupby("lr", sort=True)):
        color = f"C{i}"
        _grok_plot(axes[0], lambda v: v, grok_median(d, "ratio"), f"lr = {lr:g}", color,
                   base.steps)
        _band(axes[1], lambda v: v, d, "ratio", "final_test", f"lr = {lr:g}", color)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("init_scale / lr  (omega_init / alpha)")
        for r, name in ((1e-3, "Fig. 1 left"), (10.0, "Fig. 1 right")):
            ax.axvline(r, color="gray", linestyle="--", linewidth=0.8)
            ax.text(r, 0.98, " " + name, fontsize=7, transform=ax.get_xaxis_transform(), va="top")
        ax.legend(fontsize=8, loc="center left")
    _accuracy_axis(axes[1], base.steps)
    _save_study(fig, path, f"initialization vs step size: n={base.n} p={base.p} m={base.m}, "
                           f"{base.runs} runs per point")


def _loss_study_figure(res, base: Config, path):
    plt = _pyplot()
    runs = _runs_by_ratio(res, "loss", base.lr)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for i, loss in enumerate(CLASSIFICATION_LOSSES):
        d = runs[runs.loss == loss]
        if d.empty:
            continue
        g0 = Model(loss=loss).g0
        style = ("-o", "--s", ":^")[i]
        med = grok_median(d, "ratio")
        _grok_plot(axes[0], lambda v: v, med, f"{loss} (-l'(0) = {g0:g})", f"C{i}", base.steps)
        _band(axes[1], lambda v: v, d, "ratio", "final_test", loss, f"C{i}", style)
        # While the outputs are tiny the dynamics see alpha only through alpha (-l'(0)):
        # against omega_init / (alpha (-l'(0))) the losses should fall on one curve.
        _grok_plot(axes[2], lambda v, g0=g0: v / g0, med, loss, f"C{i}", base.steps)
    axes[0].set_xlabel("init_scale / lr  (omega_init / alpha)")
    axes[1].set_xlabel("init_scale / lr  (omega_init / alpha)")
    _accuracy_axis(axes[1], base.steps)
    axes[2].set_xlabel("omega_init / (alpha (-l'(0)))")
    for ax in axes:
        ax.set_xscale("log")
        ax.legend(fontsize=8, loc="center left")
    _save_study(fig, path, f"loss: logistic, exponential and hinge; n={base.n} p={base.p} "
                           f"m={base.m} lr={base.lr:g}, {base.runs} runs per point")


def _log_x(axes, label):
    """A log x axis with ``label`` and a legend on each of ``axes``."""
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.legend(fontsize=8, loc="best")


def _second_study_figure(res, base: Config, path):
    plt = _pyplot()
    table = res.table
    runs = _runs_by_ratio(res, "train_second_layer", base.lr)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for i, (trained, d) in enumerate(runs.groupby("train_second_layer", sort=True)):
        label = "a trained (lr_second = lr)" if trained else "a fixed (the paper)"
        style = "--s" if trained else "-o"
        _grok_plot(axes[0], lambda v: v, grok_median(d, "ratio"), label, f"C{i}", base.steps)
        _band(axes[1], lambda v: v, d, "ratio", "final_test", label, f"C{i}", style)
    if "second_layer_change" in table:
        last = table[(table.step == table.step.max()) & table.train_second_layer.astype(bool)]
        # A change of exactly 0 (a's increments below float64's resolution) drawn at 1e-20.
        moved = last.assign(ratio=(last.init_scale / base.lr).map(round_sig),
                            second_layer_change=last.second_layer_change.clip(lower=1e-20))
        _band(axes[2], lambda v: v, moved, "ratio", "second_layer_change", "||a - a0|| / ||a0||",
              "C1", "--s")
        axes[2].set_yscale("log")
        axes[2].set_ylabel(f"a's change at step {base.steps} (median; 1e-20: none)")
    _log_x(axes, "init_scale / lr  (omega_init / alpha)")
    _accuracy_axis(axes[1], base.steps)
    _save_study(fig, path, f"second layer fixed or trained: n={base.n} p={base.p} m={base.m} "
                           f"lr={base.lr:g}, {base.runs} runs per point (paired)")


def _decay_study_figure(res, base: Config, path):
    plt = _pyplot()
    runs = _runs_by_ratio(res, "weight_decay", base.lr)
    runs["rate"] = (runs.weight_decay * base.lr).map(round_sig)
    # alpha lambda = 0 on a log axis: drawn at a tenth of the smallest rate, marked below.
    floor = runs.rate[runs.rate > 0].min() / 10 if (runs.rate > 0).any() else 1.0

    def x(v):
        return np.where(v > 0, v, floor)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, (ratio, d) in enumerate(runs.groupby("ratio", sort=True)):
        label = f"init / lr = {ratio:g}"
        _grok_plot(axes[0], x, grok_median(d, "rate"), label, f"C{i}", base.steps)
        _band(axes[1], x, d, "rate", "final_test", label, f"C{i}")
    _log_x(axes, f"lr * weight_decay  (alpha lambda; {floor:g} stands for 0)")
    _accuracy_axis(axes[1], base.steps)
    _save_study(fig, path, f"weight decay: n={base.n} p={base.p} m={base.m} lr={base.lr:g}, "
                           f"{base.runs} runs per point (paired)")


def _geometric_edges(values):
    v = np.log(np.asarray(sorted(values), np.float64))
    mid = (v[1:] + v[:-1]) / 2
    return np.exp(np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]]))


def _cnn_study_figure(res, base: Config, path):
    plt = _pyplot()
    runs = per_run(res.table, ["n", "mu_norm"], res.threshold)
    scale = base.sigma_p * math.sqrt(base.p)
    runs["snr"] = (runs.mu_norm / scale).map(round_sig)
    runs["theory"] = cnn_boundary_variable(runs.n, runs.mu_norm, base.sigma_p, base.p,
                                           base.activation, base.power)
    err = 1.0 - runs.groupby(["n", "snr"])["final_test"].median().unstack("snr")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    mesh = ax.pcolormesh(_geometric_edges(err.columns), _geometric_edges(err.index), err.values,
                         cmap="viridis", vmin=0.0, vmax=0.5, shading="flat")
    for i, n in enumerate(err.index):
        for j, snr in enumerate(err.columns):
            v = err.values[i, j]
            ax.text(snr, n, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v > 0.25 else "black")
    ax.set_xscale("log")
    ax.set_yscale("log")
    # The theory's boundary: its variable = 1 (and 10), the order-one constants of its bounds.
    snr_line = np.geomspace(err.columns.min() / 1.5, err.columns.max() * 1.5, 200)
    relu_power = base.activation == "relu_power"
    for c, style in ((1.0, "-"), (10.0, "--")):
        n_line = c / cnn_boundary_variable(1.0, snr_line * scale, base.sigma_p, base.p,
                                           base.activation, base.power)
        ax.plot(snr_line, n_line, "r" + style, linewidth=1.2)
    ax.set_xlim(_geometric_edges(err.columns)[[0, -1]])
    ax.set_ylim(_geometric_edges(err.index)[[0, -1]])
    ax.set_xlabel("SNR = ||mu|| / (sigma_p sqrt(d))")
    ax.set_ylabel("n (training samples)")
    ax.set_title("red: the theory's boundary " + ("n SNR^q" if relu_power else
                 "n ||mu||^4 / (sigma_p^4 d)") + " = 1 (solid), 10 (dashed)", fontsize=8)
    fig.colorbar(mesh, ax=ax, label=f"median clean test error, step {base.steps}")
    ax = axes[1]
    for i, (n, d) in enumerate(runs.groupby("n", sort=True)):
        _band(ax, lambda v: v, d, "theory", "final_test", f"n = {n}", f"C{i}")
    ax.set_xscale("log")
    ax.set_xlabel("n SNR^q" if relu_power else "n ||mu||^4 / (sigma_p^4 d)  (Kou et al. 2023)")
    _accuracy_axis(ax, base.steps, chance=True)
    ax.legend(fontsize=8)
    _save_study(fig, path, f"two-layer CNN on patches: d={base.p:g} P={base.patches} "
                           f"m={base.m} eta={base.noise_rate:g} lr={base.lr:g} "
                           f"init={base.init_scale:g}, {base.runs} runs per point")


#: Study name -> its figure: (SweepResult, base Config, path) -> None.
STUDY_FIGURES = {"long": _long_study_figure, "dimension": _dimension_study_figure,
                 "snr": _snr_study_figure, "init": _init_study_figure, "loss": _loss_study_figure,
                 "second": _second_study_figure, "decay": _decay_study_figure,
                 "cnn": _cnn_study_figure}


def study_figure(name, res, base, path) -> None:
    """Draw study ``name``'s figure of the sweep result ``res`` over ``base`` into ``path``."""
    STUDY_FIGURES[name](res, base, path)
