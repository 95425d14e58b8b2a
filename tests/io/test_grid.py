"""Real-imagery layouts: a target grid, bands at 10 m and 20 m, value and bit masks, another
UTM zone, one file per band per date. Every value is checked against an independent read
(rasterio + ``WarpedVRT`` of the whole grid, or plain numpy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from cropseq.errors import CropseqError
from cropseq.io import open_stack, stack_summary, window_reader

ORIGIN = (500000.0, 5000000.0)
N = 48  # 10 m pixels per side
DATES = ["2021-07-04", "2021-07-14", "2021-07-24"]
SCALE = 0.0001
SCL_INVALID = [0, 1, 3, 8, 9, 10, 11]


def _write(path: Path, data: np.ndarray, res: float, *, crs: str = "EPSG:32633", transform: Affine | None = None,
           nodata: float | None = None, scale: float | None = None, driver: str = "GTiff") -> Path:  # fmt: skip
    t = transform or Affine(res, 0.0, ORIGIN[0], 0.0, -res, ORIGIN[1])
    lossless = {"QUALITY": "100", "REVERSIBLE": "YES"} if driver == "JP2OpenJPEG" else {}
    with rasterio.open(path, "w", driver=driver, height=data.shape[0], width=data.shape[1], count=1,
                       dtype=data.dtype.name, crs=crs, transform=t, nodata=nodata, **lossless) as dst:  # fmt: skip
        dst.write(data[None])
        if scale is not None:
            dst.scales = (scale,)
    return path


def _manifest(root: Path, **keys: Any) -> Path:
    (root / "stack.yaml").write_text(yaml.safe_dump(keys, sort_keys=False))
    return root / "stack.yaml"


def _s2_scene(root: Path, name: str = "SENTINEL-2_MSI_20LLQ_{band}_{date}.tif") -> dict[str, list[np.ndarray]]:
    """B02, B04 at 10 m, B11 at 20 m (uint16, fill 0, scale tag 0.0001), SCL at 20 m."""
    rng = np.random.default_rng(7)
    out: dict[str, list[np.ndarray]] = {"B02": [], "B04": [], "B11": [], "SCL": []}
    for d in DATES:
        for band, res in (("B02", 10), ("B04", 10), ("B11", 20)):
            n = N * 10 // res
            v = rng.integers(200, 4000, (n, n)).astype(np.uint16)
            v[0, :3] = 0  # fill value
            out[band].append(v)
            _write(root / name.format(band=band, date=d), v, res, nodata=0, scale=SCALE)
        scl = rng.choice(np.array([4, 5, 6, 8, 9, 3], np.uint8), (N // 2, N // 2), p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.1])
        out["SCL"].append(scl)
        _write(root / name.format(band="SCL", date=d), scl, 20)
    return out


def _warped(path: Path, cube: Any, method: str) -> np.ndarray:
    """The whole target grid read from ``path`` with rasterio + WarpedVRT (independent).

    A tiny approximation tolerance: GDAL's default (0.125 px) is itself off by ~1e-5 here."""
    t = cube.rio.transform()
    with rasterio.open(path) as src, WarpedVRT(
        src, crs=cube.rio.crs, transform=t, width=cube.sizes["x"], height=cube.sizes["y"],
        resampling=Resampling[method], dtype="float32", nodata=np.nan, tolerance=1e-9,
    ) as vrt:  # fmt: skip
        return vrt.read(1)


SITS_PATTERN = r"SENTINEL-2_MSI_20LLQ_(?P<band>B\d\d|SCL)_(?P<date>\d{4}-\d{2}-\d{2})"


def test_10m_20m_scl_value_mask(tmp_path: Path) -> None:
    raw = _s2_scene(tmp_path)
    path = _manifest(tmp_path, layout="single-band", files="*.tif", pattern=SITS_PATTERN,
                     mask={"band": "SCL", "invalid": SCL_INVALID})  # fmt: skip
    cube = open_stack(path, chunks=16)
    assert cube.dims == ("time", "band", "y", "x") and cube.dtype == np.float32
    assert cube["band"].values.tolist() == ["B02", "B04", "B11"]  # SCL is the mask, not a band
    assert cube.shape == (3, 3, N, N) and cube.rio.transform().a == 10.0  # the finest band's grid
    values = cube.values
    for t, d in enumerate(DATES):
        # SCL at 20 m read with nearest onto 10 m: each 20 m pixel covers 2 x 2.
        bad = np.isin(raw["SCL"][t], SCL_INVALID).repeat(2, 0).repeat(2, 1)
        b02 = raw["B02"][t] * np.float32(SCALE)
        b02 = np.where((raw["B02"][t] == 0) | bad, np.nan, b02)
        np.testing.assert_allclose(values[t, 0], b02, rtol=1e-6)
        b11 = _warped(tmp_path / f"SENTINEL-2_MSI_20LLQ_B11_{d}.tif", cube, "bilinear") * SCALE
        b11[bad] = np.nan
        np.testing.assert_allclose(values[t, 2], b11, rtol=1e-6)
    assert 0.05 < np.isnan(values[:, 0]).mean() < 0.6


