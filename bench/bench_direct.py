"""Direct-method step: NumPy reference vs numba engine vs PyTorch CPU, side by side.

pytest-benchmark (compare engines within each size group):
    python -m pytest bench/bench_direct.py --benchmark-group-by=param:size

One table with ratios, GFLOP/s and the same-run float32 GEMM ceiling (and, with --memory, the
peak memory of a step at n=400, m=1000, p=3,000,000 in a fresh process per engine):
    python bench/bench_direct.py [--sizes 200x1000x40k,...] [--memory]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from _engines import (
    ENGINE_MAKERS,
    SIZES,
    make_gemm,
    parse_size,
    problem,
    torch_available,
)

ENGINES = [e for e in ("numpy", "numba", "torch") if e != "torch" or torch_available()]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("size", list(SIZES))
def test_step(benchmark, size, engine):
    n, m, p = SIZES[size]
    if engine == "numpy" and p * m > 2e8:
        pytest.skip("the reference at this size takes minutes per step (see the table script)")
    X, y, W, a = problem(n, m, p)
    step, close = ENGINE_MAKERS[engine](X, y, W, a)
    benchmark.extra_info["gflops_per_step"] = 4 * n * m * p / 1e9
    try:
        benchmark.pedantic(step, rounds=3, warmup_rounds=1, iterations=1)
    finally:
        if close:
            close()


def _interleaved_best(fns, rounds):
    """Best time of each callable, timed round-robin so that a noisy spell on the shared machine
    hits every engine alike."""
    for fn in fns.values():
        fn()  # warm-up: compile, caches, page faults
    best = {k: np.inf for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            # Let the previous engine's idle worker threads (OpenMP, OpenBLAS) stop spinning,
            # or they steal the cores of the engine being timed.
            time.sleep(0.3)
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def parts(n=400, m=1000, p=100_000, rounds=4):
    """One fused tile pass (update + forward) against its two halves and the plain GEMMs: shows
    whether the fusion costs anything beyond the two products."""
    from fastgrok.kernels import direct_cpu as cd
    from fastgrok.kernels.threads import threads

    from fastgrok.engines.ops_numba import tile_options

    X, y, W, a = problem(n, m, p)
    V = (np.random.default_rng(0).standard_normal((n, m)) * 1e-9).astype(X.dtype)

    def tiles(**kw):
        def run():
            with threads() as nt:
                cd.tile_pass(X, W, n_threads=nt, **tile_options(), **kw)
        return run

    fns = {"fused pass": tiles(V=V), "update only": tiles(V=V, forward=False),
           "forward only": tiles(), "gemm X W^T": lambda: X @ W.T, "gemm V^T X": lambda: V.T @ X}
    best = _interleaved_best(fns, rounds)
    print(f"\nparts of a step, {n}x{m}x{p} float32 (best of {rounds})")
    for k, t in best.items():
        flops = (4 if k == "fused pass" else 2) * n * m * p
        print(f"{k:<14} {t:7.3f} s {flops / t / 1e9:7.1f} GFLOP/s")


def table(sizes, rounds=3):
    rows = []
    for name in sizes:
        n, m, p = SIZES[name] if name in SIZES else parse_size(name)
        X, y, W, a = problem(n, m, p)
        fns, closers = {"gemm X W^T": make_gemm(X, W)}, []
        for eng in ENGINES:
            step, close = ENGINE_MAKERS[eng](X, y, W, a)
            fns[eng] = step
            closers.append(close)
        # The reference takes tens of seconds per step at the largest size: one round there.
        slow = p * m > 2e8
        try:
            if slow:
                ref = fns.pop("numpy")
                best = {**_interleaved_best(fns, rounds), **_interleaved_best({"numpy": ref}, 1)}
            else:
                best = _interleaved_best(fns, rounds)
        finally:
            for close in filter(None, closers):
                close()
        gemm_rate = 2 * n * m * p / best["gemm X W^T"] / 1e9
        for eng, t in best.items():
            flops = (2 if eng.startswith("gemm") else 4) * n * m * p
            rate = flops / t / 1e9
            rows.append((name, eng, t, rate, rate / gemm_rate,
                         best.get("torch", np.nan) / t, best["numpy"] / t))
        del X, W, fns
    print(f"\n{'size (n x m x p)':<16} {'engine':<11} {'s/step':>8} {'GFLOP/s':>8} {'of GEMM':>8} "
          f"{'torch/this':>10} {'numpy/this':>10}")
    for name, eng, t, rate, frac, vs_torch, vs_np in rows:
        print(f"{name:<16} {eng:<11} {t:8.3f} {rate:8.1f} {frac:8.0%} {vs_torch:10.2f} {vs_np:10.2f}")
    return rows


_CHILD = """
import resource, sys, time
sys.path.insert(0, {bench!r})
import numpy as np
from _engines import ENGINE_MAKERS, problem
n, m, p = {n}, {m}, {p}
if {limit}:
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
X, y, W, a = problem(n, m, p)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # after drawing X and W
try:
    step, close = ENGINE_MAKERS[{engine!r}](X, y, W, a)
    t0 = time.perf_counter(); step(); step(); dt = (time.perf_counter() - t0) / 2
    status = f"ok, {{dt:.1f}} s/step"
except (MemoryError, RuntimeError) as exc:
    status = "FAILED: " + str(exc).splitlines()[0][:80]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(f"RESULT {{peak}} {{base}} {{X.nbytes + W.nbytes}} {{status}}")
"""


def memory(n=400, m=1000, p=3_000_000, engines=("numba", "torch"), limit_gib=22):
    """Peak RSS of two steps in a fresh process per engine; torch capped at ``limit_gib``."""
    print(f"\npeak memory of a step, n={n} m={m} p={p} float32 "
          f"(X + W = {(n + m) * p * 4 / 2**30:.1f} GiB)")
    for eng in engines:
        if eng == "torch" and not torch_available():
            continue
        limit = int(limit_gib * 2**30) if eng == "torch" else 0
        code = _CHILD.format(bench=os.path.dirname(os.path.abspath(__file__)), n=n, m=m, p=p,
                             engine=eng, limit=limit)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
        if not line:
            print(f"{eng:<6} crashed (rc={out.returncode}): {out.stderr.strip()[-200:]}")
            continue
        _, peak, base, xw, status = line[0].split(" ", 4)
        peak, base, xw = int(peak), int(base), int(xw)
        cap = f" (address space capped at {limit_gib} GiB)" if limit else ""
        print(f"{eng:<6} process peak {peak / 2**30:6.2f} GiB = {peak / xw:.3f} x (X + W); "
              f"after drawing X, W: {base / 2**30:.2f} GiB; the steps added "
              f"{(peak - base) / 2**20:.0f} MiB  {status}{cap}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(SIZES),
                    help="comma-separated NxMxP sizes (k/M/G suffixes), e.g. 400x1000x1M,64x128x3e6")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--memory", action="store_true", help="also the p = 3e6 peak-memory check")
    ap.add_argument("--memory-p", type=int, default=3_000_000)
    ap.add_argument("--parts", action="store_true", help="also time the parts of a fused pass")
    args = ap.parse_args()
    for s in args.sizes.split(","):
        if s:
            try:
                parse_size(s)
            except ValueError as exc:
                ap.error(str(exc))
    print(f"threads: {len(os.sched_getaffinity(0))} (GFLOP/s counts 4 n m p per step, 2 n m p per GEMM)")
    table([s for s in args.sizes.split(",") if s], args.rounds)
    if args.parts:
        parts()
    if args.memory:
        memory(p=args.memory_p)
