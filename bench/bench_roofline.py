"""The linear regime against the machine: the cost of a pattern change and its L2 bound.

    python bench/bench_roofline.py [--figure docs/linear_roofline.png]

1. The core's L2 read bandwidth: a vectorised sum over a float32 buffer of half the core's L2
   (out of L1, inside L2; 1.5 MiB where the L2 size is not known), best of 5.
2. Along one right-panel run (float32, reduced, one thread; its last k steps before t one call
   of the engine, as the right panel takes them, so that the block kernel's near-set hints
   are those of blocks of k), at each step index t, for m = 100 and 1000: the step-by-step
   kernel's k = 256 steps from t (copies of the state), and the
   same steps with D = 0 (the pass over the state alone: no entry moves, nothing changes),
   best of 5 each. The cost of a change is their difference over the changes. A change reads
   one row of K, n float32 = 4 n bytes, from L2: the bound is 4 n bytes over the L2
   bandwidth. The block kernel (``linear_blocks``, blocks of ``tunables.GRAM_LINEAR_BLOCK``)
   takes the same k steps from the same state (the same changes): its cost per change is its
   whole time over the changes, the pass included. Dense steps: 64 gram steps of the same
   run with the regime off, from step 1.
3. The figure: the cost per change against the bound (left), and milliseconds per run-step
   of dense steps, step-by-step incremental steps, blocks and the pass alone (right), against
   the step index.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

MARKS = (10, 100, 1000, 2000, 4000)


@njit(fastmath=True, cache=False)
def _stream(buf, reps):
    t = 0.0
    for _ in range(reps):
        s = np.float32(0.0)
        for i in range(buf.shape[0]):
            s += buf[i]
        t += s
    return t


def l2_kib(default=3072):
    """The L2 cache of cpu0 in KiB (Linux sysfs), or ``default`` where it is not reported."""
    import glob

    for index in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            with open(f"{index}/level") as f:
                level = f.read().strip()
            with open(f"{index}/size") as f:
                size = f.read().strip()
        except OSError:
            continue
        if level == "2" and size.endswith("K"):
            return int(size[:-1])
    return default


def l2_bandwidth(kib=None, seconds=1.0):
    """Bytes per second of a vectorised read of a ``kib`` KiB buffer, best of 5.

    By default half the core's L2: a buffer larger than L2 (a 1.5 MiB one on a core with
    512 KiB of L2) measures the L3's bandwidth, 30% lower, and with it a bound that is too
    loose.
    """
    kib = l2_kib() // 2 if kib is None else kib
    buf = np.ones(kib * 256, np.float32)
    _stream(buf, 1)
    reps = max(1, int(seconds * 50e9 / buf.nbytes))
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        _stream(buf, reps)
        best = min(best, time.perf_counter() - t0)
    return buf.nbytes * reps / best


def _engine(m, regime):
    import fastgrok as fg
    from fastgrok import tunables
    from fastgrok.engines import GramEngine, NumbaOps
    from fastgrok.sources import ReducedSource

    cfg = fg.preset("paper-fig1-right", runs=1, m=m)
    old = tunables.GRAM_LINEAR_REGIME
    tunables.GRAM_LINEAR_REGIME = regime  # read when the engine is built
    try:
        return GramEngine([ReducedSource(cfg, 0)], cfg.lr, "float32", ops=NumbaOps())
    finally:
        tunables.GRAM_LINEAR_REGIME = old


def stepped_to(marks, m):
    """One right-panel run in the linear regime, yielded as (mark, engine) at each mark.

    The engine takes its own calls, as a run does; call it inside ``threads(1)``.
    """
    eng, t = _engine(m, True), 0
    for mark in marks:
        while t < mark:
            k = min(eng.steps_per_call(), mark - t)
            eng.advance(k)
            t += k
        yield mark, eng


def _kernel_steps(st, K, a, k, zero_d=False):
    """Seconds and changes of k linear-regime steps from a copy of the state ``st``."""
    from fastgrok.kernels import gram_linear as gl

    m, n = st.ZT.shape
    ZT, SX = st.ZT.copy(), st.SX.copy()
    DT = np.zeros_like(st.DT) if zero_d else st.DT.copy()
    F = np.empty((1, n))
    rows = np.full(k, -1)
    rows[-1] = 0
    t0 = time.perf_counter()
    changes = gl.linear_steps(K, ZT, DT, SX, st.c, a, F, rows, 0.0, st.steps, k,
                              np.zeros((n, 0), K.dtype), np.zeros((m, 0)), np.zeros((m, 0)),
                              np.full(k, -1), np.empty((0, 0)), np.empty((0, m, 0)))
    return time.perf_counter() - t0, changes


def _block_steps(st, K, a, k):
    """Seconds and changes of k linear-regime steps in blocks from a copy of the state."""
    from fastgrok.kernels import gram_linear as gl

    from fastgrok import tunables

    m, n = st.ZT.shape
    ZT, DT, SX = st.ZT.copy(), st.DT.copy(), st.SX.copy()
    f = np.empty(n)
    t0 = time.perf_counter()
    changes = gl.linear_blocks(K, ZT, DT, SX, st.c, a, f, 0.0, st.steps, k,
                               tunables.GRAM_LINEAR_BLOCK, st.kmax,
                               tunables.GRAM_LINEAR_BLOCK_WIDEN, st.spread.copy(),
                               st.moved.copy(), st.slope.copy(), np.zeros(3, np.int64))
    return time.perf_counter() - t0, changes


def table(marks=MARKS, k=256):
    from fastgrok.kernels.threads import threads

    bw = l2_bandwidth()
    rows = []
    with threads(1):
        for m in (100, 1000):
            dense = _engine(m, False)
            dense.advance(1)
            t0 = time.perf_counter()
            dense.advance(k)
            dense_ms = 1e3 * (time.perf_counter() - t0) / k
            eng = _engine(m, True)
            t = 0
            for mark in marks:
                # The last k steps as one call of the engine (blocks of k, as the right panel's
                # calls take them): its near-set hints are those of a block of this length.
                if mark - t > k:
                    eng.advance(mark - t - k)
                    t = mark - k
                eng.advance(mark - t)
                t = mark
                st = eng.state.runs[0]
                K, a = eng.K[0], eng.a[0]
                _kernel_steps(st, K, a, 2)  # compiled and warm
                full = min(_kernel_steps(st, K, a, k) for _ in range(5))
                bare = min(_kernel_steps(st, K, a, k, zero_d=True)[0] for _ in range(5))
                _block_steps(st, K, a, 2)
                blocks = min(_block_steps(st, K, a, k) for _ in range(5))
                assert blocks[1] == full[1], "the block kernel's changes are the step kernel's"
                n = st.ZT.shape[1]
                per = (full[0] - bare) / max(full[1], 1)
                bound = 4 * n / bw
                block_per = blocks[0] / max(full[1], 1)
                rows.append(dict(m=m, t=mark, changes=full[1] / k, per_change_ns=1e9 * per,
                                 bound_ns=1e9 * bound, ratio=per / bound,
                                 incremental_ms=1e3 * full[0] / k, pass_ms=1e3 * bare / k,
                                 block_ms=1e3 * blocks[0] / k, block_change_ns=1e9 * block_per,
                                 block_ratio=block_per / bound, dense_ms=dense_ms))
    return bw, rows


def figure(rows, bw, path):
    from fastgrok.plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, m in enumerate((100, 1000)):
        r = [x for x in rows if x["m"] == m]
        ts = [x["t"] for x in r]
        axes[0].plot(ts, [x["per_change_ns"] for x in r], "-o", color=f"C{i}",
                     label=f"a change, step by step, m = {m}")
        axes[0].plot(ts, [x["block_change_ns"] for x in r], "-^", color=f"C{i}",
                     label=f"a change in blocks (all of it), m = {m}")
        axes[1].plot(ts, [x["dense_ms"] for x in r], "-", color=f"C{i}", label=f"dense, m = {m}")
        axes[1].plot(ts, [x["incremental_ms"] for x in r], "--s", color=f"C{i}",
                     label=f"step by step, m = {m}")
        axes[1].plot(ts, [x["block_ms"] for x in r], "-^", color=f"C{i}",
                     label=f"blocks, m = {m}")
        axes[1].plot(ts, [x["pass_ms"] for x in r], ":", color=f"C{i}",
                     label=f"its pass alone, m = {m}")
    axes[0].axhline(rows[0]["bound_ns"], color="k", linestyle="--",
                    label=f"L2 bound: 4 n B / {bw / 1e9:.0f} GB/s")
    axes[0].set_ylabel("ns per pattern change")
    axes[0].set_ylim(0, None)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("ms per run-step (one thread)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("step index (right panel)")
        ax.legend(fontsize=7)
    fig.suptitle("the linear regime on the right panel (n = 200, float32 K)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", default=None)
    args = ap.parse_args(argv)
    bw, rows = table()
    print(f"L2 read bandwidth: {bw / 1e9:.1f} GB/s")
    print("| m | t | changes per step | ns per change, step by step | ns per change, blocks "
          "(all in) | L2 bound, ns | ratios to it | ms per step: step by step | its pass alone "
          "| blocks | dense | dense / blocks |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for x in rows:
        print(f"| {x['m']} | {x['t']} | {x['changes']:.0f} | {x['per_change_ns']:.1f} | "
              f"{x['block_change_ns']:.1f} | {x['bound_ns']:.1f} | {x['ratio']:.1f}, "
              f"{x['block_ratio']:.1f} | {x['incremental_ms']:.3f} | {x['pass_ms']:.3f} | "
              f"{x['block_ms']:.3f} | {x['dense_ms']:.3f} | {x['dense_ms'] / x['block_ms']:.1f} |")
    if args.figure:
        figure(rows, bw, args.figure)


if __name__ == "__main__":
    main()
