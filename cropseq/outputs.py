"""GIS-ready crop-map outputs: COG class map, confidence COG, probabilities, area CSV, QML.

Everything here is written *while* a prediction computes, block by block, so memory is
bounded by the block size and never by the scene size:

1. :class:`CropMapWriter` opens plain tiled GeoTIFFs under hidden ``.part`` names beside the
   outputs and takes blocks (``write_block``) from any thread, under a lock. It counts
   per-class pixels and hectares as blocks arrive, so the area table needs no second pass.
2. When the block loop finished without error, each part file is converted to a
   Cloud-Optimized GeoTIFF with GDAL's COG driver (streaming; overviews are built in a
   temporary file, not in memory) under the atomic temporary name of its final path, and
   all outputs are renamed into place (:func:`cropseq.atomic.atomic_path`). On any error
   nothing is renamed and every temporary file is removed.

Output formats (the crop-map contract of ``docs/ARCHITECTURE.md``):

- **Crop map** ``MAP.tif``: COG, uint8 class codes 1..254, nodata 0, embedded colour table
  (code 0 transparent), MODE overviews (categorical: an overview pixel is the most frequent
  class, never an average of codes), 512 px tiles, DEFLATE. Class names: band description
  ``"crop class"``, band tag ``CLASS_NAMES`` (JSON ``{"code": "name"}``), dataset tag
  ``CROPSEQ_CLASSES`` (JSON records ``{code, name, color}``, what
  :func:`cropseq.raster_metadata.read_class_table` reads back) and a QGIS style sidecar
  ``MAP.qml`` (paletted renderer) that QGIS applies automatically when it opens
  ``MAP.tif``, so the legend shows class names.
- **Confidence** ``MAP.confidence.tif``: COG, float32 in 0..1 (the winning class's
  probability), nodata NaN, AVERAGE overviews, DEFLATE with the floating-point predictor.
  float32 rather than uint8 percent: no quantisation, and NaN is an unambiguous nodata.
- **Probabilities** (optional): COG, float32, one band per class (band description = class
  name, band tag ``CLASS_CODE``), nodata NaN.
- **Area CSV** ``MAP.area.csv``: ``code,name,pixels,hectares,share`` for every class of the
  table (``share`` = fraction of the classified pixels, 0..1). Hectares come from the pixel
  size in the CRS's linear unit converted to metres; for a geographic CRS (degrees) each row
  of pixels gets its area on a spherical Earth (authalic radius), which is approximate
  (within ~0.5 %); :attr:`AreaStats.note` says so and the CLI prints it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from cropseq.atomic import (
    atomic_path,
    check_writable,
    no_space_error,
    register_input,
    remove_path,
    temp_sibling,
)
from cropseq.classes import NODATA_CODE, ClassTable
from cropseq.errors import CropseqError
from cropseq.figures import pyplot, save_png
from cropseq.raster_metadata import (
    CLASSES_TAG,
    CONFIDENCE_RAMP,
    QML_MIN_MAX_ORIGIN,
    UNCERTAINTY_RAMP,
    class_band_items,
    pam_xml,
    ramp_qml,
    read_class_table,
)
from cropseq.uncertainty import MEASURES

#: Tile size of every COG written here.
BLOCKSIZE = 512
#: Earth radius (m) of the sphere with the WGS84 ellipsoid's area; used for geographic CRSs.
AUTHALIC_RADIUS_M = 6_371_007.2

# GDAL must not leave .aux.xml sidecars beside temporary names (they would survive the
# rename under the wrong name); everything we need fits in the TIFF itself.
_GDAL_ENV = {"GDAL_PAM_ENABLED": "NO", "GDAL_NUM_THREADS": "2"}


_LIBTIFF_QUIET = False


def quiet_libtiff() -> None:
    """Stop libtiff's default error handler from printing raw lines on stderr.

    GDAL routes most libtiff errors into its own error handling (and rasterio turns them
    into exceptions), but libtiff's file I/O callbacks report through the global default
    handler, which prints e.g. ``_tiffWriteProc: No space left on device.`` once per failed
    write straight to the terminal. The same failure is raised as an exception anyway, so
    the global handler is unset (once, for the libtiff GDAL loaded; Linux only, else a no-op).
    """
    global _LIBTIFF_QUIET
    if _LIBTIFF_QUIET:
        return
    _LIBTIFF_QUIET = True
    import ctypes

    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            libs = {line.split()[-1] for line in f if "/libtiff" in line and ".so" in line}
    except OSError:
        return
    for lib in libs:
        try:
            tiff = ctypes.CDLL(lib, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_GLOBAL)
            tiff.TIFFSetErrorHandler.restype = ctypes.c_void_p
            tiff.TIFFSetErrorHandler.argtypes = [ctypes.c_void_p]
            tiff.TIFFSetErrorHandler(None)
        except (OSError, AttributeError):
            continue


# --------------------------------------------------------------------------- paths
def sidecar_paths(map_path: str | os.PathLike[str]) -> dict[str, Path]:
    """Default companion paths of a crop map ``DIR/STEM.tif``.

    Returns:
        ``{"confidence": STEM.confidence.tif, "area": STEM.area.csv, "qml": STEM.qml}``,
        all in the map's folder. QGIS picks up ``STEM.qml`` as the map's default style.
    """
    p = Path(map_path)
    return {
        "confidence": p.with_name(f"{p.stem}.confidence.tif"),
        "area": p.with_name(f"{p.stem}.area.csv"),
        "qml": p.with_name(f"{p.stem}.qml"),
    }


# --------------------------------------------------------------------------- metadata
def _aux_path(map_path: Path) -> Path:
    """GDAL's PAM sidecar of a raster: ``MAP.tif.aux.xml`` (categories and RAT live there)."""
    return map_path.with_name(map_path.name + ".aux.xml")


