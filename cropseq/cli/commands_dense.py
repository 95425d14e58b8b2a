"""CLI command ``cropseq train-dense``: train a dense (segmentation) model on windows of a stack.

Thin over :func:`cropseq.dense.train.train_dense`. The model file it writes (``kind: dense``)
is applied by ``cropseq predict`` like any other model (:class:`cropseq.predictors.dense.DensePredictor`).
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Optional

import typer

from cropseq.cli import app
from cropseq.dense.options import DenseConfig
from cropseq.errors import CropseqError

__all__ = ["train_dense_cmd"]

#: The option defaults: :class:`~cropseq.dense.options.DenseConfig`'s.
_D = {f.name: f.default for f in fields(DenseConfig)}


@app.command("train-dense")
def train_dense_cmd(
    stack: Path = typer.Option(..., "--stack", help="Stack manifest (stack.yaml), its folder, or a Zarr tile store."),
    labels: Path = typer.Option(..., "--labels", help="Labels: polygons/points (GeoPackage, ...) or a label raster (.tif)."),
    out: Path = typer.Option(..., "--out", help="Model file to write (.pt)."),
    arch: str = typer.Option("gru", "--arch", help="gru | lstm | rnn (per-pixel core + CNN decoder) | convlstm."),
    decoder: str = typer.Option("cnn", "--decoder", help="cnn (a few 3x3 convolutions)."),
    window: int = typer.Option(_D["window"], "--window", help="Training window edge P in pixels."),
    epochs: int = typer.Option(_D["epochs"], "--epochs", help="Training epochs (the best one on validation is kept)."),
    windows_per_epoch: int = typer.Option(_D["windows_per_epoch"], "--windows-per-epoch", help="Random windows drawn per epoch."),
    batch_size: int = typer.Option(_D["batch_size"], "--batch-size", help="Windows per optimiser step."),
    lr: float = typer.Option(_D["lr"], "--lr", help="Peak learning rate (one-cycle schedule)."),
    class_weighting: str = typer.Option(_D["class_weighting"], "--class-weighting", help="Loss weights: sqrt | balanced | none."),
    hidden: int = typer.Option(_D["hidden_size"], "--hidden", help="Hidden units (ConvLSTM: channels) per direction."),
    layers: int = typer.Option(_D["num_layers"], "--layers", help="Recurrent layers."),
    bidirectional: bool = typer.Option(True, "--bidirectional/--no-bidirectional", help="Bidirectional core (default on)."),
    patch: int = typer.Option(_D["patch"], "--patch", help="Per-date encoder patch of the per-pixel cores (odd)."),
    pooling: str = typer.Option(_D["pooling"], "--pooling", help="Per-pixel cores: season | mean-max."),
    date_dropout: float = typer.Option(_D["date_dropout"], "--date-dropout", help="Augmentation: drop each date of a window with this probability."),
    doy_shift: float = typer.Option(_D["doy_shift"], "--doy-shift", help="Augmentation: shift a window's days of year by up to this many days."),
    val_fraction: float = typer.Option(_D["val_fraction"], "--val-fraction", help="Share of labelled pixels, whole fields, held out for validation."),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="Field id column of vector labels (default: one field per feature)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Class table YAML (default: the labels' own)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Train a dense model (per-pixel core or ConvLSTM + CNN decoder) on windows of a stack."""
    from cropseq.classes import ClassTable
    from cropseq.cli._common import existing_path
    from cropseq.dense.train import train_dense
    from cropseq.dense.windows import dense_labels
    from cropseq.io import open_stack

    cfg = DenseConfig(arch=arch, decoder=decoder, window=window, epochs=epochs, windows_per_epoch=windows_per_epoch,
                      batch_size=batch_size, lr=lr, class_weighting=class_weighting, hidden_size=hidden, num_layers=layers,
                      bidirectional=bidirectional, patch=patch, pooling=pooling, date_dropout=date_dropout, doy_shift=doy_shift,
                      val_fraction=val_fraction, seed=seed, device=device)  # fmt: skip
    if not str(out.parent) or not out.parent.exists():
        raise CropseqError(f"output folder {out.parent} does not exist", out)
    existing_path(labels, "labels")
    cube = open_stack(stack)
    table = ClassTable.from_yaml(classes) if classes is not None else None
    lab = dense_labels(cube, labels, table, id_column)
    res = train_dense(cube, lab, cfg, out, progress=not quiet)
    acc = "" if res.val_accuracy is None else f"  validation pixel accuracy {res.val_accuracy:.4f}"
    print(f"model {res.path}  epochs {res.epochs_run} (best {res.best_epoch})  steps {res.steps}  "
          f"loss {res.train_loss:.4f}{acc}  halo {res.receptive_radius} px", file=sys.stdout)
