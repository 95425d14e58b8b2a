"""``cropseq export --onnx``: a deep checkpoint as an ONNX graph that any ONNX runtime can run.

The graph (:class:`ProbabilityGraph`) takes what every cropseq predictor takes and returns
what it returns:

- input ``x``: ``(N, T, C, p, p)`` float32 **raw** values (not normalised; the checkpoint's
  normalisation is inside the graph), NaN where missing, bands in the model's order;
- input ``doy``: ``(N, T)`` float32 day of year of each step (NaN when unknown);
- output ``probabilities``: ``(N, K)`` float32, rows summing to 1 (uniform for a sequence
  without any valid step). ``N`` is dynamic; ``T`` is fixed at export (``--dates``): torch's
  exporter unrolls the recurrent layers over the dates, so a graph serves one timeline
  length (export once per length; missing dates are NaN rows, as everywhere in cropseq).

The file's metadata (``metadata_props``) holds the checkpoint's record under
``cropseq.meta_json`` (bands, classes with codes and colours, patch, normalisation: what
another tool needs to feed the graph and name its outputs) and the checkpoint's SHA-256 under
``cropseq.source_sha256``, so ``cropseq predict --engine onnx`` can refuse a stale export,
and ``T`` under ``cropseq.dates``.
Exporting traces the model with ``torch.export`` (:func:`torch.onnx.export`, ``dynamo=True``):
tens of seconds to a few minutes on a 2-core machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
import onnxscript  # noqa: F401 - torch.onnx.export(dynamo=True) needs it; fail here, at import, if missing
import torch
from torch import nn

from cropseq.atomic import atomic_path, check_writable
from cropseq.errors import CropseqError

if TYPE_CHECKING:
    from cropseq.models.recurrent import SequenceClassifier

__all__ = ["DATES_KEY", "META_KEY", "OPSET", "SHA_KEY", "ProbabilityGraph", "export_onnx", "file_sha256"]

#: ONNX opset of the exported graph.
OPSET = 18
#: metadata_props key holding the checkpoint's ``meta_json``.
META_KEY = "cropseq.meta_json"
#: metadata_props key holding the SHA-256 of the checkpoint file the graph came from.
SHA_KEY = "cropseq.source_sha256"
#: metadata_props key holding the number of dates ``T`` the graph takes.
DATES_KEY = "cropseq.dates"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


class ProbabilityGraph(nn.Module):
    """Raw patch sequences -> class probabilities, without data-dependent control flow.

    The same numbers as ``DeepPredictor.predict_image`` (the whole-image path): every date
    is encoded and the invalid ones are zeroed afterwards (the patch path skips them, which
    gives the same zeros), so the graph has no boolean indexing and exports with a dynamic
    ``N``.

    Args:
        model: A :class:`~cropseq.models.recurrent.SequenceClassifier` in eval mode.
    """

    model: SequenceClassifier

    def __init__(self, model: SequenceClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, doy: torch.Tensor) -> torch.Tensor:
        """``(N, T, C, p, p)`` raw values and ``(N, T)`` day of year -> ``(N, K)`` probabilities."""
        m = self.model
        n, t, c, p, _ = x.shape
        valid = m.valid_mask(x)
        phase = m.temporal_features(doy).reshape(n * t, 2) if m.arch.encoder_time else None
        feats = m.encoder(m.encoder_input(x.reshape(n * t, c, p, p), phase)).reshape(n, t, -1)
        logits = m.forward_features(feats * valid.unsqueeze(-1).to(feats.dtype), valid, doy)
        if m.arch.head == "many-to-one":
            proba = torch.softmax(logits, dim=-1)
        else:  # mean of the per-date probabilities over the valid dates
            w = valid.unsqueeze(-1).to(logits.dtype)
            proba = (torch.softmax(logits, dim=-1) * w).sum(1) / w.sum(1).clamp_min(1.0)
        # As SequenceClassifier.sequence_proba, without its data-dependent branch.
        none = ~valid.any(dim=1, keepdim=True)
        return torch.where(none, torch.full_like(proba, 1.0 / proba.shape[-1]), proba)


def export_onnx(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], dates: int) -> Path:
    """Write a deep checkpoint as an ONNX graph with its cropseq record (see the module docs).

    Args:
        checkpoint: A complete cropseq deep checkpoint (``*.pt``).
        out: The ``.onnx`` file to write (atomically).
        dates: ``T``, the number of dates of the stacks the graph will map (>= 2).

    Returns:
        ``out``.

    Raises:
        CropseqError: missing or invalid checkpoint, a RandomForest, an unwritable output.
    """
    from cropseq.predictors import load_predictor
    from cropseq.predictors.deep import DeepPredictor

    checkpoint, out = Path(checkpoint), Path(out)
    if checkpoint.suffix == ".skops":
        raise CropseqError("only deep models (*.pt) export to ONNX; a RandomForest is a scikit-learn model", checkpoint)
    if out.suffix != ".onnx":
        raise CropseqError("the ONNX file must end in .onnx", out)
    if int(dates) < 2:
        raise CropseqError(f"--dates must be at least 2, got {dates}")
    check_writable(out)
    predictor = load_predictor(checkpoint, device="cpu")
    if not isinstance(predictor, DeepPredictor):  # e.g. a dense (per-date) model: another graph
        raise CropseqError(f"only deep sequence models export to ONNX, not a {predictor.kind} model", checkpoint)
    graph = ProbabilityGraph(predictor.model).eval()
    n, t = 37, int(dates)  # N: an example only (dynamic), a size no other axis has
    x = torch.zeros(n, t, len(predictor.bands), predictor.patch, predictor.patch)
    doy = torch.linspace(1, 360, t).expand(n, t).contiguous()
    dims = ({0: torch.export.Dim("n", min=1)},) * 2
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph, (x, doy), None, dynamo=True, dynamic_shapes=dims, opset_version=OPSET,
            input_names=["x", "doy"], output_names=["probabilities"], verbose=False,
        )  # fmt: skip
    assert program is not None  # dynamo=True without a path returns the program
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {META_KEY: json.dumps(predictor.meta), SHA_KEY: file_sha256(checkpoint), DATES_KEY: str(t)})
    onnx.checker.check_model(proto)
    with atomic_path(out) as tmp:
        onnx.save_model(proto, str(tmp))
    return out