def class_tags(classes: ClassTable) -> tuple[dict[str, str], dict[str, str]]:
    """GeoTIFF tags naming the classes: ``(dataset_tags, band_tags)``."""
    dataset = {CLASSES_TAG: json.dumps(classes.to_records())}
    band = {"CLASS_NAMES": json.dumps({str(c.code): c.name for c in classes.classes})}
    return dataset, band


def colormap(classes: ClassTable) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table: each class's colour, nodata (0) transparent, unused codes black."""
    cmap = {code: (0, 0, 0, 0) for code in range(256)}
    for c in classes.classes:
        cmap[c.code] = classes.rgba(c.code)
    cmap[NODATA_CODE] = (0, 0, 0, 0)
    return cmap


def qml_text(classes: ClassTable) -> str:
    """A QGIS layer style (paletted renderer, one legend entry per class, nodata transparent)."""
    entries = "\n".join(
        f"        <paletteEntry value=\"{c.code}\" color=\"{c.color}\" alpha=\"255\" label={quoteattr(c.name)}/>"
        for c in classes.classes
    )
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28.0" styleCategories="AllStyleCategories">
  <pipe>
    <provider>
      <resampling enabled="false" zoomedInResamplingMethod="nearestNeighbour" zoomedOutResamplingMethod="nearestNeighbour" maxOversampling="2"/>
    </provider>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
{QML_MIN_MAX_ORIGIN}
      <colorPalette>
{entries}
      </colorPalette>
      <colorramp type="randomcolors" name="[source]"/>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0" invertColors="0" colorizeStrength="100" colorizeRed="255" colorizeGreen="128" colorizeBlue="128"/>
    <rasterresampler maxOversampling="2"/>
    <resamplingStage>resamplingFilter</resamplingStage>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def write_qml(path: str | os.PathLike[str], classes: ClassTable) -> Path:
    """Write the QGIS style sidecar for a crop map, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(qml_text(classes), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- area
@dataclass
class AreaStats:
    """Per-class pixel counts and areas of a crop map.

    Attributes:
        classes: The class table (row order of the CSV).
        pixels: ``(256,)`` int64 pixel count per code (index = code; 0 = nodata).
        hectares: ``(256,)`` float64 area per code.
        note: Caveat on the hectares (geographic or unknown CRS), or ``""``.
    """

    classes: ClassTable
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    hectares: np.ndarray = field(default_factory=lambda: np.zeros(256, np.float64))
    note: str = ""

    @property
    def classified(self) -> int:
        """Pixels with a class (code != 0)."""
        return int(self.pixels[1:].sum())

    def rows(self) -> list[dict[str, Any]]:
        """CSV rows ``{code, name, pixels, hectares, share}``, one per class of the table."""
        total = self.classified
        return [
            {
                "code": c.code,
                "name": c.name,
                "pixels": int(self.pixels[c.code]),
                "hectares": round(float(self.hectares[c.code]), 4),
                "share": round(int(self.pixels[c.code]) / total, 6) if total else 0.0,
            }
            for c in self.classes.classes
        ]


class _PixelArea:
    """Pixel area in hectares for each row of a grid (constant unless the CRS is geographic)."""

    def __init__(self, transform: Affine, crs: CRS | None) -> None:
        self.transform = transform
        self.geographic = bool(crs is not None and crs.is_geographic)
        self.note = ""
        if self.geographic:
            self.note = "hectares approximate: geographic CRS, pixel areas on a spherical Earth"
            self.constant = None
            return
        factor = 1.0
        if crs is None:
            self.note = "hectares assume metre pixel sizes: the map has no CRS"
        else:
            try:
                factor = float(crs.linear_units_factor[1])
            except Exception:  # noqa: BLE001 - CRSs without a linear unit: assume metres
                self.note = "hectares assume metre pixel sizes: unknown CRS unit"
        t = transform
        self.constant = abs(t.a * t.e - t.b * t.d) * factor * factor / 10_000.0

    def rows(self, row_off: int, height: int) -> np.ndarray:
        """``(height,)`` float64 hectares of one pixel in rows ``row_off .. row_off+height-1``."""
        if self.constant is not None:
            return np.full(height, self.constant, np.float64)
        t = self.transform
        # Pixel-edge latitudes of each row (north-up grid assumed; rotation ignored).
        r = np.arange(row_off, row_off + height + 1, dtype=np.float64)
        lat = np.clip(t.f + r * t.e, -90.0, 90.0)
        dlon = math.radians(abs(t.a))
        band = np.abs(np.diff(np.sin(np.radians(lat))))
        return AUTHALIC_RADIUS_M**2 * dlon * band / 10_000.0


def write_area_csv(path: str | os.PathLike[str], stats: AreaStats) -> Path:
    """Write ``code,name,pixels,hectares,share`` rows, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["code", "name", "pixels", "hectares", "share"])
        w.writeheader()
        w.writerows(stats.rows())
    return path


