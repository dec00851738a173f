"""Every run behind docs/reproduction.md, and its figures and tables, in one command.

    python bench/reproduction.py [--out repro/] [--docs docs/reproduction] [--runs 100]

Runs (100 runs each, the paper's sizes):
  left      fastgrok run                                    (Figure 1 left, Figures 2 and 3)
  stated    fastgrok run --preset paper-fig1-right          (Figure 1 right and Figure 4, as the
                                                              paper's text states them)
  plotted   fastgrok run --preset paper-fig1-right-plotted  (alpha = 2e-16)
  omega/2   fastgrok run --preset paper-fig1-right --init-scale 5e-16
  exp loss  fastgrok run --preset paper-fig1-right --loss exponential
each saved under OUT/<name>/ (history, projections and figures), then compares each with the
paper's Figure 1 medians (bench/compare_fig1.py: tables with 95% bootstrap intervals, overlay
figures) and copies the figures into DOCS. A run whose folder already holds a history.csv of
the same config is not rerun.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

RUNS = {
    "left": ("paper-fig1-left", {}),
    "stated": ("paper-fig1-right", {}),
    "plotted": ("paper-fig1-right-plotted", {}),
    "omega_half": ("paper-fig1-right", {"init_scale": 5e-16}),
    "exponential": ("paper-fig1-right", {"loss": "exponential"}),
}


def main(argv=None):
    import pandas as pd

    import fastgrok as fg

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from compare_fig1 import compare, overlay

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="repro")
    ap.add_argument("--docs", default="docs/reproduction")
    ap.add_argument("--runs", type=int, default=100)
    args = ap.parse_args(argv)
    os.makedirs(args.docs, exist_ok=True)
    fg.warmup()
    tables = {}
    for name, (preset, over) in RUNS.items():
        cfg = fg.preset(preset, runs=args.runs, **over)
        folder = os.path.join(args.out, name)
        done = os.path.join(folder, "config.json")
        if os.path.exists(done) and json.load(open(done))["config"] == cfg.to_dict():
            print(f"{name}: kept {folder}")
        else:
            t0 = time.perf_counter()
            res = fg.run(cfg, progress=False)
            res.save(folder)
            print(f"{name}: {preset} {over or ''} trained in {res.info['wall_s']:.1f} s "
                  f"({time.perf_counter() - t0:.1f} s with saving)")
        h = pd.read_csv(os.path.join(folder, "history.csv"))
        panel = "left" if name == "left" else "right"
        tables[name] = d = compare(h, panel)
        worst = d.loc[d.gap.idxmax()]
        print(f"  against the paper: largest gap {worst.gap:.3f} ({worst.metric}, t = {worst.t}), "
              f"mean gap {d.gap.mean():.3f} over {len(d)} points")
        overlay(h, panel, os.path.join(args.docs, f"fig1_{name}.png"),
                f"Figure 1 {panel}: fastgrok ({name}, {h.run.nunique()} runs) and the paper's medians")
        for fig in ("fig_projections.png", "fig_plane.png"):
            if os.path.exists(os.path.join(folder, fig)) and name in ("left", "stated", "plotted"):
                shutil.copy(os.path.join(folder, fig), os.path.join(args.docs, f"{name}_{fig}"))
    for name, d in tables.items():
        print(f"\n{name}\n\n| metric | t | paper | fastgrok median [95% interval] | gap |")
        print("| --- | --- | --- | --- | --- |")
        for row in d.itertuples():
            print(f"| {row.metric.split('_')[0]} | {row.t} | {row.paper:.3f} | {row.median:.3f} "
                  f"[{row.ci_lo:.3f}, {row.ci_hi:.3f}] | {row.gap:.3f} |")
    if all(k in tables for k in ("stated", "plotted")):
        print("\n| right panel | largest gap | mean gap |\n| --- | --- | --- |")
        for name in ("stated", "plotted", "omega_half", "exponential"):
            d = tables[name]
            print(f"| {name} | {d.gap.max():.3f} | {d.gap.mean():.3f} |")


if __name__ == "__main__":
    main()
