"""The NumPy reference against first principles: finite differences, stable loss, invariances."""
import math

import numpy as np
from conftest import random_problem
from hypothesis import assume, given
from hypothesis import strategies as st

from fastgrok import reference as ref

shapes = st.tuples(st.integers(1, 6), st.integers(1, 7), st.integers(1, 5))  # n, p, m


def _loss(X, y, W, a):
    return ref.logistic_loss(y, ref.forward(X, W, a)[1])


@given(shapes, st.integers(0, 2**31 - 1))
def test_gradient_matches_central_differences(shape, seed):
    n, p, m = shape
    X, y, W, a = random_problem(seed, n, p, m)
    Z, _ = ref.forward(X, W, a)
    h = 1e-6
    # Keep away from ReLU kinks: a perturbation of size h moves Z by at most h ||x_i||.
    assume(np.abs(Z).min() > 1e3 * h * np.abs(X).sum(axis=1).max())
    G = ref.gradient(X, y, W, a)
    fd = np.empty_like(W)
    for idx in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[idx] += h
        Wm[idx] -= h
        fd[idx] = (_loss(X, y, Wp, a) - _loss(X, y, Wm, a)) / (2 * h)
    np.testing.assert_allclose(G, fd, rtol=1e-6, atol=1e-9)


def _exact_softplus(z):
    # log(1 + e^z) evaluated in the branch where nothing overflows or cancels.
    return z + math.log1p(math.exp(-z)) if z > 0 else math.log1p(math.exp(z))


@given(st.floats(-1e4, 1e4, allow_nan=False))
def test_loss_is_finite_and_accurate_for_large_margins(margin):
    y = np.array([1.0, -1.0])
    f = np.array([margin, -margin])  # both samples have y f = margin
    loss = ref.logistic_loss(y, f)
    exact = _exact_softplus(-margin)
    assert math.isfinite(loss)
    assert loss == 0.0 and exact < 1e-300 or math.isclose(loss, exact, rel_tol=1e-12)
    g = ref.loss_weights(y, f)
    exact_g = 1.0 / (1.0 + math.exp(margin)) if margin < 700 else math.exp(-margin)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, exact_g, rtol=1e-12, atol=1e-300)


@given(shapes, st.integers(0, 2**31 - 1))
def test_step_is_invariant_under_permuting_samples_and_neurons(shape, seed):
    n, p, m = shape
    X, y, W, a = random_problem(seed, n, p, m)
    g = np.random.default_rng(seed + 1)
    ps, pn = g.permutation(n), g.permutation(m)
    W1 = ref.step(X, y, W.copy(), a, 0.3)
    W2 = ref.step(X[ps], y[ps], W[pn].copy(), a[pn], 0.3)
    np.testing.assert_allclose(W2, W1[pn], rtol=1e-12, atol=1e-14)
    e1 = ref.evaluate(X, y, W1, a)
    e2 = ref.evaluate(X[ps], y[ps], W2, a[pn])
    assert e1["train_acc"] == e2["train_acc"]
    assert math.isclose(e1["train_loss"], e2["train_loss"], rel_tol=1e-12)


@given(shapes, st.integers(0, 2**31 - 1), st.floats(1e-4, 10))
def test_step_is_gradient_descent(shape, seed, lr):
    X, y, W, a = random_problem(seed, *shape)
    expected = W - lr * ref.gradient(X, y, W, a)
    np.testing.assert_allclose(ref.step(X, y, W.copy(), a, lr), expected, rtol=1e-12, atol=1e-12)


def test_accuracy_counts_zero_output_as_wrong():
    assert ref.accuracy(np.array([1.0, -1.0, 1.0]), np.array([0.0, 0.0, 2.0])) == 1 / 3


def test_evaluate_projections():
    X, y, W, a = random_problem(0, 4, 6, 3)
    mu1, mu2 = np.eye(6)[0] * 2, np.eye(6)[1] * 2
    ev = ref.evaluate(X, y, W, a, X, y, mu1, mu2)
    np.testing.assert_allclose(ev["P1"], 2 * W[:, 0])
    np.testing.assert_allclose(ev["P2"], 2 * W[:, 1])
    assert ev["test_acc"] == ev["train_acc"]


@given(st.integers(1, 5), st.integers(1, 300), st.sampled_from(["logistic", "exponential",
                                                                  "hinge", "square"]),
       st.booleans(), st.integers(0, 2**31 - 1))
def test_metrics_of_stacked_runs_are_each_runs_own_bits(runs, n, loss, regression, seed):
    """The batch metrics (one mean along the rows of the stacked outputs) against the reference
    run by run: the same bits, whatever the row length."""
    from fastgrok.engines.base import runs_metrics

    g = np.random.default_rng(seed)
    F, FT = g.standard_normal((runs, n)) * 1e-3, g.standard_normal((runs, n + 1)) * 1e-3
    Y = np.where(g.random((runs, n)) < 0.5, 1.0, -1.0)
    YT = np.where(g.random((runs, n + 1)) < 0.5, 1.0, -1.0)
    P = g.standard_normal((runs, 4, 2))
    outs = runs_metrics(list(F), Y, list(FT), YT, list(P), loss, regression)
    for r, out in enumerate(outs):
        assert out["train_loss"] == ref.mean_loss(Y[r], F[r], loss)
        assert out["test_loss"] == ref.mean_loss(YT[r], FT[r], loss)
        if regression:
            assert math.isnan(out["train_acc"]) and out["test_mse"] == 2 * out["test_loss"]
        else:
            assert out["train_acc"] == ref.accuracy(Y[r], F[r])
            assert out["test_acc"] == ref.accuracy(YT[r], FT[r])
        assert out["f"] is not None and np.array_equal(out["P2"], P[r][:, 1])
