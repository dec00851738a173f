"""The public entry points.

:func:`run` (the paper's experiment), :func:`fit` (a user's own data) and :func:`step` (one in-place
step on the caller's arrays).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from . import _validate as v
from . import tunables
from .config import Config, check_decay, check_field, renamed_arguments
from .driver import default_snapshot_steps, drive
from .model import Model
from .plan import Plan, plan_experiment, warn_if_experimental
from .sources import GeneratedSource, ReducedSource
from .trainer import Setup, check_rules

if TYPE_CHECKING:
    from .results import Result


def run(cfg: Config, progress: bool = True, n_threads: int | None = None, *,
        stop: str | Callable | None = None, metrics: Mapping | None = None,
        track: Mapping | None = None, keep_networks: bool = False,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: float | str = 600.0) -> Result:
    """Run the experiment ``cfg`` describes.

    ``cfg.runs`` independent runs, each drawing its data and initialisation from (cfg.seed, run)
    (the paper's setup [1]_, or a member of its model family).

    Parameters
    ----------
    cfg : Config
        The experiment (see :func:`fastgrok.preset` for the paper's settings).
    progress : bool
        Show progress (a bar on a terminal, plain lines in a log).
    n_threads : int, optional
        CPU threads for the numba engines (default: all available); results do not depend on it.
    stop, metrics : optional
        A stop rule and metrics of your own, as :func:`fit` takes them.
    track : dict, optional
        Name -> (p,) direction whose projections W v are kept at the snapshot steps, as
        :func:`fit` takes it (the full representation only: the reduced one has no p
        coordinates).
    keep_networks : bool
        Keep each run's network at the snapshot steps and its last step
        (:meth:`Result.weights`, :meth:`Result.decision_function`, :meth:`Result.to_torch`;
        the full representation only). Off by default: the paper's left panel would keep 700
        networks, about 1 GiB.
    checkpoint : path, optional
        A checkpoint file for a long run: the training state is written there (atomically)
        every ``checkpoint_every``; if the file exists, the run resumes from it, and its
        history is bit for bit an uninterrupted run's. Deleted when the run completes. A
        checkpoint of another config is refused (ValueError), a damaged one too
        (:class:`fastgrok.DamagedFileError`). Not with ``stop`` or ``metrics`` (functions
        are not saved).
    checkpoint_every : float or str
        Seconds between checkpoints, or a text such as ``"10m"`` (default: 10 minutes). The
        state is written at the end of a driver segment (every 64 steps at most).

    Returns
    -------
    Result
        What ran and what it gave: ``history`` (one row per run and evaluated step: run, step,
        train_acc, train_loss, test_acc, test_loss, pos_mu1, pos_mu2, neg_mu1, neg_mu2,
        train_acc_clean and train_acc_flipped (the accuracy on the training samples whose labels
        were kept and on those that were flipped), test_acc_se with a population test, and the
        metrics' columns), ``projections`` (W mu1, W mu2 at the snapshot steps), ``config``
        (the effective settings), ``stop_steps`` and ``info``: engine (method/backend), dtype,
        representation, working_p, wall_s, and on the CPU's gram engine linear_fraction,
        near_linear_fraction and pattern_changes_per_step.

    Raises
    ------
    TypeError
        ``cfg`` is not a :class:`Config`.
    InsufficientMemoryError
        The planned run would not fit in the memory available now (raised before any work).
    RuntimeError
        ``backend="cupy"`` without CuPy or a usable GPU.

    See Also
    --------
    preset : the paper's settings as a Config.
    fit : the same training on arrays of your own.
    sweep : many experiments on a grid.

    References
    ----------
    .. [1] Z. Xu, Y. Wang, S. Frei, G. Vardi, W. Hu, "Benign Overfitting and Grokking in ReLU
       Networks for XOR Cluster Data", ICLR 2024, arXiv:2310.02541.

    Examples
    --------
    >>> import fastgrok as fg
    >>> res = fg.run(fg.preset("quick", runs=2, steps=5), progress=False)
    >>> res.info["engine"], res.info["representation"]
    ('gram/numba', 'reduced')
    >>> res.summary()[["step", "train_acc_median", "test_acc_median"]].iloc[[1, -1]]
       step  train_acc_median  test_acc_median
    1     1               1.0            0.465
    5     5               1.0            1.000
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a fastgrok.Config, got {type(cfg).__name__}")
    check_rules(stop, metrics)
    network_steps = ()
    if keep_networks:
        network_steps = set(cfg.snapshot_steps or default_snapshot_steps(cfg.steps)) | {cfg.steps}
    plan = plan_experiment(cfg, networks_kept=len(network_steps))
    for asked, what in ((track, "track"), (keep_networks, "keep_networks")):
        if asked and plan.representation == "reduced":
            raise ValueError(f"{what} needs the p coordinates of the weights, which the reduced "
                             f"representation does not have: use representation='full'")
    names, tracked = [], None
    if track:
        names, tracked = list(track), Setup._tracked(track, cfg.p, plan.dtype)
    if plan.representation == "reduced":
        def sources(ids):
            return [ReducedSource(cfg, r) for r in ids]
    else:
        def sources(ids):
            return [GeneratedSource(cfg, r, tracked) for r in ids]
    config = cfg.to_dict(effective=True)
    if names:
        config["track"] = names
    saver = None
    if checkpoint is not None:
        if stop is not None or metrics:
            raise ValueError("checkpoint cannot be used with stop or metrics (the functions "
                             "are not saved in the checkpoint)")
        from .checkpoint import Checkpoint, parse_interval

        identity = {"config": cfg.to_dict(), "track": names, "keep_networks": keep_networks,
                    "engine": plan.engine_name, "dtype": plan.dtype,
                    "representation": plan.representation}
        saver = Checkpoint(checkpoint, parse_interval(checkpoint_every), identity)
    res = _execute(plan, config, sources, cfg.runs, cfg.lr, cfg.mean_norm, progress, n_threads,
                   Model.of(cfg), second_mean=cfg.data in ("xor", "xor_patches"),
                   network_steps=network_steps,
                   stop=stop, metrics=metrics, track=names, stable_rank=cfg.stable_rank,
                   checkpoint=saver)
    if saver is not None:
        res.info["checkpoints_written"] = saver.written
        saver.remove()
    return res


def _execute(plan: Plan, config: dict, sources, runs: int, lr: float, mu_norm, progress, n_threads,
             model, second_mean=True, network_steps=(), stop=None, metrics=None, track=(),
             stable_rank=False, checkpoint=None):
    """Shared by run and fit: the thread runtime, the driver, the Result."""
    from .results import Result

    t0 = time.perf_counter()
    eng = plan.engine
    # A diverging run's overflow is reported once, by the driver, not by NumPy at every product.
    with eng.runtime(n_threads) as threads, np.errstate(over="ignore", invalid="ignore"):
        def reattach(engine):  # a checkpointed engine: this process's operations and threads
            engine.ops, engine.n_threads = eng.operations(), threads

        out = drive(lambda ids, on_built: eng(sources(ids), lr, plan.dtype, n_threads=threads,
                                              on_built=on_built, model=model),
                    list(range(runs)), plan.batch, plan.steps, plan.snapshot_steps, mu_norm,
                    progress=progress, desc=f"fastgrok {plan.engine_name}",
                    second_mean=second_mean, network_steps=network_steps, stop=stop,
                    metrics=metrics, track=track, stable_rank=stable_rank,
                    checkpoint=checkpoint, reattach=reattach,
                    # (the thread runtime's settings are per thread: Numba's thread count)
                    overlap=(lambda: eng.runtime(threads))
                    if eng.ops.host_threads and (threads or 1) > 1 and tunables.DRIVER_OVERLAP
                    else None)
    info = {"engine": plan.engine_name, "dtype": plan.dtype, "representation": plan.representation,
            "working_p": plan.p, "wall_s": round(time.perf_counter() - t0, 3)}
    info.update(eng.describe(out.counts))  # what the engines did beyond plain steps
    if model.stepwise and plan.method == "gram":
        info["linear_regime"] = ("off: weight decay, a trained second layer or minibatches "
                                 "change the step's algebra (dense steps)")
    elif model.regression and plan.method == "gram":
        info["linear_regime"] = "off: real-valued targets (dense steps)"

    if out.diverged:
        info["diverged"] = _report_divergence(out.diverged, lr, model)
    if stop is not None:
        config = {**config, "stop": stop if isinstance(stop, str) else getattr(
            stop, "__name__", "callable")}
    stop_steps = np.array([out.stop_steps.get(r, -1) for r in range(runs)], dtype=np.int64)
    return Result(config, out.rows, out.projections, info, networks=out.networks,
                  stop_steps=stop_steps if stop is not None else None,
                  metrics=list(metrics or ()))


def _report_divergence(diverged: dict, lr: float, model) -> dict:
    """Warn once about the runs whose outputs or loss stopped being finite; their info entry."""
    import warnings

    runs = sorted(diverged)
    last, first = ([diverged[r][k] for r in runs] for k in (0, 1))
    r0 = runs[0]
    where = (f"at step {first[0]}" if first[0] - last[0] <= 1
             else f"between steps {last[0]} and {first[0]} (the evaluated steps around it)")
    why = (" (the exponential loss exp(-y f) overflows float64 once y f < -709)"
           if model.loss == "exponential" else "")
    listed = ", ".join(map(str, runs[:10])) + (", ..." if len(runs) > 10 else "")
    warnings.warn(f"{len(runs)} run(s) diverged at lr={lr:g}{why}: their training outputs or "
                  f"loss stopped being finite (run {r0} {where}); their metrics from there on are "
                  f"NaN (history column 'diverged', info['diverged']). Runs: {listed}; a smaller "
                  "lr keeps them finite", RuntimeWarning, stacklevel=4)
    return {"runs": runs, "last_finite_step": last, "first_nonfinite_step": first}


def fit(X: ArrayLike, y: ArrayLike, *, m: int, lr: float, steps: int,
        X_test: ArrayLike | None = None, y_test: ArrayLike | None = None,
        mu1: ArrayLike | None = None, mu2: ArrayLike | None = None,
        W0: ArrayLike | None = None, a: ArrayLike | None = None,
        flipped: ArrayLike | None = None, track: Mapping | None = None,
        stop: str | Callable | None = None, metrics: Mapping | None = None,
        init_scale: float = 1e-15, second_layer: str = "random", runs: int = 1, seed: int = 0,
        method: str = "auto", backend: str = "auto", dtype: str | None = None,
        snapshot_steps: Sequence[int] | None = None, progress: bool = False,
        n_threads: int | None = None, activation: str = "relu", leak: float | None = None,
        loss: str = "logistic", weight_decay: float = 0.0, train_second_layer: bool = False,
        lr_second: float | None = None, batch_size: int | None = None,
        stable_rank: bool = False, power: float | None = None, smoothing: float | None = None,
        signal_patches: int | None = None, **renamed) -> Result:
    """Train the paper's network (or another member of its family) on the caller's data.

    Parameters
    ----------
    X : (n, p) or (n, P, d) array
        Training inputs (finite): NumPy (any order, memmap), pandas, lists, CPU torch tensors,
        JAX arrays; CuPy arrays are copied to the host. Three dimensions are the P patches of
        the two-layer CNN, f(x) = sum_j a_j sum_p phi(<w_j, x^(p)>) (X_test, W0 (m, d),
        mu1, mu2 and the tracked directions then have the patch dimension d).
    y : (n,) array
        Training labels in {-1, +1} (ints, floats, or booleans with True for +1); with
        ``loss="square"``, any real targets (a regression: the accuracy columns are NaN and
        the history gains ``test_mse``; dense steps).
    m : int
        Hidden neurons.
    lr : float
        Step size alpha.
    steps : int
        Gradient steps.
    X_test, y_test : arrays, optional
        A test set (labels in {-1, +1}); test metrics are NaN without one.
    mu1, mu2 : (p,) arrays, optional
        Directions whose projections W mu_k are tracked (alignment columns are NaN without
        them); mu1 alone for two-class data.
    W0 : (m, p) or (runs, m, p) array, optional
        Starting first layer (any real values): the same for every run, or one per run.
        Default: i.i.d. N(0, init_scale^2) drawn from (seed, run).
    a : (m,) or (runs, m) array, optional
        The fixed second layer (any real values, zeros included). Default: signs
        +-1/sqrt(m) drawn from (seed, run) as ``second_layer`` says.
    flipped : (n,) bool array, optional
        Which training labels were flipped: the history gains train_acc_clean and
        train_acc_flipped (the training accuracy on each group).
    track : dict, optional
        Name -> (p,) direction v: the projections <w_j, v> are kept at the snapshot steps as
        ``res.projections[name]`` (runs, snapshot steps, m).
    stop : None, "interpolation" or callable, optional
        "interpolation": a run stops after the first step at which it classifies every
        training label (the flipped ones included) correctly; a callable(state) -> bool gets a
        :class:`fastgrok.driver.RunState` after every step. A stopped run is frozen: it leaves
        its batch (it costs nothing more), its later history rows repeat its stop step's row,
        and ``res.stop_steps`` says where each run stopped (-1: it never did).
    metrics : dict, optional
        Name -> callable(state) -> float, recorded as history columns at the evaluated steps
        (``state`` as for ``stop``; a metric that raises is named in a RuntimeWarning and
        recorded as NaN).
    init_scale : float
        Standard deviation of the initial weights.
    second_layer : {"random", "balanced"}
        Signs of the fixed second layer (without ``a``).
    runs : int
        Independent initialisations (run r draws a and W0 from (seed, r)); the data stay fixed.
    seed : int
        Seed of the initialisation.
    method, backend : str
        As in :class:`~fastgrok.Config`.
    dtype : {"float32", "float64"}, optional
        Working precision; default X's dtype if it is float32/float64, else float64.
    snapshot_steps : sequence of int, optional
        Steps at which the projections are kept and each run's network is kept (it is always
        kept at the last step): :meth:`Result.weights`, :meth:`Result.decision_function`.
    progress : bool
        Show a progress bar.
    n_threads : int, optional
        CPU threads for the numba engines.
    activation, leak, loss, power, smoothing
        The network's activation and loss, as the Config fields of the same names (the smooth
        activations "relu_power" and "smoothed_leaky_relu" take ``power`` and ``smoothing``).
    weight_decay : float
        lambda >= 0: W <- (1 - lr lambda) W - lr grad at each step (lr lambda < 1); as the
        Config field.
    train_second_layer : bool
        Train the second layer too (from ``a``, or the drawn one), with step size ``lr_second``
        (None: ``lr``); as the Config fields. The kept networks carry their own a.
    signal_patches : int, optional
        With patches: the first ``signal_patches`` patches of each sample carry the signal and
        the others are noise, so the history gains ``noise_memorization`` (``mu1`` adds
        ``signal_learning``); as the Config field.
    lr_second : float, optional
        The second layer's step size; only with ``train_second_layer``.
    batch_size : int, optional
        Minibatch SGD with this many samples per step (:func:`batch_schedule`, from (seed, run));
        ``steps`` counts minibatch steps. None: full batch.
    stable_rank : bool
        Add the history column stable_rank = ||W||_F^2 / ||W||_2^2 at the snapshot steps (NaN
        elsewhere); the gram method assembles W W^T from blocks of the data, never forming W.
    **renamed
        ``hist_steps`` and ``second_layer_mode``, the old names of ``snapshot_steps`` and
        ``second_layer`` (a FutureWarning; they stop working in the next version).

    Returns
    -------
    Result
        As :func:`run` returns it (every ``history`` column and ``info`` key listed there);
        ``config`` holds fit's arguments and the data's sizes, the alignment columns are NaN
        without ``mu1``, the flip columns absent without ``flipped`` and the test columns NaN
        without a test set.

    Raises
    ------
    TypeError
        An argument of the wrong type (named in the message), or an unknown keyword.
    ValueError
        An argument out of range, arrays of mismatched shapes, non-finite inputs or labels
        outside {-1, +1} (each named in the message).
    InsufficientMemoryError
        The planned run (with its kept networks) would not fit in the memory available now.

    See Also
    --------
    run : the paper's experiment from a Config.
    Trainer : the same network, stepped by your own loop.
    step : one step on arrays you hold.
    xor_clusters, linear_clusters : the data models as arrays.

    References
    ----------
    .. [1] Z. Xu, Y. Wang, S. Frei, G. Vardi, W. Hu, "Benign Overfitting and Grokking in ReLU
       Networks for XOR Cluster Data", ICLR 2024, arXiv:2310.02541.

    Examples
    --------
    >>> import fastgrok as fg
    >>> ds = fg.xor_clusters(100, 2000, n_test=100, noise_rate=0.1, seed=1)
    >>> res = fg.fit(ds.X, ds.y, m=50, lr=0.01, steps=30, X_test=ds.X_test, y_test=ds.y_test,
    ...              init_scale=1e-3, flipped=ds.flipped)
    >>> last = res.history[res.history.step == 30]
    >>> float(last.train_acc.iloc[0]), float(last.test_acc.iloc[0])
    (1.0, 0.97)
    >>> float(last.train_acc_flipped.iloc[0])  # the flipped labels are fitted too
    1.0
    >>> W, a = res.weights()
    >>> W.shape
    (50, 2000)
    """
    if renamed:  # the old names of renamed arguments, for this version
        new = renamed_arguments(renamed, "fit", renames={
            "hist_steps": "snapshot_steps", "second_layer_mode": "second_layer"})
        unknown = set(new) - {"snapshot_steps", "second_layer"}
        if unknown:
            raise TypeError(f"fit() got unexpected keyword argument(s) {sorted(unknown)}")
        snapshot_steps = new.get("snapshot_steps", snapshot_steps)
        second_layer = new.get("second_layer", second_layer)
    check_rules(stop, metrics)
    setup = Setup(X, y, m=m, lr=lr, steps=steps, X_test=X_test, y_test=y_test, mu1=mu1, mu2=mu2,
                  W0=W0, a=a, flipped=flipped, track=track, init_scale=init_scale,
                  second_layer=second_layer, runs=runs, seed=seed, method=method,
                  backend=backend, dtype=dtype, snapshot_steps=snapshot_steps,
                  activation=activation, leak=leak, loss=loss, keep_networks=True,
                  weight_decay=weight_decay, train_second_layer=train_second_layer,
                  lr_second=lr_second, batch_size=batch_size, power=power, smoothing=smoothing,
                  signal_patches=signal_patches)
    if setup.model.regression and stop == "interpolation":
        raise ValueError("stop='interpolation' needs labels -1/+1 (every label classified "
                         "correctly); y holds real-valued targets (a regression with "
                         "loss='square')")
    return _execute(setup.plan, setup.config(), setup.sources, setup.runs, setup.lr,
                    setup.mu_norm, progress, n_threads, setup.model,
                    second_mean=setup.mu2 is not None, network_steps=setup.network_steps, stop=stop,
                    metrics=metrics, track=setup.track_names,
                    stable_rank=check_field("stable_rank", stable_rank))


def step(X, y, W, a, lr: float, backend: str = "auto", n_threads: int | None = None,
         activation: str = "relu", leak: float | None = None, loss: str = "logistic", *,
         return_outputs: bool = False, weight_decay: float = 0.0, power: float | None = None,
         smoothing: float | None = None):
    """One full-batch gradient-descent step on the mean loss, in place on ``W``.

    w_j <- w_j + (lr a_j / n) sum_i g_i phi'(<w_j, x_i>) y_i x_i with g_i = -l'(y_i f_i)
    (logistic loss: g_i = 1 / (1 + exp(y_i f_i)); ReLU: phi'(z) = 1[z > 0]).

    Parameters
    ----------
    X : (n, p) array
        Inputs; converted to W's dtype if it differs. On CuPy arrays each array is checked
        (finite, labels +-1) the first time its buffer is passed, not at every call: a check is
        a device synchronisation.
    y : (n,) array
        Labels in {-1, +1}; with ``loss="square"``, any real targets.
    W : (m, p) float32 or float64 array
        First-layer weights, updated in place (must be writable and C-contiguous).
    a : (m,) array
        Second-layer weights.
    lr : float
        Step size (> 0).
    backend : {"auto", "numpy", "numba", "cupy"}
        Compute backend.
    n_threads : int, optional
        CPU threads for the numba backend (restored afterwards).
    activation, leak, loss
        The network's activation and loss, as the Config fields of the same names.
    return_outputs : bool
        Also return the outputs f = phi(X W^T) a (n,) the step computed from W before the
        update (a loop's metrics need no second forward pass).
    weight_decay : float
        lambda >= 0: W <- (1 - lr lambda) W + (the update above); lr lambda < 1.
    power, smoothing : float, optional
        The smooth activations' parameters, as the Config fields.

    Returns
    -------
    W : array
        The same array, updated.
    f : (n,) float64 array
        With ``return_outputs``: the outputs before the update (on W's device).

    Raises
    ------
    TypeError
        W is not a float32/float64 array, or the arrays are not on the backend's device.
    ValueError
        Shapes that do not match, W not writable and C-contiguous, non-finite inputs or labels
        outside {-1, +1}.

    See Also
    --------
    fit : many steps, with the history and the evaluation.
    fastgrok.reference.step : the float64 NumPy reference this step is tested against.

    References
    ----------
    .. [1] Z. Xu, Y. Wang, S. Frei, G. Vardi, W. Hu, "Benign Overfitting and Grokking in ReLU
       Networks for XOR Cluster Data", ICLR 2024, arXiv:2310.02541.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgrok as fg
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.standard_normal((20, 50)), np.where(rng.random(20) < 0.5, 1.0, -1.0)
    >>> W, a = rng.standard_normal((8, 50)), np.full(8, 1 / np.sqrt(8))
    >>> W0 = W.copy()
    >>> fg.step(X, y, W, a, lr=0.1) is W
    True
    >>> bool(np.any(W != W0))
    True
    >>> W, f = fg.step(X, y, W, a, lr=0.1, return_outputs=True)
    >>> f.shape
    (20,)
    """
    model = Model(activation, leak, loss, weight_decay, power=power, smoothing=smoothing)
    xp = v._xp(W)
    if not hasattr(W, "dtype") or W.dtype not in (np.float32, np.float64):
        raise TypeError(f"W must be a float32 or float64 array, got {getattr(W, 'dtype', type(W))}")
    if W.ndim != 2:
        raise ValueError(f"W must be 2-dimensional (m, p), got shape {W.shape}")
    if not W.flags.c_contiguous or (xp is np and not W.flags.writeable):
        raise ValueError("W must be a writable C-contiguous array (it is updated in place)")

    def finite(arr):
        if not bool(xp.isfinite(arr).all()):
            raise ValueError("W contains NaN or inf")
        return arr

    on_device = xp is not np
    dt = W.dtype
    if on_device:
        v.once_per_buffer(W, finite)
        X = v.once_per_buffer(X, lambda arr: v.float_array("X", arr, 2, dt))
    else:
        # On the host, X and W are checked through the outputs the step computes from them
        # before it changes W (a scan of X and W at every call would cost 15% of a step at
        # n = m = 100, p = 5000); the scans run only to name the culprit.
        X = v.float_array("X", v.host_array("X", X), 2, dt, finite=False)
    n, p = X.shape
    if W.shape[1] != p:
        raise ValueError(f"W has {W.shape[1]} columns but X has {p}")
    # Labels and second layer in float64, as every engine uses them (the square loss takes
    # any real targets).
    y = v.once_per_buffer(y, lambda arr: v.targets("y", arr, n, np.float64,
                                                    real=model.loss == "square")[0])
    a = v.once_per_buffer(a, lambda arr: v.float_array("a", arr, 1, np.float64))
    if a.shape[0] != W.shape[0]:
        raise ValueError(f"a has length {a.shape[0]} but W has {W.shape[0]} rows")
    lr = check_field("lr", lr)
    check_decay(model.weight_decay, lr)
    backend = check_field("backend", backend)
    if backend == "auto":  # device arrays stay on their device; host arrays use the CPU kernels
        backend = "cupy" if on_device else "numba"
    if (backend == "cupy") != on_device:
        raise TypeError(f"backend={backend!r} takes {'CuPy' if backend == 'cupy' else 'NumPy'} "
                        f"arrays, got {type(W).__module__}.{type(W).__name__}")
    warn_if_experimental(backend)
    from .engines import get_engine

    def check_outputs(f):
        if not bool(np.isfinite(f).all()):
            finite(W)
            v.float_array("X", X, 2)
            raise ValueError("the outputs phi(X W^T) a are not finite (they overflow): W is "
                             "left unchanged")

    # (NumPy would warn about the NaN that check_outputs reports with a clearer message.)
    with np.errstate(invalid="ignore", over="ignore"):
        f = get_engine("direct", backend).step_fn(
            X, y, W, a, lr, n_threads=n_threads, model=model,
            check_outputs=None if on_device else check_outputs)
    return (W, f) if return_outputs else W


__all__ = ["run", "fit", "step"]
