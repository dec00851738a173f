"""The gram method's linear regime (docs/design.md 2.4): dense against incremental steps.

pytest-benchmark (a block of 64 steps of 4 right-panel runs, dense and incremental side by side):
    python -m pytest bench/bench_linear.py --benchmark-group-by=param:m

The table (milliseconds per run-step and pattern changes per step, m = 100 and 1000, at
several step indices of the right panel; ``--figure`` also draws the cost against the step):
    python bench/bench_linear.py [--runs R] [--steps T] [--figure PATH]
"""
from __future__ import annotations

import argparse
import time

import pytest


def engines(m, runs, steps_per_call=64):
    """(dense, incremental) gram engines over the same right-panel runs (reduced, float32)."""
    import fastgrok as fg
    from fastgrok import tunables
    from fastgrok.engines import GramEngine, NumbaOps
    from fastgrok.sources import ReducedSource

    cfg = fg.preset("paper-fig1-right", runs=runs, m=m)
    srcs = [ReducedSource(cfg, r) for r in range(runs)]
    out = []
    old = tunables.GRAM_LINEAR_REGIME
    try:
        for flag in (False, True):
            tunables.GRAM_LINEAR_REGIME = flag  # read when the engine is built
            out.append(GramEngine(srcs, cfg.lr, "float32", ops=NumbaOps()))
    finally:
        tunables.GRAM_LINEAR_REGIME = old
    return out


@pytest.mark.parametrize("kind", ["dense", "incremental"])
@pytest.mark.parametrize("m", [100, 1000])
def test_steps(benchmark, m, kind):
    from fastgrok.kernels.threads import threads

    dense, incr = engines(m, 4)
    eng = dense if kind == "dense" else incr
    with threads():
        eng.advance(64)  # enter the regime, compile
        benchmark.pedantic(lambda: eng.advance(64), rounds=3, iterations=1)


def table(runs=8, steps=5000, marks=(1, 10, 100, 1000, 2000, 4900), figure=None):
    """Per run-step cost (one thread) of dense and incremental steps along the right panel's
    trajectory."""
    from fastgrok.kernels.threads import threads

    marks = [t for t in marks if t + 64 <= steps]
    rows = []
    curves = {}
    for m in (100, 1000):
        dense, incr = engines(m, runs)
        for name, eng in (("dense", dense), ("incremental", incr)):
            t, xs, ys = 0, [], []
            with threads():
                eng.advance(1)  # compile / load, and enter the regime
                t = 1
                for mark in marks:
                    # Time the block of (up to) 64 steps that starts at each mark.
                    if mark > t:
                        eng.advance(mark - t)
                        t = mark
                    k = 64
                    c0 = eng.counters().get("pattern_changes", 0)
                    s0 = eng.counters().get("linear_run_steps", 0)
                    t0 = time.perf_counter()
                    eng.advance(k)
                    dt = (time.perf_counter() - t0) / (k * runs)
                    t += k
                    st = eng.counters()
                    lin = st.get("linear_run_steps", 0) - s0
                    changes = (st.get("pattern_changes", 0) - c0) / lin if lin else float("nan")
                    rows.append((m, name, mark, 1e3 * dt, changes, lin / (k * runs)))
                    xs.append(mark)
                    ys.append(dt)
            curves[(m, name)] = (xs, ys)
    print(f"right panel, {runs} runs, float32, one thread: milliseconds per run-step (blocks of "
          "64 steps starting at each step index)")
    print(f"{'m':>5} {'steps':<12} {'t':>6} {'ms/run-step':>12} {'changes/step':>13} {'incremental':>12}")
    for m, name, mark, ms, ch, frac in rows:
        print(f"{m:>5} {name:<12} {mark:>6} {ms:>12.3f} {ch:>13.0f} {frac:>12.0%}")
    for m in (100, 1000):
        d = {r[2]: r[3] for r in rows if r[0] == m and r[1] == "dense"}
        i = {r[2]: r[3] for r in rows if r[0] == m and r[1] == "incremental"}
        print(f"m = {m}: dense / incremental per step: "
              + ", ".join(f"t={t}: {d[t] / i[t]:.1f}x" for t in d))
    if figure:
        from fastgrok.plots import _pyplot

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6, 4))
        for (m, name), (xs, ys) in curves.items():
            ax.plot(xs, ys, "-o" if name == "dense" else "--s", label=f"{name}, m = {m}",
                    color="C0" if m == 1000 else "C1")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step index (right panel)")
        ax.set_ylabel("seconds per run-step (one thread)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(figure, dpi=120)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--figure", default=None)
    args = ap.parse_args(argv)
    table(args.runs, args.steps, figure=args.figure)


if __name__ == "__main__":
    main()
