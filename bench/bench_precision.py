"""float32 against float64 over a long run: the long study's first point (alpha = 1e-12, 10^5
steps, m = 100), 3 runs each, same seed. Prints how many evaluated accuracies differ and the
largest relative difference of the losses and projections.

    python bench/bench_precision.py [--runs 3] [--steps 100000] [--lr 1e-12]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main():
    import fastgrok as fg
    from fastgrok.studies import STUDIES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--lr", type=float, default=1e-12)
    args = ap.parse_args()
    hist = {}
    for dt in ("float32", "float64"):
        cfg = STUDIES["long"].base(runs=args.runs, steps=args.steps, lr=args.lr, dtype=dt)
        t0 = time.perf_counter()
        hist[dt] = fg.run(cfg, progress=False).history
        print(f"{dt}: {time.perf_counter() - t0:.1f} s")
    a, b = hist["float32"], hist["float64"]
    print(f"{len(a)} evaluated (run, step) rows")
    for c in ("train_acc", "test_acc"):
        print(f"{c:<10} rows that differ: {(a[c] != b[c]).sum()}")
    for c in ("train_loss", "test_loss", "pos_mu1", "pos_mu2"):
        print(f"{c:<10} max relative difference: {(np.abs(a[c] - b[c]) / np.abs(b[c])).max():.2e}")


if __name__ == "__main__":
    main()