def area_stats(map_path: str | os.PathLike[str], classes: ClassTable | None = None) -> AreaStats:
    """Per-class areas of an existing crop map, read block by block."""
    path = Path(map_path)
    register_input(path, what="crop map")
    classes = classes or read_class_table(path)
    with rasterio.open(path) as src:
        area = _PixelArea(src.transform, src.crs)
        stats = AreaStats(classes, note=area.note)
        for _, win in src.block_windows(1):
            block = src.read(1, window=win)
            _accumulate(stats, area, block, int(win.row_off))
    return stats


def _accumulate(stats: AreaStats, area: _PixelArea, cls: np.ndarray, row_off: int) -> None:
    h, w = cls.shape
    flat = cls.ravel()
    stats.pixels += np.bincount(flat, minlength=256)[:256]
    weights = np.repeat(area.rows(row_off, h), w)
    stats.hectares += np.bincount(flat, weights=weights, minlength=256)[:256]


# --------------------------------------------------------------------------- COG
def to_cog(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    categorical: bool,
    compress: str = "DEFLATE",
) -> None:
    """Convert a (tiled) GeoTIFF to a Cloud-Optimized GeoTIFF with GDAL's COG driver.

    The driver streams the data and builds overviews in a temporary file, so memory stays
    bounded. Colour table, nodata, band descriptions and tags are carried over.

    Args:
        src: Source GeoTIFF.
        dst: Destination (written as is: wrap in :func:`~cropseq.atomic.atomic_path`).
        categorical: MODE overviews (class codes) instead of AVERAGE (continuous values).
        compress: ``DEFLATE`` (default; every GIS reads it) or ``ZSTD``/``LZW``.
    """
    opts: dict[str, str] = {
        "COMPRESS": compress.upper(),
        "BLOCKSIZE": str(BLOCKSIZE),
        "OVERVIEW_RESAMPLING": "MODE" if categorical else "AVERAGE",
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "2",
    }
    if not categorical:
        opts["PREDICTOR"] = "YES"  # floating-point predictor: much smaller float rasters
    quiet_libtiff()
    with rasterio.Env(**_GDAL_ENV):
        rasterio.shutil.copy(str(src), str(dst), driver="COG", **opts)


# --------------------------------------------------------------------------- writer
@dataclass(frozen=True)
class Grid:
    """Georeferencing of an output raster."""

    width: int
    height: int
    transform: Affine
    crs: CRS | None


@dataclass
class WrittenOutputs:
    """What :class:`CropMapWriter` wrote."""

    map: Path
    confidence: Path | None = None
    probabilities: Path | None = None
    area: Path | None = None
    qml: Path | None = None
    stats: AreaStats | None = None
    blocks: int = 0
    uncertainty: dict[str, Path] = field(default_factory=dict)
    probabilities_zarr: Path | None = None
    aux: Path | None = None
    stac: Path | None = None
    styles: list[Path] = field(default_factory=list)


def _defer_signals(defer: bool) -> None:
    """Block (``True``) or unblock SIGINT/SIGTERM for this thread.

    A signal that arrives meanwhile is delivered on unblocking. A no-op where POSIX signal
    masks do not exist.
    """
    if hasattr(signal, "pthread_sigmask"):
        how = signal.SIG_BLOCK if defer else signal.SIG_UNBLOCK
        signal.pthread_sigmask(how, {signal.SIGINT, signal.SIGTERM})


