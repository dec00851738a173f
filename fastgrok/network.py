"""A trained network at one step: its weights, its outputs on new inputs, its projections.

A :class:`Network` is what :meth:`fastgrok.Trainer.network` and :meth:`fastgrok.Result.network`
hand back. The direct method keeps W itself; the gram method keeps only its coefficients C
(m x n, W = s W0 + C X, with s = 1 without weight decay) and the run's source (the generated
streams, or the caller's arrays), and rebuilds whatever is asked for from them in column blocks,
never forming W unless the weights themselves are asked for.
"""
from __future__ import annotations

import numpy as np

from . import reference
from ._memory import check_fits


class Network:
    """One run's two-layer network f(x) = sum_j a_j phi(<w_j, x>) at one step.

    Parameters
    ----------
    a : (m,) array
        Second layer (float64).
    leak : float or fastgrok.reference.SmoothActivation
        The activation's slope for negative inputs (0: ReLU), or a smooth activation.
    W : (m, p) array, optional
        The first layer, where it is kept (the direct method).
    C : (m, n) array, optional
        The gram method's coefficients: W = scale W0 + C X, with X and W0 from ``source``.
    source : fastgrok.sources.Source, optional
        Where X and W0 come from (with ``C``).
    dtype : str
        The working dtype the weights were trained in.
    scale : float
        s_t = (1 - lr lambda)^t, the factor of W0 after t steps with weight decay (1.0 without).
    patches : int
        P of the two-layer CNN: an input is P patches (q, P, d) and its output sums theirs
        (1: the fully connected network).
    """

    def __init__(self, a, leak=0.0, W=None, C=None, source=None, dtype="float64", scale=1.0,
                 patches=1):
        self.a = np.asarray(a, np.float64)
        # (a float slope, or a smooth activation: reference.SmoothActivation)
        self.leak = leak if isinstance(leak, reference.SmoothActivation) else float(leak)
        self.W, self.C, self.source = W, C, source
        self.scale = float(scale)
        self.dtype = np.dtype(dtype)
        self.patches = int(patches)

    @property
    def m(self) -> int:
        """Hidden neurons."""
        return self.a.shape[0]

    @property
    def p(self) -> int:
        """Input dimension."""
        return self.W.shape[1] if self.W is not None else self.source.p

    def _check_full(self, what):
        if getattr(self.source, "p_nominal", None) is not None:
            raise ValueError(
                f"{what} needs the p coordinates of the weights, which a run in the reduced "
                f"representation does not have (it trains in dimension {self.source.p} in "
                f"place of p={self.source.p_nominal}); run it with representation='full'")

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(W, a): the first layer (m, p) in the working dtype and the second layer (m,)."""
        self._check_full("weights()")
        if self.W is not None:
            return np.array(self.W), self.a.copy()
        check_fits(self.m * self.p * self.dtype.itemsize,
                   f"the weights W (m={self.m}, p={self.p})")
        W = np.empty((self.m, self.p), self.dtype)
        C = self.C.astype(self.dtype)
        for j0, j1, X, _, W0, _ in self.source.blocks(self.dtype):
            W[:, j0:j1] = (W0 if self.scale == 1.0 else self.scale * W0) + C @ X
        return W, self.a.copy()

    def preactivations(self, X_new) -> np.ndarray:
        """X_new W^T (q, m) in float64: from W0 and X in column blocks for the gram method."""
        self._check_full("Inputs of p coordinates")
        X_new = np.asarray(X_new)
        if X_new.ndim != 2 or X_new.shape[1] != self.p:
            raise ValueError(f"X must have shape (q, {self.p}), got {X_new.shape}")
        if self.W is not None:
            return np.asarray(X_new, np.float64) @ np.asarray(self.W, np.float64).T
        Z0 = np.zeros((X_new.shape[0], self.m))
        XK = np.zeros((X_new.shape[0], self.C.shape[1]))
        for j0, j1, X, _, W0, _ in self.source.blocks(np.float64):
            part = np.asarray(X_new[:, j0:j1], np.float64)
            Z0 += part @ W0.T
            XK += part @ X.T
        return self.scale * Z0 + XK @ np.asarray(self.C, np.float64).T

    def decision_function(self, X_new) -> np.ndarray:
        """Outputs f(x) (q,) of the rows of ``X_new`` (q, p), float64; patches: (q, P, d)."""
        P = self.patches
        X_new = np.asarray(X_new)
        if P > 1 or X_new.ndim == 3:  # (q, 1, d) is (q, d) for the fully connected network
            if X_new.ndim != 3 or X_new.shape[1:] != (P, self.p):
                raise ValueError(f"X must have shape (q, {P}, {self.p}) (q inputs of {P} "
                                 f"patches), got {X_new.shape}")
            X_new = X_new.reshape(-1, self.p)
        return reference.forward_from_preactivations(self.preactivations(X_new), self.a,
                                                     self.leak, P)

    def project(self, V) -> np.ndarray:
        """<w_j, v_k>: W V^T (m, k) for directions V (k, p), or W v (m,) for one v (p,)."""
        V = np.asarray(V, np.float64)
        P = self.preactivations(V.reshape(-1, V.shape[-1])).T
        return P[:, 0] if V.ndim == 1 else P

    def first_layer_gram(self) -> np.ndarray:
        """W W^T (m, m) in float64, never forming W.

        The gram method assembles it from blocks of the run's source: s^2 W0 W0^T +
        s (C X W0^T + W0 X^T C^T) + C (X X^T) C^T. It needs no p coordinates: a run in the
        reduced representation gives W W^T in its own coordinates, which has the law of the
        full one (the Gram matrix of the neurons is rotation invariant).
        """
        if self.W is not None:
            W = np.asarray(self.W, np.float64)
            return W @ W.T
        m, n = self.C.shape
        G0, XW0, K = np.zeros((m, m)), np.zeros((n, m)), np.zeros((n, n))
        for _, _, X, _, W0, _ in self.source.blocks(np.float64):
            G0 += W0 @ W0.T
            XW0 += X @ W0.T
            K += X @ X.T
        C, s = np.asarray(self.C, np.float64), self.scale
        cross = C @ XW0
        return s * s * G0 + s * (cross + cross.T) + C @ K @ C.T

    def stable_rank(self) -> float:
        """||W||_F^2 / ||W||_2^2 from the eigenvalues of :meth:`first_layer_gram` (NaN: W = 0)."""
        eig = np.linalg.eigvalsh(self.first_layer_gram())
        top = eig[-1]
        return float(eig.clip(min=0).sum() / top) if top > 0 else float("nan")

    def patch_coefficients(self) -> dict:
        """The two-layer CNN's signal learning and noise memorisation coefficients, per neuron.

        From the coefficients C of W = s W0 + C X (kept by both methods on patch data) and the
        run's data (one pass over its blocks). Returns a dict: ``gamma`` (m, k), the signal
        learning <w_j - s w0_j, mu_k> along the k signal directions (mu1, and mu2 for XOR
        patches; None when no means are known); ``rho`` (m, q), the noise memorisation
        C_j,xi ||xi||^2 of the q noise patches (None when they are not known: a caller's
        arrays); ``noise_rows``, those patches' rows of X (sample i's patch t is row i P + t).
        On generated patch data W = s W0 + sum_k gamma_k mu_k / ||mu_k||^2 + sum_xi rho_xi xi /
        ||xi||^2 (docs/design.md, "Patches").
        """
        src = self.source
        if self.C is None or src is None or not src.patch_metrics:
            raise ValueError("patch_coefficients() needs a run on patch data (data='patches' "
                             "or 'xor_patches', or fit on (n, P, d) inputs with mu1)")
        parts = ((X, M) for _, _, X, _, _, M in src.blocks(np.float64))
        gamma, rho = PatchCoefficients.from_parts(src, parts).coefficients(
            np.asarray(self.C).T)
        return {"gamma": gamma, "rho": rho, "noise_rows": src.noise_rows}

    def nbytes(self) -> int:
        """Bytes held (W or C, and a)."""
        held = self.W if self.W is not None else self.C
        return int(held.nbytes + self.a.nbytes)


class PatchCoefficients:
    """What a two-layer CNN's signal learning and noise memorisation are read from, per run.

    For each run: X mu (rows, k) for its k signal directions and the squared norms of its noise
    rows, from its data once. With W = s W0 + C X (C: m x rows), the signal learning of
    neuron j along mu is gamma_j = <w_j - s w0_j, mu> = (C X mu)_j, and the noise
    memorisation of a noise patch xi is rho_j = C_j,xi ||xi||^2: the coefficients of
    W = s W0 + sum_k gamma_k mu_k / ||mu_k||^2 + sum_xi rho_xi xi / ||xi||^2 when the signal
    patches are multiples of the means and the noise is orthogonal to them (docs/design.md,
    "Patches").
    """

    def __init__(self, XM, sq_norms, noise_rows):
        self.XM, self.sq_norms, self.noise_rows = XM, sq_norms, noise_rows

    @classmethod
    def of(cls, source, XM, row_norms):
        """From a run's X mu (rows, >= k: its directions) and squared row norms (rows,).

        The source must have patch metrics (:attr:`fastgrok.sources.Source.patch_metrics`).
        """
        k, rows = source.signal_directions, source.noise_rows
        XM = np.asarray(XM, np.float64)[:, :k] if k else None
        sq = None if rows is None else np.asarray(row_norms, np.float64)[rows]
        return cls(XM, sq, rows)

    @classmethod
    def from_parts(cls, source, parts):
        """:meth:`of`, X mu and the row norms summed in float64 over column parts of the data.

        ``parts`` yields (X_part (rows, cols), M_part (directions, cols) or None): the
        source's blocks, or :meth:`column_chunks` of arrays held whole.
        """
        k = source.signal_directions
        XM, sq = np.zeros((source.rows, k)), np.zeros(source.rows)
        for X, M in parts:
            X = np.asarray(X, np.float64)
            sq += np.einsum("ij,ij->i", X, X)
            if k:
                XM += X @ np.asarray(M[:k], np.float64).T
        return cls.of(source, XM, sq)

    @staticmethod
    def column_chunks(X, M, width=65536):
        """(X, M) of arrays held whole in column chunks (no float64 copy of X at once)."""
        for j0 in range(0, X.shape[1], width):
            yield X[:, j0:j0 + width], None if M is None else M[:, j0:j0 + width]

    def coefficients(self, ct):
        """(gamma (m, k) or None, rho (m, noise rows) or None) from C^T (rows, m)."""
        ct = np.asarray(ct, np.float64)
        gamma = None if self.XM is None else ct.T @ self.XM
        rho = None if self.noise_rows is None else (ct[self.noise_rows]
                                                    * self.sq_norms[:, None]).T
        return gamma, rho

    def metrics(self, ct) -> dict:
        """The history columns: signal_learning and noise_memorization.

        signal_learning = max_j |gamma_j| over the signal directions; noise_memorization = the
        max over neurons and noise patches of |rho|.
        """
        gamma, rho = self.coefficients(ct)
        out = {}
        if gamma is not None:
            out["signal_learning"] = float(np.max(np.abs(gamma)))
        if rho is not None and rho.size:
            out["noise_memorization"] = float(np.max(np.abs(rho)))
        return out
