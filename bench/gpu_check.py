"""Every GPU check and benchmark in one short call (budget: under 6 minutes on an H200).

    pip install --no-deps --no-build-isolation -e . && python bench/gpu_check.py

1. runs the gpu-marked tests (the same test bodies as on the CPU, with CuPy operations);
2. prints one table: per-step time of the cupy direct engine vs a PyTorch CUDA step vs the
   cuBLAS SGEMM rate measured in the same run, at (400, 1000, 1e6) and (200, 1000, 4e4);
   the gram engine's per-step time; and the wall times of the paper-fig1-left and
   paper-fig1-right presets (100 runs each) on the GPU.

``--logic`` runs the same code paths with NumPy operations at tiny sizes (no GPU needed), which
is how the script itself is tested on machines without one.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _timer(xp):
    """best-of-k wall time of fn() with device synchronisation."""
    sync = (lambda: xp.cuda.Device().synchronize()) if xp.__name__ == "cupy" else (lambda: None)

    def best(fn, rounds=5):
        fn()
        sync()
        t = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            sync()
            t.append(time.perf_counter() - t0)
        return min(t)

    return best


def step_table(ops, sizes, rounds):
    from fastgrok.engines import DirectEngine, GramEngine
    from fastgrok.sources import ArraySource

    xp = ops.xp
    best = _timer(xp)
    rows = []
    for n, m, p in sizes:
        g = np.random.default_rng(0)
        X = g.standard_normal((n, p), dtype=np.float32)
        W = (1e-3 * g.standard_normal((m, p), dtype=np.float32))
        y = np.where(g.random(n) < 0.5, 1.0, -1.0)
        a = np.where(g.random(m) < 0.5, 1.0, -1.0) / np.sqrt(m)
        src = ArraySource(X, y, m, W0=W, a=a)
        direct = DirectEngine([src], 1e-6, "float32", ops=ops)
        Xd, Wd = direct.X, direct.W
        t_gemm = best(lambda: Xd @ Wd.T, rounds)
        t_direct = best(lambda: direct.step(prepare_eval=False), rounds)
        gram = GramEngine([src], 1e-6, "float32", ops=ops)
        t_gram = best(lambda: gram.step(prepare_eval=False), rounds)
        t_torch = np.nan
        try:
            from _engines import make_torch

            dev = "cuda" if xp.__name__ == "cupy" else "cpu"
            t_torch = best(make_torch(X, y, W, a, device=dev)[0], rounds)
        except ImportError:
            pass
        gemm_rate = 2 * n * m * p / t_gemm / 1e9
        rate = 4 * n * m * p / t_direct / 1e9
        rows.append((f"{n}x{m}x{p:.0e}", t_direct, rate, rate / gemm_rate, t_torch / t_direct,
                     gemm_rate, t_gram))
        del direct, gram, Xd, Wd
    print(f"\n{'size':<16} {'direct s/step':>13} {'GFLOP/s':>8} {'of SGEMM':>8} {'torch/this':>10} "
          f"{'SGEMM GF/s':>10} {'gram s/step':>11}")
    for r in rows:
        print(f"{r[0]:<16} {r[1]:13.5f} {r[2]:8.0f} {r[3]:8.0%} {r[4]:10.2f} {r[5]:10.0f} {r[6]:11.6f}")


def presets(backend, runs):
    import fastgrok as fg

    print(f"\n{'preset':<18} {'runs x steps':>13} {'wall s':>8}  engine, representation; test acc median at 1, 10, last")
    for name in ("paper-fig1-left", "paper-fig1-right"):
        cfg = fg.preset(name, backend=backend) if runs is None else fg.preset(name, backend=backend, runs=runs)
        t0 = time.perf_counter()
        res = fg.run(cfg, progress=False)
        wall = time.perf_counter() - t0
        s = res.summary().set_index("step")
        med = ", ".join(f"{s.loc[t, 'test_acc_median']:.3f}" for t in (1, 10, cfg.steps))
        print(f"{name:<18} {cfg.runs:>5} x {cfg.steps:<5} {wall:8.2f}  {res.info['engine']}, "
              f"{res.info['representation']}; {med}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logic", action="store_true", help="tiny sizes, NumPy operations, no GPU")
    ap.add_argument("--skip-tests", action="store_true")
    args = ap.parse_args()
    import fastgrok as fg

    if args.logic:
        from fastgrok.engines.ops_cupy import CupyOps
        from fastgrok.kernels.cuda import EmulatedKernels

        step_table(CupyOps(kernels=EmulatedKernels(), xp=np), [(20, 30, 5000), (10, 20, 2000)], rounds=2)
        presets("numba", runs=2)
        return 0
    if not fg.gpu_usable():
        print("no usable CUDA GPU with CuPy: nothing to check (try --logic)")
        return 2
    if not args.skip_tests:
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-m", "gpu",
                              os.path.join(HERE, "..", "tests"), "-p", "no:cacheprovider"])
        print(f"gpu-marked tests: exit {rc} in {time.perf_counter() - t0:.0f} s")
    from fastgrok.engines.ops_cupy import cupy_ops

    t0 = time.perf_counter()
    ops = cupy_ops()
    print(f"CUDA module compiled in {time.perf_counter() - t0:.1f} s")
    step_table(ops, [(400, 1000, 1_000_000), (200, 1000, 40_000)], rounds=5)
    presets("cupy", runs=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
