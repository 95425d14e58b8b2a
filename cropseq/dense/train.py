"""Dense (segmentation) training: windows of the cube, a label per pixel, a CNN decoder.

The loop of a segmentation trainer (torchgeo's, the PASTIS baselines'), over
:mod:`cropseq.dense.windows`:

- **steps**: every epoch draws ``windows_per_epoch`` fresh seeded random windows of the
  training side of a field-grouped split and makes one AdamW step per ``batch_size`` of them,
  so a run makes ``epochs * ceil(windows_per_epoch / batch_size)`` steps (320 by default);
  the learning rate follows the per-pixel trainer's schedule (one-cycle by default);
- **loss**: cross-entropy per pixel, unlabelled pixels ignored, classes weighted by the
  per-pixel trainer's helper (``sqrt`` by default: a land-cover raster is mostly forest);
- **augmentation**: the per-pixel trainer's temporal one (:mod:`cropseq.training.augmentation`)
  per window: each date dropped with probability ``date_dropout`` (a cloud over the whole
  window), the window's days of year shifted by up to ``doy_shift`` days;
- **best epoch**: after each epoch the model maps the validation fields (grid windows, each
  pixel once) and the weights of the epoch with the lowest validation loss (the training
  loss, same class weights) are the ones delivered; without validation, the last epoch's;
- **progress**: the per-pixel trainer's per-epoch bar on a terminal and one line per epoch
  on stderr; ``<stem>.history.csv`` and ``<stem>.curves.png`` beside the model.

Band normalisation is :func:`cropseq.training.normalization.band_statistics` over the
scene's values (imagery only, no labels). The checkpoint (``kind: dense``) goes through
:mod:`cropseq.checkpoint`; its ``patch`` is ``2 R + 1`` with ``R`` the model's receptive radius,
so the inference package reads each chunk with the halo the model needs
(:class:`cropseq.predictors.dense.DensePredictor`).
"""

from __future__ import annotations

import copy
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cropseq.classes import ClassTable
from cropseq.dense.options import DenseConfig
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
from cropseq.training.augmentation import Augmentation

__all__ = ["ARCHS", "DenseConfig", "DenseModel", "DenseResult", "build_dense_model", "dense_meta", "scene_logits",
           "train_dense", "validation_metrics"]  # fmt: skip

#: ``--arch`` values of dense training: the per-pixel cells, or the ConvLSTM.
ARCHS = (*CELLS, "convlstm")
#: A dense model: per-pixel core + decoder, or ConvLSTM + decoder.
DenseModel = DenseSequenceModel | ConvLSTMModel


@dataclass
class DenseResult:
    """What :func:`train_dense` did.

    Attributes:
        path: The checkpoint written.
        epochs_run: Epochs trained.
        best_epoch: Epoch whose weights were delivered (lowest validation loss; the last
            epoch without validation).
        steps: Optimiser steps made.
        train_loss: Mean loss of the delivered epoch.
        val_accuracy: Pixel accuracy of the delivered weights on the validation fields (None
            without validation).
        receptive_radius: The model's halo in pixels.
        seconds: Wall time.
        history: One row per epoch (``cropseq.training.history.COLUMNS``).
        history_path: The per-epoch CSV.
    """

    path: Path
    epochs_run: int
    best_epoch: int
    steps: int
    train_loss: float
    val_accuracy: float | None
    receptive_radius: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    history_path: Path | None = None


def _model_record(cfg: DenseConfig, n_bands: int, n_classes: int, n_dates: int) -> dict[str, Any]:
    """The checkpoint's ``arch`` record for ``cfg``."""
    if cfg.arch == "convlstm":
        return ConvLSTMConfig(n_bands, n_classes, max_dates=n_dates, hidden_size=cfg.hidden_size,
                              num_layers=cfg.num_layers, bidirectional=cfg.bidirectional).to_dict()  # fmt: skip
    return ArchConfig(n_bands=n_bands, n_classes=n_classes, patch=cfg.patch, cell=cfg.arch,
                      bidirectional=cfg.bidirectional, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                      encoder_width=cfg.hidden_size, encoder_dim=cfg.hidden_size, pooling=cfg.pooling).to_dict()  # fmt: skip


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


