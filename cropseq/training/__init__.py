"""Training of the deep sequence classifiers.

- :mod:`cropseq.training.config`: :class:`TrainConfig` (all options, YAML I/O, validation).
- :mod:`cropseq.training.loop`: :func:`train_model` -> :class:`TrainResult`.
- :mod:`cropseq.training.normalization`: per-band statistics from the training data.
- :mod:`cropseq.training.augmentation`: temporal augmentation.
- :mod:`cropseq.training.history`: metrics CSV and training-curve PNG.
- :mod:`cropseq.training.resume`: ``--resume`` checks (data hashes, bands, options of the
  unfinished run in ``<model>.partial``).

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

Seasonal-bin pooling (``pooling="season"``, the many-to-one head of
:mod:`cropseq.models.recurrent`) came last, from an error analysis: most dtwSat errors were
crop sequences that differ in *timing* (soybean then cotton vs soybean then millet), which
mean/max pooling sees only through what the recurrent states happen to carry. dtwSat
resamples 1-8, paired with the mean+max default (0.9781): 12 bins σ 20 d 0.9838, 24 bins
σ 12 d 0.9857, 36/10 0.9857, 48/12 0.9864, 48/8 0.9866, 72/6 0.9868 (default). On top of
48/12, label smoothing 0, band noise 0.03 or date dropout 0.25 did not help (−0.0037 /
−0.0005 / −0.0002). On all 20 resamples, 48/12 scored 0.9852 and 72/6 0.9862 (paired
+0.0010, 9 better / 5 worse); head dropout 0.4, weight decay 0.05 and the encoder vectors
pooled into the bins as well changed nothing (±0.0003). That last choice between 48 and 72
bins was made on the reported resamples, so treat the 0.001 between them as noise.

Full cross-validation of the resulting defaults (``benchmarks/README.md``): Mato Grosso
5 folds 0.9423 ± 0.0078 (48 bins: 0.9447 ± 0.0114; mean+max pooling: 0.9418 ± 0.0122),
dtwSat resamples 1-20 0.9862 ± 0.0047 (mean+max pooling: 0.9777 ± 0.0085). Earlier, on
all 20 dtwSat resamples, ``min_updates=1000`` instead of 400 gained only +0.0013 ± 0.0011
(paired SE), so that default stayed.
"""

from cropseq.training.config import TrainConfig
from cropseq.training.loop import TrainResult, train_model

__all__ = ["TrainConfig", "TrainResult", "train_model"]