@pytest.mark.e2e
def test_chunk_size_independence(tmp_path: Path) -> None:
    _s2_scene(tmp_path)
    path = _manifest(tmp_path, layout="single-band", files="*.tif", pattern=SITS_PATTERN,
                     mask={"band": "SCL", "invalid": SCL_INVALID}, grid={"crs": "EPSG:32634"})  # fmt: skip
    a, b = open_stack(path, chunks=16).values, open_stack(path, chunks=64).values
    np.testing.assert_array_equal(a, b)
    # The halo reader gives the same pixels as the cube.
    cube = open_stack(path, chunks=16)
    r = window_reader(cube)
    assert r is not None
    np.testing.assert_array_equal(r(5, 7, 20, 11), cube.values[:, :, 5:25, 7:18])


def test_other_utm_zone_reprojected(tmp_path: Path) -> None:
    """A 20 m band stored in UTM 34N beside 10 m bands in 33N: reprojected, not refused."""
    from rasterio.warp import calculate_default_transform, reproject

    rng = np.random.default_rng(1)
    b04 = rng.random((N, N), np.float32)
    _write(tmp_path / "B04_2021-07-04.tif", b04, 10)
    src_t = Affine(20.0, 0, ORIGIN[0], 0, -20.0, ORIGIN[1])
    t34, w, h = calculate_default_transform("EPSG:32633", "EPSG:32634", N // 2, N // 2,
                                            ORIGIN[0], ORIGIN[1] - N * 10, ORIGIN[0] + N * 10, ORIGIN[1])  # fmt: skip
    b8a = np.full((h + 4, w + 4), np.nan, np.float32)
    t34 = t34 * Affine.translation(-2, -2)
    reproject(rng.random((N // 2, N // 2), np.float32), b8a, src_transform=src_t, src_crs="EPSG:32633",
              dst_transform=t34, dst_crs="EPSG:32634", resampling=Resampling.nearest)  # fmt: skip
    f8a = _write(tmp_path / "B8A_2021-07-04.tif", b8a, 20, crs="EPSG:32634", transform=t34, nodata=np.nan)
    path = _manifest(tmp_path, layout="single-band", files={"B04": "B04_*.tif", "B8A": "B8A_*.tif"})
    cube = open_stack(path, chunks=16)
    assert cube.rio.crs.to_epsg() == 32633 and cube.shape == (1, 2, N, N)
    np.testing.assert_array_equal(cube.values[0, 0], b04)
    expected = _warped(f8a, cube, "bilinear")
    np.testing.assert_allclose(cube.values[0, 1], expected, rtol=0, atol=1e-5)  # values in [0, 1)
    assert np.isfinite(cube.values[0, 1]).mean() > 0.9
    s = stack_summary(cube)
    assert s["band_resolution"]["B8A"]["resampling"] == "bilinear"
    assert s["band_resolution"]["B04"] == {"resolution": [10.0, 10.0], "resampling": None}


def test_landsat_qa_bit_mask_and_coarser_grid(tmp_path: Path) -> None:
    """QA_PIXEL bits 3 (cloud) and 4 (shadow); a 20 m target grid averages the 10 m band."""
    rng = np.random.default_rng(3)
    red = rng.integers(7000, 20000, (N, N)).astype(np.uint16)
    qa = rng.choice(np.array([21824, 21824 | 8, 21824 | 16, 1], np.uint16), (N, N))  # clear, cloud, shadow, fill bit
    _write(tmp_path / "LC08_20210704_SR_B4.tif", red, 10)
    _write(tmp_path / "LC08_20210704_QA_PIXEL.tif", qa, 10)
    path = _manifest(
        tmp_path, layout="single-band", files={"SR_B4": "*_SR_B4.tif", "QA_PIXEL": "*_QA_PIXEL.tif"},
        mask={"band": "QA_PIXEL", "bits": {"cloud": 3, "shadow": 4}}, scale={"SR_B4": 2.75e-05}, offset={"SR_B4": -0.2},
    )  # fmt: skip
    values = open_stack(path).values[0, 0]
    bad = ((qa >> 3) & 1 | (qa >> 4) & 1).astype(bool)
    np.testing.assert_allclose(values, np.where(bad, np.nan, red * 2.75e-05 - 0.2), rtol=1e-5)
    (tmp_path / "stack.yaml").unlink()
    path = _manifest(tmp_path, layout="single-band", files={"SR_B4": "*_SR_B4.tif"}, grid={"resolution": 20})
    cube = open_stack(path)
    assert cube.shape == (1, 1, N // 2, N // 2)
    np.testing.assert_allclose(cube.values[0, 0], red.reshape(N // 2, 2, N // 2, 2).mean(axis=(1, 3)), rtol=1e-5)


def test_grid_bbox_and_bounds(tmp_path: Path) -> None:
    """bounds (grid CRS) and bbox (WGS84) crop the grid; pixels are those of the whole grid."""
    from rasterio.warp import transform_bounds

    _s2_scene(tmp_path)
    whole = open_stack(_manifest(tmp_path, layout="single-band", files="*.tif", pattern=SITS_PATTERN)).values
    bounds = [ORIGIN[0] + 100, ORIGIN[1] - 300, ORIGIN[0] + 260, ORIGIN[1] - 100]
    path = _manifest(tmp_path, layout="single-band", files="*.tif", pattern=SITS_PATTERN, grid={"bounds": bounds})
    cube = open_stack(path, chunks=8)
    assert cube.shape[2:] == (20, 16) and cube.rio.transform().c == bounds[0]
    np.testing.assert_array_equal(cube.values, whole[:, :, 10:30, 10:26])
    bbox = list(transform_bounds("EPSG:32633", "EPSG:4326", *bounds))
    path = _manifest(tmp_path, layout="single-band", files="*.tif", pattern=SITS_PATTERN, grid={"bbox": bbox})
    cube = open_stack(path, chunks=8)
    assert cube.rio.crs.to_epsg() == 32633 and cube.rio.transform().a == 10.0
    left, top = cube.rio.transform().c, cube.rio.transform().f
    assert left <= bounds[0] and top >= bounds[3] and cube.shape[2] >= 20 and cube.shape[3] >= 16


def test_safe_naming_jp2(tmp_path: Path) -> None:
    """SAFE names (date with time of day, a resolution field) in JP2 files."""
    rng = np.random.default_rng(5)
    raw = {}
    for d in ("20230301T101021", "20230311T101021"):
        for band, res in (("B04", 10), ("B05", 20)):
            v = rng.integers(1, 4000, (N * 10 // res,) * 2).astype(np.uint16)
            raw[band, d] = v
            _write(tmp_path / f"T33UWP_{d}_{band}_{res}m.jp2", v, res, driver="JP2OpenJPEG")
    pattern = r"T33UWP_(?P<date>\d{8}T\d{6})_(?P<band>B\d\d)_(?P<res>\d+m)\.jp2"
    path = _manifest(tmp_path, layout="single-band", files="*.jp2", pattern=pattern, scale=SCALE)
    cube = open_stack(path, chunks=32)
    assert [str(t) for t in cube["time"].values.astype("datetime64[s]")] == ["2023-03-01T10:10:21", "2023-03-11T10:10:21"]
    np.testing.assert_allclose(cube.values[1, 0], raw["B04", "20230311T101021"] * SCALE, rtol=1e-6)
    b05 = _warped(tmp_path / "T33UWP_20230311T101021_B05_20m.jp2", cube, "bilinear") * SCALE
    np.testing.assert_allclose(cube.values[1, 1], b05, rtol=1e-6)


def test_per_band_layout_with_mask_band_at_20m(tmp_path: Path) -> None:
    """The older per-band layout: a mask: band may have its own resolution."""
    rng = np.random.default_rng(2)
    red = rng.random((3, N, N), np.float32)
    scl = rng.choice(np.array([4, 9], np.uint8), (3, N // 2, N // 2))
    for name, data, res in (("red.tif", red, 10), ("scl.tif", scl, 20)):
        with rasterio.open(tmp_path / name, "w", driver="GTiff", height=data.shape[1], width=data.shape[2], count=3,
                           dtype=data.dtype.name, crs="EPSG:32633",
                           transform=Affine(res, 0, ORIGIN[0], 0, -res, ORIGIN[1])) as dst:  # fmt: skip
            dst.write(data)
    path = _manifest(tmp_path, layout="per-band", bands={"red": "red.tif", "SCL": "scl.tif"}, dates=DATES,
                     mask={"band": "SCL", "invalid": [9]})  # fmt: skip
    cube = open_stack(path)
    assert cube["band"].values.tolist() == ["red"]
    bad = (scl == 9).repeat(2, 1).repeat(2, 2)
    np.testing.assert_array_equal(cube.values[:, 0], np.where(bad, np.nan, red))


@pytest.mark.parametrize(
    ("keys", "needle"),
    [
        ({"files": "*.tif", "pattern": r"_(?P<date>\d{4}-\d{2}-\d{2})"}, "has no named group 'band'"),
        ({"files": "*.tif", "pattern": r"_(?P<band>B\d\d|SCL)_"}, "has no named group 'date'"),
        ({"files": "*.tif"}, "needs pattern"),
        ({"files": "*.tif", "pattern": SITS_PATTERN, "bands": ["B02", "B99"]}, "band 'B99' matches no file"),
    ],
)
def test_pattern_errors(tmp_path: Path, keys: dict[str, Any], needle: str) -> None:
    _s2_scene(tmp_path)
    path = _manifest(tmp_path, layout="single-band", **keys)
    with pytest.raises(CropseqError, match=needle) as e:
        open_stack(path)
    assert "stack.yaml" in str(e.value.path) and "\n" not in str(e.value)


def test_band_or_mask_missing_on_a_date(tmp_path: Path) -> None:
    _s2_scene(tmp_path)
    (tmp_path / "SENTINEL-2_MSI_20LLQ_B04_2021-07-14.tif").unlink()
    path = _manifest(tmp_path, layout="single-band", files="*.tif", pattern=SITS_PATTERN,
                     mask={"band": "SCL", "invalid": SCL_INVALID})  # fmt: skip
    with pytest.raises(CropseqError, match=r"band B04 has no file for 1 of 3 dates \(first: 2021-07-14\)"):
        open_stack(path)
    _s2_scene(tmp_path)
    (tmp_path / "SENTINEL-2_MSI_20LLQ_SCL_2021-07-24.tif").unlink()
    with pytest.raises(CropseqError, match=r"mask band SCL has no file for 1 of 3 dates \(first: 2021-07-24\)"):
        open_stack(path)


def test_bounds_outside_every_raster(tmp_path: Path) -> None:
    _s2_scene(tmp_path)
    path = _manifest(tmp_path, layout="single-band", files="*.tif", pattern=SITS_PATTERN,
                     grid={"bounds": [600000, 4000000, 600100, 4000100]})  # fmt: skip
    with pytest.raises(CropseqError, match=r"grid.bounds \[600000.0, 4000000.0, 600100.0, 4000100.0\] lies outside every raster"):
        open_stack(path)


def test_legacy_layout_without_grid_still_requires_one_grid(tmp_path: Path) -> None:
    """Without grid:, per-band rasters on another grid are still an error (with a hint);
    with grid: {} they are read onto the first raster's grid."""
    rng = np.random.default_rng(0)
    a, b = rng.random((1, N, N), np.float32), rng.random((1, N // 2, N // 2), np.float32)
    for name, data, res in (("red.tif", a, 10), ("nir.tif", b, 20)):
        _write(tmp_path / name, data[0], res)
    keys = {"layout": "per-band", "bands": {"red": "red.tif", "nir": "nir.tif"}, "dates": DATES[:1]}
    with pytest.raises(CropseqError, match="grid differs from .* set grid: in"):
        open_stack(_manifest(tmp_path, **keys))
    cube = open_stack(_manifest(tmp_path, **keys, grid={}))
    np.testing.assert_allclose(cube.values[0, 1], _warped(tmp_path / "nir.tif", cube, "bilinear"), rtol=1e-6)


def test_bit_mask_accepts_every_bit_index() -> None:
    """Bit 63 is a valid index (1 << 63 overflowed int64 into a traceback)."""
    from cropseq.masking import MaskRule

    rule = MaskRule("bits", bits=(("x", 63), ("cloud", 3)))
    got = rule.invalid(np.array([0, 8, 2**63, 1], np.uint64))
    assert got.tolist() == [False, True, True, False]
