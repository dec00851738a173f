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
``second``     The second layer fixed (the paper) against trained with the same step size,
               paired (same data and initialisation), across omega_init / alpha: does
               grokking survive, is the delay the same, how far does a move?
``decay``      Weight decay: the grokking delay and the final test accuracy against
               alpha lambda, at the paper's two initialisations and a large one.
``cnn``        The two-layer ReLU CNN on patch data (Kou et al. 2023) at d = 10^6: the test
               error over the sample size n and the SNR ||mu|| / (sigma_p sqrt(d)), with the
               theory's boundary n ||mu||^4 = C sigma_p^4 d (relu_power q: n SNR^q = C, Cao et
               al. 2022) drawn on the heatmap.
=============  =======================================================================

``fastgrok study NAME`` (or :func:`study`) runs one through :func:`fastgrok.sweep`, so it
inherits its executors (local processes or a Dask cluster), atomic per-point files and resume,
and writes ``fig_study.png`` next to the sweep's table. Every setting can be overridden except
the fields the study sweeps.
"""
from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Callable

import numpy as np

from .analysis import round_sig
from .config import CLASSIFICATION_LOSSES, Config, preset

if TYPE_CHECKING:
    from .sweeps import SweepResult


@dataclasses.dataclass(frozen=True)
class Study:
    """One built-in study: a preset with settings and the grid it sweeps.

    Its figure is :data:`fastgrok.plots.STUDY_FIGURES` ``[name]``.
    """

    name: str
    question: str
    preset: str
    settings: dict
    grid: Callable[[Config], object]  # base Config -> grid (dict) or list of points
    paired: tuple = ()  # grid fields whose points share data and initialisation

    def base(self, **overrides) -> Config:
        """The study's base Config with the user's overrides."""
        return preset(self.preset, **{**self.settings, **overrides})


# ------------------------------------------------------------------ the studies


def _long_grid(base: Config):
    # The paper's two step sizes stay, even after 10^5 steps, in the regime where the outputs
    # are tiny and the loss is still log 2; a step size of 1e-4 (far below the 2 / smoothness
    # ~ 1 that keeps GD stable here) takes the same data through the late phase where the loss
    # goes to zero.
    return {"lr": [1e-12, 1e-16, 1e-4]}


def _dimension_grid(base: Config):
    return {"p": [int(base.n * r) for r in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)]}


def _snr_grid(base: Config):
    return {"p": [10_000, 40_000, 160_000],
            "mu_norm": [round_sig(v) for v in np.geomspace(2.0, 80.0, 9)]}


INIT_LRS = (1e-12, 1e-14, 1e-16)
INIT_RATIOS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def _init_grid(base: Config):
    return [{"lr": lr, "init_scale": round_sig(r * lr)} for lr in INIT_LRS for r in INIT_RATIOS]


LOSS_RATIOS = INIT_RATIOS


def _loss_grid(base: Config):
    return [{"loss": loss, "init_scale": round_sig(r * base.lr)}
            for loss in CLASSIFICATION_LOSSES for r in LOSS_RATIOS]


#: omega_init / alpha of the second-layer study: the paper's panels, and a large initialisation
#: whose outputs are of order 1 at t = 0 (where a's gradient is largest).
SECOND_RATIOS = (1e-3, 1e-1, 10.0, 1e9)


def _second_grid(base: Config):
    return [{"train_second_layer": trained, "init_scale": round_sig(r * base.lr)}
            for trained in (False, True) for r in SECOND_RATIOS]


#: alpha lambda (the factor 1 - alpha lambda per step) and omega_init / alpha of the decay study:
#: the paper's two panels' initialisations and a large one, whose outputs are of order 1 at t = 0.
DECAY_RATES = (0.0, 1e-6, 1e-5, 1e-4, 1e-3)
DECAY_RATIOS = (1e-3, 10.0, 1e9)


def _decay_grid(base: Config):
    return [{"weight_decay": round_sig(d / base.lr), "init_scale": round_sig(r * base.lr)}
            for d in DECAY_RATES for r in DECAY_RATIOS]


#: The sample sizes and signal-to-noise ratios ||mu|| / (sigma_p sqrt(d)) of the cnn study.
CNN_SAMPLES = (10, 20, 40, 80, 160, 320)
CNN_SNRS = tuple(round_sig(0.004 * 2 ** (k / 2)) for k in range(9))  # 0.004 to 0.064


def _cnn_grid(base: Config):
    scale = base.sigma_p * np.sqrt(base.p)
    return [{"n": n, "mu_norm": round_sig(snr * scale)} for n in CNN_SAMPLES for snr in CNN_SNRS]


# The paper's data (n = 200, p = 40000, ||mu|| = 2.5 sqrt(p/n), eta = 0.05, omega_init = 1e-15,
# alpha = 1e-12). The sweeps use m = 100 neurons instead of 1000 and 10-20 runs per point so that
# each study stays small (the step cost is ~ n^2 m; the wall times: docs/studies.md);
# --m 1000 --runs 100 gives the paper's width and run count.
STUDIES = {
    "long": Study("long", "What happens long after sqrt(n) steps?", "paper-fig1-left",
                  dict(m=100, runs=20, steps=100_000, snapshot_steps=()), _long_grid),
    "dimension": Study("dimension", "How does benign overfitting degrade as p/n shrinks?",
                       "paper-fig1-left", dict(m=100, runs=20, steps=1000, snapshot_steps=()),
                       _dimension_grid),
    "snr": Study("snr", "How small can ||mu|| be (SNR threshold)?", "paper-fig1-left",
                 dict(m=100, runs=20, steps=1000, snapshot_steps=()), _snr_grid),
    "init": Study("init", "Grokking delay against init_scale / lr", "paper-fig1-left",
                  dict(m=100, runs=10, steps=20_000, snapshot_steps=()), _init_grid),
    "loss": Study("loss", "Logistic, exponential or hinge loss: grokking delay against "
                  "init_scale / lr", "paper-fig1-left",
                  dict(m=100, runs=10, steps=20_000, snapshot_steps=()), _loss_grid,
                  paired=("loss",)),
    "second": Study("second", "Fixed or trained second layer: does grokking survive, is the "
                    "delay the same, how far does a move?", "paper-fig1-left",
                    dict(m=100, runs=10, steps=20_000, snapshot_steps=()), _second_grid,
                    paired=("train_second_layer",)),
    "decay": Study("decay", "Weight decay: grokking delay and final test accuracy against "
                   "alpha lambda", "paper-fig1-left",
                   dict(m=100, runs=10, steps=20_000, snapshot_steps=()), _decay_grid,
                   paired=("weight_decay",)),
    "cnn": Study("cnn", "The two-layer CNN on patches: benign or harmful overfitting over the "
                 "sample size n and the SNR, against the theory's boundary", "kou2023-relu-cnn",
                 dict(runs=10, snapshot_steps=()), _cnn_grid),
}


def study(name: str, out: str | os.PathLike | None = None, executor=None,
          n_workers: int | None = None, threshold: float = 0.9, progress: bool = True,
          figures: bool = True, **overrides) -> SweepResult:
    """Run a built-in study (see the module docstring) and write its figure.

    Parameters
    ----------
    name : str
        One of :data:`STUDIES`: "long", "dimension", "snr", "init", "loss", "second", "decay",
        "cnn".
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

    Raises
    ------
    ValueError
        An unknown study, or an override of a field the study sweeps.

    See Also
    --------
    fastgrok.sweep : a grid of your own.

    Examples
    --------
    >>> import fastgrok as fg
    >>> res = fg.study("dimension", runs=1, steps=2, m=10, progress=False)
    >>> len(res.points), list(res.points.columns[:2])
    (10, ['p', 'runs'])
    """
    from .sweeps import sweep

    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; expected one of {', '.join(map(repr, STUDIES))}")
    st = STUDIES[name]
    base = st.base(**overrides)
    grid = st.grid(base)
    swept = set(grid if isinstance(grid, dict) else grid[0])
    clash = sorted(swept & set(overrides))
    if clash:
        raise ValueError(f"study {name!r} sweeps {', '.join(clash)}; it cannot be overridden")
    res = sweep(base, grid, out=out, executor=executor, n_workers=n_workers, threshold=threshold,
                progress=progress, figures=False, paired=st.paired)
    if out is not None and figures:
        from ._io import figure_or_warning
        from .plots import study_figure

        path = os.path.join(os.fspath(out), "fig_study.png")
        if figure_or_warning("fig_study.png", study_figure, name, res, base, path):
            res.figure = path
    return res
