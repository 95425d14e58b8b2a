"""The target grid of a cube, and reading any raster *onto* it.

One job: decide the grid every input is read onto (the manifest's ``grid:`` key, else the
finest band's grid of the first date) and read a window of that grid from a raster on any
grid, with GDAL's warper (rasterio ``WarpedVRT``), never hand-written resampling.

Reads stay windowed: a ``WarpedVRT`` spans the whole target grid, and reading a window of it
warps only that window, so each Dask chunk (with its halo) reads just what it needs.
The warper runs with a negligible approximation error (:data:`TOLERANCE` pixels, not GDAL's
default 0.125 of a piecewise-linear approximation over the requested window), so a pixel's
value does not depend on the chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling

from cropseq.errors import CropseqError, reject_unknown_keys
from cropseq.remote import Source

__all__ = ["GridSpec", "RESAMPLING", "TOLERANCE", "TargetGrid", "WarpRead", "default_resampling", "native_resolution", "parse_grid_spec", "resolve_grid"]

_GRID_KEYS = {"crs", "resolution", "bounds", "bbox"}
#: Resampling methods a manifest may name per band (``resampling: {LC: nearest}``).
RESAMPLING = {"nearest", "bilinear", "cubic", "average", "mode"}
#: Warper approximation error, in pixels. Not 0: rasterio's WarpedVRT then builds no
#: transformer at all (GDAL "pfnTransformer is NULL").
TOLERANCE = 1e-6


@dataclass(frozen=True)
class GridSpec:
    """The manifest's ``grid:`` (or the CLI's) request; every field optional.

    Attributes:
        crs: The CRS to reproject to (any string rasterio reads), None = the reference's.
        resolution: ``(xres, yres)`` in CRS units (positive), None = the finest band's.
        bounds: ``(left, bottom, right, top)`` in ``crs`` units, None = the reference's.
        bbox: ``(west, south, east, north)`` in WGS84 degrees (instead of ``bounds``).
    """

    crs: str | None = None
    resolution: tuple[float, float] | None = None
    bounds: tuple[float, float, float, float] | None = None
    bbox: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class TargetGrid:
    """A pixel grid: CRS (None: pixel coordinates), affine transform, ``(rows, cols)``."""

    crs: CRS | None
    transform: Affine
    shape: tuple[int, int]

    def matches(self, crs: CRS | None, transform: Affine, shape: tuple[int, int]) -> bool:
        """Whether a raster with this georeferencing already *is* this grid (read directly)."""
        if shape != self.shape or (crs is None) != (self.crs is None) or (crs is not None and crs != self.crs):
            return False
        tol = 1e-6 * max(abs(self.transform.a), abs(self.transform.e), 1e-12)
        return bool(np.allclose(tuple(transform)[:6], tuple(self.transform)[:6], rtol=0, atol=tol))

    @property
    def resolution(self) -> tuple[float, float]:
        """``(xres, yres)``, positive."""
        return abs(float(self.transform.a)), abs(float(self.transform.e))


def _numbers(raw: Any, n: int, key: str, where: Source) -> tuple[float, ...]:
    if not isinstance(raw, list) or len(raw) != n or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in raw):
        raise CropseqError(f"{key} must be a list of {n} numbers, not {raw!r}", where)
    return tuple(float(v) for v in raw)


def parse_grid_spec(raw: Any, where: Source) -> GridSpec:
    """The manifest's ``grid:`` mapping (``{}`` = the default grid, but resample onto it).

    Raises:
        CropseqError: one line naming the manifest: unknown keys, a resolution that is not
            positive, bounds with ``left >= right`` or ``bottom >= top``, both bounds and bbox.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise CropseqError("grid must be a mapping {crs: EPSG:32633, resolution: 10, bounds: [l, b, r, t]}", where)
    reject_unknown_keys(raw, _GRID_KEYS, where, key="grid: unknown key {!r}")
    crs = raw.get("crs")
    if crs is not None and (not isinstance(crs, (str, int)) or isinstance(crs, bool) or not str(crs).strip()):
        raise CropseqError(f"grid.crs must be a CRS string such as EPSG:32633, not {crs!r}", where)
    res = raw.get("resolution")
    resolution = None
    if res is not None:
        vals = (res, res) if isinstance(res, (int, float)) and not isinstance(res, bool) else _numbers(res, 2, "grid.resolution", where)
        resolution = (float(vals[0]), float(vals[1]))
        if not all(v > 0 and math.isfinite(v) for v in resolution):
            raise CropseqError(f"grid.resolution must be positive, not {res!r}", where)
    if raw.get("bounds") is not None and raw.get("bbox") is not None:
        raise CropseqError("grid: give bounds (in the grid's CRS) or bbox (WGS84 degrees), not both", where)
    boxes = {}
    for key in ("bounds", "bbox"):
        if raw.get(key) is not None:
            b = _numbers(raw[key], 4, f"grid.{key}", where)
            if not (b[0] < b[2] and b[1] < b[3]):
                raise CropseqError(f"grid.{key} must be [left, bottom, right, top] with left < right, bottom < top", where)
            boxes[key] = b
    return GridSpec(
        crs=None if crs is None else str(crs).strip(),
        resolution=resolution,
        bounds=boxes.get("bounds"),  # type: ignore[arg-type]
        bbox=boxes.get("bbox"),  # type: ignore[arg-type]
    )


