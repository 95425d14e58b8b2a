"""Metrics, confusion plot, sample scoring and map scoring (tiny, seeded, hand-checked)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from cropseq.errors import CropseqError
from cropseq.evaluation import (
    CONFUSION_AXES,
    classification_metrics,
    evaluate_samples,
    plot_confusion_matrix,
    score_map,
    write_metrics,
)
from cropseq.raster_metadata import raster_class_names
from cropseq.sequences import SequenceArrays

# rows = reference: a -> [4 a, 1 b], b -> [1 a, 3 b, 1 c], c -> [5 c]
Y_TRUE = ["a"] * 5 + ["b"] * 5 + ["c"] * 5
Y_PRED = ["a"] * 4 + ["b"] + ["a"] + ["b"] * 3 + ["c"] + ["c"] * 5


def test_metrics_match_hand_computed_values() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, ["a", "b", "c"])
    assert m["confusion_matrix"] == [[4, 1, 0], [1, 3, 1], [0, 0, 5]]
    assert m["confusion_matrix_axes"] == CONFUSION_AXES
    assert m["n"] == 15
    assert m["overall_accuracy"] == pytest.approx(12 / 15)
    # p_e = (5*5 + 5*4 + 5*6) / 15^2 = 1/3 ; kappa = (0.8 - 1/3) / (2/3) = 0.7
    assert m["kappa"] == pytest.approx(0.7)
    pc = m["per_class"]
    assert pc["a"]["users_accuracy"] == pytest.approx(4 / 5)
    assert pc["b"]["users_accuracy"] == pytest.approx(3 / 4)
    assert pc["c"]["users_accuracy"] == pytest.approx(5 / 6)
    assert pc["b"]["producers_accuracy"] == pytest.approx(3 / 5)
    assert pc["c"]["producers_accuracy"] == pytest.approx(1.0)
    assert pc["b"]["f1"] == pytest.approx(2 / 3)
    assert pc["c"]["f1"] == pytest.approx(10 / 11)
    assert pc["b"]["support"] == 5 and pc["c"]["predicted"] == 6
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 10 / 11) / 3)


def test_metrics_agree_with_sklearn() -> None:
    from sklearn.metrics import cohen_kappa_score, f1_score

    rng = np.random.default_rng(0)
    names = np.array(["x", "y", "z", "w"])
    yt, yp = names[rng.integers(0, 4, 200)], names[rng.integers(0, 4, 200)]
    yp[:120] = yt[:120]
    m = classification_metrics(yt, yp, list(names))
    assert m["kappa"] == pytest.approx(cohen_kappa_score(yt, yp))
    assert m["macro_f1"] == pytest.approx(f1_score(yt, yp, average="macro"))


def test_absent_classes_give_null_or_zero_and_strict_json(tmp_path) -> None:
    # "c" is in the reference but never predicted; "d" occurs nowhere.
    m = classification_metrics(["a", "b", "c"], ["a", "b", "a"], ["a", "b", "c", "d"])
    c, d = m["per_class"]["c"], m["per_class"]["d"]
    assert c["users_accuracy"] is None and c["producers_accuracy"] == 0.0 and c["f1"] == 0.0
    assert d["users_accuracy"] is None and d["producers_accuracy"] is None and d["f1"] is None
    assert m["per_class"]["a"]["users_accuracy"] == pytest.approx(0.5)
    # macro F1 over the classes that occur (a, b, c), not d
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    out = write_metrics(m, tmp_path / "m.json")

    def refuse(name: str) -> None:
        raise AssertionError(f"non-strict JSON constant {name}")

    loaded = json.loads(out.read_text(), parse_constant=refuse)
    assert loaded["per_class"]["d"]["f1"] is None


def test_single_class_kappa_is_null() -> None:
    m = classification_metrics(["a", "a"], ["a", "a"], ["a", "b"])
    assert m["overall_accuracy"] == 1.0 and m["kappa"] is None


def test_unknown_label_and_length_mismatch_are_errors() -> None:
    with pytest.raises(CropseqError, match="not in the label list"):
        classification_metrics(["a", "q"], ["a", "a"], ["a", "b"])
    with pytest.raises(CropseqError, match="length"):
        classification_metrics(["a"], ["a", "a"], ["a"])
    with pytest.raises(CropseqError, match="nothing to score"):
        classification_metrics([], [], ["a"])


def test_confusion_png_written_for_ten_classes(tmp_path) -> None:
    rng = np.random.default_rng(1)
    names = [f"Soy_class_{i}" for i in range(10)]
    yt = np.array(names)[rng.integers(0, 10, 300)]
    yp = yt.copy()
    yp[::7] = names[0]
    m = classification_metrics(yt, yp, names)
    png = plot_confusion_matrix(m, tmp_path / "cm.png", title="ten classes")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temporary left behind


# ----------------------------------------------------------------------------- samples


def _arrays(bands: list[str], n: int = 45, t: int = 6, seed: int = 0) -> SequenceArrays:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, t, len(bands), 1, 1)).astype(np.float32)
    x[:, :, 0, 0, 0] += 3 * y[:, None]  # the first band separates the classes
    return SequenceArrays(
        x=x,
        doy=np.tile(np.arange(1, t + 1, dtype=np.float32) * 16, (n, 1)),
        present=np.ones((n, t), bool),
        bands=list(bands),
        labels=np.array(["Forest", "Maize", "Soy"])[y],
    )


def test_evaluate_samples_reorders_bands_and_names_missing_ones() -> None:
    from cropseq.baseline import train_random_forest

    train = _arrays(["red", "nir"])
    rf = train_random_forest(train, None, n_estimators=15, n_jobs=1)
    ref = evaluate_samples(rf, _arrays(["red", "nir"], seed=1))
    other = _arrays(["red", "nir"], seed=1)
    shuffled = SequenceArrays(
        x=np.concatenate([other.x[:, :, ::-1], other.x[:, :, :1] * 0], axis=2),
        doy=other.doy,
        present=other.present,
        bands=["nir", "red", "swir"],
        labels=other.labels,
    )
    m = evaluate_samples(rf, shuffled)
    assert m["confusion_matrix"] == ref["confusion_matrix"]
    assert m["overall_accuracy"] > 0.9 and m["model_kind"] == "rf"
    missing = SequenceArrays(
        x=other.x[:, :, :1], doy=other.doy, present=other.present, bands=["red"], labels=other.labels
    )
    with pytest.raises(CropseqError, match="nir"):
        evaluate_samples(rf, missing, where="held_out.csv")


def test_evaluate_samples_keeps_labels_unknown_to_the_model() -> None:
    from cropseq.baseline import train_random_forest

    rf = train_random_forest(_arrays(["red"]), None, n_estimators=5, n_jobs=1)
    test = _arrays(["red"], n=6)
    test.labels = test.labels.copy()
    test.labels[0] = "Cotton"
    m = evaluate_samples(rf, test)
    assert m["unknown_labels"] == ["Cotton"] and m["n"] == 6
    assert m["per_class"]["Cotton"]["producers_accuracy"] == 0.0


# ----------------------------------------------------------------------------- maps


def _write_raster(path, data, tags=None, nodata=0):
    import rasterio
    from affine import Affine

    with rasterio.open(
        path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1, dtype="uint8",
        crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 4000040), nodata=nodata,
    ) as ds:  # fmt: skip
        ds.write(data.astype(np.uint8), 1)
        if tags:
            ds.update_tags(1, **tags)
    return path


CLASSES_JSON = json.dumps([{"code": 1, "name": "Maize"}, {"code": 2, "name": "Soy"}, {"code": 3, "name": "Forest"}])


def test_score_map_against_truth_raster(tmp_path) -> None:
    pred = np.array([[1, 1, 2, 2, 3], [1, 2, 2, 3, 3], [0, 1, 2, 3, 3], [1, 1, 2, 2, 3]])
    truth = np.array([[1, 1, 2, 2, 3], [1, 1, 2, 3, 3], [1, 1, 0, 3, 2], [0, 0, 0, 0, 0]])
    m_path = _write_raster(tmp_path / "map.tif", pred, {"classes": CLASSES_JSON})
    # The truth raster uses other codes for the same names: matching is by name.
    t_tags = {"class_1": "Forest", "class_2": "Maize", "class_3": "Soy"}
    recode = np.array([0, 2, 3, 1])[truth]
    t_path = _write_raster(tmp_path / "truth.tif", recode, t_tags)
    assert raster_class_names(t_path) == {1: "Forest", 2: "Maize", 3: "Soy"}
    m = score_map(m_path, t_path)
    # scored: truth != 0 and map != 0 -> 15 - 1 (map nodata at [2,0]) = 13... counted below
    keep = (truth != 0) & (pred != 0)
    assert m["n"] == int(keep.sum()) and m["n_unclassified"] == 1
    assert m["labels"] == ["Maize", "Soy", "Forest"]
    assert m["overall_accuracy"] == pytest.approx(float((truth == pred)[keep].mean()))
    # Maize reference pixels: 5, of which 4 mapped Maize and 1 Soy
    assert m["confusion_matrix"][0] == [4, 1, 0]


def test_score_map_grid_mismatch_is_an_error(tmp_path) -> None:
    m_path = _write_raster(tmp_path / "map.tif", np.ones((4, 5)), {"classes": CLASSES_JSON})
    t_path = _write_raster(tmp_path / "truth.tif", np.ones((3, 5)))
    with pytest.raises(CropseqError, match="grid"):
        score_map(m_path, t_path)
    with pytest.raises(CropseqError, match="not found"):
        score_map(tmp_path / "nope.tif", t_path)


def test_score_map_against_points_and_polygons(tmp_path) -> None:
    import geopandas as gpd
    from shapely.geometry import Point, box

    pred = np.array([[1, 1, 2, 2, 3], [1, 2, 2, 3, 3], [1, 1, 2, 3, 3], [1, 1, 2, 2, 3]])
    m_path = _write_raster(tmp_path / "map.tif", pred, {"classes": CLASSES_JSON})
    x0, y0 = 500000, 4000040
    # pixel (r, c) centre: (x0 + 10c + 5, y0 - 10r - 5)
    gdf = gpd.GeoDataFrame(
        {"label": ["Soy", "Forest", "Maize", "Maize"]},
        geometry=[
            Point(x0 + 25, y0 - 5),  # (0, 2) Soy -> Soy
            Point(x0 + 45, y0 - 35),  # (3, 4) Forest -> Forest
            box(x0, y0 - 40, x0 + 20, y0 - 20),  # rows 2-3, cols 0-1: 4 px all Maize
            Point(x0 + 500, y0),  # outside the map
        ],
        crs="EPSG:32633",
    )
    m = score_map(m_path, gdf)
    assert m["n"] == 6 and m["n_outside"] == 1 and m["overall_accuracy"] == 1.0
    assert m["per_class"]["Maize"]["support"] == 4
    assert math.isclose(m["kappa"], 1.0)


def test_score_map_written_by_outputs_against_seasonal_label_csv(tmp_path) -> None:
    from affine import Affine

    from cropseq.classes import ClassTable
    from cropseq.outputs import write_crop_map

    classes = ClassTable.from_names(["Forest", "Maize", "Soy"])  # codes 1, 2, 3
    pred = np.array([[1, 2, 3], [1, 2, 0]], np.uint8)
    map_path = tmp_path / "map.tif"
    write_crop_map(map_path, pred, Affine(10, 0, 0, 0, -10, 20), "EPSG:32633", classes)
    # Pixel centres: (r, c) -> x = 10c + 5, y = 15 - 10r. Two seasons at pixel (0, 1).
    pd.DataFrame(
        {
            "x": [5, 15, 15, 25, 25],
            "y": [15, 15, 15, 15, 5],
            "label": ["Forest", "Maize", "Soy", "Soy", "Soy"],
            "from": ["2020-09-01", "2020-09-01", "2021-09-01", "2020-09-01", "2020-09-01"],
            "to": ["2021-09-01", "2021-09-01", "2022-09-01", "2022-09-01", "2022-09-01"],
        }
    ).to_csv(tmp_path / "labels.csv", index=False)
    m = score_map(map_path, tmp_path / "labels.csv", valid_at="2021-01-15")
    assert m["labels"] == ["Forest", "Maize", "Soy"]
    assert m["n"] == 3 and m["n_unclassified"] == 1 and m["overall_accuracy"] == 1.0
    every = score_map(map_path, tmp_path / "labels.csv")  # both seasons: one Soy counted wrong
    assert every["n"] == 4 and every["confusion_matrix"][2] == [0, 1, 1]
    with pytest.raises(CropseqError, match="no label is valid"):
        score_map(map_path, tmp_path / "labels.csv", valid_at="1990-01-01")


@pytest.mark.slow
@pytest.mark.realdata
def test_dtwsat_map_score_equals_sample_score(shared_data, tmp_path) -> None:
    """Real data, whole chain: a 2011/12 RandomForest map scored against the held-out points
    of that season gives exactly the confusion matrix of scoring their extracted samples."""
    import yaml

    from cropseq.baseline import train_random_forest
    from cropseq.io import open_stack
    from cropseq.labels import read_labels
    from cropseq.outputs import write_crop_map
    from cropseq.samples import extract_samples, table_to_arrays

    root = shared_data / "dtwsat_lucc_mt"
    raw = root / "raw"
    bands = ["blue", "red", "nir", "mir", "evi", "ndvi"]
    (tmp_path / "stack.yaml").write_text(
        yaml.safe_dump({"layout": "per-band", "bands": {b: str(raw / f"{b}.tif") for b in bands},
                        "dates": str(raw / "timeline")})  # fmt: skip
    )
    cube = open_stack(tmp_path / "stack.yaml")
    labels = read_labels(raw / "samples.csv", cube.rio.crs)
    arrays = table_to_arrays(extract_samples(cube, labels)[0], bands=bands)
    part = pd.read_csv(root / "converted" / "cv_train_partitions.csv")
    train_rows = part.loc[part["resample"] == "Resample001", "train_row_1based"].to_numpy() - 1
    rf = train_random_forest(arrays.subset(train_rows), None, n_estimators=50, n_jobs=1)

    season = (cube["time"] >= np.datetime64("2011-09-01")) & (cube["time"] < np.datetime64("2012-09-01"))
    sub = cube.sel(time=season, band=bands)
    proba = rf.predict_image(sub.values, sub["time"].dt.dayofyear.values.astype(np.float32))
    codes = np.asarray(rf.classes.codes, np.uint8)[proba.argmax(axis=0)]
    map_path = tmp_path / "map2011.tif"
    write_crop_map(map_path, codes, cube.rio.transform(), cube.rio.crs, rf.classes)

    csv = pd.read_csv(raw / "samples.csv")
    val = np.setdiff1d(np.flatnonzero(csv["from"].to_numpy() == "2011-09-01"), train_rows)
    csv.iloc[val].to_csv(tmp_path / "val.csv", index=False)
    by_map = score_map(map_path, tmp_path / "val.csv", valid_at="2012-01-01")
    by_samples = evaluate_samples(rf, arrays.subset(val))
    assert by_map["n"] == len(val) == 218 and by_map["n_unclassified"] == 0
    assert by_map["confusion_matrix"] == by_samples["confusion_matrix"]
    assert by_map["overall_accuracy"] > 0.9
