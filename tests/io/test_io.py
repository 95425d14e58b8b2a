"""open_stack: the cube contract, value handling, header checks, real data."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import yaml
from _data_fixtures import TINY_RES, dtwsat_manifest, tiny_dates, write_raster, write_stack

from cropseq.errors import CropseqError
from cropseq.io import open_stack, read_with_halo, stack_summary, window_reader


@pytest.mark.parametrize("layout", ["per-band", "per-date"])
def test_cube_contract(tmp_path: Path, layout: str) -> None:
    path, expected = write_stack(tmp_path, layout, masks=True, nodata=-9999.0, shuffle_dates=True)
    cube = open_stack(path, chunks=4)
    assert cube.dims == ("time", "band", "y", "x") and cube.dtype == np.float32
    assert cube.name == "reflectance" and cube.attrs["source"] == str(path.resolve())
    assert isinstance(cube.data, da.Array)
    # Chunked in space only: every chunk holds all dates and bands.
    assert cube.chunks[0] == (5,) and cube.chunks[1] == (2,) and cube.chunks[2] == (4, 3) and cube.chunks[3] == (4, 4, 1)
    assert cube["time"].dtype == np.dtype("datetime64[ns]")
    assert [str(t)[:10] for t in cube["time"].values] == tiny_dates(5)  # sorted
    assert cube["band"].values.tolist() == ["red", "nir"]
    assert cube.rio.crs.to_epsg() == 32633
    assert cube.rio.transform().a == TINY_RES
    assert cube["x"].values[0] == 500000.0 + TINY_RES / 2  # pixel centres
    np.testing.assert_array_equal(cube.values, expected)  # masks, nodata, date order
    assert np.isnan(expected).sum() > 10


def test_scale_offset_valid_range(tmp_path: Path) -> None:
    extra = {"scale": {"nir": 0.5}, "offset": 1.0, "valid_range": {"red": [0, 30]}}
    path, expected = write_stack(tmp_path, "per-band", extra=extra)
    cube = open_stack(path).values
    np.testing.assert_allclose(cube[:, 1], expected[:, 1] * 0.5 + 1.0, rtol=1e-6)
    red = expected[:, 0] + 1.0
    red[(red < 0) | (red > 30)] = np.nan
    np.testing.assert_allclose(cube[:, 0], red, rtol=1e-6)
    assert np.isnan(cube[3:, 0]).all() and not np.isnan(cube[:2, 0]).any()


def test_mask_invalid_zero(tmp_path: Path) -> None:
    path, _ = write_stack(tmp_path, "per-band", masks=True, extra={"mask_invalid": "zero"})
    import rasterio

    with rasterio.open(tmp_path / "clouds.tif") as src:
        clear = src.read() == 0
    cube = open_stack(path).values
    assert np.isnan(cube).sum() == clear.sum() * 2


def test_missing_raster(tmp_path: Path) -> None:
    path, _ = write_stack(tmp_path, "per-band")
    (tmp_path / "nir.tif").unlink()
    with pytest.raises(CropseqError, match=r"nir.tif: raster named in .*stack.yaml not found"):
        open_stack(path)
    with pytest.raises(CropseqError, match="stack not found"):
        open_stack(tmp_path / "nope.yaml")


def test_corrupt_raster(tmp_path: Path) -> None:
    path, _ = write_stack(tmp_path, "per-band")
    (tmp_path / "nir.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(CropseqError, match=r"nir.tif: cannot read raster"):
        open_stack(path)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"crs": "EPSG:32634"}, "CRS EPSG:32634 vs EPSG:32633"),
        ({"origin": (500005.0, 5000000.0)}, "transform"),
    ],
)
def test_grid_mismatch_names_both_files(tmp_path: Path, kwargs: dict, pattern: str) -> None:
    path, expected = write_stack(tmp_path, "per-band")
    write_raster(tmp_path / "nir.tif", expected[:, 1], **kwargs)
    with pytest.raises(CropseqError, match=pattern) as e:
        open_stack(path)
    msg = str(e.value)
    assert msg.startswith(str(tmp_path.resolve() / "nir.tif")) and "red.tif" in msg


def test_shape_and_count_mismatch(tmp_path: Path) -> None:
    path, expected = write_stack(tmp_path, "per-band")
    write_raster(tmp_path / "nir.tif", expected[:, 1, :5])
    with pytest.raises(CropseqError, match=r"shape 5x9 vs 7x9"):
        open_stack(path)
    write_raster(tmp_path / "nir.tif", expected[:4, 1])
    with pytest.raises(CropseqError, match=r"nir.tif: 4 raster bands but 5 dates in timeline"):
        open_stack(path)


def test_per_date_band_count_mismatch(tmp_path: Path) -> None:
    path, _ = write_stack(tmp_path, "per-date")
    data = yaml.safe_load(path.read_text())
    data["bands"] = ["red", "nir", "swir"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CropseqError, match="2 raster bands but 3 bands listed"):
        open_stack(path)


@pytest.mark.parametrize("layout", ["per-band", "per-date"])
def test_read_with_halo_equals_dask_overlap(tmp_path: Path, layout: str) -> None:
    """Chunks read with their halo == dask's overlap of the cube (NaN beyond the edges),
    after a date and band selection, in shuffled order, with masks and nodata."""
    path, _ = write_stack(tmp_path, layout, masks=True, nodata=-9999.0, shuffle_dates=True, shape=(11, 13))
    cube = open_stack(path, chunks=4)
    sub = cube.isel(time=[4, 0, 2]).sel(band=["nir", "red"])
    reader = window_reader(sub)
    assert reader is not None
    ych, xch, halo = (5, 4, 2), (6, 7), 2
    got = read_with_halo(reader, ych, xch, halo)
    assert got.chunks[2:] == ((9, 8, 6), (10, 11))
    # No read depends on another one: that is what keeps memory flat.
    graph = got.__dask_graph__()
    assert all(not deps for deps in graph.dependencies.values())
    ref = da.overlap.overlap(
        sub.data.rechunk((-1, -1, ych, xch)),
        depth={0: 0, 1: 0, 2: halo, 3: halo},
        boundary={0: "none", 1: "none", 2: np.nan, 3: np.nan},
    )
    np.testing.assert_array_equal(got.compute(), ref.compute())
    assert np.isnan(got.compute()).any() and np.isfinite(got.compute()).any()


def test_window_reader_only_for_plain_selections(tmp_path: Path) -> None:
    path, _ = write_stack(tmp_path, "per-band", masks=True)
    cube = open_stack(path, chunks=4)
    assert window_reader(cube) is not None
    assert window_reader(cube.sel(band="nir", drop=False).expand_dims("band", 1)) is None  # reshaped
    assert window_reader(cube.copy(data=cube.data * 2)) is None  # values changed
    assert window_reader(cube.isel(x=slice(1, None))) is None  # spatial crop
    assert window_reader(cube.isel(y=slice(None, None, -1))) is None  # flipped, same size
    assert window_reader(cube.compute()) is None  # in memory
    assert window_reader(cube.transpose("band", "time", "y", "x")) is None


def test_stack_summary(tmp_path: Path) -> None:
    path, expected = write_stack(tmp_path, "per-band", masks=True)
    s = stack_summary(open_stack(path))
    assert s["dates"] == tiny_dates(5) and s["bands"] == ["red", "nir"]
    assert s["crs"] == "EPSG:32633" and "UTM zone 33N" in s["crs_name"]
    assert s["shape"] == {"time": 5, "band": 2, "y": 7, "x": 9}
    assert s["resolution"] == [10.0, 10.0]
    assert s["bounds"] == [500000.0, 5000000.0 - 70.0, 500090.0, 5000000.0]
    frac = np.isnan(expected[:, 0]).mean()
    assert s["missing_fraction"]["red"] == pytest.approx(frac) and frac > 0


# ----------------------------------------------------------------------------- real data


def test_dtwsat_stack(shared_data: Path, tmp_path: Path) -> None:
    cube = open_stack(dtwsat_manifest(shared_data, tmp_path / "stack.yaml"))
    s = stack_summary(cube)
    assert len(s["dates"]) == 137 and s["dates"][0] == "2007-09-14" and s["dates"][-1] == "2013-08-29"
    assert s["shape"] == {"time": 137, "band": 7, "y": 27, "x": 37}
    assert "Sinusoidal" in s["crs_name"] and "+proj=sinu" in s["crs_name"]
    # SOURCE.md: 52 nodata cells in blue, 26 in evi, none elsewhere.
    n = cube.sizes["time"] * 27 * 37
    assert round(s["missing_fraction"]["blue"] * n) == 52 and round(s["missing_fraction"]["evi"] * n) == 26
    assert s["missing_fraction"]["ndvi"] == 0.0
    assert float(cube.sel(band="ndvi").max()) <= 1.0


def test_slovenia_cloud_mask(shared_data: Path, tmp_path: Path) -> None:
    conv = shared_data / "eolearn_testeopatch_slovenia" / "converted"
    if not conv.is_dir():
        pytest.skip("eo-learn data absent")
    (tmp_path / "stack.yaml").write_text(
        yaml.safe_dump(
            {
                "layout": "per-band",
                "bands": {"ndvi": str(conv / "ndvi_68dates.tif")},
                "dates": "descriptions",
                "masks": str(conv / "clm_68dates.tif"),
            }
        )
    )
    cube = open_stack(tmp_path, chunks=64)
    import rasterio

    with rasterio.open(conv / "clm_68dates.tif") as src:
        clouds = src.read() != 0
    with rasterio.open(conv / "ndvi_68dates.tif") as src:
        ndvi = src.read()
    assert cube.shape == (68, 1, 101, 100)
    vals = cube.values[:, 0]
    assert int(np.isnan(vals).sum()) == int(clouds.sum()) > 0
    np.testing.assert_array_equal(np.isnan(vals), clouds)
    np.testing.assert_array_equal(vals[~clouds], ndvi[~clouds])
    # 2015-12-08 holds two acquisitions at different times: both kept, in order.
    same_day = [str(t) for t in cube["time"].values if str(t).startswith("2015-12-08")]
    assert len(same_day) == 2 and same_day[0] < same_day[1]


def test_scale_offset_and_fill_from_file_tags(tmp_path: Path) -> None:
    """An integer product's own scale/offset tags and nodata apply unless the manifest sets them."""
    import rasterio

    data = np.array([[[0, 1000], [2000, 10000]]], np.uint16)
    write_raster(tmp_path / "b04.tif", data, nodata=0)
    with rasterio.open(tmp_path / "b04.tif", "r+") as dst:
        dst.scales, dst.offsets = (0.0001,), (-0.1,)
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump({"layout": "per-band", "bands": {"B04": "b04.tif"}, "dates": tiny_dates(1)}))
    cube = open_stack(tmp_path).values[0, 0]
    np.testing.assert_allclose(cube, [[np.nan, 0.0], [0.1, 0.9]], rtol=1e-6, atol=1e-7)
    (tmp_path / "stack.yaml").write_text(
        yaml.safe_dump({"layout": "per-band", "bands": {"B04": "b04.tif"}, "dates": tiny_dates(1), "scale": 1.0})
    )
    np.testing.assert_allclose(open_stack(tmp_path).values[0, 0], [[np.nan, 1000], [2000, 10000]])