def native_resolution(crs: CRS | None, transform: Affine, shape: tuple[int, int], dst_crs: CRS | None) -> tuple[float, float]:
    """A raster's pixel size expressed in ``dst_crs`` units (GDAL's default warp estimate)."""
    if crs is None or dst_crs is None or crs == dst_crs:
        return abs(float(transform.a)), abs(float(transform.e))
    from rasterio.transform import array_bounds
    from rasterio.warp import calculate_default_transform

    h, w = shape
    t, _, _ = calculate_default_transform(crs, dst_crs, w, h, *array_bounds(h, w, transform))
    return abs(float(t.a)), abs(float(t.e))


def resolve_grid(
    spec: GridSpec, ref_crs: CRS | None, ref_transform: Affine, ref_shape: tuple[int, int], where: Source
) -> TargetGrid:
    """The target grid: ``spec``'s fields, the rest from the reference raster's grid.

    The reference is the finest band of the first date. With no field set, the target *is*
    the reference grid. Explicit bounds are kept as given at the top-left corner and
    extended right/down to whole pixels.

    Raises:
        CropseqError: an unknown CRS; a bbox or bounds without a CRS to put them in.
    """
    crs = ref_crs
    if spec.crs is not None:
        try:
            crs = CRS.from_user_input(spec.crs)
        except Exception as e:  # rasterio raises CRSError; pyproj others
            raise CropseqError(f"grid.crs {spec.crs!r} is not a CRS rasterio knows ({str(e).splitlines()[0]})", where) from None
    if crs is None and (spec.bbox is not None or spec.crs is not None):
        raise CropseqError("grid.bbox needs georeferenced rasters (these have no CRS)", where)
    res = spec.resolution or native_resolution(ref_crs, ref_transform, ref_shape, crs)
    if spec.bounds is not None:
        left, bottom, right, top = spec.bounds
    elif spec.bbox is not None:
        from rasterio.warp import transform_bounds

        left, bottom, right, top = transform_bounds(CRS.from_epsg(4326), crs, *spec.bbox, densify_pts=21)
    elif crs == ref_crs and spec.resolution is None:
        return TargetGrid(crs, ref_transform, ref_shape)
    else:
        from rasterio.transform import array_bounds
        from rasterio.warp import transform_bounds

        h, w = ref_shape
        west, south, east, north = array_bounds(h, w, ref_transform)
        left, bottom, right, top = (
            (west, south, east, north)
            if crs == ref_crs
            else transform_bounds(ref_crs, crs, west, south, east, north, densify_pts=21)
        )
    width = max(1, math.ceil((right - left) / res[0] - 1e-9))
    height = max(1, math.ceil((top - bottom) / res[1] - 1e-9))
    return TargetGrid(crs, Affine(res[0], 0.0, left, 0.0, -res[1], top), (height, width))


def default_resampling(src_res: tuple[float, float], dst_res: tuple[float, float], is_mask: bool) -> str:
    """Nearest for masks; average when the target is coarser than the source, else bilinear."""
    if is_mask:
        return "nearest"
    return "average" if dst_res[0] > src_res[0] * (1 + 1e-6) or dst_res[1] > src_res[1] * (1 + 1e-6) else "bilinear"


@dataclass(frozen=True)
class WarpRead:
    """How a band is read onto the target grid when its raster is on another grid.

    Picklable; :meth:`read` runs inside Dask tasks.

    Attributes:
        grid: The target grid.
        resampling: GDAL resampling name (``bilinear``, ``average``, ``nearest``, ...).
        src_nodata: The source value excluded from resampling (the band's nodata), or None.
        src_crs: CRS assigned to sources (the manifest's ``crs``), None = the file's.
        src_transform: Transform assigned to sources (the manifest's ``transform``).
    """

    grid: TargetGrid
    resampling: str
    src_nodata: float | None = None
    src_crs: CRS | None = None
    src_transform: Affine | None = None

    def on_grid(self, src: Any) -> bool:
        """Whether the open dataset ``src`` is on the target grid already (read directly)."""
        crs = self.src_crs if self.src_crs is not None else src.crs
        transform = self.src_transform if self.src_transform is not None else src.transform
        return self.grid.matches(crs, transform, (src.height, src.width))

    def read(self, src: Any, indexes: list[int], window: Any) -> np.ndarray:
        """Float32 ``(len(indexes), h, w)`` of ``window`` of the target grid.

        NaN where the source has no data (its nodata value, or outside its extent).
        """
        from rasterio.vrt import WarpedVRT

        kwargs: dict[str, Any] = {}
        if self.src_crs is not None:
            kwargs["src_crs"] = self.src_crs
        if self.src_transform is not None:
            kwargs["src_transform"] = self.src_transform
        if self.src_nodata is not None:
            kwargs["src_nodata"] = self.src_nodata
        if self.grid.crs is None or (src.crs is None and self.src_crs is None):
            raise CropseqError(
                "cannot resample a raster without a CRS onto another grid (assign one with crs: in the manifest)",
                src.name,
            )
        h, w = self.grid.shape
        with WarpedVRT(
            src, crs=self.grid.crs, transform=self.grid.transform, width=w, height=h,
            resampling=Resampling[self.resampling], dtype="float32", nodata=np.nan, tolerance=TOLERANCE, **kwargs,
        ) as vrt:  # fmt: skip
            return vrt.read(indexes, window=window)
