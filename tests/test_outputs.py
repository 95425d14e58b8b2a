"""Tests of the GIS outputs (cropseq.outputs): COGs, colour table, names, QML, area, mosaic."""

from __future__ import annotations

import csv
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rio_cogeo.cogeo import cog_validate

from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.outputs import (
    CropMapWriter,
    Grid,
    area_stats,
    mosaic_maps,
    sidecar_paths,
    write_crop_map,
    write_preview,
    write_qml,
)
from cropseq.raster_metadata import CLASSES_TAG, class_legend, raster_class_names, read_class_table

CLASSES = ClassTable.from_records(
    [
        {"code": 3, "name": "maize", "color": "#fdae61"},
        {"code": 7, "name": "wheat & barley", "color": "#f6e8a6"},
        {"code": 9, "name": "forest <old>", "color": "#1b7837"},
    ]
)
T = Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)
CRS_UTM = CRS.from_epsg(32633)


def random_map(h: int, w: int, seed: int = 0, nodata_frac: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cls = rng.choice(np.array([3, 7, 9], np.uint8), size=(h, w))
    cls[rng.random((h, w)) < nodata_frac] = 0
    return cls


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_crop_map_is_a_valid_cog_with_colours_names_overviews(tmp_path: Path) -> None:
    cls = random_map(1100, 1300)
    conf = np.where(cls > 0, 0.5 + 0.5 * np.random.default_rng(1).random(cls.shape), np.nan).astype(np.float32)
    side = sidecar_paths(tmp_path / "map.tif")
    res = write_crop_map(tmp_path / "map.tif", cls, T, CRS_UTM, CLASSES, confidence=conf,
                         confidence_path=side["confidence"], area=side["area"], qml=side["qml"])
    assert res.map == tmp_path / "map.tif" and res.confidence == side["confidence"]
    for p in (res.map, res.confidence):
        valid, errors, warnings = cog_validate(str(p))
        assert valid and not errors and not warnings, (p, errors, warnings)
    with rasterio.open(res.map) as src:
        assert src.dtypes == ("uint8",) and src.nodata == 0
        assert src.crs == CRS_UTM and src.transform == T
        assert src.compression.name.lower() == "deflate"
        assert src.block_shapes == [(512, 512)]
        assert src.overviews(1), "categorical overviews missing"
        cmap = src.colormap(1)
        assert cmap[3] == (0xFD, 0xAE, 0x61, 255) and cmap[9] == (0x1B, 0x78, 0x37, 255)
        assert cmap[0][3] == 0  # nodata transparent
        assert src.descriptions == ("crop class",)
        assert "wheat & barley" in src.tags(1)["CLASS_NAMES"]
        assert CLASSES_TAG in src.tags()
        np.testing.assert_array_equal(src.read(1), cls)
        # MODE overviews: only real codes, never an average of two codes.
        ov = src.read(1, out_shape=(1100 // 4, 1300 // 4))
        assert set(np.unique(ov)) <= {0, 3, 7, 9}
    assert read_class_table(res.map) == CLASSES
    with rasterio.open(res.confidence) as src:
        assert src.dtypes == ("float32",) and np.isnan(src.nodata)
        got = src.read(1)
        np.testing.assert_array_equal(np.isnan(got), cls == 0)
        np.testing.assert_array_equal(got[cls > 0], conf[cls > 0])
    # no temporaries or stray GDAL sidecars left behind (map.tif.aux.xml is ours: categories + RAT)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "map.area.csv", "map.confidence.qml", "map.confidence.tif", "map.qml", "map.tif", "map.tif.aux.xml"]


def test_mode_overviews_of_a_checkerboard(tmp_path: Path) -> None:
    # 2x2 blocks of codes 3 and 9: an averaging overview would invent code 6.
    yy, xx = np.mgrid[0:1024, 0:1024]
    cls = np.where(((yy // 2) + (xx // 2)) % 2 == 0, 3, 9).astype(np.uint8)
    write_crop_map(tmp_path / "m.tif", cls, T, CRS_UTM, CLASSES)
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.overviews(1)
        for f in src.overviews(1):
            ov = src.read(1, out_shape=(1024 // f, 1024 // f))
            assert set(np.unique(ov)) <= {3, 9}


def test_area_csv_sums_to_valid_pixels(tmp_path: Path) -> None:
    cls = random_map(70, 90, seed=2)
    cls[cls == 9] = 3  # class 9 absent: still listed with 0 pixels
    res = write_crop_map(tmp_path / "m.tif", cls, T, CRS_UTM, CLASSES, area=tmp_path / "a.csv")
    rows = read_csv(tmp_path / "a.csv")
    assert list(rows[0]) == ["code", "name", "pixels", "hectares", "share"]
    assert [int(r["code"]) for r in rows] == [3, 7, 9]
    assert sum(int(r["pixels"]) for r in rows) == int((cls > 0).sum())
    assert int(rows[2]["pixels"]) == 0 and float(rows[2]["share"]) == 0.0
    for r in rows:  # 10 m pixels: 100 m^2 = 0.01 ha
        assert float(r["hectares"]) == pytest.approx(int(r["pixels"]) * 0.01)
    assert sum(float(r["share"]) for r in rows) == pytest.approx(1.0, abs=1e-5)
    assert res.stats.note == ""
    # the same numbers from reading the map back
    again = area_stats(tmp_path / "m.tif")
    assert again.rows() == res.stats.rows()


def test_area_geographic_crs_is_approximate_and_noted(tmp_path: Path) -> None:
    cls = np.full((100, 100), 3, np.uint8)
    t = Affine(0.001, 0, 10.0, 0, -0.001, 45.05)  # ~79 m x 111 m pixels around 45 N
    res = write_crop_map(tmp_path / "g.tif", cls, t, "EPSG:4326", CLASSES, area=tmp_path / "g.csv")
    assert "approximate" in res.stats.note
    ha = float(read_csv(tmp_path / "g.csv")[0]["hectares"])
    # 0.1 deg x 0.1 deg at 45 N: ~ 7.87 km x 11.1 km = ~ 8740 ha
    assert ha == pytest.approx(8740, rel=0.01)


def test_area_feet_crs(tmp_path: Path) -> None:
    cls = np.full((10, 10), 7, np.uint8)
    t = Affine(10.0, 0, 1000.0, 0, -10.0, 1000.0)  # 10 ft pixels
    res = write_crop_map(tmp_path / "f.tif", cls, t, "EPSG:2229", CLASSES)  # NAD83 / California zone 5 (ftUS)
    assert res.stats.hectares[7] == pytest.approx(100 * 100 * 0.3048006**2 / 10_000, rel=1e-4)


def test_qml_palette_names(tmp_path: Path) -> None:
    write_qml(tmp_path / "s.qml", CLASSES)
    root = ET.parse(tmp_path / "s.qml").getroot()
    r = root.find("./pipe/rasterrenderer")
    assert r is not None and r.get("type") == "paletted" and r.get("band") == "1"
    entries = r.findall("./colorPalette/paletteEntry")
    assert [(e.get("value"), e.get("label"), e.get("color")) for e in entries] == [
        ("3", "maize", "#fdae61"),
        ("7", "wheat & barley", "#f6e8a6"),
        ("9", "forest <old>", "#1b7837"),
    ]


def test_writer_is_atomic(tmp_path: Path) -> None:
    (tmp_path / "m.tif").write_bytes(b"old map")
    grid = Grid(64, 64, T, CRS_UTM)
    with pytest.raises(RuntimeError), CropMapWriter(
        tmp_path / "m.tif", grid, CLASSES, confidence=tmp_path / "c.tif", area=tmp_path / "a.csv", qml=tmp_path / "m.qml"
    ) as w:
        w.write_block(0, 0, np.full((32, 32), 3, np.uint8), np.ones((32, 32), np.float32))
        raise RuntimeError("crash mid-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif"]
    assert (tmp_path / "m.tif").read_bytes() == b"old map"


def test_writer_unwritten_blocks_are_nodata(tmp_path: Path) -> None:
    grid = Grid(1000, 600, T, CRS_UTM)
    with CropMapWriter(tmp_path / "m.tif", grid, CLASSES, confidence=tmp_path / "c.tif") as w:
        w.write_block(512, 512, np.full((88, 100), 7, np.uint8), np.full((88, 100), 0.9, np.float32))
    with rasterio.open(tmp_path / "m.tif") as src:
        a = src.read(1)
    assert (a[512:, 512:612] == 7).all() and a.sum() == 7 * 88 * 100
    with rasterio.open(tmp_path / "c.tif") as src:
        c = src.read(1)
    assert np.isnan(c[:512]).all() and np.allclose(c[512:, 512:612], 0.9)


def test_writer_errors(tmp_path: Path) -> None:
    grid = Grid(10, 10, T, CRS_UTM)
    with pytest.raises(CropseqError, match="does not exist"):
        CropMapWriter(tmp_path / "missing" / "m.tif", grid, CLASSES)
    with pytest.raises(CropseqError, match="share one path"):
        CropMapWriter(tmp_path / "m.tif", grid, CLASSES, confidence=tmp_path / "m.tif")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(CropseqError, match="not writable"):
            CropMapWriter(ro / "m.tif", Grid(10, 10, T, CRS_UTM), CLASSES)
    finally:
        ro.chmod(0o755)


def _tiles(tmp_path: Path, cls: np.ndarray, conf: np.ndarray, size: int) -> list[Path]:
    paths = []
    h, w = cls.shape
    for r in range(0, h, size):
        for c in range(0, w, size):
            p = tmp_path / f"t_{r}_{c}.tif"
            sub = (slice(r, r + size), slice(c, c + size))
            write_crop_map(p, cls[sub], T @ Affine.translation(c, r), CRS_UTM, CLASSES,
                           confidence=conf[sub], confidence_path=sidecar_paths(p)["confidence"])
            paths.append(p)
    return paths


def test_mosaic_restores_the_scene(tmp_path: Path) -> None:
    cls = random_map(150, 170, seed=4)
    conf = np.where(cls > 0, 0.7, np.nan).astype(np.float32)
    tiles = _tiles(tmp_path, cls, conf, 64)
    out = tmp_path / "out"
    out.mkdir()
    res = mosaic_maps(tiles[::-1], out / "mosaic.tif", confidence=True, area=True)  # any order
    with rasterio.open(res.map) as src:
        np.testing.assert_array_equal(src.read(1), cls)
        assert src.transform == T and src.crs == CRS_UTM
        assert src.colormap(1)[7][:3] == (0xF6, 0xE8, 0xA6)
    assert cog_validate(str(res.map))[0]
    assert read_class_table(res.map) == CLASSES
    with rasterio.open(res.confidence) as src:
        np.testing.assert_array_equal(src.read(1), conf)
    assert sum(int(r["pixels"]) for r in read_csv(res.area)) == int((cls > 0).sum())
    assert sorted(p.name for p in out.iterdir()) == [
        "mosaic.area.csv", "mosaic.confidence.qml", "mosaic.confidence.tif", "mosaic.qml", "mosaic.tif", "mosaic.tif.aux.xml"]
    # confidence tiles mosaic on their own too (what the workflow's second call does)
    conf_tiles = [sidecar_paths(t)["confidence"] for t in tiles]
    res2 = mosaic_maps(conf_tiles, out / "conf2.tif")
    with rasterio.open(res2.map) as src:
        assert src.dtypes == ("float32",)
        np.testing.assert_array_equal(src.read(1), conf)
    assert cog_validate(str(res2.map))[0]


def test_mosaic_gaps_are_nodata(tmp_path: Path) -> None:
    cls = random_map(128, 128, seed=5, nodata_frac=0)
    conf = np.ones(cls.shape, np.float32)
    tiles = _tiles(tmp_path, cls, conf, 64)
    res = mosaic_maps([tiles[0], tiles[3]], tmp_path / "m.tif")
    with rasterio.open(res.map) as src:
        a = src.read(1)
    assert a.shape == (128, 128)
    assert (a[:64, 64:] == 0).all() and (a[64:, :64] == 0).all()
    np.testing.assert_array_equal(a[:64, :64], cls[:64, :64])


def test_mosaic_errors(tmp_path: Path) -> None:
    cls = random_map(64, 64)
    a = tmp_path / "a.tif"
    write_crop_map(a, cls, T, CRS_UTM, CLASSES)
    b = tmp_path / "b.tif"
    write_crop_map(b, cls, T @ Affine.translation(32, 0), CRS_UTM, CLASSES)  # overlaps a
    with pytest.raises(CropseqError, match="overlap"):
        mosaic_maps([a, b], tmp_path / "m.tif")
    c = tmp_path / "c.tif"
    write_crop_map(c, cls, T @ Affine.translation(64, 0), "EPSG:32632", CLASSES)
    with pytest.raises(CropseqError, match="CRS"):
        mosaic_maps([a, c], tmp_path / "m.tif")
    d = tmp_path / "d.tif"
    write_crop_map(d, cls, T @ Affine.translation(64.5, 0), CRS_UTM, CLASSES)
    with pytest.raises(CropseqError, match="not aligned"):
        mosaic_maps([a, d], tmp_path / "m.tif")
    e = tmp_path / "e.tif"
    other = ClassTable.from_names(["maize", "soy"])
    write_crop_map(e, np.ones_like(cls), T @ Affine.translation(64, 0), CRS_UTM, other)
    with pytest.raises(CropseqError, match="class table differs"):
        mosaic_maps([a, e], tmp_path / "m.tif")
    with pytest.raises(CropseqError, match="not found"):
        mosaic_maps([a, tmp_path / "nope.tif"], tmp_path / "m.tif")
    with pytest.raises(CropseqError, match="confidence sidecar"):
        mosaic_maps([a], tmp_path / "m.tif", confidence=True)
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8", crs=CRS_UTM, transform=T) as dst:
        dst.write(np.ones((1, 8, 8), np.uint8))
    with pytest.raises(CropseqError, match="not a cropseq crop map"):
        mosaic_maps([plain], tmp_path / "m.tif")
    assert not (tmp_path / "m.tif").exists()


def test_preview_png(tmp_path: Path) -> None:
    write_crop_map(tmp_path / "m.tif", random_map(300, 200), T, CRS_UTM, CLASSES)
    png = write_preview(tmp_path / "m.tif", tmp_path / "m.png", max_size=128)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png", "m.tif", "m.tif.aux.xml"]


def test_map_is_self_describing_categories_rat_stac(tmp_path: Path) -> None:
    """Class names readable without the .qml: in the TIFF's metadata, and GDAL categories + RAT in the PAM sidecar."""
    import json
    import shutil
    import subprocess
    import xml.etree.ElementTree as ET

    cls = random_map(40, 30, seed=3)
    out = tmp_path / "m.tif"
    from cropseq.outputs import CropMapWriter, Grid

    grid = Grid(30, 40, T, CRS_UTM)
    with CropMapWriter(out, grid, CLASSES, confidence=tmp_path / "m.confidence.tif", qml=tmp_path / "m.qml",
                       stac=tmp_path / "m.stac.json", dates=np.array(["2023-03-01", "2023-10-27"], "datetime64[D]")) as w:
        w.write_block(0, 0, cls, np.full(cls.shape, 0.5, np.float32))
    aux = tmp_path / "m.tif.aux.xml"
    band = ET.parse(aux).getroot().find("PAMRasterBand")
    names = [c.text or "" for c in band.find("CategoryNames")]
    assert all(names[c.code] == c.name for c in CLASSES.classes)
    rows = band.find("GDALRasterAttributeTable").findall("Row")
    assert [int(r[0].text) for r in rows] == CLASSES.codes
    assert sum(int(float(r[6].text)) for r in rows) == int((cls > 0).sum())
    if shutil.which("gdalinfo"):  # GDAL reads them as categories and a RAT
        info = subprocess.run(["gdalinfo", str(out)], capture_output=True, text=True, check=True).stdout
        assert "Categories:" in info and all(c.name in info for c in CLASSES.classes) and "GDALRasterAttributeTable" in info
    # inside the TIFF, no sidecar needed: names as band metadata
    for side in (aux, tmp_path / "m.qml"):
        side.unlink()
    with rasterio.open(out) as src:
        assert {k: v for k, v in src.tags(1).items() if k.startswith("CLASS_") and k != "CLASS_NAMES"} == {
            f"CLASS_{c.code}": c.name for c in CLASSES.classes}
    with rasterio.open(tmp_path / "m.confidence.tif") as src:
        assert src.units[0] == "1" and "confidence" in src.descriptions[0]
    assert "singlebandpseudocolor" in (tmp_path / "m.confidence.qml").read_text()
    item = json.loads((tmp_path / "m.stac.json").read_text())
    assert item["properties"]["start_datetime"] == "2023-03-01T00:00:00Z"
    assert item["properties"]["end_datetime"] == "2023-10-27T00:00:00Z"
    assert [c["value"] for c in item["assets"]["map"]["raster:bands"][0]["classification:classes"]] == CLASSES.codes
    assert item["assets"]["map"]["href"] == "./m.tif" and -180 <= item["bbox"][0] <= item["bbox"][2] <= 180
    pystac = pytest.importorskip("pystac")
    parsed = pystac.Item.from_dict(item)
    from pystac.extensions.classification import ClassificationExtension

    assert [c.value for c in ClassificationExtension.ext(parsed).classes] == CLASSES.codes


def test_stac_item_of_a_grid_without_crs_has_no_footprint() -> None:
    """Pixel coordinates (``crs: none``) are no place on Earth: null geometry, no bbox."""
    from types import SimpleNamespace

    from rasterio.transform import from_origin

    from cropseq.classes import ClassTable
    from cropseq.stac_item import stac_item

    grid = SimpleNamespace(crs=None, transform=from_origin(0, 100, 1, 1), width=10, height=10)
    outputs = SimpleNamespace(confidence=None, uncertainty={}, probabilities=None, probabilities_zarr=None,
                              area=None, qml=None, aux=None)  # fmt: skip
    item = stac_item(Path("/x/map.tif"), outputs, ClassTable.from_names(["a", "b"]), grid)
    assert item["geometry"] is None and "bbox" not in item


def test_class_names_of_a_foreign_raster_come_from_its_pam_sidecar(tmp_path: Path) -> None:
    """A class raster from QGIS/ArcGIS/GDAL keeps its category names only in ``.aux.xml``:
    they are read without GDAL's Python bindings (not a dependency)."""
    import rasterio

    from cropseq.classes import ClassTable
    from cropseq.raster_metadata import pam_xml

    path = tmp_path / "landcover.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as dst:
        dst.write(np.ones((1, 4, 4), np.uint8))
    assert raster_class_names(path) == {}
    (tmp_path / "landcover.tif.aux.xml").write_text(pam_xml(ClassTable.from_names(["crop", "forest & wood"])))
    assert raster_class_names(path) == {1: "crop", 2: "forest & wood"}
    (tmp_path / "landcover.tif.aux.xml").write_text("<PAMDataset><broken")
    assert raster_class_names(path) == {}


def test_one_reader_of_class_tables_and_the_legend_of_any_class_raster(tmp_path: Path) -> None:
    """Class names of a raster are read in one module (raster_metadata); the old import
    paths (``cropseq.outputs``, ``cropseq.evaluation``) no longer offer it. The legend: cropseq's table, else names from other metadata,
    else the area CSV, with colours from the colour table; else ``class <code>``."""
    import cropseq.evaluation
    import cropseq.outputs

    assert "read_class_table" not in cropseq.outputs.__all__
    assert "raster_class_names" not in cropseq.evaluation.__all__
    res = write_crop_map(tmp_path / "m.tif", np.array([[3, 7], [9, 0]], np.uint8), T, CRS_UTM, CLASSES)
    assert class_legend(res.map) == [(c.code, c.name, c.color) for c in CLASSES.classes]

    path = tmp_path / "foreign.tif"
    profile = {"driver": "GTiff", "width": 2, "height": 2, "count": 1, "dtype": "uint8"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.array([[[1, 2], [2, 0]]], np.uint8))
        dst.write_colormap(1, {1: (255, 0, 0, 255), 2: (0, 0, 255, 255)})
    # Codes as names; their colours are generated, as before the readers were merged.
    assert [(c, n) for c, n, _ in class_legend(path)] == [(1, "class 1"), (2, "class 2")]
    area = tmp_path / "foreign.area.csv"
    area.write_text("code,name,pixels\n1,soy,1\nx,bad,0\n2,maize,2\n")
    assert class_legend(path, area) == [(1, "soy", "#ff0000"), (2, "maize", "#0000ff")]
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(1, CLASS_1="wheat")
    assert class_legend(path, area) == [(1, "wheat", "#ff0000")]
