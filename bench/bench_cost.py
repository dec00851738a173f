"""What one experiment costs against p: the left panel (100 runs x 50 steps, n = n_test = 200,
m = 1000) from p = 10^3 to 10^12, per engine, in one run of this script.

    python bench/bench_cost.py [--figure docs/cost_vs_p.png] [--max-p 1e6] [--save m.json]
    python bench/bench_cost.py --load m.json --figure docs/cost_vs_p.png   # redraw, no timing

* PyTorch (CPU, when installed) and fastgrok's direct/numba engine: one step timed at each
  measured p (after a warm-up step), multiplied by 100 runs x 51 passes; beyond the largest
  measured p (or beyond memory) projected in proportion to p, drawn dashed.
* gram, full representation: one run's streamed build timed at each measured p, times 100,
  plus the 100 x 50 gram steps (which do not depend on p), timed once.
* gram, reduced representation: the whole experiment timed (best of three); it costs the same at every
  p >= n + n_test + m + 2.

The table prints seconds per experiment and each engine's ratio to the reduced one.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from _engines import make_numba, make_torch, problem, torch_available

N, N_TEST, M, RUNS, STEPS = 200, 200, 1000, 100, 50


def _step_seconds(make, p, rounds=2):
    X, y, W, a = problem(N, M, p)
    step, _ = make(X, y, W, a, lr=1e-12)
    step()  # compile / warm up
    best = np.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return best


def _build_seconds(p):
    """One run's gram build at dimension p (data drawn block by block, products streamed)."""
    from fastgrok.kernels.threads import threads

    import fastgrok as fg
    from fastgrok.engines import get_engine
    from fastgrok.sources import GeneratedSource

    cfg = fg.preset("paper-fig1-left", p=int(p), runs=1, representation="full")
    with threads() as nt:
        t0 = time.perf_counter()
        get_engine("gram", "numba")([GeneratedSource(cfg, 0)], cfg.lr, "float32", n_threads=nt)
        return time.perf_counter() - t0


def _experiment_seconds(**changes):
    import fastgrok as fg

    cfg = fg.preset("paper-fig1-left", **changes)
    fg.run(cfg.replace(runs=1, steps=2), progress=False)  # compile / load
    best = np.inf
    for _ in range(3):  # best of three: this machine's speed varies by about 10% between runs
        t0 = time.perf_counter()
        fg.run(cfg, progress=False)
        best = min(best, time.perf_counter() - t0)
    return best


def measure(max_p=1e6):
    ps = [p for p in (1e3, 1e4, 1e5, 1e6, 1e7) if p <= max_p]
    out = {"p": ps}
    passes = RUNS * (STEPS + 1)
    engines = {"fastgrok direct/numba": make_numba}
    if torch_available():
        engines["PyTorch (CPU)"] = make_torch
    for name, make in engines.items():
        out[name] = [passes * _step_seconds(make, int(p)) for p in ps]
        print(f"{name}: " + ", ".join(f"p={p:g}: {t:.1f} s" for p, t in zip(ps, out[name])), flush=True)
    reduced = _experiment_seconds(representation="reduced")
    # The gram steps of the experiment: the reduced run minus its (small) build, measured as
    # the reduced run itself; the full representation adds RUNS builds at dimension p.
    builds = [RUNS * _build_seconds(p) for p in ps]
    out["fastgrok gram (full representation)"] = [b + reduced for b in builds]
    out["fastgrok gram (reduced representation)"] = [reduced] * len(ps)
    print("gram builds (100 runs): " + ", ".join(f"p={p:g}: {b:.1f} s" for p, b in zip(ps, builds)))
    print(f"reduced experiment: {reduced:.1f} s")
    return out


def report(out, figure=None):
    ps = np.array(out["p"])
    grid = np.logspace(3, 12, 10)
    names = [k for k in out if k != "p"]
    print(f"\nseconds per experiment (left panel: {RUNS} runs x {STEPS} steps, n={N}, m={M}); "
          "projected (linear in p) beyond the measured range")
    print(f"{'p':>8} " + " ".join(f"{k[:28]:>29}" for k in names))
    red = out["fastgrok gram (reduced representation)"][0]
    for p in grid:
        cells = []
        for k in names:
            v = np.array(out[k])
            t = v[-1] * p / ps[-1] if p > ps[-1] else np.interp(np.log(p), np.log(ps), v)
            if "reduced" in k:
                t = red
            mark = "*" if p > ps[-1] and "reduced" not in k else " "
            cells.append(f"{t:>12.3g} s{mark} ({t / red:>9.3g}x)")
        print(f"{p:>8.0e} " + " ".join(f"{c:>29}" for c in cells))
    print("* projected")
    if figure:
        from fastgrok.plots import _pyplot

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for i, k in enumerate(names):
            v = np.array(out[k])
            color = f"C{i}"
            if "reduced" in k:
                ax.plot([1e3, 1e12], [red, red], "-", color=color, label=k)
                continue
            ax.plot(ps, v, "-o", color=color, label=k, ms=4)
            ax.plot([ps[-1], 1e12], [v[-1], v[-1] * 1e12 / ps[-1]], "--", color=color)
        ax.axvline(40_000, color="gray", linestyle=":", linewidth=1)
        ax.text(40_000, 0.98, " the paper's p", transform=ax.get_xaxis_transform(), fontsize=7,
                va="top")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("input dimension p")
        ax.set_ylabel(f"seconds per experiment ({RUNS} runs x {STEPS} steps, 2 cores)")
        ax.set_title("cost of the left panel against p (dashed: projected, linear in p)",
                     fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(figure, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-p", type=float, default=1e6)
    ap.add_argument("--figure", default=None)
    ap.add_argument("--save", default=None, help="write the measurements to this JSON file")
    ap.add_argument("--load", default=None, help="report these saved measurements instead")
    args = ap.parse_args(argv)
    import json

    if args.load:
        with open(args.load) as fh:
            out = json.load(fh)
    else:
        out = measure(args.max_p)
    if args.save:
        with open(args.save, "w") as fh:
            json.dump(out, fh, indent=1)
    report(out, args.figure)


if __name__ == "__main__":
    main()
