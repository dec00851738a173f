"""The gram method (docs/design.md 2.2): exact training whose per-step cost does not grow with p.

One engine for every backend. The state of each run is C (stored as Ct = C^T, (n, m)) with
W = W0 + C X; training needs only the Gram blocks K, Kt, Z0, Zt0 and the mean products, built
once in one pass over the column blocks of every run (:func:`build`). All runs of a batch are
held together, stacked, and stepped together by the backend's operations (one task per run on
the CPU threads, one stacked launch on the GPU).
"""
from __future__ import annotations

from functools import partial

import numpy as np

from .. import tunables
from .._memory import check_fits
from ..model import Model
from ..network import PatchCoefficients
from .base import Engine, next_second_layer, runs_metrics

#: The stacked state arrays of a batch and the shape of one run's block.
_BLOCKS = ("K", "Kt", "Z0", "Zt0", "XM", "W0M")
#: The blocks that carry W0 (scaled by s_t under weight decay).
_W0_TERMS = ("Z0", "Zt0", "W0M")


def build(sources, dtype, ops, n_threads=None, on_built=None) -> dict:
    """The gram state of every run in ``sources``, in one pass over each run's column blocks.

    Blocks are generated (and their products formed) in parallel on the host threads where the
    backend allows; each run's block partials are summed in float64 in block order as they
    arrive, so the result does not depend on the thread count and only one partial per run is
    held. ``on_built()`` is called as each run is complete.

    Returns
    -------
    dict of stacked arrays in ``dtype`` on the backend's device: K (R, n, n), Kt (R, nt, n),
    Z0 (R, n, m), Zt0 (R, nt, m), XM (R, n, k), W0M (R, m, k) with k the sources' directions
    (mu1, mu2 and the tracked ones; at least 2).
    """
    from ..kernels.threads import map_ordered

    s0 = sources[0]
    n, m, nt = s0.rows, s0.m, s0.test_rows  # a row per patch
    dt = np.dtype(dtype)
    R = len(sources)
    k = max(2, s0.n_directions)
    shapes = {"K": (n, n), "Kt": (nt, n), "Z0": (n, m), "Zt0": (nt, m), "XM": (n, k), "W0M": (m, k)}
    out = {k: ops.empty((R, *s), dt) for k, s in shapes.items()}
    # Only the columns where the data rows are non-zero: K, Kt, Z0, Zt0 and the mean products
    # have no term elsewhere (the reduced representation's W0 has 3.5 times more columns).
    blocks = [src.data_block_list() for src in sources]
    tasks = [(r, blk) for r, blks in enumerate(blocks) for blk in blks]
    counts = {r: len(blks) for r, blks in enumerate(blocks)}

    def store(r, G, W0M):
        # G and W0M: one block's products in dtype, or float64 sums over blocks (either way the
        # stored numbers are the products rounded once to dtype).
        out["W0M"][r] = W0M
        # K exactly symmetric, as the linear regime's kernels take it (a row of K for its
        # column): a GEMM's X X^T need not be (its two triangles can round apart by an ulp of
        # the working dtype); an entry that was symmetric keeps its value.
        Kr = G[:n, :n].astype(np.float64)
        out["K"][r], out["Z0"][r], out["XM"][r] = 0.5 * (Kr + Kr.T), G[:n, n:n + m], G[:n, n + m:]
        out["Kt"][r], out["Zt0"][r] = G[n:, :n], G[n:, n:n + m]

    def task(t):
        r, (k, j0, j1) = t
        X, Xt, W0, M = sources[r].block(k, j0, j1, dt)
        G, W0M = ops.block_products(X, Xt, W0, M, dt)
        if counts[r] == 1:  # nothing to sum: stored from this thread (the copies run in parallel)
            store(r, G, W0M)
            return None
        return G, W0M

    results = map_ordered(task, tasks, n_threads if ops.host_threads else None)
    acc, left = {}, dict(counts)
    for (r, _), part in zip(tasks, results, strict=True):
        if part is not None:
            if r in acc:
                acc[r][0] += part[0]
                acc[r][1] += part[1]
            else:
                acc[r] = [v.astype(np.float64) for v in part]
        left[r] -= 1
        if left[r] == 0:
            if r in acc:
                store(r, *acc.pop(r))
            if on_built:
                on_built()
    return out


