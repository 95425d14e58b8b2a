"""Deep sequence classifiers: per-date CNN encoder, recurrent core, TBPTT, predictor.

- :mod:`cropseq.models.encoder`: :class:`PatchEncoder` (valid convolutions, patch -> vector,
  chunk -> per-pixel vectors).
- :mod:`cropseq.models.recurrent`: :class:`ArchConfig`, :class:`SequenceClassifier`
  (masking, temporal encoding, (bi)LSTM/GRU/simple tanh RNN, many-to-one / many-to-many heads).
- :mod:`cropseq.models.tbptt`: truncated BPTT windows (``k1``/``k2``).
- :mod:`cropseq.models.decoder`: :class:`CNNDecoder` and :class:`DenseSequenceModel` (per-pixel
  core pooled into a feature map, decoded by a CNN: dense training, ``cropseq train-dense``).
- :mod:`cropseq.models.convlstm`: :class:`ConvLSTMModel` (convolutional gates, same decoder).

The trained model behind the ``Predictor`` protocol is
:class:`cropseq.predictors.deep.DeepPredictor`.
"""

from cropseq.models.convlstm import ConvLSTMConfig, ConvLSTMModel
from cropseq.models.decoder import CNNDecoder, DenseSequenceModel
from cropseq.models.encoder import PatchEncoder
from cropseq.models.recurrent import ArchConfig, SequenceClassifier, build_model
from cropseq.models.tbptt import check_k, tbptt_windows

__all__ = [
    "ArchConfig",
    "CNNDecoder",
    "ConvLSTMConfig",
    "ConvLSTMModel",
    "DenseSequenceModel",
    "PatchEncoder",
    "SequenceClassifier",
    "build_model",
    "check_k",
    "tbptt_windows",
]
