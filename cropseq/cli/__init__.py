"""The ``cropseq`` command line: thin commands over the Python API.

Each command group lives in its own module and registers itself on :data:`app`.
User errors (:class:`~cropseq.errors.CropseqError`, bad options) print one line on stderr
and exit with code 2, without a traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

import typer

# typer >= 0.26 vendors click (pinned in pyproject.toml): its usage errors are these classes,
# not the ``click`` package's, which a fresh install need not have at all.
from typer._click import exceptions as _click_exc

from cropseq.atomic import inputs_scope
from cropseq.errors import CropseqError, Interrupted

__all__ = ["app", "main", "run", "version_cmd"]

app = typer.Typer(
    name="cropseq",
    help="Crop maps from multitemporal satellite imagery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

def _print_version(value: bool) -> None:
    if value:
        from cropseq import __version__

        print(f"cropseq {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", "-V", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, envvar="CROPSEQ_THREADS",
        help="At most this many CPU threads (torch, BLAS, Dask) for train, predict, crossval, evaluate and "
             "samples, given before the command (default: the CPUs this process may use).",
    ),
) -> None:
    """cropseq: crop maps from multitemporal satellite imagery."""
    from cropseq.cli._common import fit_command_threads

    fit_command_threads(ctx.invoked_subcommand, threads)


@app.command("version")
def version_cmd() -> None:
    """Print the cropseq version."""
    from cropseq import __version__

    print(__version__)


# Register commands (each module adds its commands to ``app``).
from cropseq.cli import commands_accuracy as _accuracy  # noqa: E402,F401
from cropseq.cli import commands_crossval as _crossval  # noqa: E402,F401
from cropseq.cli import commands_data as _data  # noqa: E402,F401
from cropseq.cli import commands_dense as _dense  # noqa: E402,F401
from cropseq.cli import commands_evaluate as _evaluate  # noqa: E402,F401
from cropseq.cli import commands_model as _model  # noqa: E402,F401
from cropseq.cli import commands_predict as _predict  # noqa: E402,F401
from cropseq.cli import commands_products as _products  # noqa: E402,F401
from cropseq.cli import commands_report as _report  # noqa: E402,F401
from cropseq.cli import commands_simulate as _simulate  # noqa: E402,F401
from cropseq.cli import commands_workflow as _workflow  # noqa: E402,F401


@contextlib.contextmanager
def _signals_unwind(received: list[int]) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`~cropseq.errors.Interrupted` while a command runs.

    SIGTERM's default action ends the process at once, skipping ``finally`` blocks, so
    temporary files would stay behind; raised as an exception it unwinds like Ctrl-C. The
    signal is also appended to ``received``: typer turns a KeyboardInterrupt into a silent
    exit code 130, so :func:`main` reports it from there. Only the main thread can install
    handlers (a CLI run from another thread keeps the defaults).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        raise Interrupted(signum)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _interrupted(signum: int) -> int:
    """Report an interruption (Ctrl-C or SIGTERM) on one line; return ``128 + signal``."""
    print("cropseq: interrupted", file=sys.stderr)
    return 128 + signum


def _one_line_warnings() -> None:
    """Show cropseq's :class:`~cropseq.errors.DataWarning` as one line.

    Also hides rasterio's NotGeoreferencedWarning (georeferencing is checked by
    ``open_stack``: ``crs: none``).
    """
    import warnings

    from cropseq.errors import DataWarning

    default = warnings.formatwarning
    if getattr(default, "cropseq", False):  # installed by an earlier main() in this process
        return

    def fmt(message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
        if issubclass(category, DataWarning):
            return f"cropseq: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    fmt.cropseq = True  # type: ignore[attr-defined]
    warnings.formatwarning = fmt
    warnings.filterwarnings("ignore", message=r"(Dataset has no geotransform|The given matrix is equal to Affine\.identity)")


#: The ``PYTHONWARNINGS`` entry that keeps a Ctrl-C at one line (see :func:`_quiet_resource_tracker`).
RESOURCE_TRACKER_RULE = "ignore:resource_tracker:UserWarning"


def _quiet_resource_tracker() -> None:
    """Keep multiprocessing's resource tracker quiet when Ctrl-C stops a local Dask cluster.

    Ctrl-C reaches the whole process group, so the cluster's worker processes die holding
    their semaphores; the tracker (a child process, which reads ``PYTHONWARNINGS``) then
    releases them, which is its job, and warns about each one, which would put a traceback-like
    line under ``cropseq: interrupted``. Rules the user set are kept.
    """
    current = os.environ.get("PYTHONWARNINGS", "")
    if RESOURCE_TRACKER_RULE not in current.split(","):
        os.environ["PYTHONWARNINGS"] = f"{current},{RESOURCE_TRACKER_RULE}" if current else RESOURCE_TRACKER_RULE


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cropseq`` console script; returns the exit code.

    Exit codes: 0 success, 2 user error (one line on stderr), 130 Ctrl-C, 143 SIGTERM.
    Each run is one :func:`~cropseq.atomic.inputs_scope`: no output may replace an input.

    Args:
        argv: Arguments; None means ``sys.argv`` of this process (the console script). Then,
            after an interruption, the process ends at once: temporary files are already
            removed, and the worker threads of a computation would otherwise keep it alive
            until their chunk is done.
    """
    received: list[int] = []
    code = _main(argv, received)
    if received and argv is None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _main(argv: list[str] | None, received: list[int]) -> int:
    _one_line_warnings()
    _quiet_resource_tracker()
    try:
        with _signals_unwind(received), inputs_scope():
            rv = app(args=argv, standalone_mode=False)
        if received:
            return _interrupted(received[0])
        return int(rv) if isinstance(rv, int) else 0
    except CropseqError as e:
        if received:  # an error while unwinding from the signal (e.g. a cleanup step)
            return _interrupted(received[0])
        print(f"cropseq: error: {e}", file=sys.stderr)
        return 2
    except _click_exc.UsageError as e:
        # Keep usage errors to one line too, naming the command.
        cmd = e.ctx.command_path if e.ctx else "cropseq"
        print(f"{cmd}: error: {e.format_message()}", file=sys.stderr)
        return 2
    except typer.Exit as e:
        return _interrupted(received[0]) if received else e.exit_code
    except typer.Abort as e:
        # click turns an EOFError raised inside a command (e.g. a truncated input file read
        # by a library) into Abort; that is bad input, not the user pressing Ctrl-D.
        if isinstance(e.__context__, EOFError):
            print("cropseq: error: unexpected end of an input file (truncated or corrupt?)", file=sys.stderr)
            return 2
        if received or isinstance(e.__context__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            return _interrupted(received[0] if received else signal.SIGINT)
        print("cropseq: aborted", file=sys.stderr)
        return 130
    except _click_exc.ClickException as e:
        print(f"cropseq: error: {e.format_message()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        return _interrupted(e.signum if isinstance(e, Interrupted) else signal.SIGINT)
    except BrokenPipeError:
        # Output piped into e.g. `head` that closed early: not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def run() -> None:
    """``python -m cropseq`` entry."""
    sys.exit(main())
