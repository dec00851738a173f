"""The data's normals: NumPy's ``Generator.standard_normal`` against fastgrok's kernels.

    python bench/bench_draw.py [--rounds 11]

Both draw the same stream (``fastgrok.data.rng``) and give the same bits (checked here); they
alternate round by round in one process, one thread, and the table gives each one's median
time per number and the ratio of the medians. The sizes: a block of W0 in the full
representation (float32, 1000 x DATA_BLOCK) and a reduced run's block of L (float64, the
left panel's 482 000 numbers).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main(argv=None):
    from fastgrok import tunables
    from fastgrok.data import STREAM_REDUCED_L, STREAM_W0, rng, standard_normals

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=11)
    args = ap.parse_args(argv)
    cases = {"float32, 1000 x DATA_BLOCK (W0, full)": (STREAM_W0, (1000, tunables.DATA_BLOCK),
                                                       np.float32),
             "float64, 482 000 (L, reduced)": (STREAM_REDUCED_L, 482_000, np.float64)}
    print("| draw | NumPy, ns a number | fastgrok, ns a number | NumPy / fastgrok |")
    print("|---|---|---|---|")
    for name, (stream, shape, dtype) in cases.items():
        def numpy_draw(k, stream=stream, shape=shape, dtype=dtype):
            return rng(0, 0, stream, k).standard_normal(shape, dtype=dtype)

        def kernel_draw(k, stream=stream, shape=shape, dtype=dtype):
            return standard_normals(0, 0, stream, k, shape, dtype)

        assert np.array_equal(numpy_draw(0), kernel_draw(0))  # (and compiles the kernel)
        times = {numpy_draw: [], kernel_draw: []}
        for r in range(args.rounds):
            for fn in (numpy_draw, kernel_draw) if r % 2 == 0 else (kernel_draw, numpy_draw):
                t0 = time.perf_counter()
                out = fn(r + 1)
                times[fn].append((time.perf_counter() - t0) / out.size * 1e9)
        a, b = statistics.median(times[numpy_draw]), statistics.median(times[kernel_draw])
        print(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
