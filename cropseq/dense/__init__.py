"""Dense (segmentation) training and prediction: windows of the cube with a label per pixel.

- :mod:`cropseq.dense.windows`: per-pixel labels on the stack grid, random and grid window
  samplers, the field-grouped split.
- :mod:`cropseq.dense.options`: :class:`~cropseq.dense.options.DenseConfig`, the options
  (importable without torch, for the CLI).
- :mod:`cropseq.dense.train`: :func:`train_dense` (``cropseq train-dense``: random windows,
  class-weighted loss, the best epoch on the validation fields) and the ``kind: dense``
  checkpoint record.

The models live in :mod:`cropseq.models.decoder` (per-pixel core + CNN decoder) and
:mod:`cropseq.models.convlstm`; the trained model is applied by
:class:`cropseq.predictors.dense.DensePredictor` through ``cropseq predict``.
"""

from cropseq.dense.windows import IGNORE, DenseLabels, dense_labels, grid_windows, random_windows, split_groups

__all__ = ["IGNORE", "DenseLabels", "dense_labels", "grid_windows", "random_windows", "split_groups"]
