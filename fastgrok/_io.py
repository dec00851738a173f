"""Atomic file writes: a reader (or a resumed sweep) never sees a half-written file."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

#: Prefix of the temporary files: a folder scan can recognise (and remove) leftovers of a kill.
TMP_PREFIX = ".tmp-"


class DamagedFileError(ValueError):
    """A saved file that cannot be what fastgrok wrote: unreadable, or not what it should hold.

    The message names the file and what is wrong with it.
    """


class NoRoomError(OSError):
    """The output folder's disk has less free space than the output is estimated to need."""


def check_room(out, nbytes: int, what: str) -> None:
    """Raise :class:`NoRoomError` with the numbers if ``out``'s disk has less than ``nbytes``."""
    free = shutil.disk_usage(out).free
    if free < nbytes:
        raise NoRoomError(f"out={os.fspath(out)!r} has {_size(free)} free on its disk, and {what} "
                          f"writes about {_size(nbytes)}: free some space or choose another "
                          "folder")


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def rescue_folder(save) -> str | None:
    """Call ``save(folder)`` on a new folder in the temporary directory or, failing that, home.

    Where a result goes when its own folder could not be written (a full disk): the folder's
    path, or None if it could not be written anywhere (nothing is left behind then).
    """
    for base in (tempfile.gettempdir(), os.path.expanduser("~")):
        folder = None
        try:
            folder = tempfile.mkdtemp(prefix="fastgrok-unsaved-", dir=base)
            save(folder)
            return folder
        except OSError:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
    return None


def read_table(path, columns=(), runs=None, steps=None):
    """A table written by :func:`write_table`, checked: DamagedFileError if it is not one.

    ``columns``: names the table must have, each numeric. ``runs``, ``steps``: its ``run``
    column must lie in [0, runs) and its ``step`` column in [0, steps] (what its config says).
    """
    import pandas as pd

    path = os.fspath(path)
    try:
        table = (pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # pyarrow's, pandas' and the OS's own errors: the file is unreadable
        raise DamagedFileError(f"{path} is damaged: it cannot be read as a "
                               f"{'parquet' if path.endswith('.parquet') else 'CSV'} table "
                               f"({type(exc).__name__}: {exc})") from None
    missing = [c for c in columns if c not in table]
    if missing:
        raise DamagedFileError(f"{path} is damaged: it has no column(s) {', '.join(missing)} "
                               f"(its columns: {', '.join(map(str, table.columns[:8]))})")
    wrong = [c for c in columns if not pd.api.types.is_numeric_dtype(table[c])
             or pd.api.types.is_bool_dtype(table[c])]
    if wrong:
        raise DamagedFileError(f"{path} is damaged: column(s) {', '.join(wrong)} are not numbers")
    if not len(table):
        raise DamagedFileError(f"{path} is damaged: it has no rows")
    bad_run = runs is not None and not table["run"].between(0, runs - 1).all()
    bad_step = steps is not None and not table["step"].between(0, steps).all()
    if bad_run or bad_step:
        raise DamagedFileError(
            f"{path} is damaged: its runs {table['run'].min()}..{table['run'].max()} and steps "
            f"{table['step'].min()}..{table['step'].max()} are not those of its config "
            f"(runs={runs}, steps={steps})")
    return table


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path next to ``path``; on success move it onto ``path`` in one step.

    ``suffix`` keeps a file ending that a writer needs (matplotlib picks the format from it).
    On an exception (or a kill) the temporary file is removed (or left with :data:`TMP_PREFIX`),
    and ``path`` keeps its old content.
    """
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=os.path.dirname(path) or ".")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_table(df, path):
    """Write a DataFrame atomically: parquet (exact binary floats) or CSV, by ``path``'s ending."""
    with atomic_path(path) as tmp:
        if str(path).endswith(".parquet"):
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)


def save_figure(fig, path, dpi=110):
    """``fig.savefig`` atomically (and close the figure)."""
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=os.path.splitext(os.fspath(path))[1]) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)


@contextlib.contextmanager
def atomic_files(out):
    """Write a set of files into the folder ``out`` all together or not at all.

    Yields ``target(name) -> path`` that gives the path to write ``name`` to (a temporary
    folder inside ``out``); when the block ends without an error every file written there is
    moved into ``out`` (each move is atomic), else none is.
    """
    tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=out)
    names = []

    def target(name):
        names.append(name)
        return os.path.join(tmp, name)

    try:
        yield target
        for name in names:
            if os.path.exists(os.path.join(tmp, name)):  # (a figure that was skipped is not)
                os.replace(os.path.join(tmp, name), os.path.join(out, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def figure_or_warning(name, draw, *args, **kwargs) -> bool:
    """``draw(*args, **kwargs)``; if it fails, a warning that names the figure, and False.

    The figures come after the data are written: a figure that cannot be drawn (a corner case
    of the plotting, data that are all NaN) is skipped and never costs the results.
    """
    import warnings

    try:
        draw(*args, **kwargs)
        return True
    except Exception as exc:
        import matplotlib.pyplot as plt

        plt.close("all")
        warnings.warn(f"{name} was not drawn ({type(exc).__name__}: {exc}); the tables are "
                      "written", RuntimeWarning, stacklevel=3)
        return False
