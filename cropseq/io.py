"""Open an image stack as the cube: a lazy, Dask-backed ``(time, band, y, x)`` DataArray.

:func:`open_stack` is the only place that reads imagery; everything downstream takes the
cube (see ``docs/ARCHITECTURE.md``, "The cube"). It accepts a ``stack.yaml`` manifest (or a
folder holding one) or a Zarr tile store written by :func:`cropseq.tiling.write_tile`.

Opening checks only raster headers (existence, readability, grid, band counts); pixels are
read lazily, one spatial chunk (all dates, all bands) per Dask task, with windowed reads, so
memory is bounded by the chunk size, not the scene size.

Per raw value, in this order: the band's nodata value (the manifest's, else the file's)
becomes NaN; masked pixels (per date) become NaN in every band; ``value * scale + offset``;
values outside ``valid_range`` or not finite become NaN; the result is float32.
"""

from __future__ import annotations

import math
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import rasterio
import rasterio.errors
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from rasterio.crs import CRS
from rasterio.windows import Window

from cropseq import remote
from cropseq.atomic import register_input
from cropseq.composite import CompositeReader, composite_reader
from cropseq.errors import CropseqError, DataWarning
from cropseq.grid import GridSpec, TargetGrid, WarpRead, default_resampling, native_resolution, resolve_grid
from cropseq.manifest import StackManifest, interleaved_band, interleaved_count_error, load_manifest
from cropseq.masking import MaskRule
from cropseq.raster_access import open_raster, quiet_rasterio

__all__ = ["BlockWindows", "CUBE_NAME", "Chunks", "DIMS", "EXACT_SUMMARY_MAX_CHUNKS", "FILL_SHARE", "FillValueWarning", "WindowReader", "crs_name", "cube_crs", "cube_grid", "format_time", "is_tile_store", "limit_warnings", "open_stack", "read_with_halo", "rewarn_opening", "sample_cube", "sample_windows", "stack_summary", "value_stats", "window_reader"]

CUBE_NAME = "reflectance"
DIMS = ("time", "band", "y", "x")


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _BandSource:
    """Where one cube band comes from, per (sorted) date: ``(file, 1-based raster band)``."""

    name: str
    reads: tuple[tuple[str, int], ...]  # length T
    nodata: float | None
    scale: float
    offset: float
    valid_range: tuple[float, float] | None
    warp: WarpRead | None = None  # None: every file is on the cube's grid (direct windowed reads)
    reinterpret: str | None = None  # the manifest's dtype: stored bits read as this type first


def _stored_values(band: _BandSource, raw: np.ndarray) -> np.ndarray:
    """Raw values as the band's type: the stored type, or the manifest's ``dtype:``.

    ``dtype:`` reinterprets the same bits (e.g. uint16 65535 -> int16 -1); such a band is
    never warped (checked at open).
    """
    return raw if band.reinterpret is None else raw.view(band.reinterpret)


def _band_values_into(band: _BandSource, raw: np.ndarray, out: np.ndarray) -> None:
    """One date of one band: raw ``(h, w)`` values -> the cube's float32 values, written into ``out``.

    ``raw * scale + offset`` is computed in float64 and rounded to float32 once; NaN where the
    raw value is not finite, is the fill value, lies outside ``valid_range`` (compared in
    float64) or overflows float32. Without offset or valid range the float64 product goes
    straight into ``out`` (the ufunc's buffered loop: no float64 copy of the block).
    """
    invalid = ~np.isfinite(raw) if raw.dtype.kind == "f" else None
    if band.nodata is not None and not np.isnan(band.nodata):
        fill = _equals(raw, band.nodata)
        invalid = fill if invalid is None else invalid | fill
    scaled = band.scale != 1.0 or band.offset != 0.0
    # ``x * scale`` equals ``x * scale + 0.0`` unless it is -0.0: never for unsigned x and scale > 0.
    direct = not scaled or (band.offset == 0.0 and band.scale > 0 and raw.dtype.kind == "u")
    with np.errstate(over="ignore", invalid="ignore"):
        if direct and band.valid_range is None:
            np.multiply(raw, band.scale, out=out, dtype=np.float64, casting="unsafe")
        else:
            vals = raw.astype(np.float64)
            if scaled:
                vals *= band.scale
                vals += band.offset
            if band.valid_range is not None:
                outside = (vals < band.valid_range[0]) | (vals > band.valid_range[1])
                invalid = outside if invalid is None else invalid | outside
            out[...] = vals
    beyond = np.isinf(out)  # float64 values beyond float32's range (NaN is already NaN)
    _nan_where(out, beyond if invalid is None else beyond | invalid)


def _nan_where(out: np.ndarray, mask: np.ndarray) -> None:
    """Set ``out`` to NaN where ``mask`` is true (``copyto``: ~10x faster than ``putmask``)."""
    np.copyto(out, np.float32(np.nan), where=mask)


