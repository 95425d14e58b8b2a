"""Training history: the per-epoch metrics CSV and the training-curve PNG."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

from cropseq.atomic import atomic_path
from cropseq.figures import pyplot, save_png

__all__ = ["COLUMNS", "epoch_line", "plot_history", "write_history"]

COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds")


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """The per-epoch line that ``cropseq train`` and ``cropseq train-dense`` print on stderr.

    Args:
        row: A history row (:data:`COLUMNS`; ``val_loss`` None without validation).
        epochs: The planned number of epochs.

    Returns:
        E.g. ``epoch   3/60  train_loss 0.4211  val_loss 0.3990  val_acc 0.8800  lr 2.10e-03  1.2s``.
    """
    vs = "" if row["val_loss"] is None else f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}"
    return f"epoch {row['epoch']:3d}/{epochs}  train_loss {row['train_loss']:.4f}{vs}  lr {row['lr']:.2e}  {row['seconds']:.1f}s"


def write_history(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> Path:
    """Write the metrics log (columns :data:`COLUMNS`; empty cell = not measured) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(COLUMNS)
            for r in rows:
                w.writerow(["" if r.get(c) is None or (isinstance(r.get(c), float) and math.isnan(r[c])) else r[c] for c in COLUMNS])
    return Path(path)


def plot_history(path: str | os.PathLike[str], rows: list[dict[str, Any]], best_epoch: int | None = None) -> Path:
    """Training curves PNG: losses (left axis), validation accuracy (right axis), LR (bottom)."""
    plt = pyplot()

    ep = [r["epoch"] for r in rows]

    def col(c: str) -> list[float]:
        return [float("nan") if r.get(c) is None else float(r[c]) for r in rows]

    fig, (ax, axl) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(ep, col("train_loss"), label="train loss", color="#1f77b4")
    if any(not math.isnan(v) for v in col("val_loss")):
        ax.plot(ep, col("val_loss"), label="validation loss", color="#ff7f0e")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    acc = col("val_accuracy")
    if any(not math.isnan(v) for v in acc):
        ax2 = ax.twinx()
        ax2.plot(ep, acc, label="validation accuracy", color="#2ca02c")
        ax2.set_ylabel("accuracy")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if best_epoch is not None:
        ax.axvline(best_epoch, color="grey", ls="--", lw=1)
        handles.append(ax.lines[-1])
        labels.append(f"best epoch {best_epoch}")
    ax.legend(handles, labels, loc="upper right", fontsize=8)
    axl.plot(ep, col("lr"), color="#7f7f7f")
    axl.set_ylabel("lr")
    axl.set_xlabel("epoch")
    axl.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    axl.grid(alpha=0.3)
    fig.tight_layout()
    try:
        return save_png(fig, path, dpi=110)
    finally:
        plt.close(fig)
