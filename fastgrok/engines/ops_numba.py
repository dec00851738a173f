"""The CPU operations (backend "numba").

Fused Numba kernels and single-threaded BLAS on fastgrok's own thread pool
(:mod:`fastgrok.kernels.threads`).

Runs of a gram batch are independent and spread over the threads (one task per run); the
direct method's pass over p is split into a fixed number of chunks merged in order. The gram
engine's steps go through the linear regime (:mod:`fastgrok.engines.linear_regime`) when
``tunables.GRAM_LINEAR_REGIME`` is on.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import tunables
from ..reference import interpolates
from .linear_regime import LinearRegime
from .ops_base import Ops, stack_parts


class NumbaOps(Ops):
    """The CPU kernels: fused Numba kernels and single-threaded BLAS on fastgrok's thread pool."""

    name = "numba"

    @contextlib.contextmanager
    def runtime(self, n_threads=None):
        """Fastgrok's thread pool with single-threaded BLAS (restored on exit).

        And the training's big buffers reused (:func:`fastgrok.kernels.memory.reusing`).
        """
        from ..kernels.memory import reusing
        from ..kernels.threads import threads

        with reusing(), threads(n_threads) as nt:
            yield nt

    def block_products(self, X, Xt, W0, M, dtype):
        """The block's products with single-threaded BLAS into aligned buffers."""
        from ..kernels.gram_cpu import block_products

        return block_products(X, Xt, W0, M, dtype)

    # ------------------------------------------------------------------ gram method
    def gram_state(self, R, dtype, model):
        """The linear regime's state when ``tunables.GRAM_LINEAR_REGIME`` is on, else None.

        The flag is read when the engine is built.
        """
        # Weight decay rescales the W0 terms at every step and a trained second layer moves a,
        # which the regime's incremental steps do not follow, a smooth activation is not
        # piecewise linear, and the regime's frozen loss weights are those of labels +-1:
        # dense steps (docs/design.md 5).
        # Patches pool several rows into one output (the regime's frozen rows are samples).
        if not tunables.GRAM_LINEAR_REGIME or model.stepwise or model.smooth or model.regression \
                or model.pooled:
            return None
        return LinearRegime(R, dtype, model)

    @staticmethod
    def gram_state_bytes(n, m, n_test, dtype) -> int:
        """The linear regime's state per run when it is on (:meth:`LinearRegime.state_bytes`)."""
        if not tunables.GRAM_LINEAR_REGIME:
            return 0
        return LinearRegime.state_bytes(n, m, n_test, dtype)

    @staticmethod
    def describe_counters(counters: dict) -> dict:
        """The linear regime's ``Result.info`` entries (:meth:`LinearRegime.describe`)."""
        return LinearRegime.describe(counters)

    def gram_sync(self, state, Z, Ct, n_threads=None, with_z=True, runs=None):
        """Write the linear regime's state of ``runs`` into Ct (and Z), one task per run."""
        if state is not None:
            from ..kernels.threads import map_runs

            runs = list(range(len(state.runs))) if runs is None else list(runs)
            map_runs(lambda r: state.sync(r, Z, Ct, with_z), runs, n_threads)

    def _advance_run(self, r, K, Z0, Z, Ct, y, a, lr, model, state, steps):
        if state is not None:
            return state.advance(r, K, Z0, Z, Ct, y, a, lr, steps, model)
        from ..kernels.blas import gemm
        from ..kernels.gram_cpu import step_run

        for _ in range(steps):
            if model.smooth or model.pooled:  # their kernel, then Z = Z0 + K C^T as step_run
                self.coefficients(Z[r], y[r], a[r], lr, Ct[r], model, accumulate=True)
                np.copyto(Z[r], Z0[r])
                gemm(K[r], Ct[r], Z[r], beta=1.0)
            else:
                step_run(K[r], Z0[r], Z[r], Ct[r], y[r], a[r], lr, model.slope, model.loss_code)

    def gram_step(self, K, Z0, Z, Ct, y, a, lr, model, n_threads=None, state=None, steps=1):
        """Every run's steps in one task per run on the thread pool."""
        from ..kernels.threads import map_runs

        # All of a run's steps in one task: its state stays in cache between steps, and the
        # runs are independent, so the numbers are those of one step at a time.
        map_runs(lambda r: self._advance_run(r, K, Z0, Z, Ct, y, a, lr, model, state, steps),
                 list(range(Z.shape[0])), n_threads)

    def gram_until_interpolation(self, K, Z0, Z, Ct, y, a, lr, model, n_threads=None,
                                 state=None, steps=1):
        """Each run steps on its own until it interpolates (then stays), one task per run."""
        from ..kernels.threads import map_runs

        def one(r):
            if state is not None:  # the regime's own loop: many steps per kernel call
                return state.advance(r, K, Z0, Z, Ct, y, a, lr, steps, model, until=True)
            for t in range(1, steps + 1):
                self._advance_run(r, K, Z0, Z, Ct, y, a, lr, model, state, 1)
                f = self.outputs(Z[r], a[r], model)
                if interpolates(y[r], f):
                    return t
            return 0

        return steps, map_runs(one, list(range(Z.shape[0])), n_threads)

    def gram_segment(self, segment, step_args, eval_args, n_threads=None, state=None):
        """Every run's steps and evaluations in one task per run on the thread pool."""
        from ..kernels.threads import map_runs

        def one(r):
            # A run's steps and evaluations in one task: its state stays in cache throughout.
            def evaluate():
                return self.evaluate_run(r, **eval_args, state=state)

            if state is not None:  # in the linear regime, its steps between marks in one call
                marks = np.cumsum([k for k, _ in segment])[[ev for _, ev in segment]]
                return state.advance(r, *step_args[:-1], steps=sum(k for k, _ in segment),
                                     model=step_args[-1], marks=[int(mk) for mk in marks],
                                     evaluate=evaluate,
                                     wanted=(eval_args["test"], eval_args["means"]))
            out = []
            for k, ev in segment:
                self._advance_run(r, *step_args, state=state, steps=k)
                if ev:
                    out.append(evaluate())
            return out

        per_run = map_runs(one, list(range(step_args[2].shape[0])), n_threads)
        # Per evaluation, (f, ft, P) as lists over runs: the caller takes them run by run, so
        # stacking them (serial, on the calling thread) would only be undone.
        return [tuple(None if per_run[0][i][q] is None else [runs[i][q] for runs in per_run]
                      for q in range(3)) for i in range(len(per_run[0]))]

    def evaluate_run(self, r, Z, Kt, Ct, Zt0, XM, W0M, a, model, test, means, state=None):
        """Run r's (f, ft, P), from the linear regime's state while the run is in it."""
        # A run in the linear regime: its outputs from its own state, and the rest from its
        # tracked rows where it keeps them (no product), else from its C.
        f = state.outputs(r) if state is not None else None
        if f is None:
            return super().evaluate_run(r, Z, Kt, Ct, Zt0, XM, W0M, a, model, test, means)
        if state.covers(r, test, means):
            ft, P = state.tracked(r)
            return f, ft if test else None, P if means else None
        return self.evaluation(r, f, state.coefficients(r), Kt, Zt0, XM, W0M, a, model, test,
                               means)

    def gram_evaluate(self, Z, Kt, Ct, Zt0, XM, W0M, a, model, test=True, means=True,
                      n_threads=None, state=None):
        """Every run's (f, ft, P), one task per run on the thread pool."""
        from ..kernels.threads import map_runs

        # One task per run: outputs, test outputs and projections together.
        return stack_parts(map_runs(
            lambda r: self.evaluate_run(r, Z, Kt, Ct, Zt0, XM, W0M, a, model, test, means, state),
            list(range(len(Z))), n_threads))

    # ------------------------------------------------------------------ direct method
    def coefficients(self, Z, y, a, lr, V, model, accumulate=False):
        """The fused Numba kernel of f and V (the smooth activations': their own kernel)."""
        from ..kernels import numba_fused as k

        if model.pooled:
            return k.patch_outputs_and_coefficients(Z, y, a, float(lr), V, accumulate,
                                                    model.act_code, model.slope, model.act_param,
                                                    model.loss_code, model.patches)
        if model.smooth:
            return k.smooth_outputs_and_coefficients(Z, y, a, float(lr), V, accumulate,
                                                     model.act_code, model.slope,
                                                     model.act_param, model.loss_code)
        return k.outputs_and_coefficients(Z, y, a, float(lr), V, accumulate, model.slope,
                                          model.loss_code)

    def outputs(self, Z, a, model):
        """The Numba outputs kernel (the smooth activations': their own)."""
        from ..kernels import numba_fused as k

        if model.pooled:
            return k.patch_outputs(Z, a, model.act_code, model.slope, model.act_param,
                                   model.patches)
        if model.smooth:
            return k.smooth_outputs(Z, a, model.act_code, model.slope, model.act_param)
        return k.outputs(Z, a, model.slope)

    def direct_step(self, X, y, W, a, lr, model, n_threads=None):
        """The whole step in one compiled call (:func:`fastgrok.kernels.direct_cpu.native_step`).

        None for a smooth activation and for patches: the engine's passes around their kernel.
        """
        from ..kernels.direct_cpu import native_step

        if model.smooth or model.pooled:
            return None

        return native_step(X, y, W, a, lr, model.slope, model.loss_code, model.decay(lr),
                           **tile_options())

    def direct_pass(self, X, W, V=None, Xt=None, mus=None, forward=True, n_threads=None,
                    decay=1.0):
        """One tiled pass over p: the update and the products fused per column tile."""
        from ..kernels.direct_cpu import tile_pass

        if 1 not in (X.strides[0] // X.itemsize, X.strides[1] // X.itemsize):
            # BLAS takes column tiles of X with one unit stride; a view like X[:, ::2] has none.
            X = np.ascontiguousarray(X)
        return tile_pass(X, W, V=V, Xt=Xt, mus=mus, forward=forward, n_threads=n_threads,
                         decay=decay, **tile_options())


def tile_options() -> dict:
    """The direct pass's tiling parameters, from :mod:`fastgrok.tunables`.

    The keyword arguments of :func:`fastgrok.kernels.direct_cpu.tile_pass`.
    """
    return {"tile_bytes": tunables.DIRECT_TILE_BYTES, "tile_cols": tunables.DIRECT_TILE_COLS,
            "chunks": tunables.DIRECT_CHUNKS, "native": tunables.DIRECT_NATIVE_PASS}
