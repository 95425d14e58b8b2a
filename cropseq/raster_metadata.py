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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

from cropseq.classes import ClassTable

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


__all__ = ["CONFIDENCE_RAMP", "RAT_COLUMNS", "UNCERTAINTY_RAMP", "class_band_items", "pam_xml", "ramp_qml"]
