"""Every GPU check and benchmark in one call, ending with a verdict (budget: under 6 minutes on
an H200).

    pip install --no-deps --no-build-isolation -e . && python bench/gpu_check.py

1. the GPU tests (tests/test_gpu.py alone: it imports no Numba) with FASTGROK_REQUIRE_GPU=1, so
   a GPU test that cannot run fails with its reason; a skipped test counts as a failure here;
2. the CUDA module's compile time (what ``fg.warmup(("cupy",))`` measures);
3. one table: per-step time of the direct engine on the GPU vs a PyTorch CUDA step vs the cuBLAS
   SGEMM rate of the same run, at (400, 1000, 1e6) and (200, 1000, 4e4), and the gram step;
4. the wall times of the paper-fig1-left and paper-fig1-right presets (100 runs each);
5. one line per claim of the README's GPU section, confirmed or not, and the verdict: whether
   ``fastgrok.plan.CUPY_VERIFIED`` may be flipped.

``--logic`` runs the whole check on this machine with the CPU stand-in for CuPy (every launch
checked against the kernels' signatures and emulated) at tiny sizes: how the script itself is
tested without a GPU.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _timer(xp):
    """best-of-k wall time of fn() with device synchronisation."""
    sync = (lambda: xp.cuda.Device().synchronize()) if hasattr(xp, "cuda") else (lambda: None)

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


def run_tests(logic):
    """pytest on tests/test_gpu.py; returns (ok, summary line). Skips count as failures."""
    env = dict(os.environ, FASTGROK_REQUIRE_GPU="0" if logic else "1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
           os.path.join(HERE, "..", "tests", "test_gpu.py")]
    if logic:
        cmd += ["-m", "not gpu"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    summary = lines[-1] if lines else out.stderr[-300:]
    skipped = int((re.search(r"(\d+) skipped", summary) or [0, 0])[1])
    ok = out.returncode == 0 and (logic or skipped == 0) and " passed" in summary
    if not ok:
        print(out.stdout[-4000:], out.stderr[-2000:])
    print(f"GPU tests: {summary} ({time.perf_counter() - t0:.0f} s){'' if ok else '  <- FAILED'}")
    return ok, summary


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

            dev = "cuda" if hasattr(xp, "cuda") else "cpu"
            t_torch = best(make_torch(X, y, W, a, device=dev)[0], rounds)
        except ImportError:
            pass
        gemm_rate = 2 * n * m * p / t_gemm / 1e9
        rate = 4 * n * m * p / t_direct / 1e9
        rows.append((f"{n}x{m}x{p:.0e}", t_direct, rate, rate / gemm_rate, t_torch / t_direct,
                     gemm_rate, t_gram))
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


def readme_claims(ops, backend):
    """Check the README's GPU claims one by one; returns [(claim, ok)]."""
    import warnings

    import fastgrok as fg
    from fastgrok.engines import DirectEngine

    xp = ops.xp
    out = []
    g = np.random.default_rng(1)
    X, W = g.standard_normal((9, 80)), 0.1 * g.standard_normal((6, 80))
    y, a = np.where(g.random(9) < 0.5, 1.0, -1.0), np.where(g.random(6) < 0.5, 1.0, -1.0) / np.sqrt(6)
    from fastgrok import reference

    want = reference.step(X, y, W.copy(), a, 0.1)
    Wd = xp.asarray(W.copy())
    if backend == "cupy":
        got = fg.step(xp.asarray(X), xp.asarray(y), Wd, xp.asarray(a), 0.1)
    else:  # the stand-in: the same engine call fg.step makes for device arrays
        DirectEngine.step_fn(xp.asarray(X), xp.asarray(y), Wd, xp.asarray(a), 0.1, ops=ops)
        got = Wd  # step_fn updates Wd in place and returns the outputs
    out.append(("fg.step with CuPy arrays updates W in place on the device",
                got is Wd and np.allclose(ops.to_host(Wd), want, rtol=1e-12)))
    cfg = fg.Config(n=20, p=3000, m=30, n_test=40, runs=2, steps=5, dtype="float64",
                    representation="full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = fg.run(cfg.replace(backend="numpy", method="direct"), progress=False).history
        ok = True
        for method in ("direct", "gram"):
            if backend == "cupy":
                h = fg.run(cfg.replace(backend="cupy", method=method), progress=False).history
            else:
                from fastgrok.engines import ENGINES
                from fastgrok.sources import GeneratedSource

                eng = ENGINES[(method, "numpy")]([GeneratedSource(cfg, 0)], cfg.lr, "float64", ops=ops)
                h = None
                ok &= np.isfinite(eng.evaluate()[0]["train_loss"])
            if h is not None:
                ok &= np.allclose(h["train_loss"], cpu["train_loss"], rtol=1e-9)
    out.append(("fg.run(cfg.replace(backend='cupy')) takes host data and matches the CPU", bool(ok)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logic", action="store_true", help="tiny sizes, CPU stand-in for CuPy, no GPU")
    ap.add_argument("--skip-tests", action="store_true")
    args = ap.parse_args()
    from fastgrok.kernels import cuda

    import fastgrok as fg

    if not args.logic and cuda.gpu_status() != "ok":
        print(f"no usable CUDA GPU with CuPy ({cuda.gpu_status()}): nothing to check (try --logic)")
        return 2
    tests_ok = True
    if not args.skip_tests:
        tests_ok, _ = run_tests(args.logic)
    if args.logic:
        from fastgrok.engines.ops_cupy import CupyOps
        from fastgrok.testing import StandInCupy

        t0 = time.perf_counter()
        ops = CupyOps(kernels=cuda.CudaKernels(cupy=StandInCupy()), xp=StandInCupy())
        print(f"CUDA module (stand-in) compiled in {time.perf_counter() - t0:.2f} s")
        step_table(ops, [(20, 30, 5000), (10, 20, 2000)], rounds=2)
        presets("numba", runs=2)
        backend = "standin"
    else:
        t0 = time.perf_counter()
        times = fg.warmup(("cupy",))
        print(f"CUDA module compiled and its kernels fetched in {times['cupy']:.1f} s "
              f"(wall {time.perf_counter() - t0:.1f} s)")
        from fastgrok.engines import get_ops

        ops = get_ops("cupy")
        step_table(ops, [(400, 1000, 1_000_000), (200, 1000, 40_000)], rounds=5)
        presets("cupy", runs=None)
        backend = "cupy"
    claims = readme_claims(ops, backend)
    print()
    for claim, ok in [("the GPU tests pass with no test skipped", tests_ok), *claims]:
        print(f"{'CONFIRMED' if ok else 'NOT CONFIRMED'}: {claim}")
    verified = tests_ok and all(ok for _, ok in claims)
    if args.logic:
        print(f"\nverdict (stand-in, not a GPU): the check's logic {'runs' if verified else 'FAILS'}")
    else:
        print("\nverdict: " + ("the CuPy engines are verified on this GPU; set "
                               "fastgrok.plan.CUPY_VERIFIED = True" if verified else
                               "NOT verified; keep fastgrok.plan.CUPY_VERIFIED = False"))
    return 0 if verified else 1


if __name__ == "__main__":
    sys.exit(main())
