"""The network: its activation and loss (:class:`Model`), and its initialisation (Xu et al.
2024, section 2; docs/design.md section 1): fixed second layer a and first layer W0."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import LOSSES, check_field
from ._memory import check_fits, empty_aligned
from .data import STREAM_A, STREAM_W0, block_ranges, gaussian_block, rng


#: The leak of "leaky_relu" when none is given.
DEFAULT_LEAK = 0.1


@dataclass(frozen=True)
class Model:
    """The network's activation and training loss (docs/design.md section 1).

    phi(z) = max(z, leak z) with leak = 0 for "relu" (so ReLU is the leak-0 member of one
    formula, and every kernel computes both with the same branch-free arithmetic); the loss is
    one of :data:`LOSSES`, entering training only through the per-sample weight g_i = -l'(y_i f_i).

    Parameters
    ----------
    activation : {"relu", "leaky_relu"}
    leak : float or None
        Slope for negative pre-activations, in [0, 1); only with "leaky_relu" (None: 0.1).
    loss : {"logistic", "exponential", "hinge"}
        l(z) = log(1 + exp(-z)), exp(-z) or max(0, 1 - z) of the margin z = y f.
    """

    activation: str = "relu"
    leak: float | None = None
    loss: str = "logistic"

    def __post_init__(self):
        for name in ("activation", "leak", "loss"):
            object.__setattr__(self, name, check_field(name, getattr(self, name)))
        check_model(self.activation, self.leak)

    @property
    def slope(self) -> float:
        """The leak the kernels use: 0.0 for ReLU."""
        if self.activation == "relu":
            return 0.0
        return DEFAULT_LEAK if self.leak is None else float(self.leak)

    @property
    def loss_code(self) -> int:
        """The loss as the kernels' integer code (its index in :data:`LOSSES`)."""
        return LOSSES.index(self.loss)

    @property
    def g0(self) -> float:
        """-l'(0): the loss weight of every sample while the outputs are tiny."""
        return 0.5 if self.loss == "logistic" else 1.0

    @classmethod
    def of(cls, cfg) -> "Model":
        """The model of a Config (or anything with activation, leak and loss attributes)."""
        return cls(cfg.activation, cfg.leak, cfg.loss)


def check_model(activation, leak):
    """ValueError when ``leak`` is given with activation="relu" (whose leak is 0 by definition)."""
    if activation == "relu" and leak is not None:
        raise ValueError(f"leak={leak} needs activation='leaky_relu' (ReLU has no leak)")


def second_layer(m, seed=0, run=0, mode="random") -> np.ndarray:
    """Fixed second-layer weights a_j in {+1/sqrt(m), -1/sqrt(m)}, float64.

    Parameters
    ----------
    m : int
        Number of neurons.
    seed, run : int
        Stream keys.
    mode : {"random", "balanced"}
        "random": i.i.d. signs (the paper; the split is Binomial). "balanced": exactly
        ceil(m/2) positive signs, in random order.
    """
    g = rng(seed, run, STREAM_A)
    if mode == "random":
        signs = np.where(g.random(m) < 0.5, 1.0, -1.0)
    elif mode == "balanced":
        signs = g.permutation(np.where(np.arange(m) < (m + 1) // 2, 1.0, -1.0))
    else:
        raise ValueError(f"unknown second_layer {mode!r}; expected 'random' or 'balanced'")
    return signs / np.sqrt(m)


def init_block(m, init_scale, seed, run, k, cols, dtype="float64") -> np.ndarray:
    """Column block ``k`` (m x cols) of W0 ~ N(0, init_scale^2), computed in ``dtype``."""
    W = gaussian_block(seed, run, STREAM_W0, k, m, cols, dtype)
    W *= W.dtype.type(init_scale)
    return W


def init_weights(m, p, init_scale, seed=0, run=0, dtype="float64") -> np.ndarray:
    """First-layer initialisation W0 (m, p), i.i.d. N(0, init_scale^2), drawn block by block."""
    dt = np.dtype(dtype)
    check_fits(m * p * dt.itemsize, f"the weights W (m={m}, p={p}, {dt})")
    W = empty_aligned((m, p), dt)
    for k, j0, j1 in block_ranges(p):
        W[:, j0:j1] = init_block(m, init_scale, seed, run, k, j1 - j0, dt)
    return W
