"""Hypothesis: every fast path against the float64 reference, on drawn arrays.

Each test draws the problem itself (shapes and the arrays X, W, y, a, a test set), runs a fast
path and the reference side by side, and compares at every step. A ReLU mask bit may
legitimately differ between two correct computations where a pre-activation is within rounding
of 0; beyond such a step the trajectories may part, so comparisons stop there. Kinks are
judged on the reference alone (an engine's bug can never stop a comparison), a problem that
starts on a kink is discarded with ``assume``, and so is one that reaches a kink before
``MIN_STEPS`` steps: every passing example compared at least that many steps.

The model family: every test that steps runs once per (activation, loss) pair
(:data:`FAMILY`: relu and leaky_relu x every loss, and the smooth relu_power (q = 2.5) with the
logistic loss and smoothed_leaky_relu (h = 0.3) with the hinge), the leak drawn in [0.01, 0.9]. The hinge loss has a second kink, at the margin y f = 1 (the weight jumps from 1
to 0); it is judged like the ReLU kink, on the reference alone.

Coverage (fast path x what is drawn; each row x the six pairs x float32/float64):

================================  ==========================================================
fg.step, numba (2 tile widths)    shapes, X, W, y, a, leak
direct engine x {numba, numpy,    shapes, X, W, y, a, test set, means, leak, tile width;
GPU emulated} ops                 20 steps (one test: test_engine_trajectory_matches_...)
gram engine x {numba, numpy,      1-3 runs stacked, each its own X, W, y, a, test set; leak;
GPU emulated} ops                 build block width; 20 steps (the same test)
gram build, streamed              block width; against products of the whole arrays
reduced representation            block width and the order the blocks are drawn in
================================  ==========================================================
"""
import numpy as np
import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import fastgrok as fg
from fastgrok import reference as ref
from fastgrok import tunables
from fastgrok.config import LOSSES
from fastgrok.data import BatchSchedule
from fastgrok.engines import CupyOps, DirectEngine, GramEngine, NumbaOps, NumpyOps
from fastgrok.model import Model
from fastgrok.sources import ArraySource, ReducedSource
from fastgrok.testing import EmulatedKernels

EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}
MIN_STEPS = 5
OPS = {"numba": NumbaOps, "numpy": NumpyOps, "gpu-emulated": lambda: CupyOps(EmulatedKernels(), np)}
#: Once, in the emulated GPU path's stacked float32 matmuls (not reproducible on rerun nor in
#: 200 000 isolated products): numpy's "invalid value encountered in matmul" with no NaN in the
#: result, a floating-point flag raised inside BLAS. A real NaN still fails the comparisons.
_MATMUL_FLAG = pytest.mark.filterwarnings("ignore:invalid value encountered in matmul:RuntimeWarning")

# Entries bounded away from 0 (a problem of zeros sits on every kink), either sign.
_entries = st.one_of(st.floats(0.05, 1.0), st.floats(-1.0, -0.05))
_signs = st.sampled_from([-1.0, 1.0])
_leaks = st.floats(0.01, 0.9)

FAMILY = [(act, loss) for act in ("relu", "leaky_relu") for loss in LOSSES] + [
    ("relu_power", "logistic"), ("smoothed_leaky_relu", "hinge")]


@pytest.fixture(params=FAMILY, ids=[f"{a}-{l}" for a, l in FAMILY])
def family(request):
    """(activation, loss); a test makes its Model with a drawn leak (:func:`_model`)."""
    return request.param


def _model(family, leak, weight_decay=0.0, lr_second=None, batch_size=None):
    activation, loss = family
    return Model(activation, leak if activation in ("leaky_relu", "smoothed_leaky_relu") else None,
                 loss, weight_decay, lr_second, batch_size,
                 power=2.5 if activation == "relu_power" else None,
                 smoothing=0.3 if activation == "smoothed_leaky_relu" else None)


