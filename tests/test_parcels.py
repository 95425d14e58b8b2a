"""Parcel-level maps (cropseq.parcels, ``cropseq parcels``): majority class, share, valid
pixels and mean probabilities per parcel, the same whatever the window size; the parcel map
COG with the class map's metadata; the share of reference parcels classed right."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from shapely.geometry import box

from cropseq.classes import ClassTable
from cropseq.cli import main
from cropseq.outputs import write_crop_map

CLASSES = ClassTable.from_records([
    {"code": 1, "name": "wheat", "color": "#d8b365"},
    {"code": 2, "name": "maize", "color": "#fdae61"},
    {"code": 3, "name": "forest", "color": "#1b7837"},
])
T = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5200000.0)


def _geom(r0: int, c0: int, r1: int, c1: int):
    """Polygon of pixel rows r0..r1-1, cols c0..c1-1 (pixel edges)."""
    return box(T.c + c0 * 10, T.f - r1 * 10, T.c + c1 * 10, T.f - r0 * 10)


@pytest.fixture()
def scene(tmp_path: Path) -> dict[str, Path]:
    """A 40 x 40 map with three known parcels, a truth raster and field polygons."""
    cls = np.full((40, 40), 3, np.uint8)
    cls[0:10, 0:10] = 1  # parcel A: 100 px wheat ...
    cls[0:3, 0:10] = 2  # ... of which 30 px maize -> majority wheat, share 0.7
    cls[20:30, 20:30] = 2  # parcel B: maize, 10 px unclassified
    cls[20, 20:30] = 0
    write_crop_map(tmp_path / "map.tif", cls, T, "EPSG:32633", CLASSES)
    truth = np.zeros((40, 40), np.uint8)
    truth[0:10, 0:10] = 1  # A right
    truth[20:30, 20:30] = 3  # B wrong (truth forest)
    write_crop_map(tmp_path / "truth.tif", truth, T, "EPSG:32633", CLASSES)
    fields = gpd.GeoDataFrame(
        {"field_id": [7, 8, 9], "label": ["wheat", "forest", "forest"]},
        geometry=[_geom(0, 0, 10, 10), _geom(20, 20, 30, 30), _geom(32, 0, 40, 8)], crs="EPSG:32633",
    )
    fields.to_file(tmp_path / "fields.gpkg", layer="fields", driver="GPKG")
    return {"dir": tmp_path, "map": tmp_path / "map.tif", "truth": tmp_path / "truth.tif", "fields": tmp_path / "fields.gpkg"}


def _probabilities(path: Path, cls: np.ndarray) -> None:
    """A probability Zarr: 0.8 on the mapped class, 0.1 on the others; NaN where unclassified."""
    from cropseq.outputs import Grid
    from cropseq.prob_zarr import ProbabilityZarr

    p = np.full((3, *cls.shape), 0.1, np.float32)
    for k in range(3):
        p[k][cls == k + 1] = 0.8
    p[:, cls == 0] = np.nan
    z = ProbabilityZarr(path, Grid(cls.shape[1], cls.shape[0], T, rasterio.crs.CRS.from_epsg(32633)), CLASSES, chunk=16)
    z.write(0, 0, p)
    z.finish()


def test_majority_share_valid_and_probabilities_do_not_depend_on_the_window(scene):
    from cropseq.parcels import parcel_table, read_parcels, summarise_parcels

    with rasterio.open(scene["map"]) as src:
        cls = src.read(1)
    _probabilities(scene["dir"] / "p.zarr", cls)
    parcels = read_parcels(scene["fields"], "EPSG:32633", "field_id")
    tables = []
    for window in (7, 16, 1024):  # per-window accumulation: any window gives the same table
        stats = summarise_parcels(scene["map"], parcels, probabilities_zarr=scene["dir"] / "p.zarr", window=window)
        tables.append(parcel_table(parcels, stats))
    for t in tables[1:]:
        pd.testing.assert_frame_equal(pd.DataFrame(t.drop(columns="geometry")), pd.DataFrame(tables[0].drop(columns="geometry")))
    t = tables[0].set_index("field_id")
    assert t.loc[7, "class_name"] == "wheat" and t.loc[7, "majority_share"] == pytest.approx(0.7)
    assert t.loc[7, "valid_pixels"] == 100 and t.loc[8, "valid_pixels"] == 90 and t.loc[8, "class_code"] == 2
    assert t.loc[7, "prob_wheat"] == pytest.approx(0.7 * 0.8 + 0.3 * 0.1)
    assert t.loc[8, "prob_maize"] == pytest.approx(0.8)  # unclassified (NaN) pixels left out
    assert t.loc[9, "class_name"] == "forest" and t.loc[9, "majority_share"] == 1.0


def test_cli_parcels_table_raster_and_test_field_score(scene, capsys):
    d = scene["dir"]
    pd.DataFrame({"sample_id": [0, 1], "group": ["7", "8"], "label": ["wheat", "forest"]}).to_csv(d / "test.csv", index=False)
    rc = main(["parcels", "--map", str(scene["map"]), "--parcels", str(scene["fields"]), "--id-column", "field_id",
               "--reference-column", "label", "--test-samples", str(d / "test.csv"), "--out", str(d / "p.gpkg")])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "majority class right for 1 of 2 reference parcels: 0.500" in printed
    m = json.loads((d / "p.json").read_text())
    assert (m["scored"], m["right"], m["n_parcels"]) == (2, 1, 3) and m["per_class"]["forest"]["right"] == 0
    assert m["ci95"][0] < 0.5 < m["ci95"][1]
    table = gpd.read_file(d / "p.gpkg")
    assert {"parcel_id", "field_id", "class_code", "class_name", "majority_share", "valid_pixels", "reference",
            "correct"} <= set(table.columns)
    assert pd.isna(table.set_index("field_id").loc[9, "reference"])  # not a test-split field
    # the parcel map: majority class per parcel, 0 outside, the class map's metadata
    from cropseq.raster_metadata import pam_category_names, read_class_table

    with rasterio.open(d / "p.tif") as src:
        pm = src.read(1)
    assert (pm[0:10, 0:10] == 1).all() and (pm[20:30, 20:30] == 2).all() and pm[12, 12] == 0
    assert read_class_table(d / "p.tif") == CLASSES
    assert pam_category_names(d / "p.tif")[2] == "maize" and (d / "p.qml").is_file()


def test_truth_raster_scores_each_parcel_by_its_truth_majority(scene, capsys):
    d = scene["dir"]
    assert main(["parcels", "--map", str(scene["map"]), "--parcels", str(scene["fields"]), "--truth",
                 str(scene["truth"]), "--out", str(d / "t.gpkg"), "--raster", str(d / "t_map.tif")]) == 0
    m = json.loads((d / "t.json").read_text())
    assert (m["scored"], m["right"]) == (2, 1)  # field 9 has no truth pixel: not scored
    assert (d / "t_map.tif").is_file()


@pytest.mark.e2e
def test_segments_of_the_image(tmp_path, capsys):
    from cropseq.simulate import simulate_scene

    info = simulate_scene(tmp_path / "sim", size=48, n_dates=8, seed=0)
    with rasterio.open(info.truth) as src:
        truth = src.read(1)
        write_crop_map(tmp_path / "map.tif", truth, src.transform, src.crs,
                       ClassTable.from_yaml(tmp_path / "sim" / "classes.yaml"))
    for method in ("slic", "felzenszwalb"):
        out = tmp_path / f"{method}.gpkg"
        assert main(["parcels", "--map", str(tmp_path / "map.tif"), "--segments", method, "--stack", str(info.stack),
                     "--segment-size", "40", "--truth", str(info.truth), "--out", str(out)]) == 0, capsys.readouterr().err
        seg = gpd.read_file(out)
        assert len(seg) >= 10 and seg["parcel_id"].is_unique
        m = json.loads(out.with_suffix(".json").read_text())
        assert m["scored"] == len(seg) - m["unclassified"] or m["scored"] <= len(seg)
        assert m["share_right"] > 0.6  # segments of the truth's own fields mostly hold one class


@pytest.mark.parametrize("args, message", [
    ([], "give either --parcels FILE"),
    (["--segments", "slic"], "--segments needs --stack"),
    (["--segments", "watershed", "--stack", "x.yaml"], "unknown segmentation 'watershed'"),
    (["--parcels", "FIELDS", "--truth", "TRUTH", "--reference-column", "label"], "not both"),
    (["--parcels", "FIELDS", "--test-samples", "t.csv"], "--test-samples goes with --reference-column"),
    (["--parcels", "FIELDS", "--reference-column", "crop"], "no reference column 'crop'"),
    (["--parcels", "nope.gpkg"], "parcels file not found"),
])
def test_cli_errors_are_one_line(scene, capsys, args, message):
    args = [str(scene["fields"]) if a == "FIELDS" else str(scene["truth"]) if a == "TRUTH" else a for a in args]
    rc = main(["parcels", "--map", str(scene["map"]), "--out", str(scene["dir"] / "e.gpkg"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (scene["dir"] / "e.gpkg").exists()


def test_probabilities_on_another_grid_are_refused(scene, capsys):
    cls = np.ones((20, 20), np.uint8)
    _probabilities(scene["dir"] / "small.zarr", cls)
    rc = main(["parcels", "--map", str(scene["map"]), "--parcels", str(scene["fields"]), "--probabilities-zarr",
               str(scene["dir"] / "small.zarr"), "--out", str(scene["dir"] / "e.gpkg")])
    err = capsys.readouterr().err
    assert rc == 2 and "probabilities grid 20 x 20 px differs from the map's 40 x 40 px" in err