class CropMapWriter:
    """Stream class/confidence/probability blocks into COG outputs, atomically.

    Use as a context manager; :meth:`write_block` may be called from several threads.
    Leaving the block without an exception converts and renames all outputs; an exception
    removes every temporary file and leaves existing outputs untouched.

    Args:
        map_path: Crop map COG to write.
        grid: Size, transform and CRS of the map.
        classes: Class table (colours, names, area rows).
        confidence: Confidence COG path, or None.
        probabilities: Probabilities COG path (one band per class), or None.
        area: Area CSV path, or None.
        qml: QGIS style path, or None. When set, the confidence and uncertainty COGs get
            their own ``<their stem>.qml`` (continuous ramp) too.
        compress: COG compression (``DEFLATE`` or ``ZSTD``).
        on_block: Called with no argument after each block is written (progress bars).
        uncertainty: ``{measure: path}`` of float32 uncertainty COGs
            (:mod:`cropseq.uncertainty`), or None.
        probabilities_zarr: Path of a CF Zarr probabilities cube (:mod:`cropseq.prob_zarr`).
        zarr_chunk: Chunk edge of that cube (the prediction's chunk size).
        aux: Write ``MAP.tif.aux.xml`` (GDAL categories + raster attribute table).
        stac: Path of a STAC Item describing the outputs (:mod:`cropseq.stac_item`), or None.
        dates: The season's dates (the Item's datetime range).

    Example:
        >>> with CropMapWriter("map.tif", grid, classes, confidence="c.tif") as w:  # doctest: +SKIP
        ...     w.write_block(0, 0, cls_block, conf_block)
    """

    def __init__(
        self,
        map_path: str | os.PathLike[str],
        grid: Grid,
        classes: ClassTable,
        *,
        confidence: str | os.PathLike[str] | None = None,
        probabilities: str | os.PathLike[str] | None = None,
        area: str | os.PathLike[str] | None = None,
        qml: str | os.PathLike[str] | None = None,
        compress: str = "DEFLATE",
        on_block: Any = None,
        uncertainty: Mapping[str, str | os.PathLike[str]] | None = None,
        probabilities_zarr: str | os.PathLike[str] | None = None,
        zarr_chunk: int = BLOCKSIZE,
        aux: bool = True,
        stac: str | os.PathLike[str] | None = None,
        dates: Any = None,
    ) -> None:
        self.grid = grid
        self.zarr_chunk = int(zarr_chunk)
        self.dates = dates
        self.measures = {str(k): Path(v) for k, v in (uncertainty or {}).items()}
        self.classes = classes
        self.compress = compress
        self.on_block = on_block
        self.paths: dict[str, Path | None] = {
            "map": Path(map_path),
            "confidence": None if confidence is None else Path(confidence),
            "probabilities": None if probabilities is None else Path(probabilities),
            "area": None if area is None else Path(area),
            "qml": None if qml is None else Path(qml),
            "probabilities_zarr": None if probabilities_zarr is None else Path(probabilities_zarr),
            "aux": _aux_path(Path(map_path)) if aux else None,
            "stac": None if stac is None else Path(stac),
        }
        self.paths.update({f"u:{k}": v for k, v in self.measures.items()})
        if qml is not None:
            for key in ("confidence", *(f"u:{k}" for k in self.measures)):
                if self.paths[key] is not None:
                    self.paths[f"style:{key}"] = sidecar_paths(self.paths[key])["qml"]  # type: ignore[arg-type]
        for p in self.paths.values():
            if p is not None:
                # Before any compute: missing or read-only folder, symlink loop, an input.
                check_writable(p)
        finals = [p.resolve() for p in self.paths.values() if p is not None]
        if len(set(finals)) != len(finals):
            raise CropseqError("two outputs share one path", self.paths["map"])
        if grid.width <= 0 or grid.height <= 0:
            raise CropseqError(f"empty output grid ({grid.width} x {grid.height} px)", self.paths["map"])
        self._area = _PixelArea(grid.transform, grid.crs)
        self.stats = AreaStats(classes, note=self._area.note)
        self._lock = threading.Lock()
        self._parts: dict[str, Path] = {}
        self._ds: dict[str, Any] = {}
        self._zarr: Any = None
        self.blocks = 0
        self.result: WrittenOutputs | None = None  # set when the block exits cleanly

    # -- lifecycle
    def __enter__(self) -> CropMapWriter:
        quiet_libtiff()
        try:
            self._open_parts()
        except BaseException as e:
            self._fail(e)
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None:
            self._fail(exc)
            return
        try:
            self._close(remove=False)
            self.result = self._finish()
        except BaseException as e:
            self._fail(e)
            raise
        finally:
            self._remove_parts()

    def _fail(self, exc: BaseException) -> None:
        """Remove every part file; a full disk becomes one :class:`CropseqError`."""
        full = no_space_error(exc, self.paths["map"])  # type: ignore[arg-type]
        self._close(remove=True, check=False)
        if full is not None:
            raise full from None

    def _part_path(self, final: Path) -> Path:
        # Hidden, unique, same folder (same filesystem: no cross-device copies).
        return temp_sibling(final, "part", ".tif")

    def _open_parts(self) -> None:
        g = self.grid
        common = {
            "driver": "GTiff",
            "width": g.width,
            "height": g.height,
            "transform": g.transform,
            "crs": g.crs,
            "tiled": True,
            "blockxsize": BLOCKSIZE if g.width > BLOCKSIZE else _small_block(g.width),
            "blockysize": BLOCKSIZE if g.height > BLOCKSIZE else _small_block(g.height),
            # Uncompressed + sparse: blocks of any alignment are rewritten in place (no file
            # growth), blocks never written read back as nodata; the COG step compresses.
            "compress": None,
            "sparse_ok": True,
            "bigtiff": "IF_SAFER",
        }
        dataset_tags, band_tags = class_tags(self.classes)
        with rasterio.Env(**_GDAL_ENV):
            p = self._parts["map"] = self._part_path(self.paths["map"])  # type: ignore[arg-type]
            ds = self._ds["map"] = rasterio.open(p, "w", count=1, dtype="uint8", nodata=NODATA_CODE, **common)
            ds.write_colormap(1, colormap(self.classes))
            ds.set_band_description(1, "crop class")
            ds.update_tags(**dataset_tags, CROPSEQ_NODATA="0 = not classified (too few valid observations)")
            ds.update_tags(1, **band_tags, **class_band_items(self.classes))
            if self.paths["confidence"] is not None:
                p = self._parts["confidence"] = self._part_path(self.paths["confidence"])
                ds = self._ds["confidence"] = rasterio.open(p, "w", count=1, dtype="float32", nodata=np.nan, **common)
                ds.set_band_description(1, "confidence (probability of the mapped class)")
                ds.set_band_unit(1, "1")
                ds.update_tags(**dataset_tags)
            if self.paths["probabilities"] is not None:
                k = len(self.classes)
                p = self._parts["probabilities"] = self._part_path(self.paths["probabilities"])
                ds = self._ds["probabilities"] = rasterio.open(p, "w", count=k, dtype="float32", nodata=np.nan, **common)
                for i, c in enumerate(self.classes.classes, start=1):
                    ds.set_band_description(i, c.name)
                    ds.set_band_unit(i, "1")
                    ds.update_tags(i, CLASS_CODE=str(c.code))
                ds.update_tags(**dataset_tags)
            for name, final in self.measures.items():
                p = self._parts[f"u:{name}"] = self._part_path(final)
                ds = self._ds[f"u:{name}"] = rasterio.open(p, "w", count=1, dtype="float32", nodata=np.nan, **common)
                ds.set_band_description(1, f"{name} uncertainty: {MEASURES[name]}")
                ds.set_band_unit(1, "1")
                ds.update_tags(**dataset_tags, CROPSEQ_UNCERTAINTY=name)
        if self.paths["probabilities_zarr"] is not None:
            from cropseq.prob_zarr import ProbabilityZarr

            p = self._parts["probabilities_zarr"] = temp_sibling(self.paths["probabilities_zarr"], "part")
            self._zarr = ProbabilityZarr(p, g, self.classes, self.zarr_chunk)

    def _close(self, remove: bool, check: bool = True) -> None:
        # Closing flushes GDAL's block cache: on the success path a failed flush (disk full)
        # must surface, not leave a truncated part to be converted.
        errors: list[Exception] = []
        # Under the write lock: after an interruption a worker thread may still be writing.
        with self._lock, rasterio.Env(**_GDAL_ENV):
            for ds in self._ds.values():
                try:
                    ds.close()
                except Exception as e:  # noqa: BLE001 - close every dataset, re-raise the first
                    errors.append(e)
        self._ds.clear()
        if remove:
            self._remove_parts()
        if check and errors:
            raise errors[0]

    def _remove_parts(self) -> None:
        for p in self._parts.values():
            remove_path(p)  # files, and the Zarr part folder
        self._parts.clear()

    # -- blocks
    def write_block(
        self,
        row_off: int,
        col_off: int,
        cls: np.ndarray,
        confidence: np.ndarray | None = None,
        probabilities: np.ndarray | None = None,
        layers: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Write one block at pixel offset ``(row_off, col_off)``; thread-safe.

        Args:
            row_off: Row of the block's upper-left pixel in the output grid.
            col_off: Column of the block's upper-left pixel in the output grid.
            cls: ``(h, w)`` uint8 class codes (0 = nodata).
            confidence: ``(h, w)`` float32, NaN = nodata (needed when a confidence path is set).
            probabilities: ``(K, h, w)`` float32 (needed when a probabilities COG or Zarr
                path is set); may come in ``layers["probabilities"]`` instead.
            layers: ``{measure: (h, w) float32}`` for the uncertainty outputs (and
                optionally ``"probabilities"``).
        """
        layers = layers or {}
        if probabilities is None:
            probabilities = layers.get("probabilities")
        cls = np.asarray(cls, dtype=np.uint8)
        h, w = cls.shape
        win = Window(col_off, row_off, w, h)
        with self._lock:
            if not self._ds:
                raise RuntimeError("the crop map writer is closed")  # a chunk finishing after an interruption
            self._ds["map"].write(cls, 1, window=win)
            if "confidence" in self._ds:
                if confidence is None:
                    raise ValueError("a confidence block is required: the writer has a confidence output")
                self._ds["confidence"].write(np.asarray(confidence, np.float32), 1, window=win)
            if "probabilities" in self._ds:
                if probabilities is None:
                    raise ValueError("a probabilities block is required: the writer has a probabilities output")
                self._ds["probabilities"].write(np.asarray(probabilities, np.float32), window=win)
            for name in self.measures:
                if name not in layers:
                    raise ValueError(f"a {name} block is required: the writer has a {name} output")
                self._ds[f"u:{name}"].write(np.asarray(layers[name], np.float32), 1, window=win)
            if self._zarr is not None:
                if probabilities is None:
                    raise ValueError("a probabilities block is required: the writer has a probabilities Zarr")
                self._zarr.write(row_off, col_off, probabilities)
            _accumulate(self.stats, self._area, cls, row_off)
            self.blocks += 1
        if self.on_block is not None:
            self.on_block()

    # -- finish
    def _finish(self) -> WrittenOutputs:
        out = WrittenOutputs(map=self.paths["map"], stats=self.stats, blocks=self.blocks)  # type: ignore[arg-type]
        with contextlib.ExitStack() as stack:
            # All temporaries first, renames last (on leaving the stack): either every
            # output appears or none does. Ctrl-C/SIGTERM wait while the renames run (the
            # callbacks run in reverse: block first, unblock after the last rename).
            stack.callback(_defer_signals, False)
            for key in ("map", "confidence", "probabilities", *(f"u:{k}" for k in self.measures)):
                final = self.paths[key]
                if final is None:
                    continue
                tmp = stack.enter_context(atomic_path(final))
                to_cog(self._parts[key], tmp, categorical=(key == "map"), compress=self.compress)
                if key.startswith("u:"):
                    out.uncertainty[key[2:]] = final
                else:
                    setattr(out, key, final)
            if self._zarr is not None:
                self._zarr.finish()
                tmp = stack.enter_context(atomic_path(self.paths["probabilities_zarr"]))  # type: ignore[arg-type]
                os.replace(self._parts["probabilities_zarr"], tmp)
                out.probabilities_zarr = self.paths["probabilities_zarr"]
            self._write_metadata(stack, out)
            if self.paths["area"] is not None:
                tmp = stack.enter_context(atomic_path(self.paths["area"]))
                _write_area_rows(tmp, self.stats)
                out.area = self.paths["area"]
            if self.paths["qml"] is not None:
                tmp = stack.enter_context(atomic_path(self.paths["qml"]))
                tmp.write_text(qml_text(self.classes), encoding="utf-8")
                out.qml = self.paths["qml"]
            if self.paths["stac"] is not None:
                from cropseq.stac_item import stac_item

                tmp = stack.enter_context(atomic_path(self.paths["stac"]))
                item = stac_item(self.paths["map"], out, self.classes, self.grid, self.dates)  # type: ignore[arg-type]
                tmp.write_text(json.dumps(item, indent=2, allow_nan=False) + "\n", encoding="utf-8")
                out.stac = self.paths["stac"]
            stack.callback(_defer_signals, True)
        return out

    def _write_metadata(self, stack: contextlib.ExitStack, out: WrittenOutputs) -> None:
        """GDAL categories + RAT (``MAP.tif.aux.xml``) and the continuous layers' styles."""
        if self.paths["aux"] is not None:
            tmp = stack.enter_context(atomic_path(self.paths["aux"]))
            tmp.write_text(pam_xml(self.classes, self.stats.pixels, self.stats.hectares), encoding="utf-8")
            out.aux = self.paths["aux"]
        for key, final in self.paths.items():
            if not key.startswith("style:") or final is None:
                continue
            layer = key.split(":", 1)[1]
            label = "confidence" if layer == "confidence" else layer[2:]
            ramp = CONFIDENCE_RAMP if layer == "confidence" else UNCERTAINTY_RAMP
            tmp = stack.enter_context(atomic_path(final))
            tmp.write_text(ramp_qml(label, ramp), encoding="utf-8")
            out.styles.append(final)


def _write_area_rows(path: Path, stats: AreaStats) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["code", "name", "pixels", "hectares", "share"])
        w.writeheader()
        w.writerows(stats.rows())


