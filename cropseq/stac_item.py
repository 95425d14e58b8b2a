"""A STAC Item describing a crop map and its companion outputs, so catalogues can index them.

``MAP.stac.json`` beside the map (STAC 1.0.0) with the ``classification`` (class values,
names, colours), ``raster`` (nodata, data type, unit, resolution per asset band) and
``projection`` extensions; bbox and geometry in WGS84 (the map's footprint, densified);
``start_datetime``/``end_datetime`` the season's first and last date. Asset hrefs are
relative to the Item, so the folder can be moved or uploaded as a whole.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from cropseq.atomic import atomic_path
from cropseq.classes import NODATA_CODE, ClassTable

STAC_VERSION = "1.0.0"
EXTENSIONS = [
    "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
]
COG = "image/tiff; application=geotiff; profile=cloud-optimized"


def stac_path(map_path: str | os.PathLike[str]) -> Path:
    """Default Item path of a crop map ``DIR/STEM.tif``: ``DIR/STEM.stac.json``."""
    p = Path(map_path)
    return p.with_name(f"{p.stem}.stac.json")


def _iso(t: Any) -> str:
    ts = np.datetime64(t, "s").astype(_dt.datetime)
    return ts.replace(tzinfo=_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _footprint(grid: Any) -> tuple[list[float] | None, dict[str, Any] | None]:
    """WGS84 bbox and polygon of the grid (edges densified: a UTM square is curved in lon/lat).

    ``(None, None)`` for a grid without a CRS (``crs: none``): pixel coordinates are no place
    on Earth, and STAC allows a null geometry (then without bbox).
    """
    from rasterio.warp import transform as warp

    if grid.crs is None:
        return None, None

    t, w, h = grid.transform, grid.width, grid.height
    n = 10
    cols = [*np.linspace(0, w, n), *[w] * n, *np.linspace(w, 0, n), *[0] * n]
    rows = [*[0] * n, *np.linspace(0, h, n), *[h] * n, *np.linspace(h, 0, n)]
    xs = [t.c + c * t.a + r * t.b for c, r in zip(cols, rows)]
    ys = [t.f + c * t.d + r * t.e for c, r in zip(cols, rows)]
    if grid.crs.to_epsg() != 4326:
        xs, ys = warp(grid.crs, "EPSG:4326", xs, ys)
    ring = [[round(float(x), 8), round(float(y), 8)] for x, y in zip(xs, ys)]
    ring.append(ring[0])
    bbox = [min(p[0] for p in ring), min(p[1] for p in ring), max(p[0] for p in ring), max(p[1] for p in ring)]
    return bbox, {"type": "Polygon", "coordinates": [ring]}


def _classes_field(classes: ClassTable) -> list[dict[str, Any]]:
    return [
        {"value": c.code, "name": c.name, "description": c.name, "color_hint": c.color.lstrip("#").upper()}
        for c in classes.classes
    ]


def _band(data_type: str, nodata: Any, unit: str | None, res: float, **extra: Any) -> dict[str, Any]:
    b: dict[str, Any] = {"data_type": data_type, "nodata": nodata, "spatial_resolution": res, **extra}
    if unit:
        b["unit"] = unit
    return b


def stac_item(map_path: Path, outputs: Any, classes: ClassTable, grid: Any, dates: Any = None) -> dict[str, Any]:
    """The Item as a dict (see the module docs); ``outputs`` is a ``WrittenOutputs``."""
    bbox, geom = _footprint(grid)
    res = float(abs(grid.transform.a))
    props: dict[str, Any] = {"datetime": None, "created": _dt.datetime.now(_dt.timezone.utc).isoformat().replace("+00:00", "Z")}
    if dates is not None and len(dates):
        props["start_datetime"], props["end_datetime"] = _iso(np.min(dates)), _iso(np.max(dates))
    else:
        props["datetime"] = props["created"]
    epsg = grid.crs.to_epsg() if grid.crs is not None else None
    props.update({"proj:epsg": epsg, "proj:shape": [grid.height, grid.width], "proj:transform": list(grid.transform)[:6]})
    if epsg is None and grid.crs is not None:
        props["proj:wkt2"] = grid.crs.to_wkt()
    props["classification:classes"] = _classes_field(classes)

    def rel(p: Path) -> str:
        return "./" + os.path.relpath(p, map_path.parent).replace(os.sep, "/")

    assets: dict[str, Any] = {
        "map": {"href": rel(map_path), "type": COG, "title": "crop class", "roles": ["data"],
                "raster:bands": [_band("uint8", NODATA_CODE, None, res, **{"classification:classes": _classes_field(classes)})]},
    }
    if outputs.confidence is not None:
        assets["confidence"] = {"href": rel(outputs.confidence), "type": COG, "roles": ["data", "quality"],
                                "title": "probability of the mapped class", "raster:bands": [_band("float32", "nan", "1", res)]}
    for name, p in (getattr(outputs, "uncertainty", None) or {}).items():
        assets[name] = {"href": rel(p), "type": COG, "roles": ["data", "quality"], "title": f"uncertainty: {name}",
                        "raster:bands": [_band("float32", "nan", "1", res)]}
    if outputs.probabilities is not None:
        assets["probabilities"] = {"href": rel(outputs.probabilities), "type": COG, "roles": ["data"],
                                   "title": "class probabilities (one band per class)",
                                   "raster:bands": [_band("float32", "nan", "1", res, name=c.name) for c in classes.classes]}
    if getattr(outputs, "probabilities_zarr", None) is not None:
        assets["probabilities_zarr"] = {"href": rel(outputs.probabilities_zarr), "type": "application/vnd+zarr",
                                        "roles": ["data"], "title": "class probabilities (CF Zarr cube)"}
    for key, typ, role in (("area", "text/csv", "metadata"), ("qml", "application/xml", "style"), ("aux", "application/xml", "metadata")):
        p = getattr(outputs, key, None)
        if p is not None:
            assets[key] = {"href": rel(p), "type": typ, "roles": [role]}
    item: dict[str, Any] = {
        "type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": EXTENSIONS,
        "id": map_path.stem, "bbox": bbox, "geometry": geom, "properties": props,
        "links": [], "assets": assets,
    }
    if bbox is None:
        del item["bbox"]  # STAC: bbox is required unless the geometry is null, then absent
    return item


def write_stac_item(path: Path, item: dict[str, Any]) -> Path:
    """Write the Item JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(item, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


__all__ = ["stac_item", "stac_path", "write_stac_item"]
