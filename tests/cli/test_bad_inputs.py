"""Catalogue of bad inputs: each case pins the exact failure mode a user sees.

The contract (``cropseq.cli.main``): a user error exits with code 2 and prints ONE line on
stderr that names the file and the problem, without a traceback, and leaves no output (nor a
``.tmp-`` sibling) behind. Some "bad-looking" inputs are not errors at all (all-NaN dates,
all-nodata tiles, Inf values, labels partly outside the stack): those must work.

Everything runs on tiny seeded stacks (8x8 px, 4 dates, 2 bands) through the CLI in process,
plus a few subprocess runs of the real entry point (``python -m cropseq``) to check that
nothing else (a Python warning, a traceback) reaches the terminal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from _data_fixtures import (
    TINY_CRS,
    assert_user_error,
    make_samples_table,
    pixel_centre,
    run_cli,
    temp_leftovers,
    tiny_dates,
    tiny_models,
    write_grid_points,
    write_points_csv,
    write_raster,
    write_stack,
)
from _paths import REPO

pytestmark = pytest.mark.e2e  # a catalogue of ~200 CLI runs (and console subprocesses): the e2e tier

SHAPE = (8, 8)
N_DATES = 4
PREDICT_OPTS = ["--workers", "0", "--threads", "1", "-q"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny stack + samples + a RandomForest and a deep model, built once per session."""
    return tiny_models(tmp_path_factory)


def tiny_stack(root: Path, layout: str = "per-band", **kw) -> Path:
    kw.setdefault("shape", SHAPE)
    kw.setdefault("n_dates", N_DATES)
    kw.setdefault("bands", ("red", "nir"))
    return write_stack(root, layout, **kw)[0]


def outputs_of(cmd: str, out: Path) -> list[Path]:
    """Every file a command would write for ``--out out`` (all must be absent after an error)."""
    if cmd == "predict":
        return [out, *(out.with_name(f"{out.stem}{s}") for s in (".confidence.tif", ".area.csv", ".qml"))]
    if cmd == "samples":
        return [out, out.with_name(f"{out.stem}.classes.yaml")]
    if cmd == "train":
        return [out, out.with_name(f"{out.stem}.history.csv"), out.with_name(f"{out.stem}.curves.png")]
    if cmd == "evaluate":
        return [out, out.with_name(f"{out.stem}.confusion.png")]
    return [out]


