"""The built-in demo scene: a seeded, synthetic but realistic Sentinel-2 season.

:func:`simulate_scene` writes a complete, self-describing test site that the rest of the
pipeline reads like real data (``cropseq simulate OUTDIR``)::

    OUTDIR/
      stack.yaml            per-date manifest (see docs/ARCHITECTURE.md); written last
      images/S2_YYYYMMDD.tif    6 bands B02 B03 B04 B08 B11 B12, uint16 DN = reflectance * 10000,
                                nodata 0, 256 x 256 tiles, deflate
      images/MASK_YYYYMMDD.tif  uint8 cloud mask: 0 clear, 1 cloud, 2 cloud shadow
                                (non-zero = invalid, the manifest default)
      truth.tif             uint8 class code of every pixel (0 = outside the swath), colour table
      test_truth.tif        the same, on the held-out fields (test_fields.gpkg) only, 0 elsewhere
      classes.yaml          codes, names and colours (ClassTable)
      labels.gpkg           layer ``fields``: the labelled parcels (``field_id``, ``label``);
                            a few carry a wrong crop name (label noise, ``mislabelled_fields``)
      test_fields.gpkg      layer ``fields``: the other parcels, never in labels.gpkg, so a map
                            scored on them is scored on fields no model has seen
      scene.json            what was simulated (dates, cloud cover, class table, timing pairs,
                            the mislabelled field ids)

The landscape
    A jittered grid of quadrilateral cells (default 32 px = 320 m), some split into 2-3
    strips, gives irregular field parcels of 1-10 ha. Spatially clustered parcels become
    forest, water (an elongated lake) and urban (a village); the rest get one of seven crops.
    Parcels are clipped to the scene; a slanted swath edge (a Sentinel-2 orbit edge) leaves
    a wedge at the top-right corner with no data (0 on every date and in ``truth.tif``).

Reflectance
    Linear spectral mixing per pixel and date of four endmembers: a background (bare soil,
    forest floor, water or urban surface), green vegetation, dry vegetation (straw, stubble,
    hay, autumn leaves) and yellow flowers (rapeseed, sunflower). Cover fractions follow a
    double-logistic green-up / senescence per crop plus harvest, stubble, ploughing, catch
    crops and grassland mowing. Per field: sowing and harvest dates shift by up to
    +-18 days (so the sowing windows of maize and soybean, or spring barley and sunflower,
    overlap by weeks), green-up and senescence run 0.7-1.5x as fast, peak cover varies by
    ~30 % (poor stands never close their canopy), soil brightness by ~20 %. Per pixel:
    smooth vigour patches plus pixel-to-pixel vigour noise (one pixel is a noisy sample of
    its field), soil-brightness noise, urban texture, and sensor noise. A pixel on a field
    edge mixes 15-45 % of its neighbouring field (cover and spectra), as a 10 m pixel
    straddling the boundary does; ``truth.tif`` keeps the pixel's own field. Per date: soil
    moisture, residual atmospheric gain/offset, water turbidity.

Classes (code, name: calendar of the class curve; each field shifts it by up to +-18 days)
    ====  =============  ======================================================================
    1     winter_wheat   green from March; green-up Apr 10, senescence Jun 12, harvest Jul 15
    2     spring_barley  bare in March; green-up May 16, senescence Jul 10, harvest Jul 31
    3     maize          green-up Jun 21, senescence Sep 7, harvest Oct 9
    4     soybean        green-up Jun 14, senescence Aug 26, harvest Sep 19 (brighter NIR)
    5     sunflower      green-up May 28, flowering Jul 14, senescence Aug 2 (dark), harvest Sep 9
    6     rapeseed       green from March; flowering (yellow) Apr 30, senescence Jun 11, harvest Jul 7
    7     grassland      green all season, mown 2-3 times (~May 25, Jul 14, Sep 7)
    8     forest         evergreen share plus leaf-out Apr 28 and leaf fall Oct 17
    9     water          lake; turbidity varies by date
    10    urban          bright, textured; patchy lawns and trees
    ====  =============  ======================================================================

    Cereals, rapeseed and some other fields get stubble after harvest, ploughing, and
    (a quarter of them) a catch crop in autumn.

Timing crops
    ``winter_wheat`` and ``spring_barley`` share the same canopy, straw and soil spectra and
    the same peak cover; they differ in timing only: wheat is green from March (sown in
    autumn) and peaks in early May, barley is sown in spring and peaks ~4 weeks later. A
    classifier that ignores the order of the dates cannot tell them apart reliably
    (:data:`TIMING_PAIRS`). Maize and soybean are also close (summer crops, slightly
    different green-up, senescence and canopy NIR).

Clouds
    About half the dates are clear; some have 10-60 % cloud in large fronts, about a third
    have 5-25 % scattered small cumulus (a field or less across, so every field misses its
    own set of dates), and one date is nearly fully cloudy. Clouds are thresholded fractal
    value noise (coherent blobs) with a thin,
    *unmasked* haze rim (as real cloud masks miss thin edges), cloud shadows displaced
    toward the north-west by the sun geometry of a 10:30 overpass, bright cloud reflectance
    in the image and mask 1 (cloud) or 2 (shadow).

Labels
    ``label_noise`` (default 3 %) of the labelled crop parcels are written to ``labels.gpkg``
    under another crop's name, as surveys and farmers' declarations have errors; every
    class keeps correctly labelled parcels, and ``truth.tif``, ``test_truth.tif`` and
    ``test_fields.gpkg`` stay true (the reference a map is scored against).

Reproducibility and scale
    Every random draw comes from a stream keyed by ``(seed, purpose, date, block)``, so the
    same arguments give byte-identical GeoTIFFs, YAML and JSON in any folder (the GeoPackages
    are pinned too, via ``OGR_CURRENT_DATE``). The scene is generated and written in blocks
    of 256 rows (windowed writes, all date files open at once; one background thread
    compresses and writes while the next date is rendered), so memory depends on the scene
    width, not its area (peak RSS ~0.6 GB at 4096 x 4096 px with 24 dates).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import queue
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from cropseq.atomic import atomic_path
from cropseq.classes import ClassInfo, ClassTable
from cropseq.errors import CropseqError

__all__ = [
    "BANDS",
    "CLASS_TABLE",
    "CRS",
    "DEFAULT_LABEL_NOISE",
    "MAX_DATES",
    "MAX_LABEL_NOISE",
    "MAX_SIZE",
    "MIN_DATES",
    "MIN_SIZE",
    "PIXEL_SIZE",
    "SceneInfo",
    "TIMING_PAIRS",
    "simulate_scene",
]

# --------------------------------------------------------------------------------------
# Fixed scene conventions
# --------------------------------------------------------------------------------------

BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B11", "B12")
CRS = "EPSG:32633"  # UTM 33N; the scene lies in south-eastern Austria's mixed farmland
PIXEL_SIZE = 10.0
ORIGIN = (500_000.0, 5_200_000.0)  # upper-left corner (x, y), ~46.9 N 15 E
SEASON_START = date(2023, 3, 1)
SEASON_END = date(2023, 10, 31)
REVISIT_DAYS = 5  # Sentinel-2A+B combined revisit
#: Acquisition slots in the season; ``n_dates`` of them are kept (the rest "missing").
N_SLOTS = (SEASON_END - SEASON_START).days // REVISIT_DAYS + 1
MIN_SIZE, MAX_SIZE = 32, 32768
MIN_DATES, MAX_DATES = 8, N_SLOTS
MIN_FIELD, MAX_FIELD = 8, 256
BLOCK_ROWS = 256  # rows generated and written per step = the GeoTIFF tile height
TILE = 256
NODATA = 0
SCALE = 0.0001
#: Share of labelled crop parcels written under a wrong crop name, by default and at most.
DEFAULT_LABEL_NOISE, MAX_LABEL_NOISE = 0.03, 0.5
#: Crops that differ (almost) only in the timing of their season; see the module doc.
TIMING_PAIRS: tuple[tuple[str, str], ...] = (("winter_wheat", "spring_barley"),)

_FAR = 1.0e4  # a day of year that never comes (avoids inf arithmetic warnings)

# --------------------------------------------------------------------------------------
# Endmember spectra (surface reflectance for B02 B03 B04 B08 B11 B12)
# --------------------------------------------------------------------------------------

_SOIL = (0.070, 0.100, 0.130, 0.190, 0.300, 0.260)
_FOREST_FLOOR = (0.030, 0.050, 0.050, 0.180, 0.170, 0.100)
_WATER = (0.050, 0.045, 0.030, 0.015, 0.006, 0.004)
_URBAN = (0.110, 0.120, 0.130, 0.180, 0.230, 0.210)
_FLOWER = (0.040, 0.220, 0.200, 0.450, 0.260, 0.150)  # yellow petals: high green + red
_CLOUD = (0.500, 0.490, 0.500, 0.520, 0.380, 0.260)
_CEREAL_GREEN = (0.030, 0.070, 0.028, 0.450, 0.210, 0.100)
_CEREAL_DRY = (0.100, 0.140, 0.180, 0.300, 0.380, 0.300)


@dataclass(frozen=True)
class _Pheno:
    """Cover-fraction curve parameters of one class (days of year; 2023-03-01 = 60)."""

    pre: float = 0.0  # green cover before green-up (over-wintered crops, evergreens)
    peak: float = 0.0  # green cover between green-up and senescence
    post: float = 0.0  # green cover after senescence
    up: float = _FAR  # green-up midpoint
    r_up: float = 8.0  # green-up time scale (days)
    down: float = _FAR  # senescence midpoint
    r_down: float = 6.0
    dry: float = 0.0  # senescent cover between senescence and harvest
    harvest: float = _FAR
    stubble: float = 0.0  # cover left after harvest, until ploughing
    plough: float = _FAR
    flower: float = 0.0  # peak flower cover
    flower_t: float = _FAR
    flower_w: float = 7.0
    cuts: tuple[float, ...] = ()  # grassland mowing days (third one optional)
    catch_p: float = 0.0  # share of fields sown with a catch crop after harvest
    jitter: float = 18.0  # per-field timing shift, +- days (sowing windows of classes overlap)


@dataclass(frozen=True)
class _ClassSpec:
    """A simulated class: map code, name, colour, spectra and phenology."""

    code: int
    name: str
    color: str
    crop: bool
    weight: float  # share among crop parcels (crops) or of all parcels (static classes)
    background: str  # soil | forest_floor | water | urban
    green: tuple[float, ...]
    dry: tuple[float, ...]
    pheno: _Pheno


_CLASSES: tuple[_ClassSpec, ...] = (
    _ClassSpec(1, "winter_wheat", "#d8b365", True, 0.22, "soil", _CEREAL_GREEN, _CEREAL_DRY,
               _Pheno(pre=0.35, peak=0.9, up=100, r_up=10, down=163, r_down=8, dry=0.75,
                      harvest=196, stubble=0.3, plough=235, catch_p=0.25)),
    # Same spectra and peak as wheat; sown in spring: timing is the only difference.
    _ClassSpec(2, "spring_barley", "#f6e8c3", True, 0.13, "soil", _CEREAL_GREEN, _CEREAL_DRY,
               _Pheno(pre=0.0, peak=0.9, up=136, r_up=8, down=191, r_down=6, dry=0.75,
                      harvest=212, stubble=0.3, plough=245, catch_p=0.25)),
    _ClassSpec(3, "maize", "#fdae61", True, 0.18, "soil", (0.028, 0.075, 0.032, 0.470, 0.220, 0.100),
               (0.080, 0.110, 0.140, 0.260, 0.340, 0.280),
               _Pheno(peak=0.92, up=172, r_up=8, down=250, r_down=8, dry=0.7, harvest=282,
                      stubble=0.35)),
    _ClassSpec(4, "soybean", "#c51b7d", True, 0.10, "soil", (0.032, 0.085, 0.038, 0.520, 0.240, 0.110),
               (0.090, 0.120, 0.150, 0.280, 0.360, 0.290),
               _Pheno(peak=0.95, up=165, r_up=7, down=238, r_down=5, dry=0.6, harvest=262,
                      stubble=0.1)),
    _ClassSpec(5, "sunflower", "#ff7f00", True, 0.10, "soil", (0.030, 0.075, 0.035, 0.480, 0.230, 0.110),
               (0.050, 0.070, 0.090, 0.220, 0.280, 0.220),  # dark brown heads and stalks
               _Pheno(peak=0.82, up=148, r_up=8, down=214, r_down=6, dry=0.8, harvest=252,
                      stubble=0.25, flower=0.3, flower_t=195, flower_w=6)),
    _ClassSpec(6, "rapeseed", "#ffff33", True, 0.10, "soil", (0.035, 0.080, 0.040, 0.460, 0.220, 0.110),
               (0.090, 0.120, 0.150, 0.280, 0.350, 0.280),
               _Pheno(pre=0.5, peak=0.85, up=82, r_up=8, down=162, r_down=6, dry=0.75,
                      harvest=188, stubble=0.25, plough=215, flower=0.45, flower_t=120,
                      flower_w=8, catch_p=0.2)),
    _ClassSpec(7, "grassland", "#d9ef8b", True, 0.17, "soil", (0.035, 0.080, 0.045, 0.400, 0.230, 0.120),
               (0.100, 0.140, 0.170, 0.300, 0.360, 0.280),
               _Pheno(pre=0.55, peak=0.85, up=100, r_up=10, post=0.85, cuts=(145, 195, 250),
                      jitter=4)),
    _ClassSpec(8, "forest", "#1b7837", False, 0.12, "forest_floor",
               (0.022, 0.050, 0.025, 0.330, 0.150, 0.065), (0.050, 0.080, 0.100, 0.300, 0.250, 0.150),
               _Pheno(pre=0.35, peak=0.92, up=118, r_up=5, down=290, r_down=7, post=0.4, dry=0.3,
                      jitter=3)),
    _ClassSpec(9, "water", "#2166ac", False, 0.04, "water", _WATER, _WATER, _Pheno(jitter=0)),
    _ClassSpec(10, "urban", "#8c8c8c", False, 0.06, "urban", (0.035, 0.080, 0.045, 0.400, 0.230, 0.120),
               _CEREAL_DRY, _Pheno(pre=0.08, peak=0.15, up=110, down=280, post=0.10, jitter=2)),
)

#: Codes, names and colours of the simulated classes (also written to ``classes.yaml``).
CLASS_TABLE = ClassTable(tuple(ClassInfo(c.code, c.name, c.color) for c in _CLASSES))

_BACKGROUNDS = {"soil": _SOIL, "forest_floor": _FOREST_FLOOR, "water": _WATER, "urban": _URBAN}
_STACK_YAML = """\
# cropseq demo scene (cropseq simulate); see cropseq/simulate.py
layout: per-date
bands: [{bands}]
files: "images/S2_*.tif"
date_pattern: "S2_(\\\\d{{8}})"
masks: "images/MASK_*.tif"   # 0 clear, 1 cloud, 2 cloud shadow (non-zero = invalid)
nodata: 0
scale: 0.0001
"""
_IMAGE_NAME = re.compile(r"^(S2|MASK)_\d{8}\.tif$")
#: ``simulate`` layouts: a static STAC catalogue of per-band COGs (default), or today's
#: one-grid per-date stack (6 bands, 10 m, a separate cloud mask per date).
LAYOUTS = ("stac", "one-grid")
#: The STAC layout's bands: 10 m, then 20 m (band -> index in the renderer's output).
STAC_10M = {"B02": 0, "B03": 1, "B04": 2, "B08": 3}
STAC_20M = {"B05": 6, "B11": 4, "B12": 5}
#: The cube bands of the STAC layout, in wavelength order.
STAC_BANDS = ("B02", "B03", "B04", "B05", "B08", "B11", "B12")
COLLECTION = "cropseq-demo-s2-l2a"
#: Sentinel-2 L2A scene classification values the demo writes, and those that are invalid.
SCL_NO_DATA, SCL_SHADOW, SCL_VEGETATION, SCL_BARE, SCL_WATER, SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH = 0, 3, 4, 5, 6, 8, 9
SCL_INVALID = (0, 1, 3, 8, 9, 10, 11)
_COMMON = {"B02": ("blue", 0.49), "B03": ("green", 0.56), "B04": ("red", 0.665), "B05": ("rededge", 0.704),
           "B08": ("nir", 0.842), "B11": ("swir16", 1.61), "B12": ("swir22", 2.19)}  # fmt: skip
_STAC_YAML = """\
# cropseq demo scene (cropseq simulate): a static STAC catalogue of per-band COGs like a
# Sentinel-2 L2A product (10 m and 20 m bands, scene classification SCL), read with odc-stac
source: stac
catalog: catalog/catalog.json
collections: [{collection}]
bands: [{bands}]
mask: {{band: SCL, invalid: [{invalid}]}}   # no data, saturated, cloud shadow, clouds, cirrus, snow
"""


@dataclass(frozen=True)
class SceneInfo:
    """What :func:`simulate_scene` wrote.

    Attributes:
        outdir: The scene folder.
        stack: ``stack.yaml`` (open it with ``cropseq.io.open_stack``).
        truth: ``truth.tif``, the class code of every pixel.
        test_truth: ``test_truth.tif``, the same codes on the held-out fields only (0
            elsewhere): scoring a map against it scores unseen fields only.
        labels: ``labels.gpkg``, the labelled parcels (layer ``fields``).
        test_fields: ``test_fields.gpkg``, the parcels not in ``labels.gpkg``.
        classes_path: ``classes.yaml``.
        size: Scene width and height in pixels.
        dates: Acquisition dates, ISO ``YYYY-MM-DD``.
        bands: Band names, in raster order.
        crs: CRS of every output (``EPSG:32633``).
        transform: GDAL-order affine of the rasters (x0, dx, 0, y0, 0, -dy).
        classes: The class table.
        n_fields: Parcels in ``truth.tif``, including slivers at the scene and swath edges
            (less than a quarter of a grid cell inside the swath) that are in neither
            GeoPackage.
        n_labelled: Parcels in ``labels.gpkg``.
        n_test: Parcels in ``test_fields.gpkg``.
        cloud_cover: Per date, the share of in-swath pixels masked (cloud or shadow).
        nodata_fraction: Share of pixels outside the swath.
        mislabelled: ``field_id`` of the parcels of ``labels.gpkg`` whose label is not
            their true class (the simulated label noise).
        timing_pairs: Crop pairs that differ mainly in timing.
        layout: ``stac`` (a STAC catalogue, ``catalog/catalog.json``) or ``one-grid``.
    """

    outdir: Path
    stack: Path
    truth: Path
    test_truth: Path
    labels: Path
    test_fields: Path
    classes_path: Path
    size: int
    dates: tuple[str, ...]
    bands: tuple[str, ...]
    crs: str
    transform: tuple[float, ...]
    classes: ClassTable
    n_fields: int
    n_labelled: int
    n_test: int
    cloud_cover: tuple[float, ...]
    nodata_fraction: float
    mislabelled: tuple[int, ...] = ()
    timing_pairs: tuple[tuple[str, str], ...] = TIMING_PAIRS
    layout: str = "stac"

    def summary(self) -> str:
        """One line for the CLI."""
        return (
            f"simulated {self.size}x{self.size} px scene, {len(self.dates)} dates "
            f"({self.dates[0]}..{self.dates[-1]}), {len(self.classes)} classes, "
            f"{self.n_labelled + self.n_test} fields ({self.n_labelled} labelled, {len(self.mislabelled)} of them "
            f"under a wrong name; {self.n_test} held out) "
            f"-> {self.stack}"
        )

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-able description with paths relative to ``outdir`` (so it is reproducible)."""
        return {
            "format": "cropseq-demo-scene",
            "layout": self.layout,
            "size": self.size,
            "pixel_size": PIXEL_SIZE,
            "crs": self.crs,
            "transform": list(self.transform),
            "bands": list(self.bands),
            "dates": list(self.dates),
            "cloud_cover": [round(c, 4) for c in self.cloud_cover],
            "nodata_fraction": round(self.nodata_fraction, 4),
            "n_fields": self.n_fields,
            "n_labelled": self.n_labelled,
            "n_test": self.n_test,
            "mislabelled_fields": list(self.mislabelled),
            "classes": self.classes.to_records(),
            "timing_pairs": [list(p) for p in self.timing_pairs],
            "files": {
                "stack": "stack.yaml",
                **({"catalog": "catalog/catalog.json"} if self.layout == "stac" else {}),
                "truth": "truth.tif",
                "test_truth": "test_truth.tif",
                "classes": "classes.yaml",
                "labels": "labels.gpkg",
                "test_fields": "test_fields.gpkg",
            },
        }


