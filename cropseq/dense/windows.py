"""Dense samples: ``P x P`` windows of the cube with a label per pixel, samplers and a grouped split.

Labels come from :func:`cropseq.labels.read_labels` (polygons, points or a label raster read
onto the stack grid) and are laid on the stack grid as :class:`DenseLabels`: a class index per
pixel (:data:`IGNORE` where unlabelled, ignored by the loss) and a group per pixel (the field,
or for a label raster the connected patch). Polygons are rasterised by pixel centre with the
same helper as ``cropseq samples`` (``cropseq.samples.label_pixels``).

Samplers follow torchgeo's: :func:`random_windows` (``RandomGeoSampler``: seeded random
positions, here only windows holding a labelled pixel of the split) and :func:`grid_windows`
(``GridGeoSampler``: a regular grid with a stride, the last row and column flush with the edge).

Field-grouped split (:func:`split_groups`): whole groups go to validation; each side's label
raster has the other side's pixels set to :data:`IGNORE`, so a field's labels are never on both
sides (a window may still *see* the other side's pixels as unlabelled context).

Windows are cut from the cube loaded into memory with a NaN border of the model's receptive
radius (:func:`padded_array`), so a window's input is exactly what chunked prediction gives the
same pixels: fine for a scene of a few thousand pixels a side, not for a continent.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cropseq.classes import ClassTable
from cropseq.errors import CropseqError

__all__ = ["IGNORE", "DenseLabels", "dense_labels", "grid_windows", "padded_array", "random_windows", "split_groups",
           "window_batch"]  # fmt: skip

#: Class index of unlabelled pixels (``ignore_index`` of the loss).
IGNORE = -100


@dataclass
class DenseLabels:
    """Per-pixel labels on the stack grid.

    Attributes:
        index: ``(H, W)`` int64 class index (row of ``classes``), :data:`IGNORE` where unlabelled.
        group: ``(H, W)`` int64 group id (field or patch), -1 where unlabelled.
        classes: The class table.
    """

    index: np.ndarray
    group: np.ndarray
    classes: ClassTable

    @property
    def n_labelled(self) -> int:
        """Labelled pixels."""
        return int((self.index != IGNORE).sum())

    def keep_groups(self, groups: np.ndarray) -> DenseLabels:
        """These labels with every pixel outside ``groups`` set to unlabelled."""
        keep = np.isin(self.group, groups) & (self.index != IGNORE)
        return DenseLabels(np.where(keep, self.index, IGNORE), np.where(keep, self.group, -1), self.classes)


def dense_labels(cube: Any, path: str | os.PathLike[str], classes: ClassTable | None = None,
                 id_column: str | None = None) -> DenseLabels:  # fmt: skip
    """Read labels (vector or raster) and lay them on the cube's grid, one class per pixel.

    Args:
        cube: The stack cube (``time, band, y, x``, georeferenced).
        path: Polygons/points (GeoPackage, ...) or a label raster (``.tif``).
        classes: A class table (default: the labels' own, see :func:`~cropseq.labels.read_labels`).
        id_column: The field id column of vector labels (groups; default: one group per feature).

    Returns:
        The :class:`DenseLabels`; where polygons overlap, the later feature wins.

    Raises:
        CropseqError: unreadable labels, or no labelled pixel inside the stack.
    """
    from cropseq.io import cube_grid
    from cropseq.labels import read_labels
    from cropseq.samples import ExtractionReport, label_pixels

    grid = cube_grid(cube)
    labels = read_labels(path, grid.crs, id_column=id_column, classes=classes, grid=grid)
    feats = labels.features
    rows, cols, fidx = label_pixels(feats, grid.transform, grid.shape, ExtractionReport())
    if len(fidx) == 0:
        raise CropseqError("no labelled pixel inside the stack", path)
    cls_of_feat = np.asarray(labels.classes.index_of(feats["label"].astype(str), str(path)), dtype=np.int64)
    _, grp_of_feat = np.unique(feats["group"].astype(str).to_numpy(), return_inverse=True)
    index = np.full(grid.shape, IGNORE, np.int64)
    group = np.full(grid.shape, -1, np.int64)
    index[rows, cols] = cls_of_feat[fidx]
    group[rows, cols] = grp_of_feat[fidx]
    return DenseLabels(index, group, labels.classes)


def split_groups(labels: DenseLabels, val_fraction: float, seed: int = 0) -> tuple[DenseLabels, DenseLabels | None]:
    """Field-grouped split: ``(train, val)`` labels, whole groups on one side each.

    The split of ``cropseq train`` (:func:`cropseq.samples.assign_split` over the labelled
    pixels): groups largest first, each to the side whose per-class shortfall is largest. So a
    group holding most of the labels (the one connected forest of a land-cover raster) trains,
    and every class is on the training side. ``val_fraction = 0``, or groups too few or too
    large for any to fit in validation, give ``(labels, None)``.

    Raises:
        CropseqError: ``val_fraction`` outside ``[0, 1)`` or fewer than two groups to split.
    """
    from cropseq.samples import assign_split

    if not 0.0 <= val_fraction < 1.0:
        raise CropseqError(f"validation fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0:
        return labels, None
    labelled = labels.group >= 0
    group, index = labels.group[labelled], labels.index[labelled]
    if len(np.unique(group)) < 2:
        raise CropseqError(f"a grouped split needs at least two fields, the labels have {len(np.unique(group))}")
    side = assign_split(index, group, val_fraction, 0.0, seed)
    val_ids = np.unique(group[side == "val"])
    if len(val_ids) == 0:
        return labels, None
    return labels.keep_groups(np.unique(group[side == "train"])), labels.keep_groups(val_ids)


def grid_windows(shape: tuple[int, int], size: int, stride: int | None = None) -> list[tuple[int, int]]:
    """Top-left ``(row, col)`` of ``size x size`` windows on a grid (``GridGeoSampler``).

    ``stride`` defaults to ``size`` (no overlap); the last row and column of windows sit flush
    with the scene's far edge so every pixel is covered. A scene smaller than a window gives
    one window at ``(0, 0)`` (its outside is NaN, see :func:`padded_array`).
    """
    stride = size if stride is None else stride
    if size < 1 or stride < 1:
        raise CropseqError(f"window size and stride must be >= 1, got {size} and {stride}")

    def starts(n: int) -> list[int]:
        last = max(0, n - size)
        return sorted(set(range(0, last + 1, stride)) | {last})

    return [(r, c) for r in starts(shape[0]) for c in starts(shape[1])]


def random_windows(labels: DenseLabels, size: int, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n`` seeded random windows holding at least one labelled pixel (``RandomGeoSampler``).

    Positions are drawn uniformly over the scene and redrawn when the window holds no label
    of ``labels`` (e.g. of the training side of a split).

    Raises:
        CropseqError: when no window with a label turns up (no labelled pixel at all).
    """
    h, w = labels.index.shape
    rng = np.random.default_rng(seed)
    have = np.pad((labels.index != IGNORE).astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)  # integral image
    out: list[tuple[int, int]] = []
    for _ in range(max(50 * n, 1000)):
        if len(out) == n:
            break
        r, c = int(rng.integers(0, max(1, h - size + 1))), int(rng.integers(0, max(1, w - size + 1)))
        r1, c1 = min(h, r + size), min(w, c + size)
        if have[r1, c1] - have[r, c1] - have[r1, c] + have[r, c] > 0:
            out.append((r, c))
    if not out:
        raise CropseqError("no window holds a labelled pixel")
    return out


def padded_array(data: np.ndarray, halo: int) -> np.ndarray:
    """``(T, C, H, W)`` values with a NaN border of ``halo`` pixels (beyond the scene = missing)."""
    data = np.asarray(data, dtype=np.float32)
    return np.pad(data, ((0, 0), (0, 0), (halo, halo), (halo, halo)), constant_values=np.nan)


def window_batch(padded: np.ndarray, index: np.ndarray, windows: Sequence[tuple[int, int]], size: int,
                 halo: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Inputs and labels of ``windows`` cut from a :func:`padded_array` of border ``halo``.

    Returns:
        ``x (B, T, C, size + 2 halo, size + 2 halo)`` float32 and ``y (B, size, size)`` int64
        (:data:`IGNORE` beyond the scene).
    """
    lab = np.pad(index, ((0, size), (0, size)), constant_values=IGNORE)
    e = size + 2 * halo
    x = np.stack([padded[:, :, r : r + e, c : c + e] for r, c in windows])
    y = np.stack([lab[r : r + size, c : c + size] for r, c in windows])
    if x.shape[-1] != e or x.shape[-2] != e:  # a scene smaller than the window: fill with NaN
        full = np.full(x.shape[:3] + (e, e), np.nan, np.float32)
        full[..., : x.shape[-2], : x.shape[-1]] = x
        x = full
    return x, y
