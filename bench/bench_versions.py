"""The default paths of two fastgrok installs, timed side by side (before/after a change).

    pip install --no-deps --target /tmp/old-fastgrok <old checkout>
    python bench/bench_versions.py --other /tmp/old-fastgrok [--rounds 3] [--case left]
                                   [--threads N]

Each case runs in a fresh process per round, the two installs alternating, so a noisy spell on
the shared machine hits both alike; the table gives the best and the median wall time of each
and their ratios. The kernels are compiled (or loaded) before timing. ``--threads``: the runs'
n_threads (default: every CPU of the process).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

CASES = {
    "left panel (gram, 100 runs x 50 steps)": "fg.preset('paper-fig1-left')",
    "right panel, 20 runs x 1000 steps": "fg.preset('paper-fig1-right', runs=20, steps=1000)",
    "right panel, 20 runs x 5000 steps (its length)": "fg.preset('paper-fig1-right', runs=20)",
    "right panel late: 2 runs x 40000 steps (blocks)":
        "fg.preset('paper-fig1-right', runs=2, steps=40000, snapshot_steps=(0, 1000))",
    "direct/numba, 200x1000x40k, 20 runs x 5 steps":
        "fg.preset('paper-fig1-left', runs=20, steps=5, method='direct', representation='full')",
    "direct/numba, 200x1000x40k, 4 runs x 5 steps":
        "fg.preset('paper-fig1-left', runs=4, steps=5, method='direct', representation='full')",
    "full representation (gram, 100 runs x 50 steps, p = 40 000)":
        "fg.preset('paper-fig1-left', representation='full')",
}

_CHILD = """
import time, fastgrok as fg
cfg = {cfg}
fg.run(cfg.replace(runs=1, steps=2), progress=False)  # compile / load kernels
t0 = time.perf_counter()
fg.run(cfg, progress=False, n_threads={threads})
print("RESULT", time.perf_counter() - t0, fg.__file__)
"""


def child_results(code, install=None, args=()):
    """Run ``code`` in a fresh Python with ``install`` first on its path (None: this install).

    Returns the fields of its lines that start with RESULT, each line's last field being the
    fastgrok it imported (``fg.__file__``; asserted to come from ``install``).
    """
    env = dict(os.environ)
    if install:
        env["PYTHONPATH"] = install + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd="/",
                         capture_output=True, text=True, check=True).stdout
    rows = [ln.split()[1:] for ln in out.splitlines() if ln.startswith("RESULT")]
    for row in rows:
        assert (install is not None) == row[-1].startswith(os.path.abspath(install or "/-")), row
    return rows


def alternating(rounds, other, measure):
    """{"this": [...], "other": [...]}: ``measure(install)`` per round for each install.

    The installs alternate which goes first, so that a noisy spell hits both alike
    (``install`` None: this one).
    """
    got = {"this": [], "other": []}
    order = (("other", other), ("this", None))
    for r in range(rounds):
        for who, install in (order if r % 2 == 0 else order[::-1]):
            got[who].append(measure(install))
    return got


def _time(cfg, path, threads=None):
    row = child_results(_CHILD.format(cfg=cfg, threads=threads), path)[0]
    return float(row[0]), row[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--other", required=True, help="a folder holding another install of fastgrok")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--case", action="append", default=None,
                    help="only the cases whose name contains this (repeatable)")
    ap.add_argument("--threads", type=int, default=None, help="the runs' n_threads")
    args = ap.parse_args()
    print(f"{'case':<48} {'this s':>8} {'other s':>8} {'other/this':>10}   (best; median)")
    for name, cfg in CASES.items():
        if args.case and not any(c in name for c in args.case):
            continue
        times = alternating(args.rounds, args.other,
                            lambda path, cfg=cfg: _time(cfg, path, args.threads)[0])
        best = {who: min(ts) for who, ts in times.items()}
        median = {who: statistics.median(ts) for who, ts in times.items()}
        print(f"{name:<48} {best['this']:8.2f} {best['other']:8.2f} "
              f"{best['other'] / best['this']:10.3f}   ({median['this']:.2f} {median['other']:.2f} "
              f"{median['other'] / median['this']:.3f})")


if __name__ == "__main__":
    main()
