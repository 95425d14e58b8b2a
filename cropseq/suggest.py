"""Where to label next: uncertain, spread-out, class-stratified points (``cropseq suggest``).

sits' ``sits_uncertainty_sampling`` picks the most uncertain pixels; taken alone they cluster
(a whole confused field, one border) and follow one confused class. Here:

1. **Uncertainty**: an uncertainty raster of ``cropseq predict --uncertainty`` (entropy,
   margin or least confidence; higher = more uncertain) or, failing that, the confidence
   raster (uncertainty ``1 - confidence``), on the map's grid.
2. **Candidates** (flat memory): the map and the uncertainty are read in strips of rows;
   per predicted class only the :func:`pool_size` most uncertain pixels are kept (ties broken
   by seeded random jitter), so memory is bounded by the pool, never by the map.
3. **Allocation**: ``n`` points shared between the predicted classes in proportion to their
   mapped pixels, at least ``min_per_class`` each (:func:`cropseq.accuracy.allocate_sample`).
4. **Spread**: greedy, most uncertain first, classes taking turns; a candidate is accepted
   when no accepted point lies within ``min_distance`` (a scikit-learn KD-tree over the
   candidates: each accepted point suppresses its neighbours). Places a class cannot fill
   go to the most uncertain remaining candidates of any class.

The points are written with the columns of ``cropseq sample-design`` points
(:data:`cropseq.sampling_design.POINT_COLUMNS`: ``point_id, map_class, map_code, reference,
x, y``) plus ``uncertainty``, most uncertain first, so an analyst fills ``reference`` and
the labelled points can join the training labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cropseq.atomic import register_input
from cropseq.errors import CropseqError

#: Candidates kept per class: this many times its quota, at least :data:`MIN_POOL`.
POOL_FACTOR = 200
MIN_POOL = 50_000
#: Uncertainty rasters looked for beside ``MAP.tif`` when none is given, in this order.
DEFAULT_LAYERS = ("entropy", "margin", "least", "confidence")


def pool_size(quota: int) -> int:
    """Candidates kept for a class with ``quota`` points."""
    return max(MIN_POOL, POOL_FACTOR * int(quota))


def find_uncertainty(map_path: str | os.PathLike[str]) -> Path:
    """The first of ``MAP_STEM.{entropy,margin,least,confidence}.tif`` beside the map.

    Raises:
        CropseqError: none exists.
    """
    p = Path(map_path)
    for layer in DEFAULT_LAYERS:
        cand = p.with_name(f"{p.stem}.{layer}.tif")
        if cand.is_file():
            return cand
    raise CropseqError("no uncertainty raster beside the map (run cropseq predict --uncertainty entropy, "
                       "or pass --uncertainty FILE)", p)


def _is_confidence(src: Any, path: Path) -> bool:
    """A confidence raster (higher = more certain) rather than an uncertainty one."""
    if src.tags().get("CROPSEQ_UNCERTAINTY"):
        return False
    desc = (src.descriptions[0] or "").lower() if src.descriptions else ""
    return desc.startswith("confidence") or path.name.endswith(".confidence.tif")


@dataclass
class Candidates:
    """The most uncertain pixels per class (rows, cols, uncertainty, jittered score)."""

    rows: np.ndarray
    cols: np.ndarray
    codes: np.ndarray
    uncertainty: np.ndarray
    score: np.ndarray


def collect_candidates(map_path: Path, unc_path: Path, quotas: dict[int, int], seed: int,
                       strip_pixels: int = 4_000_000) -> Candidates:
    """Per class, the :func:`pool_size` most uncertain pixels, read in strips of rows.

    Raises:
        CropseqError: the uncertainty raster is on another grid than the map.
    """
    import rasterio
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    keep: dict[int, list[np.ndarray]] = {c: [] for c in quotas}
    with rasterio.open(map_path) as msrc, rasterio.open(unc_path) as usrc:
        _check_grid(msrc, usrc, unc_path)
        flip = _is_confidence(usrc, unc_path)
        width, height = msrc.width, msrc.height
        step = max(1, strip_pixels // max(1, width))
        for r0 in range(0, height, step):
            win = Window(0, r0, width, min(step, height - r0))
            cls = msrc.read(1, window=win).ravel()
            unc = usrc.read(1, window=win).astype(np.float64).ravel()
            unc = 1.0 - unc if flip else unc
            jitter = rng.random(cls.size) * 1e-9  # seeded tie-break among equal uncertainties
            for code, quota in quotas.items():
                idx = np.flatnonzero((cls == code) & np.isfinite(unc))
                if idx.size == 0:
                    continue
                score = unc[idx] + jitter[idx]
                rec = np.stack([r0 + idx // width, idx % width, unc[idx], score])
                keep[code].append(_top(np.concatenate([*keep[code], rec], axis=1) if keep[code] else rec,
                                       pool_size(quota)))
                keep[code] = keep[code][-1:]
    parts = [(c, k[0]) for c, k in keep.items() if k]
    if not parts:
        return Candidates(*(np.zeros(0),) * 5)
    rec = np.concatenate([p for _, p in parts], axis=1)
    codes = np.concatenate([np.full(p.shape[1], c, np.int64) for c, p in parts])
    return Candidates(rec[0].astype(np.int64), rec[1].astype(np.int64), codes, rec[2], rec[3])


def _check_grid(msrc: Any, usrc: Any, path: Path) -> None:
    """The uncertainty raster must lie on the map's grid (same size, transform and CRS)."""
    same = (msrc.width, msrc.height) == (usrc.width, usrc.height) and msrc.crs == usrc.crs and \
        msrc.transform.almost_equals(usrc.transform, precision=1e-6 * abs(msrc.transform.a or 1))
    if not same:
        raise CropseqError(f"the uncertainty raster's grid ({usrc.width} x {usrc.height} px, {usrc.crs}) differs "
                           f"from the map's ({msrc.width} x {msrc.height} px, {msrc.crs}); both must share one grid",
                           path)


