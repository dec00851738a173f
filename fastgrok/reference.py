"""The readable NumPy reference: every quantity of docs/design.md section 1, in plain array algebra.

This module is the oracle every fast engine is tested against. It favours clarity over speed;
call it with float64 arrays for reference results (it is dtype-generic, and the "numpy" backend
also runs it in float32).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SmoothActivation:
    """A smooth activation, where the functions below take ``leak``.

    kind "relu_power": phi(z) = max(z, 0)^q with q = ``param`` > 1. kind "smoothed_leaky_relu"
    (the Huberised leaky ReLU of the leaky-ReLU benign-overfitting papers): phi(z) = leak z for
    z < 0, leak z + (1 - leak) z^2 / (2h) for 0 <= z <= h, leak z + (1 - leak)(z - h / 2) for
    z > h, with h = ``param`` > 0; its derivative is continuous.
    """

    kind: str
    leak: float
    param: float

    def phi(self, z):
        """phi(z), elementwise in float64."""
        z = np.asarray(z, dtype=np.float64)
        if self.kind == "relu_power":
            return np.maximum(z, 0.0) ** self.param
        h, g = self.param, self.leak
        return g * z + (1 - g) * np.where(z < 0, 0.0, np.where(z <= h, z * z / (2 * h), z - h / 2))

    def derivative(self, z):
        """phi'(z), elementwise in float64."""
        z = np.asarray(z, dtype=np.float64)
        if self.kind == "relu_power":
            return np.where(z > 0, self.param * np.maximum(z, 0.0) ** (self.param - 1), 0.0)
        h, g = self.param, self.leak
        return g + (1 - g) * np.where(z < 0, 0.0, np.where(z <= h, z / h, 1.0))


def relu(z):
    """max(0, z)."""
    return np.maximum(z, 0)


def activation(z, leak=0.0):
    """phi(z) = max(z, leak z): ReLU for leak = 0, leaky ReLU for 0 < leak < 1.

    ``leak`` may also be a :class:`SmoothActivation` (every function here takes one).
    """
    if isinstance(leak, SmoothActivation):
        return leak.phi(z)
    return relu(z) if leak == 0 else np.maximum(z, leak * z)


def activation_derivative(z, leak=0.0):
    """phi'(z) = 1 if z > 0 else leak (the derivative at the kink z = 0 is taken as leak)."""
    if isinstance(leak, SmoothActivation):
        return leak.derivative(z)
    return np.where(z > 0, 1.0, leak)


def forward(X, W, a, leak=0.0):
    """Pre-activations Z = X W^T (n, m) and outputs f = phi(Z) a (n,)."""
    Z = X @ W.T
    return Z, forward_from_preactivations(Z, a, leak)


def forward_from_preactivations(Z, a, leak=0.0, patches=1):
    """Outputs f = phi(Z) a (n,) from pre-activations Z (n, m), in float64.

    With ``patches`` P > 1 the rows of Z are the patches of the samples, sample i's in rows
    i P .. i P + P - 1, and a sample's output is the sum of its patches' (:func:`patch_forward`).
    """
    f = activation(np.asarray(Z, dtype=np.float64), leak) @ np.asarray(a, dtype=np.float64)
    return f if patches == 1 else f.reshape(-1, patches).sum(axis=1)


def patch_forward(X, W, a, leak=0.0):
    """The two-layer CNN's outputs f(x_i) = sum_j a_j sum_p phi(<w_j, x_i^(p)>) (n,).

    ``X`` (n, P, d) holds each sample's P patches; every filter w_j (a row of W, (m, d)) is
    applied to every patch and its outputs summed. Written from the formula, in float64.
    """
    X, W = np.asarray(X, np.float64), np.asarray(W, np.float64)
    Z = np.einsum("ipd,jd->ipj", X, W)
    return np.einsum("ipj,j->i", activation(Z, leak), np.asarray(a, np.float64))


