"""read_labels: vector files and CSV points into the stack CRS."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from _data_fixtures import TINY_CRS, pixel_centre, write_points_csv
from shapely.geometry import MultiPoint, Point, box

from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.labels import read_labels


def test_csv_lonlat_points_reprojected(tmp_path: Path) -> None:
    rows = [
        {"longitude": 15.0, "latitude": 45.0, "from": "2021-01-01", "to": "2022-01-01", "label": "maize"},
        {"longitude": 15.001, "latitude": 45.001, "from": "", "to": "", "label": "wheat"},
    ]
    ls = read_labels(write_points_csv(tmp_path / "p.csv", rows), TINY_CRS)
    f = ls.features
    assert f.crs.to_epsg() == 32633
    # 15 E is the central meridian of UTM 33: easting 500000.
    assert f.geometry.x.iloc[0] == pytest.approx(500000.0, abs=1e-6)
    assert f["sample_id"].tolist() == [0, 1] and f["group"].tolist() == ["0", "1"]
    assert str(f["from"].iloc[0].date()) == "2021-01-01" and f["to"].isna().iloc[1]
    assert ls.classes.names == ["maize", "wheat"] and ls.classes.codes == [1, 2]
    assert ls.is_point.all()


def test_csv_xy_points_in_stack_crs(tmp_path: Path) -> None:
    x, y = pixel_centre(2, 3)
    ls = read_labels(write_points_csv(tmp_path / "p.csv", [{"x": x, "y": y, "crop": "oat"}]), TINY_CRS, class_column="crop")
    assert (ls.features.geometry.x.iloc[0], ls.features.geometry.y.iloc[0]) == (x, y)


def test_csv_non_numeric_coordinate_names_row(tmp_path: Path) -> None:
    rows = [{"longitude": 15.0, "latitude": 45.0, "label": "a"}, {"longitude": "15,2", "latitude": 45.0, "label": "a"}]
    with pytest.raises(CropseqError, match=r"p.csv: row 1 \(line 3\) has a non-numeric 'longitude' coordinate '15,2'"):
        read_labels(write_points_csv(tmp_path / "p.csv", rows), TINY_CRS)


def test_missing_class_column_lists_columns(tmp_path: Path) -> None:
    path = write_points_csv(tmp_path / "p.csv", [{"longitude": 15.0, "latitude": 45.0, "crop": "a"}])
    with pytest.raises(CropseqError, match=r"no class column 'label' \(columns: longitude, latitude, crop\)"):
        read_labels(path, TINY_CRS)


def test_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(CropseqError, match="labels file not found"):
        read_labels(tmp_path / "none.csv", TINY_CRS)
    p = write_points_csv(tmp_path / "p.csv", [{"easting": 1, "northing": 2, "label": "a"}])
    with pytest.raises(CropseqError, match="need longitude,latitude"):
        read_labels(p, TINY_CRS)
    p = write_points_csv(tmp_path / "q.csv", [{"x": 1, "y": 2, "label": "a"}, {"x": 1, "y": 2, "label": None}])
    with pytest.raises(CropseqError, match="row 1 has an empty class"):
        read_labels(p, TINY_CRS)
    p = write_points_csv(tmp_path / "r.csv", [{"x": 1, "y": 2, "label": "a", "from": "2021-05-01", "to": "2021-01-01"}])
    with pytest.raises(CropseqError, match="'to' .* is not after 'from'"):
        read_labels(p, TINY_CRS)


def test_unknown_class_with_class_table(tmp_path: Path) -> None:
    p = write_points_csv(tmp_path / "p.csv", [{"x": 1, "y": 2, "label": "rye"}, {"x": 1, "y": 2, "label": "maize"}])
    table = ClassTable.from_names(["maize", "wheat"])
    with pytest.raises(CropseqError, match=r"unknown class\(es\) 'rye'.*known: maize, wheat"):
        read_labels(p, TINY_CRS, classes=table)
    ok = read_labels(write_points_csv(tmp_path / "q.csv", [{"x": 1, "y": 2, "label": "wheat"}]), TINY_CRS, classes=table)
    assert ok.classes is table


def test_vector_polygons_and_points(tmp_path: Path) -> None:
    g = gpd.GeoDataFrame(
        {"crop": ["maize", "wheat", "maize"], "field": [101, 102, 103]},
        geometry=[box(15.0, 45.0, 15.001, 45.001), Point(15.002, 45.002), MultiPoint([(15.0, 45.0), (15.003, 45.0)])],
        crs="EPSG:4326",
    )
    for name in ("l.gpkg", "l.geojson"):
        g.to_file(tmp_path / name)
        ls = read_labels(tmp_path / name, TINY_CRS, class_column="crop", id_column="field")
        f = ls.features
        assert f.crs.to_epsg() == 32633 and len(f) == 4  # the multi-point is split
        assert f["sample_id"].tolist() == [0, 1, 2, 3]  # renumbered, unique
        assert f["group"].tolist() == ["101", "102", "103", "103"]
        assert ls.is_point.tolist() == [False, True, True, True]
    with pytest.raises(CropseqError, match=r"no id column 'parcel' \(columns: crop, field\)"):
        read_labels(tmp_path / "l.gpkg", TINY_CRS, class_column="crop", id_column="parcel")
    with pytest.raises(CropseqError, match=r"no class column 'label' \(columns: crop, field\)"):
        read_labels(tmp_path / "l.gpkg", TINY_CRS)


def test_vector_unreadable(tmp_path: Path) -> None:
    (tmp_path / "bad.gpkg").write_bytes(b"not a geopackage")
    with pytest.raises(CropseqError, match="bad.gpkg: cannot read vector file"):
        read_labels(tmp_path / "bad.gpkg", TINY_CRS)


def test_dtwsat_samples_csv(shared_data: Path) -> None:
    path = shared_data / "dtwsat_lucc_mt" / "raw" / "samples.csv"
    if not path.is_file():
        pytest.skip("dtwSat data absent")
    sinu = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"
    ls = read_labels(path, sinu)
    assert ls.n == 603 and len(ls.classes) == 5
    assert np.all(ls.features["to"] > ls.features["from"])
    assert ls.features.geometry.x.between(-6089550.69, -6080979.39).all()


def test_bad_validity_date_names_row(tmp_path: Path) -> None:
    rows = [{"x": 1, "y": 2, "label": "a", "from": "2021-01-01"}, {"x": 1, "y": 2, "label": "a", "from": "spring"}]
    with pytest.raises(CropseqError, match=r"'from' value 'spring' in row 1 is not a date"):
        read_labels(write_points_csv(tmp_path / "p.csv", rows), TINY_CRS)


def test_sits_start_and_end_dates_are_season_bounds(tmp_path: Path) -> None:
    """sits' sample tables (longitude, latitude, start_date, end_date, label) bound each
    sample's season with an inclusive end date: read as from = start, to = end + 1 day."""
    rows = [
        {"longitude": 15.0, "latitude": 45.0, "start_date": "2013-09-14", "end_date": "2014-08-29", "label": "Soy_Corn"},
        {"longitude": 15.001, "latitude": 45.001, "start_date": "2013-09-14", "end_date": "2013-09-14", "label": "Cerrado"},
    ]
    f = read_labels(write_points_csv(tmp_path / "sits.csv", rows), TINY_CRS).features
    assert [str(d.date()) for d in f["from"]] == ["2013-09-14", "2013-09-14"]
    assert [str(d.date()) for d in f["to"]] == ["2014-08-30", "2013-09-15"]  # the end date stays inside
    bad = [{"longitude": 15.0, "latitude": 45.0, "start_date": "2013-09-14", "end_date": "later", "label": "a"}]
    with pytest.raises(CropseqError, match="'end_date' value"):
        read_labels(write_points_csv(tmp_path / "bad.csv", bad), TINY_CRS)
