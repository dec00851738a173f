"""Research loops side by side: fastgrok against the same loop in plain PyTorch, in one run.

    python bench/bench_research.py            # prints the table for docs/performance.md

1. A loop of fits of the size the leaky-ReLU benign-overfitting papers run: n = 100, p = 1000,
   m = 64, hinge loss, leaky ReLU, label noise 0.1, trained to interpolation (stop rule), one fit
   per seed, at four step sizes (interpolation after a few, tens, hundreds and thousands of
   steps);
   fastgrok's ``fit(stop="interpolation")`` against a PyTorch autograd loop that checks the
   training error after every step. Reports the time per fit, the ratio, and fit's fixed cost
   (a fit of 1 step: planning, the build, one step, the result).
2. One step at (n, m, p) = (100, 100, 5000) in float32: ``fg.step(return_outputs=True)`` against
   one PyTorch autograd step (forward, backward, SGD).
Medians of the repeats; torch uses as many threads as fastgrok.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

import fastgrok as fg
from fastgrok.kernels.threads import default_threads


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_fit(torch, X, y, W0, a, lr, leak, max_steps):
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    W = torch.from_numpy(W0.copy()).requires_grad_()
    at = torch.from_numpy(a)
    opt = torch.optim.SGD([W], lr=lr)
    for t in range(1, max_steps + 1):
        opt.zero_grad()
        f = torch.nn.functional.leaky_relu(Xt @ W.T, leak) @ at
        torch.relu(1 - yt * f).mean().backward()
        opt.step()
        with torch.no_grad():
            if bool(((yt * (torch.nn.functional.leaky_relu(Xt @ W.T, leak) @ at)) > 0).all()):
                return t
    return -1


def fit_loop(seeds=10, n=100, p=1000, m=64, lr=0.1, leak=0.1, max_steps=5000):
    import torch

    torch.set_num_threads(default_threads())
    data = [fg.linear_clusters(n, p, mu_norm=3.0, noise_rate=0.1, seed=s)
            for s in range(seeds)]
    kw = dict(m=m, lr=lr, activation="leaky_relu", leak=leak, loss="hinge", init_scale=1e-3,
              dtype="float64")
    a = np.where(np.arange(m) < m // 2, 1.0, -1.0) / np.sqrt(m)
    W0s = [np.random.default_rng(s).standard_normal((m, p)) * 1e-3 for s in range(seeds)]
    stops = {}

    def fg_loop():
        for s, ds in enumerate(data):
            res = fg.fit(ds.X, ds.y, steps=max_steps, stop="interpolation", W0=W0s[s], a=a, **kw)
            stops.setdefault("fastgrok", []).append(int(res.stop_steps[0]))

    def torch_loop():
        for s, ds in enumerate(data):
            stops.setdefault("torch", []).append(torch_fit(torch, ds.X, ds.y, W0s[s], a, lr, leak,
                                                           max_steps))

    def overhead():
        for s, ds in enumerate(data):
            fg.fit(ds.X, ds.y, steps=1, W0=W0s[s], a=a, **kw)

    fg_loop()  # compile and warm
    t_fg = _median_time(fg_loop, 3) / seeds
    t_torch = _median_time(torch_loop, 3) / seeds
    t_over = _median_time(overhead, 3) / seeds
    same = stops["fastgrok"][:seeds] == stops["torch"][:seeds]
    print(f"fit loop: n={n} p={p} m={m} lr={lr:g} hinge leaky_relu({leak}), to interpolation, "
          f"{seeds} seeds; median stop step {int(np.median(stops['fastgrok'][:seeds]))} "
          f"(torch's stop steps the same: {same})")
    print(f"  fastgrok fit   {t_fg * 1e3:8.2f} ms per fit")
    print(f"  PyTorch loop   {t_torch * 1e3:8.2f} ms per fit   ratio torch/fastgrok "
          f"{t_torch / t_fg:6.1f}")
    print(f"  fit of 1 step  {t_over * 1e3:8.2f} ms (planning, build, one step, result)")


def step_vs_torch(n=100, m=100, p=5000, repeats=5, k=100):
    import torch

    torch.set_num_threads(default_threads())
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, p)).astype(np.float32)
    y = np.where(rng.random(n) < 0.5, 1.0, -1.0).astype(np.float32)
    W = (rng.standard_normal((m, p)) * 1e-3).astype(np.float32)
    a = (np.where(rng.random(m) < 0.5, 1.0, -1.0) / np.sqrt(m)).astype(np.float32)
    Xt, yt, at = torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(a)
    Wt = torch.from_numpy(W.copy()).requires_grad_()
    opt = torch.optim.SGD([Wt], lr=0.1)

    def fg_steps():
        for _ in range(k):
            fg.step(X, y, W, a, lr=0.1, return_outputs=True)

    def torch_steps():
        for _ in range(k):
            opt.zero_grad()
            f = torch.relu(Xt @ Wt.T) @ at
            torch.nn.functional.softplus(-yt * f).mean().backward()
            opt.step()

    fg_steps()
    torch_steps()
    t_fg = _median_time(fg_steps, repeats) / k
    t_torch = _median_time(torch_steps, repeats) / k
    print(f"one step (n, m, p) = ({n}, {m}, {p}) float32:")
    print(f"  fg.step(return_outputs=True) {t_fg * 1e3:7.3f} ms")
    print(f"  PyTorch autograd step        {t_torch * 1e3:7.3f} ms   ratio torch/fastgrok "
          f"{t_torch / t_fg:5.2f}")


if __name__ == "__main__":
    for lr in (1e-1, 1e-3, 1e-4, 1e-5):
        fit_loop(lr=lr, max_steps=20_000)
    step_vs_torch()