def test_inspect_shows_band_resolution(tmp_path: Path) -> None:
    from _data_fixtures import run_cli

    write_raster(tmp_path / "B04_2021-04-01.tif", np.ones((1, 8, 8), np.float32))
    write_raster(tmp_path / "B11_2021-04-01.tif", np.ones((1, 4, 4), np.float32), res=2 * TINY_RES)
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump({"layout": "single-band", "files": {"B04": "B04_*", "B11": "B11_*"}}))
    res = run_cli(["inspect", tmp_path, "--json"])
    assert res.rc == 0, res
    import json

    s = json.loads(res.out)
    assert s["band_resolution"] == {
        "B04": {"resolution": [10.0, 10.0], "resampling": None},
        "B11": {"resolution": [20.0, 20.0], "resampling": "bilinear"},
    }
    assert s["resolution"] == [10.0, 10.0] and s["missing_fraction"] == {"B04": 0.0, "B11": 0.0}
    text = run_cli(["inspect", tmp_path]).out
    assert "target grid" in text and "bilinear" in text and "20 x 20" in text


# ----------------------------------------------------------------------------- interleaved layout, dtype, value stats


@pytest.mark.parametrize("order", ["date-major", "band-major"])
def test_interleaved_raster_read_in_band_order(tmp_path: Path, order: str) -> None:
    """One raster holding 4 dates × 3 bands: each cube value is the raster band the order
    names (read independently with rasterio), dates sorted, a per-date mask raster applied."""
    import rasterio

    rng = np.random.default_rng(1)
    n_t, bands = 4, ["B04", "B08", "B11"]
    write_raster(tmp_path / "all.tif", rng.random((n_t * 3, 5, 6), dtype=np.float32))
    clouds = np.zeros((n_t, 5, 6), np.uint8)
    clouds[2, 1, 1] = 1
    write_raster(tmp_path / "clouds.tif", clouds)
    dates = tiny_dates(n_t)[::-1]  # stored newest first: the cube sorts them
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump(
        {"layout": "interleaved", "files": "all.tif", "bands": bands, "order": order, "dates": dates, "masks": "clouds.tif"}
    ))  # fmt: skip
    cube = open_stack(tmp_path, chunks=4)
    assert cube.dims == ("time", "band", "y", "x") and list(cube["band"].values) == bands
    with rasterio.open(tmp_path / "all.tif") as src:
        raw = src.read()
    vals = cube.values
    for t in range(n_t):
        stored = n_t - 1 - t  # cube date t is the stored date n_t - 1 - t
        for b in range(3):
            k = stored * 3 + b if order == "date-major" else b * n_t + stored
            expect = raw[k].copy()
            expect[clouds[stored] == 1] = np.nan
            np.testing.assert_array_equal(vals[t, b], expect)


