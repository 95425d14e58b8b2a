"""The single-file model checkpoint (``*.pt``), loadable without executing pickled code.

Format (``docs/ARCHITECTURE.md``): a dict saved with ``torch.save``::

    {"format": "cropseq-checkpoint", "format_version": 1,
     "meta_json": "<JSON string>",                 # everything to rebuild and apply the model
     "state_dict": {name: tensor},
     "optimizer": {...},                            # optional: training state for --resume
     "rng": {...}}                                  # optional: RNG states for --resume

While training runs, the state after each epoch goes to ``<model>.partial``
(:func:`partial_path`, ``"complete": false`` in the metadata); the model's own name is written
only when training has finished.

Only tensors, strings, numbers, lists and dicts are stored, so
``torch.load(path, map_location="cpu", weights_only=True)`` reads it. The metadata travels as a
JSON *string* so that loading it never depends on pickling rules for nested Python objects.

``optimizer`` (when present) holds everything needed to continue training exactly:
``{"optimizer": optimizer.state_dict(), "loop": {...}, "best_state_dict": {...}}``, see
:mod:`cropseq.training.loop`.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cropseq.atomic import atomic_path
from cropseq.errors import CropseqError

__all__ = ["Checkpoint", "FORMAT", "FORMAT_VERSION", "PARTIAL_SUFFIX", "REQUIRED_META", "is_complete", "load_checkpoint", "partial_path", "save_checkpoint"]

FORMAT = "cropseq-checkpoint"
FORMAT_VERSION = 1
REQUIRED_META = ("arch", "bands", "patch", "norm", "classes", "temporal_encoding", "head")
#: Suffix of the resumable state of an unfinished training run (``model.pt.partial``).
PARTIAL_SUFFIX = ".partial"


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        meta: The decoded ``meta_json`` record.
        state_dict: Model weights (CPU tensors).
        optimizer: Training state for resuming, or None.
        rng: RNG states for resuming, or None.
    """

    meta: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None = None
    rng: dict[str, Any] | None = field(default=None)


def save_checkpoint(
    path: str | os.PathLike[str],
    state_dict: dict[str, torch.Tensor],
    meta: dict[str, Any],
    optimizer: dict[str, Any] | None = None,
    rng: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary sibling + rename).

    Args:
        path: Output ``.pt`` file.
        state_dict: Model weights; copied to CPU.
        meta: JSON-serialisable metadata (see the module docstring).
        optimizer: Optional resume state (tensors, numbers, strings, lists, dicts only).
        rng: Optional RNG states.

    Returns:
        The path written.

    Raises:
        CropseqError: when the folder is missing or not writable, or ``meta`` is not JSON.
    """
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise CropseqError(f"checkpoint metadata is not JSON-serialisable ({e})", path) from None
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta_json": meta_json,
        "state_dict": {k: v.detach().to("cpu").clone() for k, v in state_dict.items()},
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer
    if rng is not None:
        payload["rng"] = rng
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def partial_path(path: str | os.PathLike[str]) -> Path:
    """Where training keeps the resumable state of an unfinished run of model ``path``.

    ``model.pt`` -> ``model.pt.partial``: the model's own name appears only when training
    has finished, so nothing mistakes a half-trained model for the delivered one.
    """
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def is_complete(meta: dict[str, Any]) -> bool:
    """Whether a checkpoint's training finished (records without the key predate it: yes)."""
    return meta.get("complete", True) is not False


def _first_sentence(text: str, limit: int = 200) -> str:
    """The first sentence of a library's error message (torch appends paragraphs of advice)."""
    line = text.strip().split("\n", 1)[0]
    return re.split(r"(?<=[.!?])\s", line, maxsplit=1)[0].rstrip(".")[:limit]


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint with ``weights_only=True`` and check its format.

    Raises:
        CropseqError: when the file is missing, unreadable, not a cropseq checkpoint, of a
            newer format version, or lacks required metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise CropseqError("model file not found", path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own message advises weights_only=False, which would run a payload: never
        # echo it; say what was refused instead.
        msg = str(e)
        glob = re.search(r"GLOBAL ([\w.]+)", msg)
        if glob:
            raise CropseqError(
                f"not a readable cropseq checkpoint: refusing to load pickled Python objects "
                f"({glob.group(1)}) that could run code; a checkpoint holds only tensors and JSON",
                path,
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", msg)
        reason = detail.group(1) if detail else "not a torch checkpoint"
        raise CropseqError(f"not a readable cropseq checkpoint ({_first_sentence(reason)})", path) from None
    except Exception as e:  # noqa: BLE001 - any other unpickling/zip error means "not a checkpoint"
        reason = _first_sentence(str(e)) or type(e).__name__
        raise CropseqError(f"not a readable cropseq checkpoint ({reason})", path) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CropseqError("not a cropseq checkpoint (missing format tag)", path)
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CropseqError(
            f"checkpoint format version {version!r} is not a valid version (a whole number >= 1; this cropseq "
            f"reads up to {FORMAT_VERSION})", path
        )
    if version > FORMAT_VERSION:
        raise CropseqError(
            f"checkpoint format version {version} is newer than this cropseq supports ({FORMAT_VERSION})", path
        )
    try:
        meta = json.loads(raw["meta_json"])
    except (KeyError, TypeError, ValueError):
        raise CropseqError("checkpoint metadata (meta_json) is missing or not JSON", path) from None
    if not isinstance(meta, dict):
        raise CropseqError("checkpoint metadata (meta_json) is not a JSON object", path)
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CropseqError(f"checkpoint metadata lacks {', '.join(missing)}", path)
    state = raw.get("state_dict")
    if not isinstance(state, dict):
        raise CropseqError("checkpoint has no state_dict", path)
    return Checkpoint(meta=meta, state_dict=state, optimizer=raw.get("optimizer"), rng=raw.get("rng"))
