"""Run sources: what one run trains on, available whole or column block by column block.

Engines are built from sources, so a method that streams over p (gram) and a method that holds
the matrices (direct) see exactly the same numbers. :class:`GeneratedSource` draws the paper's
data and initialisation from (seed, run); :class:`ArraySource` wraps a user's arrays (``fg.fit``)
and draws only the initialisation.
"""
from __future__ import annotations

import numpy as np

from ._memory import check_fits
from .data import RunDraw, block_ranges
from .engines import Problem
from .model import init_block, second_layer


class Source:
    """Base class. Attributes: n, p, m, n_test (0 without a test set), y, y_test, a (float64),
    mu_norm (None without means)."""

    n = p = m = n_test = 0
    y = y_test = a = None
    mu_norm = None

    def _block(self, k, j0, j1, dtype):
        """(X_b, Xt_b or None, M_b (2, cols) or None) for column block k, in ``dtype``."""
        raise NotImplementedError

    def block_list(self):
        """``[(k, j0, j1), ...]``: the column blocks of the random streams."""
        return list(block_ranges(self.p))

    def block(self, k, j0, j1, dtype="float64"):
        """(X_b, Xt_b, W0_b, M_b) of column block k in ``dtype``; any order, any thread."""
        X, Xt, M = self._block(k, j0, j1, dtype)
        return X, Xt, init_block(self.m, self.init_scale, self.seed, self.run, k, j1 - j0, dtype), M

    def blocks(self, dtype="float64"):
        """Yield (j0, j1, X_b, Xt_b, W0_b, M_b) over all column blocks, in order."""
        for k, j0, j1 in self.block_list():
            yield (j0, j1, *self.block(k, j0, j1, dtype))

    def problem(self, dtype) -> Problem:
        """All arrays materialised in ``dtype`` (memory checked first)."""
        dt = np.dtype(dtype)
        n, p, m, nt = self.n, self.p, self.m, self.n_test
        has_m = self.mu_norm is not None
        check_fits((n + nt + m + 2 * has_m) * p * dt.itemsize,
                   f"the arrays of one run (n={n}, n_test={nt}, m={m}, p={p}, {dt})")
        X, W0 = np.empty((n, p), dt), np.empty((m, p), dt)
        Xt = np.empty((nt, p), dt) if nt else None
        M = np.empty((2, p), dt) if has_m else None
        for j0, j1, Xb, Xtb, Wb, Mb in self.blocks(dt):
            X[:, j0:j1], W0[:, j0:j1] = Xb, Wb
            if nt:
                Xt[:, j0:j1] = Xtb
            if has_m:
                M[:, j0:j1] = Mb
        return Problem(X, self.y, W0, self.a, Xt, self.y_test,
                       None if M is None else M[0], None if M is None else M[1])


class GeneratedSource(Source):
    """Run ``run`` of the experiment ``cfg``: data, second layer and W0 from (cfg.seed, run)."""

    def __init__(self, cfg, run):
        self.draw = RunDraw(cfg.n, cfg.p, cfg.n_test, cfg.mu, cfg.noise_rate, cfg.seed, run, cfg.means)
        self.n, self.p, self.m, self.n_test = cfg.n, cfg.p, cfg.m, cfg.n_test
        self.seed, self.run, self.init_scale = cfg.seed, run, cfg.init_scale
        self.y, self.y_test = self.draw.y, self.draw.y_test
        self.a = second_layer(cfg.m, cfg.seed, run, cfg.second_layer)
        self.mu_norm = cfg.mu

    def _block(self, k, j0, j1, dtype):
        X, Xt, mu1, mu2 = self.draw.block(k, j0, j1, dtype)
        return X, Xt, np.stack([mu1, mu2])


class ArraySource(Source):
    """A user's arrays (validated by the caller), with W0 and a drawn from (seed, run) unless
    given (``W0``, ``a``: tests and benchmarks start engines from chosen weights)."""

    def __init__(self, X, y, m, init_scale=0.0, seed=0, run=0, second_layer_mode="random",
                 X_test=None, y_test=None, mu1=None, mu2=None, W0=None, a=None):
        self.X, self.Xt = X, X_test
        self.n, self.p = X.shape
        self.m, self.n_test = m, 0 if X_test is None else X_test.shape[0]
        self.seed, self.run, self.init_scale = seed, run, init_scale
        self.y = np.asarray(y, dtype=np.float64)
        self.y_test = None if y_test is None else np.asarray(y_test, dtype=np.float64)
        self.a = second_layer(m, seed, run, second_layer_mode) if a is None else np.asarray(a, np.float64)
        self.W0 = W0
        self.M = None if mu1 is None else np.stack([mu1, mu2])
        self.mu_norm = None if mu1 is None else float(np.linalg.norm(np.asarray(mu1, np.float64)))

    def _block(self, k, j0, j1, dtype):
        conv = lambda v: None if v is None else np.asarray(v[:, j0:j1], dtype=dtype)  # noqa: E731
        return conv(self.X), conv(self.Xt), conv(self.M)

    def problem(self, dtype) -> Problem:
        """The caller's arrays without copies where the dtype already matches; a given W0 is
        used (and trained) in place, else W0 is drawn whole."""
        from .model import init_weights

        conv = lambda v: None if v is None else np.ascontiguousarray(v, dtype=dtype)  # noqa: E731
        W0 = (init_weights(self.m, self.p, self.init_scale, self.seed, self.run, dtype)
              if self.W0 is None else conv(self.W0))
        M = conv(self.M)
        return Problem(conv(self.X), self.y, W0, self.a, conv(self.Xt), self.y_test,
                       None if M is None else M[0], None if M is None else M[1])

    def block(self, k, j0, j1, dtype="float64"):
        if self.W0 is None:
            return super().block(k, j0, j1, dtype)
        X, Xt, M = self._block(k, j0, j1, dtype)
        return X, Xt, np.asarray(self.W0[:, j0:j1], dtype=dtype), M
