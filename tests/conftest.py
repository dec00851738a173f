import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Fixtures used with @given only set constants (tile widths), so sharing them across examples
# is intended: the function_scoped_fixture health check is off.
settings.register_profile("fastgrok", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fastgrok"))


@pytest.fixture
def small_cfg():
    import fastgrok as fg

    return fg.Config(n=12, p=300, m=8, n_test=20, steps=5, runs=2, lr=1e-3, init_scale=1e-3,
                     backend="numpy", method="direct", dtype="float64", representation="full")


def random_problem(seed, n, p, m, dtype=np.float64, scale=1.0):
    """Small random (X, y, W, a) for property tests."""
    g = np.random.default_rng(seed)
    X = g.standard_normal((n, p)).astype(dtype)
    y = np.where(g.random(n) < 0.5, 1.0, -1.0).astype(dtype)
    W = (scale * g.standard_normal((m, p))).astype(dtype)
    a = (np.where(g.random(m) < 0.5, 1.0, -1.0) / np.sqrt(m)).astype(dtype)
    return X, y, W, a


def child_processes(pid=None):
    """{pid: command line} of the live (non-zombie) child processes of ``pid`` (Linux /proc)."""
    pid = os.getpid() if pid is None else pid
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) != pid or fields[0] == "Z":
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                out[int(entry)] = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):
            continue
    return out


def default_ctrl_c():
    """``preexec_fn`` for a child that must take Ctrl-C as a process started from a terminal.

    Tests started from a background job without job control inherit SIGINT ignored, and a
    Python child then never raises KeyboardInterrupt: the child gets SIGINT's default back
    before it starts (its own code decides the rest).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def alive(pid):
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.fixture(autouse=True)
def no_process_left_behind():
    """Every test must end with no child process of its own still running (multiprocessing's
    resource tracker, which lives as long as the test process, is not the test's)."""
    import time

    before = set(child_processes())
    yield
    deadline = time.time() + 10
    while True:
        left = {p: c for p, c in child_processes().items()
                if p not in before and "resource_tracker" not in c}
        if not left or time.time() > deadline:
            break
        time.sleep(0.1)
    assert not left, f"the test left processes running: {left}"