@dataclass(frozen=True)
class _StackReader:
    """Picklable reader of one spatial window of the cube (runs inside Dask tasks)."""

    bands: tuple[_BandSource, ...]
    masks: tuple[tuple[str, int], ...]  # per sorted date; empty = no masks
    mask_rule: MaskRule
    n_time: int
    mask_warp: WarpRead | None = None

    def __call__(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        win = Window(col_off, row_off, width, height)
        out = np.empty((self.n_time, len(self.bands), height, width), dtype=np.float32)
        groups = [(band.reads, band.warp) for band in self.bands] + ([(self.masks, self.mask_warp)] if self.masks else [])
        masks: list[np.ndarray] = [np.empty(0)] * len(self.masks)
        # File by file, each opened once: every date and band it holds, the mask included.
        for c, t, raw in _read_groups(groups, win):  # raw: (h, w), float32 if warped
            if c < len(self.bands):  # date by date: the temporaries stay small (cache-sized)
                _band_values_into(self.bands[c], _stored_values(self.bands[c], raw), out[t, c])
            else:
                masks[t] = raw
        if self.masks:
            _nan_where(out, self.mask_rule.invalid(np.stack(masks))[:, None])
        return out

    def select(self, times: Sequence[int], bands: Sequence[int]) -> _StackReader:
        """The reader of a subset of this reader's dates and bands (indices, in output order)."""
        return _StackReader(
            tuple(replace(self.bands[b], reads=tuple(self.bands[b].reads[t] for t in times)) for b in bands),
            tuple(self.masks[t] for t in times) if self.masks else (),
            self.mask_rule,
            len(times),
            self.mask_warp,
        )


@dataclass(frozen=True)
class WindowReader:
    """Picklable reader of any window of a stack's cube; NaN (missing) beyond the edges.

    Made by :func:`window_reader`. Calling it with ``(row_off, col_off, height, width)``
    returns the float32 ``(time, band, height, width)`` block the cube holds there, read
    and masked exactly as :func:`open_stack` does; rows/columns outside the raster are NaN.
    """

    reader: _StackReader | CompositeReader  # CompositeReader: a stack with composite:
    shape: tuple[int, int]

    def __call__(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        """The float32 ``(time, band, height, width)`` block of this window (NaN beyond the edges)."""
        ny, nx = self.shape
        r0, c0 = max(row_off, 0), max(col_off, 0)
        r1, c1 = min(row_off + height, ny), min(col_off + width, nx)
        if (r0, c0, r1, c1) == (row_off, col_off, row_off + height, col_off + width):
            return self.reader(row_off, col_off, height, width)
        out = np.full((self.reader.n_time, len(self.reader.bands), height, width), np.nan, dtype=np.float32)
        if r1 > r0 and c1 > c0:
            out[:, :, r0 - row_off : r1 - row_off, c0 - col_off : c1 - col_off] = self.reader(r0, c0, r1 - r0, c1 - c0)
        return out


@dataclass(frozen=True)
class _Opened:
    """What :func:`window_reader` needs to know about a cube made by :func:`open_stack`."""

    reader: _StackReader | CompositeReader  # CompositeReader: a stack with composite:
    times: pd.DatetimeIndex
    bands: tuple[str, ...]
    y: np.ndarray  # pixel-centre coordinates of the whole raster (its shape is theirs)
    x: np.ndarray
    native: dict[str, tuple[float, float, str | None]] = field(default_factory=dict)  # band -> (xres, yres, resampling)
    value_types: dict[str, tuple[str, float, float]] = field(default_factory=dict)  # band -> (raw dtype, scale, offset)


# Cubes opened in this process, by the name of their Dask read layer. Bounded: an entry
# only lets later work skip the overlap graph; losing it just means the general path.
_OPENED: OrderedDict[str, _Opened] = OrderedDict()
_OPENED_LOCK = threading.Lock()
_OPENED_MAX = 64


def _equals(raw: np.ndarray, nodata: float) -> np.ndarray:
    """Where ``raw`` holds the fill value ``nodata`` (not NaN), compared without a float64 copy when exact."""
    if raw.dtype.kind == "f":
        if raw.dtype == np.float32 and float(np.float32(nodata)) == nodata:
            return raw == np.float32(nodata)  # exact: float32 -> float64 is lossless
        # Relative tolerance: a YAML -1.7e308 and the file's float64 may differ in the last bit.
        return np.isclose(raw, nodata, rtol=1e-12, atol=0.0)
    if raw.dtype.kind in "iu" and float(nodata).is_integer():
        info = np.iinfo(raw.dtype)
        if not info.min <= nodata <= info.max:
            return np.zeros(raw.shape, dtype=bool)  # no stored value can equal it
        return raw == raw.dtype.type(nodata)
    return raw == nodata


#: Reads of one cube band (or of the mask): ``(file, 1-based raster band)`` per date, and
#: how files off the cube's grid are read onto it (None: every file is on it).
_Group = tuple[tuple[tuple[str, int], ...], WarpRead | None]


def _read_groups(groups: Sequence[_Group], win: Window) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(group, date position, (h, w) values)`` of every read of ``groups`` in one window.

    Each file is opened once (:func:`cropseq.raster_access.open_raster`), whichever bands
    and dates it holds: its bands on the cube's grid are read together, in their stored
    type (one read per type); a group's bands of a file on another grid are read onto it
    by the group's :class:`~cropseq.grid.WarpRead` (float32, NaN where the source has no
    data), in one read as before (GDAL's warper sees the same bands).
    """
    by_file: dict[str, list[tuple[int, int, int]]] = {}
    for g, (reads, _) in enumerate(groups):
        for pos, (f, b) in enumerate(reads):
            by_file.setdefault(f, []).append((g, pos, b))
    for f, items in by_file.items():
        try:  # remote files: GDAL's HTTP settings also while reading (blocks are fetched then)
            with remote.gdal_env(f), open_raster(remote.gdal_path(f)) as src:
                found = _read_file(src, items, groups, win)
        except rasterio.errors.RasterioError as e:
            raise CropseqError(f"cannot read raster pixels (truncated or corrupt file? {_gdal_message(e)})", f) from None
        yield from found


def _read_file(src: Any, items: Sequence[tuple[int, int, int]], groups: Sequence[_Group], win: Window) -> list[tuple[int, int, np.ndarray]]:
    """The ``(group, position, band)`` reads ``items`` of one open file: ``(group, position, values)``."""
    warped: dict[int, list[tuple[int, int]]] = {}
    direct: dict[str, list[tuple[int, int, int]]] = {}  # stored type -> reads
    off_grid: dict[int, bool] = {}
    for g, pos, b in items:
        if g not in off_grid:
            warp = groups[g][1]
            off_grid[g] = warp is not None and not warp.on_grid(src)
        if off_grid[g]:
            warped.setdefault(g, []).append((pos, b))
        else:
            direct.setdefault(src.dtypes[b - 1], []).append((g, pos, b))
    found: list[tuple[int, int, np.ndarray]] = []
    for reads in direct.values():
        at = {b: k for k, b in enumerate(dict.fromkeys(b for _, _, b in reads))}
        arr = src.read(list(at), window=win)
        found += [(g, pos, arr[at[b]]) for g, pos, b in reads]
    for g, reads2 in warped.items():
        warp = groups[g][1]
        assert warp is not None
        arr = warp.read(src, [b for _, b in reads2], win)
        found += [(g, pos, arr[k]) for k, (pos, _) in enumerate(reads2)]
    return found


def _read_many(reads: tuple[tuple[str, int], ...], win: Window, warp: WarpRead | None = None) -> np.ndarray:
    """The ``(len(reads), h, w)`` values of ``(file, band)`` pairs in one window (see :func:`_read_groups`).

    Files read onto the grid give float32; mixed with stored types, the result has their common type.
    """
    parts: list[np.ndarray] = [np.empty(0)] * len(reads)
    for _, pos, arr in _read_groups([(reads, warp)], win):
        parts[pos] = arr
    return np.stack(parts)


# ----------------------------------------------------------------------------- headers


@dataclass
class _Header:
    path: remote.Source
    count: int
    crs: CRS | None
    transform: Affine
    shape: tuple[int, int]
    nodata: float | None
    georeferenced: bool = True
    dtype: str = "float32"
    scale_offset: tuple[tuple[float, float], ...] = ()  # per raster band, from the file's tags


def _gdal_message(e: BaseException) -> str:
    """The most informative one-line message of a rasterio error.

    rasterio wraps GDAL's own error ("IReadBlock failed ... TIFFReadEncodedStrip() failed")
    in a generic "Read failed. See previous exception for details."; report GDAL's.
    """
    msgs: list[str] = []
    cur: BaseException | None = e
    while cur is not None and len(msgs) < 4:
        first = str(cur).strip().splitlines()[0] if str(cur).strip() else ""
        if first and "See previous exception" not in first:
            msgs.append(first)
        cur = cur.__cause__ or cur.__context__
    return (msgs[0] if msgs else type(e).__name__)[:300]


def _header(path: remote.Source, manifest: remote.Source) -> _Header:
    if isinstance(path, remote.RemotePath):
        pass  # nothing to check before GDAL asks the server (its answer names the problem)
    elif path.is_dir():
        raise CropseqError(f"raster named in {manifest} is a folder, not a raster file", path)
    elif not path.is_file():
        raise CropseqError(f"raster named in {manifest} not found", path)
    elif path.stat().st_size == 0:
        raise CropseqError(f"cannot read raster named in {manifest.name} (empty file, 0 bytes)", path)
    try:
        with quiet_rasterio(), remote.gdal_env(path), rasterio.open(remote.gdal_path(path)) as src:
            georef = src.transform != Affine.identity() or bool(src.gcps[0]) or src.rpcs is not None
            return _Header(
                path, src.count, src.crs, src.transform, (src.height, src.width), src.nodata, georef, src.dtypes[0],
                tuple(zip(src.scales, src.offsets, strict=True)),
            )
    except rasterio.errors.RasterioError as e:
        raise CropseqError(f"cannot read raster named in {manifest.name} ({_gdal_message(e)})", path) from None
    except OSError as e:  # permission denied and friends
        raise CropseqError(f"cannot read raster named in {manifest.name} ({e.strerror or e})", path) from None


_GRID_HINT = "; set grid: in stack.yaml to resample every raster onto one grid"


def _check_grid(h: _Header, ref: _Header) -> None:
    """Same CRS, transform and shape as the reference raster, else a message naming both."""
    if h.shape != ref.shape:
        raise CropseqError(
            f"grid differs from {ref.path}: shape {h.shape[0]}x{h.shape[1]} vs {ref.shape[0]}x{ref.shape[1]} (rows x cols)"
            + _GRID_HINT,
            h.path,
        )
    if (h.crs is None) != (ref.crs is None) or (h.crs is not None and h.crs != ref.crs):
        a = h.crs.to_string() if h.crs else "none"
        b = ref.crs.to_string() if ref.crs else "none"
        raise CropseqError(f"grid differs from {ref.path}: CRS {a} vs {b}" + _GRID_HINT, h.path)
    tol = 1e-6 * max(abs(ref.transform.a), abs(ref.transform.e), 1e-12)
    if not np.allclose(tuple(h.transform)[:6], tuple(ref.transform)[:6], rtol=0, atol=tol):
        raise CropseqError(
            f"grid differs from {ref.path}: transform {tuple(h.transform)[:6]} vs {tuple(ref.transform)[:6]}" + _GRID_HINT,
            h.path,
        )


def _spatial_chunks(n: int, size: int) -> tuple[int, ...]:
    return tuple(min(size, n - i) for i in range(0, n, size)) or (0,)


def _coords(transform: Affine, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    x = transform.c + (np.arange(w) + 0.5) * transform.a
    y = transform.f + (np.arange(h) + 0.5) * transform.e
    return y, x


def _build_cube(
    reader: _StackReader | CompositeReader,  # CompositeReader: a stack with composite:
    times: pd.DatetimeIndex,
    bands: list[str],
    crs: CRS | None,
    transform: Affine,
    shape: tuple[int, int],
    chunks: Chunks,
    source: str,
    native: dict[str, tuple[float, float, str | None]] | None = None,
    value_types: dict[str, tuple[str, float, float]] | None = None,
) -> xr.DataArray:
    chunks = _chunk_edge(chunks, shape)
    ych, xch = _spatial_chunks(shape[0], chunks), _spatial_chunks(shape[1], chunks)
    name = "open_stack-" + tokenize(reader, chunks, shape)
    arr = _lazy_blocks(reader, ych, xch, 0, (len(times), len(bands)), name)
    y, x = _coords(transform, shape)
    with _OPENED_LOCK:
        _OPENED[name] = _Opened(
            reader, pd.DatetimeIndex(times).as_unit("ns"), tuple(bands), y, x, dict(native or {}), dict(value_types or {})
        )
        _OPENED.move_to_end(name)
        while len(_OPENED) > _OPENED_MAX:
            _OPENED.popitem(last=False)
    cube = xr.DataArray(
        arr,
        dims=DIMS,
        coords={"time": times.as_unit("ns").to_numpy(), "band": np.array(bands, dtype=str), "y": y, "x": x},
        name=CUBE_NAME,
        attrs={"source": source},
    )
    if crs is not None:
        cube = cube.rio.write_crs(crs)
    return cube.rio.write_transform(transform)


# ----------------------------------------------------------------------------- public API


def window_reader(cube: xr.DataArray) -> WindowReader | None:
    """A direct reader of ``cube``'s windows, when the cube is a selection of an opened stack.

    Works for a cube returned by :func:`open_stack` from a manifest, or one derived from it
    by selecting dates and/or bands only (``sel``/``isel`` on ``time``/``band``), with the
    full spatial extent. For anything else (Zarr tiles, computed or spatially cropped
    cubes) it returns None, and callers fall back to the cube's own Dask graph.

    Why: whole-scene inference needs every chunk with a halo of neighbouring pixels. With
    ``dask.array.overlap`` each chunk depends on its eight neighbours' reads, so reads stay
    in memory until all their neighbours are done, a band of chunks whose size grows with
    the scene's width. Reading each chunk's window *with* its halo in one task (see
    :func:`read_with_halo`) makes chunks independent, and memory flat in the scene size.
    """
    data = getattr(cube, "data", None)
    if not isinstance(data, da.Array) or tuple(cube.dims) != DIMS:
        return None
    layers = _graph_layers(data)
    with _OPENED_LOCK:
        roots = [n for n in layers if n in _OPENED]
        opened = _OPENED.get(roots[0]) if len(roots) == 1 else None
    # Only selections on top of the read layer: anything else changes the values.
    if opened is None or any(n != roots[0] and not n.startswith("getitem-") for n in layers):
        return None
    # The whole raster, in its own order (a flipped or permuted axis keeps its size).
    if not (np.array_equal(cube["y"].values, opened.y) and np.array_equal(cube["x"].values, opened.x)):
        return None
    t_idx = opened.times.get_indexer(pd.DatetimeIndex(cube["time"].values))
    b_idx = pd.Index(opened.bands).get_indexer([str(b) for b in cube["band"].values])
    if (t_idx < 0).any() or (b_idx < 0).any():
        return None
    shape = (len(opened.y), len(opened.x))
    return WindowReader(opened.reader.select([int(i) for i in t_idx], [int(i) for i in b_idx]), shape)


def read_with_halo(
    reader: WindowReader, row_chunks: Sequence[int], col_chunks: Sequence[int], halo: int
) -> da.Array:
    """Dask array of overlapping blocks: each chunk's window grown by ``halo`` on every side.

    Block ``(i, j)`` is read in one task with no dependency on any other, NaN beyond the
    raster's edges, the same blocks ``dask.array.overlap.overlap(cube, depth=halo,
    boundary=nan)`` gives over the same chunks, without holding neighbours' reads.

    Args:
        reader: From :func:`window_reader`.
        row_chunks: Core chunk heights (summing to the raster height).
        col_chunks: Core chunk widths (summing to the raster width).
        halo: Pixels added on each side.
    """
    name = "read-with-halo-" + tokenize(reader, tuple(row_chunks), tuple(col_chunks), halo)
    return _lazy_blocks(reader, row_chunks, col_chunks, halo, (reader.reader.n_time, len(reader.reader.bands)), name)


@dataclass(frozen=True)
class BlockWindows:
    """Picklable: block ``(i, j)`` of a grid of chunks -> its window, grown by ``halo``.

    Holds only the chunk offsets (one entry per row and per column of chunks), so its
    size is linear in the scene's edge, never in its number of chunks.
    """

    rows: tuple[int, ...]  # offsets, one more than chunks (the last is the raster size)
    cols: tuple[int, ...]
    halo: int

    @classmethod
    def from_chunks(cls, row_chunks: Sequence[int], col_chunks: Sequence[int], halo: int) -> BlockWindows:
        """From chunk sizes along each axis."""
        return cls(
            tuple(int(v) for v in np.concatenate([[0], np.cumsum(row_chunks)])),
            tuple(int(v) for v in np.concatenate([[0], np.cumsum(col_chunks)])),
            int(halo),
        )

    def window(self, i: int, j: int) -> tuple[int, int, int, int]:
        """``(row_off, col_off, height, width)`` of block ``(i, j)`` with its halo."""
        h = self.halo
        r0, r1, c0, c1 = self.rows[i], self.rows[i + 1], self.cols[j], self.cols[j + 1]
        return r0 - h, c0 - h, r1 - r0 + 2 * h, c1 - c0 + 2 * h


@dataclass(frozen=True)
class _BlockRead:
    """A Dask block function: reads the window of the block it is asked for."""

    reader: Any  # _StackReader or WindowReader: (row_off, col_off, height, width) -> array
    windows: BlockWindows

    def __call__(self, block_id: tuple[int, ...] | None = None) -> np.ndarray:
        assert block_id is not None
        return self.reader(*self.windows.window(block_id[2], block_id[3]))


def _lazy_blocks(
    reader: Any, row_chunks: Sequence[int], col_chunks: Sequence[int], halo: int, lead: tuple[int, int], name: str
) -> da.Array:
    """A ``(time, band, y, x)`` Dask array whose block ``(i, j)`` is read by ``reader``.

    The graph is one Blockwise layer (materialised only for the blocks computed): its
    size does not grow with the number of chunks, so a header claiming 10^12 pixels
    costs no more to open than a small scene.
    """
    windows = BlockWindows.from_chunks(row_chunks, col_chunks, halo)
    chunks = (
        (lead[0],),
        (lead[1],),
        tuple(int(h) + 2 * halo for h in row_chunks),
        tuple(int(w) + 2 * halo for w in col_chunks),
    )
    return da.map_blocks(
        _BlockRead(reader, windows), chunks=chunks, dtype=np.float32, meta=np.empty((0, 0, 0, 0), np.float32), name=name
    )


def is_tile_store(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a Zarr store (a tile written by :func:`cropseq.tiling.write_tile`)."""
    p = Path(path)
    return p.is_dir() and (p.suffix == ".zarr" or (p / "zarr.json").is_file() or (p / ".zgroup").is_file())


#: A chunk edge, or a function of the grid's ``(height, width)`` returning one (decided
#: once the grid is known, without opening the stack twice).
Chunks = int | Callable[[int, int], int]


def _chunk_edge(chunks: Chunks, shape: tuple[int, int]) -> int:
    edge = int(chunks(*shape)) if callable(chunks) else int(chunks)
    if edge < 1:
        raise CropseqError(f"chunk size must be >= 1, not {edge}")
    return edge


def open_stack(path: str | os.PathLike[str], chunks: Chunks = 512, grid: GridSpec | None = None) -> xr.DataArray:
    """Open a stack as the cube (lazy; only raster headers are read here).

    Args:
        path: A ``stack.yaml`` manifest, a folder holding ``stack.yaml``, or a Zarr tile
            store (``*.zarr``) written by :func:`cropseq.tiling.write_tile`.
        chunks: Spatial chunk size in pixels (each chunk holds every date and band), or a
            function of the grid's ``(height, width)`` that returns it.
        grid: A target grid overriding the manifest's ``grid:`` (e.g. from CLI options);
            every raster is read onto it (see :mod:`cropseq.grid`). Not for tile stores.

    Returns:
        ``xarray.DataArray`` named ``reflectance``, dims ``(time, band, y, x)``, float32,
        NaN where missing, Dask-backed, sorted by time, with CRS/transform (rioxarray) and
        ``attrs["source"]`` = the manifest (or store) path.

    Raises:
        CropseqError: missing/unreadable manifest or raster, grids that differ (naming both
            files), band or date counts that do not match the manifest.
    """
    if not callable(chunks):
        _chunk_edge(chunks, (1, 1))  # a bad size fails before any file is read
    if remote.is_remote(path):  # a manifest behind a URL (Zarr tile stores are local only)
        m = load_manifest(path)
    else:
        p = Path(path)
        if not p.exists():
            raise CropseqError("stack not found", p)
        if is_tile_store(p) and not (p / "stack.yaml").is_file():
            register_input(p, what="tile store")  # outputs may not replace an input (cropseq.atomic)
            return _open_zarr(p, chunks)
        m = load_manifest(p)
    if not isinstance(m, StackManifest):  # source: stac: found and read by odc-stac
        from cropseq.stac_source import open_stac

        return open_stac(m, chunks, grid)
    register_input(m.path, *m.raster_files(), what="part of the stack")
    return _open_manifest(m, chunks, grid)


def _open_manifest(m: StackManifest, chunks: Chunks, grid: GridSpec | None = None) -> xr.DataArray:
    order = m.date_order
    mname = m.path
    headers: dict[remote.Source, _Header] = {}
    for f in m.raster_files():
        if f not in headers:
            headers[f] = _header(f, mname)
    for h in headers.values():
        _assign_georeferencing(h, m)
    reads = _layout_reads(m, headers, order)  # band (mask band included) -> (file, band) per sorted date
    legacy_masks = _legacy_mask_reads(m, headers, order)
    mask_band = m.mask.band if m.mask is not None else None
    spec = grid if grid is not None else m.grid
    if spec is None and m.layout != "single-band":
        # Without a grid: key every raster must already share one grid (as before), except the
        # mask: band, which may have its own resolution (read with nearest).
        ref = headers[m.raster_files()[0]]
        data_files = {remote.source(f) for b in m.cube_bands for f, _ in reads[b]}
        mask_only = {remote.source(f) for f, _ in reads[mask_band]} - data_files if mask_band is not None else set()
        for f, h in headers.items():
            if f not in mask_only:
                _check_grid(h, ref)
        target = TargetGrid(ref.crs, ref.transform, ref.shape)
    else:
        ref = _finest(headers, [remote.source(reads[b][0][0]) for b in m.cube_bands])
        target = resolve_grid(spec or GridSpec(), ref.crs, ref.transform, ref.shape, mname)
        _check_target(target, spec, [headers[remote.source(f)] for b in m.cube_bands for f, _ in reads[b]], mname)

    sources: list[_BandSource] = []
    native: dict[str, tuple[float, float, str | None]] = {}
    value_types: dict[str, tuple[str, float, float]] = {}
    for b in m.bands:
        hs = [headers[remote.source(f)] for f, _ in reads[b]]
        nd = {_nodata_key(hs[k].nodata) for k in range(len(hs))}
        if m.nodata.get(b) is None and len(nd) > 1:
            raise CropseqError(f"files disagree on the nodata value ({sorted(map(str, nd))}); set nodata in the manifest", mname)
        src = _band_source(m, b, reads[b], next(iter(nd)), hs[0].scale_offset[reads[b][0][1] - 1])
        warp = _warp_for(m, b, hs, target, src.nodata, b == mask_band)
        native[b] = (*native_resolution(hs[0].crs, hs[0].transform, hs[0].shape, hs[0].crs), warp.resampling if warp else None)
        src = _reinterpreted(replace(src, warp=warp), m, hs, b == mask_band, m.nodata.get(b) is None)
        value_types[b] = (src.reinterpret or hs[0].dtype, src.scale, src.offset)
        sources.append(src)
    data_sources = tuple(s for s in sources if s.name != mask_band)
    if mask_band is not None:
        msrc = next(s for s in sources if s.name == mask_band)
        mreads, mwarp, rule = msrc.reads, msrc.warp, m.mask
    else:
        mreads, rule = legacy_masks, MaskRule(m.mask_invalid)
        mwarp = _warp_for(m, "", [headers[remote.source(f)] for f, _ in mreads], target, None, True) if mreads else None
    assert rule is not None
    reader: _StackReader | CompositeReader = _StackReader(data_sources, mreads, rule, len(m.dates), mwarp)
    _warn_fill_values(data_sources, {str(f): h.dtype for f, h in headers.items()}, target.shape, m.path)
    times, composite = m.sorted_dates, None
    if m.composite is not None:  # a regular time grid: each window read is composited in its task
        reader, times, composite = composite_reader(reader, times, m.cube_bands, m.composite, m.path)
    cube = _build_cube(
        reader, times, list(m.cube_bands), target.crs, target.transform, target.shape, chunks, str(m.path),
        native, value_types,
    )
    return cube if composite is None else cube.assign_attrs(composite=composite)


def _layout_reads(m: StackManifest, headers: dict[remote.Source, _Header], order: np.ndarray) -> dict[str, tuple[tuple[str, int], ...]]:
    """Band -> ``(file, 1-based raster band)`` per sorted date, checking band counts."""
    n_t, mname = len(m.dates), m.path
    if m.layout == "single-band":
        for f in m.raster_files():
            if headers[f].count != 1:
                raise CropseqError(f"a single-band layout raster must have 1 band, this one has {headers[f].count}", f)
        return {b: tuple((str(m.band_date_files[b][i]), 1) for i in order) for b in m.bands}
    if m.layout == "interleaved":
        f, n_b = m.files[0], len(m.bands)
        if headers[f].count != n_t * n_b:
            msg = interleaved_count_error(headers[f].count, n_t, n_b)
            where = "the dates list" if m.dates_source == "dates" else m.dates_source
            raise CropseqError(f"{msg}; dates from {where} (manifest {mname})", f)
        assert m.order is not None
        return {
            b: tuple((str(f), interleaved_band(m.order, int(i), c, n_t, n_b) + 1) for i in order) for c, b in enumerate(m.bands)
        }
    if m.layout == "per-band":
        for b in m.bands:
            f = m.band_files[b]
            if headers[f].count != n_t:
                hint = ""
                if headers[f].count > n_t and headers[f].count % n_t == 0:
                    hint = (f"; {headers[f].count} = {n_t} dates × {headers[f].count // n_t} bands? use layout: interleaved "
                            "with bands: [...] and order: date-major or band-major")  # fmt: skip
                raise CropseqError(
                    f"{headers[f].count} raster bands but {n_t} dates in {m.dates_source} (manifest {mname}){hint}", f
                )
        return {b: tuple((str(m.band_files[b]), int(i) + 1) for i in order) for b in m.bands}
    for f in m.files:
        if headers[f].count != len(m.bands):
            raise CropseqError(f"{headers[f].count} raster bands but {len(m.bands)} bands listed in {mname}", f)
    return {b: tuple((str(m.files[i]), c + 1) for i in order) for c, b in enumerate(m.bands)}


def _legacy_mask_reads(m: StackManifest, headers: dict[remote.Source, _Header], order: np.ndarray) -> tuple[tuple[str, int], ...]:
    """The ``masks:`` files as ``(file, band)`` per sorted date (empty without masks)."""
    if not m.masks:
        return ()
    if m.layout in ("per-band", "interleaved"):
        mh = headers[m.masks[0]]
        if mh.count != len(m.dates):
            raise CropseqError(
                f"mask raster has {mh.count} bands but there are {len(m.dates)} dates in {m.dates_source} (manifest {m.path})",
                mh.path,
            )
        return tuple((str(mh.path), int(i) + 1) for i in order)
    for f in m.masks:
        if headers[f].count != 1:
            raise CropseqError(f"a per-date mask must have 1 band, this one has {headers[f].count}", f)
    return tuple((str(m.masks[i]), 1) for i in order)


def _finest(headers: dict[remote.Source, _Header], first_date_files: Sequence[remote.Source]) -> _Header:
    """The header with the smallest pixel among the first date's data rasters (first on ties)."""
    hs = [headers[f] for f in first_date_files]
    return min(hs, key=lambda h: abs(h.transform.a * h.transform.e))


def _check_target(target: TargetGrid, spec: GridSpec | None, hs: Sequence[_Header], mpath: remote.Source) -> None:
    """Refuse what cannot be read onto ``target``.

    That is a raster without a CRS on another grid, or explicit bounds that miss every raster.
    """
    from rasterio.transform import array_bounds
    from rasterio.warp import transform_bounds

    for h in hs:
        if not target.matches(h.crs, h.transform, h.shape) and (h.crs is None or target.crs is None):
            raise CropseqError("raster has no CRS and is not on the target grid: cannot reproject it (assign crs:)", h.path)
    if spec is None or (spec.bounds is None and spec.bbox is None) or target.crs is None:
        return
    th, tw = target.shape
    tw_, ts, te, tn = array_bounds(th, tw, target.transform)
    for h in {id(h): h for h in hs}.values():
        w, s, e, n = array_bounds(h.shape[0], h.shape[1], h.transform)
        w, s, e, n = transform_bounds(h.crs, target.crs, w, s, e, n, densify_pts=21)
        if w < te and e > tw_ and s < tn and n > ts:
            return
    box = spec.bounds if spec.bounds is not None else spec.bbox
    key = "bounds" if spec.bounds is not None else "bbox"
    raise CropseqError(f"grid.{key} {list(box)} lies outside every raster of the stack", mpath)  # type: ignore[arg-type]


def _warp_for(
    m: StackManifest, band: str, hs: Sequence[_Header], target: TargetGrid, nodata: float | None, is_mask: bool
) -> WarpRead | None:
    """How ``band`` is read when some of its rasters are not on ``target`` (None: all are)."""
    if all(target.matches(h.crs, h.transform, h.shape) for h in hs):
        return None
    src_res = native_resolution(hs[0].crs, hs[0].transform, hs[0].shape, target.crs)
    method = m.resampling.get(band) or default_resampling(src_res, target.resolution, is_mask)
    return WarpRead(
        target, method, nodata if not is_mask else None,
        CRS.from_user_input(m.crs) if m.crs not in (None, "none") else None,
        Affine(*m.transform) if m.transform is not None else None,
    )  # fmt: skip


def _assign_georeferencing(h: _Header, m: StackManifest) -> None:
    """Apply the manifest's ``crs`` / ``transform`` to a raster's header.

    A raster without georeferencing is refused unless the manifest says how to read it (a
    pixel grid silently mapped to 0..W, 0..H would put every output in the wrong place).
    """
    if not h.georeferenced and m.transform is None and m.crs != "none":
        raise CropseqError(
            f"raster has no georeferencing (no geotransform); set crs: none in {m.path.name} to read it in "
            "pixel coordinates, or crs: EPSG:... and transform: [a, b, c, d, e, f] to assign a grid",
            h.path,
        )
    if m.transform is not None:
        h.transform = Affine(*m.transform)
    if m.crs == "none":
        h.crs = None
    elif m.crs is not None:
        try:
            h.crs = CRS.from_user_input(m.crs)
        except rasterio.errors.CRSError as e:
            raise CropseqError(f"crs {m.crs!r} is not a CRS rasterio knows ({e})", m.path) from None


#: Share of sampled pixels at an integer type's maximum/minimum that looks like a fill value.
FILL_SHARE = 0.1


class FillValueWarning(DataWarning):
    """An integer band without a nodata value holds its type's limit in many pixels (at open).

    Attributes:
        band: The band's name.
    """

    band: str = ""


def _warn_fill_values(
    sources: Sequence[_BandSource], dtypes: dict[str, str], shape: tuple[int, int], mpath: remote.Source
) -> None:
    """Warn (one :class:`FillValueWarning` per band) about likely fill values.

    That is an integer band without a nodata value holding its type's maximum or minimum in
    a large share of pixels: a fill value (65535 in a uint16 stack's gaps) that would
    otherwise be classified as data.

    Reads a bounded sample (:func:`sample_windows`, up to 4 dates), never the scene.
    """
    for band in sources:
        dtype = np.dtype(band.reinterpret or dtypes.get(band.reads[0][0], "float32"))
        if dtype.kind not in "iu" or band.nodata is not None:
            continue
        picks = sorted({int(k) for k in np.linspace(0, len(band.reads) - 1, min(4, len(band.reads)))})
        reads = tuple(band.reads[k] for k in picks)
        try:
            with quiet_rasterio():
                raw = np.concatenate(
                    [_stored_values(band, _read_many(reads, Window(c, r, w, h), band.warp)).ravel()
                     for r, c, h, w in sample_windows(shape, 3, 32)]  # fmt: skip
                )
        except (CropseqError, rasterio.errors.RasterioError, OSError, ValueError):
            continue  # reading reports its own error later, with the file named
        info = np.iinfo(dtype)
        for value, what in ((info.max, "maximum"), (info.min, "minimum")):
            phys = value * band.scale + band.offset
            if band.valid_range is not None and not band.valid_range[0] <= phys <= band.valid_range[1]:
                continue  # already excluded as invalid
            share = float(np.mean(raw == value)) if raw.size else 0.0
            if share >= FILL_SHARE:
                warning = FillValueWarning(
                    f"{mpath}: band {band.name}: {100 * share:.0f} % of sampled pixels hold {value}, the {what} of "
                    f"{dtype.name}, and there is no nodata value: a fill value? set nodata: {{{band.name}: {value}}} "
                    "(or valid_range) in the manifest, else it is classified as data"
                )
                warning.band = band.name
                warnings.warn(warning, stacklevel=4)


def _reinterpreted(src: _BandSource, m: StackManifest, hs: Sequence[_Header], is_mask: bool, file_nodata: bool) -> _BandSource:
    """Apply the manifest's ``dtype:`` to a band: its stored bits are read as that type.

    The file's nodata value is reinterpreted too (a uint16 fill 65535 read as int16 is
    -1); a nodata set in the manifest is already in the new type's terms.

    Raises:
        CropseqError: the new type's size differs from the stored one, the band's rasters
            differ in type, the band is resampled onto another grid (the warper has mixed
            stored values by then), or it is the ``mask:`` band.
    """
    new = m.dtype.get(src.name)
    if new is None:
        return src
    where = f"dtype.{src.name} in {m.path.name}"
    if is_mask:
        raise CropseqError(f"{where}: the mask band is read as stored (its rule names stored values)", m.path)
    stored = {h.dtype for h in hs}
    if len(stored) > 1:
        raise CropseqError(f"{where}: the band's rasters are stored as {', '.join(sorted(stored))}; one type expected", m.path)
    old = np.dtype(stored.pop())
    if old.itemsize != np.dtype(new).itemsize:
        raise CropseqError(
            f"{where}: {new} cannot reinterpret values stored as {old.name} (sizes differ; same-size types only)", m.path
        )
    if src.warp is not None:
        raise CropseqError(
            f"{where}: a band read onto another grid cannot be reinterpreted (the warper resamples stored values); "
            "put its rasters on the grid first (gdalwarp)",
            m.path,
        )
    nodata = src.nodata
    if file_nodata and nodata is not None and not math.isnan(nodata):
        with np.errstate(invalid="ignore", over="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bits = np.array([nodata]).astype(old)
        if float(bits[0]) == nodata:  # the file's fill value, as its bits read in the new type
            nodata = float(bits.view(new)[0])
    return replace(src, reinterpret=new, nodata=nodata)


def _nodata_key(value: float | None) -> float | None:
    """A nodata value that compares equal to itself: every NaN becomes the one ``math.nan``."""
    return math.nan if value is not None and math.isnan(value) else value


def _band_source(
    m: StackManifest,
    band: str,
    reads: tuple[tuple[str, int], ...],
    file_nodata: float | None,
    file_scale_offset: tuple[float, float] = (1.0, 0.0),
) -> _BandSource:
    """A band's reads and value rules: the manifest's nodata/scale/offset, else the file's."""
    nd = m.nodata.get(band)
    scale, offset = (m.scale.get(band, 1.0), m.offset.get(band, 0.0)) if band in m.scale_set else file_scale_offset
    return _BandSource(
        name=band,
        reads=reads,
        nodata=nd if nd is not None else (None if file_nodata is None else float(file_nodata)),
        scale=float(scale),
        offset=float(offset),
        valid_range=m.valid_range.get(band),
    )


def _open_zarr(p: Path, chunks: Chunks) -> xr.DataArray:
    try:
        ds = xr.open_zarr(p, chunks={}, decode_coords="all", consolidated=False)
    except Exception as e:  # zarr/xarray raise many types for a broken store
        raise CropseqError(f"cannot read tile store ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})", p) from None
    if CUBE_NAME not in ds.data_vars:
        raise CropseqError(f"tile store has no {CUBE_NAME!r} array", p)
    cube = ds[CUBE_NAME]
    if tuple(cube.dims) != DIMS:
        raise CropseqError(f"tile store array has dims {cube.dims}, expected {DIMS}", p)
    attrs = dict(cube.attrs)
    crs_wkt = attrs.pop("crs_wkt", None)
    transform = attrs.pop("transform", None)
    for k in ("grid_mapping", "_FillValue"):
        attrs.pop(k, None)
    cube = cube.drop_vars([c for c in ("spatial_ref",) if c in cube.coords])
    edge = _chunk_edge(chunks, (cube.sizes["y"], cube.sizes["x"]))
    cube = cube.astype(np.float32).chunk({"time": -1, "band": -1, "y": edge, "x": edge})
    cube = cube.assign_coords(band=np.array([str(b) for b in cube["band"].values], dtype=str))
    cube.attrs = attrs
    cube.attrs["source"] = str(p.resolve())
    cube.encoding = {}
    cube.name = CUBE_NAME
    if crs_wkt:
        cube = cube.rio.write_crs(CRS.from_wkt(crs_wkt))
    if transform is not None:
        cube = cube.rio.write_transform(Affine(*transform[:6]))
    return cube


def cube_crs(cube: xr.DataArray) -> CRS | None:
    """The cube's CRS as a rasterio CRS (None when it has none)."""
    crs = cube.rio.crs
    return None if crs is None else CRS.from_user_input(crs)


def cube_grid(cube: xr.DataArray) -> TargetGrid:
    """The cube's pixel grid (CRS, transform, shape): what other rasters are read onto."""
    return TargetGrid(cube_crs(cube), cube.rio.transform(), (int(cube.sizes["y"]), int(cube.sizes["x"])))


def crs_name(crs: CRS | None) -> str:
    """A short human-readable CRS.

    ``EPSG:32633 (WGS 84 / UTM zone 33N)`` when the CRS has an EPSG code, else the projection
    method and PROJ string, e.g. ``Sinusoidal (+proj=sinu +lon_0=0 ... +units=m)``.
    """
    if crs is None:
        return "none"
    from pyproj import CRS as ProjCRS

    pcrs = ProjCRS.from_wkt(crs.to_wkt())
    epsg = crs.to_epsg()
    if epsg is not None:
        return f"EPSG:{epsg} ({pcrs.name})"
    method = pcrs.coordinate_operation.method_name if pcrs.coordinate_operation else pcrs.name
    with warnings.catch_warnings():  # "may lose information": fine for a display string
        warnings.simplefilter("ignore")
        proj4 = pcrs.to_proj4()
    proj4 = proj4.replace(" +type=crs", "").replace(" +no_defs", "")
    return f"{method} ({proj4})"


def format_time(times: np.ndarray | pd.DatetimeIndex) -> list[str]:
    """ISO strings: ``YYYY-MM-DD`` when every time is midnight, else full timestamps."""
    idx = pd.DatetimeIndex(times)
    if len(idx) and (idx == idx.normalize()).all():
        return [t.strftime("%Y-%m-%d") for t in idx]
    return [t.isoformat() for t in idx]


#: Above this many chunks, ``inspect`` estimates missing shares from a sample of windows.
EXACT_SUMMARY_MAX_CHUNKS = 1024


def sample_windows(shape: tuple[int, int], per_side: int = 4, size: int = 64) -> list[tuple[int, int, int, int]]:
    """``(row_off, col_off, height, width)`` of a bounded, evenly spread set of windows.

    The whole raster when it is small; else a ``per_side x per_side`` grid of
    ``size``-pixel windows centred in equal cells (deterministic: the same stack always
    gives the same sample).
    """
    ny, nx = int(shape[0]), int(shape[1])
    if ny * nx <= (per_side * size) ** 2:
        return [(0, 0, ny, nx)]
    h, w = min(size, ny), min(size, nx)
    rows = [int((k + 0.5) * ny / per_side - h / 2) for k in range(per_side)]
    cols = [int((k + 0.5) * nx / per_side - w / 2) for k in range(per_side)]
    return [(max(0, min(r, ny - h)), max(0, min(c, nx - w)), h, w) for r in rows for c in cols]


def sample_cube(cube: xr.DataArray, per_side: int = 4, size: int = 64) -> np.ndarray:
    """Cube values in :func:`sample_windows`: float32 ``(time, band, pixels)``.

    Reads only those windows (directly from the rasters for a cube from
    :func:`open_stack`), so the cost is bounded whatever the scene's size.
    """
    wins = sample_windows((cube.sizes["y"], cube.sizes["x"]), per_side, size)
    reader = window_reader(cube)
    if reader is not None:
        blocks = [reader(r, c, h, w) for r, c, h, w in wins]
    else:  # one compute: windows in the same chunk share its read (STAC, Zarr cubes)
        blocks = list(dask.compute(*_lazy_windows(cube, wins)))
    return _join_windows(blocks)


def _lazy_windows(cube: xr.DataArray, wins: Sequence[tuple[int, int, int, int]]) -> list[Any]:
    """The cube's values in ``wins``, lazily (computed with whatever else shares their chunks)."""
    return [cube.isel(y=slice(r, r + h), x=slice(c, c + w)).transpose(*DIMS).data for r, c, h, w in wins]


def _join_windows(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """Window blocks ``(time, band, h, w)`` -> float32 ``(time, band, pixels)``."""
    parts = [np.asarray(b, np.float32).reshape(b.shape[0], b.shape[1], -1) for b in blocks]
    return np.concatenate(parts, axis=2)


def stack_summary(cube: xr.DataArray) -> dict[str, Any]:
    """What ``cropseq inspect`` prints: dates, bands, grid and missing fractions.

    Args:
        cube: A cube from :func:`open_stack`.

    Returns:
        A JSON-ready dict: ``source``, ``dates`` (ISO strings), ``bands``, ``crs`` (authority
        string when there is one, else WKT), ``crs_name`` (human-readable), ``crs_wkt``,
        ``resolution`` ``[xres, yres]`` (positive), ``bounds`` ``[left, bottom, right, top]``,
        ``shape`` ``{time, band, y, x}``, ``missing_fraction`` ``{band: fraction of NaN}``,
        ``missing_sampled_px``: None when the fractions count every pixel (up to
        :data:`EXACT_SUMMARY_MAX_CHUNKS` chunks), else the pixels of the bounded sample
        (:func:`sample_cube`) they were estimated from. Either way the cost is bounded:
        no per-chunk graph is built for a large scene. ``band_resolution``: ``{band:
        {resolution: [xres, yres] of its first raster in that raster's CRS units,
        resampling: the method reading it onto the cube's grid, or None (read as is)}}``,
        for a cube just opened from a manifest (else empty). ``value_stats``: ``{band: {min,
        p1, p99, max, n_valid}}`` of the valid (non-NaN) values in the bounded sample
        (:func:`sample_cube`, never a full read; ``value_sampled_px`` pixels, every date),
        in physical units; ``value_warnings``: lines for bands whose values sit at their
        integer type's limits (:func:`limit_warnings`).
    """
    crs = cube_crs(cube)
    t = cube.rio.transform()
    h, w = cube.sizes["y"], cube.sizes["x"]
    left, top = t.c, t.f
    right, bottom = t.c + w * t.a, t.f + h * t.e
    n_chunks = int(np.prod(cube.data.numblocks)) if isinstance(cube.data, da.Array) else 1
    wins = sample_windows((h, w))
    sampled = None if wins == [(0, 0, h, w)] else int(sum(wh * ww for _, _, wh, ww in wins))
    if sampled is not None and n_chunks <= EXACT_SUMMARY_MAX_CHUNKS and isinstance(cube.data, da.Array):
        # Exact shares and the sample in one compute: each chunk is read once for both
        # (a STAC chunk read costs a file open per date and band).
        missing, *blocks = dask.compute(cube.isnull().mean(dim=("time", "y", "x")).data, *_lazy_windows(cube, wins))
        values, sampled = _join_windows(blocks), None
    else:  # the sample is the whole raster, or the scene is too large to count exactly
        values = sample_cube(cube)  # bounded: the value statistics (and missing shares of a large scene)
        missing = np.isnan(values).mean(axis=(0, 2))
    stats = value_stats(values, [str(b) for b in cube["band"].values])
    epsg = crs.to_epsg() if crs is not None else None
    return {
        "source": cube.attrs.get("source"),
        "dates": format_time(cube["time"].values),
        "bands": [str(b) for b in cube["band"].values],
        "crs": (f"EPSG:{epsg}" if epsg else crs.to_wkt()) if crs is not None else None,
        "crs_name": crs_name(crs),
        "crs_wkt": crs.to_wkt() if crs is not None else None,
        "resolution": [abs(float(t.a)), abs(float(t.e))],
        "bounds": [float(min(left, right)), float(min(bottom, top)), float(max(left, right)), float(max(bottom, top))],
        "shape": {"time": cube.sizes["time"], "band": cube.sizes["band"], "y": h, "x": w},
        "missing_fraction": {str(b): float(v) for b, v in zip(cube["band"].values, missing, strict=True)},
        "missing_sampled_px": sampled,
        "band_resolution": _band_resolution(cube),
        "stac": _stac_listing(cube),  # source: stac: items, dates, asset keys, resolution per band
        "composite": cube.attrs.get("composite"),  # None, or period/method/origin/bins/empty_bins
        "value_stats": stats,
        "value_sampled_px": int(values.shape[2]),
        "value_warnings": limit_warnings(values, stats, _value_types(cube)),
    }


def _graph_layers(data: da.Array) -> Mapping[str, Any]:
    """The layers of a Dask array's graph, by name (the read layer is one of them)."""
    graph = data.__dask_graph__()
    assert isinstance(graph, HighLevelGraph)  # a dask array's graph is always high-level
    return graph.layers


def _opened_of(cube: xr.DataArray) -> _Opened | None:
    """The open registry's entry of the stack ``cube`` was read from (None: not one)."""
    data = getattr(cube, "data", None)
    if not isinstance(data, da.Array):
        return None
    with _OPENED_LOCK:
        found = [o for n, o in _OPENED.items() if n in _graph_layers(data)]
    return found[0] if len(found) == 1 else None


def _value_types(cube: xr.DataArray) -> dict[str, tuple[str, float, float]]:
    """Band -> (raw dtype as read, scale, offset) for a cube just opened from a manifest."""
    opened = _opened_of(cube)
    return opened.value_types if opened is not None else {}


def value_stats(values: np.ndarray, bands: Sequence[str]) -> dict[str, dict[str, float | int | None]]:
    """Per band: ``min``, ``p1``, ``p99``, ``max`` and ``n_valid`` of the finite values.

    Args:
        values: ``(time, band, pixels)`` cube values (e.g. from :func:`sample_cube`).
        bands: The band names, in ``values`` order.
    """
    out: dict[str, dict[str, float | int | None]] = {}
    for c, b in enumerate(bands):
        v = values[:, c].ravel()
        v = v[np.isfinite(v)]
        if v.size == 0:
            out[b] = {"min": None, "p1": None, "p99": None, "max": None, "n_valid": 0}
            continue
        p1, p99 = np.percentile(v, [1, 99])
        # 7 significant digits: what float32 holds (6.5535, not 6.553500175476074)
        vals = {k: float(f"{x:.7g}") for k, x in (("min", v.min()), ("p1", p1), ("p99", p99), ("max", v.max()))}
        out[b] = {**vals, "n_valid": int(v.size)}
    return out


def limit_warnings(
    values: np.ndarray, stats: dict[str, dict[str, Any]], value_types: dict[str, tuple[str, float, float]]
) -> list[str]:
    """One line per band whose valid values reach its integer type's limit.

    A cube maximum of 6.5535 on NDVI is 65535 x 0.0001: a fill value without nodata, or
    small negatives stored unsigned; a signed type's extremes (32767, -32768) are fills or
    saturation. (An unsigned minimum, 0, is an ordinary value and is not flagged.)
    """
    out = []
    for c, (b, s) in enumerate(stats.items()):
        if b not in value_types or not s["n_valid"]:
            continue
        name, scale, offset = value_types[b]
        dtype = np.dtype(name)
        if dtype.kind not in "iu":
            continue
        info = np.iinfo(dtype)
        limits = [(int(info.max), "maximum", s["max"])] + ([(int(info.min), "minimum", s["min"])] if dtype.kind == "i" else [])
        v = values[:, c].ravel()
        v = v[np.isfinite(v)]
        for raw, what, seen in limits:
            phys = raw * scale + offset
            if not np.isclose(seen, phys, rtol=1e-6, atol=0):
                continue
            share = float(np.mean(np.isclose(v, phys, rtol=1e-6, atol=0)))
            as_raw = str(raw)
            if (scale, offset) != (1.0, 0.0):
                as_raw = f"{phys:.6g} = {raw} × {scale:g}" + (f" + {offset:g}" if offset else "")
            fix = f"nodata: {{{b}: {raw}}} (a fill value)"
            if dtype.kind == "u":
                fix += f", or dtype: {{{b}: int{dtype.itemsize * 8}}} (negatives stored unsigned)"
            out.append(
                f"band {b}: {100 * share:.2f} % of sampled valid values sit at {as_raw}, the {what} of {dtype.name}: "
                f"a fill value, clipped data, or negatives stored unsigned? in stack.yaml set {fix}"
            )
    return out


def rewarn_opening(caught: Sequence[warnings.WarningMessage], value_warnings: Sequence[str]) -> None:
    """Re-emit the warnings caught while a stack opened, one line per problem.

    A band's :class:`FillValueWarning` (a sample read at open) is dropped when the value
    statistics of :func:`stack_summary` warn about the same band (``value_warnings``, from
    :func:`limit_warnings`: the fuller line, with the share of the whole sample); every
    other warning is re-emitted as it was. rasterio's own per-file warnings never get this
    far (:func:`cropseq.raster_access.quiet_rasterio`).
    """
    covered = {m.group(1) for line in value_warnings if (m := re.match(r"band (\S+?):", line))}
    for w in caught:
        if isinstance(w.message, FillValueWarning) and w.message.band in covered:
            continue
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _stac_listing(cube: xr.DataArray) -> dict[str, Any] | None:
    """What a ``source: stac`` stack found (:func:`cropseq.stac_source.stac_listing`), else None."""
    from cropseq.stac_source import stac_listing

    return stac_listing(cube)


def _band_resolution(cube: xr.DataArray) -> dict[str, dict[str, Any]]:
    """Each band's resolution as read and how it is resampled (from the open registry)."""
    opened = _opened_of(cube)
    if opened is None:
        return {}
    native = opened.native
    return {
        str(b): {"resolution": [native[str(b)][0], native[str(b)][1]], "resampling": native[str(b)][2]}
        for b in cube["band"].values
        if str(b) in native
    }

