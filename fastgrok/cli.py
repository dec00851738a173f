"""The ``fastgrok`` command line: ``fastgrok run [--preset NAME] [--field VALUE ...] --out DIR``."""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import warnings
from dataclasses import fields

from .config import DEFAULT_PRESET, FIELDS, PRESETS, RENAMED, Config

#: A negative number as an option's value (argparse would take "-1e-12" for an option).
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _int(text):
    """An integer option (40000, 40_000 or 4e4), read as the integer fields are."""
    return FIELDS["n"].parse(text)


def _interval(text):
    """A time interval option (30s, 10m, 2h or seconds)."""
    from .checkpoint import parse_interval

    try:
        return parse_interval(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: The checkpoint file of ``fastgrok run --checkpoint-every``, in the output folder.
CHECKPOINT_NAME = "checkpoint.fastgrok"


def build_parser() -> argparse.ArgumentParser:
    """The ``fastgrok`` command's argument parser (run, sweep, study, ...)."""
    # No abbreviations: --noise would silently mean --noise-rate.
    parser = argparse.ArgumentParser(prog="fastgrok", allow_abbrev=False, description=(
        "Train two-layer ReLU networks on XOR-cluster data (Xu et al., ICLR 2024) and write the "
        "paper-style figures."))
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser("run", help="run an experiment and write its tables and figures",
                         description="Every Config field can be overridden as --field-name VALUE.")
    run.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                     help=f"starting configuration (default: {DEFAULT_PRESET})")
    run.add_argument("--out", default=None, help="output directory (default: ./fastgrok-PRESET)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument("--no-figures", action="store_true", help="write the tables only")
    run.add_argument("--threads", type=_int, default=None, metavar="INT",
                     help="CPU threads (default: all); results do not depend on it")
    run.add_argument("--checkpoint-every", type=_interval, default=None, metavar="INTERVAL",
                     help="save the training state to OUT/checkpoint.fastgrok this often (30s, "
                          "10m, 2h); the same command resumes from it after a kill, with the "
                          "same results")
    _config_options(run)
    sw = sub.add_parser("sweep", help="run a grid of experiments (resumable) and write its table",
                        description="Each --grid FIELD=v1,v2,... adds an axis; rerunning the same "
                                    "command with the same --out resumes where it stopped.")
    sw.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    sw.add_argument("--grid", action="append", required=True, metavar="FIELD=V1,V2,...")
    sw.add_argument("--out", required=True, help="output directory (also the resume state)")
    _executor_options(sw)
    _config_options(sw)
    from .studies import STUDIES

    st = sub.add_parser("study", help="run one of the built-in studies and write its figure",
                        description="Built-in studies of the paper's open questions: " + "; ".join(
                            f"{k}: {s.question}" for k, s in STUDIES.items()) + ". Rerunning the "
                        "same command with the same --out resumes where it stopped.")
    st.add_argument("name", choices=sorted(STUDIES), help="which study")
    st.add_argument("--out", default=None, help="output directory (default: ./fastgrok-study-NAME)")
    _executor_options(st)
    _config_options(st)
    fig = sub.add_parser("figures", help="redraw the figures of a saved run (no training)",
                         description="Reads DIR/config.json, history.csv and projections.npz "
                                     "(what `fastgrok run` wrote) and rewrites the figures.")
    fig.add_argument("dir", help="the folder a `fastgrok run` wrote")
    fig.add_argument("--out", default=None, help="write the figures here instead (default: DIR)")
    return parser


class _Parser(argparse.ArgumentParser):
    """The subcommands' parsers: no abbreviated options."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


class _OldName(argparse.Action):
    """An option's old name: stores into the new one, with a FutureWarning that names it."""

    def __call__(self, parser, namespace, values, option_string=None):
        new = "--" + self.dest.replace("_", "-")
        warnings.warn(f"{option_string} is renamed {new}; the old name will stop working in the "
                      "next version", FutureWarning, stacklevel=2)
        setattr(namespace, self.dest, values)


def _values_joined(argv):
    """``argv`` with negative numbers joined to the option before them.

    --lr -1e-12 becomes --lr=-1e-12, so that it is read as a value and checked as such.
    """
    out = []
    for tok in argv:
        if out and _NEGATIVE_NUMBER.match(tok) and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={tok}"
        else:
            out.append(tok)
    return out


def _executor_options(p):
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="a Dask scheduler address: run the points on that cluster")
    p.add_argument("--workers", type=_int, default=None, help="local worker processes")
    p.add_argument("--threshold", type=float, default=0.9,
                   help="test accuracy that counts as grokked")
    p.add_argument("--no-progress", action="store_true")


