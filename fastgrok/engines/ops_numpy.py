"""The NumPy operations (backend "numpy"): the reference's arithmetic, serial, on any machine."""
from __future__ import annotations

import numpy as np

from .. import reference
from .ops_base import Ops, block_operands, stack_parts


class NumpyOps(Ops):
    """Plain NumPy on the host, the reference's arithmetic (the engines' logic on any machine)."""

    name = "numpy"

    def block_products(self, X, Xt, W0, M, dtype):
        """The block's products with NumPy in the working dtype."""
        A, B = block_operands(X, Xt, W0, M)
        n, m = X.shape[0], W0.shape[0]
        return A @ B.T, B[n:n + m] @ B[n + m:].T

    def gram_step(self, K, Z0, Z, Ct, y, a, lr, model, n_threads=None, state=None, steps=1):
        """The reference's step for each run in turn."""
        for _ in range(steps):
            for r in range(Z.shape[0]):
                self.coefficients(Z[r], y[r], a[r], lr, Ct[r], model, accumulate=True)
                Z[r] = Z0[r] + K[r] @ Ct[r]

    def gram_evaluate(self, Z, Kt, Ct, Zt0, XM, W0M, a, model, test=True, means=True,
                      n_threads=None, state=None):
        """Every run's (f, ft, P) in turn."""
        return stack_parts([self.evaluate_run(r, Z, Kt, Ct, Zt0, XM, W0M, a, model, test, means)
                            for r in range(len(Z))])

    def coefficients(self, Z, y, a, lr, V, model, accumulate=False):
        """The reference's f and V."""
        f = reference.forward_from_preactivations(Z, a, model.act, model.patches)
        coef = reference.update_coefficients(Z, y, f, a, lr, model.act, model.loss,
                                             model.patches)
        if accumulate:
            V += coef
        else:
            V[...] = coef
        return f

    def outputs(self, Z, a, model):
        """The reference's outputs."""
        return reference.forward_from_preactivations(Z, a, model.act, model.patches)

    def direct_pass(self, X, W, V=None, Xt=None, mus=None, forward=True, n_threads=None,
                    decay=1.0):
        """The update and the products with NumPy (one product per mean, as the reference)."""
        if V is not None:
            update = V.T @ X
            if decay != 1.0:  # weight decay, as the reference applies it
                W *= decay
            W += update
        Z = X @ W.T if forward else None
        Zt = Xt @ W.T if Xt is not None else None
        # One product per mean, as the reference computes W mu1 and W mu2.
        P = np.stack([W @ mu for mu in mus], axis=1) if mus is not None else None
        return Z, Zt, P
