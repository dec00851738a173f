"""The operations interface: what differs between backends, behind one small base.

The engines (:mod:`fastgrok.engines.direct`, :mod:`fastgrok.engines.gram`) are written once,
against these operations; a backend is an operations object:

* :class:`~fastgrok.engines.ops_numpy.NumpyOps` - plain NumPy, mirroring
  :mod:`fastgrok.reference` (readable, serial);
* :class:`~fastgrok.engines.ops_numba.NumbaOps` - the CPU kernels: fused Numba kernels,
  single-threaded BLAS inside fastgrok's own thread pool;
* :class:`~fastgrok.engines.ops_cupy.CupyOps` - CUDA kernels and cuBLAS on the GPU.

Arrays of a gram batch are stacked over runs: Z, Z0, Ct (R, n, m); K (R, n, n); Kt (R, nt, n);
Zt0 (R, nt, m); XM (R, n, 2); W0M (R, m, 2); y (R, n) and a (R, m) in float64. Outputs and
projections come back to the host in float64; everything else stays where ``xp`` keeps it.
``model`` is the network's activation and loss (:class:`fastgrok.model.Model`).
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..kernels.memory import empty_aligned, zeros_aligned


class Ops:
    """The base of every backend: host memory, and the gram method's generic schedule.

    Subclasses implement the arithmetic (:meth:`block_products`, :meth:`gram_step`,
    :meth:`gram_evaluate`, :meth:`coefficients`, :meth:`outputs`, :meth:`direct_pass`); a
    device backend overrides the memory methods too.
    """

    name = ""
    xp = np
    #: Whether the engines may call these operations from several host threads at once.
    host_threads = True

    # ------------------------------------------------------------------ memory
    def empty(self, shape, dtype):
        """An uninitialised array on this backend's device (host: 64-byte aligned)."""
        return empty_aligned(shape, dtype)

    def zeros(self, shape, dtype):
        """A zeroed array on this backend's device (host: 64-byte aligned)."""
        return zeros_aligned(shape, dtype)

    def asarray(self, x, dtype):
        """``x`` in ``dtype`` on this backend's device, C-contiguous and aligned (None: None)."""
        if x is None:
            return None
        x = np.asarray(x)
        if x.dtype == np.dtype(dtype) and x.flags.c_contiguous:
            return x
        out = self.empty(x.shape, dtype)
        out[...] = x
        return out

    def to_host(self, x):
        """A NumPy view or copy of a device array."""
        return np.asarray(x)

    def runtime(self, n_threads=None):
        """Context manager around a whole training.

        Yields the thread count to pass on (nothing to set up here).
        """
        return contextlib.nullcontext(n_threads)

    @staticmethod
    def describe_counters(counters: dict) -> dict:
        """``Result.info`` entries from the engines' counters (nothing here)."""
        return {}

    # ------------------------------------------------------------------ gram method
    def gram_state(self, R, dtype, model):
        """Backend state a gram engine keeps beside its arrays (None: nothing)."""
        return None

    @staticmethod
    def gram_state_bytes(n, m, n_test, dtype) -> int:
        """Bytes of one run's backend state (:meth:`gram_state`)."""
        return 0

    def gram_sync(self, state, Z, Ct, n_threads=None, with_z=True, runs=None):
        """Bring Ct (and Z, if ``with_z``) of ``runs`` (default all) up to date from ``state``.

        Called before they are read; nothing to do here.
        """

    def gram_segment(self, segment, step_args, eval_args, n_threads=None, state=None):
        """Take the steps of ``segment`` ((steps, evaluate) in order) for every run.

        Returns the evaluations (:meth:`gram_evaluate`'s (f, ft, P), each stacked or a list
        over runs) after the pairs that ask, in order.

        ``step_args`` are :meth:`gram_step`'s arguments up to ``model``, ``eval_args`` the
        keyword arguments of :meth:`gram_evaluate` (its arrays and flags).
        """
        out = []
        for k, ev in segment:
            self.gram_step(*step_args, n_threads=n_threads, state=state, steps=k)
            if ev:
                out.append(self.gram_evaluate(**eval_args, n_threads=n_threads, state=state))
        return out

    def gram_step(self, K, Z0, Z, Ct, y, a, lr, model, n_threads=None, state=None, steps=1):
        """``steps`` steps of every run, in place: Ct += V(Z); Z = Z0 + K Ct."""
        raise NotImplementedError

    def gram_until_interpolation(self, K, Z0, Z, Ct, y, a, lr, model, n_threads=None,
                                 state=None, steps=1):
        """Each run steps on its own until it classifies every training label correctly.

        At most ``steps``. Returns (steps, fired) with ``fired[r]`` the step (1..steps) after
        which run r first interpolated (where it stays) or 0; or None when the backend has no
        loop of its own (then the engine steps its runs together, checking after each step).
        """
        return None

    def gram_evaluate(self, Z, Kt, Ct, Zt0, XM, W0M, a, model, test=True, means=True,
                      n_threads=None, state=None):
        """Every run's evaluation quantities, on the host in float64.

        The outputs f (R, n); the test outputs phi(Zt0 + Kt C^T) a (R, nt) if ``test``; the
        projections W0 mu + C (X mu) (R, m, 2) if ``means`` (None where not asked).
        """
        raise NotImplementedError

    def evaluate_run(self, r, Z, Kt, Ct, Zt0, XM, W0M, a, model, test, means, state=None):
        """Run r's (f, ft, P), as :meth:`gram_evaluate` gives them for every run.

        Each run's test pre-activations are formed and reduced at once, never stacked.
        """
        return self.evaluation(r, self.outputs(Z[r], a[r], model), Ct[r], Kt, Zt0, XM, W0M, a,
                               model, test, means)

    def evaluation(self, r, f, ct, Kt, Zt0, XM, W0M, a, model, test, means):
        """Run r's (f, ft, P) from its outputs ``f`` and its C^T ``ct`` (n, m).

        The test outputs phi(Zt0 + Kt C^T) a if ``test``, the projections W0 mu + C (X mu) if
        ``means`` (None where not asked).
        """
        # Before the first step C = 0: BLAS would return +0 for every product, and x + 0.0 is
        # those same bits (a run's first evaluation needs no product).
        stepped = bool(ct.any())
        # A diverged run's products overflow: the driver reports that once, not NumPy here.
        with np.errstate(over="ignore", invalid="ignore"):
            ft = (self.outputs(Zt0[r] + (Kt[r] @ ct if stepped else 0.0), a[r], model)
                  if test else None)
            P = ((W0M[r] + (ct.T @ XM[r] if stepped else 0.0)).astype(np.float64)
                 if means else None)
        return f, ft, P

    def block_products(self, X, Xt, W0, M, dtype):
        """The partials of one column block: G = [X; Xt] [X; W0; M]^T, W0M = W0 M^T.

        Formed and returned in ``dtype`` (the working precision of the block); the engine sums
        a run's blocks in float64 (:func:`fastgrok.engines.gram.build`), on every backend.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ direct method
    def coefficients(self, Z, y, a, lr, V, model, accumulate=False):
        """F = phi(Z) a.

        V = (lr/n) g(y f) y phi'(Z) a written into V (added to it when ``accumulate``); returns f.
        """
        raise NotImplementedError

    def outputs(self, Z, a, model):
        """F = phi(Z) a of one run, float64 on the host."""
        raise NotImplementedError

    def direct_step(self, X, y, W, a, lr, model, n_threads=None):
        """A whole in-place step in one call where the backend has one: (f, V, updated) or None.

        None: the engine runs the forward pass, :meth:`coefficients` and the update pass itself.
        ``updated`` is False when an output is not finite (W is then unchanged).
        """
        return None

    def direct_pass(self, X, W, V=None, Xt=None, mus=None, forward=True, n_threads=None,
                    decay=1.0):
        """Apply the pending update W <- decay W + V^T X (when V is given), then the products.

        Returns the products of the updated W: Z = X W^T (if ``forward``), Zt = Xt W^T,
        P = W mus^T (None where not asked).
        """
        raise NotImplementedError


def block_operands(X, Xt, W0, M):
    """(A, B) = ([X; Xt], [X; W0; M]) of one column block (zero rows for missing means)."""
    A = X if Xt is None else np.concatenate([X, Xt])
    B = np.concatenate([X, W0, M if M is not None else np.zeros((2, X.shape[1]), X.dtype)])
    return A, B


def stack_parts(parts):
    """[(f, ft, P), ...] per run -> (f, ft, P) stacked over runs (None stays None)."""
    return tuple(None if parts[0][i] is None else np.stack([p[i] for p in parts]) for i in range(3))