#: Weight decay: none (the paper), or lambda with lr lambda = 0.1 at the tests' lr = 0.2.
_decays = st.sampled_from([0.0, 0.5])
#: The second layer: fixed (the paper) or trained with its own step size.
_second = st.sampled_from([None, 0.1])


@st.composite
def problems(draw, max_n=8, max_p=40, max_m=8, n=None, p=None, m=None, nt=None):
    """(X, y, W, a, Xt, yt) in float64, every array drawn."""
    n = n or draw(st.integers(1, max_n))
    p = p or draw(st.integers(2, max_p))
    m = m or draw(st.integers(1, max_m))
    nt = nt or draw(st.integers(1, 6))
    # Distinct entries: structured draws (equal rows, equal entries) put outputs exactly on a
    # tie, which is legitimate but leaves nothing to compare.
    X = draw(arrays(np.float64, (n, p), elements=_entries, unique=True))
    W = 0.1 * draw(arrays(np.float64, (m, p), elements=_entries, unique=True))
    y = draw(arrays(np.float64, n, elements=_signs))
    a = draw(arrays(np.float64, m, elements=_signs)) / np.sqrt(m)
    Xt = draw(arrays(np.float64, (nt, p), elements=_entries, unique=True))
    yt = draw(arrays(np.float64, nt, elements=_signs))
    return X, y, W, a, Xt, yt


def _kink_free(X, W, rel, wmax=0.0):
    """No pre-activation within ``rel`` (relative to its scale) of the ReLU kink.

    The scale of a neuron's row is at least ``wmax``, the largest weight seen so far: a row
    that updates have cancelled to nearly 0 is rounding noise of its earlier size, and its
    pre-activations' signs are then any rounding's.
    """
    Z = X @ W.T
    scale = np.abs(X).sum(1)[:, None] * np.maximum(np.abs(W).max(1), wmax)[None, :] + 1e-300
    return bool((np.abs(Z) > rel * scale).all())


def _decisive(X, W, a, rel, model, y=None):
    """No output within ``rel`` of 0 relative to its terms' sizes: the sign of f, and so the
    accuracy, is then the same in any correct rounding (neurons with equal rows and opposite a
    cancel exactly, and their rounded outputs may take either sign). With the hinge loss and
    labels ``y``, also no margin y f within ``rel`` of the hinge's kink at 1."""
    H = ref.activation(X @ W.T, model.act) * a
    size = np.abs(H).sum(1)
    # All-zero rows give f = 0 in every rounding (the masks agree away from kinks).
    ok = ((np.abs(H.sum(1)) > rel * size) | (size == 0)).all()
    if model.loss == "hinge" and y is not None:
        ok &= (np.abs(y * H.sum(1) - 1.0) > rel * (size + 1.0)).all()
    return bool(ok)


def _means(p, dtype):
    return 3 * np.eye(p, dtype=dtype)[0], 3 * np.eye(p, dtype=dtype)[1]


