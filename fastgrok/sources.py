"""Run sources: what one run trains on, available whole or column block by column block.

Engines are built from sources, so a method that streams over p (gram) and a method that holds
the matrices (direct) see exactly the same numbers. :class:`GeneratedSource` draws the paper's
data and initialisation from (seed, run); :class:`ArraySource` wraps a user's arrays (``fg.fit``)
and draws only the initialisation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._memory import check_fits
from .config import PATCH_DATA
from .data import block_ranges, run_draw
from .kernels.memory import copy_aligned, empty_aligned, empty_aligned_from
from .weights import draw_second_layer, init_block


@dataclass
class Problem:
    """Everything one run trains on, as arrays (float64 or the working dtype).

    ``X_test``/``y_test`` and ``directions`` may be None (``fg.fit`` on a user's data).
    ``directions`` (k, p) are the rows whose projections W v are kept: mu1, mu2 (zero rows
    where no means are known), then the tracked directions.
    """

    X: np.ndarray
    y: np.ndarray
    W0: np.ndarray
    a: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    directions: np.ndarray | None = None

    mu1 = property(lambda self: None if self.directions is None else self.directions[0])
    mu2 = property(lambda self: None if self.directions is None else self.directions[1])


class Source:
    """Base class.

    Attributes: n, p, m, n_test (0 without a test set), y, y_test, a (float64), mu_norm (None
    without means), flipped ((n,) bool: the training labels that were flipped; None when not
    known) and tracked ((k, p) directions whose projections are kept beside the means; None).
    """

    n = p = m = n_test = 0
    #: Patches per sample (the two-layer CNN): the inputs' rows are its n P patches.
    patches = 1
    y = y_test = a = None
    mu_norm = None
    flipped = None
    tracked = None
    #: Patch data: the indices of the noise-patch rows of X (None: not known, or no patches).
    noise_rows = None
    #: Patch data: how many of the directions are signal directions (mu1, or mu1 and mu2).
    signal_directions = 0

    @property
    def patch_metrics(self) -> bool:
        """Whether signal learning or noise memorisation can be read (patch data, or mu1)."""
        return self.noise_rows is not None or self.signal_directions > 0

    @property
    def rows(self) -> int:
        """Rows of X: n P (a row per patch; n for the fully connected network)."""
        return self.n * self.patches

    @property
    def test_rows(self) -> int:
        """Rows of X_test: n_test P."""
        return self.n_test * self.patches

    @property
    def n_directions(self) -> int:
        """Rows of the directions block: mu1, mu2, then the tracked ones (0: none)."""
        if self.mu_norm is None and self.tracked is None:
            return 0
        return 2 + (0 if self.tracked is None else self.tracked.shape[0])

    def _directions(self, M, j0, j1, dtype):
        """The block's directions: the means' rows (zero rows without means), then the tracked."""
        if self.tracked is None:
            return M
        if M is None:
            M = np.zeros((2, j1 - j0), dtype)
        return np.concatenate([M, np.asarray(self.tracked[:, j0:j1], dtype=dtype)])

    def _block(self, k, j0, j1, dtype):
        """(X_b, Xt_b or None, M_b (2, cols) or None) for column block k, in ``dtype``."""
        raise NotImplementedError

    def block_list(self):
        """``[(k, j0, j1), ...]``: the column blocks of the random streams."""
        return list(block_ranges(self.p))

    def data_block_list(self):
        """The blocks (or leading parts of blocks) outside which every data row is zero.

        The data rows are X, X_test and the means: the gram products need no other column.
        Here all of them.
        """
        return self.block_list()

    def block(self, k, j0, j1, dtype="float64"):
        """(X_b, Xt_b, W0_b, M_b) of column block k in ``dtype``; any order, any thread.

        M_b (k, cols) holds the directions (:attr:`n_directions` rows) or is None.
        """
        X, Xt, M = self._block(k, j0, j1, dtype)
        return (X, Xt, init_block(self.m, self.init_scale, self.seed, self.run, k, j1 - j0, dtype),
                self._directions(M, j0, j1, dtype))

    def blocks(self, dtype="float64"):
        """Yield (j0, j1, X_b, Xt_b, W0_b, M_b) over all column blocks, in order."""
        for k, j0, j1 in self.block_list():
            yield (j0, j1, *self.block(k, j0, j1, dtype))

    def problem(self, dtype) -> Problem:
        """All arrays materialised in ``dtype`` (memory checked first)."""
        dt = np.dtype(dtype)
        n, p, m, nt, k = self.rows, self.p, self.m, self.test_rows, self.n_directions
        check_fits((n + nt + m + k) * p * dt.itemsize,
                   f"the arrays of one run (n={n}, n_test={nt}, m={m}, p={p}, {dt})")
        X, W0 = empty_aligned((n, p), dt), empty_aligned((m, p), dt)
        Xt = empty_aligned((nt, p), dt) if nt else None
        M = empty_aligned((k, p), dt) if k else None
        for j0, j1, Xb, Xtb, Wb, Mb in self.blocks(dt):
            X[:, j0:j1], W0[:, j0:j1] = Xb, Wb
            if nt:
                Xt[:, j0:j1] = Xtb
            if k:
                M[:, j0:j1] = Mb
        return Problem(X, self.y, W0, self.a, Xt, self.y_test, M)


class GeneratedSource(Source):
    """Run ``run`` of the experiment ``cfg``: data, second layer and W0 from (cfg.seed, run)."""

    def __init__(self, cfg, run, tracked=None):
        self.draw = run_draw(cfg, run)
        self.n, self.p, self.m, self.n_test = cfg.n, cfg.p, cfg.m, cfg.n_test
        self.patches = cfg.patches
        _mark_patch_rows(self, cfg)
        self.seed, self.run, self.init_scale = cfg.seed, run, cfg.init_scale
        self.y, self.y_test = self.draw.y, self.draw.y_test
        self.a = draw_second_layer(cfg.m, cfg.seed, run, cfg.second_layer,
                                   cfg.second_layer_scale)
        self.mu_norm = cfg.mean_norm
        self.flipped = self.draw.flipped
        self.tracked = tracked

    def _block(self, k, j0, j1, dtype):
        X, Xt, mu1, mu2 = self.draw.block(k, j0, j1, dtype)
        return X, Xt, np.stack([mu1, mu2])


def _mark_patch_rows(source, cfg):
    """Set the noise rows and signal directions of a source of patch data ``cfg``."""
    if cfg.data not in PATCH_DATA:
        return
    q = np.arange(source.rows) % cfg.patches
    source.noise_rows = np.flatnonzero(q >= cfg.signal_patches)
    source.signal_directions = 2 if cfg.data == "xor_patches" else 1


class ArraySource(Source):
    """A user's arrays (validated by the caller), with W0 and a drawn from (seed, run).

    Unless given (``W0``, ``a``). ``mu2`` may be None with ``mu1`` given (two-class data: its
    row of the directions is zero). ``flipped`` marks the flipped training labels, ``tracked``
    the directions whose projections are kept.
    """

    def __init__(self, X, y, m, init_scale=0.0, seed=0, run=0, second_layer="random",
                 X_test=None, y_test=None, mu1=None, mu2=None, W0=None, a=None, flipped=None,
                 tracked=None, patches=1, noise_rows=None):
        self.X, self.Xt = X, X_test  # patches: (n P, d), a row per patch
        rows, self.p = X.shape
        self.patches = patches
        self.n = rows // patches
        self.m, self.n_test = m, 0 if X_test is None else X_test.shape[0] // patches
        self.seed, self.run, self.init_scale = seed, run, init_scale
        self.y = np.asarray(y, dtype=np.float64)
        self.y_test = None if y_test is None else np.asarray(y_test, dtype=np.float64)
        if a is None:
            a = draw_second_layer(m, seed, run, second_layer)
        self.a = np.asarray(a, np.float64)
        self.W0 = W0
        self.M = None if mu1 is None else np.stack([mu1, np.zeros_like(mu1) if mu2 is None
                                                    else mu2])
        self.mu_norm = None if mu1 is None else float(np.linalg.norm(np.asarray(mu1, np.float64)))
        self.flipped, self.tracked = flipped, tracked
        self.noise_rows = noise_rows  # the caller's signal_patches: the rest are noise
        if patches > 1 and mu1 is not None:  # the signal directions given: signal learning
            self.signal_directions = 1 if mu2 is None else 2

    def _block(self, k, j0, j1, dtype):
        def conv(v):
            return None if v is None else np.asarray(v[:, j0:j1], dtype=dtype)

        return conv(self.X), conv(self.Xt), conv(self.M)

    def problem(self, dtype) -> Problem:
        """The caller's arrays without copies where the dtype already matches.

        A given W0 is copied (the direct method trains its W0 in place, and the caller's array
        must stay as it was), else W0 is drawn whole.
        """
        from .weights import init_weights

        def conv(v):
            return None if v is None else np.ascontiguousarray(v, dtype=dtype)

        W0 = (init_weights(self.m, self.p, self.init_scale, self.seed, self.run, dtype)
              if self.W0 is None else copy_aligned(self.W0, dtype))
        M = None if self.n_directions == 0 else self._directions(self.M, 0, self.p, dtype)
        return Problem(conv(self.X), self.y, W0, self.a, conv(self.Xt), self.y_test, conv(M))

    def block(self, k, j0, j1, dtype="float64"):
        """Columns j0:j1 of X, X_test, W0 and the directions in ``dtype`` (block k of the draw)."""
        if self.W0 is None:
            return super().block(k, j0, j1, dtype)
        X, Xt, M = self._block(k, j0, j1, dtype)
        return (X, Xt, np.asarray(self.W0[:, j0:j1], dtype=dtype),
                self._directions(M, j0, j1, dtype))


class ReducedSource(Source):
    """Run ``run`` of ``cfg`` in the reduced representation (docs/design.md 2.3).

    Exact in distribution.

    Training sees only inner products among x_i, x_test, w0_j, mu1, mu2, and the Gaussian noise
    and initialisation are rotation invariant, so the N = n + n_test + m vectors are drawn in
    dimension d = N + 2 with the joint law of all those inner products unchanged:

    * coordinates 0 and 1 span mu1 = ||mu|| e0, mu2 = ||mu|| e1; every vector has i.i.d.
      N(0, 1) entries there;
    * coordinates 2..N+1 hold the rows of a lower-triangular N x N matrix L with
      L_kk = sqrt(chi2(p - 2 - k)) and L_kl ~ N(0, 1) for l < k (Bartlett decomposition: the
      rows of L have the Gram matrix of N i.i.d. N(0, I_{p-2}) vectors); the data rows come
      first, so they are zero beyond column n + n_test + 2 (:meth:`data_block_list`);
    * weight rows are scaled by init_scale; data rows get +-||mu|| on their cluster coordinate.

    Rows are ordered X (n), X_test (n_test), W0 (m). Labels and second layer come from the same
    streams as the full representation; the noise does not (it lives in other coordinates).
    Columns are drawn per column block from their own streams, so blocks can be drawn in any
    order, like the full representation's. Entries are formed in float64 (the diagonal is about
    sqrt(p), the rest about 1) and rounded once to the working dtype.
    """

    def __init__(self, cfg, run):
        P = cfg.patches
        N = P * (cfg.n + cfg.n_test) + cfg.m
        if cfg.p - 2 < N:
            raise ValueError(
                f"representation='reduced' needs p - 2 >= {P} (n + n_test) + m = {N}, got "
                f"p={cfg.p}; use representation='full' (it is cheap at this size)")
        self.draw = run_draw(cfg, run, p=2)
        self.N, self.p_nominal = N, cfg.p
        self.n, self.p, self.m, self.n_test = cfg.n, N + 2, cfg.m, cfg.n_test
        self.patches = P
        _mark_patch_rows(self, cfg)
        self.seed, self.run, self.init_scale = cfg.seed, run, cfg.init_scale
        self.y, self.y_test = self.draw.y, self.draw.y_test
        self.a = draw_second_layer(cfg.m, cfg.seed, run, cfg.second_layer,
                                   cfg.second_layer_scale)
        self.mu_norm = cfg.mean_norm
        self.flipped = self.draw.flipped
        self.population_test_samples = cfg.population_test_samples

    def population_accuracy(self, W, step, model):
        """Clean test accuracy and loss over the population, from fresh test points.

        A fresh x = +-||mu|| e_k + xi has W x = +-||mu|| W e_k + W xi, and since every row of W
        lies in the span of the reduced coordinates, W xi = W g with g ~ N(0, I_d) exactly.
        ``population_test_samples`` points per cluster (independent across clusters, from the stream
        (seed, run, POPULATION, step)); ``model`` gives the activation and the loss.

        Returns
        -------
        acc, loss, se : float
            Mean over the clusters (four for XOR data, two for linear data), and the Monte
            Carlo standard error of acc.
        """
        from . import reference
        from .data import CLUSTERS, STREAM_POPULATION, rng

        k = self.population_test_samples
        g = rng(self.seed, self.run, STREAM_POPULATION, step)
        W = np.asarray(W, dtype=np.float64)
        accs, losses = [], []
        for mean, sign, label in CLUSTERS[self.draw.data]:
            coord = mean - 1  # mu1 = ||mu|| e0, mu2 = ||mu|| e1
            U = W @ g.standard_normal((self.p, k)) + (sign * self.mu_norm) * W[:, coord:coord + 1]
            f = reference.activation(U, model.act).T @ self.a
            accs.append(np.mean(label * f > 0))
            losses.append(reference.mean_loss(label, f, model.loss))
        accs = np.array(accs)
        se = np.sqrt(np.sum(accs * (1 - accs) / k)) / len(accs)
        return float(accs.mean()), float(np.mean(losses)), float(se)

    def data_block_list(self):
        """The column blocks up to n + n_test + 2.

        The data rows of L are zero beyond them (row k of L ends at its diagonal), so the gram
        products need no other column.
        """
        span = self.rows + self.test_rows + 2
        return [(k, j0, min(j1, span)) for k, j0, j1 in self.block_list() if j0 < span]

    def _column_parts(self, k, j0, j1):
        """The draws of columns j0:j1 of the (N, d) matrix of all vectors before scaling and means.

        Returns (head, c0, normals, diag): ``head`` (N, h) float64, the block's columns among
        the two mean coordinates (i.i.d. N(0, 1) for every vector); then the block's columns of
        L from L's column c0 on: their diagonal ``diag`` and their entries below it,
        ``normals``, one column after another.

        Block k's entries of L are drawn column by column from two streams of its own, the
        normals below the diagonal and the chi-square diagonal, so that the leading columns of a
        block are the leading draws of its streams: a block cut short (:meth:`data_block_list`)
        holds the same numbers as the same columns of the whole block.
        """
        from .data import (
            STREAM_REDUCED_DIAG,
            STREAM_REDUCED_L,
            STREAM_REDUCED_MU,
            rng,
            standard_normals,
        )

        N = self.N
        head = np.zeros((N, 0))
        if j0 < 2:
            G = rng(self.seed, self.run, STREAM_REDUCED_MU).standard_normal((N, 2))
            head = np.ascontiguousarray(G[:, j0:min(2, j1)])
        c0, c1 = max(j0, 2) - 2, j1 - 2  # the L columns in this block
        normals, diag = np.zeros(0), np.zeros(0)
        if c1 > c0:
            cols = np.arange(c0, c1)
            below = N - 1 - cols  # entries below the diagonal, per column
            normals = standard_normals(self.seed, self.run, STREAM_REDUCED_L, k,
                                       int(below.sum()), np.float64)
            diag = np.sqrt(rng(self.seed, self.run, STREAM_REDUCED_DIAG, k)
                           .chisquare(self.p_nominal - 2 - cols))
        return head, c0, normals, diag

    def _columns(self, k, j0, j1):
        """Columns j0:j1 of the (N, d) matrix of all vectors before scaling and means.

        Float64, a transposed view (:meth:`_column_parts`).
        """
        N = self.N
        head, c0, normals, diag = self._column_parts(k, j0, j1)
        RT = np.zeros((j1 - j0, N))  # row q: column j0 + q, so that each column is contiguous
        h = head.shape[1]
        RT[:h] = head.T
        at = 0
        for q in range(len(diag)):
            c = c0 + q
            row = RT[h + q]
            row[c] = diag[q]
            row[c + 1:] = normals[at:at + N - 1 - c]
            at += N - 1 - c
        return RT.T

    def _place_patches(self, RT, j0, j1, M):
        """Patch data in place in the block's R (cols, N): the signal rows, the noise rows.

        A signal row is its cluster mean only (its own Gaussian entries are dropped: the other
        rows of a Bartlett draw keep the law of independent vectors); a noise row is sigma_p
        times its Gaussian entries, zero on the means' coordinates (docs/design.md, "Patches").
        """
        d = self.draw
        P, s = d.patches, d.signal_patches
        for first, signs, count in ((0, d._s, self.n), (self.rows, d._s_test, self.n_test)):
            rows = RT[:, first:first + count * P].reshape(len(RT), count, P)
            rows[:, :, s:] *= d.sigma_p
            for c in d.mean_columns:
                if j0 <= c < j1:
                    rows[c - j0, :, s:] = 0.0
            rows[:, :, :s] = 0.0
            for c in range(min(j1, 2) - j0):
                rows[c, :, :s] = (signs[0] * M[0, c] + signs[1] * M[1, c])[:, None]

    def block(self, k, j0, j1, dtype="float64"):
        """Columns j0:j1 of X, X_test, W0 and the means in ``dtype``, in the reduced draw.

        X, W0 and the means are consecutive rows of one buffer (X_test before them), so that the
        gram build's right operand [X; W0; M] needs no copy.
        """
        n, nt = self.rows, self.test_rows
        M = np.zeros((2, j1 - j0))
        for row, col in ((0, 0), (1, 1)):
            if j0 <= col < j1:
                M[row, col - j0] = self.mu_norm
        try:
            from .kernels.normals import bartlett_rows
        except ImportError:  # no Numba: the same numbers from NumPy
            bartlett_rows = None
        if self.noise_rows is not None or bartlett_rows is None:
            return self._block_numpy(k, j0, j1, dtype, M)
        head, c0, normals, diag = self._column_parts(k, j0, j1)
        for c in range(head.shape[1]):
            self._add_means(head[:, c], M[:, c])
        R = empty_aligned_from((self.N + 2, j1 - j0), dtype, nt)  # Xt, X, W0, M
        bartlett_rows(normals, diag, head, c0, n, nt, float(self.init_scale), R)
        R[self.N:] = M
        return R[nt:nt + n], R[:nt] if nt else None, R[nt + n:self.N], R[self.N:]

    def _add_means(self, col, mc):
        """Add the data rows' means to ``col`` (N,), a column of the draw, in float64.

        ``mc``: the means' entries in that column. The means live in columns 0 and 1 only
        (elsewhere the sum would add +-0, which changes no entry: the draw holds no -0).
        """
        n, nt = self.rows, self.test_rows
        col[:n] += self.draw._s[0] * mc[0] + self.draw._s[1] * mc[1]
        col[n:n + nt] += self.draw._s_test[0] * mc[0] + self.draw._s_test[1] * mc[1]

    def _block_numpy(self, k, j0, j1, dtype, M):
        """:meth:`block` from the draw's float64 columns with NumPy (patch data, or no Numba)."""
        n, nt = self.rows, self.test_rows
        RT = self._columns(k, j0, j1).T  # (cols, N), contiguous: every update below is too
        if self.noise_rows is not None:  # patch data
            self._place_patches(RT, j0, j1, M)
        else:
            for c in range(min(j1, 2) - j0):
                self._add_means(RT[c], M[:, c])
        RT[:, n + nt:] *= self.init_scale
        X, Xt, W0 = RT[:, :n].T, RT[:, n:n + nt].T, RT[:, n + nt:].T

        def conv(v):
            return np.ascontiguousarray(v, dtype=dtype)

        return conv(X), conv(Xt) if nt else None, conv(W0), conv(M)
