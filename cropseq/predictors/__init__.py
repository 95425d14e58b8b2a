"""Trained models behind one seam: the :class:`Predictor` protocol and its two implementations.

- :mod:`cropseq.predictors.base`: :class:`Predictor`, :func:`load_predictor` (``*.pt`` or
  ``*.skops`` by suffix), :func:`read_model_info` (bands, classes, patch without building
  the model), :func:`resolve_device`, :func:`band_indices`.
- :mod:`cropseq.predictors.deep`: :class:`~cropseq.predictors.deep.DeepPredictor` (a deep
  checkpoint, :mod:`cropseq.checkpoint`; the network in :mod:`cropseq.models`).
- :mod:`cropseq.predictors.forest`: :class:`~cropseq.predictors.forest.RandomForestPredictor`
  (a skops file; training in :mod:`cropseq.baseline`).

The implementations import torch or scikit-learn, so they load on first use
(``from cropseq.predictors.deep import DeepPredictor``); this package stays light.
"""

from cropseq.predictors.base import (  # noqa: F401 - the package re-exports base's public names
    ENGINES,
    ModelInfo,
    Predictor,
    band_indices,
    check_engine,
    load_incomplete_predictor,
    load_predictor,
    missing_model_error,
    model_hidden_size,
    read_model_info,
    resolve_device,
)

__all__ = ["ModelInfo", "Predictor", "ENGINES", "band_indices", "check_engine", "load_incomplete_predictor", "load_predictor", "missing_model_error", "model_hidden_size", "read_model_info", "resolve_device"]