def _trajectories(engine, runs, dtype, lr, model, steps=20):
    """Step ``engine`` and the reference for every run; compare; return the steps compared."""
    rel = 1e-10 if dtype == np.float64 else 2e-4
    margin = 1e3 * EPS[dtype] * (1 if dtype == np.float64 else 10)
    # The reference runs on the numbers the engine saw (rounded to dtype), in float64.
    state = [[v.astype(dtype).astype(np.float64) for v in (X, W, Xt)] + [y, a.copy(), yt]
             for X, y, W, a, Xt, yt in runs]
    p = runs[0][0].shape[1]
    mu1, mu2 = (mu.astype(np.float64) for mu in _means(p, dtype))
    # Rounding errors scale with the largest weights seen so far (a weight that an update has
    # brought near 0 carries the rounding of its earlier size).
    wmax = [np.abs(W).max() for _, W, *_ in state]
    compared = 0
    # Minibatches: the test's sources all have seed 0 and run 0, so one schedule for every run.
    batches = None if model.batch_size is None else BatchSchedule(
        runs[0][0].shape[0], model.batch_size, 0, 0)
    for t in range(steps + 1):
        if not all(_kink_free(X, W, margin, wm) and _kink_free(Xt, W, margin, wm)
                   and _decisive(X, W, a, margin, model, y) and _decisive(Xt, W, a, margin, model)
                   for (X, W, Xt, y, a, yt), wm in zip(state, wmax, strict=True)):
            break
        wmax = [max(w, np.abs(s[1]).max()) for w, s in zip(wmax, state)]
        for got, (X, W, Xt, y, a, yt), wm in zip(engine.evaluate(), state, wmax):
            want = ref.evaluate(X, y, W, a, Xt, yt, mu1, mu2, model.act, model.loss)
            assert got["train_acc"] == want["train_acc"] and got["test_acc"] == want["test_acc"]
            for k in ("train_loss", "test_loss"):
                # The square loss near its target, (1 - z)^2 / 2 with z close to 1, carries the
                # outputs' rounding relative to 1 - z: an error of about sqrt(2 loss) |df| +
                # |df|^2 / 2, with |df| up to rel |f| and |f| near 1 there.
                near = rel * np.sqrt(2 * want[k]) + rel**2 if model.loss == "square" else 0.0
                assert got[k] == pytest.approx(want[k], rel=rel, abs=near + 1e-300)
            for k in ("P1", "P2"):
                np.testing.assert_allclose(got[k], want[k], rtol=0, atol=rel * wm * 3 + 1e-300)
        # The engine's pre-activations Z = X W^T (the state its next step starts from).
        for Z, (X, W, *_), wm in zip(_preactivations(engine), state, wmax, strict=True):
            np.testing.assert_allclose(Z, X @ W.T, rtol=0,
                                       atol=rel * np.abs(X).sum(1).max() * wm + 1e-300)
        compared += 1
        if t < steps:
            B = slice(None) if batches is None else batches.batch(t)
            for X, W, Xt, y, a, yt in state:
                ref.step(X[B], y[B], W, a, lr, model.act, model.loss, model.weight_decay,
                         model.lr_second)
            engine.step(prepare_eval=bool(t % 2))
    note(f"compared {compared} steps")
    return compared, state, wmax


def _preactivations(engine):
    """Every run's Z (n, m) on the host: the direct engine's, or the gram engine's after it
    brings Z up to date (the CPU's linear regime keeps its own)."""
    if isinstance(engine, DirectEngine):
        return [np.asarray(engine.ops.to_host(engine.Z), np.float64)]
    engine.sync()
    return [np.asarray(z, np.float64) for z in engine.ops.to_host(engine.Z)]


def _sources(runs, dtype):
    p = runs[0][0].shape[1]
    mu1, mu2 = _means(p, dtype)
    return [ArraySource(X, y, W.shape[0], X_test=Xt, y_test=yt, mu1=mu1, mu2=mu2, W0=W.copy(), a=a)
            for X, y, W, a, Xt, yt in runs]


@pytest.fixture(params=[7, 0], ids=["tile7", "tile-default"])
def tile(request, monkeypatch):
    monkeypatch.setattr(tunables, "DIRECT_TILE_COLS", request.param)


