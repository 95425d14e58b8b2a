"""Whole-scene prediction with Dask: chunk by chunk, with halos, local or distributed.

How a cube becomes a crop map:

1. The cube (``time, band, y, x``; see ``docs/ARCHITECTURE.md``) is cut to the season
   window (``start``/``end``), its bands are selected and reordered by name to the model's
   bands, and it is rechunked to ``chunk x chunk`` pixels with the whole time axis in each
   chunk.
2. Each chunk gets a halo of ``h = predictor.patch // 2`` pixels of its neighbours (NaN
   beyond the scene edge, which models treat as missing) and goes through
   ``predictor.predict_image`` once. Because every output pixel sees exactly its own
   ``patch x patch`` neighbourhood, the map does not depend on the chunk size. A cube
   opened from a stack manifest (and cut to dates/bands only) reads each chunk's window
   *with* its halo in one task (:func:`cropseq.io.read_with_halo`), so chunks do not depend
   on each other and memory does not grow with the scene; any other cube gets the halo
   from :func:`dask.array.overlap.overlap`, which holds a chunk's read until its eight
   neighbours are read (measured with 2 workers and the default deep model: +33 % peak
   memory from a 512² to a 2048² scene, against +7 % with the direct reads). Reading the
   halo decodes the neighbouring blocks of tiled rasters once more: about 6 % of the
   default deep model's time on 256-pixel tiles and chunks (``benchmarks/README.md``).
3. Pixels with fewer than ``min_valid`` valid observations (a date is valid at a pixel
   when all model bands are finite there) are nodata: class 0, confidence NaN. A chunk
   without any such pixel is not sent to the model at all.
4. Per pixel: class code (uint8, ``predictor.classes`` codes, 0 = nodata), confidence
   (float32 0..1, the probability of the mapped class, NaN = nodata), optionally all class
   probabilities ``(K, y, x)`` float32.

:func:`predict_cube` returns this lazily as an ``xarray.Dataset``;
:func:`run_prediction` computes it chunk by chunk and streams the chunks into COGs
(:class:`cropseq.outputs.CropMapWriter`): memory is bounded by the chunk size (roughly
``T * C * (chunk + 2h)^2 * 4`` bytes of input per chunk in flight, plus the model's
activations), never by the scene size.

Where the chunks run (``run_prediction``):

- ``scheduler="tcp://host:8786"``: an existing ``dask.distributed`` cluster. Workers need
  read access to the stack (and the model path); the client process gathers the finished
  chunks and writes the outputs, so workers need no access to the output folder.
- ``workers=N`` (N >= 1): a ``LocalCluster`` of N worker processes, ``threads`` threads
  each (default 1; distributed pins BLAS/OpenMP/torch to one thread per worker process).
- ``workers=0``: no cluster; Dask's threaded scheduler in this process with ``threads``
  threads (default: all cores; torch's own thread pool is shrunk meanwhile so the two do
  not oversubscribe the cores). Lowest overhead: the right choice for small stacks, tests,
  and Snakemake jobs that already run one job per core.
- ``workers=None`` (default): a ``LocalCluster`` sized automatically: one single-threaded
  worker per core, fewer when a worker's memory (chunk buffers plus the model's working
  memory, :data:`MODEL_WORKING_BYTES`) would not fit in half the available RAM; one worker
  with two threads when the model runs on a GPU (one CUDA context; the second thread
  overlaps reading with compute).

The model is loaded **once per worker process**, not once per chunk: tasks carry only the
model *path* (a small :class:`ModelRef`) and look it up in a per-process cache keyed by
``(loader, path, mtime, size, device)`` (:func:`cached_predictor`); threads of a process
share the loaded predictor. :func:`load_count` tells how many loads a process did.

Failures: a task that raises is retried ``retries`` times (default 2) by the distributed
scheduler before the prediction fails; tasks of a worker that dies are rescheduled on the
remaining workers by the scheduler itself (``distributed.scheduler.allowed-failures``,
default 3). When the prediction fails, no output appears and temporary files are removed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
import os
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from affine import Affine
from dask.base import tokenize

from cropseq.classes import NODATA_CODE, ClassTable
from cropseq.errors import CropseqError
from cropseq.io import BlockWindows, WindowReader, read_with_halo, window_reader
from cropseq.predictor import Predictor, load_predictor
from cropseq.smoothing import Smoothing
from cropseq.uncertainty import MEASURES, check_measures, uncertainty

#: Default chunk edge in pixels (the cube contract's chunking).
DEFAULT_CHUNK = 512
#: Automatic chunks are never smaller than this (per-chunk overhead and halo re-reads).
MIN_AUTO_CHUNK = 128
#: Automatic chunks give every parallel slot (worker thread) at least this many chunks.
CHUNKS_PER_SLOT = 4


def auto_chunk(height: int, width: int, slots: int) -> int:
    """The chunk edge for a ``height x width`` scene mapped by ``slots`` parallel threads.

    :data:`DEFAULT_CHUNK`, halved (down to :data:`MIN_AUTO_CHUNK`) until every slot gets
    :data:`CHUNKS_PER_SLOT` chunks: one 512-px chunk for two workers would leave one idle
    and the progress bar at 0/1 until the end.
    """
    chunk = DEFAULT_CHUNK
    while chunk > MIN_AUTO_CHUNK and math.ceil(height / chunk) * math.ceil(width / chunk) < CHUNKS_PER_SLOT * max(slots, 1):
        chunk //= 2
    return max(chunk, MIN_AUTO_CHUNK)
#: Default minimum number of valid observations for a pixel to be classified.
#: Fewer than three dates cannot describe a seasonal profile; the model would be guessing.
DEFAULT_MIN_VALID = 3
#: Default number of times the distributed scheduler retries a failed chunk task.
DEFAULT_RETRIES = 2

Loader = Callable[[Path, str], Predictor]
ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------- model cache
_CACHE: OrderedDict[tuple[Any, ...], Predictor] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 2  # a process rarely needs more than one model; keep GPU memory bounded
_LOADS = 0


def _default_loader(path: Path, device: str) -> Predictor:
    return load_predictor(path, device=device)


def cached_predictor(
    path: str | os.PathLike[str],
    device: str = "auto",
    loader: Loader | None = None,
) -> Predictor:
    """The predictor for a model file, loaded at most once per process.

    Keyed by the loader, the resolved path, the file's mtime and size (a retrained model
    under the same name is reloaded) and the device. Thread-safe: concurrent callers wait
    for the first load instead of loading again.

    Args:
        path: Model file (``*.pt`` checkpoint or ``*.skops`` RandomForest).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (deep models only).
        loader: ``loader(path, device) -> Predictor``; default
            :func:`cropseq.predictor.load_predictor`. Must be picklable to run on
            distributed workers (a module-level function).

    Raises:
        CropseqError: if the model file is missing or not a cropseq model.
    """
    global _LOADS
    p = Path(path).resolve()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise CropseqError("model file not found", path) from None
    fn = loader or _default_loader
    key = (f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}", str(p), st.st_mtime_ns, st.st_size, device)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
        predictor = fn(p, device)
        _LOADS += 1
        _CACHE[key] = predictor
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return predictor


def load_count() -> int:
    """How many times this process loaded a model through :func:`cached_predictor`."""
    return _LOADS


def clear_predictor_cache() -> None:
    """Forget the loaded predictors of this process (and reset :func:`load_count`)."""
    global _LOADS
    with _CACHE_LOCK:
        _CACHE.clear()
        _LOADS = 0


@dataclass(frozen=True, eq=False)
class ModelRef:
    """What a chunk task carries to find its predictor: a path (cheap to ship) or an object.

    Attributes:
        path: Model file; loaded through :func:`cached_predictor` in the task's process.
        device: Device for deep models.
        loader: Optional custom loader (see :func:`cached_predictor`).
        predictor: An in-memory predictor instead of a path. Fine for the threaded
            scheduler; on a distributed cluster it is pickled into the task graph, so pass
            a path there.
    """

    path: str | None = None
    device: str = "auto"
    loader: Loader | None = None
    predictor: Predictor | None = field(default=None, repr=False)

    def get(self) -> Predictor:
        """The predictor (loaded on first use in this process)."""
        if self.predictor is not None:
            return self.predictor
        assert self.path is not None
        return cached_predictor(self.path, self.device, self.loader)

    def token(self) -> str:
        """A key identifying the model, for naming Dask tasks."""
        if self.predictor is not None:
            return f"obj-{id(self.predictor)}-{uuid.uuid4().hex}"
        st = Path(self.path).stat() if self.path else None  # type: ignore[arg-type]
        return tokenize(self.path, st.st_mtime_ns if st else 0, self.device, getattr(self.loader, "__qualname__", None))


def _model_ref(
    model: Predictor | str | os.PathLike[str],
    device: str,
    loader: Loader | None,
    client_device: str | None = None,
) -> tuple[ModelRef, Predictor]:
    """A task-side reference plus a client-side predictor (for bands, classes, patch).

    ``client_device`` overrides the device of the client-side copy (the client of a
    multi-process cluster only reads metadata, so it loads on the CPU).
    """
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise CropseqError("model file not found", path)
        ref = ModelRef(str(path.resolve()), device, loader)
        return ref, cached_predictor(path, client_device or device, loader)
    if not all(hasattr(model, a) for a in ("bands", "classes", "patch", "predict_image")):
        raise TypeError(f"expected a model path or a Predictor, got {type(model).__name__}")
    return ModelRef(predictor=model, device=device), model


# --------------------------------------------------------------------------- cube prep
def _source(cube: xr.DataArray) -> str:
    return str(cube.attrs.get("source") or cube.name or "stack")


def _parse_date(value: Any, what: str) -> np.datetime64 | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, (_dt.date, np.datetime64, pd.Timestamp)):
            ts = pd.Timestamp(value)
        else:
            # ISO only (np.datetime64 is strict): pandas would read "june" as this June.
            ts = pd.Timestamp(np.datetime64(str(value).strip(), "ns"))
    except (ValueError, TypeError):
        raise CropseqError(f"{what} date {value!r} is not a date (use YYYY-MM-DD)") from None
    if ts is pd.NaT:
        raise CropseqError(f"{what} date {value!r} is not a date (use YYYY-MM-DD)")
    return np.datetime64(ts.tz_localize(None) if ts.tzinfo else ts, "ns")


def select_season(cube: xr.DataArray, start: Any = None, end: Any = None) -> xr.DataArray:
    """The dates of ``cube`` within ``[start, end)`` (start inclusive, end exclusive).

    End-exclusive like the ``from``/``to`` season bounds of labels and ``cropseq samples``,
    so one season's ``--start 2011-09-01 --end 2012-09-01`` means the same everywhere.

    Use it to pick one season from a multi-year stack (e.g. one of dtwSat's six).

    Args:
        cube: A cube with a datetime ``time`` coordinate.
        start, end: ``YYYY-MM-DD`` strings, dates or datetimes; None = open end.

    Raises:
        CropseqError: on an unparsable date, ``start > end``, a stack without dates, or
            when no date falls in the window (names the stack and its date range).
    """
    s, e = _parse_date(start, "start"), _parse_date(end, "end")
    if s is None and e is None:
        return cube
    src = _source(cube)
    t = np.asarray(cube["time"].values)
    if not np.issubdtype(t.dtype, np.datetime64):
        raise CropseqError("the stack has no dates, so a --start/--end window cannot be applied", src)
    if s is not None and e is not None and s >= e:
        raise CropseqError(f"start {start} is not before end {end}", src)
    keep = np.ones(t.shape, bool)
    if s is not None:
        keep &= t >= s
    if e is not None:
        keep &= t < e
    if not keep.any():
        first = str(t.min())[:10] if t.size else "-"
        last = str(t.max())[:10] if t.size else "-"
        raise CropseqError(
            f"no dates between {start or 'the start'} and {end or 'the end'} (the stack spans {first} to {last})",
            src,
        )
    return cube.isel(time=_index(np.flatnonzero(keep)))


def select_bands(cube: xr.DataArray, bands: list[str]) -> xr.DataArray:
    """``cube`` with exactly ``bands``, in that order (matched by name).

    Raises:
        CropseqError: naming the stack, the missing bands and the bands it has.
    """
    have = [str(b) for b in np.asarray(cube["band"].values)]
    missing = [b for b in bands if b not in have]
    if missing:
        raise CropseqError(
            f"stack lacks band(s) {', '.join(missing)} that the model needs "
            f"(model bands: {', '.join(bands)}; stack bands: {', '.join(have)})",
            _source(cube),
        )
    idx = [have.index(b) for b in bands]
    return cube.isel(band=_index(idx))


def _index(idx: Any) -> slice | list[int]:
    """A consecutive ascending index as a slice: Dask slices any number of chunks lazily,
    while a list ("take") builds one task per chunk, unbounded for a huge scene."""
    idx = [int(i) for i in idx]
    if idx and idx == list(range(idx[0], idx[-1] + 1)):
        return slice(idx[0], idx[-1] + 1)
    return idx


def day_of_year(cube: xr.DataArray) -> np.ndarray:
    """``(T,)`` float32 day of year of each date (NaN when the stack has no dates)."""
    t = np.asarray(cube["time"].values)
    if np.issubdtype(t.dtype, np.datetime64):
        return pd.DatetimeIndex(t).day_of_year.to_numpy().astype(np.float32)
    return np.full(t.shape, np.nan, np.float32)


def _check_cube(cube: Any) -> xr.DataArray:
    if not isinstance(cube, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray cube, got {type(cube).__name__}")
    need = {"time", "band", "y", "x"}
    if set(cube.dims) != need:
        raise CropseqError(f"a cube needs dims (time, band, y, x), this one has {cube.dims}", _source(cube))
    return cube.transpose("time", "band", "y", "x")


def _axis_chunks(n: int, chunk: int, halo: int) -> tuple[int, ...]:
    """Chunk sizes along one axis; a last chunk thinner than the halo is merged into its
    neighbour (Dask's overlap needs every chunk at least as deep as the halo)."""
    sizes = [chunk] * (n // chunk)
    if n % chunk:
        sizes.append(n % chunk)
    if len(sizes) > 1 and sizes[-1] < max(halo, 1):
        sizes[-2] += sizes.pop()
    return tuple(sizes) or (n,)


def _core_window(cube: xr.DataArray, halo: int) -> tuple[int, int, int, int] | None:
    """``(row_off, col_off, height, width)`` of a tile's core inside its array, for tiles.

    Tiles (:func:`cropseq.tiling.read_tile`, opened from ``<tile>.zarr``) carry
    ``tile_core`` and ``tile_halo`` attrs. Their map covers the core only, so per-tile maps
    mosaic without overlap; the halo feeds the model's neighbourhood at the core's border.

    Raises:
        CropseqError: if the tile's halo is thinner than the model's (the border pixels
            would see NaN instead of their real neighbours) or the core lies outside.
    """
    core = cube.attrs.get("tile_core")
    if core is None:
        return None
    src = _source(cube)
    tile_halo = int(cube.attrs.get("tile_halo", 0))
    if tile_halo < halo:
        raise CropseqError(
            f"the tile's halo ({tile_halo} px) is thinner than the model needs ({halo} px for its "
            f"{2 * halo + 1} px patch); re-tile with --halo {halo}",
            src,
        )
    r, c, h, w = (int(v) for v in core)
    if r < 0 or c < 0 or h <= 0 or w <= 0 or r + h > cube.sizes["y"] or c + w > cube.sizes["x"]:
        raise CropseqError(f"tile core window {list(core)} lies outside the tile ({cube.sizes['y']} x {cube.sizes['x']} px)", src)
    return r, c, h, w


# --------------------------------------------------------------------------- chunk work
def _predict_block(
    block: np.ndarray,
    *,
    model: ModelRef,
    doy: np.ndarray,
    halo: int,
    min_valid: int,
    n_classes: int,
) -> np.ndarray:
    """Probabilities ``(K, H, W)`` of one chunk's core; NaN where the pixel is nodata."""
    block = np.ascontiguousarray(block, dtype=np.float32)
    t, c, hh, ww = block.shape
    h, w = hh - 2 * halo, ww - 2 * halo
    core = block[:, :, halo : halo + h, halo : halo + w]
    n_valid = np.isfinite(core).all(axis=1).sum(axis=0)  # valid dates per pixel
    ok = n_valid >= min_valid
    out = np.full((n_classes, h, w), np.nan, np.float32)
    if not ok.any():
        return out  # nothing to classify: skip the model (and its load) entirely
    probs = np.asarray(model.get().predict_image(block, doy, mask=None if ok.all() else ok), dtype=np.float32)
    if probs.shape != (n_classes, h, w):
        raise CropseqError(f"the model returned probabilities of shape {probs.shape}, expected {(n_classes, h, w)}")
    ok &= np.isfinite(probs).all(axis=0)  # a model that cannot decide gives nodata, not a guess
    out[:, ok] = probs[:, ok]
    return out


def _predict_smooth_block(block: np.ndarray, *, smooth: Smoothing | None = None, **kw: Any) -> np.ndarray:
    """Probabilities of one chunk's core, smoothed when asked.

    With smoothing the chunk arrives with the model's halo *plus* the smoothing radius, so
    the model predicts the core and a ring of ``radius`` pixels around it, which the
    smoothing consumes: every core pixel sees its full neighbourhood whatever the chunk.
    """
    probs = _predict_block(block, **kw)
    return probs if smooth is None else smooth.apply(probs)


def _class_block(probs: np.ndarray, codes: np.ndarray) -> np.ndarray:
    conf = probs.max(axis=0)
    idx = probs.argmax(axis=0)  # ties: the first (lowest-index) class, deterministically
    return np.where(np.isnan(conf), NODATA_CODE, codes[idx]).astype(np.uint8)


def _confidence_block(probs: np.ndarray) -> np.ndarray:
    return probs.max(axis=0).astype(np.float32)  # all-NaN (nodata) columns stay NaN


Layers = dict[str, np.ndarray]


def _finish_block(probs: np.ndarray, codes: np.ndarray, want: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, Layers]:
    """Class codes, confidence and the extra layers ``want`` names (``probabilities``, measures)."""
    layers = {n: (probs if n == "probabilities" else uncertainty(probs, n)) for n in want}
    return _class_block(probs, codes), _confidence_block(probs), layers


@dataclass(frozen=True)
class DirectBlocks:
    """Everything one chunk task needs, independent of every other chunk (picklable)."""

    reader: WindowReader
    windows: BlockWindows
    predict: dict[str, Any]  # keyword arguments of _predict_block

    def finish(self, i: int, j: int, codes: np.ndarray, want: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, Layers]:
        """Class codes, confidence and the wanted layers of chunk ``(i, j)``."""
        block = self.reader(*self.windows.window(i, j))
        return _finish_block(_predict_smooth_block(block, **self.predict), codes, want)


# --------------------------------------------------------------------------- the plan
@dataclass
class PredictionPlan:
    """A lazy prediction: the probability array and everything needed to write it.

    Attributes:
        probs: ``(K, y, x)`` float32 Dask array, NaN where nodata.
        classes: The model's class table (``probs`` row ``k`` is ``classes.classes[k]``).
        y, x: Output pixel-centre coordinates.
        transform: Output affine transform.
        crs: Output CRS (or None).
        source: The stack's name (for messages).
        dates: Dates used (after the season window).
        min_valid: Effective minimum of valid observations.
        halo: Halo in pixels read around each chunk (``patch // 2`` plus the smoothing
            radius).
        bands: The model's bands (the cube's order after selection).
        kind: The predictor's kind (``deep``, ``rf``...).
        direct: For a stack opened from a manifest: each chunk as one independent task
            (read with halo, predict, finish), so :func:`run_prediction` can submit chunks
            a few at a time instead of building a graph of the whole scene.
    """

    probs: da.Array
    classes: ClassTable
    y: np.ndarray
    x: np.ndarray
    transform: Affine
    crs: Any
    source: str
    dates: np.ndarray
    min_valid: int
    halo: int
    bands: list[str]
    kind: str = "deep"
    direct: DirectBlocks | None = None
    smooth: Smoothing | None = None

    @property
    def n_chunks(self) -> int:
        return int(self.probs.numblocks[1] * self.probs.numblocks[2])

    @property
    def codes(self) -> np.ndarray:
        return np.asarray(self.classes.codes, dtype=np.uint8)

    def offsets(self) -> Iterator[tuple[int, int, int, int]]:
        """``(i, j, row_off, col_off)`` of every output chunk."""
        rows = np.concatenate([[0], np.cumsum(self.probs.chunks[1])[:-1]])
        cols = np.concatenate([[0], np.cumsum(self.probs.chunks[2])[:-1]])
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                yield i, j, int(r), int(c)


def plan_prediction(
    cube: xr.DataArray,
    model: Predictor | str | os.PathLike[str],
    *,
    chunk: int = DEFAULT_CHUNK,
    min_valid: int | None = None,
    start: Any = None,
    end: Any = None,
    device: str = "auto",
    loader: Loader | None = None,
    smooth: Smoothing | None = None,
    _client_device: str | None = None,
) -> PredictionPlan:
    """Build the lazy prediction graph (see :func:`predict_cube` for the arguments)."""
    cube = _check_cube(cube)
    src = _source(cube)
    if int(chunk) < 16:
        raise CropseqError(f"chunk size {chunk} px is too small (at least 16)")
    chunk = int(chunk)
    ref, predictor = _model_ref(model, device, loader, _client_device)
    bands = [str(b) for b in predictor.bands]
    classes = predictor.classes
    model_halo = int(predictor.patch) // 2
    # The smoothing's neighbourhood needs probabilities around the core: a wider halo.
    halo = model_halo + (smooth.radius if smooth is not None else 0)

    cube = select_season(cube, start, end)
    cube = select_bands(cube, bands)
    n_dates = int(cube.sizes["time"])
    if n_dates == 0:
        raise CropseqError("the stack has no dates", src)
    if min_valid is None:
        min_valid = min(DEFAULT_MIN_VALID, n_dates)
    min_valid = int(min_valid)
    if min_valid < 1:
        raise CropseqError(f"min_valid must be at least 1 (got {min_valid}): a pixel without observations cannot be classified")
    if min_valid > n_dates:
        raise CropseqError(
            f"min_valid={min_valid} exceeds the {n_dates} date(s) selected, so no pixel could be classified; lower --min-valid",
            src,
        )
    doy = day_of_year(cube)
    check_timeline = getattr(predictor, "check_timeline", None)
    if callable(check_timeline):  # in the client, before any chunk runs (RandomForest: per-date features)
        check_timeline(np.asarray(cube["time"].values), src)

    from cropseq.evaluation import warn_if_off_scale
    from cropseq.io import sample_cube

    warn_if_off_scale(predictor, sample_cube(cube), src, band_axis=1)  # a bounded sample of pixels (T, C, M)
    ny, nx = int(cube.sizes["y"]), int(cube.sizes["x"])
    ych, xch = _axis_chunks(ny, chunk, halo), _axis_chunks(nx, chunk, halo)
    reader = window_reader(cube)
    direct = None
    if reader is not None:
        direct = DirectBlocks(
            reader, BlockWindows.from_chunks(ych, xch, halo),
            {"model": ref, "doy": doy, "halo": model_halo, "min_valid": min_valid, "n_classes": len(classes), "smooth": smooth},
        )  # fmt: skip
    if reader is not None and halo:
        # Each chunk reads its own halo: chunks do not depend on each other, so memory
        # stays flat as the scene grows (overlap would hold neighbours' reads).
        data = read_with_halo(reader, ych, xch, halo)
    else:
        data = cube.data
        if not isinstance(data, da.Array):
            data = da.from_array(np.asarray(data), chunks=(-1, -1, ych, xch))
        data = data.astype(np.float32, copy=False).rechunk(((n_dates,), (len(bands),), ych, xch))
        if halo:
            data = da.overlap.overlap(
                data,
                depth={0: 0, 1: 0, 2: halo, 3: halo},
                boundary={0: "none", 1: "none", 2: np.nan, 3: np.nan},  # beyond the edge = missing
            )
    k = len(classes)
    name = "cropseq-predict-" + tokenize(data.name, ref.token(), doy.tobytes(), halo, min_valid, k, smooth)
    probs = data.map_blocks(
        _predict_smooth_block,
        smooth=smooth,
        model=ref,
        doy=doy,
        halo=model_halo,
        min_valid=min_valid,
        n_classes=k,
        drop_axis=0,
        chunks=((k,), ych, xch),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
        name=name,
    )

    y = np.asarray(cube["y"].values)
    x = np.asarray(cube["x"].values)
    try:
        transform = cube.rio.transform()
        crs = cube.rio.crs
    except Exception as e:  # noqa: BLE001 - rioxarray raises various errors without georeferencing
        raise CropseqError(f"the stack has no usable georeferencing ({e})", src) from None

    core = _core_window(cube, halo)
    if core is not None:
        r, c, h, w = core
        probs = probs[:, r : r + h, c : c + w]
        y, x = y[r : r + h], x[c : c + w]
        transform = transform @ Affine.translation(c, r)
    return PredictionPlan(
        probs=probs,
        classes=classes,
        y=y,
        x=x,
        transform=transform,
        crs=crs,
        source=src,
        dates=np.asarray(cube["time"].values),
        min_valid=min_valid,
        halo=halo,
        bands=bands,
        kind=str(getattr(predictor, "kind", "deep")),
        direct=direct if core is None else None,
        smooth=smooth,
    )


def predict_cube(
    cube: xr.DataArray,
    model: Predictor | str | os.PathLike[str],
    *,
    chunk: int = DEFAULT_CHUNK,
    min_valid: int | None = None,
    start: Any = None,
    end: Any = None,
    probabilities: bool = False,
    device: str = "auto",
    loader: Loader | None = None,
    smooth: Smoothing | None = None,
    uncertainty_measures: tuple[str, ...] = (),
) -> xr.Dataset:
    """Lazily predict a crop map from a cube.

    Args:
        cube: The cube (``time, band, y, x``), Dask- or NumPy-backed, georeferenced with
            rioxarray. Extra bands are ignored; bands are matched to the model by name.
        model: A model path (loaded once per process, see :func:`cached_predictor`) or a
            :class:`~cropseq.predictor.Predictor`.
        chunk: Chunk edge in pixels; the result does not depend on it.
        min_valid: Minimum number of valid observations for a pixel to be classified;
            default ``min(3, number of dates)``.
        start, end: Season window ``[start, end)`` as ``YYYY-MM-DD``; None = whole stack.
        probabilities: Also return the ``(K, y, x)`` probability cube.
        device: ``auto``, ``cpu`` or ``cuda`` for deep models loaded from a path.
        loader: Custom model loader (see :func:`cached_predictor`).
        smooth: Spatial smoothing of the probabilities before labelling
            (:mod:`cropseq.smoothing`); the result still does not depend on ``chunk``.
        uncertainty_measures: Also return these :mod:`cropseq.uncertainty` measures
            (``entropy``, ``margin``, ``least``) as float32 variables of the same names.

    Returns:
        A lazy ``xarray.Dataset`` with ``class`` (uint8, 0 = nodata), ``confidence``
        (float32 0..1, NaN = nodata) and, if asked, ``probabilities`` (float32, dim
        ``class_name`` with a ``class_code`` coordinate); CRS and transform set
        (rioxarray); ``attrs["classes"]`` holds the class records.

    Raises:
        CropseqError: missing bands, empty season window, bad ``min_valid``, missing model.
    """
    plan = plan_prediction(
        cube, model, chunk=chunk, min_valid=min_valid, start=start, end=end, device=device, loader=loader, smooth=smooth,
    )
    codes = plan.codes
    cls = plan.probs.map_blocks(_class_block, codes, drop_axis=0, dtype=np.uint8, meta=np.empty((0, 0), np.uint8))
    conf = plan.probs.map_blocks(_confidence_block, drop_axis=0, dtype=np.float32, meta=np.empty((0, 0), np.float32))
    ds = xr.Dataset(
        {
            "class": (("y", "x"), cls, {"long_name": "crop class", "nodata": NODATA_CODE}),
            "confidence": (("y", "x"), conf, {"long_name": "probability of the mapped class", "units": "1"}),
        },
        coords={"y": plan.y, "x": plan.x},
        attrs={
            "classes": plan.classes.to_records(),
            "min_valid": plan.min_valid,
            "source": plan.source,
            "bands": plan.bands,
        },
    )
    for m in check_measures(uncertainty_measures):
        u = plan.probs.map_blocks(uncertainty, m, drop_axis=0, dtype=np.float32, meta=np.empty((0, 0), np.float32))
        ds[m] = (("y", "x"), u, {"long_name": MEASURES[m], "units": "1"})
    if probabilities:
        ds["probabilities"] = xr.DataArray(
            plan.probs,
            dims=("class_name", "y", "x"),
            coords={"class_name": plan.classes.names, "class_code": ("class_name", plan.classes.codes), "y": plan.y, "x": plan.x},
            attrs={"long_name": "class probabilities"},
        )
    if plan.crs is not None:
        ds = ds.rio.write_crs(plan.crs)
    ds = ds.rio.write_transform(plan.transform)
    return ds


# --------------------------------------------------------------------------- execution
def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _resolve_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise CropseqError(f"device {device!r} is not one of auto, cpu, cuda")
    if device == "cpu":
        return device
    try:
        import torch

        has_cuda = bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover - torch is a dependency
        has_cuda = False
    if device == "cuda" and not has_cuda:
        # Checked here, in the client: on a cluster every worker would fail (and retry) instead.
        raise CropseqError("--device cuda requested but no CUDA GPU is available")
    return "cuda" if has_cuda else "cpu"


def _chunk_bytes(plan: PredictionPlan, n_bands: int) -> int:
    t = len(plan.dates)
    ych = max(plan.probs.chunks[1])
    xch = max(plan.probs.chunks[2])
    return int(t * n_bands * (ych + 2 * plan.halo) * (xch + 2 * plan.halo) * 4)


#: Working memory of one model call beyond the chunk itself, by predictor kind. Measured:
#: the default deep model (CNN + 2-layer BiGRU 128) on the CPU works in 64 MiB feature row
#: blocks and 1,024-pixel recurrent batches, ~0.6 GiB per predict_image call (it was 2.2 GiB
#: with 16,384-pixel batches); a whole 1-worker prediction of a 512² scene peaked at 1.5 GiB
#: for the process tree. The RandomForest stays well under 1 GiB.
MODEL_WORKING_BYTES = {"deep": 2**30, "rf": 2**30}


def _parallel_slots(workers: int | None, threads: int | None, scheduler: str | None) -> int:
    """How many chunks run at once, as far as it is known before a cluster starts."""
    if scheduler:
        return _cpu_count()  # the cluster's size is known only once connected
    if workers is None:
        return _cpu_count() * int(threads or 1)  # auto_workers: one worker per core
    if workers == 0:
        return int(threads or _cpu_count())
    return int(workers) * int(threads or 1)


def auto_workers(device: str, chunk_bytes: int, model_bytes: int = 2**30) -> tuple[int, int]:
    """``(workers, threads_per_worker)`` for a LocalCluster on this machine.

    One single-threaded worker per core, limited so that each worker's share fits in half
    the available memory: about four chunk-sized buffers (input, halo copy, features,
    output), the model's working memory and ~300 MiB of interpreter, libraries and model.
    One worker with two threads when the model runs on a GPU.
    """
    if str(device).startswith("cuda"):
        return 1, 2
    import psutil

    per_worker = 4 * chunk_bytes + model_bytes + 300 * 2**20
    fit = int(0.5 * psutil.virtual_memory().available // max(per_worker, 1))
    return max(1, min(_cpu_count(), fit)), 1


@contextlib.contextmanager
def _torch_threads(dask_threads: int) -> Iterator[None]:
    """Shrink torch's intra-op pool while ``dask_threads`` threads each run the model."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    old = torch.get_num_threads()
    new = max(1, _cpu_count() // max(1, dask_threads))
    if new >= old:
        yield
        return
    torch.set_num_threads(new)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int = 1,
    threads: int = 1,
) -> Iterator[Any]:
    """A ``distributed.Client``: connected to ``scheduler``, or to a new LocalCluster.

    Args:
        scheduler: Address of an existing scheduler (``tcp://host:8786``), or None.
        workers: Worker processes of the LocalCluster (when no scheduler is given).
        threads: Threads per worker of the LocalCluster.

    Raises:
        CropseqError: when the scheduler cannot be reached.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError, ValueError) as e:
            raise CropseqError(f"cannot connect to the Dask scheduler ({type(e).__name__}: {e})", scheduler) from None
        with client:
            yield client
        return
    # Dask's nanny exports MALLOC_TRIM_THRESHOLD_=65536 to its workers to return freed memory
    # promptly. Setting it also freezes glibc's mmap threshold at 128 KiB, so every tensor of
    # the recurrent batches is a fresh mmap and page-faulted in again: measured 1,339 vs
    # 1,936 px/s for the default model. The working set is bounded by the chunk size anyway.
    # (A value the user exports in the environment still wins.)
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), _workers_ignore_sigint():
        cluster = LocalCluster(
            n_workers=int(workers),
            threads_per_worker=int(threads),
            processes=True,
            dashboard_address=":0",  # any free port: never collides with another cluster on 8787
            silence_logs=logging.ERROR,
        )
    try:
        with Client(cluster) as client:
            yield client
    except BaseException:
        _close_cluster_now(cluster)
        raise
    cluster.close()


@contextlib.contextmanager
def _workers_ignore_sigint() -> Iterator[None]:
    """Start worker processes with SIGINT ignored (inherited through the spawn).

    Ctrl-C reaches every process of the terminal's process group: the workers would die
    with a traceback each. Only this process handles it, and shuts the workers down.
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _close_cluster_now(cluster: Any) -> None:
    """Shut a LocalCluster down at once after an error or interruption.

    A graceful close waits for the running chunk tasks (tens of seconds for a large chunk
    of a deep model); their results are not wanted any more, so the worker processes are
    killed first and the cluster's bookkeeping is closed after them.
    """
    import multiprocessing

    pids = {getattr(nanny, "pid", None) for nanny in getattr(cluster, "workers", {}).values()}
    for proc in multiprocessing.active_children():  # only this cluster's worker processes
        if proc.pid in pids:
            with contextlib.suppress(Exception):
                proc.kill()
    with contextlib.suppress(Exception):
        cluster.close(timeout=2)


def _write_task(writer: Any, row: int, col: int, probs: np.ndarray, codes: np.ndarray, want: tuple[str, ...]) -> None:
    cls, conf, layers = _finish_block(probs, codes, want)
    writer.write_block(row, col, cls, conf, layers=layers)


#: Chunks in flight per worker thread: enough to keep every thread busy while finished
#: chunks are written, few enough that memory and start-up time do not grow with the scene.
IN_FLIGHT_PER_THREAD = 2


def _direct_write(direct: DirectBlocks, writer: Any, i: int, j: int, r: int, c: int, codes: np.ndarray, want: tuple[str, ...]) -> None:
    cls, conf, layers = direct.finish(i, j, codes, want)
    writer.write_block(r, c, cls, conf, layers=layers)


def _reap(pending: set[Any]) -> set[Any]:
    """Wait a little for chunk futures; re-raise a finished chunk's error; return the rest.

    The short timeout keeps the main thread waking up: a signal (Ctrl-C, SIGTERM) that the
    kernel delivers to a worker thread is only acted upon when the main thread runs Python.
    """
    import concurrent.futures as cf

    done, rest = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
    for f in done:
        f.result()
    return rest


def _run_threaded_direct(plan: PredictionPlan, writer: Any, threads: int, want: tuple[str, ...]) -> None:
    """Chunks through a thread pool, at most ``IN_FLIGHT_PER_THREAD * threads`` at a time."""
    import concurrent.futures as cf

    assert plan.direct is not None
    limit = max(1, IN_FLIGHT_PER_THREAD * threads)
    pool = cf.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cropseq-chunk")
    pending: set[cf.Future[None]] = set()
    try:
        with _torch_threads(threads):
            for i, j, r, c in plan.offsets():
                while len(pending) >= limit:
                    pending = _reap(pending)
                pending.add(pool.submit(_direct_write, plan.direct, writer, i, j, r, c, plan.codes, want))
            while pending:
                pending = _reap(pending)
    except BaseException:
        # Do not wait for the chunks being computed (seconds each): the writer's lock keeps
        # a late block from racing its close, and the CLI ends the process after cleanup.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_distributed_direct(client: Any, plan: PredictionPlan, writer: Any, want: tuple[str, ...], retries: int) -> None:
    """Chunks on a cluster, a bounded window of them in flight (two per worker thread)."""
    from distributed import as_completed

    assert plan.direct is not None
    threads = sum(int(w.get("nthreads", 1)) for w in client.scheduler_info().get("workers", {}).values())
    limit = max(2, IN_FLIGHT_PER_THREAD * max(threads, 1))
    direct = client.scatter(plan.direct, broadcast=True)  # shipped once, not with every task
    offsets = plan.offsets()
    pos: dict[str, tuple[int, int]] = {}
    flying = as_completed()

    def submit_next() -> bool:
        nxt = next(offsets, None)
        if nxt is None:
            return False
        i, j, r, c = nxt
        fut = client.submit(DirectBlocks.finish, direct, i, j, plan.codes, want, retries=retries, pure=False)
        pos[fut.key] = (r, c)
        flying.add(fut)
        return True

    try:
        for _ in range(limit):
            if not submit_next():
                break
        # Finished chunks (class + confidence: 5 bytes a pixel) are written as they arrive
        # and released; each one frees a slot for the next chunk.
        for fut in flying:
            cls, conf, layers = fut.result()
            r, c = pos.pop(fut.key)
            writer.write_block(r, c, cls, conf, layers=layers)
            fut.release()
            submit_next()
    except BaseException:
        client.cancel(list(flying.futures))
        raise


def _run_threaded(plan: PredictionPlan, writer: Any, threads: int, want: tuple[str, ...]) -> None:
    if plan.direct is not None:
        _run_threaded_direct(plan, writer, threads, want)
        return
    blocks = plan.probs.to_delayed()  # one optimised graph shared by all blocks
    codes = plan.codes
    write = dask.delayed(_write_task, pure=False)
    tasks = [write(writer, r, c, blocks[0, i, j], codes, want) for i, j, r, c in plan.offsets()]
    with _torch_threads(threads):
        # Write tasks return None, so nothing accumulates: each chunk is written by the
        # thread that computed it and then dropped.
        dask.compute(*tasks, scheduler="threads", num_workers=threads)


def _run_distributed(client: Any, plan: PredictionPlan, writer: Any, want: tuple[str, ...], retries: int) -> None:
    from distributed import as_completed

    if plan.direct is not None:
        _run_distributed_direct(client, plan, writer, want, retries)
        return
    blocks = plan.probs.to_delayed()
    codes = plan.codes
    finish = dask.delayed(_finish_block, pure=False)
    where = []
    tasks = []
    for i, j, r, c in plan.offsets():
        tasks.append(finish(blocks[0, i, j], codes, want))
        where.append((r, c))
    futures = client.compute(tasks, retries=retries)
    pos = {f.key: rc for f, rc in zip(futures, where)}
    try:
        # Only finished chunks come back (class + confidence: 5 bytes a pixel); the client
        # writes them as they arrive and releases them, so neither side holds the scene.
        for fut in as_completed(futures):
            cls, conf, layers = fut.result()
            r, c = pos[fut.key]
            writer.write_block(r, c, cls, conf, layers=layers)
            fut.release()
    except BaseException:
        client.cancel(futures)
        raise


#: Free space wanted per byte of uncompressed output: the part files are written
#: uncompressed (blocks rewritten in place), and the compressed COGs are made beside them.
DISK_HEADROOM = 1.1


def _check_output_size(out: Path, pixels: int, confidence: bool, n_probs: int) -> None:
    """Refuse, before any work, outputs the output folder cannot possibly hold.

    A tiny file can claim a huge raster (a VRT or TIFF header of 10^6 x 10^6 px): better one
    line now than hours of work ending in a full disk. The part files hold the outputs
    uncompressed until the end, so that is what must fit (sparse blocks of nodata-only
    chunks cost nothing, so this errs on the safe side).
    """
    import shutil

    per_px = 1 + (4 if confidence else 0) + 4 * n_probs
    need = pixels * per_px
    try:
        free = shutil.disk_usage(out.parent if str(out.parent) else Path(".")).free
    except OSError:
        return
    if DISK_HEADROOM * need > free:
        raise CropseqError(
            f"the outputs take {_size(need)} uncompressed while they are written ({pixels:,} px x {per_px} "
            f"bytes), more than the {_size(free)} free there; predict a smaller area "
            "(cropseq tile, a smaller stack) or write to a larger disk",
            out,
        )


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


@dataclass
class PredictionResult:
    """What :func:`run_prediction` did.

    Attributes:
        outputs: Paths written (map, confidence, probabilities, area, qml) and area stats.
        chunks: Number of chunks predicted.
        pixels: Pixels in the map.
        classified: Pixels with a class (not nodata).
        seconds: Wall time of the whole call.
        mode: Where it ran (``threads``, ``local-cluster``, ``scheduler``).
        workers: Worker processes (0 for the threaded scheduler).
        threads: Threads per worker (or in total for ``threads``).
        note: Caveat on the hectares in the area table, or ``""``.
    """

    outputs: Any
    chunks: int
    pixels: int
    classified: int
    seconds: float
    mode: str
    workers: int
    threads: int
    note: str = ""


def _opt_path(value: Any, default: Path) -> Path | None:
    if value is True:
        return default
    if value is None or value is False:
        return None
    return Path(value)


def uncertainty_paths(out: str | os.PathLike[str], measures: Any) -> dict[str, Path]:
    """``{measure: path}`` of the uncertainty COGs: names go to ``<stem>.<measure>.tif``.

    Raises:
        CropseqError: an unknown measure.
    """
    out = Path(out)
    if isinstance(measures, dict):
        check_measures(list(measures))
        return {str(k): Path(v) for k, v in measures.items()}
    return {m: out.with_name(f"{out.stem}.{m}.tif") for m in check_measures(list(measures or ()))}


def run_prediction(
    model: Predictor | str | os.PathLike[str],
    stack: xr.DataArray | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    confidence: str | os.PathLike[str] | bool | None = True,
    probabilities: str | os.PathLike[str] | None = None,
    area: str | os.PathLike[str] | bool | None = True,
    qml: str | os.PathLike[str] | bool | None = True,
    start: Any = None,
    end: Any = None,
    chunk: int | None = None,
    min_valid: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
    scheduler: str | None = None,
    device: str = "auto",
    retries: int = DEFAULT_RETRIES,
    compress: str = "DEFLATE",
    progress: ProgressFn | None = None,
    loader: Loader | None = None,
    smooth: Smoothing | None = None,
    uncertainty: Any = None,
    probabilities_zarr: str | os.PathLike[str] | None = None,
    stac: str | os.PathLike[str] | bool | None = True,
) -> PredictionResult:
    """Predict a whole stack into a COG crop map (+ confidence, area CSV, QGIS style).

    Args:
        model: Model file (``*.pt`` / ``*.skops``) or a loaded predictor (threaded only is
            efficient for objects; pass a path for clusters).
        stack: A cube, or a path :func:`cropseq.io.open_stack` reads (``stack.yaml``, a
            folder, or a tile ``.zarr`` — a tile's map covers its core window only).
        out: The crop map COG.
        confidence: ``True``: ``<stem>.confidence.tif`` beside the map; a path; or
            ``False``/``None`` for none.
        probabilities: Path of a K-band probabilities COG, or None.
        area: ``True``: ``<stem>.area.csv``; a path; or ``False``/``None``.
        qml: ``True``: ``<stem>.qml`` (QGIS default style); a path; or ``False``/``None``.
        start, end: Season window ``[start, end)``.
        chunk: Chunk edge in pixels (memory per chunk in flight, see module docs).
        min_valid: Minimum valid observations per pixel (default ``min(3, dates)``).
        workers: ``None``: automatic LocalCluster; ``0``: threaded scheduler in this
            process; ``N``: LocalCluster with N worker processes. Ignored with ``scheduler``.
        threads: Threads per worker (LocalCluster) or in total (``workers=0``).
        scheduler: Address of an existing Dask scheduler.
        device: ``auto``, ``cpu`` or ``cuda`` for deep models.
        retries: Retries of a failed chunk task (distributed schedulers).
        compress: COG compression, ``DEFLATE`` or ``ZSTD``.
        progress: ``progress(done, total)`` after each written chunk.
        loader: Custom model loader (see :func:`cached_predictor`).
        smooth: Spatial smoothing of the probabilities before labelling (every output,
            confidence and uncertainty included, comes from the smoothed probabilities).
        uncertainty: Uncertainty COGs: measure names (``entropy``, ``margin``, ``least``;
            written to ``<stem>.<measure>.tif``) or a ``{measure: path}`` dict.
        probabilities_zarr: Path of a CF-compliant Zarr probabilities cube, or None.
        stac: ``True``: a STAC Item ``<stem>.stac.json`` describing the outputs; a path;
            or ``False``/``None``.

    Returns:
        A :class:`PredictionResult`.

    Raises:
        CropseqError: unwritable output folder, missing model, band mismatch, empty season
            window, unreachable scheduler. Nothing is written then, and nothing is left
            behind when the computation itself fails.
    """
    from cropseq.atomic import check_writable
    from cropseq.outputs import CropMapWriter, Grid, sidecar_paths

    t0 = time.perf_counter()
    out = Path(out)
    side = sidecar_paths(out)
    conf_path = _opt_path(confidence, side["confidence"])
    area_path = _opt_path(area, side["area"])
    qml_path = _opt_path(qml, side["qml"])
    prob_path = None if probabilities is None or probabilities is False else Path(probabilities)
    measure_paths = uncertainty_paths(out, uncertainty)
    zarr_path = None if probabilities_zarr is None else Path(probabilities_zarr)
    from cropseq.stac_item import stac_path

    stac_out = _opt_path(stac, stac_path(out))
    for p in (out, conf_path, prob_path, area_path, qml_path, zarr_path, stac_out, *measure_paths.values()):
        if p is not None:
            check_writable(p)  # before loading anything: fail fast, write nothing
    if not str(out).lower().endswith((".tif", ".tiff")):
        raise CropseqError("the crop map must be a GeoTIFF (.tif)", out)
    if isinstance(model, (str, os.PathLike)) and not Path(model).is_file():
        raise CropseqError("model file not found", model)
    if isinstance(model, (str, os.PathLike)) and Path(model).suffix == ".skops" and device in ("auto", "cpu"):
        device = "cpu"  # RandomForest: CPU only, and no need to import torch to find out
    else:
        device = _resolve_device(device)

    slots = _parallel_slots(workers, threads, scheduler)
    if isinstance(stack, xr.DataArray):
        cube = stack
    else:
        from cropseq.io import open_stack

        # One open: the automatic chunk edge is decided once the grid's size is known.
        cube = open_stack(stack, chunks=chunk or (lambda h, w: auto_chunk(h, w, slots)))
    if chunk is None:
        chunk = auto_chunk(cube.sizes["y"], cube.sizes["x"], slots)  # what open_stack used

    if scheduler:
        mode = "scheduler"
    elif workers == 0:
        mode = "threads"
    else:
        mode = "local-cluster"
    # Separate worker processes load their own copy; the client only needs the metadata,
    # so it keeps a CPU copy instead of taking GPU memory.
    client_device = None if mode == "threads" else "cpu"
    plan = plan_prediction(
        cube, model, chunk=chunk, min_valid=min_valid, start=start, end=end, device=device,
        loader=loader, smooth=smooth, _client_device=client_device,
    )
    if mode == "local-cluster" and workers is None:
        model_bytes = MODEL_WORKING_BYTES.get(plan.kind, 2**30)
        n_workers, n_threads = auto_workers(device, _chunk_bytes(plan, len(plan.bands)), model_bytes)
        if threads is not None:
            n_threads = int(threads)
    elif mode == "local-cluster":
        n_workers, n_threads = int(workers), int(threads or 1)  # type: ignore[arg-type]
    elif mode == "threads":
        n_workers, n_threads = 0, int(threads or _cpu_count())
    else:
        n_workers, n_threads = 0, 0
    if mode != "scheduler" and (n_threads < 1 or n_workers < 0):
        raise CropseqError(f"workers/threads must be positive (got workers={workers}, threads={threads})")

    total = plan.n_chunks
    done = [0]
    lock = threading.Lock()

    def on_block() -> None:
        with lock:
            done[0] += 1
            n = done[0]
        if progress is not None:
            progress(n, total)

    n_float = len(plan.classes) * (bool(prob_path) + bool(zarr_path)) + len(measure_paths)
    _check_output_size(out, len(plan.x) * len(plan.y), conf_path is not None, n_float)
    grid = Grid(width=len(plan.x), height=len(plan.y), transform=plan.transform, crs=plan.crs)
    writer = CropMapWriter(
        out, grid, plan.classes, confidence=conf_path, probabilities=prob_path, area=area_path,
        qml=qml_path, compress=compress, on_block=on_block, uncertainty=measure_paths,
        probabilities_zarr=zarr_path, zarr_chunk=chunk, stac=stac_out, dates=plan.dates,
    )
    want = (("probabilities",) if prob_path is not None or zarr_path is not None else ()) + tuple(measure_paths)
    with writer:
        if mode == "threads":
            if progress is not None:
                progress(0, total)
            _run_threaded(plan, writer, n_threads, want)
        else:
            with dask_client(scheduler, n_workers, n_threads) as client:
                if mode == "scheduler":
                    n_workers = len(client.scheduler_info().get("workers", {}))
                if progress is not None:
                    progress(0, total)  # only now: a user error never follows a progress bar
                _run_distributed(client, plan, writer, want, int(retries))
    result = writer.result
    assert result is not None and result.stats is not None
    return PredictionResult(
        outputs=result,
        chunks=total,
        pixels=grid.width * grid.height,
        classified=result.stats.classified,
        seconds=time.perf_counter() - t0,
        mode=mode,
        workers=n_workers,
        threads=n_threads,
        note=result.stats.note,
    )


__all__ = [
    "DEFAULT_CHUNK",
    "DEFAULT_MIN_VALID",
    "DEFAULT_RETRIES",
    "MODEL_WORKING_BYTES",
    "ModelRef",
    "PredictionPlan",
    "PredictionResult",
    "auto_workers",
    "cached_predictor",
    "clear_predictor_cache",
    "dask_client",
    "day_of_year",
    "load_count",
    "plan_prediction",
    "predict_cube",
    "run_prediction",
    "select_bands",
    "select_season",
    "uncertainty_paths",
]