# --------------------------------------------------------------------------------------
# Random streams and smooth noise
# --------------------------------------------------------------------------------------


def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent generator for one purpose (key), stable whatever else is drawn."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=tuple(key)))


class _Lattice:
    """Value noise: random values on a coarse lattice, quintic-smoothstep interpolated.

    Evaluated on any (rows x cols) grid of pixel coordinates, so a row block gives exactly
    the values the whole scene would: blocks are seamless and independent of block size.
    """

    def __init__(self, rng: np.random.Generator, spacing: float, extent: float, margin: float = 0.0):
        self.spacing = float(spacing)
        self.margin = float(margin)
        self.offset = rng.uniform(0.0, spacing, size=2)  # keeps octaves' grids unaligned
        n = int(math.ceil((extent + 2 * margin + spacing) / spacing)) + 2
        self.values = rng.standard_normal((n, n), dtype=np.float32)

    def _coords(self, p: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        u = (np.asarray(p, dtype=np.float64) + 0.5 + self.margin + self.offset[axis]) / self.spacing
        i = np.floor(u).astype(np.intp)
        f = u - i
        s = (f * f * f * (f * (f * 6.0 - 15.0) + 10.0)).astype(np.float32)
        return i, s

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Noise (float32, ~unit scale) at every (row, col) of the grid ``rows x cols``."""
        i, sy = self._coords(rows, 0)
        j, sx = self._coords(cols, 1)
        lo = int(i.min())
        sub = self.values[lo : int(i.max()) + 2]
        along = sub[:, j] * (1.0 - sx) + sub[:, j + 1] * sx  # interpolate the few lattice rows
        k = i - lo
        return along[k] * (1.0 - sy)[:, None] + along[k + 1] * sy[:, None]


class _Fractal:
    """Sum of value-noise octaves (fractal Brownian-like), normalised to ~unit variance."""

    def __init__(self, rng: np.random.Generator, spacings: Sequence[float], extent: float,
                 margin: float = 0.0, gain: float = 0.5):
        self.octaves = [_Lattice(rng, s, extent, margin) for s in spacings]
        self.amps = [gain**k for k in range(len(spacings))]
        # Smoothstep interpolation of unit-variance values has variance ~0.5 per octave.
        self.norm = 1.0 / math.sqrt(0.5 * sum(a * a for a in self.amps))

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = self.octaves[0](rows, cols) * np.float32(self.amps[0] * self.norm)
        for lat, a in zip(self.octaves[1:], self.amps[1:]):
            out += lat(rows, cols) * np.float32(a * self.norm)
        return out


def _logistic(t: float, mid: np.ndarray, rate: np.ndarray | float) -> np.ndarray:
    # tanh form: no overflow for far-away midpoints.
    return 0.5 * (1.0 + np.tanh((t - mid) / (2.0 * rate)))


# --------------------------------------------------------------------------------------
# Landscape: parcels, classes, labels
# --------------------------------------------------------------------------------------


@dataclass
class _Landscape:
    polys_px: np.ndarray  # shapely polygons in pixel space (x = col, y = row)
    bounds_px: np.ndarray  # (n, 4) minx, miny, maxx, maxy
    cls_index: np.ndarray  # (n,) index into _CLASSES
    eligible: np.ndarray  # (n,) bool: enough area inside the swath to label or score
    labelled: np.ndarray  # (n,) bool
    label_cls: np.ndarray  # (n,) class index written to labels.gpkg (cls_index, with noise)
    edge_a: float  # swath edge: valid iff col + 0.5 < edge_a + edge_b * (row + 0.5)
    edge_b: float
    field_params: dict[str, np.ndarray] = field(default_factory=dict)


def _swath_edge(rng: np.random.Generator, size: int) -> tuple[float, float]:
    # A Sentinel-2 swath edge runs ~12 degrees off north; it cuts the top-right corner.
    a = size * rng.uniform(0.76, 0.84)
    b = math.tan(math.radians(rng.uniform(11.0, 14.0)))
    return a, b


def _parcels(rng: np.random.Generator, size: int, cell: int) -> np.ndarray:
    """Jittered grid of quadrilateral cells, some split into 2-3 strips, clipped to the scene."""
    import shapely

    n = int(math.ceil(size / cell)) + 1
    start = -rng.uniform(0.2, 0.8) * cell  # the grid overhangs the scene on every side
    gy, gx = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    vx = start + gx * cell + rng.uniform(-0.22, 0.22, gx.shape) * cell
    vy = start + gy * cell + rng.uniform(-0.22, 0.22, gy.shape) * cell
    # Cell corners: top-left, top-right, bottom-right, bottom-left.
    p00 = np.stack([vx[:-1, :-1], vy[:-1, :-1]], -1).reshape(-1, 2)
    p01 = np.stack([vx[:-1, 1:], vy[:-1, 1:]], -1).reshape(-1, 2)
    p11 = np.stack([vx[1:, 1:], vy[1:, 1:]], -1).reshape(-1, 2)
    p10 = np.stack([vx[1:, :-1], vy[1:, :-1]], -1).reshape(-1, 2)
    m = len(p00)
    n_strips = rng.choice([1, 1, 1, 2, 2, 3], size=m)
    vertical = rng.random(m) < 0.5
    # Cut positions along the cell, 0 .. 1, shared by neighbouring strips (no gap, no overlap).
    cuts = np.arange(4.0)[None, :] + np.concatenate(
        [np.zeros((m, 1)), rng.uniform(-0.15, 0.15, (m, 2)), np.zeros((m, 1))], axis=1)
    cuts = np.minimum(cuts / n_strips[:, None], 1.0)
    quads = []
    for k in range(3):  # strip k of every cell that has more than k strips
        sel = n_strips > k
        f0 = cuts[sel, k][:, None]
        f1 = np.where(n_strips[sel] == k + 1, 1.0, cuts[sel, k + 1])[:, None]
        a, b, c, d = p00[sel], p01[sel], p11[sel], p10[sel]
        v = vertical[sel][:, None]
        # Vertical strips cut the top and bottom edges; horizontal strips the left and right.
        tl = np.where(v, a + f0 * (b - a), a + f0 * (d - a))
        tr = np.where(v, a + f1 * (b - a), b + f0 * (c - b))
        br = np.where(v, d + f1 * (c - d), b + f1 * (c - b))
        bl = np.where(v, d + f0 * (c - d), a + f1 * (d - a))
        ring = np.stack([tl, tr, br, bl, tl], axis=1)
        order = np.flatnonzero(sel)
        quads.append((order, k, ring))
    # Keep parcels in a stable, spatial order (cell, then strip).
    keys = np.concatenate([o * 3 + k for o, k, _ in quads])
    rings = np.concatenate([r for _, _, r in quads])[np.argsort(keys, kind="stable")]
    polys = shapely.polygons(rings)
    polys = shapely.clip_by_rect(polys, 0.0, 0.0, float(size), float(size))
    keep = ~shapely.is_empty(polys) & (shapely.area(polys) > 1e-6)
    return polys[keep]


def _valid_region(size: int, a: float, b: float) -> Any:
    import shapely

    wedge_free = shapely.Polygon([(-1, -1), (a - b, -1), (a + b * (size + 1), size + 1), (-1, size + 1)])
    return shapely.intersection(shapely.box(0, 0, size, size), wedge_free)


def _assign_classes(rng: np.random.Generator, centroids: np.ndarray, eligible: np.ndarray,
                    size: int) -> np.ndarray:
    """Static classes as spatial clusters (forest patches, a lake, a village); crops at random."""
    n = len(centroids)
    cls = np.full(n, -1, dtype=np.int64)
    area_km2 = (size * PIXEL_SIZE / 1000.0) ** 2
    idx_elig = np.flatnonzero(eligible)
    n_elig = len(idx_elig)
    crop_idx = [i for i, c in enumerate(_CLASSES) if c.crop]
    static_idx = [i for i, c in enumerate(_CLASSES) if not c.crop]
    per_cluster_km2 = {"forest": 15.0, "water": 40.0, "urban": 25.0}
    for ci in static_idx:
        spec = _CLASSES[ci]
        target = max(2, int(round(spec.weight * n_elig)))
        k = max(1, int(round(area_km2 / per_cluster_km2[spec.name])))
        sizes = np.full(k, target // k) + (np.arange(k) < target % k)
        for s in sizes:
            free = idx_elig[cls[idx_elig] < 0]
            if len(free) == 0 or s <= 0:
                break
            centre = centroids[rng.choice(free)]
            d = centroids[free] - centre
            if spec.name == "water":  # elongated lake / river reach
                th = rng.uniform(0, math.pi)
                u = d[:, 0] * math.cos(th) + d[:, 1] * math.sin(th)
                w = -d[:, 0] * math.sin(th) + d[:, 1] * math.cos(th)
                dist = u**2 + (3.0 * w) ** 2
            else:
                dist = (d**2).sum(1)
            cls[free[np.argsort(dist, kind="stable")[: int(s)]]] = ci
    # Every crop gets at least two eligible parcels (one to label, one to score) when possible.
    free = idx_elig[cls[idx_elig] < 0]
    free = free[rng.permutation(len(free))]
    reps = 2 if len(free) >= 2 * len(crop_idx) else 1
    seeded = min(len(free), reps * len(crop_idx))
    cls[free[:seeded]] = np.tile(crop_idx, reps)[:seeded]
    rest = np.flatnonzero(cls < 0)
    w = np.array([_CLASSES[i].weight for i in crop_idx])
    cls[rest] = np.asarray(crop_idx)[rng.choice(len(crop_idx), size=len(rest), p=w / w.sum())]
    return cls


def _choose_labelled(rng: np.random.Generator, cls: np.ndarray, eligible: np.ndarray,
                     fraction: float) -> np.ndarray:
    """Per class, label ``fraction`` of the eligible parcels.

    Keeps >= 1 labelled and, when the fraction is below 1, >= 1 held out (so every class can be
    trained and scored).
    """
    labelled = np.zeros(len(cls), dtype=bool)
    for ci in range(len(_CLASSES)):
        idx = np.flatnonzero(eligible & (cls == ci))
        if len(idx) == 0:
            continue
        hi = len(idx) - 1 if (fraction < 1.0 and len(idx) >= 2) else len(idx)
        k = int(np.clip(round(fraction * len(idx)), 1, hi))
        labelled[rng.choice(idx, size=k, replace=False)] = True
    return labelled


def _noisy_labels(rng: np.random.Generator, cls: np.ndarray, labelled: np.ndarray,
                  share: float) -> np.ndarray:
    """The class each parcel is *labelled* with: its true class, except for ``share`` of the crops.

    That share of the labelled crop parcels gets another crop's name (a surveyor's or a
    farmer's declaration error). Every class keeps at least one correctly labelled parcel.
    """
    out = cls.copy()
    crop = np.array([c.crop for c in _CLASSES])[cls]
    cand = np.flatnonzero(labelled & crop)
    k = int(round(share * len(cand)))
    if k == 0:
        return out
    crop_idx = np.array([i for i, c in enumerate(_CLASSES) if c.crop])
    correct = np.bincount(cls[cand], minlength=len(_CLASSES))
    for i in rng.permutation(cand):
        if k == 0:
            break
        if correct[cls[i]] < 2:  # the class's last correct label stays
            continue
        correct[cls[i]] -= 1
        out[i] = rng.choice(crop_idx[crop_idx != cls[i]])
        k -= 1
    return out


def _field_params(rng: np.random.Generator, cls: np.ndarray) -> dict[str, np.ndarray]:
    """Per-parcel phenology: the class curve with per-field shifts of timing and amplitude."""
    n = len(cls)

    def get(name: str) -> np.ndarray:
        return np.array([getattr(c.pheno, name) for c in _CLASSES], dtype=np.float64)[cls]

    jit = get("jitter")
    s_up = rng.uniform(-1, 1, n) * jit  # sowing / green-up shift
    s_down = 0.4 * s_up + rng.uniform(-0.5, 0.5, n) * jit  # late sowing -> late senescence
    s_harv = s_down + rng.uniform(-3, 6, n) * (jit > 0)
    # Variety, soil and management: some fields never close their canopy (a dry corner, a
    # poor stand), others green up or senesce fast or slowly.
    amp = rng.uniform(0.72, 1.04, n)
    p: dict[str, np.ndarray] = {}
    p["pre"] = get("pre") * amp
    p["peak"] = np.minimum(get("peak") * amp, 0.97)
    p["post"] = get("post") * amp
    p["up"], p["r_up"] = get("up") + s_up, get("r_up") * rng.uniform(0.7, 1.5, n)
    p["down"], p["r_down"] = get("down") + s_down, get("r_down") * rng.uniform(0.7, 1.5, n)
    p["dry"] = get("dry") * rng.uniform(0.9, 1.05, n)
    p["harvest"] = get("harvest") + s_harv
    p["stubble"] = get("stubble") * rng.uniform(0.7, 1.2, n)
    p["plough"] = get("plough") + s_harv + rng.uniform(-5, 25, n)
    p["flower"] = get("flower") * rng.uniform(0.8, 1.1, n)
    p["flower_t"] = get("flower_t") + s_up * 0.5
    p["flower_w"] = get("flower_w")
    catch = rng.random(n) < get("catch_p")
    p["catch_amp"] = np.where(catch, rng.uniform(0.3, 0.6, n), 0.0)
    p["catch_t"] = np.where(catch, p["harvest"] + rng.uniform(25, 50, n), _FAR)
    p["plough"] = np.where(catch, np.minimum(p["plough"], p["catch_t"] - 12), p["plough"])
    table = np.full((len(_CLASSES), 3), _FAR)
    for ci, c in enumerate(_CLASSES):
        table[ci, : len(c.pheno.cuts)] = c.pheno.cuts
    cuts = table[cls] + rng.uniform(-10, 10, (n, 3))
    cuts[:, 2] += np.where(rng.random(n) < 0.4, _FAR, 0.0)  # not every meadow gets a third cut
    p["cuts"] = np.minimum(cuts, _FAR)
    p["cut_depth"] = rng.uniform(0.5, 0.7, n)
    return p


def _cover(p: dict[str, np.ndarray], t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Green, dry and flower cover of every parcel on day of year ``t`` (float32 arrays)."""
    L = _logistic
    g = p["pre"] + (p["peak"] - p["pre"]) * L(t, p["up"], p["r_up"]) \
        - (p["peak"] - p["post"]) * L(t, p["down"], p["r_down"])
    since = np.maximum(t - p["cuts"], 0.0)  # (n, 3) days since each mowing
    cut_on = L(t, p["cuts"], 0.7)
    g = g * np.prod(1.0 - p["cut_depth"][:, None] * cut_on * np.exp(-since / 14.0), axis=1)
    hay = (0.35 * cut_on * np.exp(-since / 5.0)).sum(axis=1)
    g = g + p["catch_amp"] * L(t, p["catch_t"], 6.0)
    harv = L(t, p["harvest"], 1.5)
    d = p["dry"] * L(t, p["down"], p["r_down"]) * (1.0 - harv) \
        + p["stubble"] * harv * (1.0 - L(t, p["plough"], 1.5)) + hay
    fl = p["flower"] * np.exp(-0.5 * ((t - p["flower_t"]) / p["flower_w"]) ** 2)
    g = np.maximum(g - fl, 0.0)  # petals cover the canopy
    return g.astype(np.float32), np.maximum(d, 0).astype(np.float32), fl.astype(np.float32)


def _build_landscape(seed: int, size: int, cell: int, label_fraction: float,
                     label_noise: float = 0.0) -> _Landscape:
    import shapely

    geo = _rng(seed, 1)
    edge_a, edge_b = _swath_edge(geo, size)
    polys = _parcels(geo, size, cell)
    valid = _valid_region(size, edge_a, edge_b)
    inside = shapely.area(shapely.intersection(polys, valid))
    eligible = inside >= 0.25 * cell * cell  # enough pixels to label, sample and score
    centroids = shapely.get_coordinates(shapely.centroid(polys))
    cls = _assign_classes(_rng(seed, 2), centroids, eligible, size)
    labelled = _choose_labelled(_rng(seed, 3), cls, eligible, label_fraction)
    label_cls = _noisy_labels(_rng(seed, 11), cls, eligible & labelled, label_noise)
    land = _Landscape(polys, shapely.bounds(polys), cls, eligible, labelled, label_cls, edge_a, edge_b)
    land.field_params = _field_params(_rng(seed, 4), cls)
    return land


# --------------------------------------------------------------------------------------
# Dates and per-date conditions
# --------------------------------------------------------------------------------------


def _dates(seed: int, n_dates: int) -> list[date]:
    """``n_dates`` of the 5-day revisit slots, always the first and the last (gaps = missing)."""
    rng = _rng(seed, 5)
    inner = np.sort(rng.choice(np.arange(1, N_SLOTS - 1), size=n_dates - 2, replace=False))
    slots = [0, *inner.tolist(), N_SLOTS - 1]
    return [SEASON_START + timedelta(days=REVISIT_DAYS * int(s)) for s in slots]


@dataclass
class _DateCond:
    doy: float
    cover: float  # target cloud fraction (0 = clear)
    clouds: _Fractal | None
    tau: float  # cloud threshold on the noise
    shadow: tuple[float, float]  # (rows, cols) from a shadow to its cloud
    moisture: float  # soil darkening after rain
    gain: np.ndarray  # (6,) residual atmospheric gain per band
    offset: np.ndarray  # (6,) residual path radiance
    turbidity: float


def _conditions(seed: int, dates: list[date], size: int) -> list[_DateCond]:
    n = len(dates)
    rng = _rng(seed, 6)
    # Cloud regime per date: one nearly overcast, a few 10-60 %, some with a few %, rest clear.
    covers = np.zeros(n)
    order = rng.permutation(np.arange(1, n - 1))  # the season's first/last dates stay usable
    n_heavy = max(2, int(round(0.15 * n)))
    n_light = int(round(0.3 * n))
    covers[order[0]] = rng.uniform(0.92, 0.98)
    covers[order[1 : 1 + n_heavy]] = rng.uniform(0.10, 0.60, n_heavy)
    light = order[1 + n_heavy : 1 + n_heavy + n_light]
    covers[light] = rng.uniform(0.05, 0.25, len(light))
    # Light dates have scattered small cumulus (a field or less across), so every field
    # misses its own set of dates; fronts on the other dates cover whole neighbourhoods.
    scattered = np.zeros(n, dtype=bool)
    scattered[light] = True
    out = []
    for k, d in enumerate(dates):
        doy = float(d.timetuple().tm_yday)
        # Sun zenith at a 10:30 overpass, ~47 N; cloud tops 0.8-2 km: shadow 0.5-3 km away.
        zen = math.radians(47.0 - 23.44 * math.sin(2 * math.pi * (doy - 81) / 365.0) + 6.0)
        dist_px = rng.uniform(800.0, 2000.0) * math.tan(zen) / PIXEL_SIZE
        shadow = (dist_px * 0.87, dist_px * 0.5)  # sun in the south-south-east
        clouds, tau = None, math.inf
        if covers[k] > 0:
            crng = _rng(seed, 7, k)
            spacings = (20.0, 10.0, 5.0) if scattered[k] else (96.0, 48.0, 24.0, 12.0)
            clouds = _Fractal(crng, spacings, size, margin=dist_px + 8.0)
            step = max(1, size // 256)
            probe = np.arange(0, size, step, dtype=np.float64) + step / 2.0 - 0.5
            # The masked share (cloud or its shadow) hits the target: threshold the union.
            union = np.maximum(clouds(probe, probe), clouds(probe + shadow[0], probe + shadow[1]))
            tau = float(np.quantile(union, 1.0 - covers[k]))
        out.append(_DateCond(
            doy=doy, cover=float(covers[k]), clouds=clouds, tau=tau, shadow=shadow,
            moisture=float(rng.uniform(0.75, 1.0) if rng.random() < 0.35 else rng.uniform(0.95, 1.0)),
            gain=(1.0 + rng.normal(0.0, 0.015, 6)).astype(np.float32),
            offset=(rng.normal(0.0, 1.0, 6) * np.array([0.003, 0.002, 0.0015, 0.001, 0.0005, 0.0005])).astype(np.float32),
            turbidity=float(rng.uniform(0.85, 1.35)),
        ))
    return out


# --------------------------------------------------------------------------------------
# Rendering one row block
# --------------------------------------------------------------------------------------


@dataclass
class _Block:
    r0: int
    rows: np.ndarray  # (h,) float row indices
    cols: np.ndarray  # (w,)
    edge: np.ndarray  # (h,) first column outside the swath, per row
    fid: np.ndarray  # (h, w) parcel index (intp)
    cls: np.ndarray  # (h, w) class index (intp)
    nfid: np.ndarray  # (h, w) parcel mixed into the pixel (a neighbour's at field edges, else fid)
    mix: np.ndarray  # (h, w) float32 share of nfid in the pixel (0 inside a field)
    vigour: np.ndarray  # (h, w) green-cover multiplier (within-field variability)
    bg: np.ndarray  # (6, h, w) background reflectance (class spectrum x brightness)
    green: np.ndarray  # (6, h, w) green-vegetation spectrum of the pixel's class
    dry: np.ndarray  # (6, h, w) dry-vegetation spectrum

    @property
    def valid(self) -> np.ndarray:
        """(h, w) bool: pixel inside the swath."""
        return np.arange(len(self.cols))[None, :] < self.edge[:, None]


def _fill_gaps(burned: np.ndarray) -> np.ndarray:
    """Give unburned pixels (0) the parcel of the nearest burned pixel in their row.

    Parcels tile the scene, so only a pixel centre exactly on a shared edge can be missed
    by the rasteriser; its left (or right) neighbour's parcel is then as right as any.
    """
    h, w = burned.shape
    pos = np.where(burned > 0, np.arange(w), 0)
    np.maximum.accumulate(pos, axis=1, out=pos)  # last burned column to the left
    out = np.take_along_axis(burned, pos, axis=1)
    if not out.all():  # leading gaps: take the first burned pixel to the right
        rpos = np.where(out[:, ::-1] > 0, np.arange(w), 0)
        np.maximum.accumulate(rpos, axis=1, out=rpos)
        out = np.take_along_axis(out[:, ::-1], rpos, axis=1)[:, ::-1]
    return np.ascontiguousarray(out)


def _edge_neighbour(fid: np.ndarray, top: int, h: int) -> np.ndarray:
    """Per pixel of rows ``top:top+h`` of ``fid``: the parcel of its first 4-neighbour in another parcel.

    Neighbours are tried above, below, left, right; a pixel inside a field gets its own parcel.
    """
    own = fid[top : top + h]
    out = own.copy()
    pad = np.pad(fid, 1, mode="edge")  # the scene border has no neighbour: edge = own
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        nb = pad[1 + top + dr : 1 + top + dr + h, 1 + dc : 1 + dc + own.shape[1]]
        take = (out == own) & (nb != own)
        out[take] = nb[take]
    return out


def _mixed(per_field: np.ndarray, blk: _Block) -> np.ndarray:
    """A per-parcel value on the block's pixels, edge pixels mixed with their neighbour's."""
    v = np.take(per_field, blk.fid)
    edge = blk.mix > 0
    if edge.any():
        v[edge] += blk.mix[edge] * (np.take(per_field, blk.nfid[edge]) - v[edge])
    return v


def _unit_noise(gen: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Zero-mean, unit-variance float32 noise, ~5x cheaper than ``standard_normal``.

    A sum of three uniform bytes (Irwin-Hall): bell-shaped, bounded at +-3 sigma, which is
    all sensor noise needs; drawing Gaussians was the single largest cost of a scene.
    """
    n = shape[0] * shape[1]
    b = np.frombuffer(gen.bytes(3 * n), dtype=np.uint8).reshape(3, *shape)
    z = np.add(b[0], b[1], dtype=np.float32)
    z += b[2]
    z -= np.float32(382.5)
    z *= np.float32(1.0 / 127.998)
    return z


def _fast_rng(seed: int, *key: int) -> np.random.Generator:
    """Like :func:`_rng` with the faster SFC64 bit generator, for bulk pixel noise."""
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence(entropy=seed, spawn_key=tuple(key))))


def _with_red_edge(a: np.ndarray) -> np.ndarray:
    """Band values (B02 B03 B04 B08 B11 B12 first) plus B05 last.

    B05 is a quarter of the way from red to NIR, where the red edge of vegetation starts
    (soil, water and clouds, flat there, get about their red and NIR mean).
    """
    a = np.asarray(a, np.float32)
    return np.concatenate([a, (a[2] + np.float32(0.25) * (a[3] - a[2]))[None]], axis=0)


class _Renderer:
    """Turns the landscape and date conditions into DN and mask arrays, block by block."""

    def __init__(self, seed: int, size: int, land: _Landscape, conds: list[_DateCond], red_edge: bool = False):
        self.seed, self.size, self.land, self.conds = seed, size, land, conds
        # B05 (red edge, 705 nm), rendered last so the six other bands' noise draws, and
        # so their values, are the same with or without it.
        self.n_bands = len(BANDS) + (1 if red_edge else 0)
        srng = _rng(seed, 8)
        self.vig_noise = _Fractal(srng, (24.0, 8.0), size)
        self.soil_noise = _Fractal(srng, (48.0, 12.0), size)
        # Field-to-field brightness: soils differ a lot, forest stands a little, a lake not.
        spread = np.array([{"soil": 0.2, "forest_floor": 0.08, "urban": 0.1, "water": 0.0}[c.background]
                           for c in _CLASSES])[land.cls_index]
        self.field_bright = (1.0 + spread * srng.uniform(-1.0, 1.0, len(spread))).astype(np.float32)
        self.texture = np.array([0.25 if c.background == "urban" else 0.02 for c in _CLASSES], np.float32)
        self.is_urban = np.array([c.background == "urban" for c in _CLASSES])
        self.bg = np.array([_BACKGROUNDS[c.background] for c in _CLASSES], np.float32).T.copy()  # (6, k)
        self.green = np.array([c.green for c in _CLASSES], np.float32).T.copy()
        self.dry = np.array([c.dry for c in _CLASSES], np.float32).T.copy()
        self.flower = np.asarray(_FLOWER, np.float32)
        self.cloud = np.asarray(_CLOUD, np.float32)
        if red_edge:
            self.bg, self.green, self.dry = (_with_red_edge(a) for a in (self.bg, self.green, self.dry))
            self.flower, self.cloud = _with_red_edge(self.flower), _with_red_edge(self.cloud)
        # Per date and class: background scale for the visible and the infrared bands
        # (wet soil is darker after rain; turbid water is brighter in the visible).
        is_soil = np.array([c.background == "soil" for c in _CLASSES])
        is_water = np.array([c.background == "water" for c in _CLASSES])
        self.bgscale = []
        for c in conds:
            base = np.where(is_soil, c.moisture, 1.0).astype(np.float32)
            self.bgscale.append((np.where(is_water, c.turbidity, base).astype(np.float32), base))
        self.cover = [_cover(land.field_params, c.doy) for c in conds]  # per date, per parcel

    def block(self, r0: int, r1: int) -> _Block:
        """Everything about rows ``r0:r1`` that does not change with the date."""
        from affine import Affine
        from rasterio import features

        land, size = self.land, self.size
        h = r1 - r0
        rows = np.arange(r0, r1, dtype=np.float64)
        cols = np.arange(size, dtype=np.float64)
        b = land.bounds_px
        # One row of halo on each side: edge pixels see their neighbours in other blocks.
        h0, h1 = max(r0 - 1, 0), min(r1 + 1, size)
        sel = np.flatnonzero((b[:, 3] > h0) & (b[:, 1] < h1))
        burned = features.rasterize(
            zip(land.polys_px[sel], (sel + 1).tolist()), out_shape=(h1 - h0, size),
            transform=Affine(1.0, 0.0, 0.0, 0.0, 1.0, float(h0)), fill=0, dtype="int32",
        )
        if not burned.all():
            burned = _fill_gaps(burned)
        fid_halo = burned.astype(np.intp) - 1
        fid = fid_halo[r0 - h0 : r0 - h0 + h]
        nfid = _edge_neighbour(fid_halo, r0 - h0, h)
        # Pixel centre col + 0.5 < edge(row + 0.5)  <=>  col < ceil(edge - 0.5).
        edge = np.clip(np.ceil(land.edge_a + land.edge_b * (rows + 0.5) - 0.5), 0, size).astype(np.intp)
        cls = np.take(land.cls_index, fid)
        white = _unit_noise(_fast_rng(self.seed, 9, r0), (h, size))
        bright = np.take(self.field_bright, fid)
        bright *= 1.0 + 0.08 * self.soil_noise(rows, cols) + np.take(self.texture, cls) * white
        np.maximum(bright, 0.05, out=bright)
        # A 10 m pixel on a field edge sees both fields: 15-45 % of the neighbour's surface.
        mix = np.where(nfid != fid, np.clip(0.3 + 0.1 * white, 0.15, 0.45), 0.0).astype(np.float32)
        # Smooth patches plus pixel-to-pixel variability (plant density, weeds, gaps in the
        # stand): one pixel alone is a noisy sample of its field, as on real 10 m imagery.
        vigour = 1.0 + 0.07 * self.vig_noise(rows, cols) + 0.08 * white
        # Urban vegetation (lawns, street trees) comes in patches, not evenly mixed.
        urb = np.take(self.is_urban, cls)
        vigour[urb] = np.clip(1.0 + 3.0 * white[urb], 0.0, 5.0)
        np.maximum(vigour, 0.0, out=vigour)
        nb = self.n_bands
        bg = np.empty((nb, h, size), np.float32)
        green = np.empty_like(bg)
        dry = np.empty_like(bg)
        ncls = np.take(land.cls_index, nfid)
        nbright = np.take(self.field_bright, nfid)
        for bi in range(nb):
            # Spectra of the mixed pixel: the share-weighted mean of both fields' spectra.
            for arr, table in ((bg, self.bg[bi]), (green, self.green[bi]), (dry, self.dry[bi])):
                own, other = np.take(table, cls), np.take(table, ncls)
                if arr is bg:
                    own, other = own * bright, other * nbright
                arr[bi] = own + mix * (other - own)
        return _Block(r0, rows, cols, edge, fid, cls, nfid, mix, vigour.astype(np.float32), bg, green, dry)

    def _fractions(self, blk: _Block, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        """Cover fractions of date ``k`` in one block.

        Green, dry, flowers (``None``: no flowers that date) and the soil share scaled for the
        visible and infrared bands.
        """
        g_f, d_f, fl_f = self.cover[k]
        g = _mixed(g_f, blk)
        g *= blk.vigour
        d = _mixed(d_f, blk)
        d *= np.minimum(blk.vigour, np.float32(1.2))
        has_fl = bool(fl_f.max() > 1e-4)
        fl = _mixed(fl_f, blk) if has_fl else None
        tot = g + d
        if fl is not None:
            tot += fl
        over = tot > 0.98
        if over.any():  # keep the fractions a partition of the pixel
            s = np.where(over, np.float32(0.98) / np.maximum(tot, np.float32(1e-6)), np.float32(1.0))
            g *= s
            d *= s
            if fl is not None:
                fl *= s
        np.subtract(1.0, tot, out=tot)
        np.minimum(tot, 1.0, out=tot)
        np.maximum(tot, 0.02, out=tot)
        soil = tot
        vis_scale, ir_scale = self.bgscale[k]
        soil_vis = soil * np.take(vis_scale, blk.cls)
        # Turbidity only touches water, so most blocks share one scaled soil for all bands.
        soil_ir = soil_vis if np.array_equal(vis_scale, ir_scale) else soil * np.take(ir_scale, blk.cls)
        return g, d, fl, soil_vis, soil_ir

    def render(self, blk: _Block, k: int) -> tuple[np.ndarray, np.ndarray]:
        """DN (6, h, w) uint16 and mask (h, w) uint8 of date ``k`` for one block."""
        cond = self.conds[k]
        g, d, fl, soil_vis, soil_ir = self._fractions(blk, k)
        h, w = blk.fid.shape
        mask = np.zeros((h, w), np.uint8)
        sky = _sky(cond, blk, mask)
        gen = _fast_rng(self.seed, 10, k, blk.r0)
        dn = np.empty((self.n_bands, h, w), np.uint16)
        refl = np.empty((h, w), np.float32)
        tmp = np.empty((h, w), np.float32)
        gain, offset = _with_red_edge(cond.gain), _with_red_edge(cond.offset)
        for bi in range(self.n_bands):
            np.multiply(blk.bg[bi], soil_vis if bi < 3 else soil_ir, out=refl)
            np.multiply(blk.green[bi], g, out=tmp)
            refl += tmp
            np.multiply(blk.dry[bi], d, out=tmp)
            refl += tmp
            if fl is not None:
                np.multiply(fl, self.flower[bi], out=tmp)
                refl += tmp
            refl *= np.float32(gain[bi] * 10000.0)  # to DN from here on
            refl += np.float32(offset[bi] * 10000.0)
            if sky is not None:
                sky.apply(refl, tmp, self.cloud[bi])
            # Sensor noise: ~0.003 reflectance plus 2 % of the signal.
            np.multiply(refl, np.float32(0.02), out=tmp)
            tmp += np.float32(30.0)
            tmp *= _unit_noise(gen, (h, w))
            refl += tmp
            np.rint(refl, out=refl)
            np.clip(refl, 1.0, 65535.0, out=refl)  # 0 is reserved for nodata
            np.copyto(dn[bi], refl, casting="unsafe")
        for r in np.flatnonzero(blk.edge < w):  # the swath edge: nodata on every band
            dn[:, r, blk.edge[r]:] = NODATA
            mask[r, blk.edge[r]:] = 0
        return dn, mask


@dataclass(frozen=True)
class _Sky:
    """The clouds of one date over one block: opacity, shadow dimming and cloud texture."""

    alpha: np.ndarray  # (h, w) float32 share of the cloud in the pixel
    shade: np.ndarray  # (h, w) float32 dimming of the surface in the cloud's shadow
    ctex: np.ndarray  # (h, w) cloud brightness texture (0.9..1.1)

    def apply(self, refl: np.ndarray, tmp: np.ndarray, cloud_reflectance: float) -> None:
        """Shade ``refl`` (DN, in place) and blend in the cloud; ``tmp`` is scratch space."""
        refl *= self.shade
        np.multiply(self.ctex, np.float32(cloud_reflectance * 10000.0), out=tmp)
        tmp -= refl
        tmp *= self.alpha
        refl += tmp


def _sky(cond: _DateCond, blk: _Block, mask: np.ndarray) -> _Sky | None:
    """The clouds of a date over a block (``None``: a clear date).

    Marks ``mask`` (1 cloud, 2 cloud shadow) in place.
    """
    if cond.clouds is None:
        return None
    n = cond.clouds(blk.rows, blk.cols)
    n -= np.float32(cond.tau)
    cloud = n > 0
    # Thick core, semi-transparent rim, and an unmasked haze just outside the mask.
    alpha = np.where(cloud, np.clip(0.6 + n / np.float32(0.6), 0.6, 1.0),
                     0.3 * np.clip(1.0 + n / np.float32(0.25), 0.0, 1.0) ** 2).astype(np.float32)
    sh = cond.clouds(blk.rows + cond.shadow[0], blk.cols + cond.shadow[1])
    shadow = sh > np.float32(cond.tau)
    shade = np.where(shadow & ~cloud, np.float32(0.4), np.float32(1.0))
    mask[shadow] = 2
    mask[cloud] = 1
    ctex = np.tanh(n)
    ctex *= np.float32(0.1)
    ctex += np.float32(0.9)
    return _Sky(alpha, shade, ctex)


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


class _Writer:
    """Runs the GDAL writes on one background thread, in submission order.

    Compression is half the work of a scene; overlapping it with the numpy rendering
    uses the second core. One thread issues every write in the same order as a serial
    run would, so the files stay byte-identical. The bounded queue bounds memory.
    """

    def __init__(self, depth: int = 8) -> None:
        self._queue: queue.Queue[tuple[Any, tuple[Any, ...], dict[str, Any]] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="cropseq-simulate-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:  # after a failure, just drain the queue
                fn, args, kwargs = item
                try:
                    fn(*args, **kwargs)
                except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
                    self._error = e

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Queue ``fn(*args, **kwargs)``; raises the first error a write has met so far."""
        if self._error is not None:
            raise self._error
        self._queue.put((fn, args, kwargs))

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # Always wait for the thread: the datasets must not close under a pending write.
        self._queue.put(None)
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error


def _tile(size: int) -> int:
    # 256 x 256 tiles; a smaller scene gets one tile, rounded up to GDAL's multiple of 16.
    return TILE if size >= TILE else max(16, int(math.ceil(size / 16.0)) * 16)


def _validate(size: int, n_dates: int, seed: int, label_fraction: float, field_size: int,
              label_noise: float = 0.0) -> None:
    def bad(msg: str) -> CropseqError:
        return CropseqError(msg)

    if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise bad(f"size must be an integer from {MIN_SIZE} to {MAX_SIZE} pixels (got {size!r})")
    if not isinstance(n_dates, (int, np.integer)) or not MIN_DATES <= n_dates <= MAX_DATES:
        raise bad(f"dates must be an integer from {MIN_DATES} to {MAX_DATES} "
                  f"(5-day revisits from {SEASON_START} to {SEASON_END}; got {n_dates!r})")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise bad(f"seed must be a non-negative integer (got {seed!r})")
    if not (isinstance(label_fraction, (int, float)) and 0.0 < float(label_fraction) <= 1.0):
        raise bad(f"label fraction must be in (0, 1] (got {label_fraction!r})")
    if not isinstance(field_size, (int, np.integer)) or not MIN_FIELD <= field_size <= MAX_FIELD:
        raise bad(f"field size must be an integer from {MIN_FIELD} to {MAX_FIELD} pixels (got {field_size!r})")
    if not (isinstance(label_noise, (int, float)) and 0.0 <= float(label_noise) <= MAX_LABEL_NOISE):
        raise bad(f"label noise must be from 0 to {MAX_LABEL_NOISE} (got {label_noise!r})")


def _prepare_outdir(outdir: Path) -> Path:
    if outdir.exists() and not outdir.is_dir():
        raise CropseqError("output exists and is not a folder", outdir)
    try:
        outdir.stat()  # a symbolic-link loop says so here (mkdir would only say "File exists")
    except FileNotFoundError:
        pass
    except OSError as e:
        raise CropseqError(f"cannot create the output folder ({e.strerror})", outdir) from None
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CropseqError(f"cannot create the output folder ({e.strerror})", outdir) from None
    if not os.access(outdir, os.W_OK | os.X_OK):
        raise CropseqError("output folder is not writable", outdir)
    # No manifest while the scene is being (re)written: stack.yaml exists only once the
    # scene is complete, so a killed run never looks like a usable stack.
    with contextlib.suppress(FileNotFoundError):
        (outdir / "stack.yaml").unlink()
    shutil.rmtree(outdir / "catalog", ignore_errors=True)  # an earlier STAC scene's items
    return outdir


@contextlib.contextmanager
def _gpkg_env() -> Iterator[None]:
    """Pin the GeoPackage timestamps (``last_change``) so the files are reproducible."""
    import pyogrio

    key = "OGR_CURRENT_DATE"
    old = pyogrio.get_gdal_config_option(key)
    pyogrio.set_gdal_config_options({key: "2023-01-01T00:00:00.000Z"})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({key: old})


def _write_fields(path: Path, polys: np.ndarray, field_ids: np.ndarray, names: list[str]) -> None:
    import geopandas as gpd

    gdf = gpd.GeoDataFrame(
        {"field_id": field_ids.astype(np.int64), "label": names}, geometry=list(polys), crs=CRS
    )
    with atomic_path(path) as tmp, _gpkg_env():
        gdf.to_file(tmp, layer="fields", driver="GPKG", engine="pyogrio")

def _coarsen_mean(dn: np.ndarray) -> np.ndarray:
    """``(b, h, w)`` uint16 DN -> ``(b, ceil(h/2), ceil(w/2))``, averaged to 20 m.

    Each 20 m pixel is the mean of its valid (non-zero) 10 m pixels, 0 (nodata) when it has none.
    """
    b, h, w = dn.shape
    pad = np.zeros((b, h + h % 2, w + w % 2), np.float32)
    pad[:, :h, :w] = dn
    q = pad.reshape(b, pad.shape[1] // 2, 2, pad.shape[2] // 2, 2)
    total, n = q.sum(axis=(2, 4)), (q > 0).sum(axis=(2, 4))
    return np.where(n > 0, np.rint(total / np.maximum(n, 1)), 0).astype(np.uint16)


def _coarsen_any(a: np.ndarray) -> np.ndarray:
    """``(h, w)`` bool -> ``(ceil(h/2), ceil(w/2))``: True where any of the 2 x 2 pixels is."""
    h, w = a.shape
    pad = np.zeros((h + h % 2, w + w % 2), bool)
    pad[:h, :w] = a
    return np.any(pad.reshape(pad.shape[0] // 2, 2, pad.shape[1] // 2, 2), axis=(1, 3))


_WATER_INDEX = next(i for i, c in enumerate(_CLASSES) if c.name == "water")


def _scl(mask: np.ndarray, valid: np.ndarray, water: np.ndarray, b02: np.ndarray, b04: np.ndarray,
         b08: np.ndarray) -> np.ndarray:  # fmt: skip
    """The 20 m scene classification (L2A values) of a block from its 10 m cloud mask.

    A 20 m pixel is cloud (9 when bright, else 8) or cloud shadow (3) when any of its 10 m
    pixels is, as L2A's masks are dilated; else water (6), vegetation (4, NDVI > 0.4) or
    bare soil (5); no data (0) outside the swath.
    """
    cloud, shadow, inside, wet = (_coarsen_any(a) for a in (mask == 1, mask == 2, valid, water))
    red, nir = b04.astype(np.float32), b08.astype(np.float32)
    ndvi = (nir - red) / np.maximum(nir + red, np.float32(1.0))
    scl = np.where(ndvi > 0.4, SCL_VEGETATION, SCL_BARE).astype(np.uint8)
    scl[wet] = SCL_WATER
    scl[shadow] = SCL_SHADOW
    scl[cloud] = np.where(b02[cloud] > 3000, SCL_CLOUD_HIGH, SCL_CLOUD_MEDIUM)
    scl[~inside] = SCL_NO_DATA
    return scl


class _StacFiles:
    """The STAC layout: per date, B02 B03 B04 B08 at 10 m, B05 B11 B12 and SCL at 20 m.

    Blocks go to tiled GeoTIFFs in a scratch folder (windowed writes, like the one-grid
    layout, so memory stays bounded by the row block); :meth:`finish` copies them to COGs
    (with overviews: average for reflectance, nearest for SCL) and writes the catalogue.
    """

    def __init__(self, stack: contextlib.ExitStack, outdir: Path, dates: Sequence[date], common: dict[str, Any],
                 cover: Any) -> None:  # fmt: skip
        """Open the scratch rasters on ``stack``.

        When it closes without an error (the datasets closed first), :meth:`finish` runs with
        ``cover()``, then the scratch goes.
        """
        import rasterio
        from affine import Affine

        self.outdir, self.size = outdir, int(common["width"])
        self.half = (self.size + 1) // 2
        n_dates = len(dates)
        self.scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".scratch-", dir=outdir)))
        stack.push(lambda exc_type, exc, tb: self.finish(dates, cover()) if exc_type is None else None)
        t = common["transform"]
        p10 = dict(common, count=1, dtype="uint16", nodata=NODATA, predictor=2)
        p20 = dict(p10, width=self.half, height=self.half, transform=Affine(2 * t.a, 0.0, t.c, 0.0, 2 * t.e, t.f),
                   blockxsize=_tile(self.half), blockysize=_tile(self.half))  # fmt: skip
        profiles = {**{b: p10 for b in STAC_10M}, **{b: p20 for b in STAC_20M}, "SCL": dict(p20, dtype="uint8", predictor=1)}
        self.grids = {10: (p10["transform"], (self.size, self.size)), 20: (p20["transform"], (self.half, self.half))}
        self.paths = [{b: self.scratch / f"{k}_{b}.tif" for b in profiles} for k in range(n_dates)]
        self.dst = [
            {b: stack.enter_context(rasterio.open(self.paths[k][b], "w", **prof)) for b, prof in profiles.items()}
            for k in range(n_dates)
        ]

    def write(self, writer: _Writer, k: int, r0: int, dn: np.ndarray, mask: np.ndarray, blk: _Block) -> None:
        """Queue the writes of date ``k``'s row block starting at row ``r0`` (even)."""
        from rasterio.windows import Window

        h = dn.shape[1]
        for b, i in STAC_10M.items():
            writer.submit(self.dst[k][b].write, dn[i], 1, window=Window(0, r0, self.size, h))
        # 20 m: a coarser reading of the same surface (the mean of the 10 m pixels).
        coarse = _coarsen_mean(dn[[0, 2, 3, *STAC_20M.values()]])
        win = Window(0, r0 // 2, self.half, coarse.shape[1])
        for j, b in enumerate(STAC_20M):
            writer.submit(self.dst[k][b].write, coarse[3 + j], 1, window=win)
        scl = _scl(mask, blk.valid, blk.cls == _WATER_INDEX, coarse[0], coarse[1], coarse[2])
        writer.submit(self.dst[k]["SCL"].write, scl, 1, window=win)

    def finish(self, dates: Sequence[date], cloud_cover: Sequence[float]) -> None:
        """Copy the scratch rasters to COGs and write the static catalogue (after closing)."""
        import pystac
        import rasterio.shutil
        from rasterio.warp import transform_bounds, transform_geom

        folder = self.outdir / "catalog"
        grids = self.grids
        left, top = grids[10][0].c, grids[10][0].f
        bounds = (left, top - self.size * PIXEL_SIZE, left + self.size * PIXEL_SIZE, top)
        geom = transform_geom(CRS, "EPSG:4326", {"type": "Polygon", "coordinates": [[
            (bounds[0], bounds[1]), (bounds[2], bounds[1]), (bounds[2], bounds[3]), (bounds[0], bounds[3]), (bounds[0], bounds[1])]]})  # fmt: skip
        bbox = list(transform_bounds(CRS, "EPSG:4326", *bounds, densify_pts=21))
        when = [_dt.datetime.combine(d, _dt.time(10, 0, 31), tzinfo=_dt.timezone.utc) for d in dates]
        coll = pystac.Collection(
            COLLECTION, "cropseq simulate: a synthetic Sentinel-2 L2A season (per-band COGs, SCL)",
            pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[when[0], when[-1]]])), license="CC0-1.0",
        )  # fmt: skip
        for k, d in enumerate(dates):
            sat = "A" if (d - SEASON_START).days // REVISIT_DAYS % 2 == 0 else "B"
            item_id = f"S2{sat}_MSIL2A_{d.strftime('%Y%m%d')}T100031_T33TWN"
            item = pystac.Item(item_id, geom, bbox, when[k], {
                "platform": f"sentinel-2{sat.lower()}", "constellation": "sentinel-2", "instruments": ["msi"],
                "eo:cloud_cover": round(100.0 * float(cloud_cover[k]), 2)})  # fmt: skip
            for b, src in self.paths[k].items():
                res = 10 if b in STAC_10M else 20
                final = folder / COLLECTION / item_id / f"{b}.tif"
                final.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(final) as tmp:
                    rasterio.shutil.copy(
                        src, tmp, driver="COG", compress="DEFLATE", predictor="NO" if b == "SCL" else "YES",
                        blocksize=TILE,  # the COG driver's least is 128
                        resampling="NEAREST" if b == "SCL" else "AVERAGE",
                    )  # fmt: skip
                item.add_asset(b, _stac_asset(b, res, grids[res]))
            item.stac_extensions = [
                "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
                "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            ]
            coll.add_item(item)
        cat = pystac.Catalog("cropseq-demo", "cropseq demo scene (cropseq simulate)")
        cat.add_child(coll)
        cat.normalize_hrefs(str(folder))
        cat.save(pystac.CatalogType.SELF_CONTAINED)


def _stac_asset(band: str, res: int, grid: tuple[Any, tuple[int, int]]) -> Any:
    """A band's asset: COG, proj:* of its grid, raster:bands (uint16 x 0.0001, fill 0), eo:bands."""
    import pystac

    transform, shape = grid
    fields: dict[str, Any] = {"proj:code": CRS, "proj:shape": list(shape), "proj:transform": list(transform)[:6]}
    if band == "SCL":
        fields["raster:bands"] = [{"nodata": 0, "data_type": "uint8", "spatial_resolution": res}]
        title = "Scene classification map (SCL)"
    else:
        fields["raster:bands"] = [{"nodata": NODATA, "data_type": "uint16", "scale": SCALE, "offset": 0.0,
                                   "spatial_resolution": res, "unit": "1"}]  # fmt: skip
        common, wl = _COMMON[band]
        fields["eo:bands"] = [{"name": band, "common_name": common, "center_wavelength": wl}]
        title = f"{common} ({band}) surface reflectance, {res} m"
    return pystac.Asset(f"./{band}.tif", title=title, media_type=pystac.MediaType.COG, roles=["data"], extra_fields=fields)


@dataclass
class _Tally:
    """Running counts over the row blocks: masked pixels per date, valid pixels in all."""

    masked: np.ndarray  # (n_dates,) int64
    n_valid: int = 0

    def cloud_cover(self) -> list[float]:
        """Share of the valid pixels masked (cloud or shadow), per date."""
        return [float(m) / max(self.n_valid, 1) for m in self.masked]


@dataclass(frozen=True)
class _Outputs:
    """The open rasters of a scene.

    One-grid images and masks (empty lists in the STAC layout), the two truth rasters, and the
    STAC files (``None`` in the one-grid layout).
    """

    images: list[Any]
    masks: list[Any]
    truth: Any
    test_truth: Any
    stac: _StacFiles | None


def _profiles(size: int) -> dict[str, dict[str, Any]]:
    """GeoTIFF profiles on the scene's 10 m grid.

    ``common`` (shared by every raster), ``image`` (6-band DN), ``mask`` (cloud mask) and
    ``truth`` (class codes).
    """
    from affine import Affine

    transform = Affine(PIXEL_SIZE, 0.0, ORIGIN[0], 0.0, -PIXEL_SIZE, ORIGIN[1])
    tile = _tile(size)
    common = dict(driver="GTiff", width=size, height=size, crs=CRS, transform=transform,
                  tiled=True, blockxsize=tile, blockysize=tile, compress="deflate", zlevel=1)
    return {
        "common": common,
        "image": dict(common, count=len(BANDS), dtype="uint16", nodata=NODATA, predictor=2, interleave="pixel"),
        "mask": dict(common, count=1, dtype="uint8"),
        "truth": dict(common, count=1, dtype="uint8", nodata=NODATA),
    }


def _open_outputs(stack: contextlib.ExitStack, outdir: Path, dates: list[date], profiles: dict[str, dict[str, Any]],
                  images: list[Path], masks: list[Path], tally: _Tally, stac: bool) -> _Outputs:  # fmt: skip
    """Open every raster of the scene on ``stack`` under temporary names, with their tags."""
    import rasterio

    tmp_img = [stack.enter_context(atomic_path(p)) for p in images]
    tmp_mask = [stack.enter_context(atomic_path(p)) for p in masks]
    tmp_truth = stack.enter_context(atomic_path(outdir / "truth.tif"))
    tmp_test_truth = stack.enter_context(atomic_path(outdir / "test_truth.tif"))
    # Datasets are entered after every atomic_path, so they close before the renames.
    out = _Outputs(
        images=[stack.enter_context(rasterio.open(t, "w", **profiles["image"])) for t in tmp_img],
        masks=[stack.enter_context(rasterio.open(t, "w", **profiles["mask"])) for t in tmp_mask],
        truth=stack.enter_context(rasterio.open(tmp_truth, "w", **profiles["truth"])),
        test_truth=stack.enter_context(rasterio.open(tmp_test_truth, "w", **profiles["truth"])),
        stac=_StacFiles(stack, outdir, dates, profiles["common"], tally.cloud_cover) if stac else None,
    )
    for k, (di, dm) in enumerate(zip(out.images, out.masks)):
        di.descriptions = BANDS
        di.update_tags(ACQUISITION_DATE=dates[k].isoformat(), REFLECTANCE_PER_DN=str(SCALE),
                       SOURCE="cropseq simulate (synthetic Sentinel-2 L2A-like)")
        dm.set_band_description(1, "cloud mask: 0 clear, 1 cloud, 2 cloud shadow")
        dm.update_tags(ACQUISITION_DATE=dates[k].isoformat())
    cmap = {code: (0, 0, 0, 0) for code in range(256)}
    cmap.update({c: CLASS_TABLE.rgba(c) for c in CLASS_TABLE.codes})
    for dst, what in ((out.truth, "class"), (out.test_truth, "class of the held-out fields")):
        dst.set_band_description(1, what)
        # The same class metadata as a cropseq crop map (cropseq.outputs), so the truth
        # rasters name their classes to `evaluate` and in QGIS.
        dst.update_tags(CROPSEQ_CLASSES=json.dumps(CLASS_TABLE.to_records()))
        dst.update_tags(1, CLASS_NAMES=json.dumps({str(c.code): c.name for c in CLASS_TABLE.classes}))
        dst.write_colormap(1, cmap)
    return out


def _write_block(writer: _Writer, out: _Outputs, renderer: _Renderer, r0: int, r1: int, held_out: np.ndarray,
                 tally: _Tally) -> None:  # fmt: skip
    """Render rows ``r0:r1`` and queue their writes: the truth rasters, every date's image."""
    from rasterio.windows import Window

    size = renderer.size
    win = Window(0, r0, size, r1 - r0)
    blk = renderer.block(r0, r1)
    valid = blk.valid
    tally.n_valid += int(valid.sum())
    # _CLASSES is ordered by code 1..K, so class index + 1 is the code.
    truth = np.where(valid, blk.cls + 1, NODATA).astype(np.uint8)
    writer.submit(out.truth.write, truth, 1, window=win)
    test_truth = np.where(np.take(held_out, blk.fid), truth, NODATA).astype(np.uint8)
    writer.submit(out.test_truth.write, test_truth, 1, window=win)
    for k in range(len(renderer.conds)):
        dn, mask = renderer.render(blk, k)
        tally.masked[k] += int(np.count_nonzero(mask))
        if out.stac is not None:
            out.stac.write(writer, k, r0, dn, mask, blk)
        else:
            writer.submit(out.images[k].write, dn, window=win)
            writer.submit(out.masks[k].write, mask, 1, window=win)


def _write_rasters(outdir: Path, dates: list[date], renderer: _Renderer, images: list[Path], masks: list[Path],
                   held_out: np.ndarray, stac: bool) -> _Tally:  # fmt: skip
    """Write the images (one-grid or STAC), masks and truth rasters, block by block."""
    import rasterio

    size = renderer.size
    profiles = _profiles(size)
    tally = _Tally(np.zeros(len(dates), dtype=np.int64))
    # A small GDAL block cache: completed tiles are flushed to disk instead of piling up
    # across the 2 x n_dates open files (memory stays bounded by the row block).
    with rasterio.Env(GDAL_CACHEMAX=64 * 1024 * 1024), contextlib.ExitStack() as stack:
        out = _open_outputs(stack, outdir, dates, profiles, images, masks, tally, stac)
        writer = stack.enter_context(_Writer())  # exits first: pending writes finish
        for r0 in range(0, size, BLOCK_ROWS):
            _write_block(writer, out, renderer, r0, min(size, r0 + BLOCK_ROWS), held_out, tally)
    return tally


def _remove_stale_images(outdir: Path, keep: set[str]) -> None:
    """Remove images of other dates left by an earlier run (they would match the globs)."""
    for p in (outdir / "images").iterdir() if (outdir / "images").is_dir() else ():
        if _IMAGE_NAME.match(p.name) and p.name not in keep:
            p.unlink()


def _write_field_layers(outdir: Path, land: _Landscape, size: int, held_out: np.ndarray) -> tuple[int, ...]:
    """Write ``labels.gpkg`` and ``test_fields.gpkg``; return the field ids labelled wrong."""
    import shapely

    # Vector parcels in map coordinates, clipped to the swath (no polygon over nodata).
    valid_region = _valid_region(size, land.edge_a, land.edge_b)
    to_map = lambda xy: np.column_stack([ORIGIN[0] + xy[:, 0] * PIXEL_SIZE, ORIGIN[1] - xy[:, 1] * PIXEL_SIZE])  # noqa: E731
    field_ids = np.arange(1, len(land.polys_px) + 1)
    names = [c.name for c in _CLASSES]
    for path, sel, label_cls in ((outdir / "labels.gpkg", land.eligible & land.labelled, land.label_cls),
                                 (outdir / "test_fields.gpkg", held_out, land.cls_index)):
        idx = np.flatnonzero(sel)
        polys = shapely.transform(shapely.intersection(land.polys_px[idx], valid_region), to_map)
        polys = shapely.make_valid(polys)
        _write_fields(path, polys, field_ids[idx], [names[c] for c in label_cls[idx]])
    mislabelled = np.flatnonzero(land.eligible & land.labelled & (land.label_cls != land.cls_index))
    return tuple(int(i) for i in field_ids[mislabelled])


def _write_manifest(info: SceneInfo) -> None:
    """Write ``scene.json``, then the manifest: its presence means the scene is complete."""
    with atomic_path(info.outdir / "scene.json") as tmp:
        tmp.write_text(json.dumps(info.to_json_dict(), indent=2) + "\n")
    with atomic_path(info.stack) as tmp:
        if info.layout == "stac":
            tmp.write_text(_STAC_YAML.format(collection=COLLECTION, bands=", ".join(STAC_BANDS),
                                             invalid=", ".join(map(str, SCL_INVALID))))  # fmt: skip
        else:
            tmp.write_text(_STACK_YAML.format(bands=", ".join(BANDS)))


def simulate_scene(
    outdir: str | os.PathLike[str],
    size: int = 512,
    n_dates: int = 24,
    seed: int = 0,
    label_fraction: float = 0.5,
    field_size: int = 32,
    label_noise: float = DEFAULT_LABEL_NOISE,
    layout: str = "stac",
) -> SceneInfo:
    """Write the seeded synthetic demo scene (see the module docstring for what is in it).

    Args:
        outdir: Folder to write into (created if missing). Files of an earlier scene there
            are replaced; stale ``images/S2_*.tif`` / ``MASK_*.tif`` of other dates removed.
        size: Width and height in 10 m pixels (32..32768).
        n_dates: Acquisitions kept of the 49 five-day slots from 2023-03-01 to 2023-10-27
            (8..49; the first and last slot are always kept).
        seed: Seed of every random draw; the same arguments give identical files.
        label_fraction: Share of each class's parcels written to ``labels.gpkg``
            (0 < f <= 1); the other parcels go to ``test_fields.gpkg``.
        field_size: Grid cell of the parcel layout in pixels (8..256), shrunk for small
            scenes to ``size // 8`` (at least 8) so that every class fits.
        label_noise: Share of the labelled crop parcels written to ``labels.gpkg`` under
            another crop's name (0..0.5); ``truth.tif`` and ``test_fields.gpkg`` stay true.
        layout: ``stac`` (default): a static STAC catalogue of per-band COGs like an L2A
            product (``catalog/``; B02 B03 B04 B08 at 10 m, B05 B11 B12 and SCL at 20 m) and
            a ``source: stac`` manifest; ``one-grid``: one 6-band GeoTIFF and one cloud mask
            per date on one 10 m grid (``images/``) and a per-date manifest. The surface,
            clouds and labels are the same in both.

    Returns:
        A :class:`SceneInfo` describing the files written.

    Raises:
        CropseqError: On a bad argument or an unwritable output folder.
    """
    _validate(size, n_dates, seed, label_fraction, field_size, label_noise)
    if layout not in LAYOUTS:
        raise CropseqError(f"layout must be one of {', '.join(LAYOUTS)} (got {layout!r})")
    stac = layout == "stac"
    size, n_dates, seed = int(size), int(n_dates), int(seed)
    outdir = _prepare_outdir(Path(outdir))
    cell = int(max(MIN_FIELD, min(field_size, size // 8)))
    land = _build_landscape(seed, size, cell, float(label_fraction), float(label_noise))
    dates = _dates(seed, n_dates)
    renderer = _Renderer(seed, size, land, _conditions(seed, dates, size), red_edge=stac)
    stamps = [d.strftime("%Y%m%d") for d in dates]
    images = [] if stac else [outdir / "images" / f"S2_{s}.tif" for s in stamps]
    masks = [] if stac else [outdir / "images" / f"MASK_{s}.tif" for s in stamps]
    if not stac:
        (outdir / "images").mkdir(exist_ok=True)
    held_out = land.eligible & ~land.labelled  # per parcel: in test_fields.gpkg
    tally = _write_rasters(outdir, dates, renderer, images, masks, held_out, stac)
    _remove_stale_images(outdir, {p.name for p in images + masks})
    with atomic_path(outdir / "classes.yaml") as tmp:
        CLASS_TABLE.to_yaml(tmp)
    mislabelled = _write_field_layers(outdir, land, size, held_out)
    info = SceneInfo(
        outdir=outdir, stack=outdir / "stack.yaml", truth=outdir / "truth.tif", test_truth=outdir / "test_truth.tif",
        labels=outdir / "labels.gpkg",
        test_fields=outdir / "test_fields.gpkg", classes_path=outdir / "classes.yaml", size=size,
        dates=tuple(d.isoformat() for d in dates), bands=STAC_BANDS if stac else BANDS, crs=CRS,
        transform=tuple(_profiles(size)["common"]["transform"].to_gdal()), classes=CLASS_TABLE,
        n_fields=len(land.polys_px), n_labelled=int((land.eligible & land.labelled).sum()),
        n_test=int(held_out.sum()), mislabelled=mislabelled, cloud_cover=tuple(tally.cloud_cover()),
        nodata_fraction=1.0 - tally.n_valid / float(size * size),
        layout=layout,
    )
    _write_manifest(info)
    return info
