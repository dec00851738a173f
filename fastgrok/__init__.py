"""fastgrok: fast full-batch gradient descent for two-layer ReLU networks in high dimension.

Reproduces and extends "Benign Overfitting and Grokking in ReLU Networks for XOR Cluster Data"
(Xu, Wang, Frei, Vardi, Hu, ICLR 2024). Importing fastgrok compiles nothing and never touches
CUDA; kernels are compiled on first use (see :func:`fastgrok.warmup`).
"""
from importlib import metadata as _metadata

from ._io import DamagedFileError, NoRoomError
from ._memory import InsufficientMemoryError
from .api import fit, run, step
from .config import PRESETS, Config, preset
from .data import Dataset, batch_schedule, linear_clusters, patch_data, xor_clusters
from .devices import gpu_usable, warmup
from .driver import RunState
from .network import Network
from .plan import ExperimentalWarning
from .trainer import Trainer

try:
    __version__ = _metadata.version("fastgrok")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# Loaded on first use, so that import fastgrok stays fast: they import pandas (and the sweeps
# their executors).
_LAZY = {"sweep": "sweeps", "SweepResult": "sweeps", "SweepInterrupted": "sweeps",
         "WorkerDied": "sweeps", "SweepFailed": "sweeps",
         "study": "studies", "Result": "results"}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'fastgrok' has no attribute {name!r}")


__all__ = ["Config", "preset", "PRESETS", "run", "fit", "step", "Trainer", "Network", "RunState",
           "xor_clusters", "linear_clusters", "patch_data", "batch_schedule",
           "Dataset", "Result", "SweepResult", "gpu_usable", "warmup", "sweep", "study",
           "InsufficientMemoryError", "DamagedFileError", "NoRoomError", "ExperimentalWarning",
           "SweepInterrupted", "SweepFailed", "WorkerDied", "__version__"]
