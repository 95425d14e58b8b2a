"""The ``cropseq`` command line: thin commands over the Python API.

Each command group lives in its own module and registers itself on :data:`app`.
User errors (:class:`~cropseq.errors.CropseqError`, bad options) print one line on stderr
and exit with code 2, without a traceback.
"""

from __future__ import annotations

import sys

import typer

try:  # typer >= 0.20 vendors click; its exceptions are not the ``click`` package's
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as _click_exc

from cropseq.errors import CropseqError

app = typer.Typer(
    name="cropseq",
    help="Crop maps from multitemporal satellite imagery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

@app.callback()
def _root() -> None:
    """cropseq: crop maps from multitemporal satellite imagery."""


@app.command("version")
def version_cmd() -> None:
    """Print the cropseq version."""
    from cropseq import __version__

    print(__version__)


# Register commands (each module adds its commands to ``app``).
from cropseq.cli import commands_data as _data  # noqa: E402,F401
from cropseq.cli import commands_evaluate as _evaluate  # noqa: E402,F401
from cropseq.cli import commands_model as _model  # noqa: E402,F401
from cropseq.cli import commands_predict as _predict  # noqa: E402,F401
from cropseq.cli import commands_report as _report  # noqa: E402,F401
from cropseq.cli import commands_simulate as _simulate  # noqa: E402,F401


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cropseq`` console script; returns the exit code."""
    try:
        rv = app(args=argv, standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except CropseqError as e:
        print(f"cropseq: error: {e}", file=sys.stderr)
        return 2
    except _click_exc.UsageError as e:
        # Keep usage errors to one line too, naming the command.
        cmd = e.ctx.command_path if e.ctx else "cropseq"
        print(f"{cmd}: error: {e.format_message()}", file=sys.stderr)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort as e:
        # click turns an EOFError raised inside a command (e.g. a truncated input file read
        # by a library) into Abort; that is bad input, not the user pressing Ctrl-D.
        if isinstance(e.__context__, EOFError):
            print("cropseq: error: unexpected end of an input file (truncated or corrupt?)", file=sys.stderr)
            return 2
        print("cropseq: aborted", file=sys.stderr)
        return 130
    except _click_exc.ClickException as e:
        print(f"cropseq: error: {e.format_message()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cropseq: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head` that closed early: not an error of ours.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def run() -> None:
    """``python -m cropseq`` entry."""
    sys.exit(main())