@given(problems(max_p=40), st.sampled_from([np.float32, np.float64]), _leaks, _decays)
def test_fg_step_numba_matches_the_reference(tile, family, prob, dtype, leak, decay):
    X, y, W, a, _, _ = prob
    model = _model(family, leak, decay)
    X, W = X.astype(dtype), W.astype(dtype)
    X64, W64 = X.astype(np.float64), W.astype(np.float64)
    assume(_kink_free(X64, W64, 1e3 * EPS[dtype]) and _decisive(X64, W64, a, 1e3 * EPS[dtype], model, y))
    n, p = X.shape
    expected = ref.step(X64, y, W64.copy(), a, 0.05, model.act, model.loss, decay)
    got = fg.step(X, y, W.copy(), a, 0.05, backend="numba", activation=model.activation,
                  leak=model.leak, loss=model.loss, weight_decay=decay, power=model.power,
                  smoothing=model.smoothing)
    assert got.dtype == dtype
    # float64: rounding only. float32: each product sums at most p + n float32 terms.
    tol = 1e-10 if dtype == np.float64 else 4 * (p + n) * EPS[np.float32]
    scale = np.abs(expected - W64).max() + np.abs(W64).max() * (dtype == np.float32)
    np.testing.assert_allclose(got, expected, rtol=0, atol=tol * scale + 1e-300)


@_MATMUL_FLAG
@pytest.mark.parametrize("method", ["direct", "gram"])
@pytest.mark.parametrize("ops", list(OPS))
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]), leak=_leaks,
       tile_cols=st.sampled_from([7, 0]), block=st.sampled_from([16, 8192]), decay=_decays,
       lr_second=_second)
