"""Run an exported deep model (``cropseq export --onnx``) with ONNX Runtime.

:class:`OnnxRunner` backs ``DeepPredictor`` under ``--engine onnx``: the checkpoint's
metadata stays the predictor's (bands, classes, patch), the numbers come from the graph in
``<model>.onnx`` (:mod:`cropseq.export`), which must have been exported from this very
checkpoint (its SHA-256 is in the graph's metadata).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from cropseq.errors import CropseqError

__all__ = ["OnnxRunner", "check_onnx_export", "onnx_path"]


def onnx_path(checkpoint: str | os.PathLike[str]) -> Path:
    """Where ``--engine onnx`` looks for a checkpoint's export: ``<model>.onnx`` beside it."""
    return Path(checkpoint).with_suffix(".onnx")


def check_onnx_export(checkpoint: str | os.PathLike[str]) -> Path:
    """The export of ``checkpoint``, checked to exist (and onnxruntime to be installed) before any work.

    Raises:
        CropseqError: no ``<model>.onnx``, or no onnxruntime; says how to fix it.
    """
    src, path = Path(checkpoint), onnx_path(checkpoint)
    if not path.is_file():
        raise CropseqError(f"--engine onnx runs the model's ONNX export, which is missing: make it with "
                           f"`cropseq export {src} --onnx {path} --dates T` (T: the stack's number of dates)", path)  # fmt: skip
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise CropseqError("--engine onnx needs onnxruntime (a cropseq dependency): pip install onnxruntime") from None
    return path


class OnnxRunner:
    """An ONNX Runtime session of a cropseq probability graph.

    Args:
        session: The ``onnxruntime.InferenceSession``.
        path: The ``.onnx`` file, for messages.
    """

    def __init__(self, session: Any, path: Path, dates: int | None = None) -> None:
        self.session = session
        self.path = path
        self.dates = dates

    @classmethod
    def for_checkpoint(cls, checkpoint: str | os.PathLike[str] | None, threads: int | None = None) -> OnnxRunner:
        """The session of ``<checkpoint>.onnx``, checked to come from ``checkpoint``.

        Args:
            checkpoint: The deep checkpoint (``*.pt``).
            threads: ONNX Runtime intra-op threads; default torch's thread count (sized to
                the process's cores by :mod:`cropseq.threads`).

        Raises:
            CropseqError: onnxruntime missing, no export, or an export of another checkpoint.
        """
        from cropseq.export import DATES_KEY, META_KEY, SHA_KEY, file_sha256

        if checkpoint is None:
            raise CropseqError("--engine onnx needs the model's file (its export lies beside it)")
        src, path = Path(checkpoint), check_onnx_export(checkpoint)
        make = f"make it with `cropseq export {src} --onnx {path} --dates T`"
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads is None:
            import torch

            threads = torch.get_num_threads()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own (pybind) exception types
            raise CropseqError(f"not a readable ONNX model ({str(e).splitlines()[0][:150]})", path) from None
        props = session.get_modelmeta().custom_metadata_map
        if META_KEY not in props:
            raise CropseqError("not a cropseq ONNX export (no cropseq.meta_json in its metadata)", path)
        if props.get(SHA_KEY) != file_sha256(src):
            raise CropseqError(f"the ONNX export was made from another version of {src.name}: {make} again", path)
        json.loads(props[META_KEY])
        return cls(session, path, int(props[DATES_KEY]) if DATES_KEY in props else None)

    def proba(self, x: np.ndarray, doy: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """``(N, K)`` probabilities of raw sequences ``x (N, T, C, p, p)``, ``doy (N, T)``.

        Raises:
            CropseqError: ``T`` is not the number of dates the graph was exported for.
        """
        n = x.shape[0]
        if self.dates is not None and x.shape[1] != self.dates:
            raise CropseqError(f"the ONNX export takes {self.dates} dates, the input has {x.shape[1]}: export it again "
                               f"with `cropseq export ... --dates {x.shape[1]}`", self.path)  # fmt: skip
        parts = [
            self.session.run(None, {"x": np.ascontiguousarray(x[i : i + batch_size], np.float32),
                                    "doy": np.ascontiguousarray(doy[i : i + batch_size], np.float32)})[0]
            for i in range(0, n, max(1, batch_size))
        ]  # fmt: skip
        k = self.session.get_outputs()[0].shape[-1]
        return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.empty((0, int(k)), np.float32)

    def proba_image(self, image: np.ndarray, doy: np.ndarray, patch: int, mask: np.ndarray | None,
                    batch_size: int | None = None) -> np.ndarray:  # fmt: skip
        """``(K, H, W)`` probabilities of the core pixels of ``image (T, C, H + 2h, W + 2h)``.

        The patches of the wanted pixels (``mask``; all when None) are cut from the chunk in
        batches of ``batch_size`` (default 1,024, the size that keeps the recurrent state in
        cache); the others get NaN.
        """
        t, _, hh, ww = image.shape
        h = patch // 2
        height, width = hh - 2 * h, ww - 2 * h
        rows, cols = np.nonzero(np.ones((height, width), bool) if mask is None else mask)
        windows = np.lib.stride_tricks.sliding_window_view(image, (patch, patch), axis=(2, 3))  # (T, C, H, W, p, p)
        step = int(batch_size or 1024)
        probs = [
            self.proba(windows[:, :, rows[i : i + step], cols[i : i + step]].transpose(2, 0, 1, 3, 4),
                       np.broadcast_to(doy, (len(rows[i : i + step]), t)), step)
            for i in range(0, len(rows), step)
        ]  # fmt: skip
        k = int(self.session.get_outputs()[0].shape[-1])
        out = np.full((k, height, width), np.nan, np.float32)
        if probs:
            out[:, rows, cols] = np.concatenate(probs).T
        return out
