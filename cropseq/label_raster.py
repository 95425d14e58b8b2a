"""A label raster (a land-cover map such as eo-learn's ``lulc.tif``) read as labels.

:func:`cropseq.labels.read_labels` hands a raster (``.tif``, ``.vrt``, ...) here. Every
labelled pixel becomes one point sample at its pixel centre; pixels holding 0 (configurable)
or the raster's nodata are unlabelled. A sample's ``group`` is its *patch*: the connected
(4-neighbour) region of one class it lies in, so a grouped split keeps a patch on one side
(neighbouring pixels of one field are not independent).

The raster is read onto the stack's grid (``grid``) with nearest neighbour through GDAL's
warper (:class:`cropseq.grid.WarpRead`), so each sample is exactly one cube pixel whatever
the label raster's own grid; a raster without a CRS is refused unless it already is that
grid. The whole label raster is read at once (one value per stack pixel), which is fine
for a reference map, not for a continent.

Codes are named, in this order, by the class table given; the labels' own table
(``<stem>.classes.yaml`` or ``classes.yaml`` beside the raster, as for vector labels); the
raster's own names (metadata tags, GDAL categories in its ``.aux.xml``, a ``.qml`` style:
:func:`cropseq.raster_metadata.raster_class_names`); else the code itself (``"3"``). Class codes
stay the raster's codes (1..254), so a map made from these labels can be scored against the
same raster.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cropseq.classes import MAX_CLASSES, ClassTable
from cropseq.errors import CropseqError
from cropseq.grid import TargetGrid, WarpRead
from cropseq.raster_metadata import raster_class_names

__all__ = ["PATCH_COLUMN", "RASTER_SUFFIXES", "UNLABELLED", "is_label_raster", "read_label_raster"]

#: File suffixes read as a label raster rather than a vector file.
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")
#: ``LabelSet.id_column`` of label-raster samples: their group is their patch.
PATCH_COLUMN = "patch"
#: Values that mean "no label" by default (besides the raster's nodata).
UNLABELLED = (0,)


def is_label_raster(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a raster (read by :func:`read_label_raster`) by its suffix."""
    return Path(path).suffix.lower() in RASTER_SUFFIXES


def read_label_raster(
    path: str | os.PathLike[str],
    crs: Any,
    grid: TargetGrid | None = None,
    classes: ClassTable | None = None,
    unlabelled: Sequence[int] = UNLABELLED,
) -> Any:
    """Read a single-band class raster as point labels (one per labelled pixel).

    Args:
        path: The label raster.
        crs: The stack CRS the points are returned in.
        grid: The stack's grid: the raster is read onto it with nearest neighbour (None:
            the raster's own grid).
        classes: A class table naming the codes; a code it lacks is an error.
        unlabelled: Values that mean "no label" (the raster's nodata is one too).

    Returns:
        A :class:`cropseq.labels.LabelSet` of points (``sample_id`` = the pixel's row-major
        index on the grid read, ``group`` = ``patch<n>``), ``id_column`` =
        :data:`PATCH_COLUMN`.

    Raises:
        CropseqError: unreadable raster, more than one band, non-integer values, no CRS
            while on another grid than the stack, no labelled pixel, unnamed codes.
    """
    import geopandas as gpd

    from cropseq.labels import LabelSet

    path = Path(path)
    codes, transform, src_crs = _read_codes(path, crs, grid, unlabelled)
    labelled = codes > 0
    present = sorted(int(c) for c in np.unique(codes[labelled]))
    if not present:
        skip = ", ".join(map(str, unlabelled))
        raise CropseqError(f"label raster holds no labelled pixel (every value is unlabelled: {skip} or nodata)", path)
    table, source, name_of = _class_table(path, present, classes)
    patches = _patches(codes, present)
    rows, cols = np.nonzero(labelled)
    xs, ys = transform @ (cols + 0.5, rows + 0.5)
    uniq, inverse = np.unique(codes[rows, cols], return_inverse=True)
    feats = gpd.GeoDataFrame(
        {
            "sample_id": rows.astype(np.int64) * codes.shape[1] + cols,
            "label": np.array([name_of[int(c)] for c in uniq], dtype=object)[inverse].astype(str),
            "group": np.char.add("patch", patches[rows, cols].astype(str)),
            "from": pd.Series(pd.NaT, index=range(rows.size), dtype="datetime64[ns]"),
            "to": pd.Series(pd.NaT, index=range(rows.size), dtype="datetime64[ns]"),
        },
        geometry=gpd.points_from_xy(xs, ys),
        crs=src_crs,
    )
    if crs is not None and src_crs is not None and not feats.crs.equals(crs):
        feats = feats.to_crs(crs)
    return LabelSet(features=feats, classes=table, path=path, id_column=PATCH_COLUMN, classes_source=source)


