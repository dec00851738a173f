"""The data: XOR clusters, noisy linear clusters, and the random streams of a run.

XOR-cluster data follow Xu et al. 2024, Definition 2.1; noisy linear data are two clusters.

Every random quantity of run ``run`` under master seed ``seed`` comes from its own stream, an
SFC64 generator seeded by ``SeedSequence(seed, spawn_key=(run, stream, block))``. The p-sized
matrices (X, X_test, W0 and the random means) are drawn in fixed-width column blocks of
:data:`fastgrok.tunables.DATA_BLOCK` columns, block ``k`` from its own stream, so a method that
streams over p sees exactly the numbers a method that materialises the matrices sees.

The Gaussian noise is drawn as float32 standard normals (NumPy's float32 ziggurat: 1.6x faster
than float64 draws, and the draws dominate the cost of building an experiment); a block in the
working dtype is then formed in that dtype (noise + cluster mean, or init_scale * noise), by the
same arithmetic whichever method asks for it. float64 and float32 data therefore agree to
float32 rounding, and each dtype is reproducible exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import tunables
from ._memory import check_fits
from .config import PATCH_DATA, Config
from .kernels.memory import empty_aligned

# Stream identifiers: part of the random-stream definition; never renumber.
(STREAM_LABELS, STREAM_TEST_LABELS, STREAM_X, STREAM_X_TEST, STREAM_A, STREAM_W0, STREAM_MEANS,
 STREAM_REDUCED_MU, STREAM_REDUCED_L, STREAM_POPULATION, STREAM_REDUCED_DIAG,
 STREAM_BATCHES) = range(12)


def rng(seed: int, run: int, stream: int, block: int = 0) -> np.random.Generator:
    """The generator of one (seed, run, stream, block) stream."""
    seq = np.random.SeedSequence(seed, spawn_key=(run, stream, block))
    return np.random.Generator(np.random.SFC64(seq))


def standard_normals(seed: int, run: int, stream: int, block: int, shape, dtype) -> np.ndarray:
    """``rng(seed, run, stream, block).standard_normal(shape, dtype=dtype)``, drawn faster.

    The same numbers to the bit (float32 or float64), from the Numba kernels of
    :mod:`fastgrok.kernels.normals` (NumPy's ziggurat on the stream's SFC64 words, without its
    mispredicted sign branch); NumPy draws them where those kernels are not available (no
    Numba, as on a GPU machine that lacks it).
    """
    dt = np.dtype(dtype)
    gen = rng(seed, run, stream, block)
    try:
        from .kernels import normals
    except ImportError:
        normals = None
    if normals is None or not normals.AVAILABLE:  # the same numbers at NumPy's speed
        return gen.standard_normal(shape, dtype=dt)
    out = np.empty(shape, dt)
    state = np.array(gen.bit_generator.state["state"]["state"], np.uint64)  # a, b, c, counter
    (normals.normals32 if dt == np.float32 else normals.normals64)(state, out.reshape(-1))
    return out


def block_ranges(p: int, width: int | None = None):
    """Yield ``(k, j0, j1)`` for the column blocks of the random-stream definition."""
    width = tunables.DATA_BLOCK if width is None else width
    for k, j0 in enumerate(range(0, p, width)):
        yield k, j0, min(j0 + width, p)


def gaussian_block(seed, run, stream, k, rows, cols, dtype="float64"):
    """Standard-normal block ``k`` (rows x cols) of a blocked p-sized matrix, in ``dtype``.

    Drawn as float32 normals (the stream definition) and converted exactly to float64 if asked.
    """
    z = standard_normals(seed, run, stream, k, (rows, cols), np.float32)
    return z if np.dtype(dtype) == np.float32 else z.astype(dtype)


#: Clusters of each data model, as (mean, sign, clean label): cluster k is x = sign mu_mean + xi.
CLUSTERS = {"xor": ((1, 1.0, 1.0), (1, -1.0, 1.0), (2, 1.0, -1.0), (2, -1.0, -1.0)),
            "linear": ((1, 1.0, 1.0), (1, -1.0, -1.0))}


def _clean_labels(clusters, data):
    """The clean label of each sample from its cluster index (see :data:`CLUSTERS`)."""
    labels = np.array([label for _, _, label in CLUSTERS[data]])
    return labels[clusters]


def _cluster_signs(clusters):
    """Coefficients (s1, s2) with xbar = s1 mu1 + s2 mu2 for each cluster index.

    From the XOR table of :data:`CLUSTERS`; linear data use its first two clusters.
    """
    table = np.array([[sign if mean == k else 0.0 for k in (1, 2)]
                      for mean, sign, _ in CLUSTERS["xor"]])
    return table[clusters, 0], table[clusters, 1]


class RunDraw:
    """The data of one run, drawn lazily block by block over p.

    Labels and cluster memberships are drawn at construction (they are O(n)); the p-sized parts
    are drawn per column block by :meth:`block`, always with the same numbers for the same
    (seed, run, block).

    Parameters
    ----------
    n, p, n_test : int
        Sizes.
    mu_norm : float
        ||mu1|| = ||mu2||.
    noise_rate : float
        Training-label flip probability.
    seed, run : int
        Stream keys.
    means : {"axis", "random"}
        mu1 = mu_norm e_1, mu2 = mu_norm e_2, or a random orthogonal pair.
    data : {"xor", "linear"}
        Four clusters +-mu1 -> +1, +-mu2 -> -1; or two, +mu1 -> +1, -mu1 -> -1 (mu2 unused).
    label_noise : {"independent", "exact"}
        How the flips are drawn (:func:`flip_mask`).
    """

    def __init__(self, n, p, n_test, mu_norm, noise_rate, seed, run, means="axis", data="xor",
                 label_noise="independent"):
        self.n, self.p, self.n_test = n, p, n_test
        self.mu_norm, self.noise_rate = float(mu_norm), float(noise_rate)
        self.seed, self.run, self.means, self.data = seed, run, means, data
        k = len(CLUSTERS[data])
        g = rng(seed, run, STREAM_LABELS)
        self.clusters = g.integers(0, k, size=n)
        self.y_clean = _clean_labels(self.clusters, data)
        self.flipped = flip_mask(g.random(n), self.y_clean, noise_rate, label_noise)
        self.y = np.where(self.flipped, -self.y_clean, self.y_clean)
        self.clusters_test = rng(seed, run, STREAM_TEST_LABELS).integers(0, k, size=n_test)
        self.y_test = _clean_labels(self.clusters_test, data)
        self._s = _cluster_signs(self.clusters)
        self._s_test = _cluster_signs(self.clusters_test)
        self._mean_coef = self._random_mean_coefficients() if means == "random" else None

    def _raw_means(self, k, cols):
        return gaussian_block(self.seed, self.run, STREAM_MEANS, k, 2, cols, np.float64)

    def _random_mean_coefficients(self):
        # Gram-Schmidt on two Gaussian vectors needs their global norms and inner product: one
        # cheap pass over the blocks (2 p numbers), after which every block is a fixed linear map.
        g11 = g12 = g22 = 0.0
        for k, j0, j1 in block_ranges(self.p):
            r = self._raw_means(k, j1 - j0)
            g11 += r[0] @ r[0]
            g12 += r[0] @ r[1]
            g22 += r[1] @ r[1]
        c11 = self.mu_norm / np.sqrt(g11)
        proj = g12 / g11
        u2_sq = g22 - proj * g12  # ||r2 - proj r1||^2
        c22 = self.mu_norm / np.sqrt(u2_sq)
        return c11, -proj * c22, c22

    def mean_block(self, k, j0, j1):
        """Columns j0:j1 (block k) of mu1 and mu2, float64."""
        if self._mean_coef is None:
            mu = np.zeros((2, j1 - j0))
            for row, col in ((0, 0), (1, 1)):
                if j0 <= col < j1:
                    mu[row, col - j0] = self.mu_norm
            return mu[0], mu[1]
        c11, c21, c22 = self._mean_coef
        r = self._raw_means(k, j1 - j0)
        return c11 * r[0], c21 * r[0] + c22 * r[1]

    def block(self, k, j0, j1, dtype="float64"):
        """Columns j0:j1 (block k) of X, X_test, mu1, mu2 in ``dtype``.

        X = noise + s1 mu1 + s2 mu2, evaluated in ``dtype`` (s = +-1 or 0 by cluster).
        """
        dt = np.dtype(dtype)
        mu1, mu2 = (mu.astype(dt) for mu in self.mean_block(k, j0, j1))
        cols = j1 - j0
        X = gaussian_block(self.seed, self.run, STREAM_X, k, self.n, cols, dt)
        Xt = gaussian_block(self.seed, self.run, STREAM_X_TEST, k, self.n_test, cols, dt)
        # Only columns where a mean is non-zero change: for axis means that is two columns of
        # the whole matrix, and adding the zero terms elsewhere would not change a bit.
        cols_nz = np.flatnonzero((mu1 != 0) | (mu2 != 0))
        for M, (s1, s2) in ((X, self._s), (Xt, self._s_test)):
            s1, s2 = s1.astype(dt), s2.astype(dt)
            M[:, cols_nz] += s1[:, None] * mu1[cols_nz]
            M[:, cols_nz] += s2[:, None] * mu2[cols_nz]
        return X, Xt, mu1, mu2


class PatchDraw(RunDraw):
    """The patch data of one run (the two-layer CNN; docs/design.md, "Patches").

    A sample is P patches, one row each (sample i's in rows i P .. i P + P - 1): the first
    ``signal_patches`` are its signal, the cluster mean (y_clean mu1 for "patches"; +-mu1 or
    +-mu2 with the XOR label for "xor_patches"), the others noise xi ~ N(0, sigma_p^2 (I - the
    projection on the means)). With axis means the projection zeroes the means' coordinates,
    so a noise patch is sigma_p times the normals of stream X (test: X_TEST) with those
    coordinates set to 0. Labels and flips are drawn as :class:`RunDraw` draws them.
    """

    def __init__(self, n, p, n_test, mu_norm, noise_rate, seed, run, data="patches",
                 label_noise="independent", patches=2, signal_patches=1, sigma_p=1.0):
        super().__init__(n, p, n_test, mu_norm, noise_rate, seed, run, "axis",
                         "xor" if data == "xor_patches" else "linear", label_noise)
        self.patches, self.signal_patches = int(patches), int(signal_patches)
        self.sigma_p = float(sigma_p)
        # The coordinates the noise is orthogonal to: the means in use.
        self.mean_columns = (0, 1) if data == "xor_patches" else (0,)

    def _patch_block(self, stream, k, j0, j1, samples, signs, dt):
        P, s = self.patches, self.signal_patches
        cols = j1 - j0
        out = np.empty((samples, P, cols), dt)
        noise = gaussian_block(self.seed, self.run, stream, k, samples * (P - s), cols, dt)
        out[:, s:] = (dt.type(self.sigma_p) * noise).reshape(samples, P - s, cols)
        for c in self.mean_columns:
            if j0 <= c < j1:
                out[:, s:, c - j0] = 0
        if s:
            mu1, mu2 = (mu.astype(dt) for mu in self.mean_block(k, j0, j1))
            s1, s2 = (v.astype(dt) for v in signs)
            out[:, :s] = (s1[:, None] * mu1 + s2[:, None] * mu2)[:, None, :]
        return out.reshape(samples * P, cols)

    def block(self, k, j0, j1, dtype="float64"):
        """Columns j0:j1 (block k) of the patch rows of X (n P) and X_test (n_test P), mu1, mu2."""
        dt = np.dtype(dtype)
        mu1, mu2 = (mu.astype(dt) for mu in self.mean_block(k, j0, j1))
        return (self._patch_block(STREAM_X, k, j0, j1, self.n, self._s, dt),
                self._patch_block(STREAM_X_TEST, k, j0, j1, self.n_test, self._s_test, dt),
                mu1, mu2)


def run_draw(cfg, run, p=None):
    """The :class:`RunDraw` (or :class:`PatchDraw`) of run ``run`` of the experiment ``cfg``."""
    p = cfg.p if p is None else p
    if cfg.data in PATCH_DATA:
        return PatchDraw(cfg.n, p, cfg.n_test, cfg.mean_norm, cfg.noise_rate, cfg.seed, run,
                         cfg.data, cfg.label_noise, cfg.patches, cfg.signal_patches, cfg.sigma_p)
    return RunDraw(cfg.n, p, cfg.n_test, cfg.mean_norm, cfg.noise_rate, cfg.seed, run,
                   cfg.means, cfg.data, cfg.label_noise)


@dataclass
class Dataset:
    """A materialised data set (XOR clusters or noisy linear).

    Attributes
    ----------
    X : (n, p) array
        Training inputs.
    y : (n,) array
        Noisy training labels in {-1, +1} (what training uses).
    y_clean : (n,) array
        Clean training labels.
    X_test : (n_test, p) array
    y_test : (n_test,) array
        Clean test labels.
    mu1, mu2 : (p,) arrays
        The cluster means.
    clusters, clusters_test : int arrays
        Cluster index of each sample: 0 = +mu1, 1 = -mu1, 2 = +mu2, 3 = -mu2 (linear data: 0
        and 1 only).
    flipped : (n,) bool array
        Which training labels were flipped.
    """

    X: np.ndarray
    y: np.ndarray
    y_clean: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    mu1: np.ndarray
    mu2: np.ndarray
    clusters: np.ndarray
    clusters_test: np.ndarray
    flipped: np.ndarray


def materialize(draw: RunDraw, dtype="float64") -> Dataset:
    """Draw every block of ``draw`` and assemble the full matrices in ``dtype``."""
    dt = np.dtype(dtype)
    P = getattr(draw, "patches", 1)
    n, p, nt = draw.n * P, draw.p, draw.n_test * P  # patches: a row per patch
    check_fits((n + nt + 2) * p * dt.itemsize, f"the data set (n={n}, n_test={nt}, p={p}, {dt})")
    X, Xt = empty_aligned((n, p), dt), empty_aligned((nt, p), dt)
    mu1, mu2 = empty_aligned(p, dt), empty_aligned(p, dt)
    for k, j0, j1 in block_ranges(p):
        X[:, j0:j1], Xt[:, j0:j1], mu1[j0:j1], mu2[j0:j1] = draw.block(k, j0, j1, dt)
    return Dataset(X, draw.y.astype(dt), draw.y_clean.astype(dt), Xt, draw.y_test.astype(dt),
                   mu1, mu2, draw.clusters, draw.clusters_test, draw.flipped)


def xor_clusters(n: int, p: int, n_test: int = 200, mu_norm: float | None = None,
                 noise_rate: float = 0.05, seed: int = 0, run: int = 0, means: str = "axis",
                 dtype: str = "float64", label_noise: str = "independent") -> Dataset:
    """Draw the XOR-cluster data of Xu et al. 2024 (Definition 2.1; docs/design.md section 1).

    x = xbar + xi with xbar uniform on {+mu1, -mu1, +mu2, -mu2} and xi ~ N(0, I_p); the clean
    label is +1 on the +-mu1 clusters and -1 on the +-mu2 clusters; each training label is flipped
    independently with probability ``noise_rate``; test labels are clean.

    Parameters
    ----------
    n, p, n_test : int
        Training samples, dimension, test samples.
    mu_norm : float, optional
        ||mu1|| = ||mu2||; default the paper's 2.5 sqrt(p / n).
    noise_rate : float
        Flip probability eta in [0, 0.5).
    seed, run : int
        The (seed, run) pair that keys every random stream (see module docstring).
    means : {"axis", "random"}
        Axis-aligned means (default) or a random orthogonal pair.
    dtype : {"float64", "float32"}
        Dtype of the returned arrays (see the module docstring for how the two relate).
    label_noise : {"independent", "exact"}
        Each label flips with probability ``noise_rate``, or exactly round(noise_rate n)
        labels flip, split over the clean classes (:func:`flip_mask`).

    Returns
    -------
    Dataset
        X (n, p), y (n,) noisy labels, X_test (n_test, p), y_test clean labels, mu1, mu2 (p,),
        and the clusters and flips of the draw.

    Raises
    ------
    TypeError, ValueError
        An argument of the wrong type or out of range (named in the message).

    See Also
    --------
    linear_clusters : the noisy linear data model.
    fit : train on the arrays.

    Examples
    --------
    >>> import fastgrok as fg
    >>> ds = fg.xor_clusters(8, 1000, n_test=4, seed=0)
    >>> ds.X.shape, ds.X_test.shape
    ((8, 1000), (4, 1000))
    >>> ds.y
    array([ 1.,  1.,  1.,  1.,  1.,  1., -1., -1.])
    """
    return _dataset("xor", n, p, n_test, mu_norm, noise_rate, seed, run, means, dtype,
                    label_noise)


def linear_clusters(n: int, p: int, n_test: int = 200, mu_norm: float | None = None,
                    noise_rate: float = 0.05, seed: int = 0, run: int = 0, means: str = "axis",
                    dtype: str = "float64", label_noise: str = "independent") -> Dataset:
    """Draw noisy linear data (Frei, Chatterji and Bartlett 2022): x = y_clean mu1 + xi.

    The clean label is uniform on {-1, +1}, xi ~ N(0, I_p); training labels flip with
    probability ``noise_rate``; test labels are clean. ``mu2`` is returned (the second mean of
    the same draw) but no sample uses it. Parameters and returns as :func:`xor_clusters`.

    Examples
    --------
    >>> import fastgrok as fg
    >>> ds = fg.linear_clusters(100, 1000, mu_norm=5.0, noise_rate=0.0, seed=0)
    >>> bool(((ds.X @ ds.mu1 > 0) == (ds.y > 0)).mean() > 0.9)
    True
    """
    return _dataset("linear", n, p, n_test, mu_norm, noise_rate, seed, run, means, dtype,
                    label_noise)


def patch_data(n: int, p: int, n_test: int = 200, patches: int = 2, mu_norm: float | None = None,
               noise_rate: float = 0.0, sigma_p: float = 1.0, signal_patches: int = 1,
               xor: bool = False, seed: int = 0, run: int = 0, dtype: str = "float64",
               label_noise: str = "independent") -> Dataset:
    """Draw the patch data of the two-layer CNN papers (Cao et al. 2022; Kou et al. 2023).

    A sample is ``patches`` patches of dimension p: the first ``signal_patches`` are the signal,
    y_clean mu1 (with ``xor``: +-mu1 for label +1, +-mu2 for label -1, as Meng et al. 2024),
    the others noise xi ~ N(0, sigma_p^2 (I - the projection on the means)). Training labels
    flip with probability ``noise_rate``; test labels are clean. The same numbers as
    ``fg.run`` draws for ``Config(data="patches", ...)`` (run ``run``, full representation).

    Parameters
    ----------
    n, p, n_test : int
        Training samples, patch dimension d, test samples.
    patches, signal_patches : int
        P patches per sample, of which ``signal_patches`` carry the signal.
    mu_norm : float, optional
        ||mu1|| = ||mu2|| (default 2.5 sqrt(p / n), as the XOR data).
    noise_rate, sigma_p : float
        Label-flip probability; the noise patches' standard deviation.
    xor : bool
        The XOR signal (data "xor_patches") in place of y mu1 (data "patches").
    seed, run, dtype, label_noise
        As :func:`xor_clusters`.

    Returns
    -------
    Dataset
        X (n, P, p) and X_test (n_test, P, p), the labels, mu1, mu2, clusters and flips.

    Examples
    --------
    >>> import numpy as np
    >>> import fastgrok as fg
    >>> ds = fg.patch_data(6, 50, n_test=4, patches=3, mu_norm=4.0, seed=0)
    >>> ds.X.shape
    (6, 3, 50)
    >>> bool(np.all(ds.X[:, 0] == ds.y_clean[:, None] * ds.mu1))   # the signal patch
    True
    >>> float(np.abs(ds.X[:, 1:] @ ds.mu1).max())                   # noise orthogonal to mu1
    0.0
    """
    ds = _dataset("xor_patches" if xor else "patches", n, p, n_test, mu_norm, noise_rate, seed,
                  run, "axis", dtype, label_noise, patches=patches,
                  signal_patches=signal_patches, sigma_p=sigma_p)
    ds.X = ds.X.reshape(n, patches, p)
    ds.X_test = ds.X_test.reshape(n_test, patches, p)
    return ds


def _dataset(data, n, p, n_test, mu_norm, noise_rate, seed, run, means, dtype,
             label_noise, **patch_fields) -> Dataset:
    cfg = Config(n=n, p=p, n_test=n_test, mu_norm=mu_norm, noise_rate=noise_rate, seed=seed,
                 means=means, dtype=str(np.dtype(dtype)) if _is_dtype(dtype) else dtype, runs=1,
                 data=data, label_noise=label_noise, **patch_fields)
    if isinstance(run, bool) or not isinstance(run, (int, np.integer)) or run < 0:
        raise ValueError(f"run must be a non-negative integer, got {run!r}")
    return materialize(run_draw(cfg, int(run)), cfg.dtype)


def epoch_permutation(n, seed, run, epoch):
    """The order of the n training samples in minibatch epoch ``epoch`` of run ``run``."""
    return rng(seed, run, STREAM_BATCHES, epoch).permutation(n)


class BatchSchedule:
    """The minibatches of one run, step by step (:func:`batch_schedule`), one epoch held."""

    def __init__(self, n, batch_size, seed, run):
        self.n, self.b, self.seed, self.run = int(n), int(batch_size), int(seed), int(run)
        self.per_epoch = self.n // self.b
        self._epoch, self._order = -1, None

    def batch(self, t):
        """The sample indices (batch_size,) of step t + 1 (t = 0, 1, ...)."""
        epoch, k = divmod(int(t), self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._order = epoch, epoch_permutation(self.n, self.seed, self.run, epoch)
        return self._order[k * self.b:(k + 1) * self.b]


def batch_schedule(n, batch_size, steps, seed=0, run=0) -> np.ndarray:
    """The minibatches of ``steps`` SGD steps of run ``run``: (steps, batch_size) sample indices.

    Each epoch is a permutation of the n samples drawn from the run's own stream (seed, run,
    epoch), cut into n // batch_size batches of exactly batch_size samples without replacement;
    the n % batch_size samples left over wait for the next epoch's permutation. Row t is the
    batch of step t + 1. Training reads the same schedule batch by batch, so an independent
    loop that replays it (``reference.step(X[B], y[B], ...)``) takes the same steps.

    Examples
    --------
    >>> import fastgrok as fg
    >>> B = fg.batch_schedule(10, 4, steps=3, seed=0)
    >>> B.shape
    (3, 4)
    >>> len(set(B[0]) | set(B[1]))  # one epoch: 2 batches without replacement
    8
    """
    sched = BatchSchedule(n, batch_size, seed, run)
    return np.stack([sched.batch(t) for t in range(steps)]) if steps else np.empty(
        (0, batch_size), np.int64)


def flip_mask(u, y_clean, noise_rate, label_noise="independent"):
    """Which training labels flip, from one uniform draw ``u`` (n,) per sample.

    "independent": sample i flips when u_i < noise_rate (each with probability eta).
    "exact": k = round(eta n) flips (NumPy's rint: half to even), split over the clean classes
    in proportion to their sizes (class +1 gets round(k n_+ / n), class -1 the rest, never more
    than its size); within a class the samples with the smallest u flip. The same u give both,
    so the clusters and the noise vectors of a run do not depend on the choice.

    Examples
    --------
    >>> import numpy as np
    >>> from fastgrok.data import flip_mask
    >>> u = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    >>> y = np.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    >>> flip_mask(u, y, 0.34, "exact").astype(int)   # round(0.34 * 6) = 2 flips, one per class
    array([0, 1, 0, 0, 0, 1])
    """
    u, y_clean = np.asarray(u), np.asarray(y_clean)
    if label_noise == "independent":
        return u < noise_rate
    if label_noise != "exact":
        raise ValueError(f"label_noise must be 'independent' or 'exact', got {label_noise!r}")
    n = len(u)
    k = int(np.rint(noise_rate * n))
    pos = np.flatnonzero(y_clean > 0)
    neg = np.flatnonzero(y_clean <= 0)
    # The proportional share, moved just enough that neither class gives more than it has.
    k_pos = int(np.clip(np.rint(k * len(pos) / n), k - len(neg), len(pos)))
    k_neg = k - k_pos
    flipped = np.zeros(n, dtype=bool)
    for idx, count in ((pos, k_pos), (neg, k_neg)):
        # A stable sort: ties in u (impossible for continuous draws) go to the lower index.
        flipped[idx[np.argsort(u[idx], kind="stable")[:count]]] = True
    return flipped


def _is_dtype(x):
    try:
        np.dtype(x)
        return True
    except TypeError:
        return False
