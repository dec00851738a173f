"""The readable NumPy reference: every quantity of docs/design.md section 1, in plain array algebra.

This module is the oracle every fast engine is tested against. It favours clarity over speed;
call it with float64 arrays for reference results (it is dtype-generic, and the "numpy" backend
also runs it in float32).
"""
from __future__ import annotations

import numpy as np


def relu(z):
    """max(0, z)."""
    return np.maximum(z, 0)


def forward(X, W, a):
    """Pre-activations Z = X W^T (n, m) and outputs f = relu(Z) a (n,)."""
    Z = X @ W.T
    return Z, forward_from_preactivations(Z, a)


def forward_from_preactivations(Z, a):
    """Outputs f = relu(Z) a (n,) from pre-activations Z (n, m), in float64."""
    return relu(np.asarray(Z, dtype=np.float64)) @ np.asarray(a, dtype=np.float64)


def softplus(z):
    """log(1 + exp(z)), computed without overflow for large |z|."""
    return np.logaddexp(0, z)


def logistic_loss(y, f):
    """Mean logistic loss (1/n) sum_i log(1 + exp(-y_i f_i))."""
    return float(np.mean(softplus(-y * f)))


def loss_weights(y, f):
    """g_i = -l'(y_i f_i) = 1 / (1 + exp(y_i f_i)), accurate in relative terms for large |y f|."""
    return np.exp(-softplus(y * f))


def update_coefficients(Z, y, f, a, lr):
    """V = (lr / n) (g * y)[:, None] * 1[Z > 0] * a[None, :]  (n, m); one step is W += V^T X."""
    n = Z.shape[0]
    g = loss_weights(y, f)
    return (lr / n) * (g * y)[:, None] * (Z > 0) * a[None, :]


def gradient(X, y, W, a):
    """Gradient of the mean logistic loss with respect to W (m, p) (the ReLU derivative at 0 is 0)."""
    Z, f = forward(X, W, a)
    return -update_coefficients(Z, y, f, a, 1.0).T @ X


def step(X, y, W, a, lr):
    """One full-batch gradient-descent step, in place on W; returns W."""
    Z, f = forward(X, W, a)
    W += update_coefficients(Z, y, f, a, lr).T @ X
    return W


def accuracy(y, f):
    """Fraction of samples with sign(f_i) = y_i; f_i = 0 counts as wrong."""
    return float(np.mean(y * f > 0))


def evaluate(X, y, W, a, X_test=None, y_test=None, mu1=None, mu2=None):
    """The evaluation quantities of docs/design.md section 1.

    Returns
    -------
    dict
        train_acc, train_loss (noisy labels), test_acc, test_loss (clean labels; NaN without a
        test set), and the projections P1 = W mu1, P2 = W mu2 (None without means).
    """
    _, f = forward(X, W, a)
    out = {"train_acc": accuracy(y, f), "train_loss": logistic_loss(y, f),
           "test_acc": np.nan, "test_loss": np.nan, "P1": None, "P2": None}
    if X_test is not None:
        _, ft = forward(X_test, W, a)
        out["test_acc"], out["test_loss"] = accuracy(y_test, ft), logistic_loss(y_test, ft)
    if mu1 is not None:
        out["P1"], out["P2"] = W @ mu1, W @ mu2
    return out
