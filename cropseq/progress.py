"""One progress display for every long-running command: a rich bar on stderr.

``predict`` counts chunks and ``train`` counts the batches of each epoch through the same
:func:`progress_bar`. The bar starts on its first update, so a command that fails its checks
before any work starts prints its one-line error and nothing else.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["ProgressBar", "progress_bar", "stderr_is_terminal"]


def stderr_is_terminal() -> bool:
    """True when stderr is an interactive terminal (a live bar makes sense there)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


class ProgressBar:
    """A lazily started rich progress bar on stderr; call it to update.

    Args:
        label: Text in front of the bar.
        unit: What is counted (``"chunks"``, ``"batches"``), shown after ``done/total``.
        enabled: False makes every update a no-op.
        transient: Erase the bar when it stops (per-epoch bars), instead of leaving its
            last state on the screen.
    """

    def __init__(self, label: str, unit: str, enabled: bool = True, transient: bool = False) -> None:
        self.label = label
        self.unit = unit
        self.enabled = enabled
        self.transient = transient
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int, *, label: str | None = None, note: str = "") -> None:
        """Show ``done`` of ``total`` (and ``note``, e.g. the running loss)."""
        if not self.enabled:
            return
        if self._bar is None:
            self._start(total)
        self._bar.update(self._task, completed=done, total=total, description=label or self.label, note=note)

    def _start(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(self.unit),
                             TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
                             console=Console(stderr=True), transient=self.transient)
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=total, note="")

    def close(self) -> None:
        """Stop the bar (leaves its last state, or erases it when transient)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextmanager
def progress_bar(label: str, enabled: bool, unit: str = "chunks", transient: bool = False) -> Iterator[ProgressBar]:
    """A :class:`ProgressBar` that is stopped when the block ends, even on an error.

    Args:
        label: Text in front of the bar.
        enabled: False: updates do nothing (``-q``, or not a terminal where the caller wants
            plain output).
        unit: What is counted.
        transient: Erase the bar at the end.

    Yields:
        The bar; call ``bar(done, total)`` (also ``label=``, ``note=``).
    """
    bar = ProgressBar(label, unit, enabled, transient)
    try:
        yield bar
    finally:
        bar.close()
