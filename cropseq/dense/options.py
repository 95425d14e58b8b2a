"""Options of dense training (:class:`DenseConfig`), importable without torch.

The CLI reads the option defaults from here when it starts (``cropseq --help`` must not load
torch, see :mod:`cropseq.threads`); the choices are checked against the models' own lists,
imported only when a config is made. The options every training loop shares (epochs,
batch size, learning rate and schedule, class weighting, temporal augmentation, device...) are
:class:`~cropseq.optimisation.SupervisedOptions`'s, inherited with the defaults of dense
training.
"""

from __future__ import annotations

from dataclasses import dataclass

from cropseq.errors import CropseqError
from cropseq.optimisation import SupervisedOptions

__all__ = ["DenseConfig"]


@dataclass(frozen=True)
class DenseConfig(SupervisedOptions):
    """Options of :func:`~cropseq.dense.train.train_dense`.

    Shared with the other training loops, inherited with their defaults from
    :class:`~cropseq.optimisation.SupervisedOptions` (documented there): ``weight_decay``,
    ``seed`` (of the windows, the split and the weights), ``schedule`` (over all steps),
    ``warmup``, ``date_dropout`` (a dropped date is dropped for all pixels of a window),
    ``doy_shift`` (per window), ``device``; and these, with the defaults of dense training:

    Attributes:
        epochs: Training epochs (the best one on validation is kept).
        batch_size: Windows per optimiser step (small: many steps per epoch).
        lr: Peak AdamW learning rate.
        grad_clip: Gradient-norm clip (always clipped).
        class_weighting: Per-pixel loss weights from the training pixels' class counts
            (``sqrt`` here: inverse square-root frequency); the helper of ``cropseq train``'s.
        arch: ``gru``, ``lstm``, ``rnn`` (per-pixel core) or ``convlstm``.
        decoder: ``cnn``.
        window: Window edge ``P`` in pixels.
        windows_per_epoch: Random windows drawn per epoch.
        hidden_size: Recurrent hidden units (channels for the ConvLSTM) per direction.
        num_layers: Recurrent layers.
        bidirectional: Run the dates backwards too.
        patch: Per-date encoder patch (per-pixel cores).
        pooling: How the per-pixel cores pool a pixel's recurrent outputs: ``season`` (mean +
            seasonal bins, ``cropseq train``'s default) or ``mean-max``. On the validation fields
            of both benchmark scenes ``season`` gave the lower loss (demo: 0.90 vs 1.08 and
            0.80 vs 0.66 pixel accuracy).
        decoder_width: Decoder channels.
        decoder_layers: Decoder 3x3 convolutions.
        val_fraction: Share of labelled pixels (whole fields) held out for validation.
    """

    epochs: int = 20
    batch_size: int = 4
    lr: float = 2e-3
    grad_clip: float = 1.0
    class_weighting: str = "sqrt"

    arch: str = "gru"
    decoder: str = "cnn"
    window: int = 32
    windows_per_epoch: int = 64
    hidden_size: int = 32
    num_layers: int = 1
    bidirectional: bool = True
    patch: int = 1
    pooling: str = "season"
    decoder_width: int = 32
    decoder_layers: int = 2
    val_fraction: float = 0.2

    def __post_init__(self) -> None:
        from cropseq.dense.train import ARCHS  # torch: loaded only when options are checked
        from cropseq.models.decoder import DECODERS
        from cropseq.models.recurrent import POOLINGS

        self.check()
        choices = {"dense architecture": (self.arch, ARCHS), "decoder": (self.decoder, DECODERS),
                   "pooling": (self.pooling, POOLINGS)}  # fmt: skip
        for what, (value, allowed) in choices.items():
            if value not in allowed:
                raise CropseqError(f"unknown {what} {value!r} (choose from {', '.join(allowed)})")
        if min(self.window, self.windows_per_epoch) < 1:
            raise CropseqError(f"window and windows per epoch must be >= 1, got {self.window} and {self.windows_per_epoch}")

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch: ``ceil(windows_per_epoch / batch_size)``."""
        return -(-self.windows_per_epoch // self.batch_size)
