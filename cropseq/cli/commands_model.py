"""CLI commands (model); see the module owners' docs."""

from __future__ import annotations

from cropseq.cli import app  # noqa: F401
