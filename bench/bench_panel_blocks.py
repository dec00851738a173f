"""The right panel's own block calls, side by side: two installs' block kernels on them.

    pip install --no-deps --target /tmp/old-fastgrok <old checkout>
    python bench/bench_panel_blocks.py --other /tmp/old-fastgrok [--rounds 9] [--steps 5000]

One right-panel run (m = 1000, float32, reduced, one thread) is trained by this install's
engine, and the arguments of every ``linear_blocks`` call it makes (its calls between the
evaluations, 32 to a few hundred steps each) are saved. Then, in a fresh process per round and
the two installs alternating, each install's kernel replays every call from a copy of its
arguments. The table gives the median and the best milliseconds per step over the calls, the
median of the rounds' ratios, and whether the two left the same Z, D, counts and outputs, bit
for bit. Where bench_late_blocks.py times long calls late in a long run, this times the calls
the paper's right panel makes (docs/performance.md).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile

import numpy as np
from bench_late_blocks import GRAM_ARGS
from bench_phases import kernels_wrapped
from bench_versions import alternating, child_results

#: linear_blocks' arguments after K, in order (K in float64 is added for installs that take it).
_ARGS = ("ZT", "DT", "SX", "c", "a", "f", "leak", "t0", "k", "T", "KMAX", "widen", "spread",
         "moved", "slope", "counts")

_CHILD = """
import hashlib, sys, time
import numpy as np
import fastgrok as fg
from fastgrok.kernels import gram_linear as gl
from fastgrok.kernels.threads import threads
{gram}
names = {names}
calls = [dict(np.load(path)) for path in sys.argv[1:]]
digest, total = hashlib.sha256(), 0.0
with threads(1):
    for timed in (False, True):  # the first pass compiles or loads the kernel
        for s in calls:
            args = [s[k].copy() if s[k].ndim else s[k].item() for k in names]
            t0 = time.perf_counter()
            gl.linear_blocks(*gram(s), *args)
            if timed:
                total += time.perf_counter() - t0
                for x in args[:3] + args[5:6]:  # ZT, DT, SX and the outputs f
                    digest.update(x.tobytes())
print("RESULT", total, digest.hexdigest()[:16], fg.__file__)
"""


def save_calls(steps, folder):
    """Train one right-panel run; save the arguments of each of its block calls. Returns the
    paths and the steps they take."""
    import fastgrok as fg

    paths, taken = [], []

    class Recording:
        def __init__(self, module):
            self._module = module

        def __getattr__(self, name):
            fn = getattr(self._module, name)
            if name != "linear_blocks":
                return fn

            def saved(K, *args):
                path = os.path.join(folder, f"call_{len(paths):04d}.npz")
                np.savez(path, K=K, K64=K.astype(np.float64),
                         **{k: np.asarray(v) for k, v in zip(_ARGS, args, strict=True)})
                paths.append(path)
                taken.append(int(args[_ARGS.index("k")]))
                return fn(K, *args)

            return saved

    with kernels_wrapped(Recording):
        fg.run(fg.preset("paper-fig1-right", runs=1, steps=steps), progress=False, n_threads=1)
    return paths, sum(taken)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", required=True, help="a folder holding another install of fastgrok")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--steps", type=int, default=5000, help="the run's length (5000: the panel)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        paths, steps = save_calls(args.steps, folder)
        child = _CHILD.format(gram=GRAM_ARGS, names=_ARGS)

        def replay(install):
            sec, digest = child_results(child, install, paths)[0][:2]
            return float(sec) * 1e3 / steps, digest

        got = alternating(args.rounds, args.other, replay)
    this, other = ([ms for ms, _ in got[who]] for who in ("this", "other"))
    same = len({d for who in got for _, d in got[who]}) == 1
    print(f"{len(paths)} block calls of one right-panel run ({steps} steps in blocks), one "
          f"thread; ms per step over {args.rounds} rounds")
    print("| this, median | other, median | other/this (median of rounds) | this, best "
          "| other, best | same bits |")
    print("|---|---|---|---|---|---|")
    print(f"| {statistics.median(this):.4f} | {statistics.median(other):.4f} | "
          f"{statistics.median(o / t for o, t in zip(other, this, strict=True)):.2f} | "
          f"{min(this):.4f} | {min(other):.4f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
