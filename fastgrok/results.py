"""Experiment results: the tidy history, its per-step summary, and atomic saving."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from .analysis import summarize
from .driver import METRICS

#: The history's benign-overfitting columns, where the flipped labels are known.
FLIP_COLUMNS = ("train_acc_clean", "train_acc_flipped")


#: The history columns of patch data (the two-layer CNN's signal learning and noise
#: memorisation, docs/design.md "Patches").
PATCH_COLUMNS = ("signal_learning", "noise_memorization")


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
        Where a run diverged, a column ``diverged`` (True from its first evaluated step whose
        outputs or loss are not finite; its metrics there and after are NaN).
    projections : dict
        At the histogram steps: "steps" (H,), "P1" = W mu1 and "P2" = W mu2 (runs, H, m), and
        the second layer "a" (runs, m). Empty when no means are known.
    info : dict
        How it ran: engine (method/backend), dtype, wall time; ``"diverged"`` where runs
        diverged (their runs, and for each the last evaluated step with finite outputs and
        loss and the first without).
    stop_steps : (runs,) int array or None
        With a stop rule: the step at which each run stopped (-1: it never did).
    networks : dict
        (run, step) -> :class:`fastgrok.network.Network`, at the steps where networks were
        kept (:meth:`kept_steps`); read them through :meth:`weights`,
        :meth:`decision_function`, :meth:`network`.
    """

    def __init__(self, config: dict, rows, projections=None, info=None, networks=None,
                 stop_steps=None, metrics=()):
        self.config = dict(config)
        columns = ["run", "step", *METRICS]
        if not self.config.get("population_test_samples", self.config.get("population_test")):
            # Only columns that mean something: the standard error is that of the population
            # accuracy's Monte Carlo estimate.
            columns.remove("test_acc_se")
        if isinstance(rows, pd.DataFrame):
            self.history = rows[[c for c in columns if c in rows.columns]
                                + [c for c in rows.columns if c not in columns + ["test_acc_se"]]]
        else:
            columns += [c for c in (*FLIP_COLUMNS, "stable_rank", "second_layer_change",
                                    "test_mse", *PATCH_COLUMNS) if rows and c in rows[0]]
            columns += list(metrics)
            # Column by column, and made a DataFrame when first read: a fit's result is built
            # in a research loop, many times, and the loop may read only its networks.
            self._history = None
            self._columns = {c: np.array([row.get(c, np.nan) for row in rows],
                                         dtype=np.int64 if c in ("run", "step") else np.float64)
                             for c in columns}
            if (info or {}).get("diverged"):
                self._columns["diverged"] = np.array([row.get("diverged", False) for row in rows])
        self.projections = projections or {}
        self.info = dict(info or {})
        self.networks = dict(networks or {})
        self.stop_steps = None if stop_steps is None else np.asarray(stop_steps, np.int64)

    @property
    def history(self) -> pd.DataFrame:
        """The history table (see the class docstring)."""
        if self._history is None:
            self._history = pd.DataFrame(self._columns)
            self._columns = None
        return self._history

    @history.setter
    def history(self, table: pd.DataFrame):
        self._history, self._columns = table, None

    # ------------------------------------------------------------------ the trained networks
    def kept_steps(self, run: int = 0) -> list:
        """The steps at which run ``run``'s network was kept."""
        return sorted(t for r, t in self.networks if r == run)

    def network(self, run: int = 0, step: int | None = None):
        """Run ``run``'s network at ``step`` (None: the last kept step).

        A :class:`fastgrok.network.Network`; ValueError naming the kept steps if ``step`` was
        not kept.
        """
        kept = self.kept_steps(run)
        if not kept:
            runs = sorted({r for r, _ in self.networks})
            if runs:
                raise ValueError(f"run={run!r} has no kept network; the kept runs are {runs}")
            raise ValueError("no network was kept: pass keep_networks=True to run() (fit() keeps "
                             "the last step's)")
        step = kept[-1] if step is None else step
        if (run, step) not in self.networks:
            raise ValueError(f"the network of run {run} was not kept at step {step!r}; kept "
                             f"steps: {kept} (pass snapshot_steps to keep others)")
        return self.networks[(run, step)]

    def weights(self, run: int = 0, step: int | None = None) -> tuple:
        """(W, a) of run ``run`` at ``step`` (None: the last): W (m, p), a (m,), NumPy arrays.

        The gram method rebuilds W = W0 + C X in column blocks from the run's data (its
        generated streams, or the caller's arrays); in the reduced representation there is no
        W with p coordinates (a ValueError says to use representation='full').
        """
        return self.network(run, step).weights()

    def decision_function(self, X, run: int = 0, step: int | None = None) -> np.ndarray:
        """The outputs f(x) (q,) on new inputs X (q, p), float64 (gram: W is never formed).

        A two-layer CNN's inputs are (q, P, d) patches.
        """
        from . import _validate as v

        return self.network(run, step).decision_function(v.inputs("X", X))

    def predict(self, X, run: int = 0, step: int | None = None) -> np.ndarray:
        """Labels in {-1, +1} (q,) on new inputs X (an output of 0 gives -1)."""
        return np.where(self.decision_function(X, run, step) > 0, 1.0, -1.0)

    def to_torch(self, run: int = 0, step: int | None = None):
        """The network as a ``torch.nn.Module`` (:class:`fastgrok.torch.TwoLayerNet`).

        Its outputs equal :meth:`decision_function`; one ``torch.optim.SGD`` step on its
        ``loss`` equals fastgrok's next step. Needs PyTorch (ImportError otherwise).
        """
        from .torch_export import to_module

        net = self.network(run, step)
        W, a = net.weights()
        return to_module(W, a, activation=self.config.get("activation", "relu"),
                         leak=net.leak, loss=self.config.get("loss", "logistic"))

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

        config.json, history.parquet (exact) and history.csv, summary.csv, projections.npz,
        networks.npz (the kept networks and the stop steps) and the figures
        (fig_accuracy.png; with projections fig_projections.png and, for XOR data,
        fig_plane.png).

        The data files are written into a temporary folder inside ``out`` and moved into place
        together at the end, so a failed or interrupted save leaves none of them half-written;
        the figures come after them (one that cannot be drawn is skipped with a warning).

        Returns
        -------
        dict
            File name -> path of everything written.

        Raises
        ------
        OSError
            A data file could not be written (a full disk): ``out`` is left as it was, and
            the Result is unchanged (save it elsewhere).
        """
        from ._io import atomic_files

        out = _writable_dir(out)
        with atomic_files(out) as target:  # the data first: a figure never costs it
            with open(target("config.json"), "w") as fh:
                json.dump({"config": self.config, "info": self.info}, fh, indent=2,
                          default=_jsonable)
            # The parquet copy is the exact one (binary floats, read back bit for bit); the
            # CSVs are for reading.
            self.history.to_parquet(target("history.parquet"), index=False)
            self.history.to_csv(target("history.csv"), index=False)
            self.summary().to_csv(target("summary.csv"), index=False)
            names = ["config.json", "history.parquet", "history.csv", "summary.csv"]
            if self.projections:
                # Uncompressed: the projections are float64 noise to zlib, which would cost
                # time for little space.
                np.savez(target("projections.npz"), **self.projections)
                names.append("projections.npz")
            if self.networks or self.stop_steps is not None:
                np.savez(target("networks.npz"), **self._network_arrays())
                names.append("networks.npz")
        if figures:
            with atomic_files(out) as target:
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
        """Draw the figures into ``target(name)``; one that cannot be drawn is skipped.

        (With a warning that names it and why: the data are already written.)
        """
        from . import plots

        title = _title(self.config)
        drawn = {"fig_accuracy.png": lambda path: plots.accuracy_figure(self.summary(), path,
                                                                        title=title)}
        if self.projections:
            drawn["fig_projections.png"] = lambda path: plots.histogram_figure(
                self.projections, path, title=title)
            # The plane figure marks the flips by the XOR labelling: generated XOR data only;
            # it shows the first run whose projections are finite (not a diverged one).
            finite = [r for r in range(len(self.projections["P1"]))
                      if np.isfinite(self.projections["P1"][r]).all()
                      and np.isfinite(self.projections["P2"][r]).all()]
            if "X_mu" in self.projections and self.config.get("data") == "xor" and finite:
                drawn["fig_plane.png"] = lambda path: plots.plane_figure(
                    self.projections, path, run=finite[0], title=title,
                    leak=self.config.get("leak") or 0.0)
        from ._io import figure_or_warning

        return [name for name, draw in drawn.items()
                if figure_or_warning(name, draw, target(name))]

    def _network_arrays(self) -> dict:
        """The kept networks and stop steps as named arrays (networks.npz)."""
        out = {} if self.stop_steps is None else {"stop_steps": self.stop_steps}
        for (r, t), net in self.networks.items():
            kind, arr = ("W", net.W) if net.W is not None else ("C", net.C)
            out[f"run{r}_step{t}_{kind}"] = arr
            out[f"run{r}_step{t}_a"] = net.a
            if net.scale != 1.0:  # weight decay: W = scale W0 + C X
                out[f"run{r}_step{t}_scale"] = np.float64(net.scale)
        return out

    @classmethod
    def load(cls, folder, X=None, W0=None) -> "Result":
        """The result :meth:`save` wrote into ``folder``.

        Config, info, history, projections, the kept networks and stop steps. A gram network
        of :func:`fastgrok.fit` keeps only its coefficients C (W = W0 + C X): pass the training
        inputs ``X`` (and ``W0`` if it was given) to rebuild its weights; the networks of
        :func:`fastgrok.run` regenerate theirs from the seed.

        Every file is checked as it is read: :class:`fastgrok.DamagedFileError` (a ValueError)
        names a file that cannot be read or does not hold what :meth:`save` writes.
        """
        path = os.fspath(folder)
        meta = _read_meta(os.path.join(path, "config.json"))
        history = _read_history(path, meta["config"])
        projections = _read_arrays(os.path.join(path, "projections.npz"), ("steps", "P1", "a"))
        networks, stop_steps = {}, None
        arrays = _read_arrays(os.path.join(path, "networks.npz"))
        if arrays:
            stop_steps = arrays.pop("stop_steps", None)
            networks = _networks(meta["config"], arrays, X, W0)
        return cls(meta["config"], history, projections, meta.get("info"), networks=networks,
                   stop_steps=stop_steps)


def output_bytes(runs: int, rows_per_run: int, snapshots: int = 0, m: int = 0, n: int = 0,
                 figures: bool = True) -> int:
    """About how many bytes :meth:`Result.save` writes (for the disk check before a run).

    ``rows_per_run`` evaluated steps, ``snapshots`` projection steps of ``m`` neurons, ``n``
    training points in the means' plane.
    """
    from . import tunables

    history = runs * rows_per_run * tunables.OUTPUT_ROW_BYTES
    projections = runs * (2 * snapshots * m + 2 * n + m) * 8 if snapshots else 0
    return history + projections + (tunables.OUTPUT_FIGURE_BYTES if figures else 0)


#: The history columns every saved result has.
HISTORY_COLUMNS = ("run", "step", "train_acc", "train_loss", "test_acc", "test_loss")


def _read_meta(path) -> dict:
    """config.json, checked: a JSON object with the config (a dict) and the info."""
    from ._io import DamagedFileError

    try:
        with open(path) as fh:
            meta = json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedFileError(f"{path} is damaged: it is not JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise DamagedFileError(f"{path} is damaged: it holds no 'config' object")
    return meta


def _read_history(folder, config) -> pd.DataFrame:
    """The history (history.parquet, exact; history.csv where an older save has only it).

    Checked against the config: its columns, numeric, the runs and steps the config names.
    """
    from ._io import read_table

    path = os.path.join(folder, "history.parquet")
    if not os.path.exists(path):
        path = os.path.join(folder, "history.csv")
    runs, steps = config.get("runs"), config.get("steps")
    return read_table(path, HISTORY_COLUMNS, runs if isinstance(runs, int) else None,
                      steps if isinstance(steps, int) else None)


def _read_arrays(path, required=()) -> dict:
    """The arrays of an .npz file ({} when there is none), checked: DamagedFileError."""
    from ._io import DamagedFileError

    if not os.path.exists(path):
        return {}
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # zipfile's, NumPy's and the OS's errors: unreadable
        raise DamagedFileError(f"{path} is damaged: it cannot be read as .npz "
                               f"({type(exc).__name__}: {exc})") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise DamagedFileError(f"{path} is damaged: it has no array(s) {', '.join(missing)}")
    return arrays


def _networks(config, arrays, X, W0) -> dict:
    """(run, step) -> Network from networks.npz's arrays; the gram ones get their sources."""
    from .model import Model
    from .network import Network

    leak = Model(config.get("activation", "relu"), config.get("leak"), "logistic",
                 power=config.get("power"), smoothing=config.get("smoothing")).act
    out = {}
    for key, arr in arrays.items():
        run, step, kind = key.split("_")
        if kind in ("a", "scale"):
            continue
        r, t = int(run[3:]), int(step[4:])
        a = arrays[f"{run}_{step}_a"]
        if kind == "W":
            out[(r, t)] = Network(a, leak, W=arr, dtype=arr.dtype)
        else:
            out[(r, t)] = Network(a, leak, C=arr, source=_source(config, r, X, W0),
                                  dtype=config.get("dtype") or "float64",
                                  scale=float(arrays.get(f"{run}_{step}_scale", 1.0)))
    return out


