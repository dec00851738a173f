"""Sweep overhead: an 8 x 8 grid (SNR x p/n), 20 runs per point, 1000 steps, local processes vs a
2-worker Dask LocalCluster, on the quick preset's sizes.

    python bench/bench_sweep.py [--runs 20] [--steps 1000] [--size 8]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def main():
    import fastgrok as fg

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--size", type=int, default=8)
    args = ap.parse_args()
    base = fg.preset("quick", runs=args.runs, steps=args.steps, snapshot_steps=(0,))
    n = base.n
    # SNR: ||mu|| around the paper's 2.5 sqrt(p/n) at p/n = 200; p/n from 10 to 1000
    grid = {"mu_norm": [float(v) for v in np.geomspace(5, 80, args.size).round(2)],
            "p": [int(v) for v in (n * np.geomspace(10, 1000, args.size)).round(-1)]}
    times = {}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        local = fg.sweep(base, grid, out=f"{d}/local", progress=False)
        times["local processes"] = time.perf_counter() - t0
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            t0 = time.perf_counter()
            dask = fg.sweep(base, grid, out=f"{d}/dask", executor=client, progress=False)
            times["dask LocalCluster (2 workers)"] = time.perf_counter() - t0
    same = local.table.equals(dask.table)
    pts = len(local.points)
    print(f"{args.size}x{args.size} grid (mu_norm x p), {args.runs} runs x {args.steps} steps per "
          f"point, n={n} m={base.m} n_test={base.n_test}; identical tables: {same}")
    for k, v in times.items():
        print(f"{k:<32} {v:7.1f} s  ({v / pts:.2f} s per point)")
    print(f"dask overhead over local: {times['dask LocalCluster (2 workers)'] / times['local processes'] - 1:+.1%}")


if __name__ == "__main__":
    main()
