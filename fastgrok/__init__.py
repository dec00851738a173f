"""fastgrok: fast full-batch gradient descent for two-layer ReLU networks on XOR-cluster data.

Reproduces and extends "Benign Overfitting and Grokking in ReLU Networks for XOR Cluster Data"
(Xu, Wang, Frei, Vardi, Hu, ICLR 2024). Importing fastgrok compiles nothing and never touches
CUDA; kernels are compiled on first use (see :func:`fastgrok.warmup`).
"""
from .api import fit, run, step
from .config import PRESETS, Config, preset
from .data import Dataset, linear_clusters, xor_clusters
from .devices import gpu_usable, warmup


def __getattr__(name):
    # fg.sweep and fg.study import pandas and the executors only when first used: import
    # fastgrok stays fast.
    if name == "sweep":
        from .sweeps import sweep

        return sweep
    if name == "study":
        from .studies import study

        return study
    raise AttributeError(f"module 'fastgrok' has no attribute {name!r}")

__version__ = "0.1.0"
__all__ = ["Config", "preset", "PRESETS", "run", "fit", "step", "xor_clusters", "linear_clusters", "Dataset",
           "gpu_usable", "warmup", "sweep", "study", "__version__"]
