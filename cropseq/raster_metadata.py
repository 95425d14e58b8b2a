"""GDAL category names, raster attribute table and continuous QGIS styles for crop-map outputs.

Why a ``MAP.tif.aux.xml``: GDAL's GeoTIFF driver (3.10, the one rasterio ships) keeps
category names and raster attribute tables (RATs) only in its PAM sidecar; its
``GDAL_METADATA`` TIFF tag carries metadata items, band descriptions, units, offsets and
scales but no categories or RAT (checked: a ``GDAL_METADATA`` with ``CategoryNames`` /
``GDALRasterAttributeTable`` elements is ignored by ``gdalinfo``). So the map carries
*inside* the TIFF its colour table, band description ``crop class`` and the class names as
metadata (``CROPSEQ_CLASSES``, band items ``CLASS_NAMES`` and ``CLASS_<code>=<name>``, which
``gdalinfo`` and rasterio's ``tags()`` list); the PAM sidecar ``MAP.tif.aux.xml`` adds the
GDAL categories and the RAT (``value, class, red, green, blue, alpha, pixels, area_ha``),
which ``gdalinfo`` lists under ``Categories`` and QGIS (>= 3.30) and ArcGIS show as the
legend/attribute table.

The readers of class names from a raster live here too, one for each need:
:func:`read_class_table` (the full table of a map cropseq wrote: strict),
:func:`raster_class_names` (code → name of any class raster: every common spelling,
``{}`` when none) and :func:`class_legend` (``(code, name, colour)`` for a map's legend).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

from cropseq.atomic import register_input
from cropseq.classes import NODATA_CODE, ClassTable, _generated_colour
from cropseq.errors import CropseqError

#: The dataset tag of a cropseq crop map holding its class table (JSON records).
CLASSES_TAG = "CROPSEQ_CLASSES"

# GDAL RAT field types and usages (gdal.h: GDALRATFieldType / GDALRATFieldUsage).
_GFT_INTEGER, _GFT_REAL, _GFT_STRING = 0, 1, 2
_GFU_GENERIC, _GFU_PIXELCOUNT, _GFU_NAME, _GFU_MINMAX = 0, 1, 2, 5
_GFU_RED, _GFU_GREEN, _GFU_BLUE, _GFU_ALPHA = 6, 7, 8, 9

#: RAT columns: (name, type, usage).
RAT_COLUMNS = (
    ("value", _GFT_INTEGER, _GFU_MINMAX),
    ("class", _GFT_STRING, _GFU_NAME),
    ("red", _GFT_INTEGER, _GFU_RED),
    ("green", _GFT_INTEGER, _GFU_GREEN),
    ("blue", _GFT_INTEGER, _GFU_BLUE),
    ("alpha", _GFT_INTEGER, _GFU_ALPHA),
    ("pixels", _GFT_REAL, _GFU_PIXELCOUNT),
    ("area_ha", _GFT_REAL, _GFU_GENERIC),
)


def class_band_items(classes: ClassTable) -> dict[str, str]:
    """Band metadata items ``CLASS_<code> = <name>`` (readable wherever GDAL metadata is)."""
    return {f"CLASS_{c.code}": c.name for c in classes.classes}


def pam_xml(classes: ClassTable, pixels: Any = None, hectares: Any = None) -> str:
    """A GDAL PAM document (``MAP.tif.aux.xml``) with category names and a RAT for band 1.

    Args:
        classes: The class table.
        pixels: ``(256,)`` pixel count per code, or None (0s).
        hectares: ``(256,)`` area per code in hectares, or None (0s).
    """
    top = max([0, *classes.codes])
    by_code = {c.code: c.name for c in classes.classes}
    cats = "\n".join(f"      <Category>{escape(by_code.get(v, ''))}</Category>" for v in range(top + 1))
    fields = "\n".join(
        f'      <FieldDefn index="{i}">\n        <Name>{n}</Name>\n        <Type>{t}</Type>\n        <Usage>{u}</Usage>\n      </FieldDefn>'
        for i, (n, t, u) in enumerate(RAT_COLUMNS)
    )
    rows = []
    for i, c in enumerate(classes.classes):
        r, g, b, a = classes.rgba(c.code)
        n = int(pixels[c.code]) if pixels is not None else 0
        ha = float(hectares[c.code]) if hectares is not None else 0.0
        vals = [str(c.code), escape(c.name), str(r), str(g), str(b), str(a), str(n), f"{ha:.4f}"]
        rows.append(f'      <Row index="{i}">\n' + "\n".join(f"        <F>{v}</F>" for v in vals) + "\n      </Row>")
    return (
        "<PAMDataset>\n  <PAMRasterBand band=\"1\">\n    <CategoryNames>\n"
        f"{cats}\n    </CategoryNames>\n"
        '    <GDALRasterAttributeTable tableType="thematic">\n'
        f"{fields}\n" + "\n".join(rows) + "\n    </GDALRasterAttributeTable>\n  </PAMRasterBand>\n</PAMDataset>\n"
    )


def pam_category_names(raster: str | os.PathLike[str]) -> dict[int, str]:
    """GDAL category names of band 1 from the raster's PAM sidecar (``<raster>.aux.xml``).

    The reader of what :func:`pam_xml` writes, and of the sidecars QGIS, ArcGIS or GDAL
    write for other class rasters (rasterio has no accessor for categories). ``{}`` when
    there is no sidecar, no category list, or the XML is unreadable.
    """
    aux = Path(f"{os.fspath(raster)}.aux.xml")
    if not aux.is_file():
        return {}
    try:
        root = ElementTree.parse(aux).getroot()
    except (ElementTree.ParseError, OSError):
        return {}
    band = next((b for b in root.iter("PAMRasterBand") if b.get("band", "1") == "1"), None)
    names = band.find("CategoryNames") if band is not None else None
    if names is None:
        return {}
    return {i: (c.text or "").strip() for i, c in enumerate(names.iter("Category")) if (c.text or "").strip()}


def read_class_table(map_path: str | os.PathLike[str]) -> ClassTable:
    """The class table stored in a crop map written by cropseq (its ``CROPSEQ_CLASSES`` tag).

    Raises:
        CropseqError: if the file is missing, unreadable or carries no cropseq class table.
    """
    import rasterio

    path = Path(map_path)
    if not path.is_file():
        raise CropseqError("crop map not found", path)
    register_input(path, what="crop map")
    try:
        with rasterio.open(path) as src:
            raw = src.tags().get(CLASSES_TAG)
    except rasterio.errors.RasterioIOError as e:
        raise CropseqError(f"not a readable raster ({str(e).splitlines()[0]})", path) from None
    if not raw:
        raise CropseqError(f"not a cropseq crop map (no {CLASSES_TAG} tag with the class table)", path)
    try:
        return ClassTable.from_records(json.loads(raw), str(path))
    except (json.JSONDecodeError, TypeError) as e:
        raise CropseqError(f"damaged {CLASSES_TAG} tag ({e})", path) from None


def _table_from_tags(tags: dict[str, str]) -> dict[int, str]:
    """Code → name from GeoTIFF metadata, accepting the spellings writers commonly use."""
    out: dict[int, str] = {}
    # CROPSEQ_CLASSES (dataset) and CLASS_NAMES (band) are what cropseq.outputs writes.
    for key in ("CROPSEQ_CLASSES", "CLASS_NAMES", "classes", "CLASSES", "class_table", "class_names"):
        if key not in tags:
            continue
        raw = tags[key]
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, TypeError):
            data = None
        if isinstance(data, dict) and "classes" in data:
            data = data["classes"]
        if isinstance(data, list) and data and all(isinstance(r, dict) and "name" in r for r in data):
            return {int(r.get("code", i + 1)): str(r["name"]) for i, r in enumerate(data)}
        if isinstance(data, dict):  # {"1": "Soy", ...}
            try:
                return {int(k): str(v) for k, v in data.items()}
            except ValueError:
                pass
        if isinstance(data, list) and data and all(isinstance(v, str) for v in data):
            return {i + 1: v for i, v in enumerate(data)}  # names in code order 1..K
        if data is None and isinstance(raw, str) and raw.strip():
            # "1:Soy,2:Maize" or "1=Soy;2=Maize"
            pairs = re.findall(r"(\d+)\s*[:=]\s*([^,;]+)", raw)
            if pairs:
                return {int(c): n.strip() for c, n in pairs}
    for key, value in tags.items():
        m = re.fullmatch(r"(?i)class_?(\d+)(?:_name)?", key)
        if m:
            out[int(m.group(1))] = str(value)
    return out


def _table_from_qml(path: Path) -> dict[int, str]:
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError):
        return {}
    out: dict[int, str] = {}
    for tag in ("paletteEntry", "item"):
        for e in root.iter(tag):
            value, label = e.get("value"), e.get("label")
            if value is not None and label:
                try:
                    out[int(float(value))] = label
                except ValueError:
                    continue
    return out


def raster_class_names(path: str | os.PathLike[str]) -> dict[int, str]:
    """Code → class name of a categorical raster (crop map or truth raster).

    Looks, in turn, at the dataset and band-1 metadata tags (a JSON class table, a
    ``{code: name}`` JSON object, ``CLASS_<code>`` tags), GDAL category names, and a QGIS
    ``.qml`` style beside the file. Returns ``{}`` when none is found. Nodata (0) is never
    a class.
    """
    import rasterio

    path = Path(path)
    with rasterio.open(path) as ds:
        tags = {**ds.tags(), **ds.tags(1)}
        table = _table_from_tags(tags)
    if not table:
        table = pam_category_names(path)  # GDAL categories in the .aux.xml (QGIS/ArcGIS rasters too)
    if not table:
        qml = path.with_suffix(".qml")
        if qml.is_file():
            table = _table_from_qml(qml)
    table.pop(NODATA_CODE, None)
    return table


def _area_csv_names(area_csv: Path) -> dict[int, str]:
    """Code → name from a crop map's area CSV (``code,name,...``); bad rows are skipped."""
    import csv

    try:
        with open(area_csv, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CropseqError(f"cannot read CSV ({e})", area_csv) from None
    names: dict[int, str] = {}
    for r in rows:
        try:
            names[int(r["code"])] = str(r["name"])
        except (KeyError, ValueError):
            continue
    return names


def class_legend(map_path: str | os.PathLike[str], area_csv: str | os.PathLike[str] | None = None) -> list[tuple[int, str, str]]:
    """``[(code, name, #rrggbb)]`` of a crop map, sorted by code, for a legend.

    Names and colours from cropseq's class table (:func:`read_class_table`), else names
    from any other metadata (:func:`raster_class_names`), else from the ``area_csv``;
    missing colours from the map's colour table, else generated. A map with neither names
    nor table lists the coloured codes of its colour table as ``class <code>``.
    """
    import rasterio

    names: dict[int, str] = {}
    colours: dict[int, str] = {}
    try:
        for c in read_class_table(map_path).classes:
            names[c.code], colours[c.code] = c.name, c.color
    except CropseqError:
        names = dict(raster_class_names(map_path))
    if not names and area_csv is not None:
        names = _area_csv_names(Path(area_csv))
    with rasterio.open(map_path) as src:
        try:
            cmap = src.colormap(1)
        except ValueError:  # no colour table
            cmap = {}
    for code, rgba in cmap.items():
        if code in names and code not in colours:
            colours[code] = "#{:02x}{:02x}{:02x}".format(*rgba[:3])
    if not names:  # a map with neither names nor table: codes as names
        names = {c: f"class {c}" for c in cmap if c != 0 and any(cmap[c][:3])}
    return [(c, names[c], colours.get(c) or _generated_colour(i)) for i, c in enumerate(sorted(names))]


#: Ramps of the continuous styles: (value fraction, colour).
CONFIDENCE_RAMP = ((0.0, "#d7191c"), (0.5, "#fdae61"), (0.75, "#ffffbf"), (1.0, "#1a9641"))
UNCERTAINTY_RAMP = ((0.0, "#1a9641"), (0.25, "#ffffbf"), (0.5, "#fdae61"), (1.0, "#d7191c"))


#: The ``<minMaxOrigin>`` element every QGIS raster style of the package carries (QGIS
#: writes it with these defaults; the class map's paletted style shares it).
QML_MIN_MAX_ORIGIN = """      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>"""


def ramp_qml(label: str, ramp: tuple[tuple[float, str], ...] = CONFIDENCE_RAMP, vmin: float = 0.0, vmax: float = 1.0) -> str:
    """A QGIS style with a continuous (interpolated) colour ramp for a 0..1 float band."""
    items = "\n".join(
        f"            <item value=\"{vmin + f * (vmax - vmin):g}\" color=\"{col}\" alpha=\"255\" label={quoteattr(f'{vmin + f * (vmax - vmin):g}')}/>"
        for f, col in ramp
    )
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28.0" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" alphaBand="-1" classificationMin="{vmin:g}" classificationMax="{vmax:g}" nodataColor="">
      <rasterTransparency/>
{QML_MIN_MAX_ORIGIN}
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" minimumValue="{vmin:g}" maximumValue="{vmax:g}" labelPrecision="2">
          <colorramp type="gradient" name="[source]">
            <Option type="Map">
              <Option type="QString" name="color1" value="{ramp[0][1]}"/>
              <Option type="QString" name="color2" value="{ramp[-1][1]}"/>
            </Option>
          </colorramp>
{items}
        </colorrampshader>
      </rastershader>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <rasterresampler maxOversampling="2"/>
    <resamplingStage>resamplingFilter</resamplingStage>
  </pipe>
  <layerGeometryType>-1</layerGeometryType>
  <customproperties><Option type="Map"><Option type="QString" name="cropseq:band" value={quoteattr(label)}/></Option></customproperties>
  <blendMode>0</blendMode>
</qgis>
"""


__all__ = [
    "CLASSES_TAG",
    "CONFIDENCE_RAMP",
    "QML_MIN_MAX_ORIGIN",
    "RAT_COLUMNS",
    "UNCERTAINTY_RAMP",
    "class_band_items",
    "class_legend",
    "pam_category_names",
    "pam_xml",
    "ramp_qml",
    "raster_class_names",
    "read_class_table",
]
