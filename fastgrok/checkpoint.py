"""Checkpoints of long runs: the driver's and the engine's state on disk, resumed bit for bit.

A checkpoint is written atomically, at the end of a driver segment, when ``every`` seconds have
passed since the last one. It holds everything the training loop needs to go on: the history
recorded so far, the batch being trained and its engine (whose data and state are what they
are: the gram method's are small, the direct method's W and X are m p and n p numbers). The
backend's operations are not saved; the run that resumes attaches its own. Resuming continues
from the same segment boundary with the same calls, so the history equals an uninterrupted
run's bit for bit.

The file: the pickled state, then a JSON trailer (what run it belongs to, the fastgrok version,
the state's length and SHA-256), then the trailer's length and a magic number. A file whose
trailer or checksum does not match is refused as damaged; one of another run (another config
or plan) is refused as such. The state is a pickle: load only checkpoints you wrote.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import struct
import time

from ._io import DamagedFileError, atomic_path, check_room

MAGIC = b"FGCKPT01"
_TAIL = struct.Struct("<Q8s")  # trailer length, magic


def parse_interval(text) -> float:
    """Seconds from ``"10m"``, ``"90s"``, ``"2h"``, ``"1.5h"`` or a number of seconds.

    Raises ValueError for anything else or a negative interval.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", str(text))
        if not match:
            raise ValueError(f"expected an interval such as 30s, 10m or 2h, got {text!r}")
        seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"expected a finite interval >= 0, got {text!r}")
    return seconds


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("fastgrok")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


class _Hashing:
    """A binary file wrapper that hashes and counts what is written through it."""

    def __init__(self, fh):
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def write(self, data):
        self.sha.update(data)
        self.size += len(memoryview(data).cast("B"))
        return self.fh.write(data)


class Checkpoint:
    """The checkpoint file of one run (:func:`fastgrok.run`'s ``checkpoint``).

    Parameters
    ----------
    path : path
        The checkpoint file.
    every : float
        Seconds between checkpoints (0: at the end of every driver segment).
    identity : dict
        What the run is (its config and plan): a checkpoint of another run is refused.
    """

    def __init__(self, path, every: float, identity: dict):
        self.path, self.every = os.fspath(path), float(every)
        self.identity = json.loads(json.dumps({**identity, "fastgrok": _version()}, default=str))
        self.last = time.monotonic()
        self.written = 0

    def due(self) -> bool:
        """Whether ``every`` seconds have passed since the last checkpoint (or the start)."""
        return time.monotonic() - self.last >= self.every

    def save(self, state: dict, nbytes: int = 0) -> None:
        """Write ``state`` atomically (the old checkpoint stays until the new one is whole).

        ``nbytes``: the state's estimated size, checked against the free disk space first.
        """
        folder = os.path.dirname(self.path) or "."
        os.makedirs(folder, exist_ok=True)
        if nbytes:
            check_room(folder, nbytes, "a checkpoint")
        with atomic_path(self.path) as tmp, open(tmp, "wb") as fh:
            out = _Hashing(fh)
            pickle.dump(state, out, protocol=5)
            trailer = json.dumps({"identity": self.identity, "size": out.size,
                                  "sha256": out.sha.hexdigest(),
                                  "written": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
            fh.write(trailer)
            fh.write(_TAIL.pack(len(trailer), MAGIC))
            fh.flush()
            os.fsync(fh.fileno())
        self.last = time.monotonic()
        self.written += 1

    def load(self) -> dict | None:
        """The saved state, or None when there is no checkpoint file.

        Raises
        ------
        fastgrok.DamagedFileError
            The file is not a whole checkpoint (a bad trailer or checksum).
        ValueError
            The checkpoint belongs to another run (another config, plan or fastgrok version).
        """
        if not os.path.exists(self.path):
            return None
        trailer = self.trailer()
        if trailer["identity"] != self.identity:
            old, new = trailer["identity"], self.identity
            keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            detail = "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} here" for k in keys)
            raise ValueError(f"checkpoint {self.path} belongs to another run ({detail}): remove "
                             "it to start this run afresh, or use another path")
        with open(self.path, "rb") as fh:
            sha, left = hashlib.sha256(), trailer["size"]
            while left:
                chunk = fh.read(min(left, 1 << 24))
                if not chunk:
                    break
                sha.update(chunk)
                left -= len(chunk)
            if left or sha.hexdigest() != trailer["sha256"]:
                raise DamagedFileError(f"{self.path} is damaged: its state does not match its "
                                       "checksum; remove it to start the run afresh")
            fh.seek(0)
            return pickle.load(fh)

    def trailer(self) -> dict:
        """The file's trailer (identity, size, sha256, written), checked: DamagedFileError."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                end = fh.tell()
                if end < _TAIL.size:
                    raise ValueError("too short")
                fh.seek(end - _TAIL.size)
                length, magic = _TAIL.unpack(fh.read(_TAIL.size))
                if magic != MAGIC or length > end - _TAIL.size:
                    raise ValueError("no checkpoint trailer")
                fh.seek(end - _TAIL.size - length)
                trailer = json.loads(fh.read(length))
            if trailer["size"] != end - _TAIL.size - length:
                raise ValueError("its length is not the trailer's")
        except (ValueError, KeyError, TypeError) as exc:
            raise DamagedFileError(f"{self.path} is damaged: it is not a whole fastgrok "
                                   f"checkpoint ({exc}); remove it to start the run "
                                   "afresh") from None
        return trailer

    def remove(self) -> None:
        """Delete the checkpoint (its run has finished and its result is saved)."""
        if os.path.exists(self.path):
            os.remove(self.path)
