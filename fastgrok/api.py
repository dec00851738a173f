"""The public entry points.

:func:`run` (the paper's experiment), :func:`fit` (a user's own data) and :func:`step` (one in-place
step on the caller's arrays).
"""
from __future__ import annotations

import time

import numpy as np

from . import _validate as v
from .config import DTYPES, Config, check_field, renamed_arguments
from .driver import drive
from .model import Model
from .plan import Plan, plan_arrays, plan_experiment, warn_if_experimental
from .sources import ArraySource, GeneratedSource, ReducedSource


def run(cfg: Config, progress: bool = True, n_threads=None):
    """Run the experiment ``cfg`` describes.

    ``cfg.runs`` independent runs, each drawing its data and initialisation from (cfg.seed, run).

    Parameters
    ----------
    cfg : Config
        The experiment (see :func:`fastgrok.preset` for the paper's settings).
    progress : bool
        Show progress (a bar on a terminal, plain lines in a log).
    n_threads : int, optional
        CPU threads for the numba engines (default: all available); results do not depend on it.

    Returns
    -------
    Result
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a fastgrok.Config, got {type(cfg).__name__}")
    plan = plan_experiment(cfg)
    Src = ReducedSource if plan.representation == "reduced" else GeneratedSource
    return _execute(plan, cfg.to_dict(effective=True), lambda ids: [Src(cfg, r) for r in ids],
                    cfg.runs, cfg.lr, cfg.mean_norm, progress, n_threads, Model.of(cfg),
                    second_mean=cfg.data == "xor")


def _execute(plan: Plan, config: dict, sources, runs: int, lr: float, mu_norm, progress, n_threads,
           model, second_mean=True):
    """Shared by run and fit: the thread runtime, the driver, the Result."""
    from .results import Result

    t0 = time.perf_counter()
    eng = plan.engine
    with eng.runtime(n_threads) as threads:
        rows, proj, counts = drive(lambda ids, on_built: eng(sources(ids), lr, plan.dtype,
                                                     n_threads=threads, on_built=on_built,
                                                     model=model),
                           list(range(runs)), plan.batch, plan.steps, plan.snapshot_steps, mu_norm,
                           progress=progress, desc=f"fastgrok {plan.engine_name}",
                           second_mean=second_mean)
    info = {"engine": plan.engine_name, "dtype": plan.dtype, "representation": plan.representation,
            "working_p": plan.p, "wall_s": round(time.perf_counter() - t0, 3)}
    info.update(eng.describe(counts))  # what the engines did beyond plain steps
    return Result(config, rows, proj, info)


def fit(X, y, m, lr, steps, X_test=None, y_test=None, *, mu1=None, mu2=None, init_scale=1e-15,
        second_layer="random", runs=1, seed=0, method="auto", backend="auto", dtype=None,
        snapshot_steps=None, progress=False, n_threads=None, activation="relu", leak=None,
        loss="logistic", **renamed):
    """Train the paper's network (or another member of its family) on the caller's data.

    Parameters
    ----------
    X : (n, p) array
        Training inputs (finite).
    y : (n,) array
        Training labels in {-1, +1}.
    m : int
        Hidden neurons.
    lr : float
        Step size alpha.
    steps : int
        Gradient steps.
    X_test, y_test : arrays, optional
        A test set (labels in {-1, +1}); test metrics are NaN without one.
    mu1, mu2 : (p,) arrays, optional
        Directions whose projections W mu_k are tracked (alignment columns are NaN without them).
    init_scale : float
        Standard deviation of the initial weights.
    second_layer : {"random", "balanced"}
        Signs of the fixed second layer.
    runs : int
        Independent initialisations (run r draws a and W0 from (seed, r)); the data stay fixed.
    seed : int
        Seed of the initialisation.
    method, backend : str
        As in :class:`~fastgrok.Config`.
    dtype : {"float32", "float64"}, optional
        Working precision; default X's dtype if it is float32/float64, else float64.
    snapshot_steps : sequence of int, optional
        Steps at which W mu1, W mu2 are kept (formerly ``hist_steps``).
    progress : bool
        Show a progress bar.
    n_threads : int, optional
        CPU threads for the numba engines.
    activation, leak, loss
        The network's activation and loss, as the Config fields of the same names.

    Returns
    -------
    Result
    """
    if renamed:  # the old names of renamed arguments, for this version
        new = renamed_arguments(renamed, "fit")
        unknown = set(new) - {"snapshot_steps", "second_layer"}
        if unknown:
            raise TypeError(f"fit() got unexpected keyword argument(s) {sorted(unknown)}")
        snapshot_steps = new.get("snapshot_steps", snapshot_steps)
        second_layer = new.get("second_layer", second_layer)
    model = Model(activation, leak, loss)  # checked first, like every other argument
    if dtype is None:
        dtype = str(np.asarray(X).dtype) if str(np.asarray(X).dtype) in DTYPES else "float64"
    # The scalar arguments are checked by the same validators as Config's fields.
    checked = {name: check_field(name, value) for name, value in (
        ("m", m), ("lr", lr), ("steps", steps), ("init_scale", init_scale), ("runs", runs),
        ("seed", seed), ("method", method), ("backend", backend), ("dtype", dtype),
        ("second_layer", second_layer))}
    m, steps, runs, seed = checked["m"], checked["steps"], checked["runs"], checked["seed"]
    if snapshot_steps is not None:
        snapshot_steps = check_field("snapshot_steps", snapshot_steps, steps=steps)
    X = v.float_array("X", X, 2, dtype)
    n, p = X.shape
    y = v.labels("y", y, n, dtype)
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test must be given together")
    n_test = 0
    if X_test is not None:
        X_test = v.float_array("X_test", X_test, 2, dtype)
        if X_test.shape[1] != p:
            raise ValueError(f"X_test has {X_test.shape[1]} columns but X has {p}")
        n_test = X_test.shape[0]
        y_test = v.labels("y_test", y_test, n_test, dtype)
    if (mu1 is None) != (mu2 is None):
        raise ValueError("mu1 and mu2 must be given together")
    mu_norm = None
    if mu1 is not None:
        mu1, mu2 = (v.float_array(name, mu, 1, dtype) for name, mu in (("mu1", mu1), ("mu2", mu2)))
        for name, mu in (("mu1", mu1), ("mu2", mu2)):
            if mu.shape[0] != p:
                raise ValueError(f"{name} has length {mu.shape[0]} but X has {p} columns")
        mu_norm = float(np.linalg.norm(np.asarray(mu1, dtype=np.float64)))
    plan = plan_arrays(n, p, m, n_test, dtype, method, backend, steps, snapshot_steps)

    def sources(ids):
        return [ArraySource(X, y, m, checked["init_scale"], seed, r, second_layer, X_test,
                            y_test, mu1, mu2) for r in ids]

    config = {"n": n, "p": p, "m": m, "n_test": n_test, "lr": checked["lr"], "steps": steps,
              "runs": runs, "seed": seed, "init_scale": checked["init_scale"],
              "second_layer": second_layer, "method": method, "backend": backend,
              "dtype": dtype, "snapshot_steps": list(plan.snapshot_steps),
              "activation": model.activation,
              "leak": model.slope if model.activation == "leaky_relu" else None,
              "loss": model.loss}
    return _execute(plan, config, sources, runs, checked["lr"], mu_norm, progress, n_threads, model)


def step(X, y, W, a, lr, backend="auto", n_threads=None, activation="relu", leak=None,
         loss="logistic"):
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
        Labels in {-1, +1}.
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

    Returns
    -------
    W : the same array, updated.
    """
    model = Model(activation, leak, loss)
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

    v.once_per_buffer(W, finite)
    dt = W.dtype
    X = v.once_per_buffer(X, lambda arr: v.float_array("X", arr, 2, dt))
    n, p = X.shape
    if W.shape[1] != p:
        raise ValueError(f"W has {W.shape[1]} columns but X has {p}")
    # Labels and second layer in float64, as every engine uses them.
    y = v.once_per_buffer(y, lambda arr: v.labels("y", arr, n, np.float64))
    a = v.once_per_buffer(a, lambda arr: v.float_array("a", arr, 1, np.float64))
    if a.shape[0] != W.shape[0]:
        raise ValueError(f"a has length {a.shape[0]} but W has {W.shape[0]} rows")
    lr = check_field("lr", lr)
    backend = check_field("backend", backend)
    on_device = xp is not np
    if backend == "auto":  # device arrays stay on their device; host arrays use the CPU kernels
        backend = "cupy" if on_device else "numba"
    if (backend == "cupy") != on_device:
        raise TypeError(f"backend={backend!r} takes {'CuPy' if backend == 'cupy' else 'NumPy'} "
                        f"arrays, got {type(W).__module__}.{type(W).__name__}")
    warn_if_experimental(backend)
    from .engines import get_engine

    get_engine("direct", backend).step_fn(X, y, W, a, lr, n_threads=n_threads, model=model)
    return W


__all__ = ["run", "fit", "step"]
