"""The options cropseq's training loops share, declared and checked once (importable without torch).

Three loops fit a network with AdamW: :func:`cropseq.training.train_model` on sequences
(:class:`~cropseq.training.config.TrainConfig`), :func:`cropseq.dense.train.train_dense` on
windows (:class:`~cropseq.dense.options.DenseConfig`) and :func:`cropseq.distill.distill` on a
teacher's probabilities (:class:`~cropseq.distill.DistillConfig`). Their configs *inherit* the
options they share from the two dataclasses here, so each option has one name, one meaning and
one check. Inheritance keeps the options flat (``cfg.lr``): ``dataclasses.asdict`` records,
YAML keys and the CLI see the same names as if each config declared them. A config redeclares
a shared field only to give it its own default (e.g. ``DenseConfig.batch_size = 4``).

- :class:`OptimisationOptions` (all three loops): epochs, batch size, learning rate, weight
  decay, gradient clip, seed. Its defaults are ``cropseq train``'s.
- :class:`SupervisedOptions` (the two loops on labelled data, ``train`` and ``train-dense``):
  adds the learning-rate schedule, the class weighting of the loss, the temporal augmentation
  and the device.

All are frozen: a config is checked once, when it is made (or, for ``TrainConfig``, by its
``validate``), and cannot drift afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from cropseq.errors import CropseqError
from cropseq.predictors.base import DEVICES

__all__ = ["DEVICES", "SCHEDULES", "WEIGHTINGS", "OptimisationOptions", "SupervisedOptions"]

#: Learning-rate schedules (``lr_factor`` in :mod:`cropseq.training.loop`).
SCHEDULES = ("onecycle", "cosine", "constant")
#: Class weightings of the loss (``class_weights`` in :mod:`cropseq.training.loop`).
WEIGHTINGS = ("none", "sqrt", "balanced")


def _reject(message: str) -> NoReturn:
    """The default ``bad`` of the checks: a config checked where it is made names no file."""
    raise CropseqError(message)


@dataclass(frozen=True)
class OptimisationOptions:
    """The options of every cropseq training loop (AdamW over mini-batches).

    Attributes:
        epochs: Training epochs; None = the loop chooses (only ``TrainConfig`` has an
            automatic count; the other configs take an explicit one).
        batch_size: Samples (sequences, windows, pixels) per optimiser update.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW decoupled weight decay.
        grad_clip: Clip the global gradient norm to this value; None = no clipping.
        seed: Seed of everything random in the run; a CPU run is repeatable.
    """

    epochs: int | None = None
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-2
    grad_clip: float | None = 1.0
    seed: int = 0

    def check(self, bad: Callable[[str], None] = _reject) -> None:
        """Check the shared options.

        Args:
            bad: Called with a one-line message naming the first bad option; it must raise.
                Default: raise :class:`~cropseq.errors.CropseqError` (no path).
        """
        if self.epochs is not None and self.epochs < 1:
            bad(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            bad(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            bad(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            bad(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            bad(f"grad_clip must be > 0 or null, got {self.grad_clip}")


@dataclass(frozen=True)
class SupervisedOptions(OptimisationOptions):
    """The options of the loops on labelled data: :class:`OptimisationOptions` and these.

    Attributes:
        schedule: ``"onecycle"`` (linear warm-up then cosine to ~0), ``"cosine"`` (no
            warm-up) or ``"constant"``, over all updates.
        warmup: Warm-up fraction of all updates (onecycle).
        class_weighting: Loss weights from the training labels' class counts: ``"none"``,
            ``"sqrt"`` (inverse square-root frequency) or ``"balanced"`` (inverse frequency).
        date_dropout: Temporal augmentation: probability of masking each valid observation.
        doy_shift: Temporal augmentation: maximum day-of-year shift of a training sample, days.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    """

    schedule: str = "onecycle"
    warmup: float = 0.1
    class_weighting: str = "none"
    date_dropout: float = 0.1
    doy_shift: float = 8.0
    device: str = "auto"

    def check(self, bad: Callable[[str], None] = _reject) -> None:
        """Check the shared options (:meth:`OptimisationOptions.check`'s and these)."""
        super().check(bad)
        if self.schedule not in SCHEDULES:
            bad(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not 0.0 <= self.warmup < 1.0:
            bad(f"warmup must be in [0, 1), got {self.warmup}")
        if self.class_weighting not in WEIGHTINGS:
            bad(f"class_weighting must be one of {', '.join(WEIGHTINGS)}, got {self.class_weighting!r}")
        if not 0.0 <= self.date_dropout < 1.0:
            bad(f"date_dropout must be in [0, 1), got {self.date_dropout}")
        if self.doy_shift < 0:
            bad(f"doy_shift must be >= 0, got {self.doy_shift}")
        if self.device not in DEVICES:
            bad(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
