"""CLI command ``cropseq train-dense``: train a dense (segmentation) model on windows of a stack.

Thin over :func:`cropseq.dense.train.train_dense`. The model file it writes (``kind: dense``)
is applied by ``cropseq predict`` like any other model (:class:`cropseq.predictors.dense.DensePredictor`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from cropseq.cli import app
from cropseq.errors import CropseqError

__all__ = ["train_dense_cmd"]


@app.command("train-dense")
def train_dense_cmd(
    stack: Path = typer.Option(..., "--stack", help="Stack manifest (stack.yaml), its folder, or a Zarr tile store."),
    labels: Path = typer.Option(..., "--labels", help="Labels: polygons/points (GeoPackage, ...) or a label raster (.tif)."),
    out: Path = typer.Option(..., "--out", help="Model file to write (.pt)."),
    arch: str = typer.Option("gru", "--arch", help="gru | lstm | rnn (per-pixel core + CNN decoder) | convlstm."),
    decoder: str = typer.Option("cnn", "--decoder", help="cnn (a few 3x3 convolutions)."),
    window: int = typer.Option(32, "--window", help="Training window edge P in pixels."),
    epochs: int = typer.Option(20, "--epochs", help="Training epochs."),
    windows_per_epoch: int = typer.Option(64, "--windows-per-epoch", help="Random windows per epoch."),
    batch_size: int = typer.Option(8, "--batch-size", help="Windows per step."),
    hidden: int = typer.Option(32, "--hidden", help="Hidden units (ConvLSTM: channels) per direction."),
    layers: int = typer.Option(1, "--layers", help="Recurrent layers."),
    bidirectional: bool = typer.Option(True, "--bidirectional/--no-bidirectional", help="Bidirectional core (default on)."),
    patch: int = typer.Option(1, "--patch", help="Per-date encoder patch of the per-pixel cores (odd)."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Share of labelled pixels, whole fields, held out for validation."),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="Field id column of vector labels (default: one field per feature)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Class table YAML (default: the labels' own)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Train a dense model (per-pixel core or ConvLSTM + CNN decoder) on windows of a stack."""
    from cropseq.classes import ClassTable
    from cropseq.cli._common import existing_path
    from cropseq.dense.train import DenseConfig, train_dense
    from cropseq.dense.windows import dense_labels
    from cropseq.io import open_stack

    cfg = DenseConfig(arch=arch, decoder=decoder, window=window, epochs=epochs, windows_per_epoch=windows_per_epoch,
                      batch_size=batch_size, hidden_size=hidden, num_layers=layers, bidirectional=bidirectional,
                      patch=patch, val_fraction=val_fraction, seed=seed, device=device)  # fmt: skip
    if not str(out.parent) or not out.parent.exists():
        raise CropseqError(f"output folder {out.parent} does not exist", out)
    existing_path(labels, "labels")
    cube = open_stack(stack)
    table = ClassTable.from_yaml(classes) if classes is not None else None
    lab = dense_labels(cube, labels, table, id_column)
    res = train_dense(cube, lab, cfg, out, progress=not quiet)
    acc = "" if res.val_accuracy is None else f"  validation pixel accuracy {res.val_accuracy:.4f}"
    print(f"model {res.path}  epochs {res.epochs_run}  loss {res.train_loss:.4f}{acc}  halo {res.receptive_radius} px",
          file=sys.stdout)