def _small_block(n: int) -> int:
    # GeoTIFF tiles must be multiples of 16; the smallest one covering a small raster.
    return max(16, int(math.ceil(n / 16.0)) * 16)


def write_crop_map(
    path: str | os.PathLike[str],
    cls: np.ndarray,
    transform: Affine,
    crs: CRS | str | None,
    classes: ClassTable,
    *,
    confidence: np.ndarray | None = None,
    confidence_path: str | os.PathLike[str] | None = None,
    area: str | os.PathLike[str] | None = None,
    qml: str | os.PathLike[str] | None = None,
) -> WrittenOutputs:
    """Write an in-memory class array as a crop map COG (small maps, tests, evaluation).

    Whole-scene prediction streams blocks through :class:`CropMapWriter` instead.
    """
    cls = np.asarray(cls, dtype=np.uint8)
    crs_obj = CRS.from_user_input(crs) if crs is not None and not isinstance(crs, CRS) else crs
    grid = Grid(cls.shape[1], cls.shape[0], transform, crs_obj)
    with CropMapWriter(
        path,
        grid,
        classes,
        confidence=confidence_path if confidence is not None else None,
        area=area,
        qml=qml,
    ) as w:
        w.write_block(0, 0, cls, confidence)
    assert w.result is not None
    return w.result


