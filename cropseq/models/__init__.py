"""Deep sequence classifiers: per-date CNN encoder, recurrent core, TBPTT, predictor.

- :mod:`cropseq.models.encoder`: :class:`PatchEncoder` (valid convolutions, patch -> vector,
  chunk -> per-pixel vectors).
- :mod:`cropseq.models.recurrent`: :class:`ArchConfig`, :class:`SequenceClassifier`
  (masking, temporal encoding, (bi)LSTM/GRU/simple tanh RNN, many-to-one / many-to-many heads).
- :mod:`cropseq.models.tbptt`: truncated BPTT windows (``k1``/``k2``).

The trained model behind the ``Predictor`` protocol is
:class:`cropseq.predictors.deep.DeepPredictor`.
"""

from cropseq.models.encoder import PatchEncoder
from cropseq.models.recurrent import ArchConfig, SequenceClassifier, build_model
from cropseq.models.tbptt import check_k, tbptt_windows

__all__ = [
    "ArchConfig",
    "PatchEncoder",
    "SequenceClassifier",
    "build_model",
    "check_k",
    "tbptt_windows",
]
