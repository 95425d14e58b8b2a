""":class:`DeepPredictor`: a trained deep checkpoint behind the :class:`~cropseq.predictor.Predictor` protocol."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cropseq.checkpoint import load_checkpoint
from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.models.recurrent import SequenceClassifier, build_model


def resolve_inference_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise CropseqError("--device cuda requested but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise CropseqError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def check_bands(model_bands: Sequence[str], stack_bands: Sequence[str], where: str | os.PathLike[str] | None = None) -> list[int]:
    """Indices of ``model_bands`` in ``stack_bands`` (the order the model needs).

    Args:
        model_bands: Bands the checkpoint was trained on, in model order.
        stack_bands: Band names of the image stack or samples table.
        where: The stack/table path, for the error message.

    Returns:
        ``idx`` such that ``stack[..., idx, ...]`` is in model order.

    Raises:
        CropseqError: naming the missing bands (and what the stack has).
    """
    missing = [b for b in model_bands if b not in stack_bands]
    if missing:
        raise CropseqError(
            f"the model needs band(s) {', '.join(missing)} which the input lacks (it has: {', '.join(stack_bands)})",
            where,
        )
    return [list(stack_bands).index(b) for b in model_bands]


#: Pixel sequences per recurrent call of :meth:`DeepPredictor.predict_image`, by device.
#: Measured on the CPU (default BiGRU, 24 dates, one thread): 16,384 -> 851 px/s and 3.0 GB
#: peak, 4,096 -> 1,156 px/s / 1.0 GB, 1,024 -> ~1,400 px/s / 0.6 GB, 512 ~ the same: the
#: GRU's per-step matrices stay in cache. A GPU wants large batches to be busy.
IMAGE_BATCH = {"cpu": 1024, "cuda": 16384}


class DeepPredictor:
    """A deep sequence-classifier checkpoint, ready to predict.

    Attributes:
        bands: Band names the model expects, in order.
        classes: Class table (probability column order).
        patch: Patch size ``p``; the halo is ``patch // 2``.
        kind: ``"deep"``.
        meta: The checkpoint metadata.
        model: The :class:`~cropseq.models.recurrent.SequenceClassifier` (eval mode).
        device: Where it runs.
    """

    kind = "deep"

    def __init__(self, model: SequenceClassifier, meta: dict[str, Any], device: torch.device, path: Path | None = None) -> None:
        self.model = model.to(device).eval()
        self.meta = meta
        self.device = device
        self.path = path
        self.bands: list[str] = list(meta["bands"])
        self.classes = ClassTable.from_records(meta["classes"])
        self.patch: int = int(meta["patch"])
        # bf16 on CUDA only: CPU inference stays float32 so it matches training-time checks.
        self.amp = device.type == "cuda"

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "auto") -> DeepPredictor:
        """Load a checkpoint (``weights_only=True``; no pickled code runs).

        Raises:
            CropseqError: missing/unreadable file, not a cropseq checkpoint, or weights that do
                not fit the stored architecture.
        """
        ck = load_checkpoint(path)
        model = build_model(ck.meta["arch"])
        try:
            model.load_state_dict(ck.state_dict)
        except RuntimeError as e:
            raise CropseqError(f"checkpoint weights do not match its architecture ({str(e).splitlines()[0]})", path) from None
        return cls(model, ck.meta, resolve_inference_device(device), Path(path))

    def check_bands(self, stack_bands: Sequence[str], where: str | os.PathLike[str] | None = None) -> list[int]:
        """See :func:`check_bands`: indices of this model's bands in ``stack_bands``."""
        return check_bands(self.bands, stack_bands, where)

    def _check_x(self, x: np.ndarray, doy: np.ndarray) -> None:
        if x.ndim != 5 or x.shape[2] != len(self.bands) or x.shape[3] != self.patch or x.shape[4] != self.patch:
            raise CropseqError(
                f"expected sequences (N, T, {len(self.bands)}, {self.patch}, {self.patch}) for bands "
                f"{', '.join(self.bands)}, got {tuple(x.shape)}"
            )
        if doy.shape != x.shape[:2]:
            raise CropseqError(f"doy shape {tuple(doy.shape)} does not match sequences {tuple(x.shape[:2])}")

    def _autocast(self) -> Any:
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp)

    @torch.inference_mode()
    def predict_proba(self, x: np.ndarray, doy: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Class probabilities ``(N, K)`` for raw sequences ``x (N, T, C, p, p)`` (NaN = missing)."""
        x = np.asarray(x, dtype=np.float32)
        doy = np.asarray(doy, dtype=np.float32)
        self._check_x(x, doy)
        out = np.empty((x.shape[0], len(self.classes)), dtype=np.float32)
        for i in range(0, x.shape[0], batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(self.device)
            db = torch.from_numpy(np.ascontiguousarray(doy[i : i + batch_size])).to(self.device)
            with self._autocast():
                logits = self.model(xb, db)
            out[i : i + batch_size] = self.model.sequence_proba(logits.float(), self.model.valid_mask(xb)).cpu().numpy()
        return out

    @torch.inference_mode()
    def predict_dates(self, x: np.ndarray, doy: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Per-date probabilities ``(N, T, K)`` of a many-to-many model.

        Raises:
            CropseqError: for a many-to-one model.
        """
        if self.model.arch.head != "many-to-many":
            raise CropseqError("per-date predictions need a many-to-many model (trained with head: many-to-many)", self.path)
        x = np.asarray(x, dtype=np.float32)
        doy = np.asarray(doy, dtype=np.float32)
        self._check_x(x, doy)
        out = np.empty((*x.shape[:2], len(self.classes)), dtype=np.float32)
        for i in range(0, x.shape[0], batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(self.device)
            db = torch.from_numpy(np.ascontiguousarray(doy[i : i + batch_size])).to(self.device)
            with self._autocast():
                logits = self.model(xb, db)
            out[i : i + batch_size] = torch.softmax(logits.float(), -1).cpu().numpy()
        return out

    @torch.inference_mode()
    def predict_image(
        self,
        image: np.ndarray,
        doy: np.ndarray,
        mask: np.ndarray | None = None,
        batch_size: int | None = None,
        max_block_bytes: int = 64 * 2**20,
    ) -> np.ndarray:
        """Class probabilities ``(K, H, W)`` for the core pixels of ``image (T, C, H + 2h, W + 2h)``.

        The CNN encoder runs once over the chunk (valid convolutions: each output pixel is
        the encoding of the patch centred on it), in row blocks that keep the ``(T, D, rows,
        W)`` feature block under ``max_block_bytes``; the recurrent core and head then run
        over the block's pixels in batches of ``batch_size``. The result equals
        :meth:`predict_proba` on the extracted ``p x p`` patches (up to float rounding).

        Args:
            image: Raw values with a halo of ``patch // 2`` pixels, NaN where missing.
            doy: ``(T,)`` day of year of each date.
            mask: Optional ``(H, W)`` bool: only these pixels go through the recurrent core
                (the expensive part); the others get NaN. Inference passes the pixels with
                enough valid observations, so nodata areas cost (almost) nothing.
            batch_size: Pixel sequences per recurrent call; None = :data:`IMAGE_BATCH` for
                the device (small on the CPU, where it is both faster and lighter).
            max_block_bytes: Bound of one row block's encoder features.
        """
        if batch_size is None:
            batch_size = IMAGE_BATCH.get(self.device.type, IMAGE_BATCH["cuda"])
        image = np.asarray(image, dtype=np.float32)
        doy = np.asarray(doy, dtype=np.float32)
        h = self.patch // 2
        if image.ndim != 4 or image.shape[1] != len(self.bands):
            raise CropseqError(f"expected an image (T, {len(self.bands)}, H+2h, W+2h), got {tuple(image.shape)}")
        t, c, hh, ww = image.shape
        if doy.shape != (t,):
            raise CropseqError(f"doy must have one value per date ({t}), got shape {tuple(doy.shape)}")
        H, W = hh - 2 * h, ww - 2 * h
        if H < 1 or W < 1:
            raise CropseqError(f"image {hh}x{ww} is smaller than the patch {self.patch}")
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (H, W):
                raise CropseqError(f"mask must have the core shape {(H, W)}, got {tuple(mask.shape)}")
        m = self.model
        k = len(self.classes)
        out = np.full((k, H, W), np.nan, dtype=np.float32)
        d = m.arch.encoder_dim
        rows = max(1, min(H, max_block_bytes // max(1, t * d * W * 4)))
        doy_t = torch.from_numpy(doy).to(self.device)
        for r0 in range(0, H, rows):
            r1 = min(H, r0 + rows)
            keep = None
            if mask is not None:
                keep = torch.from_numpy(np.ascontiguousarray(mask[r0:r1])).reshape(-1).to(self.device)
                if not bool(keep.any()):
                    continue
            block = torch.from_numpy(np.ascontiguousarray(image[:, :, r0 : r1 + 2 * h, :])).to(self.device)
            centre = block[:, :, h : h + (r1 - r0), h : h + W]  # (T, C, rows, W)
            valid = torch.isfinite(centre).all(dim=1)  # (T, rows, W)
            phase = m.temporal_features(doy_t[None, :])[0] if m.arch.encoder_time else None  # (T, 2)
            with self._autocast():
                feats = m.encoder(m.encoder_input(block, phase))  # (T, D, rows, W)
            # Masked steps get exact zeros, as in the patch path (which never encodes them).
            feats = feats.float() * valid[:, None].to(torch.float32)
            feats = feats.permute(2, 3, 0, 1).reshape(-1, t, d)  # (pixels, T, D)
            valid_px = valid.permute(1, 2, 0).reshape(-1, t)
            if keep is not None:
                feats, valid_px = feats[keep], valid_px[keep]
            npx = feats.shape[0]
            probs = torch.empty(npx, k, device=self.device)
            for i in range(0, npx, batch_size):
                f = feats[i : i + batch_size]
                v = valid_px[i : i + batch_size]
                db = doy_t.expand(f.shape[0], t)
                with self._autocast():
                    logits = m.forward_features(f, v, db)
                probs[i : i + batch_size] = m.sequence_proba(logits.float(), v)
            probs_np = probs.cpu().numpy()
            if keep is None:
                out[:, r0:r1, :] = probs_np.T.reshape(k, r1 - r0, W)
            else:
                out[:, r0:r1, :][:, mask[r0:r1]] = probs_np.T  # row-major order, as `keep`
        return out
