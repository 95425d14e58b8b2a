"""What makes an interrupted training run resumable, and the checks before resuming it.

While training runs, the checkpoint of the last finished epoch (weights plus optimizer, loop
and RNG state) lives in ``<model>.partial`` (:func:`cropseq.checkpoint.partial_path`); the
model's own name appears only when training has finished. ``--resume`` continues from the
``.partial`` file, but only when the run would be the same one: same training and
validation data (content hashes of the sequences), same bands, classes and options. A
swapped train/validation table would otherwise resume silently and report validation
accuracy on sequences it trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from cropseq.errors import CropseqError
from cropseq.sequences import SequenceArrays

__all__ = ["RUNTIME_OPTIONS", "check_resumable", "data_fingerprint", "resume_mismatches"]

#: Options that may change between an interrupted run and its resumption: where it runs and
#: where the logs go, not what it learns.
RUNTIME_OPTIONS = frozenset({"device", "amp", "threads", "resume", "history", "plot"})


def data_fingerprint(data: SequenceArrays | None) -> str | None:
    """SHA-256 of the content of labelled sequences (None for no data).

    Covers values, days of year, labels, sample ids, groups and band names, so the same table
    saved as CSV or Parquet hashes the same, and any changed, added or moved row does not.
    """
    if data is None:
        return None
    h = hashlib.sha256()
    h.update(json.dumps([list(data.bands), list(data.x.shape)]).encode())
    for arr in (data.x, data.doy, data.present, data.sample_ids):
        h.update(np.ascontiguousarray(arr).tobytes())
    for column in (data.labels, data.groups):
        h.update(b"\0" if column is None else "\x1f".join(map(str, column)).encode())
    return h.hexdigest()


def _short(h: str | None) -> str:
    return "none" if h is None else h[:12]


def resume_mismatches(
    meta: dict[str, Any],
    cfg_dict: dict[str, Any],
    data: dict[str, str | None],
    bands: list[str],
    classes: list[dict[str, Any]],
) -> list[str]:
    """How the recorded run differs from the one about to start (empty = the same run).

    Args:
        meta: The checkpoint's metadata.
        cfg_dict: ``TrainConfig.to_dict()`` of the new run.
        data: ``{"train": hash, "val": hash-or-None}`` of the new run's data.
        bands: The new run's bands, in order.
        classes: The new run's class records.
    """
    training = meta.get("training")
    if not isinstance(training, dict) or not isinstance(training.get("data"), dict):
        return ["the checkpoint records no training-data hashes (written by an older cropseq)"]
    out: list[str] = []
    saved = training["data"]
    for key, what in (("train", "training data"), ("val", "validation data")):
        if saved.get(key) != data.get(key):
            out.append(f"{what} differs (content hash {_short(data.get(key))}, the run used {_short(saved.get(key))})")
    if meta.get("bands") != list(bands):
        out.append(f"bands {','.join(bands)} (the run used {','.join(map(str, meta.get('bands') or []))})")
    if meta.get("classes") != classes:
        out.append("classes differ")
    new = json.loads(json.dumps(cfg_dict))  # tuples -> lists, as stored
    for key in sorted(set(new) - RUNTIME_OPTIONS - {"bands"}):  # bands: compared above, as used
        if key in training and training[key] != new[key]:
            out.append(f"{key} {new[key]} (the run used {training[key]})")
    return out


def check_resumable(
    path: str | os.PathLike[str],
    meta: dict[str, Any],
    cfg_dict: dict[str, Any],
    data: dict[str, str | None],
    bands: list[str],
    classes: list[dict[str, Any]],
) -> None:
    """Refuse to resume ``path`` unless it records the same run (see :func:`resume_mismatches`).

    Raises:
        CropseqError: one line listing every difference.
    """
    diff = resume_mismatches(meta, cfg_dict, data, bands, classes)
    if diff:
        raise CropseqError(f"cannot resume: {'; '.join(diff)}; train without --resume to start over", path)
