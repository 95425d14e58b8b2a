"""Training of the deep sequence classifiers.

- :mod:`cropseq.training.config`: :class:`TrainConfig` (all options, YAML I/O, validation).
- :mod:`cropseq.training.loop`: :func:`train_model` -> :class:`TrainResult`.
- :mod:`cropseq.training.normalization`: per-band statistics from the training data.
- :mod:`cropseq.training.augmentation`: temporal augmentation.
- :mod:`cropseq.training.history`: metrics CSV and training-curve PNG.

How the defaults were chosen (overall accuracy, single runs, CPU; Mato Grosso =
``StratifiedKFold(5, shuffle=True, random_state=0)`` folds, dtwSat = the authors' resamples
with 62 training sequences):

============================================  ======================  =====================
variant                                       Mato Grosso folds 1-2   dtwSat resamples 1-6
============================================  ======================  =====================
LSTM, batch 64 / 60 epochs, 10 % held out     0.934 (fold 1 only)     0.964 (1-3, 60 upd.)
LSTM, all data (no hold-out)                  0.944                   --
LSTM, batch 16 / 100 epochs (small data)      --                      0.974 (1-3)
... without augmentation                      --                      0.961 (1-3)
GRU, all data / small-data batches            0.939 (fold 1 only)     0.979
GRU + date into the encoder (default)         0.953                   0.981
... + sqrt class weights                      0.949                   0.982
... LSTM instead of GRU                       0.942                   0.977
... hidden 64                                 0.937 (LSTM)            --
... 1 layer / wider encoder / dropout 0.35    --                      0.979 / 0.978 / 0.981
... weight averaging of the last 25 %         --                      0.981 (no change)
... 5-seed ensemble                           --                      no gain (1, 2, 4, 5)
============================================  ======================  =====================

Differences below ~0.5 point are within run-to-run noise (the same configuration run
with 1 vs 2 CPU threads moves a Mato Grosso fold by up to 1 point).

Full cross-validation of the resulting defaults (``benchmarks/README.md``): Mato Grosso
5 folds 0.9418 ± 0.0122, dtwSat resamples 1-20 0.9777 ± 0.0085. On all 20 dtwSat
resamples, ``min_updates=1000`` instead of 400 gained only +0.0013 ± 0.0011 (paired SE), so
the default stayed.
"""

from cropseq.training.config import TrainConfig
from cropseq.training.loop import TrainResult, train_model

__all__ = ["TrainConfig", "TrainResult", "train_model"]
