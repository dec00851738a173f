"""Experiment configuration (:class:`Config`) and the named presets.

A :class:`Config` is immutable and validated on construction, so an invalid experiment fails
before any data is drawn. Speed/memory knobs live in :mod:`fastgrok.tunables`, not here.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import numbers
import warnings
from dataclasses import dataclass, field, fields

METHODS = ("auto", "direct", "gram")
BACKENDS = ("auto", "numpy", "numba", "cupy")
DTYPES = ("float32", "float64")
SECOND_LAYER = ("random", "balanced")
MEANS = ("axis", "random")
REPRESENTATIONS = ("auto", "full", "reduced")
ACTIVATIONS = ("relu", "leaky_relu", "relu_power", "smoothed_leaky_relu")
#: The smooth members (not piecewise linear: no linear regime, their own kernels).
SMOOTH_ACTIVATIONS = ("relu_power", "smoothed_leaky_relu")
LOSSES = ("logistic", "exponential", "hinge", "square")
#: The losses of the classification studies (the square loss is a regression loss on +-1).
CLASSIFICATION_LOSSES = ("logistic", "exponential", "hinge")
DATA = ("xor", "linear", "patches", "xor_patches")
#: The patch data of the two-layer CNN (docs/design.md, "Patches"): signal and noise patches.
PATCH_DATA = ("patches", "xor_patches")
LABEL_NOISE = ("independent", "exact")
#: The leak of "leaky_relu" when none is given.
DEFAULT_LEAK = 0.1


def representation_for(representation: str, n, n_test, m, p) -> str:
    """"full" or "reduced": what the field ``representation`` means for these sizes.

    "auto" is reduced when it is valid and cheaper: valid when p - 2 >= n + n_test + m, cheaper
    (build and memory) when p exceeds the reduced dimension d = n + n_test + m + 2. The planning
    step (:mod:`fastgrok.plan`) resolves it; the Config checks that what it needs is possible.
    """
    if representation != "auto":
        return representation
    return "reduced" if p > n + n_test + m + 2 else "full"


class _Field:
    """How one Config field is checked (:meth:`check`) and read from text (:meth:`parse`).

    The same checks serve ``Config``, ``fg.fit``'s keyword arguments, the command line and sweep
    grids, so the same mistake gives the same error everywhere: TypeError for a value of the
    wrong type, ValueError for a value out of range.
    """

    numeric = False
    metavar = None
    choices = None

    def __init__(self, help=""):
        self.help = help

    def check(self, name, value, **context):
        return value

    def parse(self, text):
        return text


class _Int(_Field):
    numeric, metavar = True, "INT"

    def __init__(self, minimum=1, help="", optional=False):
        super().__init__(help)
        self.minimum, self.optional = minimum, optional
        if optional:
            self.metavar = "INT|none"

    def check(self, name, value, **context):
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
        if value < self.minimum:
            raise ValueError(f"{name} must be >= {self.minimum}, got {value}")
        return int(value)

    def parse(self, text):
        """Integers written as 40000, 40_000 or 4e4 (the last only if it is integral)."""
        if self.optional and text.strip().lower() in ("none", "full"):
            return None
        try:
            return int(text.replace("_", ""))
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
            if not value.is_integer():
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
            return int(value)


class _Float(_Field):
    numeric, metavar = True, "FLOAT"

    def __init__(self, low=None, high=None, low_open=False, high_open=False, optional=False,
                 help=""):
        super().__init__(help)
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open
        self.optional = optional
        if optional:
            self.metavar = "FLOAT|none"

    def check(self, name, value, **context):
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and (
            value >= self.high if self.high_open else value > self.high)
        if below or above:
            if self.high is None:
                raise ValueError(f"{name} must be {'>' if self.low_open else '>='} {self.low:g}, "
                                 f"got {value}")
            raise ValueError(f"{name} must be in {'(' if self.low_open else '['}{self.low:g}, "
                             f"{self.high:g}{')' if self.high_open else ']'}, got {value}")
        return value

    def parse(self, text):
        if self.optional and text.lower() in ("none", "paper", "default"):
            return None
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


class _Choice(_Field):
    def __init__(self, choices, help=""):
        super().__init__(help)
        self.choices = tuple(choices)

    def check(self, name, value, **context):
        if value not in self.choices:
            raise ValueError(f"unknown {name} {value!r}; expected one of "
                             f"{', '.join(map(repr, self.choices))}")
        return value


class _Bool(_Field):
    metavar = "true|false"

    def check(self, name, value, **context):
        if not (isinstance(value, bool) or type(value).__name__ == "bool_"):  # NumPy's too
            raise TypeError(f"{name} must be True or False, got {value!r}")
        return bool(value)

    def parse(self, text):
        low = text.strip().lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class _Steps(_Field):
    """A sorted tuple of distinct steps in [0, steps], or None."""

    metavar = "T1,T2,..."

    def check(self, name, value, steps=None, **context):
        if value is None:
            return None
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise TypeError(f"{name} must be a sequence of ints, got {value!r}")
        item = _Int(minimum=0)
        hs = tuple(sorted({item.check(name, s) for s in value}))
        if hs and steps is not None and hs[-1] > steps:
            raise ValueError(f"{name} must be <= steps={steps}, got {hs[-1]}")
        return hs

    def parse(self, text):
        return tuple(_Int().parse(t) for t in text.split(",") if t.strip())


#: The one declaration of the experiment's fields: how each is checked and read from text.
FIELDS = {
    "n": _Int(1, "training samples"),
    "p": _Int(1, "input dimension"),
    "m": _Int(1, "hidden neurons"),
    "n_test": _Int(1, "test samples"),
    "mu_norm": _Float(0, low_open=True, optional=True,
                      help="||mu1|| = ||mu2|| (none: the paper's 2.5 sqrt(p/n))"),
    "noise_rate": _Float(0, 0.5, high_open=True, help="label-flip probability of training labels"),
    "init_scale": _Float(0, help="standard deviation of the initial first-layer weights"),
    "lr": _Float(0, low_open=True, help="step size alpha"),
    "steps": _Int(1, "gradient steps"),
    "runs": _Int(1, "independent runs"),
    "seed": _Int(0, "master seed"),
    "method": _Choice(METHODS, "formulation"),
    "backend": _Choice(BACKENDS, "compute backend"),
    "dtype": _Choice(DTYPES, "working precision"),
    "second_layer": _Choice(SECOND_LAYER, "signs of the fixed second layer"),
    "means": _Choice(MEANS, "cluster means: axis-aligned or a random orthogonal pair"),
    "snapshot_steps": _Steps("steps at which W mu1, W mu2 are kept for histograms"),
    "representation": _Choice(REPRESENTATIONS, "full p-dimensional draw or the reduced one"),
    "population_test_samples": _Int(0, "fresh test samples per cluster for the population accuracy "
                               "(0: the finite test set)"),
    "activation": _Choice(ACTIVATIONS, "phi(z) = max(z, leak z): relu (leak 0) or leaky_relu; "
                          "relu_power: max(z, 0)^power; smoothed_leaky_relu: the Huberised "
                          "leaky ReLU (leak, smoothing)"),
    "leak": _Float(0, 1, high_open=True, optional=True,
                   help="leaky_relu's slope for z < 0, in [0, 1) (none: 0.1)"),
    "loss": _Choice(LOSSES, "training loss of the margin y f"),
    "data": _Choice(DATA, "xor: +-mu1 -> +1, +-mu2 -> -1 (the paper); linear: y mu1 + noise; "
                    "patches: a signal patch y mu1 and noise patches (the two-layer CNN); "
                    "xor_patches: the same with the XOR signal"),
    "label_noise": _Choice(LABEL_NOISE, "independent: each training label flips with probability "
                           "noise_rate; exact: round(noise_rate n) flips, split over the classes"),
    "weight_decay": _Float(0, help="weight decay lambda >= 0: W <- (1 - lr lambda) W - lr grad "
                           "(lr lambda < 1)"),
    "train_second_layer": _Bool("train the second layer a too (default: fixed)"),
    "lr_second": _Float(0, low_open=True, optional=True,
                        help="the second layer's step size (none: lr); needs train_second_layer"),
    "second_layer_scale": _Float(0, low_open=True, optional=True,
                                 help="|a_j| at the start (none: 1/sqrt(m))"),
    "batch_size": _Int(1, "minibatch SGD: samples per step, drawn without replacement per "
                          "epoch (none: full batch)", optional=True),
    "power": _Float(1, low_open=True, optional=True,
                    help="relu_power's exponent q > 1 (none: 2)"),
    "smoothing": _Float(0, low_open=True, optional=True,
                        help="smoothed_leaky_relu's width h > 0 of the quadratic piece (none: 1)"),
    "stable_rank": _Bool("history column stable_rank = ||W||_F^2 / ||W||_2^2 at the snapshot "
                         "steps"),
    "patches": _Int(1, "patches per sample P of the two-layer CNN (data='patches' or "
                       "'xor_patches'; 1: the fully connected network)"),
    "signal_patches": _Int(0, "how many of a sample's patches carry the signal (the rest are "
                              "noise)"),
    "sigma_p": _Float(0, low_open=True, help="standard deviation of the noise patches' entries "
                      "(orthogonal to the signal)"),
}


def check_model(activation, leak, power=None, smoothing=None):
    """ValueError for a parameter the activation does not have.

    ``leak`` with relu or relu_power, ``power`` without relu_power, ``smoothing`` without
    smoothed_leaky_relu.
    """
    if activation in ("relu", "relu_power") and leak is not None:
        raise ValueError(f"leak={leak} needs activation='leaky_relu' or 'smoothed_leaky_relu' "
                         f"({activation} has no leak)")
    if power is not None and activation != "relu_power":
        raise ValueError(f"power={power} needs activation='relu_power'")
    if smoothing is not None and activation != "smoothed_leaky_relu":
        raise ValueError(f"smoothing={smoothing} needs activation='smoothed_leaky_relu'")


def check_patches(patches, lr_second=None, batch_size=None, backend="auto"):
    """NotImplementedError for what the two-layer CNN (``patches`` > 1) does not have yet.

    A trained second layer, minibatches, and the GPU's kernels.
    """
    if patches > 1 and backend == "cupy":
        raise NotImplementedError("patches > 1 is not implemented on backend='cupy' (the CUDA "
                                  "kernels do not sum a sample's patches); use 'numba'")
    if patches > 1 and lr_second is not None:
        raise NotImplementedError("a trained second layer is not implemented for patches > 1 "
                                  "(the two-layer CNN trains its filters, a stays fixed)")
    if patches > 1 and batch_size is not None:
        raise NotImplementedError("minibatches are not implemented for patches > 1")


def check_decay(weight_decay, lr):
    """ValueError when a step would not shrink W by a factor in (0, 1]: lr * weight_decay >= 1."""
    if weight_decay and lr * weight_decay >= 1:
        raise ValueError(f"weight_decay={weight_decay} with lr={lr} gives the factor "
                         f"1 - lr * weight_decay = {1 - lr * weight_decay:g} <= 0; "
                         "lr * weight_decay must be < 1")


def check_batch(batch_size, n):
    """ValueError when ``batch_size`` is outside [1, n]."""
    if batch_size is not None and batch_size > n:
        raise ValueError(f"batch_size must be in [1, n] = [1, {n}], got {batch_size}")


def check_second_layer(train_second_layer, lr_second):
    """ValueError when ``lr_second`` is given for a second layer that is not trained."""
    if lr_second is not None and not train_second_layer:
        raise ValueError(f"lr_second={lr_second} needs train_second_layer=True (the second "
                         "layer is fixed otherwise)")


def check_field(name: str, value, **context):
    """``value`` checked (and normalised) as the Config field ``name`` (see :data:`FIELDS`)."""
    return FIELDS[name].check(name, value, **context)


#: Old names of renamed Config fields (and their CLI options) -> their names now. The old names
#: keep working for this version, with a FutureWarning that names the new one.
RENAMED = {"hist_steps": "snapshot_steps", "population_test": "population_test_samples"}


def renamed_arguments(kwargs: dict, where: str, stacklevel: int = 3, renames=None) -> dict:
    """``kwargs`` with old names replaced by the new ones, warning for each.

    ``renames`` maps old names to new ones (default :data:`RENAMED`).
    """
    for old, new in (RENAMED if renames is None else renames).items():
        if old in kwargs:
            if new in kwargs:
                raise TypeError(f"{where}: {old} is the old name of {new}; give only {new}")
            warnings.warn(f"{where}: {old} is renamed {new}; the old name will stop working "
                          "in the next version", FutureWarning, stacklevel=stacklevel)
            kwargs = dict(kwargs)
            kwargs[new] = kwargs.pop(old)
    return kwargs


def _renamed_property(old, new):
    def get(self):
        warnings.warn(f"Config.{old} is renamed Config.{new}; the old name will stop working "
                      "in the next version", FutureWarning, stacklevel=2)
        return getattr(self, new)

    return property(get, doc=f"Deprecated name of :attr:`{new}`.")


@dataclass(frozen=True)
class Config:
    """One experiment: data, network, optimiser, and how to run it.

    Parameters
    ----------
    n, p, m, n_test : int
        Training samples, input dimension, hidden neurons, test samples (all >= 1).
    mu_norm : float or None
        ||mu1|| = ||mu2||. None means the paper's 2.5 sqrt(p / n).
    noise_rate : float
        Label-flip probability eta of the training labels, in [0, 0.5).
    init_scale : float
        Standard deviation omega_init of the first-layer initialisation (>= 0).
    lr : float
        Constant step size alpha (> 0).
    steps : int
        Number of gradient-descent steps; steps 0..steps are evaluated on a schedule.
    runs : int
        Independent runs; run r draws its data and initialisation from (seed, r).
    seed : int
        Master seed (>= 0).
    method : {"auto", "direct", "gram"}
        Formulation (docs/design.md section 2).
    backend : {"auto", "numpy", "numba", "cupy"}
        Compute backend; "auto" is numba (the CPU kernels) until the CuPy engines have been
        verified on a GPU (:data:`fastgrok.plan.CUPY_VERIFIED`), then cupy where one is usable.
    dtype : {"float32", "float64"}
        Working precision of the fast engines (the reference oracle is always float64).
    second_layer : {"random", "balanced"}
        Signs of a: i.i.d. (paper) or exactly half positive.
    means : {"axis", "random"}
        mu1 = ||mu|| e1, mu2 = ||mu|| e2 (default) or a random orthogonal pair.
    snapshot_steps : tuple of int or None
        Steps at which the projections W mu1, W mu2 are kept for histograms. None picks a few
        log-spaced steps.
    representation : {"auto", "full", "reduced"}
        "full" draws the p-dimensional vectors; "reduced" draws the same experiment in dimension
        n + n_test + m + 2 with the same joint law of every inner product (docs/design.md 2.3; exact
        in distribution, not the same numbers as "full" for a seed; needs p - 2 >= n + n_test +
        m); "auto" uses "reduced" when it is valid and cheaper.
    population_test_samples : int
        0: test metrics on the finite clean test set of n_test samples. k > 0: the population
        clean test accuracy, estimated at each evaluation from k fresh test points per cluster
        (exact draws in the reduced representation; needs it, and the gram method), with its
        Monte Carlo standard error in the history column test_acc_se.
    activation : {"relu", "leaky_relu", "relu_power", "smoothed_leaky_relu"}
        phi(z) = max(z, leak z); "relu" is leak 0. The smooth members: "relu_power",
        max(z, 0)^power; "smoothed_leaky_relu", the Huberised leaky ReLU (leak z below 0, a
        quadratic piece on [0, smoothing], slope 1 above; docs/design.md section 5). They take
        dense steps (no linear regime) and are not implemented on the GPU yet.
    leak : float or None
        The slope for negative pre-activations of leaky_relu and smoothed_leaky_relu, in
        [0, 1) (None: 0.1). An error with "relu" and "relu_power".
    loss : {"logistic", "exponential", "hinge", "square"}
        log(1 + exp(-z)) (the paper), exp(-z), max(0, 1 - z) or (1 - z)^2 / 2 of the margin
        z = y f (the square loss is (y - f)^2 / 2 for labels +-1); the mean over samples is
        minimised, and the history's losses are this loss.
    data : {"xor", "linear"}
        "xor": the paper's four clusters, +-mu1 -> +1 and +-mu2 -> -1. "linear": two clusters,
        x = y_clean mu1 + noise (the noisy linear model of Frei, Chatterji and Bartlett 2022);
        mu2 is unused and its alignment columns are NaN. Labels flip at ``noise_rate`` in both.
    label_noise : {"independent", "exact"}
        "independent": each training label flips with probability ``noise_rate`` (the paper).
        "exact": exactly round(noise_rate n) flips, split over the clean classes in proportion
        to their sizes, as several benign-overfitting papers state the noise
        (:func:`fastgrok.data.flip_mask`).
    weight_decay : float
        lambda >= 0: each step is W <- (1 - lr lambda) W - lr grad, the gradient step on the
        mean loss plus (lambda / 2) ||W||_F^2 (lr lambda < 1). The gram method stays exact,
        W = s_t W0 + C X with s_t = (1 - lr lambda)^t; the linear regime is off (docs/design.md
        section 5).
    train_second_layer : bool
        Train the second layer too: a_j <- a_j + (lr_second / n) sum_i g_i y_i phi(z_ij) (with
        weight decay, times 1 - lr_second lambda first), from the same step's pre-activations.
        Default False: a is fixed, as in the paper.
    lr_second : float or None
        The second layer's step size (None: ``lr``); only with ``train_second_layer``.
    second_layer_scale : float or None
        |a_j| at the start: a_j = +-second_layer_scale (None: the paper's 1/sqrt(m)).
    batch_size : int or None
        Minibatch SGD: each step is the gradient step on the mean loss over batch_size samples
        (:func:`fastgrok.batch_schedule`: without replacement per epoch, from the run's own
        stream); ``steps`` counts minibatch steps. None: full batch (the paper).
    power : float or None
        relu_power's exponent q > 1 (None: 2); only with that activation.
    smoothing : float or None
        smoothed_leaky_relu's h > 0 (None: 1); only with that activation.
    patches : int
        P, the patches of a sample of the two-layer CNN, f(x) = sum_j a_j sum_p
        phi(<w_j, x^(p)>) (with data "patches" or "xor_patches"; 1 otherwise).
    signal_patches : int
        How many of the P patches are the signal patch (y_clean mu1, or the XOR cluster mean);
        the others are noise patches (default 1).
    sigma_p : float
        The noise patches' xi ~ N(0, sigma_p^2 (I - projection on the means)) (default 1).
    stable_rank : bool
        Add the history column stable_rank = ||W||_F^2 / ||W||_2^2 of the first layer at the
        snapshot steps (NaN elsewhere). The gram method assembles the m x m matrix W W^T from
        blocks of the data (W0 W0^T, X W0^T, X X^T: O((m + n)^2 p) per run and snapshot),
        never forming W; the reduced representation gives it in its own coordinates.

    Raises
    ------
    TypeError
        A field of the wrong type, or an unknown field (named in the message).
    ValueError
        A field out of range, or fields that do not go together (e.g. ``leak`` with relu).

    See Also
    --------
    preset : the named settings (the paper's and others) as a Config.
    run : run the experiment.

    Examples
    --------
    >>> import fastgrok as fg
    >>> cfg = fg.Config(p=1000, runs=3)
    >>> round(cfg.mean_norm, 3)              # the paper's 2.5 sqrt(p / n)
    5.59
    >>> cfg.replace(lr=1e-16).lr
    1e-16
    >>> fg.Config(lr=-1.0)
    Traceback (most recent call last):
        ...
    ValueError: lr must be > 0, got -1.0
    """

    n: int = 200
    p: int = 40_000
    m: int = 1000
    n_test: int = 200
    mu_norm: float | None = None
    noise_rate: float = 0.05
    init_scale: float = 1e-15
    lr: float = 1e-12
    steps: int = 50
    runs: int = 100
    seed: int = 0
    method: str = "auto"
    backend: str = "auto"
    dtype: str = "float32"
    second_layer: str = "random"
    means: str = "axis"
    snapshot_steps: tuple | None = field(default=None)
    representation: str = "auto"
    population_test_samples: int = 0
    activation: str = "relu"
    leak: float | None = None
    loss: str = "logistic"
    data: str = "xor"
    label_noise: str = "independent"
    weight_decay: float = 0.0
    train_second_layer: bool = False
    lr_second: float | None = None
    second_layer_scale: float | None = None
    batch_size: int | None = None
    power: float | None = None
    smoothing: float | None = None
    stable_rank: bool = False
    patches: int = 1
    signal_patches: int = 1
    sigma_p: float = 1.0

    def __post_init__(self):
        """Check every field (TypeError or ValueError naming the field) and the fields together."""
        for f in fields(self):  # steps is checked before snapshot_steps, which needs it
            object.__setattr__(self, f.name, check_field(f.name, getattr(self, f.name),
                                                         steps=self.steps))
        P = self.patches
        N = P * (self.n + self.n_test) + self.m
        if self.representation == "reduced" and self.p - 2 < N:
            what = "n + n_test + m" if P == 1 else "patches (n + n_test) + m"
            raise ValueError(f"representation='reduced' needs p - 2 >= {what} = {N}, "
                             f"got p={self.p}; use representation='full'")
        if self.population_test_samples and representation_for(
                self.representation, self.n, self.n_test, self.m, self.p) != "reduced":
            raise ValueError("population_test_samples > 0 needs representation='reduced' (fresh "
                             f"test points are exact draws there); p={self.p} with n + n_test + m "
                             f"= {N} and representation={self.representation!r} does not give it")
        if self.population_test_samples and self.method == "direct":
            raise ValueError("population_test_samples > 0 is implemented for method='gram' "
                             "(or 'auto')")
        check_model(self.activation, self.leak, self.power, self.smoothing)
        check_decay(self.weight_decay, self.lr)
        check_second_layer(self.train_second_layer, self.lr_second)
        check_batch(self.batch_size, self.n)
        if self.train_second_layer:
            check_decay(self.weight_decay, self.lr_second or self.lr)
        self._check_patches()
        if self.means == "axis" and self.p < 2:
            raise ValueError(f"p must be >= 2 for two orthogonal means, got {self.p}")

    def _check_patches(self):
        """The patch fields against the data model (ValueError, NotImplementedError)."""
        if self.data not in PATCH_DATA:
            for name, default in (("patches", 1), ("signal_patches", 1), ("sigma_p", 1.0)):
                if getattr(self, name) != default:
                    raise ValueError(f"{name}={getattr(self, name)} needs data='patches' or "
                                     f"'xor_patches', got data={self.data!r}")
            return
        if self.signal_patches > self.patches:
            raise ValueError(f"signal_patches must be <= patches={self.patches}, got "
                             f"{self.signal_patches}")
        if self.signal_patches == self.patches:
            raise ValueError(f"patches={self.patches} with signal_patches={self.signal_patches} "
                             "leaves no noise patch: give patches > signal_patches (the CNN "
                             "papers use patches=2)")
        if self.signal_patches == 0 and self.mu_norm is not None:
            raise ValueError(f"mu_norm={self.mu_norm} is the norm of a signal patch, but "
                             "signal_patches=0: a sample has no signal patch")
        if self.means != "axis":
            raise NotImplementedError("patch data with means='random' is not implemented: the "
                                      "noise patches are drawn orthogonal to axis means")
        if self.population_test_samples:
            raise NotImplementedError("population_test_samples is not implemented for patch "
                                      "data")
        check_patches(self.patches, self.lr if self.train_second_layer else None,
                      self.batch_size, self.backend)

    @property
    def mean_norm(self) -> float:
        """The mean norm actually used (the paper's 2.5 sqrt(p/n) when mu_norm is None)."""
        return self.mu_norm if self.mu_norm is not None else 2.5 * math.sqrt(self.p / self.n)

    @property
    def effective_leak(self) -> float:
        """The slope phi uses for negative inputs: 0 for relu, the leak (default 0.1) else."""
        if self.activation == "relu":
            return 0.0
        return DEFAULT_LEAK if self.leak is None else self.leak

    mu = _renamed_property("mu", "mean_norm")
    hist_steps = _renamed_property("hist_steps", "snapshot_steps")
    population_test = _renamed_property("population_test", "population_test_samples")

    def replace(self, **changes) -> "Config":
        """Return a copy with ``changes`` applied (validated again)."""
        changes = renamed_arguments(changes, "Config.replace", stacklevel=3)
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown Config field(s): {', '.join(sorted(unknown))}")
        if "steps" in changes and "snapshot_steps" not in changes and self.snapshot_steps:
            # A shorter run keeps the histogram steps that still exist (as preset() does).
            steps = changes["steps"]
            if isinstance(steps, numbers.Integral) and not isinstance(steps, bool):
                changes["snapshot_steps"] = tuple(s for s in self.snapshot_steps if s <= steps)
        return dataclasses.replace(self, **changes)

    def to_dict(self, effective=False) -> dict:
        """The fields as a JSON-ready dict (tuples as lists).

        With ``effective``, the leak the network uses is recorded in place of None (0.1 for
        leaky_relu when no leak was given); :meth:`from_dict` reads either.
        """
        d = dataclasses.asdict(self)
        if d["snapshot_steps"] is not None:
            d["snapshot_steps"] = list(d["snapshot_steps"])
        if effective and self.activation == "leaky_relu":
            d["leak"] = self.effective_leak
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """The Config of a dict written by :meth:`to_dict` (old field names are read too)."""
        d = {RENAMED.get(k, k): v for k, v in d.items()}
        if d.get("snapshot_steps") is not None:
            d["snapshot_steps"] = tuple(d["snapshot_steps"])
        return cls(**d)


#: The paper's settings (Xu et al. 2024, Appendix A.7; docs/design.md section 1), a neighbouring
#: paper's, and a small quick-look experiment.
PRESETS = {
    "paper-fig1-left": dict(n=200, p=40_000, m=1000, n_test=200, mu_norm=None, noise_rate=0.05,
                            init_scale=1e-15, lr=1e-12, steps=50, runs=100,
                            # Figure 3's steps, and 15 for Figure 2 (0, 1, 15)
                            snapshot_steps=(0, 1, 2, 3, 10, 15)),
    "paper-fig1-right": dict(n=200, p=40_000, m=1000, n_test=200, mu_norm=None, noise_rate=0.05,
                             init_scale=1e-15, lr=1e-16, steps=5000, runs=100,
                             snapshot_steps=(0, 25, 100, 1000, 2000, 5000)),
    # The right panel as the paper plots it. Its curve is twice as fast in t as the settings
    # its text states (the preset above). While the outputs are tiny the dynamics depend on
    # alpha, omega_init and the loss only through kappa = alpha (-l'(0)) / omega_init, and
    # doubling alpha (or halving omega_init, or the exponential loss with -l'(0) = 1 instead
    # of 1/2) matches the plotted medians where the stated settings do not (the gaps, measured:
    # docs/reproduction.md).
    "paper-fig1-right-plotted": dict(n=200, p=40_000, m=1000, n_test=200, mu_norm=None,
                                     noise_rate=0.05, init_scale=1e-15, lr=2e-16, steps=5000,
                                     runs=100, snapshot_steps=(0, 25, 100, 1000, 2000, 5000)),
    # Benign overfitting without linearity (Frei, Chatterji and Bartlett 2022): leaky ReLU
    # (leak 0.1), logistic loss, noisy two-cluster data. Their results are asymptotic (no sizes
    # stated), so the XOR preset's sizes, noise, initialisation and step size are kept, except
    # ||mu||: their theorem needs p >> n ||mu||^2 (the training noise must dominate the mean's
    # pull for noisy labels to be fitted; the XOR default of 2.5 sqrt(p/n) gives n ||mu||^2 =
    # 6.25 p, and 6% of the training labels are then never fitted) and bounds the test error
    # by eta + exp(-c n ||mu||^4 / p). ||mu|| = 7 gives p = 4.1 n ||mu||^2 and
    # n ||mu||^4 / p = 12 (docs/design.md section 5).
    "frei2022-leaky-linear": dict(n=200, p=40_000, m=1000, n_test=200, mu_norm=7.0,
                                  noise_rate=0.05, init_scale=1e-15, lr=1e-12, steps=50, runs=100,
                                  snapshot_steps=(0, 1, 2, 3, 10), activation="leaky_relu",
                                  leak=0.1, loss="logistic", data="linear"),
    # The two-layer ReLU CNN of Kou, Chen, Chen and Gu (ICML 2023, arXiv 2303.04145): a sample
    # is a signal patch y mu and a noise patch xi ~ N(0, sigma_p^2 (I - mu mu^T / ||mu||^2)),
    # labels flipped with probability 0.1, ReLU filters, the logistic loss, a fixed second
    # layer +-1/m (half of each sign), full-batch gradient descent from a small initialisation.
    # The model is theirs; the sizes are ours (their experiments' sizes could not be checked
    # here), chosen where their theorem lives: d = 10^6 >> n, and n ||mu||^4 / (sigma_p^4 d)
    # = 42, on the benign side of their boundary n ||mu||^4 ~ sigma_p^4 d; lr 2e-5 moves an
    # output by about lr sigma_p^2 d / (2 n m) = 0.01 per step at the start, and 2000 steps
    # fit every training label (docs/design.md, "Patches").
    "kou2023-relu-cnn": dict(n=40, p=1_000_000, m=20, n_test=200, mu_norm=32.0, noise_rate=0.1,
                             init_scale=1e-6, lr=2e-5, steps=2000, runs=20,
                             snapshot_steps=(0, 10, 100, 1000, 2000), data="patches", patches=2,
                             signal_patches=1, sigma_p=1.0, second_layer="balanced",
                             second_layer_scale=0.05),
    # The left panel's data and step size with fewer neurons and runs: shows the phenomenon
    # cheaply, even with the NumPy reference direct engine.
    "quick": dict(n=200, p=40_000, m=100, n_test=200, mu_norm=None, noise_rate=0.05,
                  init_scale=1e-15, lr=1e-12, steps=50, runs=20, snapshot_steps=(0, 1, 2, 3, 10)),
}

#: What ``fastgrok run`` runs with no --preset: the paper's left panel, all 100 runs (its time:
#: docs/performance.md).
DEFAULT_PRESET = "paper-fig1-left"


_generated_init = Config.__init__


@functools.wraps(_generated_init)
def _init_with_old_names(self, *args, **kwargs):
    _generated_init(self, *args, **renamed_arguments(kwargs, "Config", stacklevel=3))


Config.__init__ = _init_with_old_names


def preset(name: str, **overrides) -> Config:
    """Return the named preset's :class:`Config`, with optional field overrides.

    Parameters
    ----------
    name : str
        One of :data:`PRESETS` ("paper-fig1-left", "paper-fig1-right",
        "paper-fig1-right-plotted", "quick", "frei2022-leaky-linear", "kou2023-relu-cnn").
    **overrides
        Config fields to change, e.g. ``runs=10``.

    Returns
    -------
    Config

    Raises
    ------
    ValueError
        An unknown preset name, or an override a Config rejects.

    Examples
    --------
    >>> import fastgrok as fg
    >>> cfg = fg.preset("paper-fig1-left", runs=10)
    >>> cfg.n, cfg.p, cfg.m, cfg.lr, cfg.runs
    (200, 40000, 1000, 1e-12, 10)
    """
    overrides = renamed_arguments(overrides, "preset")
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of "
                         f"{', '.join(map(repr, PRESETS))}")
    base = dict(PRESETS[name])
    if "steps" in overrides and "snapshot_steps" not in overrides and base.get("snapshot_steps"):
        # A shorter run keeps the preset's histogram steps that still exist.
        base["snapshot_steps"] = tuple(s for s in base["snapshot_steps"] if s <= overrides["steps"])
    return Config(**base).replace(**overrides)
