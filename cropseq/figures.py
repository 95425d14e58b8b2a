"""Figures: matplotlib without a display, and PNGs written atomically.

Every plot of the package (confusion matrices, training curves, map previews, area
charts, the report's images) draws through :func:`pyplot` and writes files through
:func:`save_png`, so a headless server never needs a display and a killed job never
leaves half a PNG under its final name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cropseq.atomic import atomic_path

__all__ = ["pyplot", "save_png"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (unless one is already set).

    Imported on first use: the CLI starts without loading matplotlib.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: str | os.PathLike[str], **savefig: Any) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically (temporary sibling, then rename).

    Args:
        fig: A matplotlib figure (not closed here: callers close it in their ``finally``).
        path: The PNG to write.
        **savefig: Further ``Figure.savefig`` options (``dpi``, ``bbox_inches``).
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **savefig)
    return path
