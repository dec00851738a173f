"""The gram method's linear and near-linear regimes on the CPU (docs/design.md 2.4 and 2.5).

A Numba-only optimisation of the gram engine's steps: while every loss weight of a run equals
-l'(0), a step changes Z only through the pattern changes, so a run takes incremental steps
(:func:`fastgrok.kernels.gram_linear.linear_steps`) instead of dense ones; float32 runs whose
weights have moved keep stepping incrementally against reference weights with the moves
bounded (:func:`fastgrok.kernels.gram_linear.near_linear_steps`). The engine reaches this module
only through the CPU operations (:class:`fastgrok.engines.ops_numba.NumbaOps`), which hold a
:class:`LinearRegime` as the gram engine's backend state.

Shapes: n training samples, m neurons, e tracked rows (n_test test points, then the two means).
Arrays named ``...T`` are transposed, (m, n) or (m, e), so that a neuron's row is contiguous.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import tunables
from ..kernels.memory import copy_aligned, empty_aligned, zeros_aligned
from ..reference import interpolates

#: The regime's counters, in the columns of :attr:`LinearRegime.counts`: run-steps taken,
#: run-steps taken incrementally in the linear regime, pattern changes in incremental steps,
#: run-steps taken in the near-linear regime.
COUNTERS = ("run_steps", "linear_run_steps", "pattern_changes", "near_linear_run_steps")
RUN_STEPS, LINEAR_STEPS, PATTERN_CHANGES, NEAR_STEPS = range(len(COUNTERS))

#: The frozen margins (:meth:`LinearRegime._frozen_margins`) per (loss, single, g0): a fixed
#: property of the loss and the precision, found once by bisection.
_MARGINS: dict = {}


def _off_diagonal_max(K64):
    """max_{q != i} |K_iq| for each row i (n,)."""
    A = np.abs(K64)
    np.fill_diagonal(A, 0.0)
    return A.max(axis=1) if len(A) else np.zeros(0)


@dataclass(eq=False)
class LinearState:
    """One run's state in the linear regime (every loss weight is g0 = -l'(0)).

    With c = (lr / n) g0 y fixed, C(t) = C0 + (a c) (leak t + (1 - leak) S) where S counts the
    incremental steps each entry (i, j) was active. Float64 unless said otherwise.
    """

    c: np.ndarray      #: (n,) the fixed coefficients (lr / n) g0 y
    a: np.ndarray      #: (m,) second layer
    f: np.ndarray      #: (n,) outputs phi(Z) a after the last step
    K64: np.ndarray    #: (n, n) the Gram matrix K
    Ct0T: np.ndarray   #: (m, n) C at entry
    C: np.ndarray      #: (m, n) working dtype: C written for evaluations and syncs
    ZT: np.ndarray     #: (m, n) pre-activations Z^T
    SX: np.ndarray     #: (m, n) int32: S - steps * 1[ZT > 0], changing only with the pattern
    reach: np.ndarray  #: (n,) ||a||^2 |K| |c|: how far an output can move in one step
    kmax: np.ndarray   #: (n,) max_{q != i} |K_iq|, for the blocks' check
    spread: np.ndarray  #: (m,) the blocks' hints: each row's last margin (negative: none yet)
    moved: np.ndarray  #: (m, n) uint8: the entries that changed in their row's last block
    slope: np.ndarray  #: (m, n) float32: each entry's pace in its row's last block
    nt: int            #: test rows among the tracked rows (0 without them)
    KtT: np.ndarray    #: (n, e) working dtype: Kt and X mu, the tracked rows' products with X
    BT: np.ndarray     #: (m, e) the tracked pre-activations at entry
    DtT: np.ndarray    #: (m, e) their increment per step
    UT: np.ndarray     #: (m, e) their current values
    DT: np.ndarray | None = None  #: (m, n) the increment of Z^T per step, (K V)^T
    steps: int = 0     #: incremental steps taken since entry
    refreshed: int = 0  #: the step of the last exact refresh

    #: What the kernel changes as it steps (saved and restored when steps are taken back).
    STEPPED = ("ZT", "DT", "SX", "DtT", "UT")

    @staticmethod
    def nbytes(n, m, n_test, dtype) -> int:
        """Bytes of one run's state.

        Float64 K, Z, D and C at entry, the int32 counts and C in the working dtype, the blocks'
        hints (a byte and a float32 per entry); with tracked rows, their products in the working
        dtype and three (m, n_test + 2) float64 arrays.
        """
        item = np.dtype(dtype).itemsize
        rows = n_test + 2
        return (8 * n * n + (3 * 8 + 4 + item + 1 + 4) * n * m + 8 * (5 * n + 3 * m)
                + (item * n + 8 * 3 * m) * rows)


@dataclass(eq=False)
class NearLinearState:
    """One run's state in the near-linear regime.

    The weights' moves since the reference weights gref are bounded, and only what the bound cannot
    decide is computed exactly (docs/design.md 2.5). Float64 unless said otherwise.
    """

    ZT: np.ndarray    #: (m, n) reference pre-activations Zl^T
    C0T: np.ndarray   #: (m, n) C at the rebase
    MT: np.ndarray    #: (m, n) uint8: the reference pattern 1[ZT > 0]
    SX: np.ndarray    #: (m, n) int32: pattern-change counts, as in :class:`LinearState`
    GT: np.ndarray    #: (m, n) weighted counts of the weights' moves
    GD: np.ndarray    #: (n,) summed moves g - gref
    DL: np.ndarray    #: (n,) the last step's moves
    g: np.ndarray     #: (n,) current loss weights
    gref: np.ndarray  #: (n,) reference loss weights
    c: np.ndarray     #: (n,) (lr / n) gref y
    lr: float         #: step size
    lr_n: float       #: lr / n
    y: np.ndarray     #: (n,) labels
    a: np.ndarray     #: (m,) second layer
    AK: np.ndarray    #: (n, n) |K|, for the bound
    K64: np.ndarray   #: (n, n) K
    DT: np.ndarray    #: (m, n) the reference increment (K V)^T
    steps: int = 0    #: steps since the rebase
    exact: tuple | None = None  #: (steps, Z^T, C) computed exactly at that step, kept for reuse

    @staticmethod
    def nbytes(n, m) -> int:
        """Bytes of one run's state.

        Float64 K and |K|, Z, D, the weighted counts, C at the rebase and the exact Z and C of the
        last evaluation, the counts and the pattern.
        """
        return 16 * n * n + (6 * 8 + 4 + 1) * n * m + 8 * 5 * n


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
        from ..kernels import gram_linear  # its kernels compile (or load) on first use

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
        self.counts = np.zeros((R, len(COUNTERS)), np.int64)
        self.margins = self._frozen_margins()
        self.rows = None  # the tracked evaluation rows (:meth:`track`)
        self.track_until = None  # a run's step from which it drops them; None: never
        self.retired = np.zeros(len(COUNTERS), np.int64)  # counters of runs that left (select)

    def __getstate__(self) -> dict:
        """The state for a checkpoint (the kernels' module is imported again on load)."""
        return {k: v for k, v in self.__dict__.items() if k != "kernels"}

    def __setstate__(self, state) -> None:
        """A checkpointed state, with the kernels' module attached."""
        from ..kernels import gram_linear

        self.__dict__.update(state, kernels=gram_linear)
        self.__dict__.setdefault("track_until", None)  # (a checkpoint from before it)
        for st in self.runs:
            if st is not None and not hasattr(st, "kmax"):  # a checkpoint from before the blocks
                st.kmax, st.spread = _off_diagonal_max(st.K64), np.full(len(st.a), -1.0)
                st.moved = np.zeros(st.ZT.shape, np.uint8)
                st.slope = np.zeros(st.ZT.shape, np.float32)

    def track(self, Kt, Zt0, XM, W0M, test, means, until=None):
        """Keep the test outputs and the projections of the runs in the regime up to date.

        The test outputs (``test``) and the projections on the means (``means``) of every run
        in the regime follow its pattern changes, so that an evaluation is a pass over
        (m, n_test + 2) numbers instead of the product Kt C^T and the write of C.
        Worth it when evaluations are frequent: it adds O(n_test) to every pattern change.
        Called before the runs enter the regime (runs already in it keep their evaluations).
        ``until``: a run's step from which they are no longer kept (its evaluations from then
        on come from C, and its calls may take blocks); None: for good.
        """
        if test or means:
            self.rows = (Kt if test else None, Zt0 if test else None,
                         XM if means else None, W0M if means else None)
            self.track_until = until

    def _tracked_span(self, r, done, most):
        """How many of run r's next ``most`` steps keep tracked rows (0: none).

        ``done``: the steps run r has taken in the current call.
        """
        if self.rows is None:
            return 0
        if self.track_until is None:
            return most
        return max(0, min(most, self.track_until - int(self.counts[r, RUN_STEPS]) - done))

    def _untrack(self, st):
        """Drop a state's tracked rows: its evaluations from C from now on."""
        n, m = st.ZT.shape[1], st.ZT.shape[0]
        st.nt, st.KtT = 0, np.empty((n, 0), self.dtype)
        st.BT, st.DtT, st.UT = np.empty((m, 0)), np.empty((m, 0)), np.empty((m, 0))

    def select(self, keep, rows):
        """Keep the runs at positions ``keep`` (their counters stay counted).

        ``rows`` are the engine's (Kt, Zt0, XM, W0M) of the kept runs, for the tracked rows.
        """
        self.retired += self.counts.sum(axis=0) - self.counts[keep].sum(axis=0)
        for name in ("runs", "left", "flips", "near", "near_off"):
            setattr(self, name, [getattr(self, name)[i] for i in keep])
        self.counts = self.counts[keep]
        if self.rows is not None:
            self.rows = tuple(None if old is None else new
                              for old, new in zip(self.rows, rows, strict=True))

    def all_linear(self) -> bool:
        """Whether every run is in the linear regime now."""
        return all(st is not None for st in self.runs)

    def steps_to_refresh(self, most: int) -> int:
        """Steps until the next exact refresh of most runs in the regime, at most ``most``.

        (Runs entered at different steps refresh at different steps: the most common phase.)
        """
        period = tunables.GRAM_LINEAR_REFRESH
        phases = [st.steps % period for st in self.runs if st is not None]
        if not phases:
            return most
        return int(min(most, period - np.argmax(np.bincount(phases))))

    def counters(self) -> dict:
        """What the regime did, summed over runs (see :data:`COUNTERS`)."""
        total = self.counts.sum(axis=0) + self.retired
        return {name: int(total[i]) for i, name in enumerate(COUNTERS)}

    @staticmethod
    def describe(counters: dict) -> dict:
        """The ``Result.info`` entries of counters summed over batches.

        The fractions of run-steps taken in the linear and near-linear regimes, and the pattern
        changes per incremental step (nothing when no run-step was counted).
        """
        if not counters.get("run_steps"):
            return {}
        total = counters["run_steps"]
        incremental = counters["linear_run_steps"] + counters["near_linear_run_steps"]
        return {"linear_fraction": round(counters["linear_run_steps"] / total, 6),
                "near_linear_fraction": round(counters["near_linear_run_steps"] / total, 6),
                "pattern_changes_per_step": round(counters["pattern_changes"]
                                                  / max(incremental, 1), 1)}

    @staticmethod
    def state_bytes(n, m, n_test, dtype) -> int:
        """Bytes of one run's regime state.

        The larger of :class:`LinearState` and :class:`NearLinearState`.
        """
        return max(LinearState.nbytes(n, m, n_test, dtype), NearLinearState.nbytes(n, m))

    def advance(self, r, K, Z0, Z, Ct, y, a, lr, steps, model, marks=(), evaluate=None,
                wanted=(True, True), until=False):
        """Run r's next ``steps`` steps: incremental while it is in the regime, else dense.

        ``marks`` (increasing, in 1..steps): the steps of this call after which the run is
        evaluated; returns the evaluations (f, ft, P) in order. In the regime with tracked
        rows they are recorded by the kernel as it steps (``wanted``: whether ft and P are
        asked for), so that all the steps between two exact refreshes take one kernel call;
        elsewhere the steps stop at each mark and ``evaluate()`` gives the evaluation.

        With ``until`` (and no marks) the run stops after the first step at which it classifies
        every training label correctly: returns that step (1..steps), or 0 if it did not. In
        the regime the kernel takes many steps in one call, recording every step's outputs,
        and the steps past the first interpolation are taken back.
        """
        from ..kernels.gram_cpu import step_run

        entries = Z.shape[1] * Z.shape[2]
        limit = tunables.GRAM_LINEAR_MAX_CHANGES * entries
        near_limit = tunables.GRAM_NEAR_MAX_CHANGES * entries
        done, marks, out = 0, list(marks), []
        while done < steps:
            stop = next((mk for mk in marks if mk > done), steps)  # the next mark
            cheap = self.flips[r] is not None and self.flips[r] <= limit / 2
            span = self._tracked_span(r, done, steps - done)
            if self.runs[r] is None and not self.left[r] and cheap:
                self.runs[r] = self._enter(r, K, Z, Ct, y, a, lr, span > 0)
            st = self.runs[r]
            if st is not None and st.KtT.shape[1] and not span:
                self._untrack(st)  # past the schedule's dense start: evaluated from C
            if st is not None:
                if span and self.covers(r, *wanted):
                    # Its tracked rows give the evaluations: the marks up to the end (or to
                    # where it stops tracking them), recorded by the kernel.
                    k, evs = self._incremental(r, K, Z0, Z, Ct, y, a, lr, span, limit,
                                               [mk - done for mk in marks
                                                if done < mk <= done + span], wanted, until)
                    out += evs
                else:
                    k = self._incremental(r, K, Z0, Z, Ct, y, a, lr, stop - done, limit,
                                          until=until)[0]
            else:
                if self.near[r] is None and self.left[r] and not self.near_off[r] \
                        and self.flips[r] is not None and self.flips[r] <= near_limit / 2:
                    self.near[r] = self._near_state(r, K[r], np.asarray(Z[r], np.float64).T,
                                                    np.asarray(Ct[r], np.float64).T, y[r], a[r],
                                                    lr)
                if self.near[r] is not None:  # (one step at a time until interpolation)
                    k = self._near(r, K, Z, Ct, 1 if until else stop - done, near_limit)
                else:
                    before = None if self.left[r] and self.near_off[r] else Z[r] > 0
                    step_run(K[r], Z0[r], Z[r], Ct[r], y[r], a[r], lr, model.slope,
                             model.loss_code)
                    if before is not None:  # a candidate: how much of its pattern changed?
                        self.flips[r] = int(np.count_nonzero(before != (Z[r] > 0)))
                    k = 1
            done += k
            if until and interpolates(y[r], self._current_outputs(r, Z, a)):
                self.counts[r, RUN_STEPS] += done
                return done
            if done in marks[len(out):len(out) + 1]:  # a mark reached outside the kernel
                out.append(evaluate())
        self.counts[r, RUN_STEPS] += done
        return 0 if until else out

    def _current_outputs(self, r, Z, a):
        """Run r's outputs now, from its regime state or from the engine's Z."""
        f = self.outputs(r)
        if f is None:
            from ..kernels.numba_fused import outputs

            f = outputs(Z[r], a[r], self.leak)
        return f

    def _enter(self, r, K, Z, Ct, y, a, lr, tracked):
        from ..kernels.numba_fused import outputs

        f = outputs(Z[r], a[r], self.leak)
        if not self._frozen(f, y[r]):
            self.left[r] = True  # the weights only move further off g0 from here
            return None
        n = Z.shape[1]
        c = (lr / n) * self.g0 * y[r]
        K64 = np.asarray(K[r], np.float64)
        ZT = copy_aligned(Z[r].T, np.float64)
        m = ZT.shape[0]
        st = LinearState(
            c=c, a=a[r], f=f, K64=K64, Ct0T=copy_aligned(Ct[r].T, np.float64),
            C=empty_aligned(Ct.shape[:0:-1], self.dtype), ZT=ZT,
            SX=zeros_aligned(ZT.shape, np.int32),
            reach=np.dot(a[r], a[r]) * (np.abs(K64) @ np.abs(c)), nt=0,
            kmax=_off_diagonal_max(K64), spread=np.full(m, -1.0),
            moved=zeros_aligned(ZT.shape, np.uint8), slope=zeros_aligned(ZT.shape, np.float32),
            KtT=np.empty((n, 0), self.dtype), BT=np.empty((m, 0)), DtT=np.empty((m, 0)),
            UT=np.empty((m, 0)))
        if tracked:
            Kt, Zt0, XM, W0M = self.rows
            st.nt = nt = 0 if Kt is None else Kt.shape[1]
            # E: the tracked rows' products with X, (rows, n): Kt and X mu in the working
            # dtype, exactly the engine's numbers in half the cache.
            E = np.empty((nt + (0 if XM is None else XM.shape[2]), n), self.dtype)
            if nt:
                E[:nt] = Kt[r]
            if XM is not None:
                E[nt:] = XM[r].T
            st.KtT = np.ascontiguousarray(E.T)
            # B = E0 + E C with E0 = [Zt0; W0 mu] in float64: the sum formed in place in the
            # product (the same additions; no big temporaries, each of which can cost the
            # process fresh pages).
            B = np.matmul(E.astype(np.float64), copy_aligned(Ct[r], np.float64),
                          out=empty_aligned((len(E), m), np.float64))
            if nt:
                B[:nt] += Zt0[r]
            if XM is not None:
                B[nt:] += W0M[r].T
            st.BT = copy_aligned(B.T, np.float64)
            st.UT = copy_aligned(st.BT, np.float64)
        self._refresh_d(st)
        return st

    def _frozen(self, f, y):
        return self.kernels.frozen(f, y, self.g0, self.single, self.loss)

    def _frozen_margins(self):
        """(lo, hi), halved; computed once per (loss, precision) and kept.

        The weight of a margin y f in [2 lo, 2 hi] is g0 (the edges found by bisection over the
        float64 bit patterns with the regime's own check; halved so that rounding-level wiggles of
        the loss function near the edges cannot matter).
        """
        key = (self.loss, self.single, self.g0)
        if key in _MARGINS:
            return _MARGINS[key]

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

        _MARGINS[key] = edge(-1.0) / 2, edge(1.0) / 2
        return _MARGINS[key]

    def _cannot_thaw(self, st, y, k):
        """True when no weight can move off g0 within the next k steps.

        |D_ij| <= |a_j| R_i with R_i = sum_k |K_ik c_k| (phi' <= 1), so an output moves by at most
        ||a||^2 R_i per step, and every margin stays inside the frozen interval.
        """
        z, reach = y * st.f, k * st.reach
        lo, hi = self.margins
        return bool(np.all(z - reach >= lo) and np.all(z + reach <= hi))

    def _refresh_d(self, st):
        """D^T = (K (c * phi'(Z)))^T, exactly (one product), with the pattern 1[ZT > 0].

        And the tracked rows' DtT and, after the entry, their pre-activations UT from the pattern
        and SX: with C(t) = C0 + (a c) (leak t + (1 - leak) S) and S = SX + M t, a row u = Kt C^T is
        u0 + t Kt (c a * (leak + (1 - leak) M)) + (1 - leak) Kt (c a * SX), u0 = BT at entry.
        """
        VT, st.DT = self._increments(st.K64, st.c, st.a, st.ZT)
        if st.KtT.shape[1]:
            # V (n, m) in memory, as this product has always taken it: BLAS rounds some shapes
            # differently with the operand laid out the other way round.
            V = copy_aligned(VT.T, np.float64)
            st.DtT = np.matmul(V.T, st.KtT, out=empty_aligned((len(VT), st.KtT.shape[1]),
                                                              np.float64))
            if st.steps:  # at entry U = BT (and SX = 0): no product of zeros
                ca = st.c[:, None] * st.a[None, :]
                QT = (1.0 - self.leak) * ((ca * st.SX.T).T @ st.KtT)
                st.UT = st.BT + st.steps * st.DtT + QT

    def _increments(self, K64, c, a, ZT):
        """(V^T, D^T), both (m, n).

        The coefficients V = c a phi'(Z) of the pattern 1[ZT > 0] and D = K V, exactly (one
        product, formed transposed: V^T K^T).
        """
        VT = empty_aligned(ZT.shape, np.float64)
        self.kernels.coefficients_t(ZT, c, a, self.leak, VT)
        return VT, np.matmul(VT, K64.T, out=empty_aligned(ZT.shape, np.float64))

    def _outputs_t(self, ZT, a):
        """phi(Z) a from Z^T (m, n), float64."""
        return (np.maximum(ZT, self.leak * ZT) * a[:, None]).sum(axis=0)

    def _write_c(self, st, C):
        """Write C = C0 + (a c) (leak steps + (1 - leak) S) into C, (m, n) in C's dtype.

        An entry active for S of the run's incremental steps summed
        phi' = leak steps + (1 - leak) S.
        """
        self.kernels.write_c(st.ZT, st.SX, st.Ct0T, st.c, st.a, self.leak,
                             st.steps, C)
        return C

    def _incremental(self, r, K, Z0, Z, Ct, y, a, lr, steps, limit, marks=(), wanted=None,
                     until=False):
        """Up to ``steps`` incremental steps of run r.

        Returns how many were taken, and the evaluations the kernel recorded after the steps in
        ``marks`` (in 1..steps) that were taken (with tracked rows only; ``wanted``: whether ft and
        P are asked for). With ``until``, no step past the first at which every training label
        is classified correctly.
        """
        st = self.runs[r]
        done, evs = 0, []
        refresh = tunables.GRAM_LINEAR_REFRESH
        while done < steps:
            if not self._frozen(st.f, y[r]):
                self.runs[r], self.left[r] = None, True
                if self.near_off[r]:
                    self._sync_state(st, r, Z, Ct)  # the dense steps continue from here
                else:  # the near-linear regime continues from the float64 state
                    C = self._write_c(st, np.empty(st.ZT.shape))
                    self.near[r] = self._near_state(r, K[r], st.ZT, C, y[r], a[r], lr)
                break
            if st.steps % refresh == 0 and st.steps != st.refreshed:
                # Exact recompute before the next step (no drift): an evaluation of this step
                # saw the state before it, however the steps were split into calls.
                ct = self._write_c(st, np.empty(st.ZT.shape)).T  # C^T in float64
                before = st.ZT > 0
                st.ZT[...] = (np.asarray(Z0[r], np.float64) + st.K64 @ ct).T
                # An entry whose sign the exact Z changes keeps its count: S is continuous.
                st.SX += ((before.astype(np.int32) - (st.ZT > 0)) * st.steps).astype(np.int32)
                self._refresh_d(st)
                st.refreshed = st.steps
            # Chunks end at the exact refreshes, so a refresh sees the same state however the
            # steps were split into calls (blocks aside, which differ at float64 rounding).
            k = min(steps - done, refresh - st.steps % refresh)
            k, changes, got = self._steps(st, K[r], a[r], y[r], k,
                                          [mk - done for mk in marks if done < mk <= done + k],
                                          wanted, until)
            evs += got
            done += k
            self.counts[r, PATTERN_CHANGES] += changes
            if until and interpolates(y[r], st.f):
                break
            if changes > limit * k:  # dense steps are cheaper now
                self.sync(r, Z, Ct)
                self.runs[r], self.flips[r] = None, changes // k
                break
        self.counts[r, LINEAR_STEPS] += done
        return done, evs

    def _steps(self, st, K, a, y, k, marks=(), wanted=None, until=False):
        """Up to k incremental steps, the regime holding before each.

        Returns (steps taken, pattern changes, the evaluations (f, ft, P) after the steps in
        ``marks`` taken). With ``until``, none past the first step whose outputs classify every
        training label correctly.
        """
        n, nt = st.ZT.shape[1], st.nt
        m, e = st.UT.shape

        def take(k, every):
            # Rows of F: every step's outputs (for the regime checks), or those of the
            # evaluated steps and the last; rows of FT and PT: the evaluated steps'.
            marked = [mk - 1 for mk in marks if mk <= k]
            if not every and not marked and not e and k >= tunables.GRAM_LINEAR_BLOCK_MIN \
                    and tunables.GRAM_LINEAR_BLOCK > 1:
                # Only the last step's outputs are read: blocks of steps (the right panel).
                F = np.empty((1, n))
                changes = self.kernels.linear_blocks(
                    K, st.ZT, st.DT, st.SX, st.c, a, F[0], self.leak, st.steps, k,
                    tunables.GRAM_LINEAR_BLOCK, st.kmax,
                    tunables.GRAM_LINEAR_BLOCK_WIDEN, st.spread, st.moved, st.slope,
                    np.zeros(3, np.int64))
                rows = np.full(k, -1)
                rows[k - 1] = 0
                return F, rows, changes, []
            at = np.full(k, -1)
            at[marked] = np.arange(len(marked))
            rows = np.arange(k) if every else at.copy()
            rows[k - 1] = k - 1 if every else len(marked) - (at[k - 1] >= 0)
            F = np.empty((int(rows.max()) + 1, n))
            FT, PT = np.empty((len(marked), nt)), np.empty((len(marked), m, e - nt))
            changes = self.kernels.linear_steps(
                K, st.ZT, st.DT, st.SX, st.c, a, F, rows, self.leak, st.steps,
                k, st.KtT, st.DtT, st.UT, at, FT, PT)
            evs = [(F[rows[s]].copy(), FT[q] if wanted[0] else None, PT[q] if wanted[1] else None)
                   for q, s in enumerate(marked)]
            return F, rows, changes, evs

        if k == 1 or (not until and self._cannot_thaw(st, y, k - 1)):
            F, rows, changes, evs = take(k, every=False)  # (the paper's right panel: always)
        else:
            saved = [getattr(st, key).copy() for key in LinearState.STEPPED]
            F, rows, changes, evs = take(k, every=True)
            # The kernel took all k steps; step s + 2 was allowed only if the outputs after
            # step s + 1 (F[s]) left every weight frozen. If not, go back and take s + 1 steps.
            bad = self.kernels.first_thawed(F[:-1], y, self.g0, self.single, self.loss)
            cut = bad + 1 if bad >= 0 else k
            if until:  # and none past the first step that interpolates
                hits = np.flatnonzero((y * F > 0).all(axis=1))
                cut = min(cut, int(hits[0]) + 1) if len(hits) else cut
            if cut < k:
                for key, old in zip(LinearState.STEPPED, saved, strict=True):
                    getattr(st, key)[...] = old
                k = cut
                F, rows, changes, evs = take(k, every=True)
        st.f = F[rows[k - 1]]
        st.steps += k
        return k, changes, evs

    # ------------------------------------------------------------ near-linear regime
    def _near_state(self, r, K, ZT, CT, y, a, lr):
        """Run r's near-linear state from its float64 Z^T and C, both (m, n).

        The reference weights are those of this Z
        (:func:`fastgrok.kernels.gram_linear.near_linear_steps`).
        """
        n = ZT.shape[1]
        ZT = np.ascontiguousarray(ZT, np.float64)
        f = self._outputs_t(ZT, a)
        g = np.empty(n)
        self.kernels.weights32(f, y, self.loss, g)
        K64 = np.asarray(K, np.float64)
        c = (lr / n) * g * y
        return NearLinearState(
            ZT=ZT, C0T=np.array(CT, np.float64, order="C"), MT=(ZT > 0).view(np.uint8),
            SX=np.zeros(ZT.shape, np.int32), GT=np.zeros(ZT.shape), GD=np.zeros(n),
            DL=np.zeros(n), g=g, gref=g.copy(), c=c, lr=lr, lr_n=lr / n, y=y, a=a,
            AK=np.abs(K64), K64=K64, DT=self._increments(K64, c, a, ZT)[1])

    def _near_exact(self, ns):
        """(Z^T, C) of a near-linear state, (m, n) float64.

        Z = Zl + K E, C with E (kept until the next step: an evaluation asks for both).
        """
        if ns.exact is not None and ns.exact[0] == ns.steps:
            return ns.exact[1:]
        rise = 1.0 - self.leak
        M = ns.MT.view(np.bool_)
        ET = (ns.lr_n * ns.y)[None, :] * ns.a[:, None] * (
            self.leak * ns.GD[None, :] + rise * (ns.GT + M * ns.GD[None, :]))
        ZT = ns.ZT + (ns.K64 @ ET.T).T
        t = ns.steps
        CT = ns.C0T + (ns.c[None, :] * ns.a[:, None]) * (
            self.leak * t + rise * (ns.SX + M * t)) + ET
        ns.exact = (t, ZT, CT)
        return ZT, CT

    def _near(self, r, K, Z, Ct, steps, limit) -> int:
        """Up to ``steps`` near-linear steps of run r; returns how many were taken.

        A stretch ends at an exact refresh or when its bound gets loose (too many entries or outputs
        decided exactly): the state is rebased on its exact Z and C, or, when the stretch was short,
        the run takes dense steps for good.
        """
        ns = self.near[r]
        m = ns.ZT.shape[0]
        refresh = tunables.GRAM_LINEAR_REFRESH
        k = min(steps, refresh - ns.steps % refresh)
        taken, changes = self.kernels.near_linear_steps(
            K[r], ns.AK, ns.ZT, ns.DT, ns.MT, ns.SX, ns.GT, ns.GD,
            ns.DL, ns.g, ns.gref, ns.c, ns.y, ns.a, ns.lr_n, self.leak,
            self.loss, ns.steps, k, int(limit), max(1, int(limit) // m),
            tunables.GRAM_NEAR_BOUND_SCALE)
        ns.steps += taken
        self.counts[r, PATTERN_CHANGES] += changes
        self.counts[r, NEAR_STEPS] += taken
        if taken < k or ns.steps % refresh == 0:  # rebase on the exact state
            ZT, CT = self._near_exact(ns)
            if taken < k and ns.steps < tunables.GRAM_NEAR_MIN_STEPS:
                self.near[r], self.near_off[r] = None, True  # too short to pay: dense
                Z[r], Ct[r] = ZT.T, CT.T
            else:
                self.near[r] = self._near_state(r, K[r], ZT, CT, ns.y, ns.a, ns.lr)
        return taken

    def sync(self, r, Z, Ct, with_z=True):
        """Write run r's state into the engine's Ct and (``with_z``) Z, in the working dtype."""
        if self.near[r] is not None:
            ZT, CT = self._near_exact(self.near[r])
            Ct[r] = CT.T
            if with_z:
                Z[r] = ZT.T
        elif self.runs[r] is not None:
            self._sync_state(self.runs[r], r, Z, Ct, with_z)

    def _sync_state(self, st, r, Z, Ct, with_z=True):
        Ct[r] = self._write_c(st, st.C).T
        if with_z:
            Z[r] = st.ZT.T

    def coefficients(self, r):
        """Run r's C^T (n, m) in the working dtype for an evaluation.

        A transposed view of a buffer of the run's state, or None when the run is not in the
        regime (then the engine's Ct is current).
        """
        if self.near[r] is not None:
            return self._near_exact(self.near[r])[1].T.astype(self.dtype)
        st = self.runs[r]
        return None if st is None else self._write_c(st, st.C).T

    def outputs(self, r):
        """Run r's outputs phi(Z) a after its last step, from the float64 state.

        None when the run is not in the regime: then they come from the engine's Z.
        """
        if self.near[r] is not None:
            return self._outputs_t(self._near_exact(self.near[r])[0], self.near[r].a)
        st = self.runs[r]
        return None if st is None else st.f.copy()

    def covers(self, r, test, means):
        """Whether run r is in the regime with tracked rows for what an evaluation asks.

        The test outputs (``test``) and the projections (``means``).
        """
        st = self.runs[r]
        if st is None or not st.KtT.shape[1]:
            return False
        e, nt = st.UT.shape[1], st.nt
        return (nt > 0 or not test) and (e > nt or not means)

    def tracked(self, r):
        """(ft, P) of run r from its tracked rows (:meth:`covers`).

        The test outputs (nt,) and the projections W mu (m, 2), float64, each None where not
        tracked.
        """
        st = self.runs[r]
        m, e = st.UT.shape
        nt = st.nt
        ft, P = np.empty(nt), np.empty((m, e - nt))
        self.kernels.tracked_outputs(st.UT, st.a, self.leak, ft, P)
        return (ft if nt else None), (P if e > nt else None)


