"""The CPU thread runtime of fastgrok.

Its own thread pool, single-threaded BLAS inside it, and fixed partitions of the work.

Results never depend on the thread count: work is split into a partition that depends only on
the problem (fixed chunks of column tiles, one task per run), each part is computed on one
thread with single-threaded BLAS, and partial results are merged in a fixed order. The thread
count only decides which thread computes a part.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

_lock = threading.Lock()
_state = {"controller": None, "pool": None, "pool_size": 0}


def default_threads() -> int:
    """Threads fastgrok uses by default: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def pool(n_threads: int) -> ThreadPoolExecutor:
    """A shared thread pool with ``n_threads`` workers (recreated when the size changes)."""
    with _lock:
        if _state["pool"] is None or _state["pool_size"] != n_threads:
            if _state["pool"] is not None:
                _state["pool"].shutdown(wait=True)
            _state["pool"] = ThreadPoolExecutor(n_threads, thread_name_prefix="fastgrok")
            _state["pool_size"] = n_threads
        return _state["pool"]


def release_pool() -> None:
    """Shut the thread pool down without waiting; its threads end after their current task.

    For a program that was interrupted and is about to exit: a KeyboardInterrupt that lands while
    the pool starts a thread can leave that thread unknown to concurrent.futures' exit hook, and
    the interpreter would then wait for it forever at exit. The pool's own shutdown wakes every
    one of its threads. (No lock: the interrupted thread may have been holding it.)
    """
    old = _state["pool"]
    _state["pool"], _state["pool_size"] = None, 0
    if old is not None:
        old.shutdown(wait=False, cancel_futures=True)


@contextmanager
def threads(n_threads=None):
    """Run the enclosed block with ``n_threads`` fastgrok threads and single-threaded BLAS.

    The previous BLAS and Numba thread settings are restored on exit.
    """
    import numba

    n = default_threads() if n_threads is None else int(n_threads)
    if n < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads!r}")
    if _state["controller"] is None:
        from threadpoolctl import ThreadpoolController

        # The BLAS libraries' own controllers, looked up once: entering and leaving this
        # context is then a few library calls (a research loop enters it at every step).
        _state["controller"] = ThreadpoolController().select(user_api="blas").lib_controllers
    old_numba = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    blas = _state["controller"]
    old_blas = [lib.get_num_threads() for lib in blas]
    try:
        for lib in blas:
            lib.set_num_threads(1)
        yield n
    finally:
        for lib, old in zip(blas, old_blas, strict=True):
            lib.set_num_threads(old)
        numba.set_num_threads(old_numba)


def map_chunks(n_items, fn, n_threads, n_chunks):
    """Run ``fn(items)`` on a fixed partition of range(n_items), on the pool.

    The partition has ``n_chunks`` contiguous chunks; the results come back in chunk order.

    The partition depends on ``n_chunks`` only, never on ``n_threads``, so any reduction of the
    results in the returned order gives the same bits for every thread count.
    """
    n_chunks = max(1, min(n_chunks, n_items))
    chunks = np.array_split(np.arange(n_items), n_chunks)
    if n_threads in (None, 1) or n_chunks == 1:
        return [fn(c) for c in chunks]
    return _inline_first(fn, chunks, n_threads)


def _inline_first(fn, items, n_threads):
    """``[fn(x) for x in items]`` on the pool, the calling thread taking the first share.

    The calling thread would otherwise only wait: it takes the first 1/n_threads of the items
    itself, which also spares one hand-off to a pool thread (tens of microseconds, which count
    in a pass of a millisecond).
    """
    share = max(1, len(items) // n_threads)
    futures = [pool(n_threads).submit(fn, x) for x in items[share:]]
    try:
        first = [fn(x) for x in items[:share]]
    finally:
        rest = [f.result() for f in futures]
    return first + rest


def ordered_sum(parts):
    """Sum arrays in the given order, into the first (None stays None)."""
    if parts[0] is None:
        return None
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total


def guided_chunks(n_items, n_threads):
    """Contiguous chunks of range(n_items), each a 1/(2 n_threads) share of what is left.

    Large chunks first (few hand-offs), single items last: a thread that finishes early takes
    the small ones, so the threads end within about one item of each other.

    Examples
    --------
    >>> [len(c) for c in guided_chunks(16, 2)]
    [4, 3, 3, 2, 1, 1, 1, 1]
    """
    chunks, start = [], 0
    while start < n_items:
        size = -(-(n_items - start) // (2 * n_threads))
        chunks.append(range(start, start + size))
        start += size
    return chunks


def map_runs(fn, items, n_threads):
    """``[fn(i) for i in items]``, the items spread over the pool in guided chunks.

    For independent runs: any split gives the same bits, so the split may follow n_threads.
    """
    if n_threads and n_threads > 1 and len(items) > 1:
        items = [int(i) for i in items]
        chunks = [items[c.start:c.stop] for c in guided_chunks(len(items), n_threads)]
        parts = pool(n_threads).map(lambda c: [fn(i) for i in c], chunks)
        return [x for part in parts for x in part]
    return [fn(i) for i in items]


def map_ordered(fn, items, n_threads):
    """Map ``fn`` over ``items`` on the pool (or inline with one thread), in item order.

    An iterator: results are consumed as they arrive, in order.
    """
    if not n_threads or n_threads == 1 or len(items) < 2:  # one item: no hand-off to the pool
        return map(fn, items)
    return pool(n_threads).map(fn, items)
