"""What the history's bits leave to gain: a preset's phases against the floors they fix.

    python bench/bench_floors.py [--preset paper-fig1-left] [--rounds 2] [--set runs=20 ...]

One thread. Each phase of the preset is timed and its calls counted by ``bench_phases.py``. A
phase whose numbers the history fixes bit for bit is a BLAS product at its peak (or the data's
generator), whatever the code around it does; its floor is that product timed alone at the
preset's shapes, hot in cache, best of 20, times its calls:

- the dense steps: Z = Z0 + K C^T, a float32 GEMM (n x n x m) per step;
- the evaluations from C: the test pre-activations Kt C^T, a float32 GEMM (nt x n x m);
- entering the regime: D^T = V^T K^T, the tracked rows' Dt^T = V^T Kt^T and their
  pre-activations Kt C^T, float64 GEMMs (m x n x n, m x n x e, e x n x m; the last two only
  with tracked rows), and each later exact refresh its first two;
- the build: the run's products [X; Xt] [X; W0; M]^T in float32, and the data's normals,
  drawn by ``fastgrok.kernels.normals`` (bit for bit NumPy's generator) at their measured time.

The regime's kernels have no such floor (their order of operations is fixed, their speed is
not); the table gives the L2 bound of their pattern changes (each adds a float32 row of K,
and of Kt with tracked rows, to a float64 row: 4 (n + e) bytes from L2, over the L2 read
bandwidth of ``bench_roofline.py``) as a lower bound. The recording and the rest have none.
The last line: the measured time, the part of it timed in phases, and the sum of the floors
and the kernels' bound (the time with everything else removed).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_phases import phases, preset_overrides  # noqa: E402  (after the path above)


def _best(fn, reps=20):
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _gemm_time(shape_a, shape_b, dtype, b_transposed=False):
    """Seconds of A @ B, A (M, K) and B (K, N) (B a transposed view when b_transposed)."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal(shape_a).astype(dtype)
    if b_transposed:
        B = rng.standard_normal(shape_b[::-1]).astype(dtype).T
    else:
        B = rng.standard_normal(shape_b).astype(dtype)
    return _best(lambda: A @ B)


def floors(cfg, phases, info):
    """{phase: (floor seconds, what fixes it)} for the phases with a floor."""
    from bench_roofline import l2_bandwidth
    from threadpoolctl import threadpool_limits

    from fastgrok.sources import ReducedSource

    n, m, nt = cfg.n, cfg.m, cfg.n_test
    counts = dict(info["changes"])
    e = counts.pop("tracked width", 0)  # the tracked rows (test points and means), if any
    dt = np.dtype(cfg.dtype)
    out = {}
    with threadpool_limits(1):
        t_dense = _gemm_time((n, n), (n, m), dt)
        t_eval = _gemm_time((nt, n), (n, m), dt, b_transposed=True)
        t_vk = _gemm_time((m, n), (n, n), np.float64, b_transposed=True)
        t_vkt = _gemm_time((m, n), (n, max(e, 1)), np.float64)
        t_ect = _gemm_time((max(e, 1), n), (n, m), np.float64)
        src = ReducedSource(cfg, 0)
        cols = sum(j1 - j0 for _, j0, j1 in src.data_block_list())
        t_build = _gemm_time((n + nt, cols), (cols, n + m + 2), dt, b_transposed=True)
    tracked = e > 0
    calls = {k: v[1] for k, v in phases.items()}
    if "dense steps" in phases:
        out["dense steps"] = (calls["dense steps"] * t_dense, "float32 GEMM K C^T")
    if "evaluations from C (product)" in phases:
        out["evaluations from C (product)"] = (calls["evaluations from C (product)"] * t_eval,
                                               "float32 GEMM Kt C^T")
    entries = calls.get("regime: entry", 0)
    if entries:
        out["regime: entry"] = (entries * (t_vk + (t_vkt + t_ect if tracked else 0.0)),
                                "float64 GEMMs V^T K^T (and Kt's)")
    if "regime: refreshes after entry" in phases:
        out["regime: refreshes after entry"] = (
            calls["regime: refreshes after entry"] * (t_vk + (t_vkt if tracked else 0.0)),
            "float64 GEMM V^T K^T (and Kt's)")
    runs = calls.get("build: data drawn", 0)
    if "build (calling thread)" in phases:
        drawn = phases.get("build: data drawn", (0.0, 0))[0]
        out["build (calling thread)"] = (runs * t_build + drawn,
                                         "float32 GEMM of the data, and the normals")
        out["build: data drawn"] = (drawn, "the generator's bits (kernel as measured)")
    bw = l2_bandwidth()
    for name, count in counts.items():
        row_bytes = 4 * (n + (e if name == "linear_steps" else 0))  # (blocks track no rows)
        out[f"kernel {name}"] = (count * row_bytes / bw,
                                 f"L2 bound of its {count} changes ({row_bytes} B each, "
                                 f"{bw / 1e9:.0f} GB/s)")
    return out


def main(argv=None):
    import fastgrok as fg

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper-fig1-left")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="a Config field, name=value")
    args = ap.parse_args(argv)
    over = preset_overrides(args.preset, args.set)
    cfg = fg.preset(args.preset, **over)
    wall, timed_phases, info = phases(cfg, 1, args.rounds)
    low = floors(cfg, timed_phases, info)
    print(f"{args.preset} {over}, one thread: {wall:.2f} s wall")
    print("| phase | calls | s | floor s | the floor |")
    print("|---|---|---|---|---|")
    for name, (sec, n_calls) in sorted(timed_phases.items(), key=lambda kv: -kv[1][0]):
        floor, why = low.get(name, (0.0, "none"))
        print(f"| {name} | {n_calls} | {sec:.2f} | {floor:.2f} | {why} |")
    # the phases not inside another (the data are drawn inside the build)
    top = [k for k in timed_phases if k != "build: data drawn"]
    floor_sum = sum(low.get(k, (0.0,))[0] for k in top)
    timed = sum(timed_phases[k][0] for k in top)
    print(f"\nmeasured {wall:.2f} s, of it timed in phases {timed:.2f} s; the floors and the "
          f"kernels' bound sum to {floor_sum:.2f} s ({floor_sum / wall:.0%} of the wall time)")


if __name__ == "__main__":
    main()
