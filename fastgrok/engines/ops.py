"""Operations objects: what differs between backends, behind one small interface.

The engines (:mod:`fastgrok.engines.direct`, :mod:`fastgrok.engines.gram`) are written once,
against these operations; a backend is an operations object:

* :class:`NumpyOps` - plain NumPy, mirroring :mod:`fastgrok.reference` (readable, serial);
* :class:`NumbaOps` - the CPU kernels: fused Numba kernels, single-threaded BLAS inside
  fastgrok's own thread pool (:mod:`fastgrok.kernels.threads`);
* ``CupyOps`` (:mod:`fastgrok.engines.ops_cupy`) - CUDA kernels and cuBLAS on the GPU.

Arrays of a gram batch are stacked over runs: Z, Z0, Ct (R, n, m); K (R, n, n); Kt (R, nt, n);
Zt0 (R, nt, m); XM (R, n, 2); W0M (R, m, 2); y (R, n) and a (R, m) in float64. Outputs and
projections come back to the host in float64; everything else stays where ``xp`` keeps it.
``model`` is the network's activation and loss (:class:`fastgrok.model.Model`).
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import reference, tunables
from .._memory import empty_aligned, zeros_aligned


class NumpyOps:
    """Plain NumPy on the host, the reference's arithmetic (the engines' logic on any machine)."""

    name = "numpy"
    xp = np
    #: Whether the engines may call these operations from several host threads at once.
    host_threads = True

    # ------------------------------------------------------------------ memory
    @staticmethod
    def empty(shape, dtype):
        return empty_aligned(shape, dtype)

    @staticmethod
    def zeros(shape, dtype):
        return zeros_aligned(shape, dtype)

    def asarray(self, x, dtype):
        """``x`` in ``dtype`` on this backend's device, C-contiguous and aligned (None stays None)."""
        if x is None:
            return None
        x = np.asarray(x)
        if x.dtype == np.dtype(dtype) and x.flags.c_contiguous:
            return x
        out = self.empty(x.shape, dtype)
        out[...] = x
        return out

    @staticmethod
    def to_host(x):
        """A NumPy view or copy of a device array."""
        return np.asarray(x)

    # ------------------------------------------------------------------ gram build
    @staticmethod
    def block_products(X, Xt, W0, M, dtype):
        """Float64 partials of one column block: G = [X; Xt] [X; W0; M]^T, W0M = W0 M^T.

        The products are formed in ``dtype`` (the working precision of the block) and returned
        in float64, so that the sum over blocks is float64 on every backend.
        """
        A, B = block_operands(X, Xt, W0, M)
        m = W0.shape[0]
        return (A @ B.T).astype(np.float64), (B[-2 - m:-2] @ B[-2:].T).astype(np.float64)

    # ------------------------------------------------------------------ gram step (stacked)
    def gram_state(self, R, dtype, model):
        """Backend state a gram engine keeps beside its arrays (None: nothing)."""
        return None

    def gram_sync(self, state, Z, Ct, n_threads=None, with_z=True, runs=None):
        """Bring Ct (and Z, if ``with_z``) of ``runs`` (default all) up to date from ``state``
        before they are read (nothing here)."""

    def gram_step(self, K, Z0, Z, Ct, y, a, lr, model, n_threads=None, state=None, steps=1):
        """``steps`` steps of every run, in place: Ct += V(Z); Z = Z0 + K Ct."""
        for _ in range(steps):
            for r in range(Z.shape[0]):
                self.coefficients(Z[r], y[r], a[r], lr, Ct[r], model, accumulate=True)
                Z[r] = Z0[r] + K[r] @ Ct[r]

    def _evaluate_run(self, r, Z, Kt, Ct, Zt0, XM, W0M, a, model, test, means, state=None):
        # A run in the CPU's linear regime: its outputs from its own state, and the rest from
        # its tracked rows where it keeps them (no product), else from its C.
        f = state.outputs(r) if state is not None else None
        if f is None:
            f, ct = self.outputs(Z[r], a[r], model), Ct[r]
        elif state.covers(r, test, means):
            ft, P = state.tracked(r)
            return f, ft if test else None, P if means else None
        else:
            ct = state.coefficients(r)
        ft = self.outputs(Zt0[r] + Kt[r] @ ct, a[r], model) if test else None
        P = (W0M[r] + ct.T @ XM[r]).astype(np.float64) if means else None
        return f, ft, P

    def gram_evaluate(self, Z, Kt, Ct, Zt0, XM, W0M, a, model, test=True, means=True,
                      n_threads=None, state=None):
        """Every run's evaluation quantities, on the host in float64: the outputs f (R, n); the
        test outputs phi(Zt0 + Kt C^T) a (R, nt) if ``test``; the projections
        W0 mu + C (X mu) (R, m, 2) if ``means`` (None where not asked). Each run's test
        pre-activations are formed and reduced at once, never stacked. ``state`` (the CPU's
        linear regime) gives the outputs of the runs it holds."""
        parts = [self._evaluate_run(r, Z, Kt, Ct, Zt0, XM, W0M, a, model, test, means, state)
                 for r in range(len(Z))]
        return _stack_parts(parts)

    def gram_segment(self, pieces, step_args, eval_args, n_threads=None, state=None):
        """The steps of ``pieces`` ((steps, evaluate) in order) for every run, with the
        evaluations (:meth:`gram_evaluate`'s (f, ft, P), each stacked or a list over runs)
        after the pieces that ask, in order.
        ``step_args`` are :meth:`gram_step`'s arguments up to ``model``, ``eval_args`` the
        keyword arguments of :meth:`gram_evaluate` (its arrays and flags)."""
        out = []
        for k, ev in pieces:
            self.gram_step(*step_args, n_threads=n_threads, state=state, steps=k)
            if ev:
                out.append(self.gram_evaluate(**eval_args, n_threads=n_threads, state=state))
        return out

    # ------------------------------------------------------------------ direct (one run)
    @staticmethod
    def coefficients(Z, y, a, lr, V, model, accumulate=False):
        """f = phi(Z) a; V = (lr/n) g(y f) y phi'(Z) a written into V (added to it when
        ``accumulate``); returns f."""
        f = reference.forward_from_preactivations(Z, a, model.slope)
        coef = reference.update_coefficients(Z, y, f, a, lr, model.slope, model.loss)
        if accumulate:
            V += coef
        else:
            V[...] = coef
        return f

    @staticmethod
    def outputs(Z, a, model):
        """f = phi(Z) a of one run, float64 on the host."""
        return reference.forward_from_preactivations(Z, a, model.slope)

    def direct_pass(self, X, W, V=None, Xt=None, mus=None, forward=True, n_threads=None):
        """Apply the pending update W += V^T X (when V is given), then return the products of
        the updated W: Z = X W^T (if ``forward``), Zt = Xt W^T, P = W mus^T (None where not
        asked)."""
        if V is not None:
            W += V.T @ X
        Z = X @ W.T if forward else None
        Zt = Xt @ W.T if Xt is not None else None
        # One product per mean, as the reference computes W mu1 and W mu2.
        P = np.stack([W @ mu for mu in mus], axis=1) if mus is not None else None
        return Z, Zt, P


