"""Input checks shared by the public API: clear errors that name the argument."""
from __future__ import annotations

import collections
import numbers

import numpy as np

_checked = collections.OrderedDict()  # device buffers already checked (see once_per_buffer)


def _xp(x):
    """The array module of ``x`` (CuPy for device arrays, else NumPy)."""
    mod = type(x).__module__.split(".")[0]
    if mod == "cupy":
        import cupy

        return cupy
    return np


def host_array(name, x):
    """``x`` as something NumPy reads, without a copy where it can.

    Torch tensors (detached, on the CPU), pandas objects, CuPy arrays (copied to the host);
    anything else as it is.

    DLPack producers without ``__array__`` (JAX on some versions) go through
    ``np.from_dlpack``.
    """
    mod = type(x).__module__.split(".")[0]
    if mod == "cupy":
        return x.get()
    if mod == "torch":
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        return t.numpy()
    if mod == "pandas":
        return x.to_numpy()
    if not hasattr(x, "__array__") and hasattr(x, "__dlpack__"):
        return np.from_dlpack(x)
    return x


def float_array(name, x, ndim, dtype=None, finite=True):
    """``x`` as a finite float32/float64 array with ``ndim`` dimensions (TypeError/ValueError).

    ``finite=False`` leaves the scan for NaN and inf to the caller.
    """
    if x is None:
        raise TypeError(f"{name} is required")
    xp = _xp(x)
    try:
        arr = xp.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array: {exc}") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if 0 in arr.shape:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    elif arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if finite and not bool(xp.isfinite(arr).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def inputs(name, X, dtype=None):
    """Inputs (q, p), or (q, P, d) patches of the two-layer CNN, as :func:`float_array`."""
    X = host_array(name, X)
    return float_array(name, X, 3 if np.ndim(X) == 3 else 2, dtype)


def labels(name, y, n, dtype=None):
    """Labels in {-1, +1} of length ``n`` (booleans: True is +1, False is -1)."""
    return targets(name, y, n, dtype)[0]


def targets(name, y, n, dtype=None, real=False):
    """(array, labelled): labels in {-1, +1} as :func:`labels` reads them.

    With ``real`` (the square loss), any finite real targets: ``labelled`` is False where they
    are not all +-1.
    """
    if _xp(y) is np and np.asarray(y).dtype == bool:
        y = np.where(np.asarray(y), 1.0, -1.0)
    arr = float_array(name, y, 1, dtype)
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} labels but the inputs have {n} rows")
    labelled = bool(((arr == 1) | (arr == -1)).all())
    if not labelled and not real:
        if bool(((arr == 0) | (arr == 1)).all()):
            raise ValueError(f"{name} must contain only -1 and +1, got 0/1 labels: pass "
                             f"2 * {name} - 1 (or booleans, True for +1)")
        raise ValueError(f"{name} must contain only -1 and +1")
    return arr, labelled


def positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def positive_float(name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    return float(v)


def once_per_buffer(arr, check):
    """``check(arr)``, but for a device array only the first time its buffer is seen.

    Every check of a device array (finite? labels +-1?) is a device synchronisation and a read
    of the whole array; ``fg.step`` on the same device arrays step after step would pay it on
    every call. A buffer (address, shape, strides, dtype) that passed unchanged is not checked
    again. Host arrays are always checked (it is cheap next to the step).
    """
    if _xp(arr) is np:
        return check(arr)
    key = (arr.data.ptr, arr.shape, arr.strides, arr.dtype.str)
    if key in _checked:
        _checked.move_to_end(key)
        return arr
    out = check(arr)
    if out is arr:  # only arrays that needed no conversion can be reused as they are
        _checked[key] = True
        while len(_checked) > 64:
            _checked.popitem(last=False)
    return out
