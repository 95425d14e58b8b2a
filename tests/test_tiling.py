"""Tiles: exact cover, halo windows, Zarr round trip, reassembly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from _data_fixtures import write_stack

from cropseq.errors import CropseqError
from cropseq.io import open_stack
from cropseq.tiling import Tile, crop_core, make_tiles, read_tile, tile_stack, write_tile


def assemble_tiles(tile_cubes: list) -> xr.DataArray:
    """Tile cores put back into the scene by their ``tile_window`` (any order): what the
    workflow's mosaic does with the per-tile maps, here for the tiles' input cubes.

    The cores must cover the scene exactly once (``AssertionError`` naming the gap or overlap).
    Georeferenced like the scene: the first core's transform and the cores' coordinates.
    """
    wins = [tuple(int(v) for v in t.attrs["tile_window"]) for t in tile_cubes]
    height = max(r + h for r, _, h, _ in wins)
    width = max(c + w for _, c, _, w in wins)
    first = crop_core(tile_cubes[0])
    values = np.full((*first.shape[:-2], height, width), np.nan, first.dtype)
    cover = np.zeros((height, width), int)
    ys, xs = np.zeros(height), np.zeros(width)
    for (r, c, h, w), t in zip(wins, tile_cubes):
        core = crop_core(t)
        values[..., r : r + h, c : c + w] = core.values
        cover[r : r + h, c : c + w] += 1
        ys[r : r + h], xs[c : c + w] = core["y"].values, core["x"].values
    assert (cover == 1).all(), f"tiles leave a gap or overlap at scene pixel {np.argwhere(cover != 1)[0].tolist()}"
    origin = min(zip(wins, tile_cubes), key=lambda it: it[0][:2])[1]
    whole = xr.DataArray(values, dims=first.dims, coords={**{d: first[d] for d in first.dims[:-2]}, "y": ys, "x": xs})
    return whole.rio.write_transform(crop_core(origin).rio.transform())


def test_make_tiles_cover_scene_once() -> None:
    tiles = make_tiles((7, 9), size=4, halo=2)
    assert [t.id for t in tiles] == ["r000_c000", "r000_c001", "r000_c002", "r001_c000", "r001_c001", "r001_c002"]
    cover = np.zeros((7, 9), int)
    for t in tiles:
        r, c, h, w = t.core
        cover[r : r + h, c : c + w] += 1
    assert (cover == 1).all()
    t = tiles[4]  # r001_c001: core rows 4..6, cols 4..7
    assert t.core == (4, 4, 3, 4) and t.window == (2, 2, 5, 7) and t.pad == (0, 2, 0, 1)
    assert tiles[0].pad == (2, 0, 2, 0) and tiles[2].window == (0, 6, 6, 3) and tiles[2].pad == (2, 0, 0, 2)
    assert Tile.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    with pytest.raises(CropseqError, match="tile size"):
        make_tiles((7, 9), size=0, halo=1)
    with pytest.raises(CropseqError, match="halo"):
        make_tiles((7, 9), size=4, halo=-1)


def test_read_tile_halo_and_reassembly(tmp_path: Path) -> None:
    path, expected = write_stack(tmp_path, "per-band", masks=True)
    cube = open_stack(path, chunks=3)
    tiles = make_tiles(cube, size=4, halo=1)
    parts = [read_tile(cube, t) for t in tiles]
    p = parts[0]
    assert p.shape == (5, 2, 6, 6) and p.attrs["tile_core"] == [1, 1, 4, 4]
    assert np.isnan(p.values[:, :, 0, :]).all() and np.isnan(p.values[:, :, :, 0]).all()  # NaN pad
    np.testing.assert_array_equal(p.values[:, :, 1:, 1:], expected[:, :, :5, :5])  # core + inner halo
    # Georeferencing of the padded tile: its first column is one pixel west of the scene.
    assert p["x"].values[0] == cube["x"].values[0] - 10.0
    assert p.rio.transform().c == cube.rio.transform().c - 10.0
    np.testing.assert_array_equal(crop_core(parts[4]).values, expected[:, :, 4:, 4:8])
    whole = assemble_tiles(parts[::-1])  # order does not matter
    np.testing.assert_array_equal(whole.values, cube.values)  # exact, NaN in the same places
    np.testing.assert_array_equal(whole["x"].values, cube["x"].values)
    assert whole.rio.transform() == cube.rio.transform()
    with pytest.raises(AssertionError, match="gap"):
        assemble_tiles(parts[:3] + parts[4:])


def test_write_tile_round_trip(tmp_path: Path) -> None:
    path, _ = write_stack(tmp_path / "s", "per-band", masks=True)
    cube = open_stack(path)
    tile = make_tiles(cube, size=4, halo=1)[1]
    t = read_tile(cube, tile)
    out = write_tile(t, tmp_path / f"{tile.id}.zarr")
    back = open_stack(out, chunks=2)
    assert back.dims == ("time", "band", "y", "x") and back.dtype == np.float32 and back.name == "reflectance"
    np.testing.assert_array_equal(back.values, t.values)
    np.testing.assert_array_equal(back["time"].values, cube["time"].values)
    assert back["band"].values.tolist() == ["red", "nir"]
    np.testing.assert_array_equal(back["x"].values, t["x"].values)
    assert back.rio.crs == cube.rio.crs and back.rio.transform() == t.rio.transform()
    assert back.attrs["tile_id"] == "r000_c001" and back.attrs["tile_window"] == [0, 4, 4, 4]
    assert back.chunks[2] == (2, 2, 2) and back.attrs["source"] == str(out.resolve())
    assert not list(tmp_path.glob(".*tmp*"))


def test_tile_stack_index(tmp_path: Path) -> None:
    path, _ = write_stack(tmp_path / "s", "per-date")
    cube = open_stack(path)
    index = tile_stack(cube, tmp_path / "tiles", size=5, halo=1)
    data = json.loads((tmp_path / "tiles" / "tiles.json").read_text())
    assert data == json.loads(json.dumps(index))
    assert [t["id"] for t in data["tiles"]] == ["r000_c000", "r000_c001", "r001_c000", "r001_c001"]
    assert data["shape"] == {"y": 7, "x": 9} and data["halo"] == 1
    tiles = [open_stack(tmp_path / "tiles" / t["path"]) for t in data["tiles"]]
    np.testing.assert_array_equal(assemble_tiles(tiles).values, cube.values)
