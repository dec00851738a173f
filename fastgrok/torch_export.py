"""The hand-off to PyTorch: a trained network as a ``torch.nn.Module``.

PyTorch is an optional dependency: importing this module without it works; building a module
raises an ImportError that says how to install it.
"""
from __future__ import annotations

import numpy as np


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError("to_torch() needs PyTorch: pip install torch (fastgrok does not "
                          "depend on it otherwise)") from exc
    return torch


def to_module(W, a, activation="relu", leak=0.0, loss="logistic"):
    """A ``torch.nn.Module`` f(x) = phi(x W^T) a with fastgrok's activation and loss.

    ``W`` (m, p) is a trainable parameter ``weight`` and ``a`` (m,) a parameter ``a`` with
    ``requires_grad=False`` (fastgrok's second layer is fixed; set it to True to train it).
    The module's ``loss(X, y)`` is fastgrok's mean training loss, with the same derivative at
    every kink (phi'(0) = leak, the hinge's weight 0 at margin 1), so one ``torch.optim.SGD``
    step with fastgrok's lr on it equals fastgrok's step. ``leak`` may be a
    :class:`fastgrok.reference.SmoothActivation` (the smooth activations).

    Examples
    --------
    >>> import numpy as np
    >>> from fastgrok.torch_export import to_module
    >>> net = to_module(np.ones((3, 4)), np.array([1.0, -1.0, 0.5]))  # doctest: +SKIP
    >>> net(torch.ones(2, 4))  # doctest: +SKIP
    tensor([2., 2.], dtype=torch.float64, grad_fn=<MvBackward0>)
    """
    from .reference import SmoothActivation

    torch = _torch()
    smooth = leak if isinstance(leak, SmoothActivation) else None
    slope = 0.0 if activation == "relu" or smooth else float(leak)

    def smooth_phi(z):
        if smooth.kind == "relu_power":
            return torch.relu(z) ** smooth.param
        g, h = smooth.leak, smooth.param
        zero = torch.zeros_like(z)
        return g * z + (1 - g) * torch.where(z < 0, zero,
                                             torch.where(z <= h, z * z / (2 * h), z - h / 2))

    class TwoLayerNet(torch.nn.Module):
        """fastgrok's two-layer network: f(x) = sum_j a_j phi(<w_j, x>).

        Inputs (q, P, d) are the patches of the two-layer CNN: f(x) = sum_j a_j sum_p
        phi(<w_j, x^(p)>).
        """

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.from_numpy(np.array(W)))
            self.a = torch.nn.Parameter(torch.from_numpy(np.array(a, dtype=np.asarray(W).dtype)),
                                        requires_grad=False)
            self.leak, self.loss_name = slope, loss

        def forward(self, x):
            z = x @ self.weight.T
            if smooth is not None:
                h = smooth_phi(z)
            elif self.leak == 0:
                h = torch.relu(z)
            else:
                h = torch.nn.functional.leaky_relu(z, self.leak)
            out = h @ self.a
            return out.sum(dim=-1) if x.dim() == 3 else out  # patches: summed per sample

        def loss(self, X, y):
            """The mean training loss of fastgrok's model for labels y in {-1, +1}.

            (The square loss's, (y - f)^2 / 2, for real-valued targets y as well.)
            """
            if self.loss_name == "square":
                return ((y - self(X)) ** 2 / 2).mean()
            margin = y * self(X)
            if self.loss_name == "logistic":
                return torch.nn.functional.softplus(-margin).mean()
            if self.loss_name == "exponential":
                return torch.exp(-margin).mean()
            return torch.relu(1 - margin).mean()  # hinge; relu'(0) = 0: weight 0 at margin 1

    return TwoLayerNet()
