"""Samples table: validation, I/O, conversion to arrays, extraction, splitting."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from _data_fixtures import TINY_CRS, make_samples_table, pixel_centre, tiny_dates, write_points_csv, write_stack
from shapely.geometry import box

from cropseq.errors import CropseqError
from cropseq.io import open_stack
from cropseq.labels import read_labels
from cropseq.samples import (
    assign_split,
    band_columns,
    cap_per_group,
    extract_samples,
    grouped_stratified_split,
    read_samples,
    table_to_arrays,
    validate_samples,
    write_samples,
)

# ----------------------------------------------------------------------------- table I/O


def test_band_columns_skip_reserved_and_patch() -> None:
    df = make_samples_table(patch=3)
    assert band_columns(df) == ["blue", "nir"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_read_round_trip(tmp_path: Path, suffix: str) -> None:
    df = make_samples_table(patch=3)
    shuffled = df.sample(frac=1.0, random_state=1)
    out = write_samples(shuffled, tmp_path / f"s{suffix}")
    back = read_samples(out)
    # Sorted by sample_id then date, dtypes canonical, values unchanged.
    assert back["sample_id"].is_monotonic_increasing
    pd.testing.assert_frame_equal(
        back[["sample_id", "date", "blue", "nir@r0c2"]].reset_index(drop=True),
        df[["sample_id", "date", "blue", "nir@r0c2"]].reset_index(drop=True),
        check_dtype=False,
    )
    assert back["sample_id"].dtype == np.int64
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_class_table_travels_with_the_table(tmp_path: Path, suffix: str) -> None:
    """Parquet: schema metadata; CSV: <stem>.classes.yaml. Codes and colours survive."""
    from cropseq.classes import ClassTable
    from cropseq.samples import classes_sidecar, read_samples_classes

    df = make_samples_table()
    names = sorted(set(df["label"]))
    table = ClassTable.from_records([{"code": 10 + i, "name": n, "color": "#0000ff"} for i, n in enumerate(names)])
    out = write_samples(df, tmp_path / f"s{suffix}", classes=table)
    assert read_samples_classes(out) == table
    assert classes_sidecar(out).exists() == (suffix == ".csv")
    read_samples(out)  # the metadata does not disturb reading
    # rewritten without a table: none is read back (a CSV's stale sidecar is gone)
    write_samples(df, out)
    assert read_samples_classes(out) is None and not classes_sidecar(out).exists()
    # a table that lacks a label of the samples is refused
    short = ClassTable.from_records([{"code": 1, "name": names[0]}])
    with pytest.raises(CropseqError, match="not in the class table"):
        write_samples(df, tmp_path / f"t{suffix}", classes=short)


def test_read_samples_errors(tmp_path: Path) -> None:
    with pytest.raises(CropseqError, match="not found"):
        read_samples(tmp_path / "none.csv")
    with pytest.raises(CropseqError, match="unknown samples table format"):
        read_samples(tmp_path / "x.txt")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(CropseqError, match="cannot read"):
        read_samples(bad)


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda d: d.drop(columns="sample_id"), "missing column 'sample_id'"),
        (lambda d: d.drop(columns="label"), "missing column 'label'"),
        (lambda d: d.drop(columns="date"), "missing column 'date'"),
        (lambda d: d[["sample_id", "label", "date", "group"]], "no band columns"),
        (lambda d: d.assign(label=["a"] + list(d["label"][1:])), "more than one label"),
        (lambda d: pd.concat([d, d.iloc[[0]]]), "duplicate rows for sample 10"),
        (lambda d: d.assign(date=["2021-13-45"] + list(d["date"][1:])), "not an ISO date"),
        (lambda d: d.assign(blue=["x"] + list(d["blue"][1:])), "non-numeric value 'x' in row 0"),
        (lambda d: d.assign(sample_id=[1.5] + list(d["sample_id"][1:])), "not an integer"),
        (lambda d: d.assign(**{"blue@r0c0": 1.0}), "patch columns missing"),
        (lambda d: d.assign(**{"red@r0c0": 1.0}), "no centre column"),
    ],
)
def test_validate_samples_errors(mutate: Callable[[pd.DataFrame], pd.DataFrame], pattern: str) -> None:
    df = mutate(make_samples_table())
    with pytest.raises(CropseqError, match=pattern) as e:
        validate_samples(df, "table.csv")
    assert str(e.value).startswith("table.csv: ") and "\n" not in str(e.value)


def test_validate_ragged_steps() -> None:
    df = make_samples_table(dates=False, ragged=True)
    validate_samples(df)  # different lengths are fine
    gap = df[~((df["sample_id"] == 11) & (df["t"] == 1))]  # sample 11: t = 0, 2, 3
    with pytest.raises(CropseqError, match="ragged steps.*sample 11"):
        validate_samples(gap)
    dup = df.copy()
    dup.loc[1, "t"] = 0
    with pytest.raises(CropseqError, match="duplicate rows for sample 10 at step t=0"):
        validate_samples(dup)


def test_table_to_arrays_padding_and_order() -> None:
    df = make_samples_table(n_samples=3, n_steps=4, ragged=True)
    arr = table_to_arrays(df.sample(frac=1.0, random_state=0))  # input order must not matter
    assert arr.x.shape == (3, 4, 2, 1, 1)
    assert arr.sample_ids.tolist() == [10, 11, 12]
    assert arr.present[:2].all() and arr.present[2].tolist() == [True, True, True, False]
    assert np.isnan(arr.x[2, 3]).all() and np.isnan(arr.doy[2, 3])
    # Values land at the right (sample, step, band).
    row = df[(df["sample_id"] == 11) & (df["date"] == "2021-03-17")].iloc[0]
    assert arr.x[1, 1, 1, 0, 0] == np.float32(row["nir"])
    assert arr.doy[0, 0] == 60  # 2021-03-01
    assert arr.labels.tolist() == ["maize", "wheat", "maize"]
    assert arr.groups.tolist() == ["g0", "g0", "g1"]
    assert str(arr.dates[0, 1]) == "2021-03-17"


def test_table_to_arrays_t_only_and_bands_subset() -> None:
    df = make_samples_table(dates=False).drop(columns="group")
    arr = table_to_arrays(df, bands=["nir"])
    assert arr.bands == ["nir"] and arr.x.shape[2] == 1
    assert np.isnan(arr.doy).all()
    assert arr.groups.tolist() == [str(i) for i in range(10, 16)]  # default: the sample id
    with pytest.raises(CropseqError, match="not in the samples table"):
        table_to_arrays(df, bands=["swir"])


def test_table_to_arrays_patch() -> None:
    df = make_samples_table(patch=3)
    arr = table_to_arrays(df)
    assert arr.x.shape == (6, 4, 2, 3, 3)
    r0 = df.iloc[0]
    assert arr.x[0, 0, 1, 0, 2] == np.float32(r0["nir@r0c2"])
    assert arr.x[0, 0, 0, 1, 1] == np.float32(r0["blue"])  # centre = plain column
    one = table_to_arrays(df, patch=1)
    assert one.x.shape[3:] == (1, 1) and np.array_equal(one.x[..., 0, 0], arr.x[..., 1, 1])
    with pytest.raises(CropseqError, match="holds 3x3"):
        table_to_arrays(df, patch=5)
    with pytest.raises(CropseqError, match="odd"):
        table_to_arrays(df, patch=2)


def test_table_to_arrays_fast() -> None:
    rng = np.random.default_rng(0)
    n, t = 2500, 20  # 50k rows
    df = pd.DataFrame(
        {
            "sample_id": np.repeat(np.arange(n), t),
            "label": np.repeat(rng.choice(["a", "b", "c"], n), t),
            "t": np.tile(np.arange(t), n),
            **{b: rng.random(n * t) for b in ["b1", "b2", "b3", "b4"]},
        }
    ).sample(frac=1.0, random_state=0)
    t0 = time.perf_counter()
    arr = table_to_arrays(df)
    assert time.perf_counter() - t0 < 1.0
    assert arr.x.shape == (n, t, 4, 1, 1) and arr.present.all()


def test_matogrosso_table_converts(shared_data: Path) -> None:
    conv = shared_data / "sits_matogrosso_mod13q1_samples" / "converted"
    if not conv.is_dir():
        pytest.skip("Mato Grosso samples absent")
    long = pd.read_csv(conv / "samples_mt_9classes_timeseries_long.csv", dtype={"date": str})
    meta = pd.read_csv(conv / "samples_mt_9classes_meta.csv")
    df = long.merge(meta[["sample_id", "label"]], on="sample_id", how="left")
    validate_samples(df, "matogrosso")
    arr = table_to_arrays(df)
    z = np.load(conv / "samples_mt_9classes.npz", allow_pickle=False)
    assert arr.x.shape == (2115, 23, 6, 1, 1)
    assert arr.bands == [str(b) for b in z["bands"]]
    # The CSV keeps 4 decimals of the npz values.
    assert np.nanmax(np.abs(arr.x[..., 0, 0] - z["X"])) < 1e-4
    assert (arr.labels == z["label"]).all()
    assert arr.present.all() and np.nanmin(arr.doy) >= 1


# ----------------------------------------------------------------------------- extraction


@pytest.fixture()
def tiny(tmp_path: Path) -> tuple[xr.DataArray, np.ndarray, Path]:
    path, expected = write_stack(tmp_path / "stack", "per-band", masks=True)
    return open_stack(path, chunks=4), expected, tmp_path


def test_extract_points(tiny: tuple[xr.DataArray, np.ndarray, Path]) -> None:
    cube, expected, tmp = tiny
    pts = [
        {**dict(zip(("x", "y"), pixel_centre(2, 3), strict=True)), "label": "maize"},
        {"x": 1.0, "y": 2.0, "label": "wheat"},  # far outside
        {**dict(zip(("x", "y"), pixel_centre(6, 8), strict=True)), "label": "wheat", "from": "2021-04-11", "to": "2021-05-01"},
        {"x": pixel_centre(2, 3)[0] + 4.9, "y": pixel_centre(2, 3)[1] - 4.9, "label": "maize"},  # same pixel, corner
    ]
    labels = read_labels(write_points_csv(tmp / "p.csv", pts), TINY_CRS)
    df, rep = extract_samples(cube, labels)
    assert rep.outside == [1] and rep.n_samples == 3 and rep.classes == ["maize", "wheat"]
    assert sorted(df["sample_id"].unique().tolist()) == [0, 2, 3]  # CSV row numbers
    s0 = df[df["sample_id"] == 0]
    assert s0["date"].tolist() == tiny_dates(5)
    np.testing.assert_array_equal(s0["nir"].to_numpy(), expected[:, 1, 2, 3])
    assert (s0["row"] == 2).all() and (s0["col"] == 3).all() and (s0["group"] == "r2_c3").all()
    assert s0["x"].iloc[0] == pixel_centre(2, 3)[0]
    assert (df[df["sample_id"] == 3]["group"] == "r2_c3").all()  # one pixel, one group
    s2 = df[df["sample_id"] == 2]
    assert s2["date"].tolist() == ["2021-04-11", "2021-04-21"]  # [from, to)
    validate_samples(df)


def test_extract_start_end_and_no_dates(tiny: tuple[xr.DataArray, np.ndarray, Path]) -> None:
    cube, _, tmp = tiny
    x, y = pixel_centre(1, 1)
    pts = [{"x": x, "y": y, "label": "a"}, {"x": x, "y": y, "label": "b", "from": "2020-01-01", "to": "2020-06-01"}]
    labels = read_labels(write_points_csv(tmp / "p.csv", pts), TINY_CRS)
    df, rep = extract_samples(cube, labels, start="2021-04-11", end="2021-05-01")
    assert df["date"].tolist() == ["2021-04-11", "2021-04-21"] and rep.no_dates == [1]
    assert "1 without dates" in rep.summary()
    with pytest.raises(CropseqError, match="not after start"):
        extract_samples(cube, labels, start="2021-05-01", end="2021-04-01")


def test_extract_polygons(tiny: tuple[xr.DataArray, np.ndarray, Path]) -> None:
    cube, expected, tmp = tiny
    x0, y0 = 500000.0, 5000000.0
    g = gpd.GeoDataFrame(
        {"label": ["maize", "wheat"], "parcel": ["A", "B"]},
        # A: centres of rows 1-2, cols 2-4 inside (edges between centres); B: no centre inside.
        geometry=[box(x0 + 21, y0 - 29, x0 + 49, y0 - 11), box(x0 + 1, y0 - 4, x0 + 4, y0 - 1)],
        crs=TINY_CRS,
    )
    g.to_file(tmp / "f.gpkg")
    labels = read_labels(tmp / "f.gpkg", TINY_CRS, id_column="parcel")
    df, rep = extract_samples(cube, labels)
    per = df.drop_duplicates("sample_id")
    assert per[["row", "col"]].values.tolist() == [[1, 2], [1, 3], [1, 4], [2, 2], [2, 3], [2, 4]]
    assert per["sample_id"].tolist() == list(range(6)) and (per["group"] == "A").all()
    assert rep.outside == [1]
    last = df[df["sample_id"] == 5]
    np.testing.assert_array_equal(last["red"].to_numpy(), expected[:, 0, 2, 4])


def test_cap_per_group() -> None:
    df = make_samples_table(n_samples=12, n_steps=3)
    ids = sorted(df["sample_id"].unique())
    df["group"] = df["sample_id"].map({i: "big" if k < 9 else f"small{k}" for k, i in enumerate(ids)})
    capped = cap_per_group(df, 4, seed=1)
    per = capped.drop_duplicates("sample_id")
    assert per.groupby("group").size().to_dict() == {"big": 4, "small10": 1, "small11": 1, "small9": 1}
    assert (capped.groupby("sample_id").size() == 3).all()  # whole sequences, never single dates
    assert capped.equals(cap_per_group(df, 4, seed=1)) and not capped.equals(cap_per_group(df, 4, seed=2))
    assert cap_per_group(df, 100).equals(df)
    with pytest.raises(CropseqError, match="no group column"):
        cap_per_group(df.drop(columns="group"), 2)
    with pytest.raises(CropseqError, match=">= 1"):
        cap_per_group(df, 0)


def test_extract_patch_border_and_values(tiny: tuple[xr.DataArray, np.ndarray, Path]) -> None:
    cube, expected, tmp = tiny
    x, y = pixel_centre(0, 4)
    labels = read_labels(write_points_csv(tmp / "p.csv", [{"x": x, "y": y, "label": "a"}]), TINY_CRS)
    df, _ = extract_samples(cube, labels, patch=3)
    r = df.iloc[1]  # date 1
    assert np.isnan(r["red@r0c0"]) and np.isnan(r["nir@r0c2"])  # above the raster: NaN padding
    assert r["red@r1c1"] == r["red"] == expected[1, 0, 0, 4]
    np.testing.assert_array_equal(r["nir@r2c0"], expected[1, 1, 1, 3])  # NaN-aware
    arr = table_to_arrays(df)
    assert arr.x.shape == (1, 5, 2, 3, 3)
    np.testing.assert_array_equal(arr.x[0, :, :, 1:, :], _patch(expected, 0, 4)[:, :, 1:, :])


def _patch(expected: np.ndarray, r: int, c: int) -> np.ndarray:
    pad = np.pad(expected, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=np.nan)
    return pad[:, :, r : r + 3, c : c + 3]


@pytest.mark.parametrize("patch", [0, 2, -1, 4])
def test_extract_bad_patch(tiny: tuple[xr.DataArray, np.ndarray, Path], patch: int) -> None:
    cube, _, tmp = tiny
    labels = read_labels(write_points_csv(tmp / "p.csv", [{"x": 1, "y": 1, "label": "a"}]), TINY_CRS)
    with pytest.raises(CropseqError, match="patch size must be an odd integer"):
        extract_samples(cube, labels, patch=patch)


def test_dtwsat_extraction(shared_data: Path, tmp_path: Path) -> None:
    from _data_fixtures import dtwsat_manifest

    cube = open_stack(dtwsat_manifest(shared_data, tmp_path / "stack.yaml"))
    labels = read_labels(shared_data / "dtwsat_lucc_mt" / "raw" / "samples.csv", cube.rio.crs)
    df, rep = extract_samples(cube, labels)
    assert rep.n_samples == 603 and rep.outside == [] and rep.skipped_bands == ["doy"]
    steps = df.groupby("sample_id").size()
    assert steps.index.tolist() == list(range(603))
    season = labels.features.set_index("sample_id")["from"].dt.strftime("%Y-%m-%d")
    assert (steps[season[season != "2012-09-01"].index] == 23).all()
    assert (steps[season[season == "2012-09-01"].index] == 22).all()
    import rasterio

    with rasterio.open(shared_data / "dtwsat_lucc_mt" / "raw" / "ndvi.tif") as src:
        ndvi = src.read()
    r = df.iloc[100]
    t = list(cube["time"].values.astype("datetime64[D]").astype(str)).index(r["date"])
    assert r["ndvi"] == pytest.approx(ndvi[t, r["row"], r["col"]], rel=1e-6)


# ----------------------------------------------------------------------------- splitting


def test_assign_split_groups_and_fractions() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(100), rng.integers(1, 6, 100))
    labels = np.array(["a", "b", "c"])[groups % 3]
    side = assign_split(labels, groups, val_fraction=0.2, test_fraction=0.1, seed=3)
    for g in np.unique(groups):
        assert len(set(side[groups == g])) == 1  # every group on one side
    for k in "abc":
        share = (side[labels == k] == "val").mean()
        assert 0.12 < share < 0.28
    assert 0.05 < (side == "test").mean() < 0.15
    again = assign_split(labels, groups, val_fraction=0.2, test_fraction=0.1, seed=3)
    assert (side == again).all()
    assert not (side == assign_split(labels, groups, 0.2, 0.1, seed=4)).all()
    with pytest.raises(CropseqError, match="leave nothing to train"):
        assign_split(labels, groups, 0.6, 0.4)
    with pytest.raises(CropseqError, match="val fraction"):
        assign_split(labels, groups, -0.1)


def test_grouped_stratified_split_table() -> None:
    df = make_samples_table(n_samples=20)
    train, val, test = grouped_stratified_split(df, 0.3, 0.0, seed=0)
    assert len(test) == 0 and len(train) + len(val) == len(df)
    assert set(train["group"]).isdisjoint(val["group"])
    assert set(train["sample_id"]).isdisjoint(val["sample_id"]) and len(val) > 0


def test_csv_output_never_replaces_a_class_table_it_did_not_write(tmp_path: Path) -> None:
    """``fields.csv``'s sidecar name is ``fields.classes.yaml``, which may be the labels'
    own class table (beside ``fields.gpkg``): refused before anything is written."""
    from _data_fixtures import make_samples_table

    from cropseq.errors import CropseqError
    from cropseq.samples import write_samples

    theirs = tmp_path / "fields.classes.yaml"
    theirs.write_text("classes: [{code: 1, name: maize, color: '#ff0000'}]\n")
    with pytest.raises(CropseqError, match="another file"):
        write_samples(make_samples_table(), tmp_path / "fields.csv")
    assert theirs.read_text().startswith("classes:") and not (tmp_path / "fields.csv").exists()
    write_samples(make_samples_table(), tmp_path / "other.csv")  # no sidecar there: fine
