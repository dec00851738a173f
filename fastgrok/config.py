"""Experiment configuration (:class:`Config`) and the named presets.

A :class:`Config` is immutable and validated on construction, so an invalid experiment fails
before any data is drawn. Speed/memory knobs live in :mod:`fastgrok.tunables`, not here.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field, fields

METHODS = ("auto", "direct", "gram")
BACKENDS = ("auto", "numpy", "numba", "cupy")
DTYPES = ("float32", "float64")
SECOND_LAYER = ("random", "balanced")
MEANS = ("axis", "random")
REPRESENTATIONS = ("auto", "full", "reduced")


def _check_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_float(name, value, *, positive=False, nonnegative=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}")
    return value


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
        Compute backend; "auto" is cupy when a GPU is usable, else numba.
    dtype : {"float32", "float64"}
        Working precision of the fast engines (the reference oracle is always float64).
    second_layer : {"random", "balanced"}
        Signs of a: i.i.d. (paper) or exactly half positive.
    means : {"axis", "random"}
        mu1 = ||mu|| e1, mu2 = ||mu|| e2 (default) or a random orthogonal pair.
    hist_steps : tuple of int or None
        Steps at which the projections W mu1, W mu2 are kept for histograms. None picks a few
        log-spaced steps.
    representation : {"auto", "full", "reduced"}
        "full" draws the p-dimensional vectors; "reduced" draws the same experiment in dimension
        n + n_test + m + 2 with the same joint law of every inner product (docs/design.md 2.3; exact
        in distribution, not the same numbers as "full" for a seed; needs p - 2 >= n + n_test +
        m); "auto" uses "reduced" when it is valid and cheaper.
    population_test : int
        0: test metrics on the finite clean test set of n_test samples. k > 0: the population
        clean test accuracy, estimated at each evaluation from k fresh test points per cluster
        (exact draws in the reduced representation; needs it, and the gram method), with its
        Monte Carlo standard error in the history column test_acc_se.
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
    hist_steps: tuple | None = field(default=None)
    representation: str = "auto"
    population_test: int = 0

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        for name in ("n", "p", "m", "n_test", "steps", "runs"):
            set_(name, _check_int(name, getattr(self, name)))
        set_("seed", _check_int("seed", self.seed, minimum=0))
        set_("population_test", _check_int("population_test", self.population_test, minimum=0))
        if self.mu_norm is not None:
            set_("mu_norm", _check_float("mu_norm", self.mu_norm, positive=True))
        eta = _check_float("noise_rate", self.noise_rate)
        if not 0.0 <= eta < 0.5:
            raise ValueError(f"noise_rate must be in [0, 0.5), got {eta}")
        set_("noise_rate", eta)
        set_("init_scale", _check_float("init_scale", self.init_scale, nonnegative=True))
        set_("lr", _check_float("lr", self.lr, positive=True))
        _check_choice("method", self.method, METHODS)
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("dtype", self.dtype, DTYPES)
        _check_choice("second_layer", self.second_layer, SECOND_LAYER)
        _check_choice("means", self.means, MEANS)
        _check_choice("representation", self.representation, REPRESENTATIONS)
        N = self.n + self.n_test + self.m
        if self.representation == "reduced" and self.p - 2 < N:
            raise ValueError(f"representation='reduced' needs p - 2 >= n + n_test + m = {N}, "
                             f"got p={self.p}; use representation='full'")
        if self.population_test and self.resolved_representation != "reduced":
            raise ValueError("population_test > 0 needs representation='reduced' (fresh test "
                             f"points are exact draws there); p={self.p} with n + n_test + m = {N} "
                             f"and representation={self.representation!r} does not give it")
        if self.population_test and self.method == "direct":
            raise ValueError("population_test > 0 is implemented for method='gram' (or 'auto')")
        if self.means == "axis" and self.p < 2:
            raise ValueError(f"p must be >= 2 for two orthogonal means, got {self.p}")
        if self.hist_steps is not None:
            if isinstance(self.hist_steps, (str, bytes)) or not hasattr(self.hist_steps, "__iter__"):
                raise TypeError(f"hist_steps must be a sequence of ints, got {self.hist_steps!r}")
            hs = tuple(sorted({_check_int("hist_steps", s, minimum=0) for s in self.hist_steps}))
            if hs and hs[-1] > self.steps:
                raise ValueError(f"hist_steps must be <= steps={self.steps}, got {hs[-1]}")
            set_("hist_steps", hs)

    @property
    def resolved_representation(self) -> str:
        """"full" or "reduced": what ``representation`` means for this config."""
        if self.representation != "auto":
            return self.representation
        # valid when p - 2 >= n + n_test + m, i.e. p >= d; cheaper (build and memory) when p > d
        return "reduced" if self.p > self.n + self.n_test + self.m + 2 else "full"

    @property
    def working_p(self) -> int:
        """The dimension the engines work in (d = n + n_test + m + 2 when reduced)."""
        if self.resolved_representation == "reduced":
            return self.n + self.n_test + self.m + 2
        return self.p

    @property
    def working_dtype(self) -> str:
        """``dtype``, except float64 for reduced runs at p beyond float32's safe range."""
        from . import tunables

        if (self.resolved_representation == "reduced" and self.dtype == "float32"
                and self.p > tunables.REDUCED_FLOAT32_MAX_P):
            return "float64"
        return self.dtype

    @property
    def mu(self) -> float:
        """The mean norm actually used (the paper's 2.5 sqrt(p/n) when mu_norm is None)."""
        return self.mu_norm if self.mu_norm is not None else 2.5 * math.sqrt(self.p / self.n)

    def replace(self, **changes) -> "Config":
        """Return a copy with ``changes`` applied (validated again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown Config field(s): {', '.join(sorted(unknown))}")
        if "steps" in changes and "hist_steps" not in changes and self.hist_steps:
            # A shorter run keeps the histogram steps that still exist (as preset() does).
            steps = changes["steps"]
            if isinstance(steps, numbers.Integral) and not isinstance(steps, bool):
                changes["hist_steps"] = tuple(s for s in self.hist_steps if s <= steps)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["hist_steps"] is not None:
            d["hist_steps"] = list(d["hist_steps"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        d = dict(d)
        if d.get("hist_steps") is not None:
            d["hist_steps"] = tuple(d["hist_steps"])
        return cls(**d)


#: The paper's Appendix A.7 settings (Xu et al. 2024, Appendix A.7; docs/design.md section 1), and a small quick-look experiment.
PRESETS = {
    "paper-fig1-left": dict(n=200, p=40_000, m=1000, n_test=200, mu_norm=None, noise_rate=0.05,
                            init_scale=1e-15, lr=1e-12, steps=50, runs=100,
                            hist_steps=(0, 1, 2, 3, 10)),
    "paper-fig1-right": dict(n=200, p=40_000, m=1000, n_test=200, mu_norm=None, noise_rate=0.05,
                             init_scale=1e-15, lr=1e-16, steps=5000, runs=100,
                             hist_steps=(0, 25, 100, 1000, 2000, 5000)),
    # The left panel's data and step size with fewer neurons and runs: shows the phenomenon in
    # about a minute on two cores even with the NumPy reference direct engine.
    "quick": dict(n=200, p=40_000, m=100, n_test=200, mu_norm=None, noise_rate=0.05,
                  init_scale=1e-15, lr=1e-12, steps=50, runs=20, hist_steps=(0, 1, 2, 3, 10)),
}

#: What ``fastgrok run`` runs with no --preset: the paper's left panel, all 100 runs (about 80 s
#: on two cores with the gram engine).
DEFAULT_PRESET = "paper-fig1-left"


def preset(name: str, **overrides) -> Config:
    """Return the named preset's :class:`Config`, with optional field overrides.

    Parameters
    ----------
    name : str
        One of :data:`PRESETS` ("paper-fig1-left", "paper-fig1-right", "quick").
    **overrides
        Config fields to change, e.g. ``runs=10``.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(map(repr, PRESETS))}")
    base = dict(PRESETS[name])
    if "steps" in overrides and "hist_steps" not in overrides and base.get("hist_steps"):
        # A shorter run keeps the preset's histogram steps that still exist.
        base["hist_steps"] = tuple(s for s in base["hist_steps"] if s <= overrides["steps"])
    return Config(**base).replace(**overrides)
