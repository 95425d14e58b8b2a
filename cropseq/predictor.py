"""Old import path of :mod:`cropseq.predictors` (kept: ``crossval``, tests and benchmarks import it)."""

from cropseq.predictors.base import (
    ModelInfo,
    Predictor,
    band_indices,
    load_incomplete_predictor,
    load_predictor,
    missing_model_error,
    read_model_info,
    resolve_device,
)

__all__ = [
    "ModelInfo",
    "Predictor",
    "band_indices",
    "load_incomplete_predictor",
    "load_predictor",
    "missing_model_error",
    "read_model_info",
    "resolve_device",
]
