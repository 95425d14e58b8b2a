"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cropseq.errors import CropseqError


def existing_path(path: Path, what: str = "file") -> Path:
    """Return ``path`` if it exists, else raise a one-line :class:`CropseqError`."""
    if not path.exists():
        raise CropseqError(f"{what} not found", path)
    return path


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON on stdout."""
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
