"""A label raster (land-cover map) as labels: one sample per labelled pixel, grouped by patch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from _data_fixtures import TINY_ORIGIN, TINY_RES, assert_user_error, run_cli, tiny_dates, write_raster

from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.grid import TargetGrid
from cropseq.labels import read_labels

#: A 6 x 8 land-cover map: 0 = unlabelled; class 2 in two patches that touch only at a
#: corner (4-neighbour patches: two groups); class 1 in one patch; class 3 one pixel.
LULC = np.array(
    [
        [1, 1, 0, 0, 2, 2, 0, 0],
        [1, 1, 0, 0, 2, 2, 0, 0],
        [0, 0, 0, 0, 0, 0, 2, 0],
        [0, 0, 3, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ],
    np.uint16,
)


def _stack(root: Path, shape: tuple[int, int] = LULC.shape) -> Path:
    """A one-band, two-date stack on the tiny 10 m grid; value = row * 100 + col."""
    rows, cols = np.indices(shape)
    vals = np.stack([rows * 100 + cols, rows * 100 + cols + 0.5]).astype(np.float32)
    write_raster(root / "red.tif", vals)
    (root / "stack.yaml").write_text(yaml.safe_dump({"layout": "per-band", "bands": {"red": "red.tif"}, "dates": tiny_dates(2)}))
    return root / "stack.yaml"


def _grid(shape: tuple[int, int] = LULC.shape) -> TargetGrid:
    from affine import Affine
    from rasterio.crs import CRS

    return TargetGrid(CRS.from_epsg(32633), Affine(TINY_RES, 0, TINY_ORIGIN[0], 0, -TINY_RES, TINY_ORIGIN[1]), shape)


def test_every_labelled_pixel_is_a_sample_grouped_by_patch(tmp_path: Path) -> None:
    write_raster(tmp_path / "lulc.tif", LULC[None])
    ClassTable.from_records([{"code": 1, "name": "forest"}, {"code": 2, "name": "maize"}, {"code": 3, "name": "water"}]).to_yaml(
        tmp_path / "lulc.classes.yaml"
    )
    ls = read_labels(tmp_path / "lulc.tif", "EPSG:32633", grid=_grid())
    f = ls.features
    rows, cols = np.nonzero(LULC)
    assert len(f) == rows.size == 10 and (f.geometry.geom_type == "Point").all()
    assert ls.classes.codes == [1, 2, 3] and ls.classes_source == str(tmp_path / "lulc.classes.yaml")
    names = {1: "forest", 2: "maize", 3: "water"}
    assert list(f["label"]) == [names[int(LULC[r, c])] for r, c in zip(rows, cols)]
    assert list(f["sample_id"]) == list(rows * 8 + cols)
    group = dict(zip(f["sample_id"], f["group"]))
    assert len(set(group.values())) == 4  # forest, maize x 2 (corner contact is not a patch), water
    assert group[0] == group[9] and group[4] == group[13] != group[22]


def test_samples_from_label_raster_on_another_grid(tmp_path: Path) -> None:
    """A 20 m label raster under a 10 m stack: read onto the stack's grid with nearest, so
    pixel (r, c) of the stack gets label (r // 2, c // 2) (independent arithmetic)."""
    from cropseq.io import open_stack
    from cropseq.samples import extract_samples

    coarse = np.array([[1, 2, 0, 2], [0, 3, 3, 1], [1, 1, 0, 0]], np.uint8)
    write_raster(tmp_path / "lulc20.tif", coarse[None], res=2 * TINY_RES)
    cube = open_stack(_stack(tmp_path))
    from cropseq.io import cube_grid

    ls = read_labels(tmp_path / "lulc20.tif", cube.rio.crs, grid=cube_grid(cube))
    df, report = extract_samples(cube, ls)
    assert report.n_samples == int((np.kron(coarse, np.ones((2, 2), int)) > 0).sum())
    first = df.drop_duplicates("sample_id")
    for r, c, lab, red in zip(first["row"], first["col"], first["label"], first["red"]):
        assert lab == str(coarse[r // 2, c // 2]) and red == r * 100 + c
    # A patch spans the 4 fine pixels of a coarse one and its same-class neighbours.
    assert first.groupby("group")["sample_id"].count().max() == 8  # the two 3s side by side


def test_label_raster_names_from_its_gdal_categories(tmp_path: Path) -> None:
    from cropseq.raster_metadata import pam_xml

    write_raster(tmp_path / "map.tif", LULC[None])
    table = ClassTable.from_records([{"code": 1, "name": "forest"}, {"code": 2, "name": "maize"},
                                     {"code": 3, "name": "water"}, {"code": 7, "name": "urban"}])  # fmt: skip
    (tmp_path / "map.tif.aux.xml").write_text(pam_xml(table))
    ls = read_labels(tmp_path / "map.tif", "EPSG:32633")
    assert ls.classes_source == "the raster's class names"
    assert ls.classes.names == ["forest", "maize", "water", "urban"] and ls.classes.codes == [1, 2, 3, 7]
    assert set(ls.features["label"]) == {"forest", "maize", "water"}


def test_unlabelled_values_and_nodata(tmp_path: Path) -> None:
    write_raster(tmp_path / "m.tif", LULC[None], nodata=3)
    ls = read_labels(tmp_path / "m.tif", "EPSG:32633", unlabelled=(0, 2))
    assert set(ls.features["label"]) == {"1"} and len(ls.features) == 4
    assert ls.classes.codes == [1] and ls.classes_source is None


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (np.stack([LULC, LULC]), {}, "a label raster must have 1 band (class codes), this one has 2"),
        (LULC[None].astype(np.float32) + 0.5, {}, "label raster holds non-integer values (e.g. 1.5)"),
        (np.zeros((1, 3, 3), np.uint8), {}, "label raster holds no labelled pixel"),
        (LULC[None].astype(np.int16) - 1, {"unlabelled": (5,)}, "label raster holds code 0: class codes are >= 1"),
        (LULC[None], {"classes": ClassTable.from_names(["a"])}, "label raster value 2 is not a code of the class table"),
        (LULC[None], {"id_column": "field"}, "--id-column is for vector labels"),
    ],
)
def test_label_raster_errors(tmp_path: Path, data: np.ndarray, kwargs: dict, message: str) -> None:
    write_raster(tmp_path / "m.tif", data)
    with pytest.raises(CropseqError) as e:
        read_labels(tmp_path / "m.tif", "EPSG:32633", **kwargs)
    assert message in e.value.message


def test_label_raster_without_crs_on_another_grid_refused(tmp_path: Path) -> None:
    import rasterio

    with rasterio.open(tmp_path / "m.tif", "w", driver="GTiff", height=3, width=3, count=1, dtype="uint8") as dst:
        dst.write(np.ones((1, 3, 3), np.uint8))
    with pytest.raises(CropseqError, match="label raster has no CRS and is not on the stack's grid"):
        read_labels(tmp_path / "m.tif", "EPSG:32633", grid=_grid())


def test_cli_samples_with_label_raster_and_grouped_split(tmp_path: Path) -> None:
    """``cropseq samples --labels lulc.tif``: every labelled pixel a sample, the class table
    keeps the raster's codes, and ``split`` keeps each patch on one side."""
    stack = _stack(tmp_path)
    write_raster(tmp_path / "lulc.tif", LULC[None])
    res = run_cli(["samples", "--stack", stack, "--labels", tmp_path / "lulc.tif", "--out", tmp_path / "s.csv"])
    assert res.rc == 0, res
    assert "10 samples, 20 observations, 3 classes" in res.out
    df = pd.read_csv(tmp_path / "s.csv")
    assert ClassTable.from_yaml(tmp_path / "s.classes.yaml").codes == [1, 2, 3]
    assert df.groupby("group")["sample_id"].nunique().to_dict() == {"patch1": 4, "patch2": 4, "patch3": 1, "patch4": 1}
    res = run_cli(["split", "--samples", tmp_path / "s.csv", "--train", tmp_path / "t.csv", "--val", tmp_path / "v.csv",
                   "--val-fraction", "0.5"])  # fmt: skip
    assert res.rc == 0, res
    t, v = pd.read_csv(tmp_path / "t.csv"), pd.read_csv(tmp_path / "v.csv")
    assert not set(t["group"]) & set(v["group"])
    res = run_cli(["samples", "--stack", stack, "--labels", tmp_path / "lulc.tif", "--out", tmp_path / "u.csv",
                   "--unlabelled", "0", "--unlabelled", "1"])  # fmt: skip
    assert res.rc == 0 and "6 samples" in res.out, res


def test_cli_label_raster_error_is_one_line(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    write_raster(tmp_path / "lulc.tif", np.stack([LULC, LULC]))
    res = run_cli(["samples", "--stack", stack, "--labels", tmp_path / "lulc.tif", "--out", tmp_path / "s.csv"])
    assert_user_error(res, "lulc.tif", "a label raster must have 1 band", outputs=[tmp_path / "s.csv"])