# --------------------------------------------------------------------------- mosaic
@dataclass(frozen=True)
class _TileInfo:
    path: Path
    width: int
    height: int
    row_off: int
    col_off: int


def _tile_layout(paths: list[Path]) -> tuple[list[_TileInfo], Grid, dict[str, Any]]:
    """Place tiles on a common grid; check CRS, pixel size, alignment, bands, no overlap."""
    register_input(*paths, what="tile map")
    try:
        first_ctx = rasterio.open(paths[0])
    except rasterio.errors.RasterioIOError as e:
        raise CropseqError(f"not a readable raster ({str(e).splitlines()[0]})", paths[0]) from None
    with first_ctx as first:
        crs, t0 = first.crs, first.transform
        ref = {"count": first.count, "dtype": first.dtypes[0]}
    if t0.b != 0 or t0.d != 0:
        raise CropseqError("rotated grids cannot be mosaicked", paths[0])
    placed = []
    for p in paths:
        try:
            src_ctx = rasterio.open(p)
        except rasterio.errors.RasterioIOError as e:
            raise CropseqError(f"not a readable raster ({str(e).splitlines()[0]})", p) from None
        with src_ctx as src:
            if src.crs != crs:
                raise CropseqError(f"CRS {src.crs} differs from {crs} of {paths[0].name}", p)
            if (src.count, src.dtypes[0]) != (ref["count"], ref["dtype"]):
                raise CropseqError(
                    f"{src.count} band(s) of {src.dtypes[0]} differ from {ref['count']} of {ref['dtype']} in {paths[0].name}", p
                )
            t = src.transform
            if t.b or t.d or not (math.isclose(t.a, t0.a, rel_tol=1e-9) and math.isclose(t.e, t0.e, rel_tol=1e-9)):
                raise CropseqError(f"pixel size ({t.a}, {t.e}) differs from ({t0.a}, {t0.e}) of {paths[0].name}", p)
            col = (t.c - t0.c) / t0.a
            row = (t.f - t0.f) / t0.e
            if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
                raise CropseqError(f"grid is not aligned with that of {paths[0].name}", p)
            placed.append((p, int(round(row)), int(round(col)), src.height, src.width))
    r0 = min(b[1] for b in placed)
    c0 = min(b[2] for b in placed)
    r1 = max(b[1] + b[3] for b in placed)
    c1 = max(b[2] + b[4] for b in placed)
    tiles = [_TileInfo(p, w, h, r - r0, c - c0) for p, r, c, h, w in placed]
    _check_no_overlap(tiles)
    grid = Grid(c1 - c0, r1 - r0, t0 @ Affine.translation(c0, r0), crs)
    return tiles, grid, ref


