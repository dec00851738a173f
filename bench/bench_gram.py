"""Gram method: per-step cost against direct and PyTorch, whole paper experiments, and scale.

pytest-benchmark (per step, engines side by side within each size):
    python -m pytest bench/bench_gram.py --benchmark-group-by=param:size

The table (per-step ratios, preset wall times against PyTorch multiplied out, p = 10^7):
    python bench/bench_gram.py [--skip-presets] [--skip-scale] [--runs R]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from _engines import ENGINE_MAKERS, problem, torch_available

SIZES = {"200x1000x40k": (200, 1000, 40_000), "400x1000x1M": (400, 1000, 1_000_000)}
STEP_ENGINES = ["gram", "numba"] + (["torch"] if torch_available() else [])


@pytest.mark.parametrize("engine", STEP_ENGINES)
@pytest.mark.parametrize("size", list(SIZES))
def test_step(benchmark, size, engine):
    n, m, p = SIZES[size]
    X, y, W, a = problem(n, m, p)
    step, close = ENGINE_MAKERS[engine](X, y, W, a)
    try:
        benchmark.pedantic(step, rounds=3, warmup_rounds=1, iterations=1)
    finally:
        if close:
            close()


def per_step_table(rounds=3):
    from bench_direct import _interleaved_best

    out = {}
    print(f"\n{'size (n x m x p)':<16} {'engine':<8} {'s/step':>10} {'torch/this':>10} {'direct/this':>11}")
    for name, (n, m, p) in SIZES.items():
        X, y, W, a = problem(n, m, p)
        fns, closers = {}, []
        for eng in STEP_ENGINES:
            step, close = ENGINE_MAKERS[eng](X, y, W, a)
            fns[eng] = step
            closers.append(close)
        try:
            best = _interleaved_best(fns, rounds)
        finally:
            for c in filter(None, closers):
                c()
        for eng, t in best.items():
            print(f"{name:<16} {eng:<8} {t:10.5f} {best.get('torch', np.nan) / t:10.1f} "
                  f"{best['numba'] / t:11.1f}")
        out[name] = best
        del X, W, fns
    return out


def presets(runs=None, torch_step=None):
    import fastgrok as fg

    print(f"\n{'preset':<18} {'runs x steps':>13} {'wall s':>8} {'torch projected s':>18} "
          f"{'torch/this':>10}  medians (test acc) at steps 1, 10, last")
    for name in ("paper-fig1-left", "paper-fig1-right"):
        cfg = fg.preset(name) if runs is None else fg.preset(name, runs=runs)
        t0 = time.perf_counter()
        res = fg.run(cfg, progress=False)
        wall = time.perf_counter() - t0
        s = res.summary().set_index("step")
        med = [s.loc[t, "test_acc_median"] for t in (1, 10, cfg.steps)]
        proj = torch_step * cfg.runs * cfg.steps if torch_step else np.nan
        print(f"{name:<18} {cfg.runs:>5} x {cfg.steps:<5} {wall:8.1f} {proj:18.0f} {proj / wall:10.1f}  "
              + ", ".join(f"{v:.3f}" for v in med) + f"   [{res.info['engine']}]")


_SCALE_CHILD = """
import resource, time, sys
import fastgrok as fg
from fastgrok.engines import ENGINES
from fastgrok.sources import GeneratedSource
cfg = fg.Config(n=200, p={p}, m=1000, n_test=200, runs=1, steps=10, lr=1e-12, method="gram",
                backend="numba")
cls = ENGINES[("gram", "numba")]
with cls.runtime() as nt:
    t0 = time.perf_counter()
    eng = cls([GeneratedSource(cfg, 0)], cfg.lr, cfg.dtype, n_threads=nt)
    build = time.perf_counter() - t0
    eng.step(); t0 = time.perf_counter()
    for _ in range(20):
        eng.step()
    step = (time.perf_counter() - t0) / 20
    (ev,) = eng.evaluate()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(f"RESULT build {{build:.1f}} s, step {{step * 1e3:.2f}} ms, peak RSS {{peak:.2f}} GiB, "
      f"train_acc after 21 steps {{ev['train_acc']:.3f}}")
"""


def scale(p=10_000_000):
    print(f"\nscale: n=200 m=1000 n_test=200 p={p:.0e} from the generator (X alone "
          f"{200 * p * 4 / 2**30:.1f} GiB, W {1000 * p * 4 / 2**30:.1f} GiB in float32)")
    out = subprocess.run([sys.executable, "-c", _SCALE_CHILD.format(p=p)], capture_output=True,
                         text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
    print(lines[0][7:] if lines else f"failed: {out.stderr[-400:]}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=None, help="override the presets' 100 runs")
    ap.add_argument("--skip-presets", action="store_true")
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--scale-p", type=int, default=10_000_000)
    args = ap.parse_args()
    print(f"threads: {len(os.sched_getaffinity(0))}")
    best = per_step_table(args.rounds)
    torch_step = best["200x1000x40k"].get("torch")
    if not args.skip_presets:
        presets(args.runs, torch_step)
    if not args.skip_scale:
        scale(args.scale_p)
