"""Parcel-level (object-based) crop maps: one class per field, as sits' ``sits_segment``.

A per-pixel map is summarised over parcels, which come from

- any polygon layer (the labels' field polygons, a cadastre / LPIS GeoPackage or Shapefile),
  read into the map's CRS; or
- segments of the image itself (:func:`segment_stack`): scikit-image's SLIC or Felzenszwalb
  on a per-band median composite over the dates of a few bands of the stack, computed tile
  by tile (tiles of :data:`SEGMENT_TILE` px, so memory stays flat; a segment never crosses a
  tile border) and turned into polygons with ``rasterio.features.shapes``.

:func:`summarise_parcels` then reads the map (and, when given, the class-probability Zarr of
``cropseq predict --probabilities-zarr``) window by window. Each window's parcels are burnt
with ``rasterio.features.rasterize`` (only the parcels whose bounds meet the window, found
with the layer's spatial index; where parcels overlap, the later one wins) and per-parcel
counts are added up with ``numpy.bincount`` over the parcel ids present in the window. So
memory is one window plus ``O(parcels x classes)`` accumulators, never the scene.

Per parcel: the majority class (code, name), its share of the parcel's classified pixels,
the classified (valid) pixel count, and the mean probability of each class (with
probabilities). :func:`write_parcels` writes that table as a GeoPackage and the parcel map
as a crop-map COG with the class map's metadata (colour table, categories, RAT, ``.qml``),
through :class:`cropseq.outputs.CropMapWriter`.

:func:`score_parcels` measures the parcel map where a reference exists: the share of
reference parcels whose majority class is right (with a 95 % Wilson interval), from a
reference column of the parcels (optionally only the test split's fields) or from a truth
raster (each parcel's reference = the majority of its truth pixels).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cropseq.atomic import atomic_path, check_writable, register_input
from cropseq.classes import NODATA_CODE, ClassTable
from cropseq.errors import CropseqError
from cropseq.raster_metadata import raster_class_names, read_class_table

#: Edge of the windows the map is summarised in (pixels).
WINDOW = 1024
#: Edge of the tiles segmented one at a time (pixels); segments stop at tile borders.
SEGMENT_TILE = 2048
#: Segmentation methods of :func:`segment_stack`.
SEGMENT_METHODS = ("slic", "felzenszwalb")
#: Felzenszwalb's ``scale`` (larger: bigger segments) on the 2-98 % stretched composite.
FELZENSZWALB_SCALE = 100.0
#: Band names tried, in order, for composites (visible + NIR + SWIR cover most contrasts).
_PREFERRED_BANDS = (("B04", "red"), ("B08", "nir"), ("B11", "swir16", "mir", "swir"), ("B03", "green"), ("B02", "blue"))


# --------------------------------------------------------------------------- composites
def pick_bands(names: Sequence[str], wanted: Sequence[Sequence[str]] = _PREFERRED_BANDS, n: int = 3) -> list[str]:
    """Up to ``n`` band names of ``names``, one per group of ``wanted``.

    For each group the first present (case-insensitive), in that order; the first bands of the
    stack when none is present.
    """
    lower = {str(b).lower(): str(b) for b in names}
    out: list[str] = []
    for group in wanted:
        hit = next((lower[g.lower()] for g in group if g.lower() in lower), None)
        if hit is not None and hit not in out:
            out.append(hit)
        if len(out) == n:
            break
    return out if len(out) == n or len(out) == len(lower) else [str(b) for b in list(names)[:n]]


def read_bands(cube: Any, bands: Sequence[str], window: tuple[int, int, int, int] | None = None,
               step: int = 1) -> np.ndarray:
    """``(time, len(bands), h, w)`` float32 values of ``bands`` of a cube (NaN = missing).

    Args:
        cube: A cube from :func:`cropseq.io.open_stack`.
        bands: Band names.
        window: ``(row0, col0, height, width)``; the whole grid when None.
        step: Keep every ``step``-th row and column (previews of big scenes: memory is
            the decimated result, the chunks are read one by one).
    """
    r0, c0, h, w = window if window is not None else (0, 0, cube.sizes["y"], cube.sizes["x"])
    sub = cube.sel(band=list(bands)).isel(y=slice(r0, r0 + h, step), x=slice(c0, c0 + w, step))
    return np.asarray(sub.values, np.float32)


def median_composite(cube: Any, bands: Sequence[str], window: tuple[int, int, int, int] | None = None,
                     step: int = 1, values: np.ndarray | None = None) -> np.ndarray:
    """Per-band median over the dates (missing values ignored) of ``bands`` of a cube.

    Args:
        cube: A cube from :func:`cropseq.io.open_stack`.
        bands: Band names.
        window: ``(row0, col0, height, width)``; the whole grid when None.
        step: Keep every ``step``-th row and column.
        values: Already read :func:`read_bands` output (then nothing is read).

    Returns:
        ``(len(bands), h, w)`` float32; NaN where a pixel has no valid observation.
    """
    import warnings

    values = read_bands(cube, bands, window, step) if values is None else values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: NaN is the answer
        return np.nanmedian(values, axis=0).astype(np.float32)


def stretch(image: np.ndarray, lo: float = 2.0, hi: float = 98.0) -> np.ndarray:
    """Each band of ``(C, H, W)`` scaled to 0..1 between its ``lo`` and ``hi`` percentiles."""
    out = np.zeros(image.shape, np.float32)
    for i, band in enumerate(image):
        ok = np.isfinite(band)
        if not ok.any():
            continue
        a, b = np.percentile(band[ok], [lo, hi])
        out[i] = np.clip((band - a) / (b - a if b > a else 1.0), 0.0, 1.0)
    return np.where(np.isfinite(image), out, 0.0).astype(np.float32)


# --------------------------------------------------------------------------- segments
def segment_stack(
    stack: str | os.PathLike[str],
    *,
    method: str = "slic",
    bands: Sequence[str] | None = None,
    segment_size: int = 200,
    tile: int = SEGMENT_TILE,
) -> Any:
    """Parcels as segments of the image (scikit-image), one polygon per segment.

    Args:
        stack: A stack (``stack.yaml``, its folder, a tile store) read with ``open_stack``.
        method: ``slic`` (compact, near-regular segments) or ``felzenszwalb`` (graph-based,
            follows edges; segments vary in size).
        bands: Bands of the composite; default three of red, NIR, SWIR, green, blue
            (by name), else the first three bands.
        segment_size: Target mean segment area in pixels (SLIC's ``n_segments`` = valid
            pixels / size; Felzenszwalb's ``min_size`` = size / 4, its ``scale``
            :data:`FELZENSZWALB_SCALE` on the 0..1 stretched composite).
        tile: Tiles of this edge are segmented one at a time (flat memory).

    Returns:
        A GeoDataFrame (``parcel_id`` 1..N, geometry) in the stack's CRS.

    Raises:
        CropseqError: unknown method or band, or a segment size below 4 pixels.
    """
    import geopandas as gpd
    from rasterio import features
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform
    from shapely.geometry import shape

    from cropseq.io import cube_crs, open_stack

    if method not in SEGMENT_METHODS:
        raise CropseqError(f"unknown segmentation {method!r} (choose {' or '.join(SEGMENT_METHODS)})")
    if segment_size < 4:
        raise CropseqError(f"the segment size must be at least 4 pixels (got {segment_size})")
    cube = open_stack(stack)
    names = [str(b) for b in cube["band"].values]
    use = list(bands) if bands else pick_bands(names)
    unknown = [b for b in use if b not in names]
    if unknown:
        raise CropseqError(f"unknown band(s) {', '.join(unknown)} (stack bands: {', '.join(names)})", stack)
    transform, crs = cube.rio.transform(), cube_crs(cube)
    height, width = cube.sizes["y"], cube.sizes["x"]
    ids: list[int] = []
    geoms: list[Any] = []
    offset = 0
    for r0 in range(0, height, tile):
        for c0 in range(0, width, tile):
            h, w = min(tile, height - r0), min(tile, width - c0)
            image = median_composite(cube, use, (r0, c0, h, w))
            labels = _segment(stretch(image), np.isfinite(image).all(axis=0), method, segment_size)
            labels = np.where(labels > 0, labels + offset, 0).astype(np.int32)
            offset = max(offset, int(labels.max()))
            wt = window_transform(Window(c0, r0, w, h), transform)
            for geom, value in features.shapes(labels, mask=labels > 0, transform=wt):
                ids.append(int(value))
                geoms.append(geom)
    if not ids:
        raise CropseqError("no segment: the stack has no pixel with a valid observation", stack)
    gdf = gpd.GeoDataFrame({"segment": ids}, geometry=[shape(g) for g in geoms], crs=crs)
    gdf = gdf.dissolve(by="segment", as_index=False)  # a segment split in parts: one feature
    gdf["parcel_id"] = np.arange(1, len(gdf) + 1, dtype=np.int64)
    return gdf[["parcel_id", "geometry"]]


def _segment(image: np.ndarray, valid: np.ndarray, method: str, size: int) -> np.ndarray:
    """Segment labels 1..n of a ``(C, H, W)`` 0..1 image (0 = invalid pixel)."""
    from skimage import segmentation

    rgb = np.moveaxis(image, 0, -1)
    if not valid.any():
        return np.zeros(valid.shape, np.int32)
    if method == "slic":
        n = max(1, int(valid.sum() // size))
        # SLICO (slic_zero): the compactness adapts per segment, so no scale of the
        # reflectances needs tuning (on the demo ~0.9 of a segment's pixels share one class).
        labels = segmentation.slic(rgb, n_segments=n, slic_zero=True, channel_axis=-1, start_label=1,
                                   mask=valid, enforce_connectivity=True)
    else:
        labels = segmentation.felzenszwalb(rgb, scale=FELZENSZWALB_SCALE, sigma=0.5, min_size=max(1, size // 4),
                                           channel_axis=-1) + 1
    return np.where(valid, labels, 0).astype(np.int32)


# --------------------------------------------------------------------------- parcels
def read_parcels(path: str | os.PathLike[str], crs: Any, id_column: str | None = None) -> Any:
    """Polygons of a vector layer as parcels in ``crs`` (points and empty rows refused).

    Returns:
        A GeoDataFrame with ``parcel_id`` (1..N, file order), the id column when given
        (renamed to its own name, kept as is) and the geometry.

    Raises:
        CropseqError: missing/unreadable file, no CRS, no polygon, unknown id column.
    """
    import geopandas as gpd

    from cropseq.labels import _find_column, _one_line

    path = Path(path)
    if not path.exists():
        raise CropseqError("parcels file not found", path)
    register_input(path, what="parcels file")
    try:
        gdf = gpd.read_file(path)
    except Exception as e:  # pyogrio DataSourceError and friends
        raise CropseqError(f"cannot read vector file ({_one_line(e)})", path) from None
    if gdf.crs is None:
        raise CropseqError("vector file has no CRS; set one (e.g. with ogr2ogr -a_srs)", path)
    keep = gdf.geometry.notna() & ~gdf.geometry.is_empty & gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])
    if not keep.any():
        raise CropseqError("no polygon in the file (parcels are field polygons)", path)
    gdf = gdf[keep].reset_index(drop=True)
    out = gpd.GeoDataFrame({"parcel_id": np.arange(1, len(gdf) + 1, dtype=np.int64)}, geometry=gdf.geometry.values,
                           crs=gdf.crs)
    if id_column is not None:
        col = _find_column(list(map(str, gdf.columns)), id_column)
        if col is None:
            raise CropseqError(f"no id column {id_column!r} (columns: {', '.join(map(str, gdf.columns))})", path)
        out[col] = gdf[col].to_numpy()
    extra = [c for c in gdf.columns if c not in ("geometry", *out.columns)]
    out = pd.concat([out, gdf[extra]], axis=1) if extra else out
    try:
        return out.to_crs(crs) if crs is not None else out
    except Exception as e:  # pyproj CRSError and friends
        raise CropseqError(f"cannot reproject the parcels to the map's CRS ({_one_line(e)})", path) from None


@dataclass
class ParcelStats:
    """Per-parcel accumulators (row = parcel id; row 0 = outside every parcel).

    Attributes:
        classes: The map's class table (column order of ``counts`` and ``prob_sum``).
        counts: ``(N + 1, K)`` classified pixels per class.
        prob_sum: ``(N + 1, K)`` summed probabilities, or None without probabilities.
        prob_n: ``(N + 1,)`` pixels with probabilities, or None.
        truth: ``(N + 1, R)`` truth-raster pixels per reference class, or None.
        truth_names: Names of the reference classes (columns of ``truth``).
    """

    classes: ClassTable
    counts: np.ndarray
    prob_sum: np.ndarray | None = None
    prob_n: np.ndarray | None = None
    truth: np.ndarray | None = None
    truth_names: tuple[str, ...] = ()

    @property
    def valid(self) -> np.ndarray:
        """Classified pixels of each parcel."""
        return self.counts.sum(axis=1)

    def majority(self) -> tuple[np.ndarray, np.ndarray]:
        """``(code, share)`` of each parcel's majority class (code 0, share NaN: no pixel)."""
        codes = np.asarray(self.classes.codes, np.int64)
        idx = self.counts.argmax(axis=1)  # ties: the lower code, deterministically
        n = self.valid
        with np.errstate(invalid="ignore", divide="ignore"):
            share = self.counts[np.arange(len(idx)), idx] / n
        return np.where(n > 0, codes[idx], NODATA_CODE), np.where(n > 0, share, np.nan)


