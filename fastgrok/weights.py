"""The network's initial weights (Xu et al. 2024, section 2; docs/design.md section 1).

The fixed second layer a and the first layer W0, each from its own random stream keyed by (seed,
run).
"""
from __future__ import annotations

import numpy as np

from ._memory import check_fits
from .data import STREAM_A, STREAM_W0, block_ranges, gaussian_block, rng
from .kernels.memory import empty_aligned


def draw_second_layer(m, seed=0, run=0, mode="random", scale=None) -> np.ndarray:
    """Second-layer weights a_j in {+1/sqrt(m), -1/sqrt(m)} (or +-scale), float64.

    Parameters
    ----------
    m : int
        Number of neurons.
    seed, run : int
        Stream keys.
    mode : {"random", "balanced"}
        "random": i.i.d. signs (the paper; the split is Binomial). "balanced": exactly
        ceil(m/2) positive signs, in random order.
    scale : float, optional
        |a_j| (default 1/sqrt(m), the paper's).
    """
    g = rng(seed, run, STREAM_A)
    if mode == "random":
        signs = np.where(g.random(m) < 0.5, 1.0, -1.0)
    elif mode == "balanced":
        signs = g.permutation(np.where(np.arange(m) < (m + 1) // 2, 1.0, -1.0))
    else:
        raise ValueError(f"unknown second_layer {mode!r}; expected 'random' or 'balanced'")
    return signs / np.sqrt(m) if scale is None else signs * float(scale)


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
