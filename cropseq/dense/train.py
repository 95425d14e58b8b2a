"""Dense (segmentation) training: windows of the cube, a label per pixel, a CNN decoder.

A compact loop over :mod:`cropseq.dense.windows`: seeded random windows of the training side
of a field-grouped split, AdamW, cross-entropy with unlabelled pixels ignored, gradient
clipping. Band normalisation is :func:`cropseq.training.normalization.band_statistics` over the
scene's values (imagery only, no labels). The checkpoint (``kind: dense``) goes through
:mod:`cropseq.checkpoint`; its ``patch`` is ``2 R + 1`` with ``R`` the model's receptive radius,
so the inference package reads each chunk with the halo the model needs
(:class:`cropseq.predictors.dense.DensePredictor`).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cropseq.classes import ClassTable
from cropseq.dense.windows import (
    IGNORE,
    DenseLabels,
    grid_windows,
    padded_array,
    random_windows,
    split_groups,
    window_batch,
)
from cropseq.errors import CropseqError
from cropseq.models.convlstm import ConvLSTMConfig, ConvLSTMModel
from cropseq.models.decoder import DECODERS, DenseSequenceModel
from cropseq.models.recurrent import CELLS, ArchConfig

__all__ = ["ARCHS", "DenseConfig", "DenseModel", "DenseResult", "build_dense_model", "dense_meta", "train_dense"]

#: ``--arch`` values of dense training: the per-pixel cells, or the ConvLSTM.
ARCHS = (*CELLS, "convlstm")
#: A dense model: per-pixel core + decoder, or ConvLSTM + decoder.
DenseModel = DenseSequenceModel | ConvLSTMModel


@dataclass(frozen=True)
class DenseConfig:
    """Options of :func:`train_dense`.

    Attributes:
        arch: ``gru``, ``lstm``, ``rnn`` (per-pixel core) or ``convlstm``.
        decoder: ``cnn``.
        window: Window edge ``P`` in pixels.
        epochs: Training epochs.
        windows_per_epoch: Random windows per epoch.
        batch_size: Windows per step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        hidden_size: Recurrent hidden units (channels for the ConvLSTM) per direction.
        num_layers: Recurrent layers.
        bidirectional: Run the dates backwards too.
        patch: Per-date encoder patch (per-pixel cores).
        decoder_width: Decoder channels.
        decoder_layers: Decoder 3x3 convolutions.
        val_fraction: Share of labelled pixels (whole fields) held out for validation.
        grad_clip: Gradient-norm clip.
        seed: Seed of windows, split and weights.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    arch: str = "gru"
    decoder: str = "cnn"
    window: int = 32
    epochs: int = 20
    windows_per_epoch: int = 64
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-2
    hidden_size: int = 32
    num_layers: int = 1
    bidirectional: bool = True
    patch: int = 1
    decoder_width: int = 32
    decoder_layers: int = 2
    val_fraction: float = 0.2
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise CropseqError(f"unknown dense architecture {self.arch!r} (choose from {', '.join(ARCHS)})")
        if self.decoder not in DECODERS:
            raise CropseqError(f"unknown decoder {self.decoder!r} (choose from {', '.join(DECODERS)})")
        if min(self.window, self.epochs, self.windows_per_epoch, self.batch_size) < 1:
            raise CropseqError("window, epochs, windows per epoch and batch size must be >= 1")


@dataclass
class DenseResult:
    """What :func:`train_dense` did.

    Attributes:
        path: The checkpoint written.
        epochs_run: Epochs trained.
        train_loss: Mean loss of the last epoch.
        val_accuracy: Pixel accuracy on the validation fields (None without validation).
        receptive_radius: The model's halo in pixels.
        seconds: Wall time.
    """

    path: Path
    epochs_run: int
    train_loss: float
    val_accuracy: float | None
    receptive_radius: int
    seconds: float


def _model_record(cfg: DenseConfig, n_bands: int, n_classes: int, n_dates: int) -> dict[str, Any]:
    """The checkpoint's ``arch`` record for ``cfg``."""
    if cfg.arch == "convlstm":
        return ConvLSTMConfig(n_bands, n_classes, max_dates=n_dates, hidden_size=cfg.hidden_size,
                              num_layers=cfg.num_layers, bidirectional=cfg.bidirectional).to_dict()  # fmt: skip
    return ArchConfig(n_bands=n_bands, n_classes=n_classes, patch=cfg.patch, cell=cfg.arch,
                      bidirectional=cfg.bidirectional, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                      encoder_width=cfg.hidden_size, encoder_dim=cfg.hidden_size, pooling="mean-max").to_dict()  # fmt: skip


def build_dense_model(arch: dict[str, Any], decoder: dict[str, Any], norm_center: Any = None,
                      norm_scale: Any = None) -> DenseModel:  # fmt: skip
    """The dense model of a checkpoint's ``arch`` and ``decoder`` records.

    Raises:
        CropseqError: an unknown decoder or invalid hyper-parameters.
    """
    if decoder.get("kind") not in DECODERS:
        raise CropseqError(f"unknown decoder {decoder.get('kind')!r} (choose from {', '.join(DECODERS)})")
    width, layers = int(decoder.get("width", 32)), int(decoder.get("layers", 2))
    if arch.get("cell") == "convlstm":
        return ConvLSTMModel(ConvLSTMConfig.from_dict(arch), width, layers, norm_center, norm_scale)
    return DenseSequenceModel(ArchConfig.from_dict(arch), width, layers, norm_center, norm_scale)


