""":class:`DeepPredictor`: a trained deep checkpoint behind the :class:`~cropseq.predictors.Predictor` protocol.

The mirror of :mod:`cropseq.predictors.forest`; the network lives in :mod:`cropseq.models`,
its training in :mod:`cropseq.training`. :func:`check_checkpoint` validates a checkpoint's
metadata against its weights without building the model (what a prediction's client needs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from cropseq.checkpoint import Checkpoint, is_complete, load_checkpoint
from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.models.recurrent import ArchConfig, SequenceClassifier
from cropseq.predictors.base import band_indices, check_engine, resolve_device

__all__ = [
    "DeepPredictor", "IMAGE_BATCH", "check_checkpoint", "incomplete_message", "load_weights", "model_from_checkpoint",
    "quantize_int8",
]

#: A torch module type (what :func:`load_weights` returns is what it was given).
M = TypeVar("M", bound=torch.nn.Module)


def quantize_int8(model: SequenceClassifier) -> torch.nn.Module:
    """A copy of ``model`` with int8 dynamic quantisation of its recurrent and linear layers.

    Weights become int8, activations are quantised on the fly per batch
    (:func:`torch.ao.quantization.quantize_dynamic`); the convolutional encoder stays float32.
    CPU only.
    """
    import warnings

    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao, per layer
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8)


def incomplete_message(meta: dict[str, Any]) -> str:
    """The refusal of an unfinished run's checkpoint: what it is and how to go on."""
    tr = meta.get("training")
    if not isinstance(tr, dict):
        tr = {}
    planned = tr.get("epochs_planned") or tr.get("epochs")
    after = f"after epoch {meta.get('epoch', '?')}" + (f" of {planned}" if planned else "")
    return (f"incomplete checkpoint: training stopped {after}; finish it with `cropseq train ... --resume` "
            f"(same options), or pass --allow-incomplete to use it as it is")


def _check_arch_types(arch: Any) -> ArchConfig:
    """The ``arch`` record as an :class:`ArchConfig`, every field of the declared type."""
    if not isinstance(arch, dict):
        raise CropseqError(f"arch must be a record of hyper-parameters, got {type(arch).__name__} {arch!r:.40}")
    for f in fields(ArchConfig):
        if f.name not in arch:
            continue
        v, kind = arch[f.name], str(f.type)
        ok = {"int": isinstance(v, int) and not isinstance(v, bool), "bool": isinstance(v, bool),
              "str": isinstance(v, str), "float": isinstance(v, (int, float)) and not isinstance(v, bool)}.get(kind, True)
        if not ok:
            raise CropseqError(f"arch.{f.name} must be of type {kind}, got {v!r:.40}")
    for name in ("n_bands", "n_classes"):
        if name not in arch:
            raise CropseqError(f"arch lacks {name}")
    return ArchConfig.from_record(arch)


