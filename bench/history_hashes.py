"""Hash the histories of every preset x method x backend (small sizes), to show that a change
which should move code without changing what it computes leaves every bit as it was.

    python bench/history_hashes.py > after.txt
    PYTHONPATH=/tmp/old-fastgrok python bench/history_hashes.py > before.txt
    diff before.txt after.txt

Each line: the case, then a SHA-256 prefix of the history's metric columns and the kept
projections (the columns both versions have, in a fixed order).
"""
from __future__ import annotations

import hashlib
import warnings

import numpy as np

import fastgrok as fg

COLUMNS = ("run", "step", "train_acc", "train_loss", "test_acc", "test_loss",
           "pos_mu1", "pos_mu2", "neg_mu1", "neg_mu2")


def digest(res) -> str:
    h = hashlib.sha256()
    for c in COLUMNS:
        h.update(np.ascontiguousarray(res.history[c].to_numpy(np.float64)).tobytes())
    for k in ("P1", "P2"):
        if k in res.projections:
            h.update(np.ascontiguousarray(res.projections[k], np.float64).tobytes())
    return h.hexdigest()[:16]


def cases():
    for name in sorted(fg.PRESETS):
        base = fg.PRESETS[name]
        for backend in ("numpy", "numba"):
            for dtype in ("float32", "float64"):
                yield (f"{name} gram/{backend} {dtype}",
                       fg.preset(name, runs=3, steps=min(base["steps"], 300), method="gram",
                                 backend=backend, dtype=dtype))
                yield (f"{name} direct/{backend} {dtype}",
                       fg.preset(name, runs=2, steps=5, m=100, method="direct",
                                 representation="full", backend=backend, dtype=dtype))
        yield (f"{name} gram/numba full",
               fg.preset(name, runs=2, steps=min(base["steps"], 60), method="gram",
                         representation="full", backend="numba"))
    yield ("population test", fg.preset("paper-fig1-left", runs=2, steps=20, m=50,
                                        population_test_samples=100, backend="numba"))


def main():
    warnings.simplefilter("ignore")
    for label, cfg in cases():
        print(f"{label:<52} {digest(fg.run(cfg, progress=False))}", flush=True)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 500))
    y = np.where(rng.random(60) < 0.5, 1.0, -1.0)
    for method in ("direct", "gram"):
        for backend in ("numpy", "numba"):
            for loss in ("logistic", "hinge", "exponential"):
                res = fg.fit(X, y, m=20, lr=0.05, steps=40, X_test=X[:10], y_test=y[:10],
                             mu1=X[0], mu2=X[1], method=method, backend=backend, loss=loss,
                             activation="leaky_relu", runs=2, init_scale=0.01)
                print(f"{f'fit {method}/{backend} {loss}':<52} {digest(res)}", flush=True)


if __name__ == "__main__":
    main()