def _config_options(p):
    """Add every Config field as --field-name (None: keep the preset's value).

    Each option is read and described by the field's declaration
    (:data:`fastgrok.config.FIELDS`).
    """
    for f in fields(Config):
        spec = FIELDS[f.name]
        p.add_argument("--" + f.name.replace("_", "-"), type=spec.parse, choices=spec.choices,
                       default=None, metavar=spec.metavar, help=spec.help)
    for old, new in RENAMED.items():
        p.add_argument("--" + old.replace("_", "-"), dest=new, type=FIELDS[new].parse,
                       default=None, action=_OldName, help=argparse.SUPPRESS)


def main(argv=None) -> int:
    """Entry point of the ``fastgrok`` command; returns the exit status.

    Ctrl-C ends any command with one line on stderr and status 130 (128 + SIGINT), no traceback:
    a sweep or study keeps its finished points and says how to resume; a run writes nothing.
    SIGTERM does the same, with status 143 (128 + SIGTERM).
    """
    format_warning = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    terminated = []
    old_handler = _on_sigterm(terminated)
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:
        from .kernels.threads import release_pool

        release_pool()  # so that the exit cannot wait on a pool thread
        # A sweep's interruption, or a run's with a checkpoint, says what was kept.
        msg = str(exc) or "interrupted: nothing was written"
        if terminated:
            msg = msg.replace("interrupted", "terminated (SIGTERM)", 1)
        print(f"fastgrok: {msg}", file=sys.stderr, flush=True)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    finally:
        warnings.formatwarning = format_warning
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)