def windows(height: int, width: int, size: int = WINDOW) -> Iterator[tuple[int, int, int, int]]:
    """``(row0, col0, h, w)`` windows of ``size`` covering a grid, row-major."""
    for r0 in range(0, height, size):
        for c0 in range(0, width, size):
            yield r0, c0, min(size, height - r0), min(size, width - c0)


def burn(parcels: Any, transform: Any, window: tuple[int, int, int, int]) -> np.ndarray:
    """``(h, w)`` int64 parcel ids of one window (0 = no parcel; pixel centres inside)."""
    from rasterio import features
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform
    from shapely.geometry import box

    r0, c0, h, w = window
    wt = window_transform(Window(c0, r0, w, h), transform)
    x0, y0 = wt @ (0, 0)
    x1, y1 = wt @ (w, h)
    hits = parcels.sindex.query(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    if len(hits) == 0:
        return np.zeros((h, w), np.int64)
    hits = np.sort(hits)  # file order: a later parcel wins where parcels overlap
    shapes = zip(parcels.geometry.values[hits], parcels["parcel_id"].to_numpy()[hits], strict=True)
    return features.rasterize(shapes, out_shape=(h, w), transform=wt, fill=0, dtype="int32").astype(np.int64)


def _add(acc: np.ndarray, ids: np.ndarray, cols: np.ndarray, weights: np.ndarray | None = None) -> None:
    """``acc[ids, cols] += weights`` (1 each) via bincount over the ids present only."""
    uniq, local = np.unique(ids, return_inverse=True)
    k = acc.shape[1]
    sums = np.bincount(local * k + cols, weights=weights, minlength=uniq.size * k).reshape(uniq.size, k)
    acc[uniq] += sums.astype(acc.dtype)


def _add_probabilities(stats: ParcelStats, ids: np.ndarray, inside: np.ndarray, p: np.ndarray) -> None:
    """Add one window's ``(K, h, w)`` probabilities to the parcels' sums (finite pixels only)."""
    assert stats.prob_sum is not None and stats.prob_n is not None
    ok = inside & np.isfinite(p).all(axis=0)
    if not ok.any():
        return
    uniq, local = np.unique(ids[ok], return_inverse=True)
    stats.prob_n[uniq] += np.bincount(local, minlength=uniq.size)
    for k in range(p.shape[0]):
        stats.prob_sum[uniq, k] += np.bincount(local, weights=p[k][ok], minlength=uniq.size)


def summarise_parcels(
    map_path: str | os.PathLike[str],
    parcels: Any,
    *,
    probabilities_zarr: str | os.PathLike[str] | None = None,
    truth: str | os.PathLike[str] | None = None,
    window: int = WINDOW,
) -> ParcelStats:
    """Per-parcel class counts (and mean probabilities, truth counts) of a crop map.

    Args:
        map_path: A crop map written by cropseq (class table in its metadata).
        parcels: GeoDataFrame with ``parcel_id`` 1..N in the map's CRS.
        probabilities_zarr: ``predict --probabilities-zarr`` output on the map's grid.
        truth: A class raster on the map's grid (codes named by its own metadata, else the
            map's); each parcel's truth pixels are counted per class name.
        window: Window edge in pixels (memory: one window of each input).

    Raises:
        CropseqError: unreadable inputs, or probabilities/truth on another grid.
    """
    import rasterio
    from rasterio.windows import Window

    map_path = Path(map_path)
    classes = read_class_table(map_path)
    lut = np.full(256, -1, np.int64)
    lut[np.asarray(classes.codes)] = np.arange(len(classes))
    n = int(parcels["parcel_id"].max()) + 1 if len(parcels) else 1
    stats = ParcelStats(classes, np.zeros((n, len(classes)), np.int64))
    with rasterio.open(map_path) as src:
        probs = _open_probabilities(probabilities_zarr, src, classes) if probabilities_zarr is not None else None
        if probs is not None:
            stats.prob_sum, stats.prob_n = np.zeros((n, len(classes))), np.zeros(n, np.int64)
        tsrc, tlut = _open_truth(truth, src, classes) if truth is not None else (None, {})
        if tsrc is not None:
            stats.truth_names = tuple(dict.fromkeys(v for v in tlut.values()))
            stats.truth = truth_counts = np.zeros((n, len(stats.truth_names)), np.int64)
            # The truth column of each code 0..255 (-1: no reference class), the same in every window.
            col = np.array([stats.truth_names.index(tlut[v]) if v in tlut else -1 for v in range(256)])
        try:
            for win in windows(src.height, src.width, window):
                r0, c0, h, w = win
                ids = burn(parcels, src.transform, win)
                inside = ids > 0
                if not inside.any():
                    continue
                cls = lut[src.read(1, window=Window(c0, r0, w, h))]
                ok = inside & (cls >= 0)
                _add(stats.counts, ids[ok], cls[ok])
                if probs is not None:
                    _add_probabilities(stats, ids, inside, np.asarray(probs[:, r0 : r0 + h, c0 : c0 + w], np.float64))
                if tsrc is not None:
                    t = tsrc.read(1, window=Window(c0, r0, w, h))
                    tc = col[t.astype(np.int64)]
                    okt = inside & (tc >= 0)
                    _add(truth_counts, ids[okt], tc[okt])
        finally:
            if tsrc is not None:
                tsrc.close()
    return stats


def _open_probabilities(path: str | os.PathLike[str], src: Any, classes: ClassTable) -> Any:
    """The probabilities array of a ``predict --probabilities-zarr`` store, checked against the map."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise CropseqError("probabilities Zarr not found", path)
    register_input(path, what="probabilities Zarr")
    try:
        da = xr.open_zarr(path)["probabilities"]
    except Exception as e:  # zarr/xarray errors: not a store, no variable
        raise CropseqError(f"not a cropseq probabilities Zarr ({str(e).splitlines()[0]})", path) from None
    if (da.sizes.get("y"), da.sizes.get("x")) != (src.height, src.width):
        raise CropseqError(f"probabilities grid {da.sizes.get('x')} x {da.sizes.get('y')} px differs from the map's "
                           f"{src.width} x {src.height} px", path)
    codes = [int(c) for c in da["class"].values]
    if codes != list(classes.codes):
        raise CropseqError(f"probability classes {codes} differ from the map's {list(classes.codes)}", path)
    return da.data  # dask array: windows are read lazily


def _open_truth(path: str | os.PathLike[str], src: Any, classes: ClassTable) -> tuple[Any, dict[int, str]]:
    """An open truth raster on the map's grid and its ``{code: class name}``."""
    from cropseq.evaluation import open_truth_raster

    path = Path(path)
    t = open_truth_raster(path, src)
    names = raster_class_names(path) or {c.code: c.name for c in classes.classes}
    if t.nodata is not None:
        names.pop(int(t.nodata), None)
    return t, names


# --------------------------------------------------------------------------- outputs
def parcel_table(parcels: Any, stats: ParcelStats) -> Any:
    """The GeoPackage rows of the parcels.

    Columns: ``parcel_id`` (and the layer's id column), ``class_code``, ``class_name``,
    ``majority_share``, ``valid_pixels``, ``prob_<class>`` (with probabilities),
    ``reference``/``correct`` (see :func:`score_parcels`), geometry.
    """
    ids = parcels["parcel_id"].to_numpy()
    code, share = stats.majority()
    names = {c.code: c.name for c in stats.classes.classes}
    out = parcels[[c for c in parcels.columns if c != "geometry"]].copy()
    out["class_code"] = code[ids].astype(np.int64)
    out["class_name"] = [names.get(int(c), "") for c in code[ids]]
    out["majority_share"] = np.round(share[ids], 6)
    out["valid_pixels"] = stats.valid[ids].astype(np.int64)
    if stats.prob_sum is not None and stats.prob_n is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = stats.prob_sum / stats.prob_n[:, None]
        for k, c in enumerate(stats.classes.classes):
            out[f"prob_{c.name}"] = np.round(mean[ids, k], 6)
    import geopandas as gpd

    return gpd.GeoDataFrame(out, geometry=parcels.geometry.values, crs=parcels.crs)


def write_parcels(
    table: Any,
    parcels: Any,
    map_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    raster: str | os.PathLike[str] | None,
    window: int = WINDOW,
) -> tuple[Path, Path | None]:
    """Write the parcel table (GeoPackage, atomically) and the parcel map COG.

    The parcel map is the map's grid with each parcel's pixels set to its majority class
    (0 outside parcels): a crop map with the class map's colours, names, categories, RAT
    and ``.qml`` (:class:`cropseq.outputs.CropMapWriter`), burnt window by window.
    """
    import rasterio

    from cropseq.outputs import CropMapWriter, Grid, sidecar_paths

    out = Path(out)
    with atomic_path(out) as tmp:
        try:
            table.to_file(tmp, layer=out.stem, driver="GPKG")
        except Exception as e:  # pyogrio DataSourceError and friends
            raise CropseqError(f"cannot write the parcels ({str(e).splitlines()[0]})", out) from None
    if raster is None:
        return out, None
    raster = Path(raster)
    classes = read_class_table(map_path)
    lut = np.zeros(int(parcels["parcel_id"].max()) + 1 if len(parcels) else 1, np.uint8)
    lut[parcels["parcel_id"].to_numpy()] = table["class_code"].to_numpy().astype(np.uint8)
    with rasterio.open(map_path) as src:
        grid = Grid(src.width, src.height, src.transform, src.crs)
    with CropMapWriter(raster, grid, classes, qml=sidecar_paths(raster)["qml"]) as writer:
        for win in windows(grid.height, grid.width, window):
            writer.write_block(win[0], win[1], lut[burn(parcels, grid.transform, win)])
    return out, raster


def check_outputs(out: str | os.PathLike[str], raster: str | os.PathLike[str] | None) -> None:
    """Before any work: the table is a ``.gpkg``, the raster a ``.tif``, both writable."""
    if Path(out).suffix.lower() != ".gpkg":
        raise CropseqError("the parcel table goes to a .gpkg (GeoPackage) file", out)
    check_writable(out)
    if raster is not None:
        if Path(raster).suffix.lower() not in (".tif", ".tiff"):
            raise CropseqError("the parcel map goes to a .tif (COG) file", raster)
        check_writable(raster)


# --------------------------------------------------------------------------- scoring
def score_parcels(table: Any, reference: pd.Series, *, source: str) -> dict[str, Any]:
    """Share of reference parcels whose majority class is right.

    Args:
        table: From :func:`parcel_table` (``class_name``, ``valid_pixels``); gets the
            ``reference`` and ``correct`` columns (None / missing where unscored).
        reference: True class name per row of ``table`` (None/NaN = not scored).
        source: What the reference is (shown in the JSON).

    Returns:
        JSON-ready ``{n_parcels, scored, right, share_right, ci95, unclassified, per_class,
        reference}``; a reference parcel without a classified pixel counts as wrong.
    """
    from cropseq.accuracy import wilson_interval

    ref = reference.where(reference.notna(), None)
    scored = ref.notna().to_numpy()
    right = scored & (table["class_name"].to_numpy() == ref.to_numpy())
    table["reference"] = ref.to_numpy()
    table["correct"] = pd.array([bool(r) if s else None for r, s in zip(right, scored, strict=True)], dtype="boolean")
    n, k = int(scored.sum()), int(right.sum())
    per_class = {}
    for name in sorted({str(r) for r in ref[scored]}):
        m = scored & (ref.to_numpy() == name)
        per_class[name] = {"fields": int(m.sum()), "right": int((m & right).sum()),
                           "share_right": round(float((m & right).sum() / m.sum()), 6)}
    return {
        "n_parcels": int(len(table)),
        "scored": n,
        "right": k,
        "share_right": round(k / n, 6) if n else None,
        "ci95": [round(v, 6) for v in wilson_interval(k, n)] if n else None,
        "unclassified": int((scored & (table["valid_pixels"].to_numpy() == 0)).sum()),
        "per_class": per_class,
        "reference": source,
    }


def reference_from_truth(stats: ParcelStats, parcels: Any) -> pd.Series:
    """Each parcel's reference class: the majority of its truth pixels (None: no truth pixel)."""
    assert stats.truth is not None
    rows = stats.truth[parcels["parcel_id"].to_numpy()]
    names = np.asarray(stats.truth_names, dtype=object)
    best = names[rows.argmax(axis=1)] if len(stats.truth_names) else np.full(len(rows), None, dtype=object)
    best[rows.sum(axis=1) == 0] = None  # no truth pixel (``best`` is a copy: fancy indexing)
    return pd.Series(best, index=parcels.index, dtype=object)


def reference_from_column(parcels: Any, column: str, where: Path, *, test_groups: set[str] | None = None,
                          id_column: str | None = None) -> pd.Series:
    """Each parcel's reference class from one of its columns (e.g. the labels' ``label``).

    Only for the parcels whose id is in ``test_groups`` when given.
    """
    from cropseq.labels import _find_column

    col = _find_column(list(map(str, parcels.columns)), column)
    if col is None:
        raise CropseqError(f"no reference column {column!r} in the parcels (columns: "
                           f"{', '.join(c for c in parcels.columns if c != 'geometry')})", where)
    ref = parcels[col].astype(object).where(parcels[col].notna(), None)
    if test_groups is not None:
        ids = parcels[id_column] if id_column is not None else parcels["parcel_id"] - 1
        ids = ids.astype(np.int64).astype(str) if pd.api.types.is_float_dtype(ids) else ids.astype(str)
        ref = ref.where(ids.isin(test_groups), None)
    return ref.map(lambda v: None if v is None else str(v))


def split_groups(samples: str | os.PathLike[str]) -> set[str]:
    """Field ids (``group`` column) of a samples table, e.g. the test split of ``cropseq split``.

    Only that column is read (CSV or Parquet).
    """
    path = Path(samples)
    if not path.is_file():
        raise CropseqError("samples table not found", path)
    register_input(path, what="samples table")
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path, columns=["group"])
        else:
            df = pd.read_csv(path, usecols=["group"], dtype=str)
    except (ValueError, KeyError, OSError) as e:
        raise CropseqError(f"cannot read the group column (field ids) of the samples table ({str(e).splitlines()[0]})",
                           path) from None
    return set(df["group"].dropna().astype(str).unique())


__all__ = [
    "ParcelStats",
    "SEGMENT_METHODS",
    "burn",
    "check_outputs",
    "median_composite",
    "parcel_table",
    "pick_bands",
    "read_bands",
    "read_parcels",
    "reference_from_column",
    "reference_from_truth",
    "score_parcels",
    "segment_stack",
    "stretch",
    "summarise_parcels",
    "split_groups",
    "windows",
    "write_parcels",
]
