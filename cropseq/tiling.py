"""Split a cube into tiles with a halo, write them as Zarr stores, and put them back together.

A scene too large for one job is cut into a grid of tiles. Each :class:`Tile` has a *core*
window (the tiles' cores cover the scene exactly once) and a *halo* of ``halo`` pixels on
every side, so patch-based models see the neighbours of the core's border pixels. Where the
halo leaves the scene it is padded with NaN (missing), so every tile array is exactly
``core + 2 * halo`` pixels in each direction and the core starts at ``(halo, halo)``.

Tile arrays carry their place in attrs (kept in the Zarr store and by
:func:`cropseq.io.open_stack`): ``tile_id``, ``tile_halo``, ``tile_core`` (core window inside
the tile array: ``[row_off, col_off, height, width]``), ``tile_window`` (core window in the
scene) and ``tile_pad`` (NaN padding ``[top, bottom, left, right]``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine

from cropseq.atomic import atomic_path, check_writable
from cropseq.errors import CropseqError
from cropseq.io import CUBE_NAME, DIMS, cube_crs, window_reader

__all__ = ["TILES_JSON", "Tile", "crop_core", "make_tiles", "read_tile", "read_tile_index", "tile_stack", "write_tile"]

TILES_JSON = "tiles.json"


@dataclass(frozen=True)
class Tile:
    """One tile of a scene (pixel windows as ``(row_off, col_off, height, width)``).

    Attributes:
        id: ``r{tile_row:03d}_c{tile_col:03d}`` (deterministic).
        core: The core window in the scene (the cores cover the scene exactly once).
        halo: Halo width in pixels.
        window: The halo window clipped to the scene (what is read).
        pad: NaN padding ``(top, bottom, left, right)`` where the halo leaves the scene.
    """

    id: str
    core: tuple[int, int, int, int]
    halo: int
    window: tuple[int, int, int, int]
    pad: tuple[int, int, int, int]

    @property
    def core_in_tile(self) -> tuple[int, int, int, int]:
        """The core window inside the (padded) tile array."""
        return (self.halo, self.halo, self.core[2], self.core[3])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tile:
        """Inverse of :meth:`to_dict`."""
        return cls(
            id=str(d["id"]), core=tuple(d["core"]), halo=int(d["halo"]),
            window=tuple(d["window"]), pad=tuple(d["pad"]),
        )  # fmt: skip


def _shape_of(cube_or_shape: xr.DataArray | Sequence[int]) -> tuple[int, int]:
    if isinstance(cube_or_shape, xr.DataArray):
        return int(cube_or_shape.sizes["y"]), int(cube_or_shape.sizes["x"])
    h, w = (int(v) for v in cube_or_shape)
    return h, w


def make_tiles(cube_or_shape: xr.DataArray | Sequence[int], size: int = 256, halo: int = 1) -> list[Tile]:
    """Cut a scene into a grid of tiles (row-major order).

    Args:
        cube_or_shape: A cube, or the scene shape ``(height, width)``.
        size: Core tile size in pixels (edge tiles are smaller).
        halo: Halo width in pixels (>= 0).

    Returns:
        The tiles; their cores cover the scene exactly once.

    Raises:
        CropseqError: ``size < 1`` or ``halo < 0``.
    """
    if int(size) < 1:
        raise CropseqError(f"tile size must be >= 1, not {size}")
    if int(halo) < 0:
        raise CropseqError(f"halo must be >= 0, not {halo}")
    height, width = _shape_of(cube_or_shape)
    tiles = []
    for i, r0 in enumerate(range(0, height, size)):
        for j, c0 in enumerate(range(0, width, size)):
            h, w = min(size, height - r0), min(size, width - c0)
            top, left = r0 - halo, c0 - halo
            bottom, right = r0 + h + halo, c0 + w + halo
            wr0, wc0 = max(top, 0), max(left, 0)
            wr1, wc1 = min(bottom, height), min(right, width)
            tiles.append(
                Tile(
                    id=f"r{i:03d}_c{j:03d}",
                    core=(r0, c0, h, w),
                    halo=int(halo),
                    window=(wr0, wc0, wr1 - wr0, wc1 - wc0),
                    pad=(wr0 - top, bottom - wr1, wc0 - left, right - wc1),
                )
            )
    return tiles


def _grid_coords(transform: Affine, row0: int, col0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y = transform.f + (row0 + np.arange(h) + 0.5) * transform.e
    x = transform.c + (col0 + np.arange(w) + 0.5) * transform.a
    return y, x


def read_tile(cube: xr.DataArray, tile: Tile) -> xr.DataArray:
    """The tile's part of the cube, halo included, NaN-padded outside the scene (lazy).

    Args:
        cube: The scene cube.
        tile: A tile from :func:`make_tiles` on this cube.

    Returns:
        A cube of ``core + 2 * halo`` pixels per side with correct coordinates, CRS and
        transform, and the tile attrs (see the module docstring).
    """
    r0, c0, h, w = tile.window
    top, bottom, left, right = tile.pad
    sub = cube.isel(y=slice(r0, r0 + h), x=slice(c0, c0 + w))
    transform = cube.rio.transform()
    reader = window_reader(cube)
    if reader is not None:  # one read of the tile's window (NaN outside): no whole chunks for a halo strip
        win = (r0 - top, c0 - left, h + top + bottom, w + left + right)
        block = da.from_delayed(dask.delayed(reader)(*win), (reader.reader.n_time, len(reader.reader.bands), win[2], win[3]), np.float32)
        sub = sub.pad(y=(top, bottom), x=(left, right)).copy(data=block)
    elif any(tile.pad):
        sub = sub.pad(y=(top, bottom), x=(left, right), constant_values=np.nan)
    if any(tile.pad):
        # Padding gives NaN coordinates; extend the grid instead so the tile stays georeferenced.
        y, x = _grid_coords(transform, r0 - top, c0 - left, h + top + bottom, w + left + right)
        sub = sub.assign_coords(y=y, x=x)
    crs = cube_crs(cube)
    if crs is not None:
        sub = sub.rio.write_crs(crs)
    sub = sub.rio.write_transform(transform @ Affine.translation(tile.core[1] - tile.halo, tile.core[0] - tile.halo))
    sub = sub.astype(np.float32)
    sub.name = CUBE_NAME
    sub.attrs = {
        **{k: v for k, v in cube.attrs.items() if not k.startswith("tile_")},
        "tile_id": tile.id,
        "tile_halo": tile.halo,
        "tile_core": list(tile.core_in_tile),
        "tile_window": list(tile.core),
        "tile_pad": list(tile.pad),
    }
    return sub


def write_tile(tile_cube: xr.DataArray, path: str | os.PathLike[str], chunks: int = 512) -> Path:
    """Write a tile (or any cube) as a Zarr store, atomically.

    The store reads back with :func:`cropseq.io.open_stack` as the same cube: values, time
    and band coordinates, CRS, transform and the tile attrs.

    Args:
        tile_cube: A cube (e.g. from :func:`read_tile`); computed chunk by chunk.
        path: Output folder, conventionally ``<tile_id>.zarr``.
        chunks: Spatial chunk size in the store.

    Returns:
        The store path.
    """
    path = Path(path)
    if tuple(tile_cube.dims) != DIMS:
        raise CropseqError(f"expected dims {DIMS}, got {tuple(tile_cube.dims)}", path)
    crs = cube_crs(tile_cube)
    da_ = tile_cube.drop_vars([c for c in tile_cube.coords if c not in DIMS])
    da_ = da_.astype(np.float32)
    da_.attrs = {
        **{k: _jsonable(v) for k, v in tile_cube.attrs.items() if k not in ("grid_mapping", "_FillValue")},
        "crs_wkt": crs.to_wkt() if crs is not None else "",
        "transform": [float(v) for v in tuple(tile_cube.rio.transform())[:6]],
    }
    da_.encoding = {}
    da_ = da_.assign_coords(band=np.array([str(b) for b in da_["band"].values], dtype=object))
    ds = da_.to_dataset(name=CUBE_NAME)
    ds = ds.chunk({"time": -1, "band": -1, "y": chunks, "x": chunks})
    with atomic_path(path) as tmp:
        ds.to_zarr(tmp, mode="w", consolidated=False)
    return path


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def crop_core(tile_cube: xr.DataArray) -> xr.DataArray:
    """The core of a tile array (drops the halo), using its ``tile_core`` attr."""
    if "tile_core" not in tile_cube.attrs:
        raise CropseqError("not a tile: no 'tile_core' attribute", tile_cube.attrs.get("source"))
    r, c, h, w = (int(v) for v in tile_cube.attrs["tile_core"])
    return tile_cube.isel(y=slice(r, r + h), x=slice(c, c + w))


def tile_stack(
    cube: xr.DataArray, out_dir: str | os.PathLike[str], size: int = 256, halo: int = 1
) -> dict[str, Any]:
    """Write every tile of ``cube`` as ``out_dir/<tile_id>.zarr`` plus ``out_dir/tiles.json``.

    Args:
        cube: The scene cube.
        out_dir: Output folder (created if missing; its parent must exist).
        size: Core tile size.
        halo: Halo width.

    Returns:
        The ``tiles.json`` content: ``source``, ``size``, ``halo``, ``shape`` ``{y, x}`` and
        ``tiles`` (each :meth:`Tile.to_dict` plus ``path``, relative to ``out_dir``).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CropseqError("output exists and is not a folder", out)
    tiles = make_tiles(cube, size, halo)
    if not out.exists():
        check_writable(out)  # missing or read-only parent, a symlink loop, one of the inputs
        out.mkdir()
    entries = []
    for t in tiles:
        write_tile(read_tile(cube, t), out / f"{t.id}.zarr")
        entries.append({**t.to_dict(), "path": f"{t.id}.zarr"})
    index = {
        "source": cube.attrs.get("source"),
        "size": int(size),
        "halo": int(halo),
        "shape": {"y": int(cube.sizes["y"]), "x": int(cube.sizes["x"])},
        "tiles": entries,
    }
    with atomic_path(out / TILES_JSON) as tmp:
        tmp.write_text(json.dumps(index, indent=2) + "\n")
    return index


