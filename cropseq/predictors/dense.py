""":class:`DensePredictor`: a ``kind: dense`` checkpoint behind the :class:`~cropseq.predictors.Predictor` protocol.

A dense model (:mod:`cropseq.models.decoder`, :mod:`cropseq.models.convlstm`) needs ``R``
pixels of context on each side of every pixel it labels, ``R`` its receptive radius (encoder
patch radius + decoder radius, or the ConvLSTM's ``layers * dates * kernel radius`` + decoder
radius). The checkpoint stores ``patch = 2 R + 1``, and the inference package reads every chunk
with a halo of ``patch // 2`` (:mod:`cropseq.inference.plan`): so ``cropseq predict`` runs a
dense model unchanged, and the map does not depend on the chunk size. ``predict_proba`` on
``p x p`` patches (``cropseq evaluate``) gives the centre pixel's probabilities, the same
numbers the map holds there.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from cropseq.checkpoint import Checkpoint, is_complete, load_checkpoint
from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.predictors.base import ModelInfo, check_engine, resolve_device
from cropseq.predictors.deep import load_weights

__all__ = ["DensePredictor", "dense_model_from_checkpoint", "dense_model_info", "is_dense"]

#: The message for an unfinished dense run (``train-dense`` has no ``--resume``).
INCOMPLETE = "incomplete dense checkpoint; retrain it with `cropseq train-dense`"


def is_dense(meta: dict[str, Any]) -> bool:
    """Whether checkpoint metadata describes a dense model."""
    return meta.get("kind") == "dense"


def dense_model_from_checkpoint(ck: Checkpoint, path: str | os.PathLike[str] | None = None) -> Any:
    """Build a dense checkpoint's model, load its weights and check its record against them.

    Raises:
        CropseqError: naming ``path`` and the first field that disagrees.
    """
    from cropseq.dense.train import build_dense_model

    meta = ck.meta
    try:
        arch, dec, bands = meta["arch"], meta.get("decoder"), meta["bands"]
        if not isinstance(arch, dict) or not isinstance(dec, dict):
            raise CropseqError("arch and decoder must be records of hyper-parameters")
        model = build_dense_model(arch, dec)
        if not isinstance(bands, list) or len(bands) != model.arch.n_bands:
            raise CropseqError(f"bands {bands!r:.60} but the model takes {model.arch.n_bands}")
        if meta["patch"] != 2 * model.receptive_radius + 1:
            raise CropseqError(f"patch {meta['patch']!r} but the model's receptive field is {2 * model.receptive_radius + 1}")
        if len(meta["classes"]) != model.arch.n_classes:
            raise CropseqError(f"{len(meta['classes'])} classes but the model has {model.arch.n_classes} outputs")
    except (CropseqError, TypeError, ValueError, KeyError) as e:
        msg = e.message if isinstance(e, CropseqError) else f"{type(e).__name__}: {e}"
        raise CropseqError(f"checkpoint metadata does not match its weights: {msg}", path) from None
    return load_weights(model, ck, path)


def dense_model_info(ck: Checkpoint, path: str | os.PathLike[str], allow_incomplete: bool = False) -> ModelInfo:
    """The :class:`~cropseq.predictors.base.ModelInfo` of a dense checkpoint (checked against its weights)."""
    dense_model_from_checkpoint(ck, path)
    if not allow_incomplete and not is_complete(ck.meta):
        raise CropseqError(INCOMPLETE, path)
    meta = ck.meta
    return ModelInfo(list(meta["bands"]), ClassTable.from_records(meta["classes"]), int(meta["patch"]), "dense", meta)


class DensePredictor:
    """A dense (segmentation) checkpoint, ready to predict.

    Attributes:
        bands: Band names the model expects, in order.
        classes: Class table (probability column order).
        patch: ``2 R + 1``: the halo the model needs is ``patch // 2``.
        kind: ``"dense"``.
        meta: The checkpoint metadata.
        model: The dense model (eval mode).
        device: Where it runs.
    """

    kind = "dense"

    def __init__(self, model: Any, meta: dict[str, Any], device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.meta = meta
        self.device = device
        self.bands: list[str] = list(meta["bands"])
        self.classes = ClassTable.from_records(meta["classes"])
        self.patch: int = int(meta["patch"])

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "auto", allow_incomplete: bool = False,
             engine: str | None = None) -> DensePredictor:  # fmt: skip
        """Load a dense checkpoint (``weights_only=True``).

        Raises:
            CropseqError: unreadable file, metadata that does not match the weights, an
                unfinished run (unless allowed), or an engine other than ``torch``.
        """
        return cls.from_checkpoint(load_checkpoint(path), path, device, allow_incomplete, engine)

    @classmethod
    def from_checkpoint(cls, ck: Checkpoint, path: str | os.PathLike[str], device: str = "auto",
                        allow_incomplete: bool = False, engine: str | None = None) -> DensePredictor:  # fmt: skip
        """A dense checkpoint already read (:func:`~cropseq.predictors.base.load_predictor` reads each file once).

        Args:
            ck: The checkpoint (``kind: dense``).
            path: Its file, for messages.
            device: ``auto``, ``cpu`` or ``cuda``.
            allow_incomplete: Accept the checkpoint of an unfinished training run.
            engine: Only ``torch`` (or None / ``auto``): the CPU engines are for per-pixel models.

        Raises:
            CropseqError: metadata that does not match the weights, an unfinished run (unless
                allowed), or an engine other than ``torch``.
        """
        resolved = resolve_device(device)
        check_engine(engine, resolved, "dense")
        model = dense_model_from_checkpoint(ck, path)
        if not allow_incomplete and not is_complete(ck.meta):
            raise CropseqError(INCOMPLETE, path)
        return cls(model, ck.meta, torch.device(resolved))

    @torch.inference_mode()
    def predict_proba(self, x: np.ndarray, doy: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Probabilities ``(N, K)`` of the centre pixels of patches ``x (N, T, C, p, p)``, ``p = patch``."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 5 or x.shape[2] != len(self.bands) or x.shape[3:] != (self.patch, self.patch):
            raise CropseqError(f"expected sequences (N, T, {len(self.bands)}, {self.patch}, {self.patch}), got {tuple(x.shape)}")
        doy = np.asarray(doy, dtype=np.float32)
        out = np.empty((x.shape[0], len(self.classes)), np.float32)
        for i in range(0, x.shape[0], batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(self.device)
            db = torch.from_numpy(np.ascontiguousarray(doy[i : i + batch_size])).to(self.device)
            out[i : i + batch_size] = torch.softmax(self.model(xb, db)[:, :, 0, 0].float(), dim=1).cpu().numpy()
        return out

    @torch.inference_mode()
    def predict_image(self, image: np.ndarray, doy: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Probabilities ``(K, H, W)`` of the core of ``image (T, C, H + 2R, W + 2R)``.

        ``mask`` is accepted for the protocol but every pixel is computed: the decoder needs
        the features of the unmasked pixels' neighbours anyway.
        """
        image = np.asarray(image, dtype=np.float32)
        r = self.patch // 2
        if image.ndim != 4 or image.shape[1] != len(self.bands) or min(image.shape[2:]) <= 2 * r:
            raise CropseqError(f"expected an image (T, {len(self.bands)}, H+{2 * r}, W+{2 * r}), got {tuple(image.shape)}")
        x = torch.from_numpy(np.ascontiguousarray(image[None])).to(self.device)
        d = torch.from_numpy(np.asarray(doy, dtype=np.float32)[None]).to(self.device)
        return torch.softmax(self.model(x, d)[0].float(), dim=0).cpu().numpy()