def patch_step(X, y, W, a, lr, leak=0.0, loss="logistic", weight_decay=0.0):
    """One full-batch gradient step of the two-layer CNN on patches ``X`` (n, P, d); returns W.

    The gradient of the mean loss in filter w_j is -(1/n) sum_i r_i a_j sum_p phi'(<w_j,
    x_i^(p)>) x_i^(p), with r_i = :func:`loss_residuals` of the sample's output. In place on W,
    as :func:`step`.
    """
    X = np.asarray(X, np.float64)
    Z = np.einsum("ipd,jd->ipj", X, W)
    f = np.einsum("ipj,j->i", activation(Z, leak), np.asarray(a, np.float64))
    r = loss_residuals(y, f, loss)
    grad = -np.einsum("i,ipj,ipd->jd", r, activation_derivative(Z, leak), X) * \
        np.asarray(a, np.float64)[:, None] / X.shape[0]
    if weight_decay:
        W *= 1.0 - lr * weight_decay
    W -= lr * grad
    return W


def softplus(z):
    """log(1 + exp(z)), computed without overflow for large |z|."""
    return np.logaddexp(0, z)


def loss_values(z, loss="logistic"):
    """l(z) of each margin z = y f: log(1 + exp(-z)), exp(-z), max(0, 1 - z) or (1 - z)^2 / 2.

    Stable for any finite z: the logistic loss through softplus; the exponential loss of a
    margin below about -709 is inf (it is larger than any double), without a warning.
    """
    z = np.asarray(z, dtype=np.float64)
    if loss == "logistic":
        return softplus(-z)
    if loss == "exponential":
        with np.errstate(over="ignore"):
            return np.exp(-z)
    if loss == "hinge":
        return np.maximum(0.0, 1.0 - z)
    if loss == "square":  # (y - f)^2 / 2 = (1 - y f)^2 / 2 for y = +-1
        return 0.5 * (1.0 - z) ** 2
    raise ValueError(f"unknown loss {loss!r}")


def mean_loss(y, f, loss="logistic", axis=None):
    """Mean loss (1/n) sum_i l(y_i f_i); the square loss's is (1/n) sum_i (y_i - f_i)^2 / 2.

    (The two forms of the square loss are the same bits for labels +-1; the second holds for
    real-valued targets too.) With ``axis``, the means along it (an array): rows of stacked
    runs with ``axis=-1``, each the same bits as that row alone.
    """
    if loss == "square":
        out = np.mean(0.5 * (y - f) ** 2, axis=axis)
    else:
        out = np.mean(loss_values(y * f, loss), axis=axis)
    return float(out) if axis is None else out


def logistic_loss(y, f):
    """Mean logistic loss (1/n) sum_i log(1 + exp(-y_i f_i))."""
    return mean_loss(y, f, "logistic")


def loss_weights(y, f, loss="logistic"):
    """g_i = -l'(y_i f_i).

    logistic: 1 / (1 + exp(y f)), accurate in relative terms for large |y f|; exponential:
    exp(-y f) (inf below a margin of about -709: a diverged run); hinge: 1 if y f < 1 else 0
    (at the kink y f = 1 the weight is 0, the convention of automatic differentiation); square:
    1 - y f (negative past the target: the square loss pulls over-confident outputs back).
    """
    z = np.asarray(y * f, dtype=np.float64)
    if loss == "logistic":
        return np.exp(-softplus(z))
    if loss == "exponential":
        with np.errstate(over="ignore"):
            return np.exp(-z)
    if loss == "hinge":
        return (z < 1.0).astype(np.float64)
    if loss == "square":
        return 1.0 - z
    raise ValueError(f"unknown loss {loss!r}")


def loss_residuals(y, f, loss="logistic"):
    """r_i = -dl/df_i: g_i y_i, and for the square loss y_i - f_i (any real target).

    For labels +-1 the two forms of the square loss's residual, (1 - y f) y and y - f, are the
    same bits (a sign flip is exact and rounding is symmetric).
    """
    if loss == "square":
        return y - f
    return loss_weights(y, f, loss) * y