def test_interleaved_count_mismatch_says_the_arithmetic(tmp_path: Path) -> None:
    write_raster(tmp_path / "all.tif", np.zeros((12, 2, 2), np.float32))
    m = {"layout": "interleaved", "files": "all.tif", "bands": ["a", "b", "c"], "order": "date-major", "dates": tiny_dates(5)}
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump(m))
    with pytest.raises(CropseqError, match=r"12 raster bands is not 5 dates × 3 bands \(12 = 4 dates × 3 bands: check dates\)"):
        open_stack(tmp_path)
    # The per-band layout given such a raster points to the interleaved layout.
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump({"layout": "per-band", "bands": {"a": "all.tif"}, "dates": tiny_dates(4)}))
    with pytest.raises(CropseqError, match="12 raster bands but 4 dates .*use layout: interleaved"):
        open_stack(tmp_path)


def _uint16_ndvi(tmp_path: Path, **keys: object) -> Path:
    """MODIS-like NDVI stored uint16 with scale 0.0001: 65535 is -0.0001 stored unsigned."""
    data = np.array([[[65535, 5000], [0, 65436]], [[1000, 65535], [2000, 3000]]], np.uint16)
    write_raster(tmp_path / "ndvi.tif", data)
    m = {"layout": "per-band", "bands": {"NDVI": "ndvi.tif"}, "dates": tiny_dates(2), "scale": 0.0001, **keys}
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump(m))
    return tmp_path / "stack.yaml"