def stack_command(cmd: str, stack: Path, out_dir: Path, models: dict[str, Path]) -> tuple[list, list[Path]]:
    """argv and outputs of ``inspect`` / ``samples`` / ``predict`` (rf and deep) on ``stack``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if cmd == "inspect":
        return ["inspect", stack, "--json"], []
    if cmd == "samples":
        out = out_dir / "s.csv"
        return ["samples", "--stack", stack, "--labels", models["labels"], "--out", out], outputs_of("samples", out)
    kind = cmd.split("-")[1]
    out = out_dir / f"map_{kind}.tif"
    argv = ["predict", "--model", models[kind], "--stack", stack, "--out", out, *PREDICT_OPTS]
    return argv, outputs_of("predict", out)


STACK_COMMANDS = ["inspect", "samples", "predict-rf", "predict-deep"]


# ======================================================================================
# 1. rasters: missing, unreadable, corrupt, on other grids


def _missing(stack: Path) -> None:
    (stack.parent / "nir.tif").unlink()


def _directory(stack: Path) -> None:
    (stack.parent / "nir.tif").unlink()
    (stack.parent / "nir.tif").mkdir()


def _zero_bytes(stack: Path) -> None:
    (stack.parent / "nir.tif").write_bytes(b"")


def _not_a_raster(stack: Path) -> None:
    (stack.parent / "nir.tif").write_text("just some text, not a GeoTIFF\n")


def _truncated_pixels(stack: Path) -> None:
    """Header intact, pixel strips cut: fails when pixels are read (inside a Dask task)."""
    f = stack.parent / "nir.tif"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])


def _truncated_header(stack: Path) -> None:
    """Cut inside the TIFF directory: georeferencing tags are lost."""
    f = stack.parent / "nir.tif"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 5])


def _other_crs(stack: Path) -> None:
    write_raster(stack.parent / "nir.tif", np.ones((N_DATES, *SHAPE), np.float32), crs="EPSG:32634")


def _shifted(stack: Path) -> None:
    write_raster(stack.parent / "nir.tif", np.ones((N_DATES, *SHAPE), np.float32), origin=(500010.0, 5000000.0))


def _other_resolution(stack: Path) -> None:
    write_raster(stack.parent / "nir.tif", np.ones((N_DATES, *SHAPE), np.float32), res=20.0)


def _other_shape(stack: Path) -> None:
    write_raster(stack.parent / "nir.tif", np.ones((N_DATES, 8, 9), np.float32))


def _band_count(stack: Path) -> None:
    write_raster(stack.parent / "nir.tif", np.ones((N_DATES - 1, *SHAPE), np.float32))


RASTER_CASES: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    # name: (damage, substrings of the one-line message)
    "missing": (_missing, ["nir.tif", "not found"]),
    "directory": (_directory, ["nir.tif", "folder"]),
    "zero_bytes": (_zero_bytes, ["nir.tif", "cannot read raster", "empty"]),
    "not_a_raster": (_not_a_raster, ["nir.tif", "cannot read raster"]),
    "truncated_pixels": (_truncated_pixels, ["nir.tif", "cannot read raster", "truncated or corrupt"]),
    "truncated_header": (_truncated_header, ["nir.tif"]),
    "other_crs": (_other_crs, ["nir.tif", "grid differs from", "red.tif", "EPSG:32634 vs EPSG:32633"]),
    "shifted_grid": (_shifted, ["nir.tif", "grid differs from", "red.tif", "transform"]),
    "other_resolution": (_other_resolution, ["nir.tif", "grid differs from", "transform"]),
    "other_shape": (_other_shape, ["nir.tif", "grid differs from", "shape 8x9 vs 8x8"]),
    "band_count": (_band_count, ["nir.tif", "3 raster bands but 4 dates"]),
}


def _assert_damage_is_a_user_error(damage: Callable[[Path], object], needles: list[str], cmd: str, tmp_path: Path,
                                   models: dict[str, Path]) -> None:  # fmt: skip
    """A tiny stack damaged by ``damage`` makes ``cmd`` fail with one line holding ``needles``, nothing written."""
    stack = tiny_stack(tmp_path / "stack")
    damage(stack)
    argv, outs = stack_command(cmd, stack, tmp_path / "out", models)
    assert_user_error(run_cli(argv), *needles, outputs=outs)


@pytest.mark.parametrize("cmd", STACK_COMMANDS)
@pytest.mark.parametrize("case", list(RASTER_CASES))
def test_bad_raster(case: str, cmd: str, tmp_path: Path, models: dict[str, Path]) -> None:
    _assert_damage_is_a_user_error(*RASTER_CASES[case], cmd, tmp_path, models)


def test_unreadable_raster_permissions(tmp_path: Path) -> None:
    """chmod 000: only meaningful when not running as root (root reads anything)."""
    stack = tiny_stack(tmp_path / "stack")
    f = stack.parent / "nir.tif"
    f.chmod(0)
    try:
        if os.access(f, os.R_OK):
            pytest.skip("running as root: chmod 000 does not make a file unreadable")
        assert_user_error(run_cli(["inspect", stack]), "nir.tif", "cannot read raster")
    finally:
        f.chmod(0o644)


def test_per_date_raster_on_other_crs(tmp_path: Path, models: dict[str, Path]) -> None:
    stack = tiny_stack(tmp_path / "stack", "per-date")
    d = tiny_dates(N_DATES)[2].replace("-", "")
    write_raster(stack.parent / f"S2_{d}.tif", np.ones((2, *SHAPE), np.float32), crs="EPSG:4326")
    for cmd in STACK_COMMANDS:
        argv, outs = stack_command(cmd, stack, tmp_path / cmd, models)
        assert_user_error(run_cli(argv), f"S2_{d}.tif", "grid differs from", "CRS EPSG:4326 vs EPSG:32633", outputs=outs)


def test_per_date_mask_on_other_grid(tmp_path: Path) -> None:
    stack = tiny_stack(tmp_path / "stack", "per-date", masks=True)
    d = tiny_dates(N_DATES)[1].replace("-", "")
    write_raster(stack.parent / f"MASK_{d}.tif", np.zeros((1, 4, 4), np.uint8))
    assert_user_error(run_cli(["inspect", stack]), f"MASK_{d}.tif", "grid differs", "shape 4x4 vs 8x8")


# ======================================================================================
# 2. manifests: dates, keys, types


def _timeline(lines: list[str]) -> Callable[[Path], None]:
    def damage(stack: Path) -> None:
        (stack.parent / "timeline").write_text("\n".join(lines) + "\n")

    return damage


def _manifest_edit(**changes) -> Callable[[Path], None]:
    def damage(stack: Path) -> None:
        m = yaml.safe_load(stack.read_text())
        for k, v in changes.items():
            if v is _DROP:
                m.pop(k, None)
            else:
                m[k] = v
        stack.write_text(yaml.safe_dump(m, sort_keys=False))

    return damage


def _manifest_text(text: str | bytes) -> Callable[[Path], None]:
    def damage(stack: Path) -> None:
        if isinstance(text, bytes):
            stack.write_bytes(text)
        else:
            stack.write_text(text)

    return damage


_DROP = object()
_D = tiny_dates(N_DATES)

MANIFEST_CASES: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "duplicate_date_timeline": (_timeline([_D[0], _D[1], _D[1], _D[3]]),
                                ["stack.yaml", "duplicate date 2021-04-11", "timeline", "entries 2 and 3"]),
    "duplicate_date_list": (_manifest_edit(dates=[_D[0], _D[0], _D[2], _D[3]]),
                            ["stack.yaml", "duplicate date 2021-04-01", "entries 1 and 2"]),
    "unparseable_date_timeline": (_timeline([_D[0], "2021-13-45", _D[2], _D[3]]),
                                  ["timeline", "line 2", "'2021-13-45' is not a date"]),
    "unparseable_date_list": (_manifest_edit(dates=[_D[0], _D[1], "yesterday", _D[3]]),
                              ["stack.yaml", "date 3 in dates", "'yesterday' is not a date"]),
    "date_count": (_timeline(_D[:3]), ["red.tif", "4 raster bands but 3 dates in timeline"]),
    "no_dates": (_manifest_edit(dates=_DROP), ["stack.yaml", "needs dates"]),
    "empty_timeline": (_timeline(["# nothing"]), ["timeline", "holds no dates"]),
    "missing_timeline": (_manifest_edit(dates="nowhere.txt"), ["nowhere.txt", "not found"]),
    "unknown_key": (_manifest_edit(bandz={"red": "red.tif"}), ["stack.yaml", "unknown key 'bandz'"]),
    "bad_layout": (_manifest_edit(layout="per-pixel"), ["stack.yaml", "layout must be"]),
    "bands_not_mapping": (_manifest_edit(bands=["red", "nir"]), ["stack.yaml", "per-band layout needs bands"]),
    "nodata_string": (_manifest_edit(nodata="minus nine"), ["stack.yaml", "nodata must be a number"]),
    "nodata_list": (_manifest_edit(nodata=[1, 2]), ["stack.yaml", "nodata must be a number"]),
    "nodata_unknown_band": (_manifest_edit(nodata={"blue": 0}), ["stack.yaml", "unknown band 'blue'"]),
    "valid_range_reversed": (_manifest_edit(valid_range=[1, 0]), ["stack.yaml", "lo 1.0 > hi 0.0"]),
    "scale_bool": (_manifest_edit(scale=True), ["stack.yaml", "scale must be a number"]),
    "yaml_syntax": (_manifest_text("layout: per-band\nbands: {red: red.tif\n"), ["stack.yaml", "not valid YAML"]),
    "yaml_list": (_manifest_text("- red.tif\n- nir.tif\n"), ["stack.yaml", "must be a YAML mapping"]),
    "binary": (_manifest_text(b"\x89PNG\r\n\x1a\n\x00\xff\xfe"), ["stack.yaml", "not a YAML manifest"]),
    "empty": (_manifest_text(""), ["stack.yaml", "must be a YAML mapping"]),
}


@pytest.mark.parametrize("cmd", ["inspect", "samples", "predict-rf"])
@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_bad_manifest(case: str, cmd: str, tmp_path: Path, models: dict[str, Path]) -> None:
    _assert_damage_is_a_user_error(*MANIFEST_CASES[case], cmd, tmp_path, models)


def test_per_date_duplicate_and_unparseable_file_dates(tmp_path: Path) -> None:
    stack = tiny_stack(tmp_path / "stack", "per-date")
    root = stack.parent
    shutil.copy(root / "S2_20210401.tif", root / "S2_2021-04-01.tif")  # the same day, spelt differently
    m = yaml.safe_load(stack.read_text())
    m["date_pattern"] = r"S2_(\d{4}-?\d{2}-?\d{2})"
    stack.write_text(yaml.safe_dump(m))
    assert_user_error(run_cli(["inspect", stack]), "stack.yaml", "duplicate date 2021-04-01", "file names")
    (root / "S2_2021-04-01.tif").rename(root / "S2_20211345.tif")
    assert_user_error(run_cli(["inspect", stack]), "date in file name 'S2_20211345.tif'", "is not a date")


def test_stack_not_found_and_not_a_manifest(tmp_path: Path) -> None:
    assert_user_error(run_cli(["inspect", tmp_path / "nope.yaml"]), "nope.yaml", "not found")
    assert_user_error(run_cli(["inspect", tmp_path]), str(tmp_path), "no stack.yaml in this folder")


# ======================================================================================
# 3. NOT errors: all-NaN dates, all-nodata areas, NaN/Inf inside a band


def _edit_band(path: Path, fn: Callable[[np.ndarray], None]) -> None:
    with rasterio.open(path, "r+") as ds:
        a = ds.read()
        fn(a)
        ds.write(a)


@pytest.fixture()
def holey_stack(tmp_path: Path) -> Path:
    """Date 2 entirely missing (NaN), the right half nodata on every date, +-Inf in pixel
    (2, 2) on dates 1 and 3; pixel (0, 0) is nodata on every date (``write_stack``)."""
    stack = tiny_stack(tmp_path / "stack", nodata=-9999.0)

    def damage(a: np.ndarray) -> None:
        a[1] = np.nan  # a whole date missing (e.g. fully clouded)
        a[:, :, 4:] = -9999.0  # the right half nodata on every date
        a[0, 2, 2] = np.inf
        a[2, 2, 2] = -np.inf

    for b in ("red", "nir"):
        _edit_band(stack.parent / f"{b}.tif", damage)
    return stack


def test_nan_inf_nodata_are_missing_in_the_cube(holey_stack: Path) -> None:
    from cropseq.io import open_stack

    v = open_stack(holey_stack).values
    assert np.isnan(v[1]).all()  # the all-NaN date
    assert np.isnan(v[:, :, :, 4:]).all()  # nodata
    assert np.isnan(v[0, :, 2, 2]).all() and np.isnan(v[2, :, 2, 2]).all()  # +-Inf -> NaN
    assert np.isnan(v[:, :, 0, 0]).all()  # nodata
    # the rest of the left half is valid on dates 1, 3 and 4
    assert np.isfinite(v[[0, 2, 3]][:, :, :, :4]).sum() == 3 * 2 * (8 * 4 - 1) - 2 * 2
    assert not np.isinf(v).any()


def test_float64_beyond_float32_becomes_missing(tmp_path: Path) -> None:
    from cropseq.io import open_stack

    stack = tiny_stack(tmp_path / "stack")
    a = np.ones((N_DATES, *SHAPE), np.float64)
    a[1, 3, 3] = 1e300
    write_raster(stack.parent / "nir.tif", a)
    v = open_stack(stack).sel(band="nir").values
    assert np.isnan(v[1, 3, 3]) and np.isfinite(np.delete(v.ravel(), 1 * 64 + 3 * 8 + 3)).all()


def test_inspect_holey_stack(holey_stack: Path) -> None:
    import json

    res = run_cli(["inspect", holey_stack, "--json"])
    assert res.rc == 0 and not res.err, res
    s = json.loads(res.out)
    # date 2: 64 px; right half on 3 other dates: 96 px; (0, 0) on 3 dates; 2 Inf pixels.
    expect = (64 + 3 * 32 + 3 + 2) / (4 * 64)
    assert s["missing_fraction"] == pytest.approx({"red": expect, "nir": expect})
    assert run_cli(["inspect", holey_stack]).rc == 0  # the table view too


def test_samples_keep_nan_observations(holey_stack: Path, tmp_path: Path) -> None:
    labels = write_grid_points(tmp_path / "points.csv")
    out = tmp_path / "s.csv"
    res = run_cli(["samples", "--stack", holey_stack, "--labels", labels, "--out", out])
    assert res.rc == 0, res
    df = pd.read_csv(out)
    assert df["sample_id"].nunique() == 64 and len(df) == 64 * N_DATES  # nothing dropped
    assert df.loc[df["date"] == _D[1], ["red", "nir"]].isna().all().all()  # the all-NaN date
    assert df.loc[df["col"] >= 4, ["red", "nir"]].isna().all().all()  # the nodata half
    inf_px = df[(df["row"] == 2) & (df["col"] == 2)].set_index("date")
    assert np.isnan(inf_px.loc[_D[0], "red"]) and np.isnan(inf_px.loc[_D[2], "nir"])
    assert np.isfinite(inf_px.loc[_D[3], "red"])
    assert not np.isinf(df[["red", "nir"]].to_numpy()).any()


@pytest.mark.parametrize("kind", ["rf", "deep"])
def test_predict_maps_missing_pixels_to_nodata(holey_stack: Path, tmp_path: Path, models: dict[str, Path],
                                               kind: str) -> None:  # fmt: skip
    out = tmp_path / "map.tif"
    res = run_cli(["predict", "--model", models[kind], "--stack", holey_stack, "--out", out, "--min-valid", "1",
                   *PREDICT_OPTS])  # fmt: skip
    assert res.rc == 0, res
    with rasterio.open(out) as src:
        m = src.read(1)
        assert src.nodata == 0
    assert (m[:, 4:] == 0).all() and m[0, 0] == 0  # all nodata: no class
    left = m[:, :4].copy()
    left[0, 0] = 1
    assert (left > 0).all()  # every other left-half pixel has >= 1 valid date
    # with the default minimum of valid observations (3): pixel (2, 2) has only 1 (Inf on
    # two of the three dates left), so it is nodata too
    res = run_cli(["predict", "--model", models[kind], "--stack", holey_stack, "--out", tmp_path / "m2.tif",
                   *PREDICT_OPTS])  # fmt: skip
    assert res.rc == 0, res
    with rasterio.open(tmp_path / "m2.tif") as src:
        m2 = src.read(1)
    expect_nodata = np.zeros(SHAPE, bool)
    expect_nodata[:, 4:] = expect_nodata[0, 0] = expect_nodata[2, 2] = True
    assert ((m2 == 0) == expect_nodata).all(), m2


def test_all_nodata_tile(holey_stack: Path, tmp_path: Path, models: dict[str, Path]) -> None:
    """Cut the stack in 4x4 tiles: the right-hand tiles hold only nodata; they still
    inspect and predict (all nodata), and an all-NaN stack is not an error either."""
    import json

    tiles = tmp_path / "tiles"
    assert run_cli(["tile", holey_stack, "--out", tiles, "--size", "4", "--halo", "0"]).rc == 0
    empty = tiles / "r000_c001.zarr"
    res = run_cli(["inspect", empty, "--json"])
    assert res.rc == 0, res
    assert json.loads(res.out)["missing_fraction"] == {"red": 1.0, "nir": 1.0}
    for kind in ("rf", "deep"):
        out = tmp_path / f"{kind}.tif"
        res = run_cli(["predict", "--model", models[kind], "--stack", empty, "--out", out, "--min-valid", "1",
                       *PREDICT_OPTS])  # fmt: skip
        assert res.rc == 0, res
        with rasterio.open(out) as src:
            assert src.shape == (4, 4) and (src.read(1) == 0).all()


def test_samples_on_all_nodata_pixels_are_nan_rows(holey_stack: Path, tmp_path: Path) -> None:
    x, y = pixel_centre(5, 6)  # in the nodata half
    labels = write_points_csv(tmp_path / "p.csv", [{"x": x, "y": y, "label": "maize"}])
    res = run_cli(["samples", "--stack", holey_stack, "--labels", labels, "--out", tmp_path / "s.csv"])
    assert res.rc == 0, res
    df = pd.read_csv(tmp_path / "s.csv")
    assert len(df) == N_DATES and df[["red", "nir"]].isna().all().all()


# ======================================================================================
# 4. labels


def test_labels_partly_outside_are_reported_and_skipped(tmp_path: Path, models: dict[str, Path]) -> None:
    x, y = pixel_centre(2, 5)
    labels = write_points_csv(tmp_path / "p.csv", [
        {"x": x, "y": y, "label": "maize"},
        {"x": 0.0, "y": 0.0, "label": "wheat"},  # far away
        {"x": x + 80.0, "y": y, "label": "wheat"},  # just right of the 8 px stack
    ])  # fmt: skip
    out = tmp_path / "s.csv"
    res = run_cli(["samples", "--stack", models["stack"], "--labels", labels, "--out", out])
    assert res.rc == 0, res
    assert res.err.count("\n") == 1 and "warning: skipped 2 labels outside the stack" in res.err
    assert "sample ids 1, 2" in res.err
    assert "2 outside the stack" in res.out
    assert pd.read_csv(out)["sample_id"].unique().tolist() == [0]


def test_labels_all_outside_is_an_error(tmp_path: Path, models: dict[str, Path]) -> None:
    labels = write_points_csv(tmp_path / "p.csv", [{"x": 0.0, "y": 0.0, "label": "maize"}])
    out = tmp_path / "s.csv"
    res = run_cli(["samples", "--stack", models["stack"], "--labels", labels, "--out", out])
    assert_user_error(res, "p.csv", "no labelled pixel inside the stack (1 labels outside;",
                      "labels span x 0..0, y 0..0, the stack x 500000..500080, y 4999920..5000000 in EPSG:32633",
                      "longitude,latitude", outputs=outputs_of("samples", out))  # fmt: skip


def _lonlat(row: int, col: int) -> tuple[float, float]:
    from pyproj import Transformer

    return Transformer.from_crs(TINY_CRS, "EPSG:4326", always_xy=True).transform(*pixel_centre(row, col))


@pytest.mark.parametrize("fmt", ["csv-lonlat", "gpkg-4326", "geojson-polygon-4326"])
def test_labels_in_wgs84_land_on_the_right_pixel(fmt: str, tmp_path: Path, models: dict[str, Path]) -> None:
    import geopandas as gpd
    from shapely.geometry import Point, box

    targets = [(6, 1), (0, 7), (3, 4)]
    if fmt == "csv-lonlat":
        rows = [{"longitude": _lonlat(r, c)[0], "latitude": _lonlat(r, c)[1], "label": "maize"} for r, c in targets]
        labels = write_points_csv(tmp_path / "p.csv", rows)
    elif fmt == "gpkg-4326":
        labels = tmp_path / "p.gpkg"
        gpd.GeoDataFrame({"label": ["maize"] * 3}, geometry=[Point(*_lonlat(r, c)) for r, c in targets],
                         crs="EPSG:4326").to_file(labels)  # fmt: skip
    else:  # a polygon covering exactly pixel centres (1..2, 5..6), drawn in UTM then reprojected
        x0, y1 = pixel_centre(1, 5)
        x1, y0 = pixel_centre(2, 6)
        poly = gpd.GeoSeries([box(x0 - 4, y0 - 4, x1 + 4, y1 + 4)], crs=TINY_CRS).to_crs("EPSG:4326")
        labels = tmp_path / "p.geojson"
        gpd.GeoDataFrame({"label": ["maize"]}, geometry=poly).to_file(labels)
        targets = [(1, 5), (1, 6), (2, 5), (2, 6)]
    out = tmp_path / "s.csv"
    res = run_cli(["samples", "--stack", models["stack"], "--labels", labels, "--out", out])
    assert res.rc == 0, res
    got = pd.read_csv(out)[["row", "col"]].drop_duplicates()
    assert sorted(map(tuple, got.to_numpy().tolist())) == sorted(targets)


def test_labels_unknown_class(tmp_path: Path, models: dict[str, Path]) -> None:
    x, y = pixel_centre(1, 1)
    labels = write_points_csv(tmp_path / "p.csv", [{"x": x, "y": y, "label": "maize"},
                                                   {"x": x, "y": y, "label": "sorghum"}])  # fmt: skip
    out = tmp_path / "s.csv"
    res = run_cli(["samples", "--stack", models["stack"], "--labels", labels, "--out", out,
                   "--classes", models["classes"]])  # fmt: skip
    assert_user_error(res, "p.csv", "unknown class(es) 'sorghum'", "known: maize, wheat",
                      outputs=outputs_of("samples", out))  # fmt: skip


@pytest.mark.parametrize("value", ["", "   ", None])
def test_labels_empty_class(value: str | None, tmp_path: Path, models: dict[str, Path]) -> None:
    import geopandas as gpd
    from shapely.geometry import Point

    x, y = pixel_centre(1, 1)
    if value is None:
        labels = tmp_path / "p.gpkg"
        gpd.GeoDataFrame({"label": ["maize", None]}, geometry=[Point(x, y)] * 2, crs=TINY_CRS).to_file(labels)
    else:
        labels = tmp_path / "p.csv"
        labels.write_text(f"x,y,label\n{x},{y},maize\n{x},{y},{value}\n")
    out = tmp_path / "s.csv"
    res = run_cli(["samples", "--stack", models["stack"], "--labels", labels, "--out", out])
    assert_user_error(res, labels.name, "row 1 has an empty class", outputs=outputs_of("samples", out))


def test_labels_bad_columns_and_files(tmp_path: Path, models: dict[str, Path]) -> None:
    x, y = pixel_centre(1, 1)
    out = tmp_path / "s.csv"
    cases = {
        "nocls.csv": (f"x,y,crop\n{x},{y},maize\n", ["no class column 'label'", "columns: x, y, crop"]),
        "nocoords.csv": ("a,b,label\n1,2,maize\n", ["need longitude,latitude"]),
        "textcoord.csv": (f"x,y,label\n{x},{y},maize\nabc,{y},wheat\n", ["row 1 (line 3)", "non-numeric 'x'"]),
        "infcoord.csv": (f"x,y,label\n{x},inf,maize\n", ["row 0 (line 2)", "non-numeric 'y'"]),
        "baddate.csv": (f"x,y,label,from\n{x},{y},maize,someday\n", ["'from' value 'someday' in row 0"]),
        "broken.gpkg": ("not a geopackage", ["cannot read vector file"]),
    }
    for name, (text, needles) in cases.items():
        (tmp_path / name).write_text(text)
        res = run_cli(["samples", "--stack", models["stack"], "--labels", tmp_path / name, "--out", out])
        assert_user_error(res, name, *needles, outputs=outputs_of("samples", out))
    res = run_cli(["samples", "--stack", models["stack"], "--labels", tmp_path / "none.csv", "--out", out])
    assert_user_error(res, "none.csv", "not found")


# ======================================================================================
# 5. samples tables


def _table(tmp_path: Path, df: pd.DataFrame, name: str = "t.csv") -> Path:
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def _table_commands(table: Path, tmp_path: Path, models: dict[str, Path]) -> dict[str, tuple[list, list[Path]]]:
    o = tmp_path / "out"
    o.mkdir(exist_ok=True)
    return {
        "train-rf": (["train", "--samples", table, "--out", o / "m.skops", "--arch", "rf"], outputs_of("train", o / "m.skops")),
        "train-deep": (["train", "--samples", table, "--out", o / "m.pt", "--config", models["config"], "-q"],
                       outputs_of("train", o / "m.pt")),
        "evaluate": (["evaluate", "--model", models["rf"], "--samples", table, "--out", o / "e.json"],
                     outputs_of("evaluate", o / "e.json")),
        "split": (["split", "--samples", table, "--train", o / "a.csv", "--val", o / "b.csv"], [o / "a.csv", o / "b.csv"]),
    }  # fmt: skip


def _bad_tables() -> dict[str, tuple[pd.DataFrame, list[str]]]:
    base = make_samples_table(bands=("red", "nir"))
    tt = make_samples_table(bands=("red", "nir"), dates=False)
    mixed = base.copy()
    mixed.loc[1, "label"] = "wheat"  # sample 10 is maize on its other dates
    gap = tt[~((tt["sample_id"] == 11) & (tt["t"] == 1))]  # t = 0, 2, 3
    late = tt.copy()
    late.loc[late["sample_id"] == 12, "t"] += 1  # t = 1..4
    text = base.copy().astype({"red": object})
    text.loc[3, "red"] = "cloudy"
    dup = pd.concat([base, base.iloc[[2]]])
    baddate = base.copy()
    baddate.loc[5, "date"] = "2021-02-30"
    return {
        "mixed_labels": (mixed, ["1 samples have more than one label, e.g. sample 10"]),
        "ragged_t_gap": (gap, ["ragged steps", "sample 11: t from 0 to 3 over 3 rows"]),
        "ragged_t_start": (late, ["ragged steps", "sample 12: t from 1 to 4"]),
        "text_in_band": (text, ["band column 'red' holds a non-numeric value 'cloudy' in row 3"]),
        "duplicate_rows": (dup, ["duplicate rows for sample 10 on date 2021-04-02"]),
        "bad_date": (baddate, ["date '2021-02-30' in row 5 is not an ISO date"]),
        "no_sample_id": (base.drop(columns="sample_id"), ["missing column 'sample_id'"]),
        "no_label": (base.drop(columns="label"), ["missing column 'label'"]),
        "no_bands": (base.drop(columns=["red", "nir"]), ["no band columns"]),
        "float_ids": (base.assign(sample_id=base["sample_id"] + 0.5), ["sample_id 10.5 in row 0 is not an integer"]),
        "empty_label": (base.assign(label=base["label"].where(base.index != 4, "")), ["row 4 (sample 11) has no label"]),
        "header_only": (base.iloc[:0], ["has no rows"]),
    }


@pytest.mark.parametrize("cmd", ["train-rf", "train-deep", "evaluate", "split"])
@pytest.mark.parametrize("case", list(_bad_tables()))
def test_bad_samples_table(case: str, cmd: str, tmp_path: Path, models: dict[str, Path]) -> None:
    df, needles = _bad_tables()[case]
    table = _table(tmp_path, df)
    argv, outs = _table_commands(table, tmp_path, models)[cmd]
    assert_user_error(run_cli(argv), "t.csv", *needles, outputs=outs)


def test_unreadable_samples_tables(tmp_path: Path, models: dict[str, Path]) -> None:
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage\x00\x81")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really parquet")
    (tmp_path / "t.txt").write_text("sample_id,label\n")
    for name, needle in (("bin.csv", "cannot read samples table"), ("bad.parquet", "cannot read samples table"),
                         ("t.txt", "unknown samples table format '.txt'"), ("none.csv", "not found")):  # fmt: skip
        for argv, outs in _table_commands(tmp_path / name, tmp_path, models).values():
            assert_user_error(run_cli(argv), name, needle, outputs=outs)


def test_split_with_too_few_groups_writes_nothing(tmp_path: Path) -> None:
    """The val part is empty: no train table is written before the error (was: a.csv left)."""
    table = _table(tmp_path, make_samples_table(bands=("red", "nir"), n_samples=1))
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    res = run_cli(["split", "--samples", table, "--train", a, "--val", b])
    assert_user_error(res, "t.csv", "the val split is empty", outputs=[a, b])


def test_mixed_utc_offsets_and_inf_values_in_a_table(tmp_path: Path, models: dict[str, Path]) -> None:
    """Dates with different UTC offsets parse (converted to UTC); +-Inf and values beyond
    float32 are missing values, as in the cube (was: a crash in both cases)."""
    from cropseq.samples import read_samples, table_to_arrays

    df = make_samples_table(bands=("red", "nir"), n_samples=4)
    df.loc[0, "date"] = "2021-03-01T10:00:00+02:00"
    df.loc[1, "date"] = "2021-03-17T10:00:00-05:00"
    df.loc[2, "red"] = np.inf
    df.loc[3, "nir"] = -1e300
    table = _table(tmp_path, df)
    arr = table_to_arrays(read_samples(table))
    assert np.isnan(arr.x[0, 2, 0]).all() and np.isnan(arr.x[0, 3, 1]).all() and np.isfinite(arr.x[1:]).all()
    assert str(arr.dates[0, 0]) == "2021-03-01"
    res = run_cli(["train", "--samples", table, "--out", tmp_path / "m.skops", "--arch", "rf"])
    assert res.rc == 0, res
    # The forest just trained on this table (the session's forest has another timeline).
    res = run_cli(["evaluate", "--model", tmp_path / "m.skops", "--samples", table, "--out", tmp_path / "e.json"])
    assert res.rc == 0, res


def test_labels_with_impossible_wgs84_coordinates(tmp_path: Path, models: dict[str, Path]) -> None:
    lon, lat = _lonlat(1, 1)
    labels = write_points_csv(tmp_path / "p.csv", [{"longitude": lon, "latitude": lat, "label": "maize"},
                                                   {"longitude": lon, "latitude": 95.0, "label": "maize"}])  # fmt: skip
    out = tmp_path / "s.csv"
    res = run_cli(["samples", "--stack", models["stack"], "--labels", labels, "--out", out])
    assert_user_error(res, "p.csv", "row 1 (line 3)", "'latitude' 95 outside [-90, 90]", outputs=[out])


def test_ragged_lengths_with_dates_are_legal(tmp_path: Path, models: dict[str, Path]) -> None:
    """Sequences of different lengths (a date missing for one sample) train and evaluate."""
    df = make_samples_table(bands=("red", "nir"), n_samples=8, ragged=True)
    table = _table(tmp_path, df)
    for cmd in ("train-rf", "evaluate", "split"):
        argv, outs = _table_commands(table, tmp_path, models)[cmd]
        if cmd == "evaluate":  # the forest trained on this table: the session's has other dates
            argv[2] = tmp_path / "out" / "m.skops"
        res = run_cli(argv)
        assert res.rc == 0, res
        assert outs[0].is_file(), res


def test_all_nan_sample_trains(tmp_path: Path, models: dict[str, Path]) -> None:
    """A sample whose every observation is missing (NaN) is not an error."""
    df = make_samples_table(bands=("red", "nir"), n_samples=8)
    df.loc[df["sample_id"] == 12, ["red", "nir"]] = np.nan
    table = _table(tmp_path, df)
    for cmd in ("train-rf", "train-deep", "evaluate"):
        argv, outs = _table_commands(table, tmp_path, models)[cmd]
        if cmd == "evaluate":  # the forest trained on this table: the session's has other dates
            argv[2] = tmp_path / "out" / "m.skops"
        res = run_cli(argv)
        assert res.rc == 0, res
        assert outs[0].is_file()


# ======================================================================================
# 6. a model that does not match the stack / table


@pytest.mark.parametrize("kind", ["rf", "deep"])
def test_model_bands_missing_from_stack(kind: str, tmp_path: Path, models: dict[str, Path]) -> None:
    stack = tiny_stack(tmp_path / "stack", bands=("blue", "green"))
    out = tmp_path / "map.tif"
    res = run_cli(["predict", "--model", models[kind], "--stack", stack, "--out", out, *PREDICT_OPTS])
    assert_user_error(res, "stack.yaml", "red, nir", "blue, green", outputs=outputs_of("predict", out))
    stack1 = tiny_stack(tmp_path / "stack1", bands=("red",))
    res = run_cli(["predict", "--model", models[kind], "--stack", stack1, "--out", out, *PREDICT_OPTS])
    assert_user_error(res, "stack.yaml", "nir", outputs=outputs_of("predict", out))


@pytest.mark.parametrize("kind", ["rf", "deep"])
def test_model_bands_missing_from_table(kind: str, tmp_path: Path, models: dict[str, Path]) -> None:
    table = _table(tmp_path, make_samples_table(bands=("red", "swir")))
    out = tmp_path / "e.json"
    res = run_cli(["evaluate", "--model", models[kind], "--samples", table, "--out", out])
    assert_user_error(res, "nir", outputs=outputs_of("evaluate", out))


def test_stack_with_extra_bands_in_another_order_is_fine(tmp_path: Path, models: dict[str, Path]) -> None:
    stack = tiny_stack(tmp_path / "stack", bands=("nir", "blue", "red"))
    for kind in ("rf", "deep"):
        out = tmp_path / f"{kind}.tif"
        res = run_cli(["predict", "--model", models[kind], "--stack", stack, "--out", out, *PREDICT_OPTS])
        assert res.rc == 0, res


def test_model_file_problems(tmp_path: Path, models: dict[str, Path]) -> None:
    out = tmp_path / "map.tif"
    (tmp_path / "text.pt").write_text("not a model")
    (tmp_path / "text.skops").write_text("not a model")
    shutil.copy(models["rf"], tmp_path / "rf_named.pt")  # a skops file under a .pt name
    data = models["deep"].read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    for name, needle in (("none.pt", "not found"), ("text.pt", "not a readable cropseq checkpoint"),
                         ("text.skops", "skops"), ("rf_named.pt", "checkpoint"),
                         ("cut.pt", "not a readable cropseq checkpoint")):  # fmt: skip
        res = run_cli(["predict", "--model", tmp_path / name, "--stack", models["stack"], "--out", out, *PREDICT_OPTS])
        assert_user_error(res, name, needle, outputs=outputs_of("predict", out))
        res = run_cli(["evaluate", "--model", tmp_path / name, "--samples", models["samples"], "--out", tmp_path / "e.json"])
        assert_user_error(res, name, needle, outputs=outputs_of("evaluate", tmp_path / "e.json"))


# ======================================================================================
# 6b. crop maps handed to mosaic / area / evaluate --map

MAP_CASES = {
    "mosaic_text_first": (["mosaic", "{text}", "--out", "{o}/mo.tif"], ["text.tif"]),
    "mosaic_text_second": (["mosaic", "{map}", "{text}", "--out", "{o}/mo.tif"], ["text.tif", "not a readable raster"]),
    "mosaic_other_crs": (["mosaic", "{map}", "{other}", "--out", "{o}/mo.tif"], ["other.tif", "CRS EPSG:4326 differs"]),
    "mosaic_float_and_map": (["mosaic", "{map}", "{float}", "--out", "{o}/mo.tif"], ["float.tif", "float32"]),
    "mosaic_missing": (["mosaic", "{o}/none.tif", "--out", "{o}/mo.tif"], ["none.tif", "not found"]),
    "area_text": (["area", "{text}", "--out", "{o}/a.csv"], ["text.tif", "not a readable raster"]),
    "area_not_a_crop_map": (["area", "{float}", "--out", "{o}/a.csv"], ["float.tif", "not a cropseq crop map"]),
    "evaluate_truth_other_crs": (["evaluate", "--map", "{map}", "--truth", "{other}", "--out", "{o}/e.json"],
                                 ["other.tif", "CRS EPSG:4326 differs"]),
    "evaluate_truth_other_shape": (["evaluate", "--map", "{map}", "--truth", "{big}", "--out", "{o}/e.json"],
                                   ["big.tif", "9x9"]),
    "evaluate_map_text": (["evaluate", "--map", "{text}", "--truth", "{map}", "--out", "{o}/e.json"], ["text.tif"]),
    "evaluate_truth_far": (["evaluate", "--map", "{map}", "--truth", "{far}", "--out", "{o}/e.json"],
                           ["far.csv", "no reference pixel"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MAP_CASES))
def test_bad_map_inputs(case: str, tmp_path: Path, models: dict[str, Path]) -> None:
    argv, needles = MAP_CASES[case]
    o = tmp_path / "out"
    o.mkdir()
    files = {"map": models["root"] / "ref_map.tif", "o": o, "text": tmp_path / "text.tif", "float": tmp_path / "float.tif",
             "other": tmp_path / "other.tif", "big": tmp_path / "big.tif", "far": tmp_path / "far.csv"}  # fmt: skip
    if not files["map"].is_file():
        res = run_cli(["predict", "--model", models["rf"], "--stack", models["stack"], "--out", files["map"], *PREDICT_OPTS])
        assert res.rc == 0, res
    files["text"].write_text("hello, not a raster")
    write_raster(files["float"], np.ones((1, *SHAPE), np.float32))
    write_raster(files["other"], np.ones((1, *SHAPE), np.uint8), crs="EPSG:4326")
    write_raster(files["big"], np.ones((1, 9, 9), np.uint8))
    write_points_csv(files["far"], [{"x": 0.0, "y": 0.0, "label": "maize"}])
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    outs = [Path(a) for a in argv if a.startswith(str(o)) and "none" not in a]
    outs += [p.with_name(p.stem + s) for p in outs for s in (".confusion.png", ".qml", ".area.csv")]
    assert_user_error(run_cli(argv), *needles, outputs=outs)


# ======================================================================================
# 7. workflow config failing the schema


@pytest.mark.timeout(300)
def test_config_failing_schema_stops_snakemake(tmp_path: Path) -> None:
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["samples"]["patch"] = "three"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    exe = shutil.which("snakemake")
    cmd = [exe] if exe else [sys.executable, "-m", "snakemake"]
    proc = subprocess.run([*cmd, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n",
                           "--configfile", str(bad)], cwd=tmp_path, capture_output=True, text=True, timeout=280)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "'three' is not of type 'integer'" in out, out[-3000:]
    assert "Job stats" not in out


# ======================================================================================
# 8. output paths: missing folder, parent is a file, read-only folder


def _output_commands(models: dict[str, Path], out_dir: Path) -> dict[str, tuple[list, Path]]:
    """Each writing command with its output under ``out_dir``."""
    d = out_dir
    tif = models["root"] / "ref_map.tif"
    if not tif.is_file():
        assert run_cli(["predict", "--model", models["rf"], "--stack", models["stack"], "--out", tif, *PREDICT_OPTS]).rc == 0
    return {
        "tile": (["tile", models["stack"], "--out", d / "tiles"], d / "tiles"),
        "samples": (["samples", "--stack", models["stack"], "--labels", models["labels"], "--out", d / "s.csv"], d / "s.csv"),
        "split": (["split", "--samples", models["samples"], "--train", d / "a.csv", "--val", d / "b.csv"], d / "a.csv"),
        "train-rf": (["train", "--samples", models["samples"], "--out", d / "m.skops", "--arch", "rf"], d / "m.skops"),
        "train-deep": (["train", "--samples", models["samples"], "--out", d / "m.pt", "--config", models["config"]], d / "m.pt"),
        "evaluate": (["evaluate", "--model", models["rf"], "--samples", models["samples"], "--out", d / "e.json"], d / "e.json"),
        "predict": (["predict", "--model", models["rf"], "--stack", models["stack"], "--out", d / "m.tif", *PREDICT_OPTS],
                    d / "m.tif"),
        "mosaic": (["mosaic", tif, "--out", d / "mo.tif"], d / "mo.tif"),
        "area": (["area", tif, "--out", d / "a.csv"], d / "a.csv"),
        "simulate": (["simulate", d / "sim", "--size", "32", "--dates", "8"], d / "sim"),
    }  # fmt: skip


@pytest.mark.parametrize("cmd", ["tile", "samples", "split", "train-rf", "train-deep", "evaluate", "predict",
                                 "mosaic", "area", "simulate"])  # fmt: skip
@pytest.mark.parametrize("where", ["missing_folder", "parent_is_a_file"])
def test_output_in_missing_folder(where: str, cmd: str, tmp_path: Path, models: dict[str, Path]) -> None:
    parent = tmp_path / "no such dir"
    if where == "missing_folder" and cmd == "simulate":
        pytest.skip("simulate creates its output folder (documented)")
    if where == "parent_is_a_file":
        parent = tmp_path / "a file"
        parent.write_text("x")
    argv, out = _output_commands(models, parent)[cmd]
    msg = assert_user_error(run_cli(argv), str(parent))
    assert any(w in msg for w in ("does not exist", "not a folder", "cannot create", "Not a directory")), msg
    assert not out.exists()
    if where == "parent_is_a_file":
        assert parent.read_text() == "x"
    else:
        assert not parent.exists()


def test_output_in_read_only_folder(tmp_path: Path, models: dict[str, Path]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: a read-only folder is still writable")
        for cmd, (argv, out) in _output_commands(models, ro).items():
            msg = assert_user_error(run_cli(argv), str(ro))
            assert "not writable" in msg or "Permission denied" in msg, (cmd, msg)
    finally:
        ro.chmod(0o755)


def test_check_writable_messages(tmp_path: Path) -> None:
    from cropseq.atomic import check_writable
    from cropseq.errors import CropseqError

    (tmp_path / "f").write_text("x")
    with pytest.raises(CropseqError, match="is a file, not a folder"):
        check_writable(tmp_path / "f" / "out.tif")
    with pytest.raises(CropseqError, match="does not exist"):
        check_writable(tmp_path / "none" / "out.tif")
    assert check_writable(tmp_path / "ok.tif") == tmp_path / "ok.tif"


# ======================================================================================
# 9. options


@pytest.mark.parametrize("patch", ["2", "0", "-1", "4"])
def test_bad_patch(patch: str, tmp_path: Path, models: dict[str, Path]) -> None:
    out = tmp_path / "s.csv"
    res = run_cli(["samples", "--stack", models["stack"], "--labels", models["labels"], "--out", out, "--patch", patch])
    assert_user_error(res, "--patch", f"odd integer >= 1, not {patch}", outputs=outputs_of("samples", out))
    m = tmp_path / "m.pt"
    res = run_cli(["train", "--samples", models["samples"], "--out", m, "--patch", patch, "--config", models["config"]])
    assert_user_error(res, "--patch", f"got {patch}", outputs=outputs_of("train", m))


def test_patch_larger_than_table(tmp_path: Path, models: dict[str, Path]) -> None:
    m = tmp_path / "m.pt"
    res = run_cli(["train", "--samples", models["samples"], "--out", m, "--patch", "3", "--config", models["config"]])
    assert_user_error(res, "samples.csv", "patch size 3 requested but the table holds 1x1", outputs=outputs_of("train", m))


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--k1", "2", "--k2", "3"], "--k2 (3) must not exceed --k1 (2)"),
        (["--k1", "0"], "--k1 must be >= 1, got 0"),
        (["--k2", "0"], "k2"),
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--epochs", "-2"], "--epochs must be >= 1, got -2"),
        (["--batch-size", "0"], "batch_size must be >= 1, got 0"),
        (["--arch", "transformer"], "--arch must be one of"),
        (["--device", "tpu"], "--device must be one of"),
        (["--bands", "red,swir"], "swir"),
        (["--epochs", "many"], "Invalid value for '--epochs'"),
    ],
)
def test_bad_train_options(args: list[str], needle: str, tmp_path: Path, models: dict[str, Path]) -> None:
    m = tmp_path / "m.pt"
    res = run_cli(["train", "--samples", models["samples"], "--out", m, "--config", models["config"], *args])
    assert_user_error(res, needle, outputs=outputs_of("train", m))


def test_bad_train_config_file(tmp_path: Path, models: dict[str, Path]) -> None:
    m = tmp_path / "m.pt"
    for text, needle in (("epochs: 0\n", "--epochs must be >= 1"), ("epochz: 3\n", "unknown training option(s): epochz"),
                         ("lr: fast\n", "option lr expects float"), ("[1, 2]\n", "expected a mapping"),
                         ("epochs: [\n", "not valid YAML")):  # fmt: skip
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(text)
        assert_user_error(run_cli(["train", "--samples", models["samples"], "--out", m, "--config", cfg]), "cfg.yaml",
                          needle, outputs=outputs_of("train", m))  # fmt: skip


def test_bad_dates_and_chunk_options(tmp_path: Path, models: dict[str, Path]) -> None:
    out = tmp_path / "map.tif"
    base = ["predict", "--model", models["rf"], "--stack", models["stack"], "--out", out, *PREDICT_OPTS]
    for extra, needle in ((["--start", "2021-05-01", "--end", "2021-04-01"], "start 2021-05-01 is not before end"),
                          (["--start", "2030-01-01"], "no dates between 2030-01-01"),
                          (["--start", "soon"], "'soon' is not a date"),
                          (["--chunk", "4"], "Invalid value for '--chunk'")):  # fmt: skip
        assert_user_error(run_cli([*base, *extra]), needle, outputs=outputs_of("predict", out))
    s = tmp_path / "s.csv"
    res = run_cli(["samples", "--stack", models["stack"], "--labels", models["labels"], "--out", s,
                   "--start", "2021-05-01", "--end", "2021-04-01"])  # fmt: skip
    assert_user_error(res, "end date 2021-04-01 is not after start date 2021-05-01", outputs=outputs_of("samples", s))
    res = run_cli(["samples", "--stack", models["stack"], "--labels", models["labels"], "--out", s, "--start", "2022-01-01"])
    assert_user_error(res, "no labelled pixel has a stack date", outputs=outputs_of("samples", s))


def test_nothing_left_after_a_failed_overwrite(tmp_path: Path, models: dict[str, Path]) -> None:
    """A failing run leaves an earlier good output untouched (atomic writes)."""
    out = tmp_path / "s.csv"
    assert run_cli(["samples", "--stack", models["stack"], "--labels", models["labels"], "--out", out]).rc == 0
    before = out.read_bytes()
    stack = tiny_stack(tmp_path / "stack")
    _truncated_pixels(stack)
    res = run_cli(["samples", "--stack", stack, "--labels", models["labels"], "--out", out])
    assert res.rc == 2 and out.read_bytes() == before and not temp_leftovers(tmp_path)


# ======================================================================================
# 10. the real entry point: nothing but one line reaches the terminal


@pytest.mark.timeout(300)
def test_console_one_line_no_traceback_no_warning(tmp_path: Path, models: dict[str, Path]) -> None:
    """``python -m cropseq`` in a subprocess: a corrupt raster (GDAL and rasterio warnings
    included) and a bad option print exactly one line each."""
    stack = tiny_stack(tmp_path / "stack")
    _truncated_header(stack)
    stack2 = tiny_stack(tmp_path / "stack2")
    _truncated_pixels(stack2)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # the filters a user has
    cases = [
        (["inspect", str(stack)], "nir.tif"),
        (["samples", "--stack", str(stack2), "--labels", str(models["labels"]), "--out", str(tmp_path / "s.csv")],
         "truncated or corrupt"),
        (["train", "--samples", str(models["samples"]), "--out", str(tmp_path / "m.pt"), "--k1", "2", "--k2", "5"],
         "--k2 (5) must not exceed --k1 (2)"),
    ]  # fmt: skip
    for argv, needle in cases:
        proc = subprocess.run([sys.executable, "-m", "cropseq", *argv], capture_output=True, text=True, env=env,
                              timeout=280)  # fmt: skip
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (argv, proc.stderr)
        assert lines[0].startswith("cropseq") and needle in lines[0], (argv, proc.stderr)
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "m.pt").exists()


# ======================================================================================
# 10. outputs that are symlink loops or one of the command's own inputs (issue 12, items 4, 5)


@pytest.mark.parametrize("cmd", ["tile", "samples", "split", "train-rf", "train-deep", "evaluate", "predict",
                                 "mosaic", "area", "simulate"])  # fmt: skip
def test_output_is_a_symlink_loop(cmd: str, tmp_path: Path, models: dict[str, Path]) -> None:
    argv, out = _output_commands(models, tmp_path)[cmd]
    other = out.with_name(f"{out.name}.other")
    out.symlink_to(other)
    other.symlink_to(out)
    msg = assert_user_error(run_cli(argv), str(out))
    assert "symbolic link loop" in msg or "Too many levels of symbolic links" in msg, msg
    assert out.is_symlink() and other.is_symlink()  # left as they were


def test_output_folder_is_a_symlink_loop(tmp_path: Path, models: dict[str, Path]) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(loop)
    argv, _ = _output_commands(models, loop)["predict"]
    assert_user_error(run_cli(argv), "output folder", "symbolic link loop")


def _fingerprint(path: Path) -> bytes:
    return Path(path).read_bytes()


@pytest.mark.parametrize("case", ["predict-out-is-a-stack-raster", "predict-confidence-is-a-stack-raster",
                                  "predict-area-is-the-manifest", "split-train-is-samples", "split-val-is-samples",
                                  "evaluate-out-is-truth", "evaluate-plot-is-the-model", "train-out-is-samples",
                                  "samples-out-is-labels", "area-out-is-the-map", "hard-link-to-a-stack-raster"])  # fmt: skip
def test_output_may_not_overwrite_an_input(case: str, tmp_path: Path, models: dict[str, Path]) -> None:
    stack = tmp_path / "stack"
    shutil.copytree(models["stack"].parent, stack)
    red = stack / "red.tif"
    samples = tmp_path / "samples.csv"
    shutil.copy(models["samples"], samples)
    model = tmp_path / "rf.skops"
    shutil.copy(models["rf"], model)
    truth = tmp_path / "truth.tif"
    assert run_cli(["predict", "--model", model, "--stack", stack, "--out", truth, *PREDICT_OPTS]).rc == 0
    labels = tmp_path / "points.csv"
    shutil.copy(models["labels"], labels)
    predict = ["predict", "--model", model, "--stack", stack, *PREDICT_OPTS]
    cases = {
        "predict-out-is-a-stack-raster": ([*predict, "--out", red], red),
        "predict-confidence-is-a-stack-raster": ([*predict, "--out", tmp_path / "m.tif", "--confidence", red], red),
        "predict-area-is-the-manifest": ([*predict, "--out", tmp_path / "m.tif", "--area", stack / "stack.yaml"],
                                         stack / "stack.yaml"),
        "split-train-is-samples": (["split", "--samples", samples, "--train", samples, "--val", tmp_path / "v.csv"],
                                   samples),
        "split-val-is-samples": (["split", "--samples", samples, "--train", tmp_path / "t.csv", "--val", samples],
                                 samples),
        "evaluate-out-is-truth": (["evaluate", "--map", truth, "--truth", truth, "--out", truth], truth),
        "evaluate-plot-is-the-model": (["evaluate", "--model", model, "--samples", samples, "--out",
                                        tmp_path / "e.json", "--plot", model], model),
        "train-out-is-samples": (["train", "--samples", samples, "--out", samples, "--arch", "rf"], samples),
        "samples-out-is-labels": (["samples", "--stack", stack, "--labels", labels, "--out", labels], labels),
        "area-out-is-the-map": (["area", truth, "--out", truth], truth),
    }  # fmt: skip
    if case == "hard-link-to-a-stack-raster":
        link = tmp_path / "link.tif"
        os.link(red, link)
        argv, victim = [*predict, "--out", link], red
    else:
        argv, victim = cases[case]
    before = _fingerprint(victim)
    files_before = sorted(p.name for p in tmp_path.rglob("*"))
    msg = assert_user_error(run_cli(argv), "is also an input", "choose another output name")
    assert _fingerprint(victim) == before
    assert sorted(p.name for p in tmp_path.rglob("*")) == files_before  # nothing written, nothing left
    if case == "hard-link-to-a-stack-raster":
        assert str(red) in msg  # names the input it would overwrite


def test_inputs_are_scoped_to_one_command(tmp_path: Path, models: dict[str, Path]) -> None:
    """Reading a file in one command does not stop the next command from writing it."""
    from cropseq.atomic import atomic_path, inputs_scope, register_input
    from cropseq.errors import CropseqError

    samples = tmp_path / "s.csv"
    shutil.copy(models["samples"], samples)
    assert run_cli(["split", "--samples", samples, "--train", tmp_path / "t.csv", "--val", tmp_path / "v.csv"]).rc == 0
    assert run_cli(["split", "--samples", tmp_path / "t.csv", "--train", samples, "--val", tmp_path / "w.csv"]).rc == 0
    register_input(samples, what="x")  # outside a scope: a no-op (the Python API)
    with atomic_path(samples) as tmp:
        tmp.write_text("fine")
    with inputs_scope():
        register_input(samples, what="samples table")
        with pytest.raises(CropseqError, match="is also an input"), atomic_path(samples) as tmp:
            tmp.write_text("no")
    assert samples.read_text() == "fine"


def test_version_option() -> None:
    from cropseq import __version__

    for flag in ("--version", "-V"):
        res = run_cli([flag])
        assert res.rc == 0, res
        assert res.out.strip() == f"cropseq {__version__}"
    assert run_cli(["version"]).out.strip() == __version__