class GramEngine(Engine):
    """The gram method over any backend's operations: build, step, evaluation, W on demand."""

    method = "gram"

    def __init__(self, sources, lr, dtype="float32", n_threads=None, on_built=None, *, ops,
                 model=None):
        self.ops = ops
        self.model = model or Model()
        self.sources, self.lr, self.dtype = list(sources), float(lr), np.dtype(dtype)
        self.n_threads = n_threads
        st = build(self.sources, self.dtype, ops, n_threads, on_built=on_built)
        self.K, self.Kt, self.Z0, self.Zt0, self.XM, self.W0M = (st[k] for k in _BLOCKS)
        R, n, m = self.Z0.shape
        self.Ct = ops.zeros((R, n, m), self.dtype)
        self.Z = ops.empty((R, n, m), self.dtype)
        self.Z[...] = self.Z0
        def host(name):
            return np.stack([np.asarray(getattr(s, name), np.float64) for s in self.sources])

        self.y, self.a = host("y"), host("a")
        self._patch = None  # patch data: each run's signal learning and noise memorisation
        if any(s.patch_metrics for s in self.sources):
            K, XM = ops.to_host(self.K), ops.to_host(self.XM)
            self._patch = [PatchCoefficients.of(s, XM[r], np.diagonal(K[r]))
                           for r, s in enumerate(self.sources)]
        self.y_dev, self.a_dev = ops.asarray(self.y, np.float64), ops.asarray(self.a, np.float64)
        self.population = any(getattr(s, "population_test_samples", 0) for s in self.sources)
        self.yt = host("y_test") if self.sources[0].n_test > 0 else None
        self.has_means = self.sources[0].n_directions > 0
        self.steps_done = 0
        self.state = ops.gram_state(R, self.dtype, self.model)  # e.g. the CPU's linear regime
        self._batches = None  # minibatches: each run's schedule
        if self.model.batch_size is not None:
            from ..data import BatchSchedule

            self._batches = [BatchSchedule(s.n, self.model.batch_size, s.seed, s.run)
                             for s in self.sources]
        # Weight decay: W(t) = s_t W0 + C(t) X with s_t = decay^t. The W0 terms (Z0, Zt0, W0M)
        # are kept at s_t times their values at the start, from unscaled copies.
        self.decay, self.scale = self.model.decay(self.lr), 1.0
        self._unscaled = None
        if self.decay != 1.0:
            self._unscaled = {k: ops.asarray(getattr(self, k).copy(), self.dtype)
                              for k in _W0_TERMS}

    @classmethod
    def max_batch(cls, n, p, m, n_test, dtype, ops):
        """How many runs a batch holds: as many as the memory budget for their state allows.

        The budget is ``tunables.GRAM_BATCH_BYTES``, and on the host threads at most
        ``tunables.GRAM_HOST_BATCH_BYTES`` per CPU this process may run on. (A checkpoint keeps
        the batch it was written with, so a run resumes on a machine with another CPU count.)
        """
        from ..kernels.threads import default_threads

        per_run = cls.state_bytes(n, m, n_test, dtype, ops)
        budget = tunables.GRAM_BATCH_BYTES
        if ops.host_threads:
            budget = min(budget, tunables.GRAM_HOST_BATCH_BYTES * default_threads())
        return max(1, int(budget // per_run))

    @classmethod
    def batch_multiple(cls, ops):
        """The threads a batch's runs are shared out to (one task per run), on the host."""
        from ..kernels.threads import default_threads

        return default_threads() if ops.host_threads else 1

    @classmethod
    def state_bytes(cls, n, m, n_test, dtype, ops):
        """Bytes of one run's state.

        K, Kt, Z0, Zt0, Z, Ct and the mean products, and the backend's own state
        (``ops.gram_state_bytes``: on the CPU, the linear regime's).
        """
        item = np.dtype(dtype).itemsize
        total = item * (n * n + n_test * n + (n + n_test) * m + 2 * n * m + 2 * (n + m))
        return total + ops.gram_state_bytes(n, m, n_test, dtype)

    @classmethod
    def estimate_bytes(cls, n, p, m, n_test, dtype, ops):
        """One run's state, plus the build's blocks and products per build thread."""
        width = min(p, tunables.DATA_BLOCK)
        # State of one run, plus per build thread: the float64 blocks, their working-dtype
        # copies and the block products.
        build_bytes = width * (n + n_test + m + 2) * (8 + 2 * np.dtype(dtype).itemsize) \
            + 16 * (n + n_test) * (n + m + 2)
        return cls.state_bytes(n, m, n_test, dtype, ops) + 2 * build_bytes

    def step(self, prepare_eval=True):
        """One step of every run (:meth:`advance` with one step)."""
        self.advance(1, prepare_eval)

    def advance(self, steps, prepare_eval=True):
        """``steps`` steps of every run in one call.

        On the CPU each run takes its steps in one task, its state in cache (the numbers are those
        of one step at a time). With weight decay, a trained second layer or minibatches, one
        step at a time around the backend's step: C <- decay C + V and Z = s Z0 + K C^T (the
        decay applied to C and the W0 terms), a's step from the Z before it, and a minibatch's
        coefficients on its rows only (:meth:`_minibatch_step`).
        """
        if not self.model.stepwise:
            self.ops.gram_step(self.K, self.Z0, self.Z, self.Ct, self.y_dev, self.a_dev, self.lr,
                               self.model, self.n_threads, state=self.state, steps=steps)
            self.steps_done += steps
            return
        R = len(self.sources)
        for _ in range(steps):
            rows = [slice(None)] * R if self._batches is None else \
                [self._batches[r].batch(self.steps_done) for r in range(R)]
            a_next = None
            if self.model.lr_second is not None:
                Z = self.ops.to_host(self.Z)
                a_next = np.stack([next_second_layer(Z[r][rows[r]], self.y[r][rows[r]],
                                                     self.a[r], self.model) for r in range(R)])
            if self.decay != 1.0:
                self.Ct *= self.decay  # the step adds V(Z(t)) to it: C(t+1) = decay C(t) + V
                self.scale *= self.decay
                self.Z0[...] = self.scale * self._unscaled["Z0"]
            if self._batches is None:
                self.ops.gram_step(self.K, self.Z0, self.Z, self.Ct, self.y_dev, self.a_dev,
                                   self.lr, self.model, self.n_threads, state=None, steps=1)
            else:
                self._minibatch_step(rows)
            self.steps_done += 1
            if a_next is not None:
                self.a, self.a_dev = a_next, self.ops.asarray(a_next, np.float64)
        if self.decay != 1.0:
            for k in ("Zt0", "W0M"):
                getattr(self, k)[...] = self.scale * self._unscaled[k]

    def _minibatch_step(self, rows):
        """Each run's SGD step on its batch rows: C^T[B] += V(Z[B]), then Z = Z0 + K C^T.

        The backend's coefficients kernel on the batch rows gives the (lr / b)-scaled
        coefficients of the batch's mean loss; the other rows of C are untouched.
        """
        o = self.ops
        for r, B in enumerate(rows):
            idx = o.asarray(B, np.int64)
            V = o.empty((len(B), self.Z.shape[2]), self.dtype)
            o.coefficients(o.asarray(self.Z[r][idx], self.dtype), self.y_dev[r][idx],
                           self.a_dev[r], self.lr, V, self.model)
            self.Ct[r][idx] += V
            self.Z[r] = self.Z0[r] + self.K[r] @ self.Ct[r]

    def sync(self):
        """Bring Z and Ct up to date with the backend's state before they are read."""
        self.ops.gram_sync(self.state, self.Z, self.Ct, self.n_threads)

    def counters(self) -> dict:
        """The backend state's counters.

        On the CPU, the linear regime's: run-steps taken, how many incrementally, with how
        many pattern changes.
        """
        return {} if self.state is None else self.state.counters()

    def plan_evaluations(self, schedule):
        """Track the evaluation rows in the CPU's linear regime when evaluations are frequent.

        Runs evaluated at every step or nearly (the left panel) keep their test outputs and
        projections up to date (``tunables.GRAM_LINEAR_TRACK_GAP``); other schedules only
        through their dense start (``tunables.GRAM_LINEAR_TRACK_PREFIX``: the right panel's
        first 84 evaluations, 1 to 31 steps apart).
        """
        schedule = np.asarray(schedule)
        if self.state is None or len(schedule) < 2:
            return
        gaps = np.diff(schedule)
        until = None  # for good
        if np.mean(gaps) > tunables.GRAM_LINEAR_TRACK_GAP:
            # Only the dense start of the schedule: up to its last evaluation before a gap of
            # GRAM_LINEAR_TRACK_PREFIX steps or more.
            longer = np.flatnonzero(gaps >= tunables.GRAM_LINEAR_TRACK_PREFIX)
            until = int(schedule[longer[0]]) if len(longer) else int(schedule[-1])
            if until < 2:
                return
        self.state.track(self.Kt, self.Zt0, self.XM, self.W0M, test=self._test,
                         means=self.has_means, until=until)

    _test = property(lambda self: self.yt is not None and not self.population)

    def _eval_args(self, projections):
        return dict(Z=self.Z, Kt=self.Kt, Ct=self.Ct, Zt0=self.Zt0, XM=self.XM, W0M=self.W0M,
                    a=self.a_dev, model=self.model, test=self._test,
                    means=projections and self.has_means)

    def evaluate(self, projections=True):
        """Every run's evaluation dict (runs in the CPU's linear regime from its state)."""
        # Runs in the CPU's linear regime are evaluated from its state (gram_evaluate).
        parts = self.ops.gram_evaluate(**self._eval_args(projections), n_threads=self.n_threads,
                                       state=self.state)
        return self._metrics(*parts)

    def advance_until_interpolation(self, steps):
        """Each run until it interpolates, at most ``steps`` (the backend's loop)."""
        # (A population test steps its runs together: its streams are keyed by the step; the
        # steps of weight decay, a trained a or minibatches go through advance.)
        out = None if self.population or self.model.stepwise else self.ops.gram_until_interpolation(
            self.K, self.Z0, self.Z, self.Ct, self.y_dev, self.a_dev, self.lr, self.model,
            self.n_threads, state=self.state, steps=steps)
        if out is None:
            return super().advance_until_interpolation(steps)
        self.steps_done += out[0]
        return out[0], list(out[1])

    def outputs(self, test=False):
        """Per run, f (and ft with ``test``): one evaluation without metrics or projections."""
        if self.population and test:
            return super().outputs(test)
        args = {**self._eval_args(False), "test": test and self._test}
        f, ft, _ = self.ops.gram_evaluate(**args, n_threads=self.n_threads, state=self.state)
        if test:
            return [(f[r], None if ft is None else ft[r]) for r in range(len(self.sources))]
        return [f[r] for r in range(len(self.sources))]

    def segment(self, segment, projections=True, deferred=False):
        """The segment's steps and evaluations, each run's in one task on the CPU.

        With ``deferred``, the metrics of each evaluation are computed when its function is
        called (they depend on its outputs alone here).
        """
        if self.population or self.model.stepwise or self._patch is not None:
            # The population accuracy needs W, the patch metrics C at the evaluated step;
            # weight decay, a trained a and minibatches need their own steps (advance).
            return super().segment(segment, projections, deferred)
        step_args = (self.K, self.Z0, self.Z, self.Ct, self.y_dev, self.a_dev, self.lr, self.model)
        parts = self.ops.gram_segment(segment, step_args, self._eval_args(projections),
                                      n_threads=self.n_threads, state=self.state)
        self.steps_done += sum(k for k, _ in segment)
        if deferred:  # (the labels as they are now: a later select makes new arrays)
            y, yt, loss, regression = self.y, self.yt, self.model.loss, self.model.regression
            return [partial(runs_metrics, f, y, ft, None if ft is None else yt, P, loss,
                            regression) for f, ft, P in parts]
        return [self._metrics(*p) for p in parts]

    def steps_per_call(self) -> int:
        """Up to ``tunables.GRAM_LINEAR_STEPS_PER_CALL`` while every run is in the linear regime.

        Its steps are cheap and take blocks as long as the call
        (:func:`fastgrok.kernels.gram_linear.linear_blocks`), and a call ends where the runs'
        next exact refresh is due (:meth:`LinearRegime.steps_to_refresh`): a refresh inside a
        call would cut its block in two. Otherwise the default.
        """
        if getattr(self.state, "all_linear", None) is not None and self.state.all_linear():
            return self.state.steps_to_refresh(tunables.GRAM_LINEAR_STEPS_PER_CALL)
        return super().steps_per_call()

    def _metrics(self, f, ft, P):
        """One evaluation dict per run from the stacked (f, ft, P).

        The population accuracy is added where asked.
        """
        nt = self.n_threads
        outs = runs_metrics(f, self.y, ft, None if ft is None else self.yt, P, self.model.loss,
                            self.model.regression)
        if self.model.lr_second is not None:  # a trained second layer: where it is now
            for out, a in zip(outs, self.a, strict=True):
                out["a"] = a
        if self._patch is not None:
            self.ops.gram_sync(self.state, self.Z, self.Ct, nt, with_z=False)
            Ct = self.ops.to_host(self.Ct)
            for out, pc, ct in zip(outs, self._patch, Ct, strict=True):
                out.update(pc.metrics(ct))
        if self.population:
            from ..kernels.threads import map_runs

            pop = map_runs(lambda r: self.sources[r].population_accuracy(
                               self.weights(r), self.steps_done, self.model),
                           list(range(len(self.sources))), nt if self.ops.host_threads else None)
            for out, (acc, loss, se) in zip(outs, pop, strict=True):
                out["test_acc"], out["test_loss"], out["test_acc_se"] = acc, loss, se
        return outs

    def data_projections(self):
        """The training data's projections X mu (n, 2) per run, float64 on the host.

        None for patches: a sample is not one point of the plane.
        """
        if not self.has_means or self.model.pooled:
            return None
        XM = np.asarray(self.ops.to_host(self.XM[:, :, :2]), np.float64)
        return list(XM)

    def network(self, i=0):
        """Run i's network now: its coefficients C and its source (W is not formed)."""
        from ..network import Network

        self.ops.gram_sync(self.state, self.Z, self.Ct, with_z=False, runs=[i])
        C = np.array(self.ops.to_host(self.Ct[i]), np.float64).T
        return Network(self.a[i], self.model.act, C=C, source=self.sources[i],
                       dtype=self.dtype, scale=self.scale, patches=self.model.patches)

    def select(self, keep):
        """Keep the runs at positions ``keep``: the stacked arrays and the backend state."""
        keep = [int(i) for i in keep]
        if keep == list(range(len(self.sources))):
            return
        idx = np.asarray(keep, dtype=np.int64)

        def take(x):
            if x is None:
                return None
            out = self.ops.empty((len(keep), *x.shape[1:]), x.dtype)
            out[...] = x[self.ops.asarray(idx, np.int64)]
            return out

        for name in (*_BLOCKS, "Ct", "Z", "y_dev", "a_dev"):
            setattr(self, name, take(getattr(self, name)))
        if self._unscaled is not None:
            self._unscaled = {k: take(v) for k, v in self._unscaled.items()}
        self.y, self.a = self.y[idx], self.a[idx]
        if self.yt is not None:
            self.yt = self.yt[idx]
        self.sources = [self.sources[i] for i in keep]
        if self._batches is not None:
            self._batches = [self._batches[i] for i in keep]
        if self._patch is not None:
            self._patch = [self._patch[i] for i in keep]
        if self.state is not None:
            self.state.select(keep, (self.Kt, self.Zt0, self.XM, self.W0M))

    def weights(self, r=0):
        """W(t) = s_t W0 + C(t) X of run ``r`` (m, p) on the host, rebuilt block by block.

        s_t = 1 without weight decay.
        """
        src = self.sources[r]
        check_fits(src.m * src.p * self.dtype.itemsize, f"the weights W (m={src.m}, p={src.p})")
        # This run's C only, on the calling thread (weights may be asked for from the pool's
        # threads, one run each, as the population accuracy does).
        self.ops.gram_sync(self.state, self.Z, self.Ct, with_z=False, runs=[r])
        W = np.empty((src.m, src.p), self.dtype)
        C = self.ops.to_host(self.Ct[r]).T
        for j0, j1, X, _, W0, _ in src.blocks(self.dtype):
            W[:, j0:j1] = (W0 if self.scale == 1.0 else self.scale * W0) + C @ X
        return W