def test_dtype_override_reinterprets_stored_bits(tmp_path: Path) -> None:
    vals = open_stack(_uint16_ndvi(tmp_path, dtype={"NDVI": "int16"})).values[:, 0]
    np.testing.assert_allclose(vals[0], [[-0.0001, 0.5], [0.0, -0.01]], rtol=1e-5)
    np.testing.assert_allclose(vals[1], [[0.1, -0.0001], [0.2, 0.3]], rtol=1e-5)
    # Without it the same bits are 6.5535: the reason for the key.
    assert float(open_stack(_uint16_ndvi(tmp_path)).max()) == pytest.approx(6.5535)
    # nodata in the manifest is in the new type's terms; the file's own is reinterpreted too.
    vals = open_stack(_uint16_ndvi(tmp_path, dtype={"NDVI": "int16"}, nodata=-1)).values[:, 0]
    assert np.isnan(vals[0, 0, 0]) and np.isnan(vals[1, 0, 1]) and vals[0, 1, 1] == pytest.approx(-0.01)
    import rasterio

    path = _uint16_ndvi(tmp_path, dtype={"NDVI": "int16"})
    with rasterio.open(tmp_path / "ndvi.tif", "r+") as dst:
        dst.nodata = 65535
    vals = open_stack(path).values[:, 0]
    assert np.isnan(vals[0, 0, 0]) and vals[0, 1, 1] == pytest.approx(-0.01)


