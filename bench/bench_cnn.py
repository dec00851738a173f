"""The two-layer CNN on patches: fastgrok against the same training in plain PyTorch, one run.

    python bench/bench_cnn.py            # prints the table for docs/performance.md

The preset kou2023-relu-cnn's training (two patches, ReLU, logistic loss, a = +-1/m, 2000
full-batch steps) on one draw of its data at d = 10^4 and 10^5 (the full representation, so
both train on the same arrays), float32: fastgrok's fit (gram) against a PyTorch autograd loop
over (n, P, d) tensors, and fastgrok's direct method. Wall time of each (median of the repeats),
the ratio, and the largest difference of the final outputs relative to their scale. torch
uses as many threads as fastgrok.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

import fastgrok as fg
from fastgrok.kernels.threads import default_threads


def _median_time(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def torch_cnn(torch, X, y, W0, a, lr, steps):
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    W = torch.from_numpy(W0.copy()).requires_grad_()
    at = torch.from_numpy(a)
    opt = torch.optim.SGD([W], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        f = (torch.relu(Xt @ W.T) @ at).sum(dim=1)  # (n, P, m) -> (n, P) -> (n,)
        torch.nn.functional.softplus(-yt * f).mean().backward()
        opt.step()
    with torch.no_grad():
        return (torch.relu(Xt @ W.T) @ at).sum(dim=1).numpy()


def main(repeats=3, steps=2000):
    import torch

    torch.set_num_threads(default_threads())
    base = fg.preset("kou2023-relu-cnn")
    m = base.m
    a = np.where(np.arange(m) < m // 2, 1.0, -1.0).astype(np.float32) / m
    print("| d | steps | fastgrok fit (gram) | fastgrok fit (direct) | PyTorch | torch / gram | "
          "torch / direct | outputs, max rel. difference |")
    print("|---|---|---|---|---|---|---|---|")
    for d in (10_000, 100_000):
        ds = fg.patch_data(base.n, d, n_test=1, patches=2, mu_norm=0.032 * np.sqrt(d),
                           noise_rate=0.1, seed=0, dtype="float32")
        W0 = (1e-6 * np.sqrt(1e6 / d) * np.random.default_rng(0).standard_normal((m, d))
              ).astype(np.float32)
        lr = 2e-5 * 1e6 / d
        kw = dict(m=m, lr=lr, steps=steps, W0=W0, a=a, dtype="float32", snapshot_steps=[])
        t_gram, res = _median_time(lambda: fg.fit(ds.X, ds.y, method="gram", **kw), repeats)
        t_direct, _ = _median_time(lambda: fg.fit(ds.X, ds.y, method="direct", **kw), 1)
        t_torch, f_torch = _median_time(lambda: torch_cnn(torch, ds.X, ds.y, W0, a, lr, steps),
                                        1 if d > 10_000 else repeats)
        f = res.decision_function(ds.X)
        diff = np.abs(f - f_torch).max() / np.abs(f).max()
        print(f"| {d:g} | {steps} | {t_gram:.2f} s | {t_direct:.2f} s | {t_torch:.2f} s | "
              f"{t_torch / t_gram:.0f} | {t_torch / t_direct:.1f} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
