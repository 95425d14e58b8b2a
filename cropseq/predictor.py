"""The seam between trained models and everything that applies them.

A *predictor* wraps a trained model file (a deep-model checkpoint ``*.pt`` or a
RandomForest baseline ``*.skops``) and knows everything needed to apply it: band order,
patch size, normalisation, classes. Evaluation, inference and the benchmarks only ever
talk to this protocol, so the deep model and the baseline share one evaluate/predict path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from cropseq.atomic import register_input
from cropseq.classes import ClassTable
from cropseq.errors import CropseqError


@runtime_checkable
class Predictor(Protocol):
    """A trained classifier of pixel sequences.

    Attributes:
        bands: Band names the model expects, in order.
        classes: Class table; probability column ``k`` is ``classes.classes[k]``.
        patch: Patch size ``p`` (odd); the receptive radius (halo) is ``patch // 2``.
        kind: ``"deep"`` or ``"rf"``.
    """

    bands: list[str]
    classes: ClassTable
    patch: int
    kind: str

    def predict_proba(self, x: np.ndarray, doy: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Class probabilities for sequences.

        Args:
            x: ``(N, T, C, p, p)`` float32 raw values (not normalised), NaN where missing.
            doy: ``(N, T)`` day of year (NaN where unknown or padded).
            batch_size: Sequences per model call.

        Returns:
            ``(N, K)`` float32 probabilities (rows sum to 1).
        """
        ...

    def predict_image(self, image: np.ndarray, doy: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities for every pixel of an image chunk.

        Args:
            image: ``(T, C, H + 2h, W + 2h)`` float32 raw values with a halo of
                ``h = patch // 2`` pixels on every side, NaN where missing.
            doy: ``(T,)`` day of year of each date.
            mask: Optional ``(H, W)`` bool, the pixels the caller will use (e.g. those with
                enough valid observations). An implementation may skip the others and return
                anything there (NaN, typically); None = all pixels.

        Returns:
            ``(K, H, W)`` float32 probabilities for the core (halo-free) pixels.
        """
        ...


def missing_model_error(path: str | os.PathLike[str]) -> CropseqError:
    """"model file not found", pointing at an unfinished run's ``.partial`` file when there is one."""
    from cropseq.checkpoint import partial_path

    partial = partial_path(path)
    if partial.is_file():
        return CropseqError(
            f"model file not found: its training is unfinished ({partial.name} holds the last epoch); finish it "
            f"with `cropseq train ... --resume`, or pass --model {partial} --allow-incomplete to use it as it is",
            path,
        )
    return CropseqError("model file not found", path)


def load_predictor(path: str | os.PathLike[str], device: str = "auto", allow_incomplete: bool = False) -> Predictor:
    """Load a trained model file as a :class:`Predictor`.

    ``*.skops`` files are RandomForest baselines; anything else is a deep-model checkpoint.
    Neither path executes pickled code.

    Args:
        path: The model file.
        device: ``auto``, ``cpu`` or ``cuda`` (deep models).
        allow_incomplete: Accept the checkpoint of an unfinished training run
            (``model.pt.partial``); refused by default.

    Raises:
        CropseqError: if the file is missing, is not a cropseq model, or is unfinished
            (unless allowed).
    """
    path = Path(path)
    if not path.is_file():
        raise missing_model_error(path)
    register_input(path, what="model")  # outputs may not replace an input (cropseq.atomic)
    if path.suffix == ".skops":
        from cropseq.baseline import RandomForestPredictor

        return RandomForestPredictor.load(path)
    from cropseq.models.predictor import DeepPredictor

    return DeepPredictor.load(path, device=device, allow_incomplete=allow_incomplete)


def load_incomplete_predictor(path: str | os.PathLike[str], device: str = "auto") -> Predictor:
    """:func:`load_predictor` that accepts unfinished runs (``--allow-incomplete``).

    A module-level function so that it can serve as the picklable ``loader`` of
    :func:`cropseq.inference.run_prediction` on distributed workers.
    """
    return load_predictor(path, device=device, allow_incomplete=True)