def partition_tile_rasters(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[Path]]:
    """Split ``mosaic`` inputs into crop-map tiles and the confidence rasters among them.

    ``cropseq predict`` writes ``STEM.confidence.tif`` beside each tile map ``STEM.tif``, so a
    glob such as ``tiles_maps/*.tif`` catches both. An input is a confidence raster when it
    is the confidence sidecar of another input (matched by path, so a tile named
    ``x.confidence.tif`` on its own is mosaicked like any raster).

    Returns:
        ``(maps, confidences)``, each in input order.
    """
    given = [Path(p) for p in paths]
    sidecars = {sidecar_paths(p)["confidence"].resolve() for p in given}
    is_conf = [p.resolve() in sidecars for p in given]
    return [p for p, c in zip(given, is_conf) if not c], [p for p, c in zip(given, is_conf) if c]


def mosaic_maps(
    tile_maps: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    confidence: str | os.PathLike[str] | bool | None = None,
    area: str | os.PathLike[str] | bool | None = None,
    qml: str | os.PathLike[str] | bool | None = True,
    on_block: Any = None,
) -> WrittenOutputs:
    """Merge per-tile rasters written by ``cropseq predict`` (same grid, no overlap) into one COG.

    Crop maps (uint8 with a cropseq class table) give a crop-map COG with colour table,
    names and QML; float rasters (confidence or probabilities tiles) give a float COG with
    NaN nodata and the first tile's band descriptions. Tiles are copied block by block into
    the union of their extents (pixels no tile covers are nodata): memory is one block.
    Confidence sidecars among ``tile_maps`` (``predict``'s ``STEM.confidence.tif`` beside a
    listed ``STEM.tif``, as a ``*.tif`` glob catches them; see :func:`partition_tile_rasters`)
    are not tiles of the map: they are mosaicked into the confidence COG.

    Args:
        tile_maps: Per-tile crop maps, optionally with their confidence sidecars (or only
            per-tile confidence/probability rasters).
        out: The mosaic COG.
        confidence: Crop maps only. A path (or ``True`` for ``OUT_STEM.confidence.tif``):
            also mosaic every tile's ``STEM.confidence.tif`` sidecar; None: do so (into
            ``OUT_STEM.confidence.tif``) when ``tile_maps`` lists the sidecars; False: don't.
        area: Crop maps only. A path (or ``True`` for ``OUT_STEM.area.csv``): write the
            per-class area table; None: don't.
        qml: Crop maps only. ``True`` (default): ``OUT_STEM.qml``; a path; or None.
        on_block: Progress callback, called after each block.

    Raises:
        CropseqError: no tiles; a tile missing, unreadable or (for uint8 maps) without a
            class table; CRS, pixel size, grid alignment, band count/type or class table
            differing between tiles; tiles overlapping; a confidence sidecar missing.
    """
    if not tile_maps:
        raise CropseqError("no tile maps to mosaic", out)
    for p in map(Path, tile_maps):
        if not p.is_file():
            raise CropseqError("tile map not found", p)
    paths, listed_confidences = partition_tile_rasters(tile_maps)
    if listed_confidences and confidence is None:
        confidence = True
    check_writable(out)
    tiles, grid, ref = _tile_layout(paths)
    if ref["dtype"] != "uint8":
        return _mosaic_continuous(tiles, grid, ref, Path(out), on_block)

    classes = read_class_table(paths[0])
    for p in paths[1:]:
        if read_class_table(p) != classes:
            raise CropseqError(f"class table differs from that of {paths[0].name}", p)
    side = sidecar_paths(out)
    conf_out = side["confidence"] if confidence is True else (Path(confidence) if confidence else None)
    area_out = side["area"] if area is True else (Path(area) if area else None)
    qml_out = side["qml"] if qml is True else (Path(qml) if qml else None)
    conf_in = [sidecar_paths(t.path)["confidence"] for t in tiles] if conf_out is not None else []
    for c in conf_in:
        if not c.is_file():
            raise CropseqError("confidence sidecar of a tile map not found (predict writes it beside the map)", c)

    with CropMapWriter(out, grid, classes, confidence=conf_out, area=area_out, qml=qml_out, on_block=on_block) as writer:
        for i, t in enumerate(tiles):
            with contextlib.ExitStack() as stack:
                src = stack.enter_context(rasterio.open(t.path))
                csrc = stack.enter_context(rasterio.open(conf_in[i])) if conf_out is not None else None
                if csrc is not None and (csrc.width, csrc.height) != (src.width, src.height):
                    raise CropseqError("confidence sidecar does not match its map's size", conf_in[i])
                for _, win in src.block_windows(1):
                    block = src.read(1, window=win)
                    conf = csrc.read(1, window=win) if csrc is not None else None
                    writer.write_block(t.row_off + int(win.row_off), t.col_off + int(win.col_off), block, conf)
    assert writer.result is not None
    return writer.result