def _on_sigterm(terminated: list):
    """Make SIGTERM what Ctrl-C is (a KeyboardInterrupt), noting it in ``terminated``.

    Batch schedulers send SIGTERM before they kill a job: a sweep keeps its finished points
    and says how to resume, as after Ctrl-C, and exits with 143 (128 + SIGTERM). Returns the
    handler it replaced (None off the main thread, where no handler can be set).
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        terminated.append(signum)
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _one_line_warning(message, category, filename, lineno, line=None):
    """A warning on the command line: one line, without the source line."""
    return f"fastgrok: warning: {message}\n"


def _main(argv=None) -> int:
    argv = _values_joined(sys.argv[1:] if argv is None else list(argv))
    if not argv:  # plain `fastgrok` runs the default experiment
        argv = ["run"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in ("run", "sweep", "study", "figures"):
        parser.print_help()
        return 2
    if args.command == "figures":
        return _figures(parser, args)
    from . import api
    from .config import preset

    overrides = {f.name: getattr(args, f.name) for f in fields(Config)
                 if getattr(args, f.name) is not None}
    if args.command == "study":
        return _study(parser, args, overrides)
    try:
        cfg = preset(args.preset, **overrides)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    if args.command == "sweep":
        return _sweep(parser, args, cfg)
    out = args.out or f"fastgrok-{args.preset}"
    from ._io import NoRoomError, check_room
    from .driver import default_snapshot_steps, eval_schedule
    from .results import _writable_dir, output_bytes

    try:  # fail before hours of training, not after
        _writable_dir(out)
        snapshots = cfg.snapshot_steps or default_snapshot_steps(cfg.steps)
        check_room(out, output_bytes(cfg.runs, len(eval_schedule(cfg.steps, snapshots)),
                                     len(snapshots), cfg.m, cfg.n, not args.no_figures),
                   "this run")
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    except NoRoomError as exc:
        return _failed(exc)
    print(f"fastgrok: {args.preset}: n={cfg.n} p={cfg.p} m={cfg.m} n_test={cfg.n_test} "
          f"lr={cfg.lr:g} steps={cfg.steps} runs={cfg.runs}", flush=True)
    checkpoint = {}
    if args.checkpoint_every is not None:
        path = os.path.join(out, CHECKPOINT_NAME)
        checkpoint = {"checkpoint": path, "checkpoint_every": args.checkpoint_every}
        if os.path.exists(path):
            print(f"fastgrok: resuming from {path}", flush=True)
    try:
        res = api.run(cfg, progress=not args.no_progress, n_threads=args.threads, **checkpoint)
    except ValueError as exc:  # a checkpoint of another run, or a damaged one
        if not checkpoint:
            raise
        return _failed(exc)
    except KeyboardInterrupt:
        if checkpoint and os.path.exists(checkpoint["checkpoint"]):
            raise KeyboardInterrupt(f"interrupted: the training so far is in "
                                    f"{checkpoint['checkpoint']}; run the same command again "
                                    "to resume") from None
        raise
    try:
        files = res.save(out, figures=not args.no_figures)
    except OSError as exc:
        return _unsaved(res, out, exc)
    print(f"engine {res.info['engine']} ({res.info['dtype']}, {res.info['representation']} "
          f"representation), {res.info['wall_s']:.1f} s")
    print(res.headline())
    print("wrote " + ", ".join(sorted(files.values())))
    return 0


def _figures(parser, args) -> int:
    from .results import Result

    if not os.path.isfile(os.path.join(args.dir, "config.json")) or \
            not os.path.isfile(os.path.join(args.dir, "history.csv")):
        parser.error(f"dir={args.dir!r}: expected a folder written by `fastgrok run` "
                     "(config.json and history.csv)")
    from ._io import DamagedFileError

    try:
        result = Result.load(args.dir)
    except DamagedFileError as exc:
        return _failed(exc)
    files = result.figures(args.out or args.dir)
    print("wrote " + ", ".join(sorted(files.values())))
    return 0


def _unsaved(res, out, exc) -> int:
    """A trained result whose folder could not be written: kept elsewhere, said in one line."""
    from ._io import rescue_folder

    rescue = rescue_folder(lambda folder: res.save(folder, figures=False))
    where = (f"the results are saved in {rescue} instead (no figures): move them once there is "
             "room" if rescue else "they could not be saved anywhere else either: free some "
             "space and run again")
    return _failed(f"could not write to {out}: {exc.strerror or exc}; nothing half-written is "
                   f"left there; {where}")


def _failed(exc) -> int:
    """A command that cannot go on: one line on stderr, status 1."""
    print(f"fastgrok: error: {exc}", file=sys.stderr, flush=True)
    return 1


def _sweep(parser, args, cfg) -> int:
    from ._io import NoRoomError
    from .sweeps import SweepFailed, sweep

    grid = {}
    for spec in args.grid:
        name, _, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        try:
            if name not in FIELDS:
                raise ValueError(f"{name!r} is not a Config field")
            grid[name] = [FIELDS[name].parse(v.strip()) for v in values.split(",") if v.strip()]
        except (ValueError, argparse.ArgumentTypeError) as exc:
            parser.error(f"--grid {spec!r}: {exc}")
    with _executor(parser, args) as executor:
        try:
            res = sweep(cfg, grid, out=args.out, executor=executor, n_workers=args.workers,
                        threshold=args.threshold, progress=not args.no_progress)
        except (ImportError, ValueError) as exc:
            parser.error(str(exc))
        except (SweepFailed, NoRoomError) as exc:
            return _failed(exc)
    with_pd = res.points.to_string(index=False)
    print(with_pd)
    figure = ", fig_sweep.png" if res.figure else ""
    print(f"wrote {args.out}/table.parquet, points.csv{figure} (points in {args.out}/points/)")
    return 0


def _study(parser, args, overrides) -> int:
    from ._io import NoRoomError
    from .studies import study
    from .sweeps import SweepFailed

    out = args.out or f"fastgrok-study-{args.name}"
    with _executor(parser, args) as executor:
        try:
            res = study(args.name, out=out, executor=executor, n_workers=args.workers,
                        threshold=args.threshold, progress=not args.no_progress, **overrides)
        except (ImportError, TypeError, ValueError) as exc:
            parser.error(str(exc))
        except (SweepFailed, NoRoomError) as exc:
            return _failed(exc)
    print(res.points.to_string(index=False))
    figure = f"{res.figure}, " if res.figure else ""
    print(f"wrote {figure}{out}/table.parquet, points.csv (points in {out}/points/)")
    return 0


@contextlib.contextmanager
def _executor(parser, args):
    """A Dask Client for --scheduler (closed afterwards), else None (local processes)."""
    if not args.scheduler:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        parser.error("--scheduler needs dask[distributed]: pip install 'fastgrok[sweeps]'")
    try:
        client = Client(args.scheduler, timeout="5s")
    except OSError as exc:
        parser.error(f"--scheduler {args.scheduler!r} is unreachable: {exc}")
    try:
        yield client
    finally:
        client.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
