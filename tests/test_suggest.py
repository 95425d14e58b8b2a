"""``cropseq suggest``: uncertain, spread-out, class-stratified points to label next, with
the columns of sample-design points; one-line errors for grids that differ and for more
points than fit at the minimum distance."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine

from cropseq.classes import ClassTable
from cropseq.cli import main
from cropseq.outputs import write_crop_map
from cropseq.sampling_design import POINT_COLUMNS

CLASSES = ClassTable.from_records([{"code": 1, "name": "wheat"}, {"code": 2, "name": "maize"}, {"code": 3, "name": "forest"}])
T = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5200000.0)


def _float_raster(path: Path, data: np.ndarray, tags: dict[str, str] | None = None) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype="float32", nodata=np.nan, transform=T, crs="EPSG:32633") as dst:
        dst.write(data.astype(np.float32), 1)
        dst.update_tags(**(tags or {}))
    return path


@pytest.fixture()
def mapped(tmp_path: Path) -> Path:
    """60 x 60 map (wheat 60 %, maize 35 %, forest 5 %) and an entropy raster beside it."""
    cls = np.ones((60, 60), np.uint8)
    cls[:, 36:] = 2
    cls[:15, :12] = 3
    write_crop_map(tmp_path / "map.tif", cls, T, "EPSG:32633", CLASSES)
    rng = np.random.default_rng(1)
    unc = rng.random((60, 60)) * 0.5
    unc[40:44, 10:14] = 0.99  # one very uncertain patch: only one of its pixels may be picked
    _float_raster(tmp_path / "map.entropy.tif", unc, {"CROPSEQ_UNCERTAINTY": "entropy"})
    return tmp_path / "map.tif"


def test_points_are_uncertain_spread_stratified_and_seeded(mapped, capsys):
    out = mapped.with_name("next.gpkg")
    assert main(["suggest", "--map", str(mapped), "--n", "20", "--min-distance", "6", "--min-per-class", "3",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    pts = gpd.read_file(out)
    assert list(pts.columns[: len(POINT_COLUMNS)]) == list(POINT_COLUMNS) and "uncertainty" in pts.columns
    assert len(pts) == 20 and pts["reference"].isna().all()
    xy = np.stack([pts["x"], pts["y"]], axis=1) / 10.0  # pixel units
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) + np.eye(len(xy)) * 1e9
    assert d.min() >= 6 - 1e-9  # spread out
    counts = pts["map_class"].value_counts()
    assert counts["forest"] >= 3 and counts["wheat"] > counts["maize"] >= 3  # proportional, minimum per class
    assert pts["uncertainty"].iloc[0] == pytest.approx(0.99, abs=1e-6)  # the patch, once
    assert (pts["uncertainty"] > 0.9).sum() == 1
    assert pts["uncertainty"].is_monotonic_decreasing
    # the map class of every point is the map's value there
    with rasterio.open(mapped) as src:
        vals = [v[0] for v in src.sample(zip(pts["x"], pts["y"]))]
    assert list(pts["map_code"]) == vals
    again = mapped.with_name("again.gpkg")
    assert main(["suggest", "--map", str(mapped), "--n", "20", "--min-distance", "6", "--min-per-class", "3",
                 "--out", str(again)]) == 0
    assert gpd.read_file(again).drop(columns="geometry").equals(pts.drop(columns="geometry"))


def test_confidence_raster_means_one_minus_confidence(mapped):
    from cropseq.suggest import suggest_points

    conf = np.full((60, 60), 0.9)
    conf[5, 50] = 0.2  # the least confident pixel: the most uncertain
    _float_raster(mapped.with_name("c.confidence.tif"), conf)
    pts = suggest_points(mapped, 3, uncertainty=mapped.with_name("c.confidence.tif"), min_distance=3, min_per_class=0)
    assert pts["uncertainty"].iloc[0] == pytest.approx(0.8) and (pts["x"].iloc[0], pts["y"].iloc[0]) == (500505.0, 5199945.0)


def test_too_many_points_for_the_distance_says_how_many_fit(mapped, capsys):
    rc = main(["suggest", "--map", str(mapped), "--n", "100", "--min-distance", "20", "--out", str(mapped.with_name("x.gpkg"))])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "points fit at least 20 px apart" in err and "(asked for 100)" in err
    fit = int(err.split("only ")[1].split()[0])
    assert 4 <= fit < 100
    assert not mapped.with_name("x.gpkg").exists()


def test_uncertainty_on_another_grid_is_refused(mapped, capsys):
    _float_raster(mapped.with_name("small.tif"), np.zeros((30, 30)))
    rc = main(["suggest", "--map", str(mapped), "--n", "5", "--uncertainty", str(mapped.with_name("small.tif")),
               "--out", str(mapped.with_name("x.gpkg"))])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "small.tif: the uncertainty raster's grid (30 x 30 px" in err and "differs from the map's (60 x 60 px" in err


def test_no_uncertainty_raster_beside_the_map(mapped, capsys):
    mapped.with_name("map.entropy.tif").unlink()
    rc = main(["suggest", "--map", str(mapped), "--n", "5", "--out", str(mapped.with_name("x.gpkg"))])
    assert rc == 2 and "no uncertainty raster beside the map" in capsys.readouterr().err