def _source(config, r, X, W0):
    """Run r's source for rebuilding W: regenerated for run(), the given X for fit()."""
    from . import sources

    if "data" in config:  # a Config's dict: run()
        from .config import Config

        cfg = Config.from_dict(config)
        if config.get("representation") == "reduced":
            return sources.ReducedSource(cfg, r)
        return sources.GeneratedSource(cfg, r)
    if X is None:
        return _MissingInputs()
    W0r = None if W0 is None else (W0 if np.ndim(W0) == 2 else W0[r])
    return sources.ArraySource(np.asarray(X), np.ones(len(X)), config["m"],
                               config.get("init_scale") or 0.0, config.get("seed", 0), r, W0=W0r)


class _MissingInputs:
    """The source of a loaded fit() network whose training inputs were not given."""

    p_nominal = None

    def __getattr__(self, name):
        raise ValueError("this result's gram networks keep only their coefficients C "
                         "(W = W0 + C X) and fit()'s training inputs are not saved: load it "
                         "with Result.load(folder, X=X) (and W0=W0 if you gave one)")


def _title(cfg: dict) -> str:
    keys = ("n", "p", "m", "lr", "init_scale", "noise_rate", "runs")
    text = ", ".join(f"{k}={cfg[k]:g}" for k in keys if isinstance(cfg.get(k), (int, float)))
    # Name the model where it is not the paper's (ReLU, logistic loss, XOR data).
    model = [cfg.get("activation", "relu") if cfg.get("leak") is None
             else f"{cfg['activation']}({cfg['leak']:g})",
             f"{cfg.get('loss', 'logistic')} loss"]
    if "data" in cfg:  # generated data; a fit() describes the caller's data by its sizes only
        model.append(f"{cfg['data']} data")
    if model[:2] != ["relu", "logistic loss"] or model[2:] not in ([], ["xor data"]):
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