def test_dtype_override_errors(tmp_path: Path) -> None:
    with pytest.raises(CropseqError, match="dtype.NDVI in stack.yaml: int8 cannot reinterpret values stored as uint16"):
        open_stack(_uint16_ndvi(tmp_path, dtype={"NDVI": "int8"}))
    with pytest.raises(CropseqError, match="read onto another grid cannot be reinterpreted"):
        open_stack(_uint16_ndvi(tmp_path, dtype={"NDVI": "int16"}, grid={"resolution": 20}))


def test_summary_value_stats_and_limit_warning(tmp_path: Path) -> None:
    """inspect's value statistics come from the sampled windows, in physical units, and a
    cube maximum at scale × the dtype's maximum (6.5535 = 65535 × 0.0001) is flagged."""
    s = stack_summary(open_stack(_uint16_ndvi(tmp_path)))
    st = s["value_stats"]["NDVI"]
    assert st["n_valid"] == 8 and st["min"] == 0.0 and st["max"] == 6.5535
    assert st["p1"] == pytest.approx(np.percentile(np.float32([6.5535, 0.5, 0, 6.5436, 0.1, 6.5535, 0.2, 0.3]), 1), rel=1e-5)
    (warning,) = s["value_warnings"]
    assert "band NDVI: 25.00 % of sampled valid values sit at 6.5535 = 65535 × 0.0001, the maximum of uint16" in warning
    assert "dtype: {NDVI: int16}" in warning and "nodata: {NDVI: 65535}" in warning
    fixed = stack_summary(open_stack(_uint16_ndvi(tmp_path, dtype={"NDVI": "int16"})))
    assert fixed["value_warnings"] == [] and fixed["value_stats"]["NDVI"]["min"] == pytest.approx(-0.01)


def test_summary_value_stats_read_only_the_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large scene: statistics from the bounded window sample, never a full read."""
    import cropseq.io as io_mod

    write_raster(tmp_path / "b.tif", np.arange(2 * 600 * 500, dtype=np.float32).reshape(2, 600, 500))
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump({"layout": "per-band", "bands": {"b": "b.tif"}, "dates": tiny_dates(2)}))
    cube = open_stack(tmp_path, chunks=16)  # > EXACT_SUMMARY_MAX_CHUNKS chunks
    read = []
    monkeypatch.setattr(io_mod, "_read_groups", lambda groups, win, f=io_mod._read_groups: read.append(win) or f(groups, win))
    s = stack_summary(cube)
    assert s["value_sampled_px"] == 16 * 64 * 64 == s["missing_sampled_px"]
    assert sum(w.height * w.width for w in read) == 16 * 64 * 64
    assert 0 < s["value_stats"]["b"]["min"] < s["value_stats"]["b"]["p1"] < s["value_stats"]["b"]["max"] < 2 * 600 * 500
