"""What checkpoints cost: a long run with and without them, side by side, and one checkpoint.

    python bench/bench_checkpoint.py [--runs 20] [--steps 640] [--repeats 3]

The preset ``paper-fig1-right`` (m = 1000, the paper's width) trained with the gram method on
the CPU, without checkpoints and with one at the end of every driver segment
(``checkpoint_every=0``, the most often a run can write them; the default is every 10 minutes).
Prints the median wall times, the number of checkpoints written, the cost of one, its size on
disk, and the peak memory before and after one checkpoint of a 400 MB array (pickle writes the
arrays' buffers: no second copy).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time


def main(argv=None):
    import numpy as np

    import fastgrok as fg
    from fastgrok import checkpoint as ck

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=640)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "run.fastgrok")
    # First, while the process is small: the peak memory around a checkpoint of a big array.
    big = np.ones(50_000_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ck.Checkpoint(path, 0, {}).save({"W": big})
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del big
    os.remove(path)
    cfg = fg.preset("paper-fig1-right", runs=args.runs, steps=args.steps)
    fg.run(cfg.replace(steps=10, runs=1), progress=False)  # the kernels compiled or loaded
    times = {"without": [], "every segment": []}
    written = 0
    for _ in range(args.repeats):  # interleaved
        for name, kw in (("without", {}),
                         ("every segment", {"checkpoint": path, "checkpoint_every": 0})):
            t0 = time.perf_counter()
            res = fg.run(cfg, progress=False, **kw)
            times[name].append(time.perf_counter() - t0)
            written = res.info.get("checkpoints_written", written)
    real = ck.Checkpoint.save

    def first_only(self, state, nbytes=0):
        real(self, state, nbytes)
        raise KeyboardInterrupt

    ck.Checkpoint.save = first_only
    try:
        fg.run(cfg, progress=False, checkpoint=path, checkpoint_every=0)
    except KeyboardInterrupt:
        pass
    ck.Checkpoint.save = real
    size = os.path.getsize(path)
    os.remove(path)
    base, with_ck = (statistics.median(times[k]) for k in ("without", "every segment"))
    print(f"paper-fig1-right, runs={args.runs}, steps={args.steps}, median of {args.repeats}")
    print(f"  without checkpoints            {base:7.2f} s")
    print(f"  a checkpoint every segment     {with_ck:7.2f} s ({written} checkpoints)")
    print(f"  one checkpoint                 {(with_ck - base) / max(written, 1):7.2f} s, "
          f"{size / 1e6:.0f} MB on disk")
    os.rmdir(folder)
    print(f"  peak memory around a 400 MB checkpoint: {before:.0f} MB before, {after:.0f} MB after")


if __name__ == "__main__":
    main()
