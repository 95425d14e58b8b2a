"""Training of the deep sequence classifiers.

- :mod:`cropseq.training.config`: :class:`TrainConfig` (all options, YAML I/O, validation).
- :mod:`cropseq.training.loop`: :func:`train_model` -> :class:`TrainResult`.
- :mod:`cropseq.training.normalization`: per-band statistics from the training data.
- :mod:`cropseq.training.augmentation`: temporal augmentation.
- :mod:`cropseq.training.history`: metrics CSV and training-curve PNG.
- :mod:`cropseq.training.resume`: ``--resume`` checks (data hashes, bands, options of the
  unfinished run in ``<model>.partial``).

How the defaults were chosen (the experiment log): ``benchmarks/README.md``, section
"How the training defaults were chosen".
"""

from cropseq.training.config import TrainConfig
from cropseq.training.loop import TrainResult, train_model

__all__ = ["TrainConfig", "TrainResult", "train_model"]
