"""Training on the caller's arrays: the setup shared by :func:`fastgrok.fit` and :class:`Trainer`.

:class:`Trainer` is the stateful front door a research loop drives itself (step, read the
outputs, the weights, the projections, predict); :func:`fastgrok.fit` trains many steps with the
history, stop rules and metrics. Both check and plan through :class:`Setup` and train with the
same engines (:mod:`fastgrok.engines`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from . import _validate as v
from .config import DTYPES, check_batch, check_decay, check_field, check_patches, check_second_layer
from .model import Model
from .plan import plan_arrays
from .sources import ArraySource

#: The horizon a Trainer's method="auto" plans for (it does not know how many steps will come).
TRAINER_PLANNING_STEPS = 100


class Setup:
    """The checked arrays and options of one training on the caller's data, and its plan.

    Every argument is checked here, named in the error; see :func:`fastgrok.fit` for their
    meaning. ``sources(ids)`` gives the run sources of the runs ``ids``.
    """

    def __init__(self, X, y, *, m, lr, steps, X_test=None, y_test=None, mu1=None, mu2=None,
                 W0=None, a=None, flipped=None, track=None, init_scale=1e-15,
                 second_layer="random", runs=1, seed=0, method="auto", backend="auto",
                 dtype=None, snapshot_steps=None, activation="relu", leak=None,
                 loss="logistic", keep_networks=False, weight_decay=0.0,
                 train_second_layer=False, lr_second=None, batch_size=None, power=None,
                 smoothing=None, signal_patches=None):
        # The model is checked first, like every other argument.
        check_field("train_second_layer", train_second_layer)
        check_second_layer(train_second_layer, lr_second)
        lr_a = None
        if train_second_layer:
            lr_a = check_field("lr", lr) if lr_second is None else lr_second
        self.model = Model(activation, leak, loss, weight_decay, lr_a, batch_size, power,
                           smoothing)
        X = v.host_array("X", X)
        if dtype is None:
            dtype = str(np.asarray(X).dtype)
            dtype = dtype if dtype in DTYPES else "float64"
        checked = {name: check_field(name, value) for name, value in (
            ("m", m), ("lr", lr), ("steps", steps), ("init_scale", init_scale), ("runs", runs),
            ("seed", seed), ("method", method), ("backend", backend), ("dtype", dtype),
            ("second_layer", second_layer))}
        self.m, self.steps, self.runs, self.seed = (checked[k] for k in ("m", "steps", "runs",
                                                                          "seed"))
        self.lr, self.init_scale = checked["lr"], checked["init_scale"]
        check_decay(self.model.weight_decay, self.lr)
        if self.model.lr_second is not None:
            check_decay(self.model.weight_decay, self.model.lr_second)
        m, runs = self.m, self.runs
        if snapshot_steps is not None:
            snapshot_steps = check_field("snapshot_steps", snapshot_steps, steps=self.steps)
        patched = len(np.shape(X)) == 3
        X, patches = self._inputs("X", X, dtype)
        check_patches(patches, backend=checked["backend"])
        self.model = dataclasses.replace(self.model, patches=patches)
        self.X = X  # (n P, d): a row per patch
        n, p = X.shape[0] // patches, X.shape[1]
        self.noise_rows = None
        if signal_patches is not None:
            if not patched:
                raise ValueError("signal_patches needs inputs of patches: X of shape (n, P, d)")
            signal_patches = check_field("signal_patches", signal_patches)
            if signal_patches > patches:
                raise ValueError(f"signal_patches must be <= the patches per sample ({patches}), "
                                 f"got {signal_patches}")
            self.noise_rows = np.flatnonzero(np.arange(n * patches) % patches >= signal_patches)
        check_batch(self.model.batch_size, n)
        self.y = self._labels("y", y, n, dtype)
        if (X_test is None) != (y_test is None):
            raise ValueError("X_test and y_test must be given together")
        self.X_test = self.y_test = None
        n_test = 0
        if X_test is not None:
            self.X_test, test_patches = self._inputs("X_test", v.host_array("X_test", X_test),
                                                     dtype)
            if test_patches != patches:
                raise ValueError(f"X_test must have {patches} patch(es) per sample like X, got "
                                 f"shape {np.shape(X_test)}")
            if self.X_test.shape[1] != p:
                raise ValueError(f"X_test has {self.X_test.shape[1]} columns but X has {p}")
            n_test = self.X_test.shape[0] // patches
            self.y_test = self._labels("y_test", y_test, n_test, dtype)
        if mu1 is None and mu2 is not None:
            raise ValueError("mu2 needs mu1 (mu1 alone is enough for two-class data)")
        self.mu1 = self.mu2 = self.mu_norm = None
        if mu1 is not None:
            self.mu1 = self._vector("mu1", mu1, p, dtype)
            self.mu2 = None if mu2 is None else self._vector("mu2", mu2, p, dtype)
            self.mu_norm = float(np.linalg.norm(np.asarray(self.mu1, dtype=np.float64)))
        self.flipped = None
        if flipped is not None and self.model.regression:
            raise ValueError("flipped= needs labels -1/+1 (it splits the training accuracy); "
                             "y holds real-valued targets (a regression with loss='square')")
        if flipped is not None:
            fl = np.asarray(v.host_array("flipped", flipped))
            if fl.shape != (n,) or fl.dtype.kind not in "bi" or not np.isin(fl, (0, 1)).all():
                raise ValueError(f"flipped must be {n} booleans (which training labels were "
                                 f"flipped), got {fl.dtype} of shape {fl.shape}")
            self.flipped = fl.astype(bool)
        self.track_names = list(track or ())
        self.tracked = self._tracked(track, p, dtype)
        self.W0 = self._first_layer(W0, runs, m, p, dtype)
        self.a = self._second_layer(a, runs, m)
        self.second_layer = second_layer
        self.n, self.p, self.n_test, self.dtype = n, p, n_test, dtype
        # fit keeps each run's network at the snapshot steps it was given and at the last.
        self.network_steps = (set(snapshot_steps or ()) | {self.steps}) if keep_networks else set()
        self.plan = plan_arrays(n * patches, p, m, n_test * patches, dtype, method, backend,
                                self.steps,
                                snapshot_steps, runs=runs, networks_kept=len(self.network_steps))

    def _labels(self, name, y, n, dtype):
        """Labels in {-1, +1}; with the square loss, any real targets (a regression).

        Targets that are not all +-1 make the model a regression (:attr:`Model.regression`).
        """
        arr, labelled = v.targets(name, v.host_array(name, y), n, dtype,
                                  real=self.model.loss == "square")
        if not labelled:
            self.model = dataclasses.replace(self.model, regression=True)
        return arr

    @staticmethod
    def _inputs(name, X, dtype):
        """(rows, patches): inputs (n, p), or patches (n, P, d) as n P rows of d (a CNN's)."""
        shape = np.shape(X)
        if len(shape) != 3:
            return v.float_array(name, X, 2, dtype), 1
        X = v.float_array(name, X, 3, dtype)
        n, P, d = X.shape
        return np.ascontiguousarray(X.reshape(n * P, d)), P

    @staticmethod
    def _vector(name, vec, p, dtype):
        arr = v.float_array(name, v.host_array(name, vec), 1, dtype)
        if arr.shape[0] != p:
            raise ValueError(f"{name} has length {arr.shape[0]} but X has {p} columns")
        return arr

    @classmethod
    def _tracked(cls, track, p, dtype):
        """The tracked directions (k, p) of ``track`` (None when empty), checked."""
        if track is None:
            return None
        if not isinstance(track, Mapping):
            raise TypeError(f"track must be a dict of name -> (p,) vector, got "
                            f"{type(track).__name__}")
        for name in track:
            if not isinstance(name, str) or name in ("mu1", "mu2"):
                raise ValueError(f"track names must be strings other than 'mu1' and 'mu2', "
                                 f"got {name!r}")
        if not track:
            return None
        return np.stack([cls._vector(f"track[{k!r}]", vec, p, dtype) for k, vec in track.items()])

    @staticmethod
    def _first_layer(W0, runs, m, p, dtype):
        if W0 is None:
            return None
        W0 = v.host_array("W0", W0)
        shape = np.shape(W0)
        if shape not in ((m, p), (runs, m, p)):
            raise ValueError(f"W0 must have shape (m, p) = ({m}, {p}) or (runs, m, p) = "
                             f"({runs}, {m}, {p}), got {shape}")
        return v.float_array("W0", W0, len(shape), dtype)

    @staticmethod
    def _second_layer(a, runs, m):
        if a is None:
            return None
        a = v.host_array("a", a)
        shape = np.shape(a)
        if shape not in ((m,), (runs, m)):
            raise ValueError(f"a must have shape (m,) = ({m},) or (runs, m) = ({runs}, {m}), "
                             f"got {shape}")
        return v.float_array("a", a, len(shape), np.float64)

    def sources(self, ids):
        """The run sources of runs ``ids`` (the data shared, W0 and a per run)."""
        def per_run(arr, ndim, r):
            return None if arr is None else (arr if arr.ndim == ndim else arr[r])

        return [ArraySource(self.X, self.y, self.m, self.init_scale, self.seed, r,
                            self.second_layer, self.X_test, self.y_test, self.mu1, self.mu2,
                            W0=per_run(self.W0, 2, r), a=per_run(self.a, 1, r),
                            flipped=self.flipped, tracked=self.tracked,
                            patches=self.model.patches, noise_rows=self.noise_rows)
                for r in ids]

    def config(self) -> dict:
        """The settings, as a Result's ``config``."""
        model = self.model
        return {"n": self.n, "p": self.p, "m": self.m, "n_test": self.n_test, "lr": self.lr,
                "steps": self.steps, "runs": self.runs, "seed": self.seed,
                "init_scale": None if self.W0 is not None else self.init_scale,
                "second_layer": "given" if self.a is not None else self.second_layer,
                "W0": "given" if self.W0 is not None else "drawn",
                "method": self.plan.method, "backend": self.plan.backend, "dtype": self.dtype,
                "snapshot_steps": list(self.plan.snapshot_steps), "track": self.track_names,
                "activation": model.activation,
                "leak": model.slope if model.activation in ("leaky_relu", "smoothed_leaky_relu")
                else None,
                "power": model.act_param if model.activation == "relu_power" else None,
                "smoothing": model.act_param if model.activation == "smoothed_leaky_relu" else None,
                "loss": model.loss, "weight_decay": model.weight_decay,
                "train_second_layer": model.lr_second is not None, "lr_second": model.lr_second,
                "batch_size": model.batch_size, "patches": model.patches}


class Trainer:
    """The network of :func:`fastgrok.fit`, stepped by the caller's own loop.

    A research loop steps it, reads what it needs, and steps again, at the speed of the chosen
    method: the gram method's steps cost O(n^2 m) whatever p is; nothing is formed that is not
    asked for (the weights only by :meth:`weights`).

    Parameters
    ----------
    X, y, m, lr, X_test, y_test, W0, a, mu1, mu2, flipped, track, init_scale, second_layer, runs,
    seed, backend, dtype, activation, leak, loss, weight_decay, train_second_layer, lr_second,
    batch_size, power, smoothing, signal_patches
        As in :func:`fastgrok.fit`.
    method : {"auto", "gram", "direct"}
        "auto" plans for ``TRAINER_PLANNING_STEPS`` steps (a Trainer does not know how many
        will come): the gram method unless its build costs more than that many direct steps.
    n_threads : int, optional
        CPU threads for the numba backend (results do not depend on it).

    Attributes
    ----------
    step_count : int
        Steps taken.
    runs : int
        Runs held (each run r has its own W0 and a, drawn from (seed, r) unless given).
    info : dict
        engine (method/backend), dtype.

    See Also
    --------
    fit : many steps at once, with the history, stop rules and metrics.
    step : one step in place on arrays you hold.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgrok as fg
    >>> ds = fg.linear_clusters(40, 2000, n_test=100, mu_norm=6.0, noise_rate=0.1, seed=0)
    >>> a = np.where(np.arange(16) < 8, 1.0, -1.0) / 4  # a second layer of your choice
    >>> tr = fg.Trainer(ds.X, ds.y, m=16, lr=1.0, a=a, X_test=ds.X_test, y_test=ds.y_test,
    ...                 init_scale=1e-3, loss="hinge")
    >>> while not np.all(ds.y * tr.outputs() > 0):  # until the training error is 0
    ...     _ = tr.step()
    >>> tr.step_count, float(np.mean(ds.y_test * tr.test_outputs() > 0))  # flips fitted, benign
    (1, 1.0)
    >>> W, a2 = tr.weights()
    >>> W.shape, bool(np.allclose(tr.decision_function(ds.X), tr.outputs()))
    ((16, 2000), True)
    """

    def __init__(self, X, y, *, m: int, lr: float, X_test=None, y_test=None, W0=None, a=None,
                 mu1=None, mu2=None, flipped=None, track: Mapping | None = None,
                 init_scale: float = 1e-15, second_layer: str = "random", runs: int = 1,
                 seed: int = 0, method: str = "auto", backend: str = "auto",
                 dtype: str | None = None, n_threads: int | None = None,
                 activation: str = "relu", leak: float | None = None, loss: str = "logistic",
                 weight_decay: float = 0.0, train_second_layer: bool = False,
                 lr_second: float | None = None, batch_size: int | None = None,
                 power: float | None = None, smoothing: float | None = None,
                 signal_patches: int | None = None):
        self._setup = s = Setup(
            X, y, m=m, lr=lr, steps=TRAINER_PLANNING_STEPS, X_test=X_test, y_test=y_test,
            mu1=mu1, mu2=mu2, W0=W0, a=a, flipped=flipped, track=track, init_scale=init_scale,
            second_layer=second_layer, runs=runs, seed=seed, method=method, backend=backend,
            dtype=dtype, activation=activation, leak=leak, loss=loss, weight_decay=weight_decay,
            train_second_layer=train_second_layer, lr_second=lr_second, batch_size=batch_size,
            power=power, smoothing=smoothing, signal_patches=signal_patches)
        self.n_threads = n_threads
        self._binding = s.plan.engine
        # The runs in batches, as fit holds them (the direct method: one run per engine).
        batches = [list(range(r0, min(r0 + s.plan.batch, s.runs)))
                   for r0 in range(0, s.runs, s.plan.batch)]
        with self._binding.runtime(n_threads) as nt:
            self._engines = [self._binding(s.sources(ids), s.lr, s.plan.dtype, n_threads=nt,
                                           model=s.model) for ids in batches]
        self._where = [(b, i) for b, ids in enumerate(batches) for i in range(len(ids))]
        self.step_count = 0
        self.runs = s.runs
        self.info = {"engine": s.plan.engine_name, "dtype": s.plan.dtype}
        self._evaluation = self._outputs = None

    def __repr__(self):
        """Sizes, engine and steps taken."""
        s = self._setup
        return (f"<fastgrok.Trainer n={s.n} p={s.p} m={s.m} runs={s.runs} "
                f"engine={self.info['engine']} step_count={self.step_count}>")

    def step(self, k: int = 1) -> "Trainer":
        """Take ``k`` full-batch gradient steps (every run); returns the trainer."""
        k = v.positive_int("k", k)
        with self._binding.runtime(self.n_threads) as nt:
            for engine in self._engines:
                engine.n_threads = nt
                engine.advance(k, prepare_eval=True)
        self.step_count += k
        self._evaluation = self._outputs = None
        return self

    def _evaluate(self):
        if self._evaluation is None:
            with self._binding.runtime(self.n_threads) as nt:
                self._evaluation = []
                for engine in self._engines:
                    engine.n_threads = nt
                    self._evaluation += engine.evaluate(
                        projections=engine.sources[0].n_directions > 0)
        return self._evaluation

    def _run(self, run):
        if isinstance(run, bool) or not isinstance(run, (int, np.integer)) \
                or not 0 <= run < self.runs:
            raise ValueError(f"run must be an integer in [0, {self.runs}), got {run!r}")
        return int(run)

    def outputs(self, run: int = 0) -> np.ndarray:
        """The training outputs f(x_i) (n,) now, float64."""
        run = self._run(run)
        if self._outputs is None:  # (no BLAS here: no thread runtime to enter)
            self._outputs = [f for engine in self._engines for f in engine.outputs()]
        return np.array(self._outputs[run], dtype=np.float64)

    def test_outputs(self, run: int = 0) -> np.ndarray:
        """The test outputs (n_test,) now, float64 (ValueError without a test set)."""
        ft = self._evaluate()[self._run(run)]["ft"]
        if ft is None:
            raise ValueError("no test set: pass X_test and y_test to the Trainer")
        return np.array(ft, dtype=np.float64)

    def evaluate(self, run: int = 0) -> dict:
        """The history's metrics now: train_acc, train_loss, test_acc, test_loss."""
        ev = self._evaluate()[self._run(run)]
        return {k: float(ev[k]) for k in ("train_acc", "train_loss", "test_acc", "test_loss")}

    def network(self, run: int = 0):
        """Run ``run``'s network now (:class:`fastgrok.network.Network`), a copy."""
        b, i = self._where[self._run(run)]
        with self._binding.runtime(self.n_threads) as nt:
            self._engines[b].n_threads = nt
            return self._engines[b].network(i)

    def weights(self, run: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(W, a) now: W (m, p) in the working dtype, a (m,) float64 (copies)."""
        return self.network(run).weights()

    def project(self, v, run: int = 0) -> np.ndarray:
        """<w_j, v>: W v (m,) for v (p,), or W V^T (m, k) for V (k, p); float64."""
        return self.network(run).project(v)

    def decision_function(self, X, run: int = 0) -> np.ndarray:
        """The network's outputs (q,) on new inputs X (q, p), float64."""
        return self.network(run).decision_function(_inputs(X))

    def predict(self, X, run: int = 0) -> np.ndarray:
        """Labels in {-1, +1} (q,) for new inputs X (q, p) (an output of 0 gives -1)."""
        return np.where(self.decision_function(X, run) > 0, 1.0, -1.0)


def _inputs(X):
    return v.inputs("X", X)


def check_rules(stop, metrics):
    """Check ``stop`` and ``metrics`` as :func:`fastgrok.fit` takes them (named errors)."""
    if stop is not None and stop != "interpolation" and not callable(stop):
        raise ValueError(f"stop must be None, 'interpolation' or a callable(state) -> bool, "
                         f"got {stop!r}")
    if metrics is not None:
        if not isinstance(metrics, Mapping):
            raise TypeError(f"metrics must be a dict of name -> callable(state) -> float, got "
                            f"{type(metrics).__name__}")
        from .driver import METRICS

        for name, fn in metrics.items():
            if not isinstance(name, str) or name in ("run", "step", *METRICS):
                raise ValueError(f"metric names must be new column names, got {name!r}")
            if not isinstance(fn, Callable):
                raise TypeError(f"metrics[{name!r}] must be callable, got {type(fn).__name__}")