def test_engine_trajectory_matches_the_reference(family, method, ops, data, dtype, leak,
                                                 tile_cols, block, decay, lr_second):
    """The oracle test: every method x backend x dtype x activation x loss, 20 steps against
    the float64 reference (evaluations at every step, the weights at the end). The direct pass
    runs with tiny tiles (7 columns: tail tiles and many chunks) or the default width; the gram
    build with several blocks (16 columns, a ragged last one) or one. With and without weight
    decay, with the second layer fixed or trained, full batch or minibatches."""
    runs = 1 if method == "direct" else data.draw(st.integers(1, 3), label="runs")
    n, p, m, nt = (data.draw(st.integers(1, 6)), data.draw(st.integers(2, 40)),
                   data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4)))
    batch = data.draw(st.sampled_from([None, max(1, n // 2)]), label="batch_size")
    model = _model(family, leak, decay, lr_second, batch)
    probs = [data.draw(problems(n=n, p=p, m=m, nt=nt)) for _ in range(runs)]
    margin = 1e4 * EPS[dtype]
    assume(all(_kink_free(X, W, margin) and _kink_free(Xt, W, margin) for X, _, W, _, Xt, _ in probs))
    saved = tunables.DIRECT_TILE_COLS, tunables.DATA_BLOCK
    tunables.DIRECT_TILE_COLS, tunables.DATA_BLOCK = tile_cols, block
    try:
        Engine = DirectEngine if method == "direct" else GramEngine
        engine = Engine(_sources(probs, dtype), 0.2, dtype, ops=OPS[ops](), model=model)
        compared, state, wmax = _trajectories(engine, probs, dtype, 0.2, model)
        assume(compared >= MIN_STEPS)
        weights = ([engine.ops.to_host(engine.W)] if method == "direct"
                   else [engine.weights(r) for r in range(runs)])
    finally:
        tunables.DIRECT_TILE_COLS, tunables.DATA_BLOCK = saved
    rel = (1e-10 if method == "direct" else 1e-9) if dtype == np.float64 else 2e-4
    for W, (_, W64, *_), wm in zip(weights, state, wmax, strict=True):
        np.testing.assert_allclose(W, W64, rtol=0, atol=rel * wm)


@given(prob=problems(), width=st.integers(1, 40), dtype=st.sampled_from(["float32", "float64"]))
def test_gram_build_streamed_in_any_block_width_equals_whole_products(prob, width, dtype):
    from fastgrok.engines.gram import build

    X, y, W, a, Xt, yt = prob
    mu1, mu2 = _means(X.shape[1], np.float64)
    src = ArraySource(X, y, W.shape[0], X_test=Xt, y_test=yt, mu1=mu1, mu2=mu2, W0=W, a=a)
    old = tunables.DATA_BLOCK
    tunables.DATA_BLOCK = width
    try:
        st_ = build([src], dtype, NumbaOps())
    finally:
        tunables.DATA_BLOCK = old
    dt = np.dtype(dtype)
    X, Xt, W = (v.astype(dt).astype(np.float64) for v in (X, Xt, W))
    M = np.stack([mu1, mu2])
    # The classical bound of a dot product of p terms, plus the final rounding to dtype:
    # |error| <= (p + 2) eps sum_k |l_k r_k|.
    eps = np.finfo(dt).eps
    for k, (L, R) in {"K": (X, X), "Kt": (Xt, X), "Z0": (X, W), "Zt0": (Xt, W), "XM": (X, M),
                      "W0M": (W, M)}.items():
        bound = (X.shape[1] + 2) * eps * (np.abs(L) @ np.abs(R).T) + 1e-300
        assert (np.abs(st_[k][0] - L @ R.T) <= bound).all(), k


@given(width=st.integers(1, 40), order=st.randoms(use_true_random=False),
       sizes=st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 6)))
def test_reduced_blocks_in_any_order_give_the_same_numbers_and_structure(width, order, sizes):
    n, nt, m = sizes
    cfg = fg.Config(n=n, n_test=nt, m=m, p=10**6, runs=1, init_scale=1.0, representation="reduced")
    src = ReducedSource(cfg, 0)
    old = tunables.DATA_BLOCK
    try:
        tunables.DATA_BLOCK = width
        blocks = src.block_list()
        shuffled = list(blocks)
        order.shuffle(shuffled)
        parts = {k: src.block(k, j0, j1) for k, j0, j1 in shuffled}  # drawn in a random order
        again = {k: src.block(k, j0, j1) for k, j0, j1 in blocks}     # and in order
    finally:
        tunables.DATA_BLOCK = old
    for k in again:
        for i in range(3):
            assert np.array_equal(again[k][i], parts[k][i])
    # Assembled, the vectors (X, X_test, W0 rows) have the Bartlett structure: beyond the two
    # mean coordinates, row k has entries only up to column k (lower triangular, positive
    # diagonal ~ sqrt(p)).
    rows = np.concatenate([np.concatenate([parts[k][i] for k, _, _ in blocks], axis=1)
                           for i in range(3)])
    L = rows[:, 2:]
    assert L.shape == (n + nt + m, n + nt + m)
    assert not np.triu(L, 1).any()
    assert (np.diag(L) > 0.5 * np.sqrt(10**6)).all()


@given(st.integers(1, 3), st.integers(0, 700), st.integers(0, 2**32 - 1))
def test_group_abs_means_has_the_bits_of_the_numpy_summaries(runs, m, seed):
    # The batch kernel the driver records with, against the per-run NumPy function (its
    # pairwise sums bit for bit), with empty groups and magnitudes over many decades.
    from fastgrok.driver import alignment_summaries
    from fastgrok.kernels.numba_fused import group_abs_means

    rng = np.random.default_rng(seed)
    P = rng.standard_normal((runs, 2, m)) * 10.0 ** rng.integers(-12, 3, (runs, 2, m))
    A = rng.choice([-1.0, 0.0, 1.0], (runs, m)) * rng.random((runs, m))
    A[0] = np.abs(A[0]) if seed % 3 == 0 else A[0]  # a run without negative neurons
    scale = 0.5 + rng.random()
    out = np.empty((runs, 2, 2))
    group_abs_means(P, A, scale, out)
    for r in range(runs):
        want = alignment_summaries(P[r, 0], P[r, 1], A[r], scale)
        got = {"pos_mu1": out[r, 0, 0], "pos_mu2": out[r, 0, 1], "neg_mu1": out[r, 1, 0],
               "neg_mu2": out[r, 1, 1]}
        for key, value in want.items():
            assert (np.isnan(value) and np.isnan(got[key])) or value == got[key], key
