"""Built-in studies: the paper's open questions, each one resumable sweep and one figure.

=============  =======================================================================
``long``       What happens long after the theory's horizon sqrt(n)? The paper's two step
               sizes, and one at which the loss goes to zero, trained to 10^5 steps.
``dimension``  Where does benign overfitting break down as p/n shrinks? p/n from 1 to 1000
               at the paper's SNR scaling ||mu|| = 2.5 sqrt(p/n).
``snr``        How small can ||mu|| be? A grid of ||mu|| around the paper's value for three p.
``init``       Initialization against step size: the grokking delay as a function of
               omega_init / alpha (the paper's two panels are two points of it).
``loss``       The same delay for the logistic, exponential and hinge losses (at the
               preset's alpha), and whether it collapses on omega_init / (alpha (-l'(0))).
=============  =======================================================================

``fastgrok study NAME`` (or :func:`study`) runs one through :func:`fastgrok.sweep`, so it
inherits its executors (local processes or a Dask cluster), atomic per-point files and resume,
and writes ``fig_study.png`` next to the sweep's table. Every setting can be overridden except
the fields the study sweeps.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable

import numpy as np
import pandas as pd

from ._io import save_figure
from .config import LOSSES, Config, preset


@dataclasses.dataclass(frozen=True)
class Study:
    """One built-in study: a preset with settings, the points it sweeps and its figure."""

    name: str
    question: str
    preset: str
    settings: dict
    points: Callable[[Config], object]  # base Config -> grid (dict) or list of points
    figure: Callable[["object", Config, str], None]  # (SweepResult, base, path)
    paired: tuple = ()  # grid fields whose points share data and initialisation

    def base(self, **overrides) -> Config:
        """The study's base Config with the user's overrides."""
        return preset(self.preset, **{**self.settings, **overrides})


def _sig(x: float) -> float:
    """X rounded to 12 significant digits: 1e-3 * 1e-12 is 1e-15, not 1.0000000000000001e-15."""
    return float(f"{x:.12g}")


# ------------------------------------------------------------------ helpers for the figures


def _per_run(table: pd.DataFrame, names, threshold: float) -> pd.DataFrame:
    """One row per (point, run): final train/test accuracy, test accuracy at step 1, grok step."""
    from .sweeps import grok_steps

    grok = grok_steps(table, names, threshold)
    rows = []
    last = table.step.max()
    for key, g in table.groupby([*names, "run"], sort=True):
        g = g.set_index("step")
        rows.append({**dict(zip([*names, "run"], key, strict=True)),
                     "final_train": g.train_acc.get(last, np.nan),
                     "final_test": g.test_acc.get(last, np.nan),
                     "test_at_1": g.test_acc.get(1, np.nan), "grok": float(grok.loc[key])})
    return pd.DataFrame(rows)


def _band(ax, x, runs: pd.DataFrame, by, col, label, color, style="-o"):
    """Median over runs of ``col`` against ``x`` with the 20-80% band."""
    g = runs.groupby(by, sort=True)[col]
    med, lo, hi = g.median(), g.quantile(0.2), g.quantile(0.8)
    ax.plot(x(med.index.to_numpy()), med.to_numpy(), style, color=color, label=label, ms=4)
    ax.fill_between(x(med.index.to_numpy()), lo.to_numpy(), hi.to_numpy(), color=color, alpha=0.2,
                    linewidth=0)


def _grok_median(runs: pd.DataFrame, by) -> pd.Series:
    """Median grokking step per point; inf where the median run never groks."""
    return runs.groupby(by, sort=True)["grok"].median()


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


def _save(fig, path):
    """Write ``fig`` atomically; plain tick labels on log axes (no 2x10^0 minor labels)."""
    from matplotlib.ticker import NullFormatter

    for ax in fig.axes:
        ax.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    save_figure(fig, path)


# ------------------------------------------------------------------ the four studies


def _long_points(base: Config):
    # The paper's two step sizes stay, even after 10^5 steps, in the regime where the outputs
    # are tiny and the loss is still log 2; a step size of 1e-4 (far below the 2 / smoothness
    # ~ 1 that keeps GD stable here) takes the same data through the late phase where the loss
    # goes to zero.
    return {"lr": [1e-12, 1e-16, 1e-4]}


def _long_figure(res, base: Config, path):
    from .plots import _pyplot, plot_accuracy
    from .results import summarize

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
    fig.suptitle(f"long training: n={base.n} p={base.p} m={base.m}, {base.runs} runs", fontsize=9)
    _save(fig, path)
    plt.close(fig)


def _dimension_points(base: Config):
    return {"p": [int(base.n * r) for r in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)]}


def _dimension_figure(res, base: Config, path):
    from .plots import _pyplot

    plt = _pyplot()
    runs = _per_run(res.table, ["p"], res.threshold)
    x = lambda p: p / base.n  # noqa: E731
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    _band(ax, x, runs, "p", "final_train", f"train, step {base.steps}", "C1", "--o")
    _band(ax, x, runs, "p", "final_test", f"test, step {base.steps}", "C0")
    _band(ax, x, runs, "p", "test_at_1", "test, step 1", "C2")
    ax.axhline(0.5, color="gray", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("p / n")
    ax.set_ylabel("accuracy (median, 20-80%)")
    ax.set_ylim(0.3, 1.02)
    ax.legend(fontsize=8)
    ax = axes[1]
    _grok_plot(ax, x, _grok_median(runs, "p"), f"test acc >= {res.threshold}", "C0", base.steps)
    ax.set_xscale("log")
    ax.set_xlabel("p / n")
    fig.suptitle(f"dimension: ||mu|| = 2.5 sqrt(p/n), n={base.n} m={base.m} lr={base.lr:g} "
                 f"init={base.init_scale:g}, {base.runs} runs per point", fontsize=9)
    _save(fig, path)
    plt.close(fig)


def _snr_points(base: Config):
    return {"p": [10_000, 40_000, 160_000],
            "mu_norm": [_sig(v) for v in np.geomspace(2.0, 80.0, 9)]}


def _snr_figure(res, base: Config, path):
    from .plots import _pyplot

    plt = _pyplot()
    runs = _per_run(res.table, ["p", "mu_norm"], res.threshold)
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
        ax.set_ylabel(f"test accuracy at step {base.steps} (median, 20-80%)")
        ax.axhline(0.5, color="gray", linestyle=":", linewidth=1)
        ax.set_ylim(0.3, 1.02)
        ax.legend(fontsize=8)
    fig.suptitle(f"SNR threshold: n={base.n} m={base.m} lr={base.lr:g} init={base.init_scale:g}, "
                 f"{base.runs} runs per point", fontsize=9)
    _save(fig, path)
    plt.close(fig)


INIT_LRS = (1e-12, 1e-14, 1e-16)
INIT_RATIOS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def _init_points(base: Config):
    return [{"lr": lr, "init_scale": _sig(r * lr)} for lr in INIT_LRS for r in INIT_RATIOS]


def _init_figure(res, base: Config, path):
    from .plots import _pyplot

    plt = _pyplot()
    runs = _per_run(res.table, ["lr", "init_scale"], res.threshold)
    runs["ratio"] = (runs.init_scale / runs.lr).map(_sig)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, (lr, d) in enumerate(runs.groupby("lr", sort=True)):
        color = f"C{i}"
        _grok_plot(axes[0], lambda v: v, _grok_median(d, "ratio"), f"lr = {lr:g}", color,
                   base.steps)
        _band(axes[1], lambda v: v, d, "ratio", "final_test", f"lr = {lr:g}", color)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("init_scale / lr  (omega_init / alpha)")
        for r, name in ((1e-3, "Fig. 1 left"), (10.0, "Fig. 1 right")):
            ax.axvline(r, color="gray", linestyle="--", linewidth=0.8)
            ax.text(r, 0.98, " " + name, fontsize=7, transform=ax.get_xaxis_transform(), va="top")
        ax.legend(fontsize=8, loc="center left")
    axes[1].set_ylabel(f"test accuracy at step {base.steps} (median, 20-80%)")
    axes[1].set_ylim(0.3, 1.02)
    fig.suptitle(f"initialization vs step size: n={base.n} p={base.p} m={base.m}, "
                 f"{base.runs} runs per point", fontsize=9)
    _save(fig, path)
    plt.close(fig)


LOSS_RATIOS = INIT_RATIOS


def _loss_points(base: Config):
    return [{"loss": loss, "init_scale": _sig(r * base.lr)} for loss in LOSSES for r in LOSS_RATIOS]


def _loss_figure(res, base: Config, path):
    from .model import Model
    from .plots import _pyplot

    plt = _pyplot()
    runs = _per_run(res.table, ["loss", "init_scale"], res.threshold)
    runs["ratio"] = (runs.init_scale / base.lr).map(_sig)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for i, loss in enumerate(LOSSES):
        d = runs[runs.loss == loss]
        if d.empty:
            continue
        g0 = Model(loss=loss).g0
        style = ("-o", "--s", ":^")[i]
        med = _grok_median(d, "ratio")
        _grok_plot(axes[0], lambda v: v, med, f"{loss} (-l'(0) = {g0:g})", f"C{i}", base.steps)
        _band(axes[1], lambda v: v, d, "ratio", "final_test", loss, f"C{i}", style)
        # While the outputs are tiny the dynamics see alpha only through alpha (-l'(0)):
        # against omega_init / (alpha (-l'(0))) the losses should fall on one curve.
        _grok_plot(axes[2], lambda v, g0=g0: v / g0, med, loss, f"C{i}", base.steps)
    axes[0].set_xlabel("init_scale / lr  (omega_init / alpha)")
    axes[1].set_xlabel("init_scale / lr  (omega_init / alpha)")
    axes[1].set_ylabel(f"test accuracy at step {base.steps} (median, 20-80%)")
    axes[1].set_ylim(0.3, 1.02)
    axes[2].set_xlabel("omega_init / (alpha (-l'(0)))")
    for ax in axes:
        ax.set_xscale("log")
        ax.legend(fontsize=8, loc="center left")
    fig.suptitle(f"loss: logistic, exponential and hinge; n={base.n} p={base.p} m={base.m} "
                 f"lr={base.lr:g}, {base.runs} runs per point", fontsize=9)
    _save(fig, path)
    plt.close(fig)


# The paper's data (n = 200, p = 40000, ||mu|| = 2.5 sqrt(p/n), eta = 0.05, omega_init = 1e-15,
# alpha = 1e-12). The sweeps use m = 100 neurons instead of 1000 and 10-20 runs per point so that
# each study takes minutes on two cores (the step cost is ~ n^2 m); --m 1000 --runs 100 gives the
# paper's width and run count.
STUDIES = {
    "long": Study("long", "What happens long after sqrt(n) steps?", "paper-fig1-left",
                  dict(m=100, runs=20, steps=100_000, snapshot_steps=()), _long_points,
                  _long_figure),
    "dimension": Study("dimension", "How does benign overfitting degrade as p/n shrinks?",
                       "paper-fig1-left", dict(m=100, runs=20, steps=1000, snapshot_steps=()),
                       _dimension_points, _dimension_figure),
    "snr": Study("snr", "How small can ||mu|| be (SNR threshold)?", "paper-fig1-left",
                 dict(m=100, runs=20, steps=1000, snapshot_steps=()), _snr_points, _snr_figure),
    "init": Study("init", "Grokking delay against init_scale / lr", "paper-fig1-left",
                  dict(m=100, runs=10, steps=20_000, snapshot_steps=()), _init_points,
                  _init_figure),
    "loss": Study("loss", "Logistic, exponential or hinge loss: grokking delay against "
                  "init_scale / lr", "paper-fig1-left",
                  dict(m=100, runs=10, steps=20_000, snapshot_steps=()), _loss_points, _loss_figure,
                  paired=("loss",)),
}


def study(name: str, out=None, executor=None, n_workers=None, threshold=0.9, progress=True,
          figures=True, **overrides):
    """Run a built-in study (see the module docstring) and write its figure.

    Parameters
    ----------
    name : str
        One of :data:`STUDIES`: "long", "dimension", "snr", "init", "loss".
    out : path, optional
        Folder for the sweep's files and ``fig_study.png``; rerunning with the same folder
        resumes. Without it nothing is written.
    executor, n_workers, threshold, progress
        As for :func:`fastgrok.sweep`.
    figures : bool
        With ``out``: write fig_study.png.
    **overrides
        Config fields to change (e.g. ``runs=100, m=1000``), except the swept ones.

    Returns
    -------
    SweepResult
        With ``.table``, ``.points`` and ``.figure`` (the figure's path, or None).
    """
    from .sweeps import sweep

    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; expected one of {', '.join(map(repr, STUDIES))}")
    st = STUDIES[name]
    base = st.base(**overrides)
    grid = st.points(base)
    swept = set(grid if isinstance(grid, dict) else grid[0])
    clash = sorted(swept & set(overrides))
    if clash:
        raise ValueError(f"study {name!r} sweeps {', '.join(clash)}; it cannot be overridden")
    res = sweep(base, grid, out=out, executor=executor, n_workers=n_workers, threshold=threshold,
                progress=progress, figures=False, paired=st.paired)
    if out is not None and figures:
        res.figure = os.path.join(os.fspath(out), "fig_study.png")
        st.figure(res, base, res.figure)
    return res
