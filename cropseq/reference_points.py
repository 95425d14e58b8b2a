"""Reference points that score a map, made from what a run already has.

Two ways to a labelled point set for ``cropseq assess`` / ``cropseq evaluate --map``:

- :func:`samples_points`: a samples table (long: one row per sample and date) as one point
  per sample (``x``, ``y`` in the stack's CRS, ``label``): the held-out test samples become
  the map's reference where the scene has no truth raster (``cropseq samples-to-points``);
- :func:`label_points`: sample-design points (``cropseq sample-design``) with their empty
  ``reference`` column filled from a raster that knows every pixel's class, such as a
  simulated scene's ``truth.tif``: the analyst's part, automated (``cropseq label-points``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cropseq.atomic import atomic_path, check_writable, register_input
from cropseq.errors import CropseqError

__all__ = ["POINT_COLUMNS", "check_samples_points_path", "label_points", "samples_points", "write_samples_points"]

#: Columns of :func:`samples_points`, in order (those the table has).
POINT_COLUMNS = ("sample_id", "x", "y", "label", "group")


def samples_points(df: pd.DataFrame, where: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """One row per sample of a samples table: its id, place and class.

    Args:
        df: A samples table (:func:`cropseq.samples.read_samples`), one row per sample and date.
        where: The table's path, for error messages.

    Returns:
        The first row of each sample, reduced to :data:`POINT_COLUMNS` (``x``, ``y`` in the
        stack's CRS).

    Raises:
        CropseqError: the table has no ``x``/``y`` column (it cannot be placed).
    """
    missing = [c for c in ("x", "y") if c not in df.columns]
    if missing:
        raise CropseqError(f"the samples table has no {', '.join(missing)} column: cannot place its samples", where)
    keep = [c for c in POINT_COLUMNS if c in df.columns]
    return df.drop_duplicates("sample_id")[keep].reset_index(drop=True)


def check_samples_points_path(out: str | os.PathLike[str]) -> Path:
    """Check, before any work, that ``out`` is a ``.csv`` file that can be created.

    Raises:
        CropseqError: another suffix, or an unwritable folder.
    """
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise CropseqError("sample points go to a .csv file (x, y in the stack's CRS)", out)
    return check_writable(out)


def write_samples_points(points: pd.DataFrame, out: str | os.PathLike[str]) -> Path:
    """Write :func:`samples_points` atomically as CSV (``x, y`` in the stack's CRS, no CRS stored).

    Raises:
        CropseqError: ``out`` is not a ``.csv`` file, or cannot be written.
    """
    out = check_samples_points_path(out)
    with atomic_path(out) as tmp:
        points.to_csv(tmp, index=False)
    return out


def _read_points(path: Path, crs: Any) -> Any:
    """Points of a ``.csv`` (``x``, ``y`` taken to be in ``crs``) or a vector file (its own CRS)."""
    import geopandas as gpd

    try:
        if path.suffix.lower() == ".csv":
            table = pd.read_csv(path)
            if not {"x", "y"} <= set(table.columns):
                raise CropseqError("a CSV of points needs x and y columns", path)
            return gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(table["x"], table["y"]), crs=crs)
        gdf = gpd.read_file(path, engine="pyogrio")
    except CropseqError:
        raise
    except Exception as e:  # pandas/pyogrio read errors come in many types
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CropseqError(f"cannot read points ({first})", path) from None
    if len(gdf) and not (gdf.geometry.geom_type == "Point").all():
        raise CropseqError("not points: every feature must be a point (one per sample)", path)
    return gdf


def _codes_at(src: Any, gdf: Any, points: Path) -> np.ndarray:
    """The raster's band-1 value under each point; a point off the raster is an error."""
    if gdf.crs is not None and src.crs is not None and gdf.crs != src.crs:
        gdf = gdf.to_crs(src.crs)
    xs, ys = gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy()
    inv = ~src.transform
    cols = np.floor(inv.a * xs + inv.b * ys + inv.c)
    rows = np.floor(inv.d * xs + inv.e * ys + inv.f)
    inside = np.isfinite(rows) & np.isfinite(cols)  # NaN comparisons are False: test them first
    outside = ~inside | (rows < 0) | (rows >= src.height) | (cols < 0) | (cols >= src.width)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise CropseqError(f"point in row {i} lies outside the reference raster ({int(outside.sum())} in all)", points)
    return np.fromiter((v[0] for v in src.sample(zip(xs, ys, strict=True), indexes=1)), dtype=np.int64, count=len(gdf))


def label_points(
    points: str | os.PathLike[str], reference: str | os.PathLike[str], column: str = "reference"
) -> Any:
    """Fill the points' ``column`` with the class name of the reference raster under each.

    Args:
        points: Points to label (``.gpkg``/``.geojson``, or ``.csv`` with ``x``, ``y`` in
            the raster's CRS), e.g. from ``cropseq sample-design``.
        reference: A categorical raster whose codes are named
            (:func:`cropseq.raster_metadata.raster_class_names`), e.g. a simulated ``truth.tif``.
        column: The column to fill (created or overwritten).

    Returns:
        The points (a GeoDataFrame in their own CRS) with ``column`` filled.

    Raises:
        CropseqError: unreadable points or raster, a feature that is not a point, a point
            off the raster, a raster without class names, or a point on an unnamed code
            (nodata included).
    """
    import rasterio

    from cropseq.raster_metadata import raster_class_names

    points, reference = Path(points), Path(reference)
    for path, what in ((points, "points"), (reference, "reference raster")):
        if not path.is_file():
            raise CropseqError(f"{what} not found", path)
        register_input(path, what=what)  # an output may not replace it
    try:
        src = rasterio.open(reference)
    except rasterio.errors.RasterioError as e:
        raise CropseqError(f"cannot read the reference raster ({str(e).splitlines()[0]})", reference) from None
    with src:
        names = raster_class_names(reference)
        if not names:
            raise CropseqError("the reference raster names no classes (no class table, categories, .qml)", reference)
        gdf = _read_points(points, src.crs)
        codes = _codes_at(src, gdf, points)
    unnamed = ~np.isin(codes, list(names))
    if unnamed.any():
        i, unknown = int(np.flatnonzero(unnamed)[0]), sorted(set(codes[unnamed].tolist()))
        raise CropseqError(
            f"{int(unnamed.sum())} point(s) fall on code(s) {unknown} that name no class (0 = nodata; first: "
            f"point in row {i} of {points.name})", reference,
        )  # fmt: skip
    gdf[column] = [names[c] for c in codes]
    return gdf