def _check_record(meta: dict[str, Any], arch: ArchConfig, state: dict[str, Any]) -> None:
    """Bands, patch, head, classes and normalisation of the metadata against ``arch`` and the weights."""
    bands, patch = meta["bands"], meta["patch"]
    if not isinstance(bands, list) or not all(isinstance(b, str) for b in bands) or len(set(bands)) != len(bands):
        raise CropseqError(f"bands must be a list of distinct band names, got {bands!r:.60}")
    if len(bands) != arch.n_bands:
        raise CropseqError(f"{len(bands)} bands ({', '.join(bands)}) but the model takes {arch.n_bands}")
    if patch != arch.patch or isinstance(patch, bool):
        raise CropseqError(f"patch {patch!r} but the model's patch is {arch.patch}")
    if meta["head"] != arch.head:
        raise CropseqError(f"head {meta['head']!r} but the model's head is {arch.head!r}")
    if not isinstance(meta["classes"], list):
        raise CropseqError("classes must be a list of {code, name, color} records")
    try:
        classes = ClassTable.from_records(meta["classes"])
    except (TypeError, ValueError) as e:
        raise CropseqError(f"classes: {e}") from None
    if len(classes) != arch.n_classes:
        raise CropseqError(f"{len(classes)} classes but the model has {arch.n_classes} outputs")
    norm = meta["norm"]
    for key, buf in (("mean", "norm_center"), ("std", "norm_scale")):
        vals = norm.get(key) if isinstance(norm, dict) else None
        if not isinstance(vals, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            raise CropseqError(f"norm.{key} must be a list of numbers")
        if len(vals) != len(bands):
            raise CropseqError(f"norm.{key} has {len(vals)} values for {len(bands)} bands")
        w = state.get(buf)
        if isinstance(w, torch.Tensor) and w.shape == (len(vals),) and not np.allclose(vals, w.numpy(), rtol=1e-5, atol=1e-6):
            raise CropseqError(f"norm.{key} disagrees with the normalisation stored in the weights ({buf})")


def _state_mismatch(model: SequenceClassifier, state: dict[str, Any]) -> str | None:
    """The first difference between the model's parameters and the stored weights, or None."""
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    if missing or unexpected:
        return f"missing {', '.join(missing[:3]) or 'none'}; unexpected {', '.join(unexpected[:3]) or 'none'}"
    for k, v in want.items():
        got = state[k]
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(v.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            return f"{k} has shape {shape}, the model needs {tuple(v.shape)}"
    return None


def check_checkpoint(ck: Checkpoint, path: str | os.PathLike[str] | None = None) -> ArchConfig:
    """Check a checkpoint's metadata against itself and its weights, without building the model.

    The metadata (``arch``, ``bands``, ``patch``, ``head``, ``classes``, ``norm``) is a
    plain JSON record that anyone can edit; every field is checked against the others and
    against the weights' shapes (those of a skeleton on torch's ``meta`` device: no memory,
    no weights) before anything runs, so an edited record fails here with one line instead
    of a shape error deep inside prediction.

    Returns:
        The architecture record.

    Raises:
        CropseqError: naming ``path`` and the first field that disagrees.
    """
    meta = ck.meta
    try:
        arch = _check_arch_types(meta["arch"])
        _check_record(meta, arch, ck.state_dict)
        with torch.device("meta"):
            problem = _state_mismatch(SequenceClassifier(arch), ck.state_dict)
    except CropseqError as e:
        raise CropseqError(f"checkpoint metadata does not match its weights: {e.message}", path) from None
    except (RuntimeError, TypeError, ValueError) as e:
        problem = str(e).strip().splitlines()[0][:200]
    if problem is not None:
        raise CropseqError(f"checkpoint weights do not match its architecture record ({problem})", path)
    return arch


def model_from_checkpoint(ck: Checkpoint, path: str | os.PathLike[str] | None = None) -> SequenceClassifier:
    """Build the model a checkpoint describes and load its weights (:func:`check_checkpoint` first).

    Raises:
        CropseqError: naming ``path`` and the first field that disagrees.
    """
    arch = check_checkpoint(ck, path)
    return load_weights(SequenceClassifier(arch), ck, path)


def load_weights(model: M, ck: Checkpoint, path: str | os.PathLike[str] | None) -> M:
    """Load a checkpoint's weights into the model its record describes, strictly; returns ``model``.

    Raises:
        CropseqError: naming ``path`` when the weights do not fit the model.
    """
    try:
        model.load_state_dict(ck.state_dict, strict=True)
    except (RuntimeError, TypeError, ValueError) as e:
        problem = str(e).strip().splitlines()[0][:200]
        raise CropseqError(f"checkpoint weights do not match its architecture record ({problem})", path) from None
    return model


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
        engine: How it runs (:data:`~cropseq.predictors.base.ENGINES`, resolved).
    """

    kind = "deep"

    def __init__(self, model: SequenceClassifier, meta: dict[str, Any], device: torch.device, path: Path | None = None,
                 engine: str | None = None) -> None:  # fmt: skip
        self.engine = check_engine(engine, device.type, hidden_size=model.arch.hidden_size)
        self.model: Any = model.to(device).eval()
        self.meta = meta
        self.device = device
        self.path = path
        self.bands: list[str] = list(meta["bands"])
        self.classes = ClassTable.from_records(meta["classes"])
        self.patch: int = int(meta["patch"])
        # bf16 autocast on CUDA always, on the CPU only when asked (--engine bf16): float32
        # stays the CPU default so a map matches training-time checks.
        self.amp = device.type == "cuda" or self.engine == "bf16"
        self.onnx: Any = None
        if self.engine == "int8":
            self.model = quantize_int8(self.model)
        elif self.engine == "onnx":
            from cropseq.predictors.onnx import OnnxRunner

            self.onnx = OnnxRunner.for_checkpoint(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "auto", allow_incomplete: bool = False,
             engine: str | None = None) -> DeepPredictor:  # fmt: skip
        """Load a checkpoint (``weights_only=True``; no pickled code runs).

        Args:
            path: The checkpoint.
            device: ``auto``, ``cpu`` or ``cuda``.
            allow_incomplete: Accept the checkpoint of an unfinished training run
                (``model.pt.partial``); refused by default.
            engine: :data:`~cropseq.predictors.base.ENGINES` (None = ``auto``); ``onnx``
                runs ``<model>.onnx`` written by ``cropseq export`` from this checkpoint.

        Raises:
            CropseqError: missing/unreadable file, not a cropseq checkpoint, metadata that
                does not match the weights, or an unfinished run (unless allowed).
        """
        return cls.from_checkpoint(load_checkpoint(path), path, device, allow_incomplete, engine)

    @classmethod
    def from_checkpoint(cls, ck: Checkpoint, path: str | os.PathLike[str], device: str = "auto",
                        allow_incomplete: bool = False, engine: str | None = None) -> DeepPredictor:  # fmt: skip
        """The predictor of a checkpoint already read (see :meth:`load` for the arguments)."""
        model = model_from_checkpoint(ck, path)
        if not allow_incomplete and not is_complete(ck.meta):
            raise CropseqError(incomplete_message(ck.meta), path)
        return cls(model, ck.meta, torch.device(resolve_device(device)), Path(path), engine)

    def check_bands(self, stack_bands: Sequence[str], where: str | os.PathLike[str] | None = None) -> list[int]:
        """Indices of this model's bands in ``stack_bands`` (see :func:`~cropseq.predictors.band_indices`)."""
        return band_indices(self.bands, stack_bands, where, what="input")

    def _check_x(self, x: np.ndarray, doy: np.ndarray) -> None:
        if x.ndim != 5 or x.shape[2] != len(self.bands) or x.shape[3] != self.patch or x.shape[4] != self.patch:
            raise CropseqError(
                f"expected sequences (N, T, {len(self.bands)}, {self.patch}, {self.patch}) for bands "
                f"{', '.join(self.bands)}, got {tuple(x.shape)}"
            )
        if doy.shape != x.shape[:2]:
            raise CropseqError(f"doy shape {tuple(doy.shape)} does not match sequences {tuple(x.shape[:2])}")

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    @torch.inference_mode()
    def predict_proba(self, x: np.ndarray, doy: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Class probabilities ``(N, K)`` for raw sequences ``x (N, T, C, p, p)`` (NaN = missing)."""
        x = np.asarray(x, dtype=np.float32)
        doy = np.asarray(doy, dtype=np.float32)
        self._check_x(x, doy)
        if self.onnx is not None:
            return self.onnx.proba(x, doy, batch_size)
        out = np.empty((x.shape[0], len(self.classes)), dtype=np.float32)
        for i in range(0, x.shape[0], batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(self.device)
            db = torch.from_numpy(np.ascontiguousarray(doy[i : i + batch_size])).to(self.device)
            with self._autocast():
                logits = self.model(xb, db)
            out[i : i + batch_size] = self.model.sequence_proba(logits.float(), self.model.valid_mask(xb)).cpu().numpy()
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
        if self.onnx is not None:
            return self.onnx.proba_image(image, doy, self.patch, mask, batch_size)
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
            if mask is None:  # then `keep` is None too
                out[:, r0:r1, :] = probs_np.T.reshape(k, r1 - r0, W)
            else:
                out[:, r0:r1, :][:, mask[r0:r1]] = probs_np.T  # row-major order, as `keep`
        return out
