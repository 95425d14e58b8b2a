"""Options of dense training (:class:`DenseConfig`), importable without torch.

The CLI reads the option defaults from here when it starts (``cropseq --help`` must not load
torch, see :mod:`cropseq.threads`); the choices are checked against the models' own lists,
imported only when a config is made.
"""

from __future__ import annotations

from dataclasses import dataclass

from cropseq.errors import CropseqError

__all__ = ["DenseConfig"]


@dataclass(frozen=True)
class DenseConfig:
    """Options of :func:`~cropseq.dense.train.train_dense`.

    Attributes:
        arch: ``gru``, ``lstm``, ``rnn`` (per-pixel core) or ``convlstm``.
        decoder: ``cnn``.
        window: Window edge ``P`` in pixels.
        epochs: Training epochs.
        windows_per_epoch: Random windows drawn per epoch.
        batch_size: Windows per optimiser step (small: many steps per epoch).
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        schedule: Learning-rate schedule over all steps, as ``cropseq train``'s:
            ``onecycle``, ``cosine`` or ``constant``.
        warmup: Warm-up share of the steps (``onecycle``).
        class_weighting: Per-pixel loss weights from the training pixels' class counts:
            ``sqrt`` (inverse square-root frequency), ``balanced`` (inverse frequency) or
            ``none``; the helper of ``cropseq train --class-weighting``.
        hidden_size: Recurrent hidden units (channels for the ConvLSTM) per direction.
        num_layers: Recurrent layers.
        bidirectional: Run the dates backwards too.
        patch: Per-date encoder patch (per-pixel cores).
        pooling: How the per-pixel cores pool a pixel's recurrent outputs: ``season`` (mean +
            seasonal bins, ``cropseq train``'s default) or ``mean-max``. On the validation fields
            of both benchmark scenes ``season`` gave the lower loss (demo: 0.90 vs 1.08 and
            0.80 vs 0.66 pixel accuracy).
        date_dropout: Probability of dropping each date of a training window (all its pixels),
            as ``cropseq train``'s temporal augmentation does per sequence.
        doy_shift: Maximum shift of a training window's days of year, in days.
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
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-2
    schedule: str = "onecycle"
    warmup: float = 0.1
    class_weighting: str = "sqrt"
    hidden_size: int = 32
    num_layers: int = 1
    bidirectional: bool = True
    patch: int = 1
    pooling: str = "season"
    date_dropout: float = 0.1
    doy_shift: float = 8.0
    decoder_width: int = 32
    decoder_layers: int = 2
    val_fraction: float = 0.2
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        from cropseq.dense.train import ARCHS  # torch: loaded only when options are checked
        from cropseq.models.decoder import DECODERS
        from cropseq.models.recurrent import POOLINGS
        from cropseq.training.config import SCHEDULES, WEIGHTINGS

        choices = {"dense architecture": (self.arch, ARCHS), "decoder": (self.decoder, DECODERS),
                   "class weighting": (self.class_weighting, WEIGHTINGS), "schedule": (self.schedule, SCHEDULES),
                   "pooling": (self.pooling, POOLINGS)}  # fmt: skip
        for what, (value, allowed) in choices.items():
            if value not in allowed:
                raise CropseqError(f"unknown {what} {value!r} (choose from {', '.join(allowed)})")
        if min(self.window, self.epochs, self.windows_per_epoch, self.batch_size) < 1:
            raise CropseqError("window, epochs, windows per epoch and batch size must be >= 1")
        if not self.lr > 0 or not 0.0 <= self.warmup < 1.0:
            raise CropseqError(f"lr must be > 0 and warmup in [0, 1), got {self.lr} and {self.warmup}")
        if not 0.0 <= self.date_dropout < 1.0 or self.doy_shift < 0:
            raise CropseqError(f"date dropout must be in [0, 1) and doy shift >= 0, got {self.date_dropout} and {self.doy_shift}")

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch: ``ceil(windows_per_epoch / batch_size)``."""
        return -(-self.windows_per_epoch // self.batch_size)