def _mosaic_continuous(tiles: list[_TileInfo], grid: Grid, ref: dict[str, Any], out: Path, on_block: Any) -> WrittenOutputs:
    """Mosaic float rasters (confidence, probabilities) into a float32 COG, NaN nodata."""
    part = temp_sibling(out, "part", ".tif")
    quiet_libtiff()
    try:
        with rasterio.Env(**_GDAL_ENV):
            with rasterio.open(tiles[0].path) as first:
                descriptions, tags = first.descriptions, first.tags()
                band_tags = [first.tags(i) for i in range(1, first.count + 1)]
            with rasterio.open(
                part, "w", driver="GTiff", width=grid.width, height=grid.height, count=ref["count"],
                dtype="float32", nodata=np.nan, transform=grid.transform, crs=grid.crs, tiled=True,
                blockxsize=BLOCKSIZE if grid.width > BLOCKSIZE else _small_block(grid.width),
                blockysize=BLOCKSIZE if grid.height > BLOCKSIZE else _small_block(grid.height),
                sparse_ok=True, bigtiff="IF_SAFER",
            ) as dst:
                for i, d in enumerate(descriptions, start=1):
                    if d:
                        dst.set_band_description(i, d)
                    if band_tags[i - 1]:
                        dst.update_tags(i, **band_tags[i - 1])
                dst.update_tags(**{k: v for k, v in tags.items() if k != "AREA_OR_POINT"})
                for t in tiles:
                    with rasterio.open(t.path) as src:
                        for _, win in src.block_windows(1):
                            data = src.read(window=win).astype(np.float32)
                            if src.nodata is not None and not np.isnan(src.nodata):
                                data[data == src.nodata] = np.nan
                            dst.write(data, window=Window(t.col_off + win.col_off, t.row_off + win.row_off, win.width, win.height))
                            if on_block is not None:
                                on_block()
        with atomic_path(out) as tmp:
            to_cog(part, tmp, categorical=False)
    except Exception as e:
        full = no_space_error(e, out)
        part.unlink(missing_ok=True)
        if full is not None:
            raise full from None
        raise
    finally:
        part.unlink(missing_ok=True)
    return WrittenOutputs(map=out, blocks=0)


def _check_no_overlap(tiles: list[_TileInfo]) -> None:
    r0 = np.array([t.row_off for t in tiles])
    c0 = np.array([t.col_off for t in tiles])
    r1 = r0 + np.array([t.height for t in tiles])
    c1 = c0 + np.array([t.width for t in tiles])
    for i in range(len(tiles)):
        hit = (r0[i] < r1[i + 1 :]) & (r0[i + 1 :] < r1[i]) & (c0[i] < c1[i + 1 :]) & (c0[i + 1 :] < c1[i])
        if hit.any():
            j = i + 1 + int(np.argmax(hit))
            raise CropseqError(
                f"tile maps overlap ({tiles[i].path.name} and {tiles[j].path.name}); mosaic expects the "
                "non-overlapping core windows predict writes for tiles",
                tiles[j].path,
            )


# --------------------------------------------------------------------------- preview
def write_preview(
    map_path: str | os.PathLike[str],
    png: str | os.PathLike[str],
    classes: ClassTable | None = None,
    *,
    max_size: int = 1024,
    title: str | None = None,
) -> Path:
    """Render a crop map as a PNG with a class legend (for reports).

    Reads a decimated view (the COG's overviews make this cheap for big maps), so memory
    is bounded by ``max_size``.

    Args:
        map_path: A crop map written by cropseq.
        png: Output PNG path (written atomically).
        classes: Class table; read from the map's metadata when None.
        max_size: Longest side of the rendered raster, in pixels.
        title: Figure title (default: the map's file name).
    """
    plt = pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    map_path = Path(map_path)
    classes = classes or read_class_table(map_path)
    with rasterio.open(map_path) as src:
        scale = max(1.0, max(src.width, src.height) / max_size)
        shape = (max(1, int(src.height / scale)), max(1, int(src.width / scale)))
        data = src.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.nearest)
        b = src.bounds
    rgba = np.zeros((256, 4), np.float32)
    for c in classes.classes:
        rgba[c.code] = np.array(classes.rgba(c.code), np.float32) / 255.0
    fig, ax = plt.subplots(figsize=(8, 8 * shape[0] / shape[1] if shape[1] else 8), dpi=110)
    try:
        ax.imshow(data, cmap=ListedColormap(rgba), vmin=0, vmax=255, interpolation="nearest",
                  extent=(b.left, b.right, b.bottom, b.top))
        present = set(np.unique(data).tolist())
        handles = [
            Patch(facecolor=c.color, edgecolor="0.3", label=c.name)
            for c in classes.classes
            if c.code in present
        ]
        if handles:
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                      title="class")
        ax.set_title(title or map_path.name)
        ax.tick_params(labelsize=7)
        fig.tight_layout()
        png = save_png(fig, png, bbox_inches="tight")
    finally:
        plt.close(fig)
    return png


__all__ = [
    "AreaStats",
    "CropMapWriter",
    "Grid",
    "WrittenOutputs",
    "area_stats",
    "class_tags",
    "colormap",
    "mosaic_maps",
    "qml_text",
    "sidecar_paths",
    "to_cog",
    "write_area_csv",
    "write_crop_map",
    "write_preview",
    "write_qml",
]

