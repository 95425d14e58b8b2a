"""cropseq: crop maps from multitemporal satellite imagery.

The Python API behind both the ``cropseq`` CLI and the Snakemake workflow. The names of
:data:`__all__` are importable from here (``cropseq.open_stack``, ``cropseq.train_model``,
...) and load their module on first use (:func:`__getattr__`), so ``import cropseq`` stays
light: no torch, no GDAL, no Dask until a function that needs them is touched.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

# First, before any cropseq module can import torch: OpenMP threads sleep instead of
# spin-waiting on shared cores (read once, when torch's OpenMP runtime loads; a value the
# user exported wins). The parent package runs before ``cropseq.cli`` too.
from cropseq.threads import set_env_defaults

set_env_defaults()

try:
    __version__ = version("cropseq")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from cropseq.errors import CropseqError

#: Public name -> the module that defines it (imported on first access).
_LAZY: dict[str, str] = {
    "ClassTable": "cropseq.classes",
    "SequenceArrays": "cropseq.sequences",
    "simulate_scene": "cropseq.simulate",
    "open_stack": "cropseq.io",
    "read_labels": "cropseq.labels",
    "extract_samples": "cropseq.samples",
    "read_samples": "cropseq.samples",
    "write_samples": "cropseq.samples",
    "table_to_arrays": "cropseq.samples",
    "TrainConfig": "cropseq.training.config",
    "TrainResult": "cropseq.training.loop",
    "train_model": "cropseq.training.loop",
    "train_random_forest": "cropseq.baseline",
    "Predictor": "cropseq.predictors",
    "load_predictor": "cropseq.predictors",
    "predict_cube": "cropseq.inference",
    "run_prediction": "cropseq.inference",
    "evaluate_samples": "cropseq.evaluation",
    "score_map": "cropseq.evaluation",
}

if TYPE_CHECKING:  # type checkers and IDEs see the real objects
    from cropseq.baseline import train_random_forest
    from cropseq.classes import ClassTable
    from cropseq.evaluation import evaluate_samples, score_map
    from cropseq.inference import predict_cube, run_prediction
    from cropseq.io import open_stack
    from cropseq.labels import read_labels
    from cropseq.predictors import Predictor, load_predictor
    from cropseq.samples import (
        extract_samples,
        read_samples,
        table_to_arrays,
        write_samples,
    )
    from cropseq.sequences import SequenceArrays
    from cropseq.simulate import simulate_scene
    from cropseq.training.config import TrainConfig
    from cropseq.training.loop import TrainResult, train_model

__all__ = [
    "ClassTable",
    "CropseqError",
    "Predictor",
    "SequenceArrays",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "evaluate_samples",
    "extract_samples",
    "load_predictor",
    "open_stack",
    "predict_cube",
    "read_labels",
    "read_samples",
    "run_prediction",
    "score_map",
    "simulate_scene",
    "table_to_arrays",
    "train_model",
    "train_random_forest",
    "write_samples",
]


def __getattr__(name: str) -> Any:
    """Import the module of a public name on first access (PEP 562) and cache the name."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cropseq' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