def _top(rec: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` columns of ``rec`` (rows: row, col, uncertainty, score) with the highest score."""
    if rec.shape[1] <= k:
        return rec
    return rec[:, np.argpartition(-rec[3], k - 1)[:k]]


def spread_pick(xy: np.ndarray, score: np.ndarray, codes: np.ndarray, quotas: dict[int, int], n: int,
                min_distance: float) -> np.ndarray:
    """Indices of the picked candidates (see the module docs, step 4), in pick order."""
    from sklearn.neighbors import KDTree

    order_by_class = {c: np.flatnonzero(codes == c)[np.argsort(-score[codes == c], kind="stable")] for c in quotas}
    blocked = np.zeros(len(score), bool)
    tree = KDTree(xy) if len(xy) else None
    picked: list[int] = []

    def take(i: int) -> None:
        picked.append(int(i))
        blocked[i] = True
        if min_distance > 0 and tree is not None:
            # Strictly closer than min_distance is suppressed: points exactly that far apart fit.
            near = tree.query_radius(xy[i : i + 1], r=np.nextafter(min_distance, 0))[0]
            blocked[near] = True

    pos = dict.fromkeys(quotas, 0)
    left = dict(quotas)
    while any(left.values()) and len(picked) < n:  # classes take turns, each its next most uncertain free candidate
        progressed = False
        for c in quotas:
            if left[c] == 0 or len(picked) >= n:
                continue
            order = order_by_class[c]
            while pos[c] < order.size and blocked[order[pos[c]]]:
                pos[c] += 1
            if pos[c] == order.size:
                left[c] = 0  # the class is full: its places go to the others below
                continue
            take(order[pos[c]])
            left[c] -= 1
            progressed = True
        if not progressed:
            break
    for i in np.argsort(-score, kind="stable"):  # places no class could fill
        if len(picked) >= n:
            break
        if not blocked[i]:
            take(i)
    return np.asarray(picked, np.int64)


def suggest_points(
    map_path: str | os.PathLike[str],
    n: int,
    *,
    uncertainty: str | os.PathLike[str] | None = None,
    min_distance: float = 10.0,
    min_distance_m: float | None = None,
    min_per_class: int = 5,
    seed: int = 0,
) -> Any:
    """Uncertain, spread-out, class-stratified points to label next (see the module docs).

    Args:
        map_path: A crop map with class names (``cropseq predict``).
        n: Number of points.
        uncertainty: Uncertainty (or confidence) raster on the map's grid; default the first
            of ``MAP_STEM.{entropy,margin,least,confidence}.tif`` that exists.
        min_distance: Minimum distance between points in pixels.
        min_distance_m: The same in map units (metres); overrides ``min_distance``.
        min_per_class: At least this many points per predicted class (capped by its pixels).
        seed: Seed of the tie-breaking jitter: the same inputs and seed give the same points.

    Returns:
        A GeoDataFrame with the sample-design columns plus ``uncertainty``, most uncertain first.

    Raises:
        CropseqError: n < 1, a negative distance, grids that differ, or ``n`` points that do
            not fit at the minimum distance (saying how many do).
    """
    from cropseq.accuracy import allocate_sample
    from cropseq.sampling_design import map_strata, points_frame

    if n < 1:
        raise CropseqError(f"--n {n}: ask for at least one point")
    if min_distance < 0 or (min_distance_m is not None and min_distance_m < 0):
        raise CropseqError("the minimum distance must be >= 0")
    strata = map_strata(map_path)
    unc_path = Path(uncertainty) if uncertainty is not None else find_uncertainty(strata.path)
    if not unc_path.is_file():
        raise CropseqError("uncertainty raster not found", unc_path)
    register_input(unc_path, what="uncertainty raster")
    # The minimum per class never pushes the total past n (n < classes x minimum: fewer each).
    floor = min(int(min_per_class), n // len(strata.codes))
    alloc = allocate_sample(n, strata.pixels.astype(float), "proportional", min_per_class=floor,
                            stratum_sizes=strata.pixels)
    quotas = {int(c): int(k) for c, k in zip(strata.codes, alloc, strict=True) if k > 0}
    cand = collect_candidates(strata.path, unc_path, quotas, seed)
    t = strata.transform
    pixel = float(np.sqrt(abs(t.a * t.e - t.b * t.d)))
    dist_px = float(min_distance_m) / pixel if min_distance_m is not None else float(min_distance)
    xy = np.stack([cand.cols, cand.rows], axis=1).astype(np.float64)  # pixel units
    picked = spread_pick(xy, cand.score, cand.codes, quotas, n, dist_px)
    if picked.size < n:
        unit = f"{min_distance_m:g} map units" if min_distance_m is not None else f"{min_distance:g} px"
        raise CropseqError(f"only {picked.size} points fit at least {unit} apart among the map's most uncertain "
                           f"pixels (asked for {n}); lower --n or --min-distance", strata.path)
    picked = picked[np.argsort(-cand.score[picked], kind="stable")]
    return points_frame(strata, cand.rows[picked], cand.cols[picked], cand.codes[picked],
                        uncertainty=np.round(cand.uncertainty[picked], 6))


__all__ = ["DEFAULT_LAYERS", "collect_candidates", "find_uncertainty", "pool_size", "spread_pick", "suggest_points"]