class NumbaOps(NumpyOps):
    """The CPU kernels: fused Numba kernels and single-threaded BLAS on fastgrok's thread pool.

    Runs of a gram batch are independent and spread over the threads (one task per run); the
    direct method's pass over p is split into a fixed number of chunks merged in order.
    """

    name = "numba"

    @staticmethod
    def block_products(X, Xt, W0, M, dtype):
        from ..kernels.gram_cpu import block_products

        return block_products(X, Xt, W0, M, dtype)

    def gram_state(self, R, dtype, model):
        """The linear regime's state when ``tunables.GRAM_LINEAR_REGIME`` is on (read when
        the engine is built), else None."""
        return LinearRegime(R, dtype, model) if tunables.GRAM_LINEAR_REGIME else None

    def gram_sync(self, state, Z, Ct, n_threads=None, with_z=True, runs=None):
        if state is not None:
            from ..kernels.threads import map_runs

            runs = list(range(len(state.runs))) if runs is None else list(runs)
            map_runs(lambda r: state.sync(r, Z, Ct, with_z), runs, n_threads)

    @staticmethod
    def _advance_run(r, K, Z0, Z, Ct, y, a, lr, model, state, steps):
        if state is not None:
            return state.advance(r, K, Z0, Z, Ct, y, a, lr, steps, model)
        from ..kernels.gram_cpu import step_run

        for _ in range(steps):
            step_run(K[r], Z0[r], Z[r], Ct[r], y[r], a[r], lr, model.slope, model.loss_code)

    def gram_step(self, K, Z0, Z, Ct, y, a, lr, model, n_threads=None, state=None, steps=1):
        from ..kernels.threads import map_runs

        # All of a run's steps in one task: its state stays in cache between steps, and the
        # runs are independent, so the numbers are those of one step at a time.
        map_runs(lambda r: self._advance_run(r, K, Z0, Z, Ct, y, a, lr, model, state, steps),
                 list(range(Z.shape[0])), n_threads)

    def gram_segment(self, pieces, step_args, eval_args, n_threads=None, state=None):
        from ..kernels.threads import map_runs

        def one(r):
            # A run's steps and evaluations in one task: its state stays in cache throughout.
            evaluate = lambda: self._evaluate_run(r, **eval_args, state=state)  # noqa: E731
            if state is not None:  # in the linear regime, its steps between marks in one call
                marks = np.cumsum([k for k, _ in pieces])[[ev for _, ev in pieces]]
                return state.advance(r, *step_args[:-1], steps=sum(k for k, _ in pieces),
                                     model=step_args[-1], marks=[int(mk) for mk in marks],
                                     evaluate=evaluate,
                                     wanted=(eval_args["test"], eval_args["means"]))
            out = []
            for k, ev in pieces:
                self._advance_run(r, *step_args, state=state, steps=k)
                if ev:
                    out.append(evaluate())
            return out

        per_run = map_runs(one, list(range(step_args[2].shape[0])), n_threads)
        # Per evaluation, (f, ft, P) as lists over runs: the caller takes them run by run, so
        # stacking them (serial, on the calling thread) would only be undone.
        return [tuple(None if per_run[0][i][q] is None else [runs[i][q] for runs in per_run]
                      for q in range(3)) for i in range(len(per_run[0]))]

    def gram_evaluate(self, Z, Kt, Ct, Zt0, XM, W0M, a, model, test=True, means=True,
                      n_threads=None, state=None):
        from ..kernels.threads import map_runs

        # One task per run: outputs, test outputs and projections together.
        return _stack_parts(map_runs(
            lambda r: self._evaluate_run(r, Z, Kt, Ct, Zt0, XM, W0M, a, model, test, means, state),
            list(range(len(Z))), n_threads))

    @staticmethod
    def coefficients(Z, y, a, lr, V, model, accumulate=False):
        from ..kernels.numba_fused import outputs_and_coefficients

        return outputs_and_coefficients(Z, y, a, float(lr), V, accumulate, model.slope,
                                        model.loss_code)

    @staticmethod
    def outputs(Z, a, model):
        from ..kernels.numba_fused import outputs

        return outputs(Z, a, model.slope)

    def direct_pass(self, X, W, V=None, Xt=None, mus=None, forward=True, n_threads=None):
        from ..kernels.direct_cpu import tile_pass

        if 1 not in (X.strides[0] // X.itemsize, X.strides[1] // X.itemsize):
            # BLAS takes column tiles of X with one unit stride; a view like X[:, ::2] has none.
            X = np.ascontiguousarray(X)
        return tile_pass(X, W, V=V, Xt=Xt, mus=mus, forward=forward, n_threads=n_threads)


class LinearRegime:
    """The gram method's linear regime on the CPU, per run (docs/design.md 2.4).

    A run takes its first step densely. It enters the regime after a dense step that changed
    at most half of ``tunables.GRAM_LINEAR_MAX_CHANGES`` of its activation pattern, if every
    loss weight then equals -l'(0) (1/2 for the logistic loss, 1 for the others) in the working
    precision; it takes incremental steps
    (:func:`fastgrok.kernels.gram_linear.linear_steps`) while that holds, and leaves for good
    (dense steps) the first time it does not. A run whose incremental steps change more than
    that fraction of the pattern (they would cost more than dense steps) takes dense steps
    until they change less than half of it again. The engine's Z and Ct are brought up to
    date (:meth:`sync`) before anything but an evaluation (:meth:`coefficients`) reads them.
    """

    def __init__(self, R, dtype, model):
        from ..kernels import gram_linear  # compiles (or loads) its kernels once, here

        self.kernels = gram_linear
        self.dtype = np.dtype(dtype)
        self.single = self.dtype == np.float32
        self.g0, self.leak, self.loss = model.g0, model.slope, model.loss_code
        self.runs = [None] * R        # per run: its incremental state, while in the regime
        self.left = [False] * R       # runs whose loss weights moved off g0 (dense from then on)
        self.flips = [None] * R       # per run: pattern changes of its last dense step
        # Per run: its near-linear state (:meth:`_near`), and whether it gave that up.
        self.near = [None] * R
        self.near_off = [not (self.single and tunables.GRAM_NEAR_LINEAR)] * R
        # Per run (each is stepped by one thread at a time): run-steps, incremental run-steps,
        # pattern changes, near-linear run-steps.
        self.counts = np.zeros((R, 4), np.int64)
        self.margins = self._frozen_margins()
        self.rows = None  # the tracked evaluation rows (:meth:`track`)

    def track(self, Kt, Zt0, XM, W0M, test, means):
        """Keep the test outputs (``test``) and the projections on the means (``means``) of
        every run in the regime up to date as its pattern changes, so that an evaluation is a
        pass over (m, n_test + 2) numbers instead of the product Kt C^T and the write of C.
        Worth it when evaluations are frequent: it adds O(n_test) to every pattern change.
        Called before the runs enter the regime (runs already in it keep their evaluations)."""
        if test or means:
            self.rows = (Kt if test else None, Zt0 if test else None,
                         XM if means else None, W0M if means else None)

    run_steps = property(lambda self: int(self.counts[:, 0].sum()))
    linear_run_steps = property(lambda self: int(self.counts[:, 1].sum()))
    changes = property(lambda self: int(self.counts[:, 2].sum()))
    near_run_steps = property(lambda self: int(self.counts[:, 3].sum()))

    def advance(self, r, K, Z0, Z, Ct, y, a, lr, steps, model, marks=(), evaluate=None,
                wanted=(True, True)):
        """Run r's next ``steps`` steps: incremental while it is in the regime, else dense.

        ``marks`` (increasing, in 1..steps): the steps of this call after which the run is
        evaluated; returns the evaluations (f, ft, P) in order. In the regime with tracked
        rows they are recorded by the kernel as it steps (``wanted``: whether ft and P are
        asked for), so that all the steps between two exact refreshes take one kernel call;
        elsewhere the steps stop at each mark and ``evaluate()`` gives the evaluation.
        """
        from ..kernels.gram_cpu import step_run

        self.counts[r, 0] += steps
        entries = Z.shape[1] * Z.shape[2]
        limit = tunables.GRAM_LINEAR_MAX_CHANGES * entries
        near_limit = tunables.GRAM_NEAR_MAX_CHANGES * entries
        done, marks, out = 0, list(marks), []
        while done < steps:
            stop = next((mk for mk in marks if mk > done), steps)  # the next mark
            cheap = self.flips[r] is not None and self.flips[r] <= limit / 2
            if self.runs[r] is None and not self.left[r] and cheap:
                self.runs[r] = self._enter(r, K, Z, Ct, y, a, lr)
            if self.runs[r] is not None:
                if self.covers(r, *wanted):
                    # Its tracked rows give the evaluations: the marks up to the end, recorded
                    # by the kernel.
                    k, evs = self._incremental(r, K, Z0, Z, Ct, y, a, lr, steps - done, limit,
                                               [mk - done for mk in marks if mk > done], wanted)
                    out += evs
                else:
                    k = self._incremental(r, K, Z0, Z, Ct, y, a, lr, stop - done, limit)[0]
            else:
                if self.near[r] is None and self.left[r] and not self.near_off[r] \
                        and self.flips[r] is not None and self.flips[r] <= near_limit / 2:
                    self.near[r] = self._near_state(r, K[r], np.asarray(Z[r], np.float64).T,
                                                    np.asarray(Ct[r], np.float64).T, y[r], a[r],
                                                    lr)
                if self.near[r] is not None:
                    k = self._near(r, K, Z, Ct, stop - done, near_limit)
                else:
                    before = None if self.left[r] and self.near_off[r] else Z[r] > 0
                    step_run(K[r], Z0[r], Z[r], Ct[r], y[r], a[r], lr, model.slope,
                             model.loss_code)
                    if before is not None:  # a candidate: how much of its pattern changed?
                        self.flips[r] = int(np.count_nonzero(before != (Z[r] > 0)))
                    k = 1
            done += k
            if done in marks[len(out):len(out) + 1]:  # a mark reached outside the kernel
                out.append(evaluate())
        return out

    def _enter(self, r, K, Z, Ct, y, a, lr):
        from ..kernels.numba_fused import outputs

        f = outputs(Z[r], a[r], self.leak)
        if not self._frozen(f, y[r]):
            self.left[r] = True  # the weights only move further off g0 from here
            return None
        n = Z.shape[1]
        st = {"c": (lr / n) * self.g0 * y[r], "a": a[r], "f": f, "steps": 0,
              "K64": np.asarray(K[r], np.float64),
              "Ct0T": np.asarray(Ct[r], np.float64).T.copy(),
              "C": np.empty(Ct.shape[:0:-1], self.dtype)}  # C, for evaluations
        st["ZT"] = np.ascontiguousarray(np.asarray(Z[r], np.float64).T)
        # Steps active: S = SX + 1[ZT > 0] steps, SX changing only with the pattern (< 2^31 steps).
        st["SX"] = np.zeros(st["ZT"].shape, np.int32)
        st["reach"] = np.dot(a[r], a[r]) * (np.abs(st["K64"]) @ np.abs(st["c"]))
        m = st["ZT"].shape[0]
        if self.rows is None:  # no tracked rows: empty arrays for the kernel
            st["nt"], st["KtT"] = 0, np.empty((n, 0), self.dtype)
            st["BT"] = st["DtT"] = st["UT"] = np.empty((m, 0))
        else:
            Kt, Zt0, XM, W0M = self.rows
            E = [Kt[r]] if Kt is not None else []  # (rows, n), in the working dtype
            E0 = [np.asarray(Zt0[r], np.float64)] if Kt is not None else []  # (rows, m)
            if XM is not None:
                E.append(XM[r].T)
                E0.append(np.asarray(W0M[r], np.float64).T)
            E, E0 = np.concatenate(E), np.concatenate(E0)
            st["nt"] = 0 if Kt is None else Kt.shape[1]
            # Kt and X mu in the working dtype: exactly the engine's numbers, in half the cache.
            st["KtT"] = np.ascontiguousarray(E.T)
            st["BT"] = np.ascontiguousarray(
                (E0 + E.astype(np.float64) @ np.asarray(Ct[r], np.float64)).T)
            st["UT"] = st["BT"].copy()
        st["refreshed"] = 0
        self._refresh_d(st)
        return st

    def _frozen(self, f, y):
        return self.kernels.frozen(f, y, self.g0, self.single, self.loss)

    def _frozen_margins(self):
        """(lo, hi), halved: the weight of a margin y f in [2 lo, 2 hi] is g0 (the edges found
        by bisection over the float64 bit patterns with the regime's own check; halved so
        that rounding-level wiggles of the loss function near the edges cannot matter)."""
        def ok(z):
            return self._frozen(np.array([z]), np.ones(1))

        def edge(sign):
            if ok(sign * 1e308):
                return sign * np.inf  # e.g. the hinge: frozen for every negative margin
            good, bad = 0, int(np.float64(1e308).view(np.int64))
            while bad - good > 1:  # ok at bit pattern `good`, not at `bad`
                mid = (good + bad) // 2
                if ok(sign * float(np.int64(mid).view(np.float64))):
                    good = mid
                else:
                    bad = mid
            return sign * float(np.int64(good).view(np.float64))

        return edge(-1.0) / 2, edge(1.0) / 2

    def _cannot_thaw(self, st, y, k):
        """True when no weight can move off g0 within the next k steps: |D_ij| <= |a_j| R_i
        with R_i = sum_k |K_ik c_k| (phi' <= 1), so an output moves by at most ||a||^2 R_i
        per step, and every margin stays inside the frozen interval."""
        z, reach = y * st["f"], k * st["reach"]
        lo, hi = self.margins
        return bool(np.all(z - reach >= lo) and np.all(z + reach <= hi))

    def _refresh_d(self, st):
        """D^T = (K (c * phi'(Z)))^T, exactly (one product), with the pattern 1[ZT > 0]; and
        the tracked rows' DtT and, after the entry, their pre-activations UT from the pattern
        and SX: with C(t) = C0 + (a c) (leak t + (1 - leak) S) and S = SX + M t, a row
        u = Kt C^T is u0 + t Kt (c a * (leak + (1 - leak) M)) + (1 - leak) Kt (c a * SX),
        u0 = BT at entry."""
        V, st["DT"] = self._increments(st["K64"], st["c"], st["a"], st["ZT"])
        if st["KtT"].shape[1]:
            st["DtT"] = V.T @ st["KtT"]
            if st["steps"]:  # at entry U = BT (and SX = 0): no product of zeros
                ca = st["c"][:, None] * st["a"][None, :]
                QT = (1.0 - self.leak) * ((ca * st["SX"].T).T @ st["KtT"])
                st["UT"] = st["BT"] + st["steps"] * st["DtT"] + QT

    def _increments(self, K64, c, a, ZT):
        """(V, D^T): the coefficients V = c a phi'(Z) (n, m) of the pattern 1[ZT > 0] and
        D^T = (K V)^T (m, n), exactly (one product)."""
        V = c[:, None] * a[None, :] * (self.leak + (1.0 - self.leak) * (ZT.T > 0))
        return V, np.ascontiguousarray((K64 @ V).T)

    def _outputs_t(self, ZT, a):
        """phi(Z) a from Z^T (m, n), float64."""
        return (np.maximum(ZT, self.leak * ZT) * a[:, None]).sum(axis=0)

    def _write_c(self, st, C):
        """C = C0 + (a c) (leak steps + (1 - leak) S) into C, (m, n) in C's dtype (an entry
        active for S of the run's incremental steps summed phi' = leak steps + (1 - leak) S)."""
        self.kernels.write_c(st["ZT"], st["SX"], st["Ct0T"], st["c"], st["a"], self.leak,
                             st["steps"], C)
        return C

    def _incremental(self, r, K, Z0, Z, Ct, y, a, lr, steps, limit, marks=(), wanted=None):
        """Up to ``steps`` incremental steps of run r; returns how many were taken, and the
        evaluations the kernel recorded after the steps in ``marks`` (in 1..steps) that were
        taken (with tracked rows only; ``wanted``: whether ft and P are asked for)."""
        st = self.runs[r]
        done, evs = 0, []
        refresh = tunables.GRAM_LINEAR_REFRESH
        while done < steps:
            if not self._frozen(st["f"], y[r]):
                self.runs[r], self.left[r] = None, True
                if self.near_off[r]:
                    self._sync_state(st, r, Z, Ct)  # the dense steps continue from here
                else:  # the near-linear regime continues from the float64 state
                    C = self._write_c(st, np.empty(st["ZT"].shape))
                    self.near[r] = self._near_state(r, K[r], st["ZT"], C, y[r], a[r], lr)
                break
            if st["steps"] % refresh == 0 and st["steps"] != st["refreshed"]:
                # Exact recompute before the next step (no drift): an evaluation of this step
                # saw the state before it, however the steps were split into calls.
                ct = self._write_c(st, np.empty(st["ZT"].shape)).T  # C^T in float64
                before = st["ZT"] > 0
                st["ZT"][...] = (np.asarray(Z0[r], np.float64) + st["K64"] @ ct).T
                # An entry whose sign the exact Z changes keeps its count: S is continuous.
                st["SX"] += ((before.astype(np.int32) - (st["ZT"] > 0)) * st["steps"]).astype(np.int32)
                self._refresh_d(st)
                st["refreshed"] = st["steps"]
            # Chunks end at the exact refreshes, so the numbers do not depend on the chunking.
            k = min(steps - done, refresh - st["steps"] % refresh)
            k, changes, got = self._steps(st, K[r], a[r], y[r], k,
                                          [mk - done for mk in marks if done < mk <= done + k],
                                          wanted)
            evs += got
            done += k
            self.counts[r, 2] += changes
            if changes > limit * k:  # dense steps are cheaper now
                self.sync(r, Z, Ct)
                self.runs[r], self.flips[r] = None, changes // k
                break
        self.counts[r, 1] += done
        return done, evs

    def _steps(self, st, K, a, y, k, marks=(), wanted=None):
        """Up to k incremental steps, the regime holding before each; returns (steps taken,
        pattern changes, the evaluations (f, ft, P) after the steps in ``marks`` taken)."""
        keys = ("ZT", "DT", "SX", "DtT", "UT")  # what the kernel changes
        n, nt = st["ZT"].shape[1], st["nt"]
        m, e = st["UT"].shape

        def take(k, every):
            # Rows of F: every step's outputs (for the regime checks), or those of the
            # evaluated steps and the last; rows of FT and PT: the evaluated steps'.
            marked = [mk - 1 for mk in marks if mk <= k]
            at = np.full(k, -1)
            at[marked] = np.arange(len(marked))
            rows = np.arange(k) if every else at.copy()
            rows[k - 1] = k - 1 if every else len(marked) - (at[k - 1] >= 0)
            F = np.empty((int(rows.max()) + 1, n))
            FT, PT = np.empty((len(marked), nt)), np.empty((len(marked), m, e - nt))
            changes = self.kernels.linear_steps(
                K, st["ZT"], st["DT"], st["SX"], st["c"], a, F, rows, self.leak, st["steps"],
                k, st["KtT"], st["DtT"], st["UT"], at, FT, PT)
            evs = [(F[rows[s]].copy(), FT[q] if wanted[0] else None, PT[q] if wanted[1] else None)
                   for q, s in enumerate(marked)]
            return F, rows, changes, evs

        if k == 1 or self._cannot_thaw(st, y, k - 1):  # (the paper's right panel: always)
            F, rows, changes, evs = take(k, every=False)
        else:
            saved = [st[key].copy() for key in keys]
            F, rows, changes, evs = take(k, every=True)
            # The kernel took all k steps; step s + 2 was allowed only if the outputs after
            # step s + 1 (F[s]) left every weight frozen. If not, go back and take s + 1 steps.
            bad = self.kernels.first_thawed(F[:-1], y, self.g0, self.single, self.loss)
            if bad >= 0:
                for key, old in zip(keys, saved):
                    st[key][...] = old
                k = bad + 1
                F, rows, changes, evs = take(k, every=True)
        st["f"] = F[rows[k - 1]]
        st["steps"] += k
        return k, changes, evs

    # ------------------------------------------------------------ near-linear regime
    def _near_state(self, r, K, ZT, CT, y, a, lr):
        """Run r's near-linear state (:func:`fastgrok.kernels.gram_linear.near_linear_steps`)
        from its float64 Z^T and C, both (m, n): the reference weights are those of this Z."""
        n = ZT.shape[1]
        ZT = np.ascontiguousarray(ZT, np.float64)
        f = self._outputs_t(ZT, a)
        g = np.empty(n)
        self.kernels.weights32(f, y, self.loss, g)
        K64 = np.asarray(K, np.float64)
        ns = {"ZT": ZT, "C0T": np.array(CT, np.float64, order="C"), "MT": (ZT > 0).view(np.uint8),
              "SX": np.zeros(ZT.shape, np.int32), "GT": np.zeros(ZT.shape), "GD": np.zeros(n),
              "DL": np.zeros(n), "g": g, "gref": g.copy(), "c": (lr / n) * g * y,
              "lr": lr, "lr_n": lr / n, "y": y, "a": a, "steps": 0, "AK": np.abs(K64), "K64": K64}
        _, ns["DT"] = self._increments(K64, ns["c"], a, ZT)
        return ns

    def _near_exact(self, ns):
        """(Z^T, C) of a near-linear state, (m, n) float64: Z = Zl + K E, C with E (kept
        until the next step: an evaluation asks for both)."""
        if ns.get("exact", (None,))[0] == ns["steps"]:
            return ns["exact"][1:]
        rise = 1.0 - self.leak
        M = ns["MT"].view(np.bool_)
        ET = (ns["lr_n"] * ns["y"])[None, :] * ns["a"][:, None] * (
            self.leak * ns["GD"][None, :] + rise * (ns["GT"] + M * ns["GD"][None, :]))
        ZT = ns["ZT"] + (ns["K64"] @ ET.T).T
        t = ns["steps"]
        CT = ns["C0T"] + (ns["c"][None, :] * ns["a"][:, None]) * (
            self.leak * t + rise * (ns["SX"] + M * t)) + ET
        ns["exact"] = (t, ZT, CT)
        return ZT, CT

    def _near(self, r, K, Z, Ct, steps, limit) -> int:
        """Up to ``steps`` near-linear steps of run r; returns how many were taken. A stretch
        ends at an exact refresh or when its bound gets loose (too many entries or outputs
        decided exactly): the state is rebased on its exact Z and C, or, when the stretch was
        short, the run takes dense steps for good."""
        ns = self.near[r]
        m = ns["ZT"].shape[0]
        refresh = tunables.GRAM_LINEAR_REFRESH
        k = min(steps, refresh - ns["steps"] % refresh)
        taken, changes = self.kernels.near_linear_steps(
            K[r], ns["AK"], ns["ZT"], ns["DT"], ns["MT"], ns["SX"], ns["GT"], ns["GD"],
            ns["DL"], ns["g"], ns["gref"], ns["c"], ns["y"], ns["a"], ns["lr_n"], self.leak,
            self.loss, ns["steps"], k, int(limit), max(1, int(limit) // m),
            tunables.GRAM_NEAR_BOUND_SCALE)
        ns["steps"] += taken
        self.counts[r, 2] += changes
        self.counts[r, 3] += taken
        if taken < k or ns["steps"] % refresh == 0:  # rebase on the exact state
            ZT, CT = self._near_exact(ns)
            if taken < k and ns["steps"] < tunables.GRAM_NEAR_MIN_STEPS:
                self.near[r], self.near_off[r] = None, True  # too short to pay: dense
                Z[r], Ct[r] = ZT.T, CT.T
            else:
                self.near[r] = self._near_state(r, K[r], ZT, CT, ns["y"], ns["a"], ns["lr"])
        return taken

    def sync(self, r, Z, Ct, with_z=True):
        """Write run r's incremental state into the engine's Ct and (``with_z``) Z, in the
        working dtype."""
        if self.near[r] is not None:
            ZT, CT = self._near_exact(self.near[r])
            Ct[r] = CT.T
            if with_z:
                Z[r] = ZT.T
        elif self.runs[r] is not None:
            self._sync_state(self.runs[r], r, Z, Ct, with_z)

    def _sync_state(self, st, r, Z, Ct, with_z=True):
        Ct[r] = self._write_c(st, st["C"]).T
        if with_z:
            Z[r] = st["ZT"].T

    def coefficients(self, r):
        """Run r's C^T (n, m) in the working dtype for an evaluation (a transposed view of a
        buffer of the run's state), or None when the run is not in the regime (then the
        engine's Ct is current)."""
        if self.near[r] is not None:
            return self._near_exact(self.near[r])[1].T.astype(self.dtype)
        st = self.runs[r]
        return None if st is None else self._write_c(st, st["C"]).T

    def outputs(self, r):
        """Run r's outputs phi(Z) a after its last step, from the float64 state (None when the
        run is not in the regime: then they come from the engine's Z)."""
        if self.near[r] is not None:
            return self._outputs_t(self._near_exact(self.near[r])[0], self.near[r]["a"])
        st = self.runs[r]
        return None if st is None else st["f"].copy()

    def covers(self, r, test, means):
        """Whether run r is in the regime with tracked rows for what an evaluation asks: the
        test outputs (``test``) and the projections (``means``)."""
        st = self.runs[r]
        if st is None or not st["KtT"].shape[1]:
            return False
        e, nt = st["UT"].shape[1], st["nt"]
        return (nt > 0 or not test) and (e > nt or not means)

    def tracked(self, r):
        """(ft, P) of run r from its tracked rows (:meth:`covers`): the test outputs (nt,)
        and the projections W mu (m, 2), float64, each None where not tracked."""
        st = self.runs[r]
        m, e = st["UT"].shape
        nt = st["nt"]
        ft, P = np.empty(nt), np.empty((m, e - nt))
        self.kernels.tracked_outputs(st["UT"], st["a"], self.leak, ft, P)
        return (ft if nt else None), (P if e > nt else None)


def block_operands(X, Xt, W0, M):
    """(A, B) = ([X; Xt], [X; W0; M]) of one column block (zero rows for missing means)."""
    A = X if Xt is None else np.concatenate([X, Xt])
    B = np.concatenate([X, W0, M if M is not None else np.zeros((2, X.shape[1]), X.dtype)])
    return A, B


def _stack_parts(parts):
    """[(f, ft, P), ...] per run -> (f, ft, P) stacked over runs (None stays None)."""
    return tuple(None if parts[0][i] is None else np.stack([p[i] for p in parts]) for i in range(3))


_OPS = {"numpy": NumpyOps, "numba": NumbaOps}
_cache = {}


def get_ops(backend: str):
    """The (cached) operations object of ``backend`` ("numpy", "numba" or "cupy")."""
    if backend not in _cache:
        if backend == "cupy":
            from .ops_cupy import cupy_ops

            return cupy_ops()
        if backend not in _OPS:
            raise ValueError(f"unknown backend {backend!r}; expected one of 'numpy', 'numba', 'cupy'")
        _cache[backend] = _OPS[backend]()
    return _cache[backend]


def runtime(backend: str, n_threads=None):
    """Context manager around a training with ``backend``; yields the thread count.

    numba: fastgrok's thread pool with single-threaded BLAS (restored on exit); numpy and cupy:
    nothing to set up (NumPy picks its own threads; the GPU needs none).
    """
    if backend == "numba":
        from ..kernels.threads import threads

        return threads(n_threads)
    return contextlib.nullcontext(n_threads)