def _read_codes(path: Path, crs: Any, grid: TargetGrid | None, unlabelled: Sequence[int]) -> tuple[np.ndarray, Any, Any]:
    """``(codes, transform, crs)``: int64 codes on the grid read, 0 where unlabelled."""
    import rasterio
    from rasterio.windows import Window

    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioError as e:
        raise CropseqError(f"cannot read label raster ({str(e).strip().splitlines()[0]})", path) from None
    with src:
        if src.count != 1:
            raise CropseqError(f"a label raster must have 1 band (class codes), this one has {src.count}", path)
        nodata = src.nodata
        if grid is None or grid.matches(src.crs, src.transform, (src.height, src.width)):
            if src.crs is None and crs is not None:
                raise CropseqError("label raster has no CRS (assign one, e.g. gdal_edit.py -a_srs EPSG:32633)", path)
            raw = src.read(1).astype(np.float64)
            transform, out_crs = src.transform, src.crs
        else:
            if src.crs is None or grid.crs is None:
                raise CropseqError(
                    "label raster has no CRS and is not on the stack's grid: cannot read it onto it "
                    "(assign one, e.g. gdal_edit.py -a_srs EPSG:32633)",
                    path,
                )
            h, w = grid.shape
            raw = WarpRead(grid, "nearest", nodata).read(src, [1], Window(0, 0, w, h))[0].astype(np.float64)
            transform, out_crs = grid.transform, grid.crs
    bad = np.isfinite(raw) & (raw % 1 != 0)
    if bad.any():
        v = raw[bad][0]
        raise CropseqError(f"label raster holds non-integer values (e.g. {v:g}); a class raster holds integer codes", path)
    skip = ~np.isfinite(raw) | np.isin(raw, np.asarray(unlabelled, dtype=np.float64))
    if nodata is not None and not np.isnan(nodata):
        skip |= raw == nodata
    if (raw[~skip] < 1).any():
        v = raw[~skip & (raw < 1)][0]
        raise CropseqError(f"label raster holds code {v:g}: class codes are >= 1 (or mark it unlabelled)", path)
    codes = np.where(skip, 0, raw).astype(np.int64)
    return codes, transform, out_crs


def _class_table(
    path: Path, present: Sequence[int], classes: ClassTable | None
) -> tuple[ClassTable, str | None, dict[int, str]]:
    """The class table of a label raster, where it came from, and each present code's class name.

    Where a table comes from is described in the module docstring.
    """
    from cropseq.labels import own_class_table_files

    source: str | None = "given"
    if classes is None:
        source = next((str(f) for f in own_class_table_files(path) if f.is_file()), None)
        classes = ClassTable.from_yaml(source) if source is not None else None
    if classes is not None:
        unknown = [c for c in present if c not in classes.codes]
        if unknown:
            origin = "" if source == "given" else f" {source}"
            raise CropseqError(
                f"label raster value {unknown[0]} is not a code of the class table{origin} "
                f"(codes: {', '.join(map(str, classes.codes))}; {len(unknown)} unknown code(s))",
                path,
            )
        return classes, source, {c.code: c.name for c in classes.classes}
    names = raster_class_names(path)
    if names:
        unnamed = [c for c in present if c not in names]
        if unnamed:
            raise CropseqError(
                f"label raster value {unnamed[0]} has no name in the raster's own class names; pass --classes", path
            )
        source = "the raster's class names"
    name_of = {c: names.get(c, str(c)) for c in present}
    if max(present) > MAX_CLASSES:  # codes beyond a uint8 map's: the names keep, codes become 1..K
        return ClassTable.from_names(name_of.values()), source, name_of
    # Every named code (not only those present) keeps its code: the two halves of one map
    # give the same table.
    known = {c: n for c, n in names.items() if 1 <= c <= MAX_CLASSES} | name_of
    table = ClassTable.from_records([{"code": c, "name": known[c]} for c in sorted(known)], str(path))
    return table, source, name_of


def _patches(codes: np.ndarray, present: Sequence[int]) -> np.ndarray:
    """Connected patches of one class (4-neighbour): ids 1..n, 0 where unlabelled."""
    from scipy import ndimage

    out = np.zeros(codes.shape, np.int64)
    n = 0
    for code in present:
        lab, k = ndimage.label(codes == code)
        out[lab > 0] = lab[lab > 0] + n
        n += k
    return out
