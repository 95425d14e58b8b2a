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


def load_predictor(path: str | os.PathLike[str], device: str = "auto") -> Predictor:
    """Load a trained model file as a :class:`Predictor`.

    ``*.skops`` files are RandomForest baselines; anything else is a deep-model checkpoint.
    Neither path executes pickled code.

    Raises:
        CropseqError: if the file is missing or is not a cropseq model.
    """
    path = Path(path)
    if not path.is_file():
        raise CropseqError("model file not found", path)
    if path.suffix == ".skops":
        from cropseq.baseline import RandomForestPredictor

        return RandomForestPredictor.load(path)
    from cropseq.models.predictor import DeepPredictor

    return DeepPredictor.load(path, device=device)
