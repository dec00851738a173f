"""Progress reporting: one clear bar on a terminal, occasional clean lines in a log.

On a terminal (or in a notebook) this is a tqdm bar. When stderr is redirected to a file
(``fastgrok run > log 2>&1``, a batch job), a bar would fill the log with carriage returns and
partial lines, so a plain line is printed instead every ``tunables.PROGRESS_LOG_INTERVAL``
seconds, and one at the end. Phases of a long task (building the gram state, then stepping) are
shown in the same bar, never as nested bars that fight for the line.
"""
from __future__ import annotations

import sys
import time

from . import tunables


def _interactive(stream) -> bool:
    if "ipykernel" in sys.modules:  # a notebook: tqdm.auto draws a widget
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Null:
    def update(self, k=1):
        pass

    def phase(self, text):
        pass

    def close(self):
        pass


class _Bar(_Null):
    def __init__(self, total, desc, unit, initial, stream):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, file=stream,
                         mininterval=tunables.PROGRESS_MIN_INTERVAL, leave=False,
                         dynamic_ncols=True)

    def update(self, k=1):
        self._bar.update(k)

    def phase(self, text):
        self._bar.set_postfix_str(text, refresh=False)

    def close(self):
        self._bar.close()


class _Lines(_Null):
    """Plain lines: the first at once, then at most one per interval, and a last one."""

    def __init__(self, total, desc, unit, initial, stream):
        self.total, self.desc, self.unit, self.n, self.stream = total, desc, unit, initial, stream
        self.t0 = self.last = time.monotonic()
        self.initial, self.text, self.closed = initial, "", False
        self._print(f"{self.n}/{self.total} {self.unit}s")

    def _print(self, what):
        extra = f" ({self.text})" if self.text else ""
        print(f"{self.desc}: {what}{extra}", file=self.stream, flush=True)

    def _maybe(self, force=False):
        now = time.monotonic()
        if not force and now - self.last < tunables.PROGRESS_LOG_INTERVAL:
            return
        self.last = now
        elapsed = now - self.t0
        done = self.n - self.initial
        pct = 100.0 * self.n / self.total if self.total else 100.0
        left = ""
        if 0 < done and self.n < self.total:
            left = f", about {elapsed / done * (self.total - self.n):.0f} s left"
        self._print(f"{self.n}/{self.total} {self.unit}s ({pct:.0f}%), {elapsed:.0f} s{left}")

    def update(self, k=1):
        self.n += k
        self._maybe()

    def phase(self, text):
        self.text = text
        self._maybe()

    def close(self):
        if not self.closed:
            self.closed = True
            self.text = ""
            self._print(f"{self.n}/{self.total} {self.unit}s in {time.monotonic() - self.t0:.1f} s")


def progress_bar(total, desc, unit, enabled=True, initial=0, stream=None):
    """A progress reporter with ``update(k)``, ``phase(text)`` and ``close()``.

    Parameters
    ----------
    total : int
        Units of work.
    desc, unit : str
        What is being done and what a unit is (singular).
    enabled : bool
        False gives a reporter that does nothing.
    initial : int
        Units already done (a resumed sweep).
    stream : file, optional
        Where to report (default ``sys.stderr``).
    """
    stream = sys.stderr if stream is None else stream
    if not enabled:
        return _Null()
    cls = _Bar if _interactive(stream) else _Lines
    return cls(total, desc, unit, initial, stream)
