"""Tests of the synthetic demo scene (``cropseq.simulate`` and ``cropseq simulate``).

Small scenes (64 px) keep the module fast; one shared scene serves the read-only checks.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml

from cropseq.classes import ClassTable
from cropseq.cli import main
from cropseq.errors import CropseqError
from cropseq.simulate import BANDS, CLASS_TABLE, TIMING_PAIRS, SceneInfo, simulate_scene

SIZE = 64
N_DATES = 24
SEED = 7
STATIC = ("forest", "water", "urban")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> SceneInfo:
    return simulate_scene(tmp_path_factory.mktemp("sim") / "scene", size=SIZE, n_dates=N_DATES, seed=SEED, layout="one-grid")


@pytest.fixture(scope="module")
def cube(scene: SceneInfo) -> dict[str, np.ndarray]:
    """The scene read back: DN (T, 6, H, W), masks (T, H, W), truth (H, W)."""
    stamps = [d.replace("-", "") for d in scene.dates]
    dn = np.stack([rasterio.open(scene.outdir / "images" / f"S2_{s}.tif").read() for s in stamps])
    masks = np.stack([rasterio.open(scene.outdir / "images" / f"MASK_{s}.tif").read(1) for s in stamps])
    with rasterio.open(scene.truth) as src:
        truth = src.read(1)
    return {"dn": dn, "mask": masks, "truth": truth}


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------- files and formats


def test_files_exist_with_expected_grid_and_types(scene: SceneInfo) -> None:
    root = scene.outdir
    for name in ("stack.yaml", "truth.tif", "test_truth.tif", "classes.yaml", "labels.gpkg", "test_fields.gpkg",
                 "scene.json"):
        assert (root / name).is_file(), name
    images = sorted((root / "images").glob("S2_*.tif"))
    masks = sorted((root / "images").glob("MASK_*.tif"))
    assert len(images) == len(masks) == N_DATES
    assert not [p for p in (root / "images").iterdir() if p.name.startswith(".")]  # no temp files
    stamps = [re.fullmatch(r"S2_(\d{8})\.tif", p.name).group(1) for p in images]
    assert [f"{s[:4]}-{s[4:6]}-{s[6:]}" for s in stamps] == list(scene.dates)
    days = [date.fromisoformat(d) for d in scene.dates]
    assert days == sorted(days) and days[0] >= date(2023, 3, 1) and days[-1] <= date(2023, 10, 31)
    assert all((b - a).days % 5 == 0 for a, b in zip(days, days[1:]))  # 5-day revisit grid

    for path in images:
        with rasterio.open(path) as src:
            assert (src.count, src.height, src.width) == (6, SIZE, SIZE)
            assert src.dtypes == ("uint16",) * 6 and src.nodata == 0
            assert src.crs.to_epsg() == 32633 and src.res == (10.0, 10.0)
            assert src.descriptions == BANDS
            assert src.block_shapes == [(SIZE, SIZE)] * 6  # tiled: one 64 px tile (256 px from 256 up)
            assert src.compression.name.lower() == "deflate"
            assert "TIFFTAG_DATETIME" not in src.tags()  # no timestamps: reproducible bytes
    for path in masks:
        with rasterio.open(path) as src:
            assert (src.count, src.dtypes[0], src.shape) == (1, "uint8", (SIZE, SIZE))
            assert set(np.unique(src.read(1))) <= {0, 1, 2}
    with rasterio.open(scene.truth) as src:
        assert (src.count, src.dtypes[0], src.nodata, src.shape) == (1, "uint8", 0, (SIZE, SIZE))
        assert src.crs.to_epsg() == 32633
        cmap = src.colormap(1)
        assert cmap[CLASS_TABLE.codes[0]][:3] == CLASS_TABLE.rgba(CLASS_TABLE.codes[0])[:3]
        assert json.loads(src.tags()["CROPSEQ_CLASSES"]) == CLASS_TABLE.to_records()


@pytest.mark.e2e
def test_stac_layout_is_an_l2a_like_catalogue_of_the_same_scene(tmp_path: Path) -> None:
    """The default layout: per-band COGs (10 m and 20 m, SCL) in a static STAC catalogue,
    the same surface and clouds as the one-grid layout, read through source: stac."""
    import pystac
    from rio_cogeo.cogeo import cog_validate

    from cropseq.io import open_stack
    from cropseq.simulate import SCL_INVALID, STAC_BANDS

    stac = simulate_scene(tmp_path / "stac", size=48, n_dates=8, seed=3)
    grid = simulate_scene(tmp_path / "grid", size=48, n_dates=8, seed=3, layout="one-grid")
    assert yaml.safe_load(stac.stack.read_text())["source"] == "stac" and stac.bands == STAC_BANDS
    assert not (stac.outdir / "images").exists() and not list(stac.outdir.glob(".scratch-*"))
    items = sorted(pystac.Catalog.from_file(str(stac.outdir / "catalog" / "catalog.json")).get_items(recursive=True),
                   key=lambda it: it.datetime)  # fmt: skip
    assert [it.datetime.date().isoformat() for it in items] == list(stac.dates)
    for k, item in enumerate(items[:3]):
        stamp = stac.dates[k].replace("-", "")
        assert sorted(item.assets) == ["B02", "B03", "B04", "B05", "B08", "B11", "B12", "SCL"]
        rb = item.assets["B04"].extra_fields["raster:bands"][0]
        assert (rb["scale"], rb["nodata"], rb["data_type"]) == (0.0001, 0, "uint16")
        read = {b: rasterio.open(item.assets[b].get_absolute_href()) for b in ("B04", "B11", "SCL")}
        assert [r.res for r in read.values()] == [(10.0, 10.0), (20.0, 20.0), (20.0, 20.0)]
        assert cog_validate(item.assets["B11"].get_absolute_href())[0]
        with rasterio.open(grid.outdir / "images" / f"S2_{stamp}.tif") as src:
            dn = src.read()
        with rasterio.open(grid.outdir / "images" / f"MASK_{stamp}.tif") as src:
            mask = src.read(1)
        np.testing.assert_array_equal(read["B04"].read(1), dn[2])  # 10 m: the same pixels
        # 20 m: each pixel the mean of its valid 10 m pixels of the same surface.
        q = dn[4].astype(float).reshape(24, 2, 24, 2)
        n = (q > 0).sum(axis=(1, 3))
        mean = np.where(n > 0, np.rint(q.sum(axis=(1, 3)) / np.maximum(n, 1)), 0)
        np.testing.assert_array_equal(read["B11"].read(1), mean)
        scl = read["SCL"].read(1)
        assert set(np.unique(scl)) <= {0, 3, 4, 5, 6, 8, 9}
        cloudy = (mask == 1).reshape(24, 2, 24, 2).any(axis=(1, 3))  # L2A-like: any cloudy 10 m pixel
        assert np.isin(scl[cloudy], [8, 9]).all() and not np.isin(scl[~cloudy], [8, 9]).any()
        for r in read.values():
            r.close()
    cube = open_stack(stac.stack)
    assert list(cube["band"].values) == list(STAC_BANDS) and cube.shape == (8, 7, 48, 48)
    ref = open_stack(grid.stack).sel(band="B04").values
    got = cube.sel(band="B04").values
    both = np.isfinite(ref) & np.isfinite(got)
    np.testing.assert_allclose(got[both], ref[both], rtol=1e-6)  # same values where both are clear
    assert np.isnan(got[np.isnan(ref)]).all()  # the 20 m SCL masks at least the 10 m mask's pixels
    assert list(SCL_INVALID) == yaml.safe_load(stac.stack.read_text())["mask"]["invalid"]


def test_stack_yaml_is_the_documented_per_date_manifest(scene: SceneInfo) -> None:
    m = yaml.safe_load(scene.stack.read_text())
    assert m == {
        "layout": "per-date",
        "bands": list(BANDS),
        "files": "images/S2_*.tif",
        "date_pattern": r"S2_(\d{8})",
        "masks": "images/MASK_*.tif",
        "nodata": 0,
        "scale": 0.0001,
    }
    assert re.search(m["date_pattern"], "S2_20230301.tif").group(1) == "20230301"


def test_classes_yaml_and_scene_json(scene: SceneInfo) -> None:
    table = ClassTable.from_yaml(scene.classes_path)
    assert table == CLASS_TABLE == scene.classes
    crops = [n for n in table.names if n not in STATIC]
    assert len(crops) >= 6 and set(STATIC) <= set(table.names)
    meta = json.loads((scene.outdir / "scene.json").read_text())
    assert meta["dates"] == list(scene.dates) and meta["size"] == SIZE
    assert meta["timing_pairs"] == [list(p) for p in TIMING_PAIRS]
    assert str(scene.outdir) not in json.dumps(meta)  # relative paths only (reproducible)


# ------------------------------------------------------------------------- reproducibility


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = simulate_scene(tmp_path / "a", size=48, n_dates=8, seed=3, layout="one-grid")
    b = simulate_scene(tmp_path / "b", size=48, n_dates=8, seed=3, layout="one-grid")
    c = simulate_scene(tmp_path / "c", size=48, n_dates=8, seed=4, layout="one-grid")
    fa, fb, fc = _all_files(a.outdir), _all_files(b.outdir), _all_files(c.outdir)
    # Every file, the GeoPackages included (their timestamps are pinned), is byte-identical.
    assert fa.keys() == fb.keys()
    assert [k for k in fa if fa[k] != fb[k]] == []
    assert fa["truth.tif"] != fc["truth.tif"]
    assert fa["labels.gpkg"] != fc["labels.gpkg"]
    img = sorted(k for k in fa if k.startswith("images/S2_"))[0]
    assert fa[img] != fc[sorted(k for k in fc if k.startswith("images/S2_"))[0]]


# ------------------------------------------------------------------------- content


def test_all_classes_present_in_truth(scene: SceneInfo, cube: dict[str, np.ndarray]) -> None:
    present = {CLASS_TABLE.names[CLASS_TABLE.codes.index(c)] for c in np.unique(cube["truth"]) if c}
    assert present == set(CLASS_TABLE.names)
    assert len(present - set(STATIC)) >= 6


def test_nodata_border_is_zero_everywhere_and_only_there(scene: SceneInfo, cube: dict[str, np.ndarray]) -> None:
    border = cube["truth"] == 0
    assert 0.02 < border.mean() < 0.3
    assert border[0, -1] and not border[-1, 0]  # the top-right corner is outside the swath
    # Every row's nodata is a run at the right end (a straight swath edge).
    for row in border:
        n = row.sum()
        assert row[SIZE - n :].all()
    assert (cube["dn"][:, :, border] == 0).all()
    assert (cube["dn"][:, :, ~border] > 0).all()  # valid pixels never collide with nodata
    assert (cube["mask"][:, border] == 0).all()
    assert scene.nodata_fraction == pytest.approx(border.mean())


def test_clouds_blobs_bright_and_masked(scene: SceneInfo, cube: dict[str, np.ndarray]) -> None:
    valid = cube["truth"] > 0
    cover = np.array([(m[valid] > 0).mean() for m in cube["mask"]])
    assert cover == pytest.approx(np.array(scene.cloud_cover), abs=1e-9)
    assert (cover == 0).sum() >= N_DATES // 2  # most dates clear
    assert ((cover > 0.1) & (cover < 0.7)).sum() >= 2  # a few partly cloudy dates
    assert cover.max() > 0.85  # one nearly overcast date
    assert cover[0] == 0 and cover[-1] == 0
    cloud = cube["mask"] == 1
    blue = cube["dn"][:, 0].astype(float)
    assert blue[cloud].mean() > 3000  # clouds are bright ...
    assert blue[(cube["mask"] == 0) & valid[None]].mean() < 1500  # ... the land is not
    # Clouds are coherent blobs: a cloudy pixel's right neighbour is mostly cloudy too.
    pairs = cloud[:, :, :-1]
    assert cloud[:, :, 1:][pairs].mean() > 0.8


def _class_ndvi(cube: dict[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
    code = CLASS_TABLE.codes[CLASS_TABLE.names.index(name)]
    sel = cube["truth"] == code
    dn = cube["dn"].astype(float)
    red, nir = dn[:, 2], dn[:, 3]
    clear = (cube["mask"] == 0) & sel[None]
    with np.errstate(invalid="ignore", divide="ignore"):  # nodata pixels: 0 / 0
        ndvi = np.where(clear, (nir - red) / (nir + red), np.nan)
    n = clear.sum(axis=(1, 2))
    keep = n > 0.5 * sel.sum()  # dates where most of the class is visible
    return np.nanmean(ndvi[keep], axis=(1, 2)), np.where(keep)[0]


def test_timing_pair_same_peak_different_dates(scene: SceneInfo, cube: dict[str, np.ndarray]) -> None:
    doy = np.array([date.fromisoformat(d).timetuple().tm_yday for d in scene.dates], dtype=float)
    (early, late), = TIMING_PAIRS
    stats = {}
    for name in (early, late):
        ndvi, idx = _class_ndvi(cube, name)
        lo, hi = ndvi.min(), ndvi.max()
        upper = np.clip(ndvi - (lo + 0.5 * (hi - lo)), 0, None)  # the upper half of the season
        stats[name] = {"peak": hi, "centre": (doy[idx] * upper).sum() / upper.sum(),
                       "greenup": doy[idx][np.argmax(ndvi > lo + 0.5 * (hi - lo))]}
    assert abs(stats[early]["peak"] - stats[late]["peak"]) < 0.08  # same canopy at peak
    assert stats[early]["peak"] > 0.65
    assert stats[late]["centre"] - stats[early]["centre"] > 15  # but a season weeks later
    assert stats[late]["greenup"] - stats[early]["greenup"] > 15


def test_summer_crop_differs_from_winter_crop(scene: SceneInfo, cube: dict[str, np.ndarray]) -> None:
    doy = np.array([date.fromisoformat(d).timetuple().tm_yday for d in scene.dates], dtype=float)
    peaks = {}
    for name in ("winter_wheat", "maize", "forest"):
        ndvi, idx = _class_ndvi(cube, name)
        peaks[name] = doy[idx][np.argmax(ndvi)]
    assert peaks["maize"] > peaks["winter_wheat"] + 40  # maize peaks in summer, wheat in May


# ------------------------------------------------------------------------- labels


def test_labels_inside_scene_and_agree_with_truth(scene: SceneInfo, cube: dict[str, np.ndarray]) -> None:
    import geopandas as gpd
    import pyogrio
    from rasterio import features

    assert pyogrio.list_layers(scene.labels)[:, 0].tolist() == ["fields"]
    labels = gpd.read_file(scene.labels, layer="fields")
    held = gpd.read_file(scene.test_fields, layer="fields")
    assert {"label", "field_id"} <= set(labels.columns)
    assert labels.crs.to_epsg() == 32633 and len(labels) == scene.n_labelled and len(held) == scene.n_test
    assert labels["field_id"].is_unique and not set(labels["field_id"]) & set(held["field_id"])
    assert set(labels["label"]) == set(CLASS_TABLE.names) == set(held["label"])  # each class both sides
    assert 0.3 < scene.n_labelled / (scene.n_labelled + scene.n_test) < 0.7

    with rasterio.open(scene.truth) as src:
        left, bottom, right, top = src.bounds
        transform = src.transform
    with rasterio.open(scene.test_truth) as src:
        assert (src.dtypes[0], src.nodata, src.transform) == ("uint8", 0, transform)
        test_truth = src.read(1)
    held_pixels = test_truth > 0
    assert 0.2 < held_pixels.mean() < 0.7
    assert (test_truth[held_pixels] == cube["truth"][held_pixels]).all()
    for gdf, held_out in ((labels, False), (held, True)):
        assert gdf.geometry.is_valid.all() and (gdf.geometry.area > 0).all()
        minx, miny, maxx, maxy = gdf.total_bounds
        assert left - 1e-6 <= minx and maxx <= right + 1e-6 and bottom - 1e-6 <= miny and maxy <= top + 1e-6
        codes = {n: c for n, c in zip(CLASS_TABLE.names, CLASS_TABLE.codes)}
        wrong = set(scene.mislabelled)
        for geom, name, fid in zip(gdf.geometry, gdf["label"], gdf["field_id"]):
            under = features.geometry_mask([geom], (SIZE, SIZE), transform, invert=True)
            if under.any():  # a sliver may hold no pixel centre
                # The simulated label noise (labels.gpkg only): exactly the fields listed.
                labelled_right = (cube["truth"][under] == codes[name]).all()
                assert labelled_right != (fid in wrong), name
                assert len(np.unique(cube["truth"][under])) == 1
                assert (held_pixels[under] == held_out).all()  # test_truth = held-out fields


# ------------------------------------------------------------------------- reading it back


def test_scene_opens_as_cube_with_clouds_as_nan(scene: SceneInfo, cube: dict[str, np.ndarray]) -> None:
    try:
        from cropseq.io import open_stack
    except ImportError:  # pragma: no cover - the reader is developed in parallel
        pytest.skip("cropseq.io.open_stack not available")
    arr = open_stack(scene.stack)
    assert arr.dims == ("time", "band", "y", "x")
    assert arr.shape == (N_DATES, 6, SIZE, SIZE)
    assert [str(b) for b in arr["band"].values] == list(BANDS)
    assert [str(t)[:10] for t in arr["time"].values] == list(scene.dates)
    values = arr.values
    invalid = (cube["mask"] > 0)[:, None] | (cube["truth"] == 0)[None, None]
    invalid = np.broadcast_to(invalid, values.shape)
    assert np.isnan(values[invalid]).all()
    assert np.isfinite(values[~invalid]).all()
    np.testing.assert_allclose(values[~invalid], cube["dn"][~invalid] * 1e-4, rtol=1e-6)


# ------------------------------------------------------------------------- robustness


def test_rerun_with_fewer_dates_removes_stale_images(tmp_path: Path) -> None:
    simulate_scene(tmp_path / "s", size=40, n_dates=12, seed=1, layout="one-grid")
    info = simulate_scene(tmp_path / "s", size=40, n_dates=8, seed=1, layout="one-grid")
    assert len(list((tmp_path / "s" / "images").glob("S2_*.tif"))) == 8
    assert len(list((tmp_path / "s" / "images").glob("MASK_*.tif"))) == 8
    assert len(info.dates) == 8


def test_failed_run_leaves_no_partial_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cropseq.simulate as sim

    calls = {"n": 0}
    original = sim._Renderer.render

    def flaky(self: object, blk: object, k: int) -> object:
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("killed")
        return original(self, blk, k)

    monkeypatch.setattr(sim._Renderer, "render", flaky)
    with pytest.raises(RuntimeError, match="killed"):
        simulate_scene(tmp_path / "s", size=40, n_dates=8, seed=1)
    left = [p.name for p in (tmp_path / "s").rglob("*") if p.is_file()]
    assert left == []  # no temp files, no images, no stack.yaml


def test_many_row_blocks_are_seamless(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cropseq.simulate as sim

    monkeypatch.setattr(sim, "BLOCK_ROWS", 16)  # 100 px -> 7 blocks, the last one partial
    info = simulate_scene(tmp_path / "s", size=100, n_dates=8, seed=2, layout="one-grid")
    with rasterio.open(info.truth) as src:
        truth = src.read(1)
    with rasterio.open(info.outdir / "images" / f"S2_{info.dates[0].replace('-', '')}.tif") as src:
        first = src.read()
        assert src.block_shapes[0] == (112, 112)  # one tile, a multiple of 16
    border = truth == 0
    assert all(row[100 - row.sum() :].all() for row in border)  # only the swath edge is 0
    assert (first[:, ~border] > 0).all() and (first[:, border] == 0).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [({"size": 0}, "size"), ({"size": 16}, "size"), ({"n_dates": 3}, "dates"), ({"n_dates": 50}, "dates"),
     ({"label_fraction": 0.0}, "label fraction"), ({"label_fraction": 1.5}, "label fraction"),
     ({"seed": -1}, "seed"), ({"field_size": 2}, "field size")],
)
def test_bad_arguments_raise_cropseq_error(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(CropseqError, match=match):
        simulate_scene(tmp_path / "s", **kwargs)
    assert not (tmp_path / "s").exists()  # validated before anything is written


def test_output_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(CropseqError, match="not a folder"):
        simulate_scene(tmp_path / "f", size=32, n_dates=8)


# ------------------------------------------------------------------------- CLI


def test_cli_simulate_writes_scene_and_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["simulate", str(tmp_path / "out"), "--size", "48", "--dates", "8", "--seed", "5",
               "--label-fraction", "0.4"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert len(out.strip().splitlines()) == 1 and "48x48" in out and "8 dates" in out
    assert (tmp_path / "out" / "stack.yaml").is_file()


@pytest.mark.parametrize(
    "args, match",
    [(["--size", "0"], "--size"), (["--dates", "3"], "--dates"), (["--label-fraction", "0"], "label fraction"),
     (["--seed", "x"], "--seed")],
)
def test_cli_bad_option_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              args: list[str], match: str) -> None:
    rc = main(["simulate", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and match in err and "Traceback" not in err


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--help"]) == 0
    out = capsys.readouterr().out
    assert "OUTDIR" in out and "--size" in out and "--label-fraction" in out


@pytest.mark.slow
def test_cli_default_scene(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(tmp_path / "demo")]) == 0
    with rasterio.open(tmp_path / "demo" / "truth.tif") as src:
        assert src.shape == (512, 512) and src.block_shapes[0] == (256, 256)
    assert len(list((tmp_path / "demo" / "catalog").rglob("S2*_MSIL2A_*.json"))) == 24  # the STAC layout by default


# ------------------------------------------------------------------------- as hard as real data


def _field_raster(scene: SceneInfo) -> np.ndarray:
    """``field_id`` of every pixel of the labelled and held-out parcels (0 elsewhere)."""
    import geopandas as gpd
    from rasterio import features

    fields = pd.concat([gpd.read_file(scene.labels), gpd.read_file(scene.test_fields)])
    with rasterio.open(scene.truth) as src:
        transform = src.transform
    return features.rasterize(zip(fields.geometry, fields["field_id"]), out_shape=(SIZE, SIZE),
                              transform=transform, fill=0, dtype="int32")


def test_sowing_dates_spread_within_and_overlap_between_classes() -> None:
    from cropseq.simulate import _CLASSES, _build_landscape

    land = _build_landscape(SEED, 512, 32, 0.5)
    up, peak = land.field_params["up"], land.field_params["peak"]
    names = [c.name for c in _CLASSES]
    green_up = {n: up[land.cls_index == names.index(n)] for n in ("maize", "soybean", "sunflower", "spring_barley")}
    for n, days in green_up.items():
        assert np.ptp(days) > 25, n  # fields of one crop green up weeks apart
    for a, b in (("maize", "soybean"), ("spring_barley", "sunflower")):
        overlap = min(green_up[a].max(), green_up[b].max()) - max(green_up[a].min(), green_up[b].min())
        assert overlap > 15, (a, b)  # the sowing windows of two crops overlap by weeks
    maize = peak[land.cls_index == names.index("maize")]
    assert np.ptp(maize) > 0.15  # some stands never close their canopy


def test_cloud_gaps_differ_field_by_field(scene: SceneInfo, cube: dict[str, np.ndarray]) -> None:
    fid = _field_raster(scene)
    ids = [i for i in np.unique(fid) if i and (fid == i).sum() >= 20]
    # Per field, the dates on which most of it is masked.
    gaps = np.array([[(m[fid == i] > 0).mean() > 0.5 for m in cube["mask"]] for i in ids])
    cover = np.array(scene.cloud_cover)
    light = (cover > 0) & (cover < 0.3)
    assert light.sum() >= 4  # several dates with scattered small clouds ...
    hit = gaps[:, light].mean(axis=0)
    assert (hit > 0).sum() >= 3 and hit.max() < 0.5  # ... each masking a few fields, not all
    patterns = {tuple(g) for g in gaps}
    assert len(patterns) >= 0.4 * len(ids)  # fields miss different dates


def test_edge_pixels_mix_both_fields(scene: SceneInfo, cube: dict[str, np.ndarray]) -> None:
    fid = _field_raster(scene)
    red, nir = cube["dn"][:, 2].astype(float), cube["dn"][:, 3].astype(float)
    pad = np.pad(fid, 1)
    neighbours = [pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]]
    edge = (fid > 0) & np.any([(n != fid) for n in neighbours], axis=0)
    interior = (fid > 0) & ~edge
    other = np.zeros_like(fid)
    for n in neighbours[::-1]:  # the first neighbour in another field (above, below, left, right)
        other = np.where((n != fid) & (n > 0), n, other)
    slopes = []
    for k in np.flatnonzero(np.array(scene.cloud_cover) == 0):
        with np.errstate(invalid="ignore", divide="ignore"):
            ndvi = (nir[k] - red[k]) / (nir[k] + red[k])
        means = {i: ndvi[interior & (fid == i)].mean() for i in np.unique(fid[interior]) if i}
        sel = edge & (other > 0) & np.isin(fid, list(means)) & np.isin(other, list(means))
        own = np.array([means[i] for i in fid[sel]])
        d = np.array([means[i] for i in other[sel]]) - own
        r = ndvi[sel] - own
        big = np.abs(d) > 0.2
        if big.sum() >= 30:
            slopes.append((d[big] * r[big]).sum() / (d[big] ** 2).sum())
    # An edge pixel is pulled toward its neighbour by the neighbour's share (15-45 %).
    assert len(slopes) >= 3 and 0.15 < np.median(slopes) < 0.5


@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_label_noise_share_as_configured(tmp_path: Path, noise: float) -> None:
    import geopandas as gpd

    info = simulate_scene(tmp_path / "s", size=SIZE, n_dates=8, seed=SEED, label_noise=noise, layout="one-grid")
    labels = gpd.read_file(info.labels)
    fid = _field_raster(info)
    with rasterio.open(info.truth) as src:
        truth = src.read(1)
    names = dict(zip(CLASS_TABLE.codes, CLASS_TABLE.names))
    wrong = set()
    for field_id, label in zip(labels["field_id"], labels["label"]):
        under = truth[fid == field_id]
        if under.size and names[int(np.bincount(under).argmax())] != label:
            wrong.add(int(field_id))
    crops = (~labels["label"].isin(STATIC)).sum()
    assert len(info.mislabelled) == round(noise * crops) and wrong <= set(info.mislabelled)
    assert len(wrong) >= len(info.mislabelled) - 1  # (a sliver may hide a field from the raster)
    assert set(labels["label"]) == set(CLASS_TABLE.names)  # every class keeps its labels
    assert json.loads((info.outdir / "scene.json").read_text())["mislabelled_fields"] == list(info.mislabelled)
    held = gpd.read_file(info.test_fields)  # the held-out reference stays true
    for field_id, label in zip(held["field_id"], held["label"]):
        under = truth[fid == field_id]
        assert not under.size or names[int(np.bincount(under).argmax())] == label


@pytest.mark.e2e
def test_cli_label_noise_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["simulate", str(tmp_path / "out"), "--size", "48", "--dates", "8", "--label-noise", "0.5"])
    out = capsys.readouterr().out
    assert rc == 0 and "under a wrong name" in out
    assert main(["simulate", str(tmp_path / "out"), "--label-noise", "0.9"]) == 2
