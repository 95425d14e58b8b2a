"""``source: stac`` stacks (:mod:`cropseq.stac_source`): static catalogues read with odc-stac.

Every fixture is a tiny static STAC catalogue of per-band COGs written here (10 m and 20 m
bands, an SCL band); each value test compares the cube with the same pixels read
independently with rasterio's ``WarpedVRT`` onto the cube's grid.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
import yaml
from _data_fixtures import assert_user_error, run_cli
from _http_server import serve
from affine import Affine
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterBand, RasterExtension
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds, transform_geom
from shapely.geometry import box, mapping

from cropseq.io import DIMS, cube_crs, open_stack, window_reader

SCL_INVALID = [0, 1, 3, 8, 9, 10, 11]
DAY = dt.datetime(2023, 6, 1, 10, 0, 31, tzinfo=dt.timezone.utc)


def _cog(path: Path, arr: np.ndarray, transform: Affine, crs: str) -> None:
    with rasterio.open(path, "w", driver="COG", width=arr.shape[1], height=arr.shape[0], count=1, dtype=arr.dtype,
                       crs=crs, transform=transform, nodata=0) as dst:  # fmt: skip
        dst.write(arr, 1)


def _item(root: Path, item_id: str, when: dt.datetime, crs: str, origin: tuple[float, float], size: int,
          seed: int, assets: tuple[str, ...] = ("B04", "B11", "SCL")) -> pystac.Item:  # fmt: skip
    """An item of 10 m B04, 20 m B11 (uint16, scale 1e-4, fill 0) and 20 m SCL (uint8)."""
    rng = np.random.default_rng(seed)
    folder = root / item_id
    folder.mkdir(parents=True)
    extent = box(origin[0], origin[1] - size * 10, origin[0] + size * 10, origin[1])
    geom = transform_geom(crs, "EPSG:4326", mapping(extent))
    item = pystac.Item(item_id, geom, list(transform_bounds(crs, "EPSG:4326", *extent.bounds)), when, {})
    for key in assets:
        res = 10 if key == "B04" else 20
        n = size * 10 // res
        if key == "SCL":
            arr = rng.choice(np.array([4, 5, 8, 9, 3], np.uint8), size=(n, n), p=[0.5, 0.3, 0.1, 0.05, 0.05])
        else:
            arr = rng.integers(100, 5000, (n, n)).astype(np.uint16)
            arr[:2, :3] = 0  # fill value: missing
        tr = Affine(res, 0, origin[0], 0, -res, origin[1])
        _cog(folder / f"{key}.tif", arr, tr, crs)
        asset = pystac.Asset(f"./{key}.tif", media_type=pystac.MediaType.COG, roles=["data"])
        item.add_asset(key, asset)
        proj = ProjectionExtension.ext(asset, add_if_missing=True)
        proj.code, proj.transform, proj.shape = crs, list(tr)[:6], [n, n]
        band = RasterBand.create(nodata=0, data_type="uint8" if key == "SCL" else "uint16",
                                 scale=None if key == "SCL" else 0.0001, offset=None if key == "SCL" else 0.0)  # fmt: skip
        RasterExtension.ext(asset, add_if_missing=True).bands = [band]
    return item


def _catalog(root: Path, items: list[pystac.Item]) -> Path:
    cat = pystac.Catalog("test", "tiny test catalogue")
    for it in items:
        cat.add_item(it)
    cat.normalize_hrefs(str(root))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


def _manifest(path: Path, **keys: Any) -> Path:
    doc = {"source": "stac", "mask": {"band": "SCL", "invalid": SCL_INVALID}, **keys}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _warped(path: Path, cube: Any, resampling: str) -> np.ndarray:
    """The raster read onto the cube's grid with GDAL's warper (NaN where no data)."""
    with rasterio.open(path) as src, WarpedVRT(
        src, crs=cube_crs(cube), transform=cube.rio.transform(), width=cube.sizes["x"], height=cube.sizes["y"],
        resampling=Resampling[resampling], src_nodata=0, nodata=np.nan, dtype="float32",
    ) as vrt:  # fmt: skip
        return vrt.read(1)


def _expected(paths: dict[str, Path], cube: Any, b04: str = "nearest") -> dict[str, np.ndarray]:
    """Per band: DN x 1e-4 onto the cube's grid, NaN where missing or where SCL is invalid
    (B04 read with ``b04``: nearest when its grid is the cube's, as bilinear then is)."""
    scl = _warped(paths["SCL"], cube, "nearest")
    bad = np.isnan(scl) | np.isin(scl, SCL_INVALID)
    out = {}
    for key, method in (("B04", b04), ("B11", "bilinear")):
        v = _warped(paths[key], cube, method).astype(np.float64) * 0.0001
        v[bad] = np.nan
        out[key] = v.astype(np.float32)
    return out


@pytest.fixture(scope="module")
def one_item(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stac1")
    cat = _catalog(root / "catalog", [_item(root / "catalog", "S2_T33_20230601", DAY, "EPSG:32633", (500000.0, 5200000.0), 32, 1)])
    return _manifest(root / "stack.yaml", catalog=str(cat.relative_to(root)), bands=["B04", "B11"])


def test_static_catalogue_10m_20m_bands_and_scl_value_mask(one_item: Path) -> None:
    cube = open_stack(one_item, chunks=16)
    # The cube contract.
    assert cube.dims == DIMS and cube.dtype == np.float32 and cube.chunks is not None
    assert list(cube["band"].values) == ["B04", "B11"]  # the mask band is no cube band
    assert cube_crs(cube).to_epsg() == 32633 and cube.shape == (1, 2, 32, 32)
    assert tuple(cube.rio.transform())[:6] == (10.0, 0.0, 500000.0, 0.0, -10.0, 5200000.0)
    assert cube.chunks[2] == (16, 16) and len(cube.data.__dask_graph__()) == 4  # one read task per chunk
    folder = one_item.parent / "catalog" / "S2_T33_20230601"
    exp = _expected({k: folder / f"{k}.tif" for k in ("B04", "B11", "SCL")}, cube)
    got = cube.values
    # Direct window reads (tiles, inference halos): the cube's values, NaN beyond the grid.
    reader = window_reader(cube.isel(band=[1]))
    assert reader is not None
    win = reader(-2, 20, 8, 14)
    assert np.isnan(win[:, :, :2]).all() and np.isnan(win[:, :, :, 12:]).all()
    np.testing.assert_array_equal(win[:, :, 2:, :12], got[:, 1:2, 0:6, 20:32])
    for c, key in enumerate(("B04", "B11")):
        np.testing.assert_array_equal(np.isnan(got[0, c]), np.isnan(exp[key]), err_msg=key)
        np.testing.assert_allclose(got[0, c], exp[key], rtol=1e-5, atol=2e-6, equal_nan=True, err_msg=key)
    assert np.isnan(got[0, 0, :2, :3]).all()  # the fill value 0 is missing
    assert 0.1 < np.isnan(got[0, 0]).mean() < 0.5  # the SCL clouds and shadows
    from cropseq.stac_source import stac_listing

    listing = stac_listing(cube)
    assert listing["items"][0]["id"] == "S2_T33_20230601" and listing["dates"] == ["2023-06-01T10:00:31"]
    assert listing["bands"]["B11"]["resolution"] == [20.0, 20.0] and listing["bands"]["SCL"]["mask"]


def test_two_utm_zones_mosaicked_onto_one_grid(tmp_path: Path) -> None:
    # 18 E is the border of UTM zones 33 and 34: one item on each side, the same day.
    west = _item(tmp_path / "cat", "west", DAY, "EPSG:32633", (719960.0, 5200000.0), 32, 2)
    x34, y34 = rasterio.warp.transform("EPSG:32633", "EPSG:32634", [720000.0 + 320.0], [5200000.0])
    east = _item(tmp_path / "cat", "east", DAY + dt.timedelta(seconds=20), "EPSG:32634",
                 (round(x34[0] / 20) * 20 - 160, round(y34[0] / 20) * 20), 32, 3)  # fmt: skip
    cat = _catalog(tmp_path / "cat", [west, east])
    m = _manifest(tmp_path / "stack.yaml", catalog=str(cat), bands=["B04", "B11"],
                  grid={"crs": "EPSG:32633", "resolution": 10})  # fmt: skip
    cube = open_stack(m, chunks=32)
    assert cube.sizes["time"] == 1 and cube_crs(cube).to_epsg() == 32633  # one solar day, one grid
    got = cube.values[0]
    exp = {k: _expected({b: tmp_path / "cat" / k / f"{b}.tif" for b in ("B04", "B11", "SCL")}, cube, "bilinear")
           for k in ("west", "east")}  # fmt: skip
    for c, band in enumerate(("B04", "B11")):
        w, e = exp["west"][band], exp["east"][band]
        # First valid pixel wins, items in time order: the west item, else the east one.
        in_west = ~np.isnan(_warped(tmp_path / "cat" / "west" / "SCL.tif", cube, "nearest"))
        mosaic = np.where(in_west, w, e)
        sure = np.isfinite(mosaic) & np.isfinite(got[c])
        assert sure.sum() > 500
        np.testing.assert_allclose(got[c][sure], mosaic[sure], rtol=2e-3, atol=5e-4, err_msg=band)
        # Pixels from both zones made it into the mosaic.
        assert np.isfinite(got[c][in_west]).any() and np.isfinite(got[c][~in_west & np.isfinite(e)]).any()


def test_static_catalogue_served_over_http(one_item: Path, tmp_path: Path) -> None:
    local = open_stack(one_item, chunks=16).values
    with serve(one_item.parent / "catalog") as url:
        m = _manifest(tmp_path / "stack.yaml", catalog=f"{url}/catalog.json", bands=["B04", "B11"])
        cube = open_stack(m, chunks=16)
        got = cube.values
        assert any(r.endswith("/S2_T33_20230601/B11.tif") for r in url.requests)
    np.testing.assert_array_equal(got, local)  # the same pixels as the local read, itself checked with WarpedVRT


def test_bands_by_alias_query_and_inspect_lists_before_reading(one_item: Path, tmp_path: Path) -> None:
    m = _manifest(tmp_path / "stack.yaml", catalog=str(one_item.parent / "catalog" / "catalog.json"),
                  bands={"red": "B04", "swir16": "B11"}, query="eo:cloud_cover < 60")  # fmt: skip
    res = run_cli(["inspect", m])
    assert res.rc == 2 and "no STAC item matches query" in res.err  # the items carry no eo:cloud_cover
    m = _manifest(tmp_path / "stack.yaml", catalog=str(one_item.parent / "catalog" / "catalog.json"),
                  bands={"red": "B04", "swir16": "B11"}, datetime="2023-06-01/2023-06-01")  # fmt: skip
    res = run_cli(["inspect", m])
    assert res.rc == 0, res
    assert res.out.index("S2_T33_20230601") < res.out.index("Missing")  # items listed before pixel statistics
    assert "swir16" in res.out and "B11" in res.out and "20 x 20" in res.out
    assert list(open_stack(m)["band"].values) == ["red", "swir16"]


@pytest.mark.e2e
def test_tile_samples_predict_inspect_on_a_stac_stack(one_item: Path, tmp_path: Path) -> None:
    import geopandas as gpd

    from cropseq.samples import read_samples

    assert run_cli(["tile", one_item, "--out", tmp_path / "tiles", "--size", "16", "--halo", "1"]).rc == 0
    tiles = sorted((tmp_path / "tiles").glob("*.zarr"))
    assert len(tiles) == 4
    np.testing.assert_array_equal(open_stack(tiles[0]).values[..., 1:-1, 1:-1][..., :15, :15],
                                  open_stack(one_item).values[..., :15, :15])  # fmt: skip
    polys = [box(500000 + 10 * c, 5200000 - 10 * (r + 8), 500000 + 10 * (c + 8), 5200000 - 10 * r) for r, c in
             ((4, 4), (4, 20), (20, 4), (20, 20))]  # fmt: skip
    gpd.GeoDataFrame({"label": ["maize", "wheat"] * 2}, geometry=polys, crs="EPSG:32633").to_file(tmp_path / "l.gpkg")
    res = run_cli(["samples", "--stack", one_item, "--labels", tmp_path / "l.gpkg", "--out", tmp_path / "s.csv"])
    assert res.rc == 0, res
    df = read_samples(tmp_path / "s.csv")
    assert df["sample_id"].nunique() > 100 and {"B04", "B11"} <= set(df.columns)
    res = run_cli(["train", "--samples", tmp_path / "s.csv", "--out", tmp_path / "rf.skops", "--arch", "rf"])
    assert res.rc == 0, res
    res = run_cli(["predict", "--model", tmp_path / "rf.skops", "--stack", one_item, "--out", tmp_path / "map.tif",
                   "--workers", "0"])  # fmt: skip
    assert res.rc == 0, res
    with rasterio.open(tmp_path / "map.tif") as src:
        assert src.shape == (32, 32) and src.crs == CRS.from_epsg(32633)


# ----------------------------------------------------------------------------- one-line errors


def test_bands_read_in_their_stored_type_give_the_float32_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """odc-stac reads a band in its stored type (half the bytes) only where no pixel is resampled:
    nearest (SCL), or every item on the grid's lattice (B04 on a 10 m grid); values are those of float32 reads."""
    import cropseq.stac_source as stac
    from cropseq.manifest import load_manifest

    cases = {  # second item's origin -> the type each band is read as
        "lattice": ((500040.0, 5199980.0), {"B04": "uint16", "B11": "float32", "SCL": "uint8"}),  # B11: 20 m onto 10 m
        "half-pixel": ((500005.0, 5200000.0), {"B04": "float32", "B11": "float32", "SCL": "uint8"}),  # 5 m off the lattice
    }
    for name, (origin, read_as) in cases.items():
        items = [_item(tmp_path / name, f"{name}{k}", DAY + dt.timedelta(days=5 * k), "EPSG:32633", o, 32, 5 + k)
                 for k, o in enumerate([(500000.0, 5200000.0), origin])]  # fmt: skip
        m = _manifest(tmp_path / f"{name}.yaml", catalog=str(_catalog(tmp_path / name, items)), bands=["B04", "B11"])
        scene = stac.describe(load_manifest(m))
        assert scene.mask is not None
        assert {p.name: p.read_as for p in (*scene.bands, scene.mask)} == read_as, name
        stored = open_stack(m, chunks=16).values
        monkeypatch.setattr(stac, "_read_as", lambda *a, **k: "float32")
        as_float = open_stack(m, chunks=16).values
        monkeypatch.undo()
        assert stored.tobytes() == as_float.tobytes(), name  # bit-identical, NaN included
        assert 0.1 < np.isnan(stored).mean() < 0.9


def test_unreachable_catalogue_url(tmp_path: Path) -> None:
    m = _manifest(tmp_path / "stack.yaml", catalog="http://127.0.0.1:9/catalog.json", bands=["B04"])
    assert_user_error(run_cli(["inspect", m]), "http://127.0.0.1:9/catalog.json", "cannot reach the STAC catalogue")


def test_no_item_in_bbox_or_datetime(one_item: Path, tmp_path: Path) -> None:
    cat = str(one_item.parent / "catalog" / "catalog.json")
    m = _manifest(tmp_path / "stack.yaml", catalog=cat, bands=["B04"], bbox=[10.0, 40.0, 10.5, 40.5])
    msg = assert_user_error(run_cli(["inspect", m]), "no STAC item matches bbox [10.0, 40.0, 10.5, 40.5]")
    assert "its 1 items span 2023-06-01 .. 2023-06-01" in msg
    m = _manifest(tmp_path / "stack.yaml", catalog=cat, bands=["B04"], datetime="2024-01-01/..")
    assert_user_error(run_cli(["inspect", m]), "no STAC item matches datetime 2024-01-01T00:00:00/..", "catalog.json")


def test_asset_key_no_item_has(one_item: Path, tmp_path: Path) -> None:
    m = _manifest(tmp_path / "stack.yaml", catalog=str(one_item.parent / "catalog" / "catalog.json"), bands=["B04", "B8A"])
    assert_user_error(run_cli(["inspect", m]), "stack.yaml", "asset 'B8A' is in no item (the items' asset keys: B04, B11, SCL)")


def test_mask_band_missing_on_some_dates(tmp_path: Path) -> None:
    items = [
        _item(tmp_path / "cat", f"d{k}", DAY + dt.timedelta(days=5 * k), "EPSG:32633", (500000.0, 5200000.0), 16, k,
              assets=("B04", "B11") if k else ("B04", "B11", "SCL"))
        for k in range(3)
    ]  # fmt: skip
    m = _manifest(tmp_path / "stack.yaml", catalog=str(_catalog(tmp_path / "cat", items)), bands=["B04", "B11"])
    assert_user_error(run_cli(["inspect", m]), "stack.yaml",
                      "mask band SCL (asset 'SCL') is missing on 2 of 3 dates: 2023-06-06T10:00:31, 2023-06-11T10:00:31")  # fmt: skip


@pytest.mark.e2e
@pytest.mark.parametrize("method", ["median", "first"])
def test_composite_on_a_stac_stack_is_the_nanmedian_per_bin(tmp_path: Path, method: str) -> None:
    # Six dates 3 days apart -> 10-day bins from 2023-06-01: dates 0-3, 4-5 (then empty bins are NaN).
    days = [DAY + dt.timedelta(days=3 * k) for k in range(6)]
    items = [_item(tmp_path / "catalog", f"S2_{k}", d, "EPSG:32633", (500000.0, 5200000.0), 16, 10 + k) for k, d in enumerate(days)]
    cat = _catalog(tmp_path / "catalog", items)
    plain = open_stack(_manifest(tmp_path / "plain.yaml", catalog=str(cat), bands=["B04", "B11"]), chunks=8)
    mpath = _manifest(tmp_path / "stack.yaml", catalog=str(cat), bands=["B04", "B11"],
                      composite={"period": "10D", "method": method})  # fmt: skip
    cube = open_stack(mpath, chunks=8)
    assert cube.dims == DIMS and cube.dtype == np.float32 and cube.chunks[2] == (8, 8)
    assert [str(t)[:10] for t in cube["time"].values] == ["2023-06-01", "2023-06-11"]
    assert cube.attrs["composite"]["bins"] == 2 and cube.attrs["composite"]["observations"] == 6
    # Independent: numpy per bin over the plain cube (itself checked against WarpedVRT above).
    raw = plain.values
    bins = [raw[:4], raw[4:]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy: all-NaN slices
        exp = np.stack([np.nanmedian(b, axis=0) for b in bins]) if method == "median" else np.stack(
            [np.take_along_axis(b, np.argmax(~np.isnan(b), axis=0)[None], axis=0)[0] for b in bins])  # fmt: skip
    np.testing.assert_allclose(cube.values, exp, rtol=0, atol=0, equal_nan=True)
    assert np.isnan(exp).any() and not np.isnan(exp).all()  # the SCL clouds leave some pixels without any valid date
    # Window reads (inference halos) and selections composite the same way.
    reader = window_reader(cube.isel(time=[1], band=[0]))
    assert reader is not None
    np.testing.assert_array_equal(reader(0, 0, 16, 16), exp[1:, :1])


def test_composite_key_is_checked_for_stac_stacks(tmp_path: Path) -> None:
    cat = _catalog(tmp_path / "catalog", [_item(tmp_path / "catalog", "S2_0", DAY, "EPSG:32633", (500000.0, 5200000.0), 16, 1)])
    mpath = _manifest(tmp_path / "stack.yaml", catalog=str(cat), bands=["B04", "B11"], composite={"period": "1M"})
    assert_user_error(run_cli(["inspect", str(mpath)]), str(mpath), "composite.period must be a whole number of days")