@dataclass
class _Run:
    """What every epoch of a run needs: the model, its optimiser, the data and the step count."""

    model: DenseModel
    opt: torch.optim.Optimizer
    padded: np.ndarray  # (T, C, H + 2R, W + 2R), NaN border
    train: DenseLabels
    val: DenseLabels | None
    doy: torch.Tensor  # (1, T)
    weight: torch.Tensor | None  # per-class loss weights
    device: torch.device
    total_steps: int
    aug: Augmentation
    scale: torch.Tensor  # (C,) band scale, for the augmentation
    step: int = 0


def _train_step(run: _Run, cfg: DenseConfig, x: np.ndarray, y: np.ndarray, gen: torch.Generator) -> float:
    """One optimiser step on a batch of windows (learning rate from the schedule, augmented dates); its loss."""
    from cropseq.training.loop import lr_factor

    for g in run.opt.param_groups:
        g["lr"] = cfg.lr * lr_factor(run.step, run.total_steps, cfg.schedule, cfg.warmup)
    xt, yt = torch.from_numpy(x).to(run.device), torch.from_numpy(y).to(run.device)
    xt, doy = run.aug(xt, run.doy.expand(xt.shape[0], -1), run.scale, gen)
    logits = run.model(xt, doy)
    loss = F.cross_entropy(logits, yt, weight=run.weight, ignore_index=IGNORE)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.opt.step()
    run.step += 1
    return float(loss.detach())


def _run_epoch(run: _Run, cfg: DenseConfig, epoch: int, bar: Any) -> float:
    """One epoch (1-based) over ``windows_per_epoch`` fresh random windows; returns the mean loss."""
    run.model.train()
    seed = cfg.seed * 100_003 + epoch
    torch.manual_seed(seed)  # dropout: an epoch does not depend on the ones before
    gen = torch.Generator().manual_seed(seed + 1)  # augmentation
    r = int(run.model.receptive_radius)
    wins = random_windows(run.train, cfg.window, cfg.windows_per_epoch, seed=seed)
    losses: list[float] = []
    for i in range(0, len(wins), cfg.batch_size):
        x, y = window_batch(run.padded, run.train.index, wins[i : i + cfg.batch_size], cfg.window, r)
        losses.append(_train_step(run, cfg, x, y, gen))
        bar(len(losses), cfg.steps_per_epoch, note=f"loss {np.mean(losses):.4f}")
    return float(np.mean(losses))


