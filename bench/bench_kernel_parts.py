"""The step-by-step kernel's parts: one captured call replayed without each optional part.

    python bench/bench_kernel_parts.py [--preset paper-fig1-left] [--rounds 7] [--set m=1000 ...]

One run of the preset (one thread) with the first call of ``linear_steps`` captured (its
arguments copied before the call). The call is then replayed from copies, the variants
alternating, ``--rounds`` times:

- as the engine made it;
- without the tracked rows (no test rows or means: an empty ``KtT``), so without their
  updates, their recursion and the evaluations they record;
- without the outputs of every step (only the last step's, as the right panel takes them);
- without both.

The pattern, its changes, Z and D do not depend on the tracked rows or on the outputs (they
only read the state), so every variant makes the same changes (checked), and the differences
between the variants are the parts' costs. Alongside, a change's update alone: ``_add_rows``
(four rows of K per pass added into a float64 row) on rows drawn at random, K hot in L2, in
ns per change, for the width of K and for that of the tracked rows. Times in ns per row and
step, best and median of the rounds.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from numba import njit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_phases import kernels_wrapped, preset_overrides  # noqa: E402  (after the path above)
from fastgrok.kernels.gram_linear import _add_rows  # noqa: E402

#: linear_steps' arguments, by position
_F, _ROWS, _KTT, _DTT, _UT, _MARKS, _FT, _PT = 6, 7, 11, 12, 13, 14, 15, 16


def capture(cfg):
    """The arguments of the first ``linear_steps`` call of one run of ``cfg``, copied."""
    import fastgrok as fg

    got = []

    class Capturing:
        def __init__(self, module):
            self._module = module

        def __getattr__(self, name):
            fn = getattr(self._module, name)
            if name != "linear_steps":
                return fn

            def first(*args):
                if not got:
                    got.append([a.copy() if isinstance(a, np.ndarray) else a for a in args])
                return fn(*args)

            return first

    with kernels_wrapped(Capturing):
        fg.run(cfg.replace(runs=1), progress=False, n_threads=1)
    if not got:
        raise SystemExit("no run took a step in the linear regime")
    return got[0]


def variant(args, tracked=True, outputs=True):
    """Copies of the captured arguments, without the tracked rows and/or every step's outputs."""
    out = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    ZT, KtT, k = out[1], out[_KTT], out[10]
    m, n = ZT.shape
    if not tracked:
        out[_KTT] = np.empty((n, 0), KtT.dtype)
        out[_DTT], out[_UT] = np.empty((m, 0)), np.empty((m, 0))
        out[_MARKS] = np.full(k, -1, np.int64)
        out[_FT], out[_PT] = np.empty((0, 0)), np.empty((0, m, 0))
    if not outputs:
        rows = np.full(k, -1, np.int64)
        rows[k - 1] = 0
        out[_ROWS], out[_F] = rows, np.empty((1, n))
    return out


@njit(cache=False)
def _updates(DT, K, idx, dl, per):
    done = 0
    for s in range(idx.shape[0] // per):
        _add_rows(DT, s % DT.shape[0], K, idx[s * per:(s + 1) * per],
                  dl[s * per:(s + 1) * per], per)
        done += per
    return done


def change_cost(M, per, draws=200_000, rounds=15):
    """ns per change of ``_add_rows`` with the rows of M, ``per`` changes a row and step."""
    rng = np.random.default_rng(0)
    idx = rng.integers(0, M.shape[0], draws).astype(np.int64)
    dl = rng.standard_normal(draws)
    DT = np.zeros((4, M.shape[1]))  # a few rows: in L1, as a row of the state is
    _updates(DT, M, idx, dl, per)
    best = np.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        done = _updates(DT, M, idx, dl, per)
        best = min(best, time.perf_counter() - t0)
    return 1e9 * best / done


def main(argv=None):
    from fastgrok.kernels import gram_linear
    from fastgrok.kernels.threads import threads

    import fastgrok as fg

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper-fig1-left")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--set", action="append", default=[], help="a Config field, name=value")
    args = ap.parse_args(argv)
    cfg = fg.preset(args.preset, **preset_overrides(args.preset, args.set))
    call = capture(cfg)
    m, n = call[1].shape
    k, e = call[10], call[_KTT].shape[1]
    variants = {"as called": (True, True), "without the tracked rows": (False, True),
                "without every step's outputs": (True, False), "without both": (False, False)}
    times = {name: [] for name in variants}
    changes = {}
    with threads(1):
        for _ in range(args.rounds + 1):  # the first round compiles and warms
            for name, (tracked, outputs) in variants.items():
                a = variant(call, tracked, outputs)
                t0 = time.perf_counter()
                changes[name] = gram_linear.linear_steps(*a)
                times[name].append(time.perf_counter() - t0)
        if len(set(changes.values())) != 1:
            raise SystemExit(f"the variants made different changes: {changes}")
        per = changes["as called"] / (m * k)
        print(f"{args.preset}: the first call of linear_steps, m = {m}, n = {n}, {k} steps, "
              f"{e} tracked rows, {per:.2f} changes a row and step; one thread, "
              f"{args.rounds} rounds")
        print("| variant | ns per row and step, best | median |")
        print("|---|---|---|")
        for name, ts in times.items():
            ts = np.array(ts[1:]) / (m * k) * 1e9
            print(f"| {name} | {ts.min():.0f} | {np.median(ts):.0f} |")
        whole = max(1, round(per))
        print(f"\na change's update alone ({whole} a row and step): "
              f"{change_cost(call[0], whole):.1f} ns with a row of K ({n} wide)"
              + (f", {change_cost(call[_KTT], whole):.1f} ns with a tracked row ({e} wide)"
                 if e else ""))


if __name__ == "__main__":
    main()
