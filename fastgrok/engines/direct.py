"""The direct method (docs/design.md 2.1): W (m, p) updated in place by W += V^T X.

One engine for every backend; a step is one pass over p in the backend's operations (the CPU
kernels fuse the update with the next products over column tiles; NumPy and the GPU use two
products), with the elementwise work between passes in one fused kernel.
"""
from __future__ import annotations

import numpy as np

from .. import tunables
from ..model import Model
from ..network import PatchCoefficients
from .base import Engine, next_second_layer, run_metrics


class DirectEngine(Engine):
    """The direct method for one run over any backend's operations.

    Each step applies the pending update and computes the next pre-activations in one pass; at
    evaluation steps the same pass also computes the test pre-activations and W mu1, W mu2.
    """

    method = "direct"

    def __init__(self, sources, lr, dtype="float32", n_threads=None, on_built=None, *, ops,
                 model=None):
        if any(getattr(s, "population_test_samples", 0) for s in sources):
            raise NotImplementedError("population_test_samples is implemented for the gram "
                                      "method only")
        self.ops = o = ops
        self.sources = sources
        (source,) = sources
        pb = source.problem(dtype)
        self.X, self.W = o.asarray(pb.X, dtype), o.asarray(pb.W0, dtype)
        self.Xt = o.asarray(pb.X_test, dtype)
        self.mus = o.asarray(pb.directions, dtype)  # (k, p) or None

        def f64(v):
            return None if v is None else np.asarray(v, dtype=np.float64)

        self.y, self.a, self.yt = f64(pb.y), f64(pb.a), f64(pb.y_test)
        self.y_dev, self.a_dev = o.asarray(self.y, np.float64), o.asarray(self.a, np.float64)
        self.lr, self.n_threads = float(lr), n_threads
        self.model = model or Model()
        self.V = o.empty((self.X.shape[0], self.W.shape[0]), self.W.dtype)
        # Patch data: C (kept as C^T, W = s W0 + C X) for the signal learning and the noise
        # memorisation; each step adds its V.
        self.Ct = self._patch = None
        if source.patch_metrics:
            self._patch = PatchCoefficients.from_parts(
                source, PatchCoefficients.column_chunks(o.to_host(self.X), o.to_host(self.mus)))
            self.Ct = o.zeros(self.V.shape, np.float64)
        self.steps_done = 0
        self._batches = None
        if self.model.batch_size is not None:
            from ..data import BatchSchedule

            self._batches = BatchSchedule(source.n, self.model.batch_size, source.seed,
                                          source.run)
        self._pass(update=False, with_eval=True)
        if on_built:
            on_built()

    def _pass(self, update, with_eval):
        self.Z, self.Zt, self.P = self.ops.direct_pass(
            self.X, self.W, V=self.V if update else None, Xt=self.Xt if with_eval else None,
            mus=self.mus if with_eval else None, n_threads=self.n_threads,
            decay=self.model.decay(self.lr))
        self._eval_ready = with_eval

    def step(self, prepare_eval=True):
        """Form the coefficients, then the update pass (with the evaluation products if asked).

        A trained second layer takes its step from the same pre-activations; a minibatch step
        uses the coefficients of its batch rows (V is zero on the others).
        """
        o, rows = self.ops, slice(None)
        if self._batches is not None:
            rows = self._batches.batch(self.steps_done)
        a_next = None
        if self.model.lr_second is not None:
            a_next = next_second_layer(o.to_host(self.Z)[rows], self.y[rows], self.a, self.model)
        if self._batches is None:
            o.coefficients(self.Z, self.y_dev, self.a_dev, self.lr, self.V, self.model)
        else:  # the batch's coefficients (scaled by lr / b); the other rows of V are zero
            idx = o.asarray(rows, np.int64)
            Vb = o.empty((len(rows), self.V.shape[1]), self.V.dtype)
            o.coefficients(o.asarray(self.Z[idx], self.Z.dtype), self.y_dev[idx], self.a_dev,
                           self.lr, Vb, self.model)
            self.V[...] = 0
            self.V[idx] = Vb
        if self.Ct is not None:
            if self.model.weight_decay:
                self.Ct *= self.model.decay(self.lr)
            self.Ct += self.V
        self._pass(update=True, with_eval=prepare_eval)
        self.steps_done += 1
        if a_next is not None:
            self.a, self.a_dev = a_next, self.ops.asarray(a_next, np.float64)

    def evaluate(self, projections=True):
        """The run's evaluation dict (one extra pass if the step did not prepare it)."""
        o = self.ops
        if not self._eval_ready:  # the driver did not announce this evaluation: one extra pass
            _, self.Zt, self.P = o.direct_pass(self.X, self.W, Xt=self.Xt, mus=self.mus,
                                               forward=False, n_threads=self.n_threads)
            self._eval_ready = True
        f = o.outputs(self.Z, self.a_dev, self.model)
        ft = None if self.Zt is None else o.outputs(self.Zt, self.a_dev, self.model)
        P = o.to_host(self.P) if projections and self.P is not None else None
        out = run_metrics(f, self.y, ft, self.yt, P, self.model.loss, self.model.regression)
        if self.model.lr_second is not None:  # a trained second layer: where it is now
            out["a"] = self.a
        if self._patch is not None:
            out.update(self._patch.metrics(o.to_host(self.Ct)))
        return [out]

    def outputs(self, test=False):
        """The run's f (from the pass's Z; ft with ``test``, one extra pass if not prepared)."""
        if test:
            return super().outputs(test)
        return [self.ops.outputs(self.Z, self.a_dev, self.model)]

    def network(self, i=0):
        """The run's network now, W copied to the host."""
        from ..network import Network

        C = None if self.Ct is None else np.array(self.ops.to_host(self.Ct), np.float64).T
        return Network(self.a, self.model.act, W=np.array(self.ops.to_host(self.W)), C=C,
                       source=self.sources[0], dtype=self.W.dtype, patches=self.model.patches)

    def data_projections(self):
        """The training data's projections X mu (n, 2), float64 on the host (None: patches)."""
        if self.mus is None or self.model.pooled:
            return None
        return [np.asarray(self.ops.to_host(self.X @ self.mus[:2].T), np.float64)]

    @classmethod
    def step_fn(cls, X, y, W, a, lr, ops, n_threads=None, model=None, check_outputs=None):
        """One in-place step on the caller's arrays (``fg.step``) with the operations ``ops``.

        A forward pass, the fused coefficients, then the update pass (one compiled call where
        the operations have one, :meth:`Ops.direct_step`). Returns the outputs f
        (n,) of the forward pass (float64). ``check_outputs(f)`` is called before the update
        (it may raise: W is then unchanged).
        """
        model = model or Model()
        o, xp = ops, ops.xp
        if X.dtype != W.dtype:  # the products, and so Z and the kernels, take W's dtype
            X = X.astype(W.dtype)
        y, a = xp.asarray(y, dtype=xp.float64), xp.asarray(a, dtype=xp.float64)
        with o.runtime(n_threads) as nt:
            whole = o.direct_step(X, y, W, a, lr, model, n_threads=nt)
            if whole is not None:
                f, V, updated = whole
                if updated:
                    return f
            else:
                Z = o.direct_pass(X, W, n_threads=nt)[0]
                V = o.empty(Z.shape, W.dtype)
                f = o.coefficients(Z, y, a, lr, V, model)
            if check_outputs is not None:
                check_outputs(f)
            o.direct_pass(X, W, V=V, forward=False, n_threads=nt, decay=model.decay(lr))
        return f

    @staticmethod
    def estimate_bytes(n, p, m, n_test, dtype, ops):
        """X, X_test, W and the means in the working dtype, the pass's partial sums, the draws."""
        item = np.dtype(dtype).itemsize
        # X, X_test, W and the means in the working dtype; the CPU pass's float64 partial sums
        # (a fixed number of chunks); the generator's float64 blocks.
        partials = tunables.DIRECT_CHUNKS * (n + n_test + 2) * m * (8 + item)
        return (n + n_test + m + 2) * p * item + partials + 8 * (n + m) * tunables.DATA_BLOCK