@torch.no_grad()
def scene_logits(model: DenseModel, padded: np.ndarray, doy: torch.Tensor, window: int, device: torch.device,
                 need: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Logits ``(K, H, W)`` of the scene, window by window on a grid.

    Where the last row or column of windows overlaps the one before, the later values are
    kept: the same numbers, since a pixel's logits do not depend on the window around it.

    Args:
        model: The dense model (put in eval mode here).
        padded: The scene's :func:`~cropseq.dense.windows.padded_array` with the model's halo.
        doy: ``(1, T)`` day of year.
        window: Window edge.
        device: Where the model runs.
        need: ``(H, W)`` bool: compute only the windows holding one of these pixels (the rest NaN).
    """
    model.eval()
    r = int(model.receptive_radius)
    h, w = padded.shape[-2] - 2 * r, padded.shape[-1] - 2 * r
    out = np.full((model.arch.n_classes, h, w), np.nan, np.float32)
    blank = np.full((h, w), IGNORE, np.int64)
    for r0, c0 in grid_windows((h, w), window):
        if need is not None and not need[r0 : r0 + window, c0 : c0 + window].any():
            continue
        x, _ = window_batch(padded, blank, [(r0, c0)], window, r)
        logits = model(torch.from_numpy(x).to(device), doy)[0].float().cpu().numpy()
        out[:, r0 : r0 + window, c0 : c0 + window] = logits[:, : h - r0, : w - c0]
    return out


def validation_metrics(model: DenseModel, padded: np.ndarray, labels: DenseLabels, doy: torch.Tensor, window: int,
                       device: torch.device, weight: torch.Tensor | None = None) -> tuple[float, float]:  # fmt: skip
    """``(loss, pixel accuracy)`` over the labelled pixels of ``labels``, each pixel once.

    The loss is the training loss (cross-entropy with the class weights ``weight``).
    """
    keep = labels.index != IGNORE
    logits = torch.from_numpy(np.ascontiguousarray(scene_logits(model, padded, doy, window, device, keep)[:, keep].T))
    y = torch.from_numpy(labels.index[keep])
    loss = F.cross_entropy(logits, y, weight=None if weight is None else weight.cpu())
    return float(loss), float((logits.argmax(1) == y).float().mean())


def _end_epoch(run: _Run, cfg: DenseConfig, epoch: int, train_loss: float, t0: float,
               best: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Validate, keep the best weights in ``best`` (``epoch``, ``state``, ``loss``); the history row."""
    val_loss: float | None = None
    val_acc: float | None = None
    if run.val is not None:
        val_loss, val_acc = validation_metrics(run.model, run.padded, run.val, run.doy, cfg.window, run.device, run.weight)
    if val_loss is None or best.get("loss") is None or val_loss < best["loss"]:
        best.update(epoch=epoch, loss=val_loss, state=copy.deepcopy(run.model.state_dict()))
    return {"epoch": epoch, "train_loss": round(train_loss, 6),
            "val_loss": None if val_loss is None else round(val_loss, 6),
            "val_accuracy": None if val_acc is None else round(val_acc, 6),
            "lr": float(f"{run.opt.param_groups[0]['lr']:.6g}"), "seconds": round(time.time() - t0, 3)}  # fmt: skip


def _setup(cube: Any, labels: DenseLabels, cfg: DenseConfig) -> tuple[_Run, dict[str, Any], tuple[np.ndarray, np.ndarray], list[str]]:
    """The seeded model, optimiser and data of a run; also its ``arch`` record, band normalisation and bands."""
    from cropseq.inference.season import day_of_year
    from cropseq.predictors.base import resolve_device
    from cropseq.training.loop import class_weights
    from cropseq.training.normalization import band_statistics

    torch.manual_seed(cfg.seed)
    device = torch.device(resolve_device(cfg.device))
    data = np.asarray(cube.transpose("time", "band", "y", "x").values, dtype=np.float32)
    bands = [str(b) for b in cube["band"].values]
    train_l, val_l = split_groups(labels, cfg.val_fraction, cfg.seed)
    norm = band_statistics(data[None], seed=cfg.seed)
    arch = _model_record(cfg, len(bands), len(labels.classes), data.shape[0])
    model = build_dense_model(arch, {"kind": cfg.decoder, "width": cfg.decoder_width, "layers": cfg.decoder_layers},
                              torch.from_numpy(norm[0]), torch.from_numpy(norm[1])).to(device)  # fmt: skip
    weight = class_weights(train_l.index[train_l.index != IGNORE], len(labels.classes), cfg.class_weighting)
    run = _Run(model=model, opt=torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
               padded=padded_array(data, model.receptive_radius), train=train_l, val=val_l,
               doy=torch.from_numpy(day_of_year(cube)[None]).to(device), weight=None if weight is None else weight.to(device),
               device=device, total_steps=cfg.epochs * cfg.steps_per_epoch,
               aug=Augmentation(cfg.date_dropout, cfg.doy_shift), scale=torch.from_numpy(norm[1]))  # fmt: skip
    return run, arch, norm, bands


def _announce(run: _Run, cfg: DenseConfig) -> None:
    """The line on stderr before the first epoch: what trains on what."""
    t, c = run.padded.shape[:2]
    core = "ConvLSTM" if cfg.arch == "convlstm" else f"{cfg.arch} (per pixel)"
    val = "none" if run.val is None else f"{run.val.n_labelled} pixels of whole fields"
    print(f"training dense {core}{' bi' if cfg.bidirectional else ''} hidden {cfg.hidden_size} + {cfg.decoder} decoder "
          f"(halo {run.model.receptive_radius} px) on {run.train.n_labelled} labelled pixels x {t} dates x {c} bands, "
          f"{cfg.epochs} epochs x {cfg.steps_per_epoch} steps of {cfg.batch_size} windows of {cfg.window} px, "
          f"class weighting {cfg.class_weighting}, validation: {val}, device {run.device.type}", file=sys.stderr)  # fmt: skip


def train_dense(cube: Any, labels: DenseLabels, cfg: DenseConfig, out: str | os.PathLike[str],
                progress: bool = True) -> DenseResult:  # fmt: skip
    """Train a dense model on a cube and per-pixel labels, and write its checkpoint and history.

    Args:
        cube: The stack cube ``(time, band, y, x)`` (loaded into memory here).
        labels: Per-pixel labels on the cube's grid (:func:`~cropseq.dense.windows.dense_labels`).
        cfg: Options.
        out: Checkpoint to write (``.pt``); ``<stem>.history.csv`` and ``<stem>.curves.png``
            go beside it.
        progress: One line per epoch on stderr (and a bar per epoch on a terminal).

    Returns:
        A :class:`DenseResult`.

    Raises:
        CropseqError: bad options, a split without two fields, no labelled window, an
            unwritable output.
    """
    from cropseq.atomic import check_writable
    from cropseq.checkpoint import save_checkpoint
    from cropseq.progress import progress_bar, stderr_is_terminal
    from cropseq.training.history import epoch_line, plot_history, write_history

    t_start = time.time()
    out = check_writable(Path(out))
    history_path = check_writable(out.with_name(f"{out.stem}.history.csv"))
    plot_path = check_writable(out.with_name(f"{out.stem}.curves.png"))
    run, arch, norm, bands = _setup(cube, labels, cfg)
    if progress:
        _announce(run, cfg)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {}
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.time()
        with progress_bar(f"epoch {epoch}/{cfg.epochs}", progress and stderr_is_terminal(), unit="batches", transient=True) as bar:
            train_loss = _run_epoch(run, cfg, epoch, bar)
        history.append(_end_epoch(run, cfg, epoch, train_loss, t0, best))
        if progress:
            print(epoch_line(history[-1], cfg.epochs), file=sys.stderr)
    run.model.load_state_dict(best["state"])
    delivered = history[best["epoch"] - 1]
    extra = {"n_train_pixels": run.train.n_labelled, "n_val_pixels": 0 if run.val is None else run.val.n_labelled,
             "val_accuracy": delivered["val_accuracy"], "best_epoch": best["epoch"], "epochs_run": cfg.epochs,
             "steps": run.step, "device": run.device.type,
             "class_weights": None if run.weight is None else [round(float(v), 6) for v in run.weight]}  # fmt: skip
    path = save_checkpoint(out, run.model.state_dict(), dense_meta(run.model, arch, cfg, bands, norm, labels.classes, cfg.epochs, extra))
    write_history(history_path, history)
    plot_history(plot_path, history, best["epoch"] if run.val is not None else None)
    if progress:
        acc = "" if run.val is None else f" (validation accuracy {delivered['val_accuracy']:.4f}, epoch {best['epoch']})"
        print(f"saved {path}{acc}", file=sys.stderr)
    return DenseResult(path, cfg.epochs, best["epoch"], run.step, delivered["train_loss"], delivered["val_accuracy"],
                       int(run.model.receptive_radius), time.time() - t_start, history, history_path)  # fmt: skip