def update_coefficients(Z, y, f, a, lr, leak=0.0, loss="logistic", patches=1):
    """V = (lr / n) r[:, None] * phi'(Z) * a[None, :]  (n, m), r = :func:`loss_residuals`.

    One step is W += V^T X. With ``patches`` P > 1, Z has a row per patch (n P, m), f and y
    one entry per sample, and each patch row takes its sample's residual (still over n).
    """
    n = Z.shape[0] // patches
    r = loss_residuals(y, f, loss)
    if patches > 1:
        r = np.repeat(r, patches)
    return (lr / n) * r[:, None] * activation_derivative(Z, leak) * a[None, :]


def gradient(X, y, W, a, leak=0.0, loss="logistic"):
    """Gradient of the mean loss with respect to W (m, p) (phi'(0) = leak)."""
    Z, f = forward(X, W, a, leak)
    return -update_coefficients(Z, y, f, a, 1.0, leak, loss).T @ X


def second_layer_increment(Z, y, f, lr_second, leak=0.0, loss="logistic"):
    """-lr_second times the mean loss's gradient in a: (lr_second / n) sum_i r_i phi(z_ij)."""
    r = loss_residuals(y, f, loss)
    return (lr_second / Z.shape[0]) * (r @ activation(np.asarray(Z, np.float64), leak))


def step(X, y, W, a, lr, leak=0.0, loss="logistic", weight_decay=0.0, lr_second=None):
    """One full-batch gradient-descent step, in place on W (and on a if it is trained); returns W.

    With ``weight_decay`` lambda, the step on the mean loss plus (lambda / 2) ||W||_F^2:
    W <- (1 - lr lambda) W - lr grad, the gradient taken at the W before the step. With
    ``lr_second``, the second layer takes its own step from the same point (a float64 array,
    updated in place): a <- (1 - lr_second lambda) a + :func:`second_layer_increment`.
    """
    Z, f = forward(X, W, a, leak)
    update = update_coefficients(Z, y, f, a, lr, leak, loss).T @ X
    if lr_second is not None:
        increment = second_layer_increment(Z, y, f, lr_second, leak, loss)
    if weight_decay:
        W *= 1.0 - lr * weight_decay
    W += update
    if lr_second is not None:
        if weight_decay:
            a *= 1.0 - lr_second * weight_decay
        a += increment
    return W


def interpolates(y, f) -> bool:
    """Whether the outputs classify every label correctly: y_i f_i > 0 for all i.

    (f_i = 0 counts as wrong, as in :func:`accuracy`.) The stop rule "interpolation".
    """
    return bool(np.all(y * f > 0))


def accuracy(y, f, axis=None):
    """Fraction of samples with sign(f_i) = y_i; f_i = 0 counts as wrong.

    With ``axis``, the fractions along it (an array).
    """
    out = np.mean(y * f > 0, axis=axis)
    return float(out) if axis is None else out


def evaluate(X, y, W, a, X_test=None, y_test=None, mu1=None, mu2=None, leak=0.0,
             loss="logistic"):
    """The evaluation quantities of docs/design.md section 1.

    Returns
    -------
    dict
        train_acc, train_loss (noisy labels), test_acc, test_loss (clean labels; NaN without a
        test set; losses are the mean ``loss``), and the projections P1 = W mu1, P2 = W mu2
        (None without means).
    """
    _, f = forward(X, W, a, leak)
    out = {"train_acc": accuracy(y, f), "train_loss": mean_loss(y, f, loss),
           "test_acc": np.nan, "test_loss": np.nan, "P1": None, "P2": None}
    if X_test is not None:
        _, ft = forward(X_test, W, a, leak)
        out["test_acc"], out["test_loss"] = accuracy(y_test, ft), mean_loss(y_test, ft, loss)
    if mu1 is not None:
        out["P1"], out["P2"] = W @ mu1, W @ mu2
    return out