def read_tile_index(tiles_dir: str | os.PathLike[str]) -> list[str]:
    """The tile ids of a folder written by :func:`tile_stack` (its ``tiles.json``), in order.

    Args:
        tiles_dir: The folder holding ``tiles.json`` and the ``<tile_id>.zarr`` stores.

    Returns:
        The ids of the ``tiles`` entries, in the file's (row-major) order.

    Raises:
        CropseqError: no ``tiles.json``, or one that is not what :func:`tile_stack` writes
            (not JSON, no ``tiles`` list, an entry that is no tile, no tiles, a repeated id).
    """
    path = Path(tiles_dir) / TILES_JSON
    if not path.is_file():
        raise CropseqError(f"no {TILES_JSON} in this folder: not written by `cropseq tile`", tiles_dir)
    try:
        index = json.loads(path.read_text())
    except (ValueError, OSError) as e:  # UnicodeDecodeError is a ValueError
        raise CropseqError(f"cannot read the tile index ({str(e).splitlines()[0]})", path) from None
    entries = index.get("tiles") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CropseqError("not a tile index of `cropseq tile`: no non-empty 'tiles' list", path)
    ids: list[str] = []
    for i, entry in enumerate(entries):
        try:
            ids.append(Tile.from_dict(entry).id)
        except (KeyError, TypeError, ValueError):
            raise CropseqError(f"tile entry {i} is not a tile (needs id, core, halo, window, pad)", path) from None
    from collections import Counter

    repeated = sorted(t for t, n in Counter(ids).items() if n > 1)
    if repeated:
        raise CropseqError(f"tile id(s) listed twice: {', '.join(repeated)}", path)
    return ids
