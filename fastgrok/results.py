"""Experiment results: the tidy history, its per-step summary, and atomic saving."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from .analysis import summarize
from .driver import METRICS


class Result:
    """What :func:`fastgrok.run` and :func:`fastgrok.fit` return.

    Attributes
    ----------
    config : dict
        The settings that produced it (a :class:`~fastgrok.Config` as a dict for ``run``).
    history : pandas.DataFrame
        One row per (run, evaluated step): run, step, train_acc, train_loss (noisy labels),
        test_acc, test_loss (clean labels), and the alignment summaries pos_mu1, pos_mu2,
        neg_mu1, neg_mu2 (mean |<w_j, mu_k>| / ||mu|| over positive / negative neurons).
    projections : dict
        At the histogram steps: "steps" (H,), "P1" = W mu1 and "P2" = W mu2 (runs, H, m), and
        the second layer "a" (runs, m). Empty when no means are known.
    info : dict
        How it ran: engine (method/backend), dtype, wall time.
    """

    def __init__(self, config: dict, rows, projections=None, info=None):
        self.config = dict(config)
        self.history = pd.DataFrame(rows, columns=["run", "step", *METRICS])
        if not self.config.get("population_test_samples", self.config.get("population_test")):
            # Only columns that mean something: the standard error is that of the population
            # accuracy's Monte Carlo estimate.
            self.history = self.history.drop(columns="test_acc_se")
        self.projections = projections or {}
        self.info = dict(info or {})

    def __repr__(self):
        """A one-line description: runs, steps and engine."""
        runs = self.history["run"].nunique()
        last = int(self.history["step"].max()) if len(self.history) else 0
        return f"<fastgrok.Result runs={runs} steps={last} engine={self.info.get('engine')}>"

    def summary(self) -> pd.DataFrame:
        """One row per step: step, then <metric>_median, <metric>_q20, <metric>_q80."""
        return summarize(self.history)

    def headline(self) -> str:
        """Median train/test accuracy at steps 1 and the last step, as one short text."""
        s = self.summary().set_index("step")
        lines = []
        for t in sorted({min(1, s.index.max()), s.index.max()}):
            lines.append(f"step {t:>6}: train_acc median {s.loc[t, 'train_acc_median']:.3f}   "
                         f"test_acc median {s.loc[t, 'test_acc_median']:.3f}")
        return "\n".join(lines)

    def save(self, out, figures=True) -> dict:
        """Write the result's files and figures to ``out``.

        config.json, history.csv, summary.csv, projections.npz and the figures
        (fig_accuracy.png; with projections fig_projections.png and, for XOR data,
        fig_plane.png).

        The files are written into a temporary folder inside ``out`` and moved into place
        together at the end, so a failed or interrupted save leaves none of them half-written.

        Returns
        -------
        dict
            File name -> path of everything written.
        """
        from ._io import atomic_files

        out = _writable_dir(out)
        with atomic_files(out) as target:
            with open(target("config.json"), "w") as fh:
                json.dump({"config": self.config, "info": self.info}, fh, indent=2,
                          default=_jsonable)
            self.history.to_csv(target("history.csv"), index=False)
            self.summary().to_csv(target("summary.csv"), index=False)
            names = ["config.json", "history.csv", "summary.csv"]
            if self.projections:
                # Uncompressed: the projections are float64 noise to zlib, which would cost
                # time for little space.
                np.savez(target("projections.npz"), **self.projections)
                names.append("projections.npz")
            if figures:
                names += self._figures(target)
        return {name: os.path.join(out, name) for name in names}

    def figures(self, out) -> dict:
        """(Re)write only the figures into ``out``, all together or none (as :meth:`save`).

        With :meth:`load`, a saved result's figures are redrawn without training
        (``fastgrok figures DIR``). Returns file name -> path.
        """
        from ._io import atomic_files

        out = _writable_dir(out)
        with atomic_files(out) as target:
            names = self._figures(target)
        return {name: os.path.join(out, name) for name in names}

    def _figures(self, target) -> list:
        from . import plots

        plots.accuracy_figure(self.summary(), target("fig_accuracy.png"), title=_title(self.config))
        names = ["fig_accuracy.png"]
        if self.projections:
            plots.histogram_figure(self.projections, target("fig_projections.png"),
                                   title=_title(self.config))
            names.append("fig_projections.png")
            if "X_mu" in self.projections and np.isfinite(self.projections["P2"]).any():
                plots.plane_figure(self.projections, target("fig_plane.png"),
                                   title=_title(self.config), leak=self.config.get("leak") or 0.0)
                names.append("fig_plane.png")
        return names

    @classmethod
    def load(cls, folder) -> "Result":
        """The result :meth:`save` wrote into ``folder`` (config, info, history, projections)."""
        path = os.fspath(folder)
        with open(os.path.join(path, "config.json")) as fh:
            meta = json.load(fh)
        history = pd.read_csv(os.path.join(path, "history.csv"))
        proj_path = os.path.join(path, "projections.npz")
        projections = {}
        if os.path.exists(proj_path):
            with np.load(proj_path) as npz:
                projections = {k: npz[k] for k in npz.files}
        return cls(meta["config"], history, projections, meta.get("info"))


def _title(cfg: dict) -> str:
    keys = ("n", "p", "m", "lr", "init_scale", "noise_rate", "runs")
    text = ", ".join(f"{k}={cfg[k]:g}" for k in keys if isinstance(cfg.get(k), (int, float)))
    # Name the model where it is not the paper's (ReLU, logistic loss, XOR data).
    model = [cfg.get("activation", "relu") if cfg.get("leak") is None
             else f"{cfg['activation']}({cfg['leak']:g})",
             f"{cfg.get('loss', 'logistic')} loss", f"{cfg.get('data', 'xor')} data"]
    if model != ["relu", "logistic loss", "xor data"]:
        text += "\n" + ", ".join(model)
    return text


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (tuple, set, np.ndarray)):
        return list(x)
    return str(x)


def _writable_dir(out) -> str:
    """Create ``out`` if needed; ValueError naming it if it cannot be written."""
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a path, got {type(out).__name__}")
    out = os.fspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out={out!r} exists and is not a directory")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"out={out!r} cannot be created: {exc.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"out={out!r} is not writable")
    return out
