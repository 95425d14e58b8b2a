"""The work of one chunk: probabilities of its core, then class, confidence and extra layers.

Every function here runs inside a task (threaded or on a distributed worker) and sees one
chunk only: ``(T, C, H + 2h, W + 2h)`` with its halo. :class:`DirectBlocks` bundles what a
chunk of a manifest stack needs to read its own window, so such chunks are independent tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cropseq.classes import NODATA_CODE
from cropseq.errors import CropseqError
from cropseq.inference.cache import ModelRef
from cropseq.io import BlockWindows, WindowReader
from cropseq.smoothing import Smoothing
from cropseq.uncertainty import uncertainty

__all__ = ["DirectBlocks", "Layers", "class_block", "confidence_block", "finish_block", "predict_block"]

Layers = dict[str, np.ndarray]


def predict_block(
    block: np.ndarray,
    *,
    model: ModelRef,
    doy: np.ndarray,
    halo: int,
    min_valid: int,
    n_classes: int,
    smooth: Smoothing | None = None,
) -> np.ndarray:
    """Probabilities ``(K, H, W)`` of one chunk's core; NaN where the pixel is nodata.

    With smoothing the chunk arrives with the model's halo *plus* the smoothing radius, so
    the model predicts the core and a ring of ``radius`` pixels around it, which the
    smoothing consumes: every core pixel sees its full neighbourhood whatever the chunk.

    Args:
        block: ``(T, C, H + 2h, W + 2h)`` raw values, NaN where missing.
        model: The model reference (loaded once per process).
        doy: ``(T,)`` day of year of each date.
        halo: The model's halo ``h = patch // 2``.
        min_valid: Valid dates a pixel needs to be classified.
        n_classes: ``K``.
        smooth: Optional spatial smoothing of the probabilities.

    Returns:
        ``(K, H, W)`` float32 (``H, W`` net of the smoothing radius when smoothing).
    """
    probs = _model_probs(block, model=model, doy=doy, halo=halo, min_valid=min_valid, n_classes=n_classes)
    return probs if smooth is None else smooth.apply(probs)


def _model_probs(block: np.ndarray, *, model: ModelRef, doy: np.ndarray, halo: int, min_valid: int, n_classes: int) -> np.ndarray:
    """The model's probabilities of the core; NaN for pixels with too few valid dates."""
    block = np.ascontiguousarray(block, dtype=np.float32)
    t, c, hh, ww = block.shape
    h, w = hh - 2 * halo, ww - 2 * halo
    core = block[:, :, halo : halo + h, halo : halo + w]
    n_valid = np.isfinite(core).all(axis=1).sum(axis=0)  # valid dates per pixel
    ok = n_valid >= min_valid
    out = np.full((n_classes, h, w), np.nan, np.float32)
    if not ok.any():
        return out  # nothing to classify: skip the model (and its load) entirely
    probs = np.asarray(model.get().predict_image(block, doy, mask=None if ok.all() else ok), dtype=np.float32)
    if probs.shape != (n_classes, h, w):
        raise CropseqError(f"the model returned probabilities of shape {probs.shape}, expected {(n_classes, h, w)}")
    ok &= np.isfinite(probs).all(axis=0)  # a model that cannot decide gives nodata, not a guess
    out[:, ok] = probs[:, ok]
    return out


def class_block(probs: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """uint8 class codes of ``(K, H, W)`` probabilities (0 where all are NaN)."""
    conf = probs.max(axis=0)
    idx = probs.argmax(axis=0)  # ties: the first (lowest-index) class, deterministically
    return np.where(np.isnan(conf), NODATA_CODE, codes[idx]).astype(np.uint8)


def confidence_block(probs: np.ndarray) -> np.ndarray:
    """float32 probability of the mapped class (NaN where nodata)."""
    return probs.max(axis=0).astype(np.float32)  # all-NaN (nodata) columns stay NaN


def finish_block(probs: np.ndarray, codes: np.ndarray, want: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, Layers]:
    """Class codes, confidence and the extra layers ``want`` names (``probabilities``, measures)."""
    layers = {n: (probs if n == "probabilities" else uncertainty(probs, n)) for n in want}
    return class_block(probs, codes), confidence_block(probs), layers


@dataclass(frozen=True)
class DirectBlocks:
    """Everything one chunk task needs, independent of every other chunk (picklable).

    Attributes:
        reader: Reads a window of the stack (with its halo).
        windows: The chunk grid and its halo windows.
        predict: Keyword arguments of :func:`predict_block`.
    """

    reader: WindowReader
    windows: BlockWindows
    predict: dict[str, Any]

    def finish(self, i: int, j: int, codes: np.ndarray, want: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, Layers]:
        """Class codes, confidence and the wanted layers of chunk ``(i, j)``."""
        block = self.reader(*self.windows.window(i, j))
        return finish_block(predict_block(block, **self.predict), codes, want)
