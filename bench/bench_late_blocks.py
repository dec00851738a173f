"""Late blocks side by side: two installs' block kernels from the same states of a long run.

    pip install --no-deps --target /tmp/old-fastgrok <old checkout>
    python bench/bench_late_blocks.py --other /tmp/old-fastgrok [--marks 10000,50000,200000]
                                      [--rounds 9] [--calls 4] [--block 1024]

One right-panel run (m = 1000, float32, reduced, one thread) is stepped by this install's
engine to each mark, and its linear-regime state there is saved. Then, in a fresh process per
round and the two installs alternating, ``linear_blocks`` takes ``calls`` calls of ``block``
steps (blocks of ``block``) from a copy of each state. The table gives the median and the best
milliseconds per step of each, their ratio, and whether the two ended in the same Z, D and
counts, bit for bit. This is where a long run spends its time (docs/performance.md).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile

import numpy as np
from bench_versions import alternating, child_results

_FIELDS = ("ZT", "DT", "SX", "c", "K64", "kmax", "spread", "moved", "slope")

#: Child code, after ``gl`` is imported: ``gram(s)``, linear_blocks' K arguments from a saved
#: state or call (older installs take K in float64 as well).
GRAM_ARGS = """
import inspect
def gram(s):
    if "K64" in inspect.signature(gl.linear_blocks.py_func).parameters:
        return s["K"], s["K64"]
    return (s["K"],)
"""

_CHILD = """
import hashlib, sys, time
import numpy as np
import fastgrok as fg
from fastgrok import tunables
from fastgrok.kernels import gram_linear as gl
from fastgrok.kernels.threads import threads
{gram}
calls, block = {calls}, {block}
for path in sys.argv[1:]:
    s = dict(np.load(path))
    with threads(1):
        for timed in (False, True):  # the first pass compiles or loads the kernel
            ZT, DT, SX = s["ZT"].copy(), s["DT"].copy(), s["SX"].copy()
            spread, moved, slope = s["spread"].copy(), s["moved"].copy(), s["slope"].copy()
            f, counts, t = np.empty(ZT.shape[1]), np.zeros(3, np.int64), int(s["steps"])
            t0 = time.perf_counter()
            for _ in range(calls if timed else 1):
                gl.linear_blocks(*gram(s), ZT, DT, SX, s["c"], s["a"], f, 0.0, t, block, block,
                                 s["kmax"], tunables.GRAM_LINEAR_BLOCK_WIDEN, spread, moved,
                                 slope, counts)
                t += block
            sec = time.perf_counter() - t0
    digest = hashlib.sha256(ZT.tobytes() + DT.tobytes() + SX.tobytes()).hexdigest()[:16]
    print("RESULT", path, sec, digest, fg.__file__)
"""


def save_states(marks, folder):
    """Step one right-panel run to each mark; save its regime state there. Returns the paths."""
    from bench_roofline import stepped_to
    from fastgrok.kernels.threads import threads

    paths = []
    with threads(1):
        for mark, eng in stepped_to(marks, 1000):
            st = eng.state.runs[0]
            path = os.path.join(folder, f"state_{mark}.npz")
            np.savez(path, K=eng.K[0], a=eng.a[0], steps=st.steps,
                     **{k: getattr(st, k) for k in _FIELDS})
            paths.append(path)
    return paths


def _round(paths, install, calls, block):
    rows = child_results(_CHILD.format(gram=GRAM_ARGS, calls=calls, block=block), install, paths)
    return {r[0]: (float(r[1]), r[2]) for r in rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", required=True, help="a folder holding another install of fastgrok")
    ap.add_argument("--marks", default="10000,50000,200000")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--block", type=int, default=1024)
    args = ap.parse_args(argv)
    marks = [int(x) for x in args.marks.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        paths = save_states(marks, folder)
        got = alternating(args.rounds, args.other,
                          lambda install: _round(paths, install, args.calls, args.block))
    steps = args.calls * args.block
    print(f"{args.calls} calls of {args.block} steps from each state, one thread; "
          f"ms per step over {args.rounds} rounds")
    print("| t | this, median | other, median | other/this | this, best | other, best "
          "| same bits |")
    print("|---|---|---|---|---|---|---|")
    for mark, path in zip(marks, paths, strict=True):
        this = [g[path][0] * 1e3 / steps for g in got["this"]]
        other = [g[path][0] * 1e3 / steps for g in got["other"]]
        same = {g[path][1] for g in got["this"] + got["other"]}
        print(f"| {mark} | {statistics.median(this):.4f} | {statistics.median(other):.4f} | "
              f"{statistics.median(other) / statistics.median(this):.2f} | {min(this):.4f} | "
              f"{min(other):.4f} | {'yes' if len(same) == 1 else 'NO'} |")


if __name__ == "__main__":
    main()
