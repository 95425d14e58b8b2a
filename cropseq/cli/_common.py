"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cropseq.errors import CropseqError
from cropseq.remote import RemotePath, is_remote, source

__all__ = ["COMPUTE_COMMANDS", "existing_path", "fit_command_threads", "print_json"]


def existing_path(path: Path, what: str = "file") -> Path | RemotePath:
    """Return ``path`` if it exists, else raise a one-line :class:`CropseqError`.

    A URL (:mod:`cropseq.remote`; typer's ``Path`` collapsed its ``//``) comes back repaired
    and unchecked: reading it names an unreachable one.
    """
    if is_remote(path):
        return source(path)
    if not path.exists():
        raise CropseqError(f"{what} not found", path)
    return path


#: Commands that compute: their thread pools are sized to the usable CPUs before they run.
COMPUTE_COMMANDS = frozenset(
    {"train", "predict", "crossval", "evaluate", "samples", "distill", "parcels", "suggest", "tile", "train-dense"}
)


def fit_command_threads(command: str | None, cap: int | None) -> None:
    """Size the thread pools for ``command`` (:func:`cropseq.threads.fit_threads`), if it computes.

    Args:
        command: The subcommand about to run.
        cap: The root ``--threads`` (or ``CROPSEQ_THREADS``); None = the affinity CPUs.
    """
    if command in COMPUTE_COMMANDS:
        from cropseq.threads import fit_threads

        # Not importing torch here: it would slow down ``cropseq train --help`` (this runs
        # before the command parses its options); torch starts with OMP_NUM_THREADS threads.
        fit_threads(cap, load_torch=False)


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON on stdout."""
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