def dense_meta(model: DenseModel, arch: dict[str, Any], cfg: DenseConfig, bands: list[str],
               norm: tuple[np.ndarray, np.ndarray], classes: ClassTable, epoch: int, extra: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Checkpoint metadata of a dense model (``kind: dense``; ``patch`` = ``2 R + 1``)."""
    from cropseq import __version__

    r = int(model.receptive_radius)
    return {
        "cropseq_version": __version__, "kind": "dense", "arch": arch, "bands": list(bands),
        "decoder": {"kind": cfg.decoder, "width": cfg.decoder_width, "layers": cfg.decoder_layers},
        "receptive_radius": r, "patch": 2 * r + 1, "head": "dense",
        "norm": {"mean": [float(v) for v in norm[0]], "std": [float(v) for v in norm[1]], "method": "robust"},
        "classes": classes.to_records(),
        "temporal_encoding": {"kind": "doy-phase", "phase": "2*pi*(doy-1)/365.25 when doy is known, else 2*pi*t/period_steps"},
        "epoch": epoch, "complete": True, "training": {**asdict(cfg), **extra},
    }  # fmt: skip


def _run_epoch(model: DenseModel, opt: torch.optim.Optimizer, padded: np.ndarray, labels: DenseLabels, doy: torch.Tensor,
               cfg: DenseConfig, epoch: int, device: torch.device, bar: Any) -> float:  # fmt: skip
    """One epoch over fresh random windows; returns the mean loss."""
    model.train()
    r = int(model.receptive_radius)
    wins = random_windows(labels, cfg.window, cfg.windows_per_epoch, seed=cfg.seed * 100_003 + epoch)
    n_batches = -(-len(wins) // cfg.batch_size)
    losses = []
    for i in range(n_batches):
        x, y = window_batch(padded, labels.index, wins[i * cfg.batch_size : (i + 1) * cfg.batch_size], cfg.window, r)
        xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        logits = model(xt, doy.expand(xt.shape[0], -1))
        loss = F.cross_entropy(logits, yt, ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        bar(i + 1, n_batches, label=f"epoch {epoch + 1}/{cfg.epochs}", note=f"loss {np.mean(losses):.4f}")
    return float(np.mean(losses))


@torch.no_grad()
def _accuracy(model: DenseModel, padded: np.ndarray, labels: DenseLabels, doy: torch.Tensor, cfg: DenseConfig,
              device: torch.device) -> float:  # fmt: skip
    """Pixel accuracy over the labelled pixels of ``labels`` (grid windows over the scene)."""
    model.eval()
    r = int(model.receptive_radius)
    right = total = 0
    for win in grid_windows(labels.index.shape, cfg.window):
        x, y = window_batch(padded, labels.index, [win], cfg.window, r)
        if not (y != IGNORE).any():
            continue
        pred = model(torch.from_numpy(x).to(device), doy).argmax(dim=1).cpu().numpy()
        keep = y != IGNORE
        right += int((pred[keep] == y[keep]).sum())
        total += int(keep.sum())
    return right / max(total, 1)


def train_dense(cube: Any, labels: DenseLabels, cfg: DenseConfig, out: str | os.PathLike[str],
                progress: bool = True) -> DenseResult:  # fmt: skip
    """Train a dense model on a cube and per-pixel labels, and write its checkpoint.

    Args:
        cube: The stack cube ``(time, band, y, x)`` (loaded into memory here).
        labels: Per-pixel labels on the cube's grid (:func:`~cropseq.dense.windows.dense_labels`).
        cfg: Options.
        out: Checkpoint to write (``.pt``).
        progress: Show a progress bar on stderr.

    Returns:
        A :class:`DenseResult`.

    Raises:
        CropseqError: bad options, a split without two fields, no labelled window.
    """
    from cropseq.checkpoint import save_checkpoint
    from cropseq.inference.season import day_of_year
    from cropseq.predictors.base import resolve_device
    from cropseq.progress import progress_bar
    from cropseq.training.normalization import band_statistics

    t0 = time.time()
    torch.manual_seed(cfg.seed)
    device = torch.device(resolve_device(cfg.device))
    data = np.asarray(cube.transpose("time", "band", "y", "x").values, dtype=np.float32)
    bands = [str(b) for b in cube["band"].values]
    train_l, val_l = split_groups(labels, cfg.val_fraction, cfg.seed)
    norm = band_statistics(data[None], seed=cfg.seed)
    arch = _model_record(cfg, len(bands), len(labels.classes), data.shape[0])
    model = build_dense_model(arch, {"kind": cfg.decoder, "width": cfg.decoder_width, "layers": cfg.decoder_layers},
                              torch.from_numpy(norm[0]), torch.from_numpy(norm[1])).to(device)  # fmt: skip
    padded = padded_array(data, model.receptive_radius)
    doy = torch.from_numpy(day_of_year(cube)[None]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss, val_acc = float("nan"), None
    with progress_bar("dense training", progress, unit="batches", transient=True) as bar:
        for epoch in range(cfg.epochs):
            loss = _run_epoch(model, opt, padded, train_l, doy, cfg, epoch, device, bar)
    if val_l is not None:
        val_acc = _accuracy(model, padded, val_l, doy, cfg, device)
    extra = {"n_train_pixels": train_l.n_labelled, "n_val_pixels": 0 if val_l is None else val_l.n_labelled,
             "val_accuracy": val_acc, "device": device.type}  # fmt: skip
    meta = dense_meta(model, arch, cfg, bands, norm, labels.classes, cfg.epochs, extra)
    path = save_checkpoint(out, model.state_dict(), meta)
    return DenseResult(path, cfg.epochs, loss, val_acc, int(model.receptive_radius), time.time() - t0)
