"""Per-band normalisation statistics, computed from the training data only.

Robust by default: the centre is the median and the scale the inter-quartile range / 1.349
(equal to the standard deviation for Gaussian data), so a few wild values (MODIS noise,
saturated pixels, unmasked clouds) cannot stretch the scale. Only finite values count (NaN =
missing). The statistics are stored in the checkpoint as ``norm: {mean, std}`` (centre and
scale, whatever the method) and applied inside the model.
"""

from __future__ import annotations

import numpy as np

from cropseq.errors import CropseqError

__all__ = ["METHODS", "band_statistics"]

METHODS = ("robust", "standard")


def band_statistics(x: np.ndarray, method: str = "robust", max_values: int = 2_000_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-band centre and scale of ``x (N, T, C, p, p)`` over finite values.

    Args:
        x: Raw training values, NaN where missing.
        method: ``"robust"`` (median, IQR / 1.349) or ``"standard"`` (mean, std).
        max_values: Per-band cap on the values used (a seeded random subset beyond it), so
            huge patch tables do not need a full sort.
        seed: Seed of that subset.

    Returns:
        ``(centre, scale)``, float32 ``(C,)`` each; a band with zero spread gets scale 1.

    Raises:
        CropseqError: if a band has no finite value at all or ``method`` is unknown.
    """
    if method not in METHODS:
        raise CropseqError(f"unknown normalisation {method!r} (choose from {', '.join(METHODS)})")
    c = x.shape[2]
    rng = np.random.default_rng(seed)
    centre = np.zeros(c, dtype=np.float64)
    scale = np.ones(c, dtype=np.float64)
    for b in range(c):
        v = np.asarray(x[:, :, b], dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if v.size == 0:
            raise CropseqError(f"band {b} has no finite value in the training data")
        if v.size > max_values:
            v = rng.choice(v, size=max_values, replace=False)
        if method == "robust":
            q25, q50, q75 = np.percentile(v, [25, 50, 75])
            centre[b], s = q50, (q75 - q25) / 1.349
            if not s > 0:  # a near-constant band: fall back to the standard deviation
                s = float(v.std())
        else:
            centre[b], s = float(v.mean()), float(v.std())
        scale[b] = s if s > 0 else 1.0
    return centre.astype(np.float32), scale.astype(np.float32)
