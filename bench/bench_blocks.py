"""The block kernel's cost against the length of a call: what a call costs before its steps.

    python bench/bench_blocks.py [--marks 2000,10000,50000] [--m 1000]

One right-panel run (float32, reduced, m = 1000, one thread) is stepped in the linear regime
to each step index t; from a copy of its state there, ``linear_blocks`` takes k steps in one
call (blocks of k, the call's length) for each k, best of 7. The table gives milliseconds per
step (a call's time over k): a call of one step is what every call pays per run whatever its
length (choosing each row's near set, copying K on it, the far entries' update and the check
at the block's end); long calls approach the cost of a step inside a block. The right
panel's calls end at its evaluations (tens to a few hundred steps apart); a long run's calls
are the engine's (``tunables.GRAM_LINEAR_STEPS_PER_CALL``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from bench_roofline import stepped_to

LENGTHS = (1, 8, 32, 64, 256, 1024)


def _call(st, K, a, k):
    """Seconds of k steps from a copy of the state in one call (blocks of k), and its counts."""
    from fastgrok import tunables
    from fastgrok.kernels import gram_linear as gl

    m, n = st.ZT.shape
    ZT, DT, SX = st.ZT.copy(), st.DT.copy(), st.SX.copy()
    f, counts = np.empty(n), np.zeros(3, np.int64)
    t0 = time.perf_counter()
    gl.linear_blocks(K, ZT, DT, SX, st.c, a, f, 0.0, st.steps, k, k, st.kmax,
                     tunables.GRAM_LINEAR_BLOCK_WIDEN, st.spread.copy(), st.moved.copy(),
                     st.slope.copy(), counts)
    return time.perf_counter() - t0, counts


def table(marks, m):
    from fastgrok.kernels.threads import threads

    rows = []
    with threads(1):
        for mark, eng in stepped_to(marks, m):
            st, K, a = eng.state.runs[0], eng.K[0], eng.a[0]
            _call(st, K, a, 2)  # compiled and warm
            ms = {k: 1e3 * min(_call(st, K, a, k)[0] for _ in range(7)) for k in LENGTHS}
            counts = {k: _call(st, K, a, k)[1] for k in LENGTHS}
            rows.append(dict(t=mark, ms=ms, counts=counts))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--marks", default="2000,10000,50000")
    ap.add_argument("--m", type=int, default=1000)
    args = ap.parse_args(argv)
    rows = table([int(x) for x in args.marks.split(",")], args.m)
    print("| t | " + " | ".join(f"k = {k}" for k in LENGTHS)
          + " | blocks stepped again, stepped one step at a time (k = 1024) |")
    print("|---" * (len(LENGTHS) + 2) + "|")
    for x in rows:
        print(f"| {x['t']} | " + " | ".join(f"{x['ms'][k] / k:.4f}" for k in LENGTHS)
              + f" | {x['counts'][1024][1]}, {x['counts'][1024][2]} of "
              f"{x['counts'][1024][0]} |")


if __name__ == "__main__":
    main()
