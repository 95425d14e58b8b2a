"""Per-pixel uncertainty of a crop map, from its class probabilities (as sits' ``sits_uncertainty``).

With ``p1 >= p2 >= ...`` a pixel's class probabilities sorted in decreasing order and ``K``
the number of classes, every measure lies in ``[0, 1]``, 0 = certain, 1 = most uncertain:

- ``entropy``: normalised Shannon entropy ``-sum_k p_k log p_k / log K`` (1 = all classes
  equally likely; looks at the whole distribution).
- ``margin``: ``1 - (p1 - p2)`` (1 = the two best classes tie; the classic margin sampling).
- ``least``: least confidence ``1 - p1`` (at most ``1 - 1/K``).

Computed chunk by chunk from the probabilities the map is labelled from (after smoothing,
if any); nodata pixels are NaN. Written as float32 COGs ``<stem>.<measure>.tif``.
"""

from __future__ import annotations

import numpy as np

from cropseq.errors import CropseqError

#: Measure name -> band description (what the number means).
MEASURES: dict[str, str] = {
    "entropy": "normalised entropy of the class probabilities (0 = certain, 1 = uniform)",
    "margin": "1 - (p1 - p2): one minus the margin between the two most probable classes",
    "least": "least confidence 1 - p1 (one minus the top-class probability)",
}


def check_measures(names: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Validated, de-duplicated measure names in the order given.

    Raises:
        CropseqError: an unknown measure.
    """
    out: list[str] = []
    for n in names or ():
        if n not in MEASURES:
            raise CropseqError(f"unknown uncertainty measure {n!r} (choose from {', '.join(MEASURES)})")
        if n not in out:
            out.append(n)
    return tuple(out)


def uncertainty(probs: np.ndarray, measure: str) -> np.ndarray:
    """One uncertainty measure of ``(K, H, W)`` probabilities (NaN = nodata) as ``(H, W)`` float32."""
    p = np.asarray(probs, np.float64)
    valid = np.asarray(np.isfinite(p).all(axis=0))  # an array (not a numpy scalar) for the typing
    k = p.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        if measure == "entropy":
            if k < 2:
                out = np.zeros(p.shape[1:])
            else:
                plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
                out = -plogp.sum(axis=0) / np.log(k)
        elif measure in ("margin", "least"):
            top = -np.sort(-np.where(valid[None], p, 0.0), axis=0)  # decreasing
            p1 = top[0]
            p2 = top[1] if k > 1 else np.zeros_like(p1)
            out = 1.0 - (p1 - p2) if measure == "margin" else 1.0 - p1
        else:
            raise CropseqError(f"unknown uncertainty measure {measure!r} (choose from {', '.join(MEASURES)})")
    return np.where(valid, np.clip(out, 0.0, 1.0), np.nan).astype(np.float32)


__all__ = ["MEASURES", "check_measures", "uncertainty"]
