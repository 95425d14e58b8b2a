"""CLI: cap-samples, samples-to-points, label-points (the workflow's small steps, by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _data_fixtures import (
    TINY_CRS,
    assert_user_error,
    make_samples_table,
    pixel_centre,
    run_cli,
    write_points_csv,
    write_raster,
)

from cropseq.classes import ClassTable
from cropseq.samples import read_samples, read_samples_classes, write_samples

NAMES = {1: "maize", 2: "wheat"}


@pytest.fixture()
def table(tmp_path: Path) -> Path:
    """12 samples in 6 groups of 2 (x, y of each sample's pixel), with a stored class table."""
    df = make_samples_table(n_samples=12, n_steps=3)
    df["group"] = [f"g{(sid - 10) // 2}" for sid in df["sample_id"]]
    xy = {sid: pixel_centre(k, k) for k, sid in enumerate(sorted(df["sample_id"].unique()))}
    df["x"] = [xy[s][0] for s in df["sample_id"]]
    df["y"] = [xy[s][1] for s in df["sample_id"]]
    return write_samples(df, tmp_path / "all.parquet", classes=ClassTable.from_names(["maize", "wheat"]))


@pytest.fixture()
def truth(tmp_path: Path) -> Path:
    """A 6x8 class raster: left half maize (1), right half wheat (2), row 0 nodata (0)."""
    import rasterio

    data = np.ones((1, 6, 8), dtype=np.uint8)
    data[0, :, 4:] = 2
    data[0, 0, :] = 0
    path = write_raster(tmp_path / "truth.tif", data, nodata=0)
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(CROPSEQ_CLASSES=json.dumps({str(k): v for k, v in NAMES.items()}))
    return path


def _design_points(path: Path, cells: list[tuple[int, int]], map_class: list[str]) -> Path:
    """Points as `cropseq sample-design` writes them: empty reference, map class, x, y."""
    import geopandas as gpd

    xy = [pixel_centre(r, c) for r, c in cells]
    gdf = gpd.GeoDataFrame(
        {"point_id": range(len(cells)), "map_class": map_class, "reference": [None] * len(cells),
         "x": [p[0] for p in xy], "y": [p[1] for p in xy]},
        geometry=gpd.points_from_xy([p[0] for p in xy], [p[1] for p in xy]), crs=TINY_CRS,
    )  # fmt: skip
    gdf.to_file(path, layer="points", driver="GPKG")
    return path


# ----------------------------------------------------------------------------- cap-samples


def test_cap_samples_keeps_at_most_n_per_group_seeded(tmp_path: Path, table: Path) -> None:
    out, again = tmp_path / "capped.parquet", tmp_path / "again.parquet"
    res = run_cli(["cap-samples", "--samples", table, "--out", out, "--max-per-group", 1, "--seed", 3])
    assert res.rc == 0, res
    assert f"6 of 12 samples kept (at most 1 per group, 6 groups) -> {out}" in res.out
    df = read_samples(out)
    assert df.groupby("group")["sample_id"].nunique().tolist() == [1] * 6
    assert (df.groupby("sample_id").size() == 3).all()  # every date of a kept sample stays
    assert read_samples_classes(out) == read_samples_classes(table)  # the class table goes along
    assert run_cli(["cap-samples", "--samples", table, "--out", again, "--max-per-group", 1, "--seed", 3]).rc == 0
    pd.testing.assert_frame_equal(read_samples(again), df)  # same seed, same samples


def test_cap_samples_errors(tmp_path: Path, table: Path) -> None:
    out = tmp_path / "capped.parquet"
    cap = ["cap-samples", "--max-per-group", 2]
    assert_user_error(run_cli([*cap, "--samples", tmp_path / "none.parquet", "--out", out]), "samples table not found",
                      outputs=[out])  # fmt: skip
    assert_user_error(run_cli([*cap, "--samples", table, "--out", tmp_path / "c.txt"]), "c.txt", "format")
    res = run_cli(["cap-samples", "--samples", table, "--out", out, "--max-per-group", 0])
    assert_user_error(res, "--max-per-group")
    assert_user_error(run_cli([*cap, "--samples", table, "--out", table]), "also an input")
    df = read_samples(table).drop(columns="group")
    write_samples(df, tmp_path / "nogroup.parquet")
    assert_user_error(run_cli([*cap, "--samples", tmp_path / "nogroup.parquet", "--out", out]), "no group column",
                      outputs=[out])  # fmt: skip


# ----------------------------------------------------------------------------- samples-to-points


def test_samples_to_points_one_per_sample(tmp_path: Path, table: Path) -> None:
    out = tmp_path / "points.csv"
    res = run_cli(["samples-to-points", "--samples", table, "--out", out])
    assert res.rc == 0, res
    assert f"12 points, one per sample -> {out}" in res.out
    points = pd.read_csv(out)
    assert list(points.columns) == ["sample_id", "x", "y", "label", "group"]
    df = read_samples(table).drop_duplicates("sample_id")
    assert points["sample_id"].tolist() == df["sample_id"].tolist()
    assert points[["x", "y"]].to_numpy().tolist() == df[["x", "y"]].to_numpy().tolist()
    assert points["label"].tolist() == df["label"].tolist()


def test_samples_to_points_errors(tmp_path: Path, table: Path) -> None:
    out = tmp_path / "points.csv"
    assert_user_error(run_cli(["samples-to-points", "--samples", table, "--out", tmp_path / "p.gpkg"]),
                      "p.gpkg", ".csv file")  # fmt: skip
    assert_user_error(run_cli(["samples-to-points", "--samples", tmp_path / "none.csv", "--out", out]), "not found",
                      outputs=[out])  # fmt: skip
    write_samples(read_samples(table).drop(columns=["x", "y"]), tmp_path / "noxy.parquet")
    assert_user_error(run_cli(["samples-to-points", "--samples", tmp_path / "noxy.parquet", "--out", out]),
                      "noxy.parquet", "no x, y column", outputs=[out])  # fmt: skip


# ----------------------------------------------------------------------------- label-points


def test_label_points_from_reference_raster(tmp_path: Path, truth: Path) -> None:
    points = _design_points(tmp_path / "points.gpkg", [(1, 0), (2, 5), (5, 7), (3, 3)],
                            ["maize", "maize", "wheat", "wheat"])  # fmt: skip
    out = tmp_path / "labelled.gpkg"
    res = run_cli(["label-points", "--points", points, "--reference", truth, "--out", out])
    assert res.rc == 0, res
    assert f"4 points labelled from {truth} (50.0% agree with the map) -> {out}" in res.out
    import geopandas as gpd

    got = gpd.read_file(out)
    assert got["reference"].tolist() == ["maize", "wheat", "wheat", "maize"]
    assert got["map_class"].tolist() == ["maize", "maize", "wheat", "wheat"]  # the rest is kept
    assert got.crs == TINY_CRS


def test_label_points_keeps_the_points_crs_and_reads_csv(tmp_path: Path, truth: Path) -> None:
    import geopandas as gpd

    points = _design_points(tmp_path / "points.gpkg", [(1, 0), (2, 5)], ["maize", "wheat"])
    gpd.read_file(points).to_crs("EPSG:4326").to_file(tmp_path / "ll.gpkg", driver="GPKG")
    out = tmp_path / "ll.labelled.gpkg"
    assert run_cli(["label-points", "--points", tmp_path / "ll.gpkg", "--reference", truth, "--out", out]).rc == 0
    got = gpd.read_file(out)
    assert got.crs == "EPSG:4326" and got["reference"].tolist() == ["maize", "wheat"]
    csv = write_points_csv(tmp_path / "pts.csv", [dict(zip("xy", pixel_centre(4, 6), strict=True))])
    res = run_cli(["label-points", "--points", csv, "--reference", truth, "--out", tmp_path / "l.csv",
                   "--column", "label"])  # fmt: skip
    assert res.rc == 0, res
    assert pd.read_csv(tmp_path / "l.csv")["label"].tolist() == ["wheat"]


def test_label_points_errors(tmp_path: Path, truth: Path) -> None:
    out = tmp_path / "labelled.gpkg"
    good = _design_points(tmp_path / "points.gpkg", [(1, 0)], ["maize"])
    label = ["label-points", "--reference", truth, "--out", out]
    on_nodata = _design_points(tmp_path / "nodata.gpkg", [(1, 0), (0, 2)], ["maize", "maize"])
    assert_user_error(run_cli([*label, "--points", on_nodata]), "truth.tif", "1 point(s) fall on code(s) [0]",
                      "row 1 of nodata.gpkg", outputs=[out])  # fmt: skip
    far = write_points_csv(tmp_path / "far.csv", [{"x": 0.0, "y": 0.0}])
    assert_user_error(run_cli([*label, "--points", far]), "far.csv", "outside the reference raster", outputs=[out])
    assert_user_error(run_cli([*label, "--points", tmp_path / "none.gpkg"]), "points not found", outputs=[out])
    unnamed = write_raster(tmp_path / "unnamed.tif", np.ones((1, 6, 8), dtype=np.uint8))
    assert_user_error(run_cli(["label-points", "--points", good, "--reference", unnamed, "--out", out]),
                      "unnamed.tif", "names no classes", outputs=[out])  # fmt: skip
    (tmp_path / "junk.tif").write_text("not a raster")
    assert_user_error(run_cli(["label-points", "--points", good, "--reference", tmp_path / "junk.tif", "--out", out]),
                      "junk.tif", "cannot read the reference raster", outputs=[out])  # fmt: skip
    assert_user_error(run_cli([*label[:-1], tmp_path / "l.shp", "--points", good]), "l.shp", ".gpkg")
    assert_user_error(run_cli(["label-points", "--points", good, "--reference", truth, "--out", good]), "also an input")


def test_label_points_refuses_polygons(tmp_path: Path, truth: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    x, y = pixel_centre(2, 2)
    gpd.GeoDataFrame({"label": ["maize"]}, geometry=[box(x, y, x + 10, y + 10)], crs=TINY_CRS).to_file(
        tmp_path / "fields.gpkg", driver="GPKG"
    )
    res = run_cli(["label-points", "--points", tmp_path / "fields.gpkg", "--reference", truth,
                   "--out", tmp_path / "out.gpkg"])  # fmt: skip
    assert_user_error(res, "fields.gpkg", "not points", outputs=[tmp_path / "out.gpkg"])
