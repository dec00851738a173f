"""Step functions of every engine on the same float32 problem, for the benchmarks.

Each ``make_*`` returns a zero-argument callable that performs one training step (forward,
logistic-loss gradient, weight update) in steady state, so timings compare like with like.
"""
from __future__ import annotations

import numpy as np

SIZES = {  # name: (n, m, p)
    "200x1000x40k": (200, 1000, 40_000),
    "400x1000x100k": (400, 1000, 100_000),
    "400x1000x1M": (400, 1000, 1_000_000),
    "100x100x1M": (100, 100, 1_000_000),
}


def parse_size(text):
    """(n, m, p) from a size written NxMxP, each with an optional k/M/G suffix or in
    scientific notation: "400x1000x1M", "200x1000x40k", "64x128x3e6"."""
    parts = text.lower().split("x")
    if len(parts) != 3:
        raise ValueError(f"size {text!r}: expected NxMxP, e.g. 400x1000x1M")
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}
    out = []
    for part in parts:
        mult = scale.get(part[-1:], 1)
        num = part[:-1] if mult != 1 else part
        try:
            value = float(num) * mult
        except ValueError:
            raise ValueError(f"size {text!r}: {part!r} is not a number") from None
        if value < 1 or value != int(value):
            raise ValueError(f"size {text!r}: {part!r} is not a positive integer")
        out.append(int(value))
    return tuple(out)


def problem(n, m, p, dtype=np.float32, seed=0):
    g = np.random.default_rng(seed)
    X = np.empty((n, p), dtype)
    for i in range(n):  # row by row: no float64 temporary of size n x p
        X[i] = g.standard_normal(p, dtype=np.float32)
    W = np.empty((m, p), dtype)
    for j in range(m):
        W[j] = 1e-3 * g.standard_normal(p, dtype=np.float32)
    y = np.where(g.random(n) < 0.5, 1.0, -1.0)
    a = np.where(g.random(m) < 0.5, 1.0, -1.0) / np.sqrt(m)
    return X, y, W, a


def make_numpy(X, y, W, a, lr=1e-6, n_threads=None):
    from fastgrok import reference

    return lambda: reference.step(X, y, W, a, lr), None


def _make_fastgrok(method, backend, X, y, W, a, lr, n_threads):
    """A fastgrok engine's step. Its runtime (single-threaded BLAS inside fastgrok's own pool) is
    entered around each step only: held open, it would also throttle the GEMM ceiling and any
    other engine timed in the same process to one BLAS thread."""
    from fastgrok.engines import ENGINES
    from fastgrok.sources import ArraySource

    cls = ENGINES[(method, backend)]
    with cls.runtime(n_threads) as nt:
        eng = cls([ArraySource(X, y, W.shape[0], W0=W, a=a)], lr, str(W.dtype), n_threads=nt)

    def step():
        with cls.runtime(n_threads):
            eng.step(prepare_eval=False)

    return step, None


def make_numba(X, y, W, a, lr=1e-6, n_threads=None):
    return _make_fastgrok("direct", "numba", X, y, W, a, lr, n_threads)


def make_torch(X, y, W, a, lr=1e-6, n_threads=None, device="cpu"):
    """A PyTorch step: forward, logistic loss, autograd backward, SGD update (on ``device``)."""
    import torch

    if n_threads:
        torch.set_num_threads(n_threads)
    to = lambda v: torch.from_numpy(np.ascontiguousarray(v, dtype=X.dtype)).to(device)  # noqa: E731
    Xt, yt, at = to(X), to(y), to(a)
    Wt = to(W).requires_grad_(True)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        f = torch.relu(Xt @ Wt.T) @ at
        loss = torch.nn.functional.softplus(-yt * f).mean()
        Wt.grad = None
        loss.backward()
        with torch.no_grad():
            Wt.sub_(lr * Wt.grad)
        sync()

    return step, None


def make_gemm(X, W):
    """The ceiling: one float32 GEMM X W^T (2 n m p flops) with the BLAS NumPy uses."""
    return lambda: X @ W.T


ENGINE_MAKERS = {"numpy": make_numpy, "numba": make_numba, "torch": make_torch}


def torch_available():
    try:
        import torch  # noqa: F401

        return True
    except ImportError:
        return False


def make_gram(X, y, W, a, lr=1e-6, n_threads=None, backend="numba"):
    """One gram step of one run (the per-step cost; the build is timed separately)."""
    return _make_fastgrok("gram", backend, X, y, W, a, lr, n_threads)


ENGINE_MAKERS["gram"] = make_gram
