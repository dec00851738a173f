"""Reduced representation at scale: the paper-fig1-left preset at p = 4e4 ... 1e12.

    python bench/bench_reduced.py [--runs R] [--ps 4e4,1e6,1e9,1e12] [--full]

Each p runs in a fresh process (so its peak RSS is its own); --full adds the full
representation at p = 4e4 for comparison. Also a pytest-benchmark file:
    python -m pytest bench/bench_reduced.py
"""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

_CHILD = """
import resource, time
import fastgrok as fg
cfg = fg.preset("paper-fig1-left", p={p}, runs={runs}, representation={rep!r})
t0 = time.perf_counter()
res = fg.run(cfg, progress=False)
wall = time.perf_counter() - t0
s = res.summary().set_index("step")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print("RESULT", f"{{wall:.1f}}", f"{{peak:.2f}}", res.info["representation"], res.info["dtype"],
      res.info["working_p"], f"{{s.loc[1, 'test_acc_median']:.3f}}", f"{{s.loc[cfg.steps, 'test_acc_median']:.3f}}")
"""


def measure(p, runs, rep="auto"):
    out = subprocess.run([sys.executable, "-c", _CHILD.format(p=p, runs=runs, rep=rep)],
                         capture_output=True, text=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
    if not line:
        raise RuntimeError(out.stderr[-500:])
    return line[0].split()[1:]


@pytest.mark.parametrize("size", ["p=4e4", "p=1e9", "p=1e12"])
def test_paper_left_preset_reduced(benchmark, size):
    import fastgrok as fg

    cfg = fg.preset("paper-fig1-left", p=int(float(size[2:])), runs=10)
    benchmark.pedantic(lambda: fg.run(cfg, progress=False), rounds=1, iterations=1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--ps", default="4e4,1e6,1e9,1e12")
    ap.add_argument("--full", action="store_true", help="also the full representation at p = 4e4")
    args = ap.parse_args()
    cases = [(int(float(p)), "auto") for p in args.ps.split(",")]
    if args.full:
        cases.insert(0, (40_000, "full"))
    print(f"paper-fig1-left, {args.runs} runs x 50 steps, 200 test samples at every step")
    print(f"{'p':>8} {'repr':>8} {'dtype':>8} {'work dim':>9} {'wall s':>7} {'peak GiB':>9} "
          f"{'test@1':>7} {'test@50':>7}")
    for p, rep in cases:
        wall, peak, rep_used, dtype, wp, t1, tl = measure(p, args.runs, rep)
        print(f"{p:8.0e} {rep_used:>8} {dtype:>8} {wp:>9} {float(wall):7.1f} {float(peak):9.2f} "
              f"{t1:>7} {tl:>7}")
