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
  memory, :data:`~cropseq.inference.resources.MODEL_WORKING_BYTES`) would not fit in half
  the available RAM; one worker with two threads when the model runs on a GPU (one CUDA
  context; the second thread overlaps reading with compute).

The model is loaded **once per worker process**, not once per chunk: tasks carry only the
model *path* (a small :class:`ModelRef`) and look it up in a per-process cache keyed by
``(loader, path, mtime, size, device)`` (:func:`cached_predictor`); threads of a process
share the loaded predictor. :func:`load_count` tells how many loads a process did. The
client checks the model path once, resolves the device once, and reads the model's bands,
classes and patch from the file's metadata without building the network.

Failures: a task that raises is retried ``retries`` times (default 2) by the distributed
scheduler before the prediction fails; tasks of a worker that dies are rescheduled on the
remaining workers by the scheduler itself (``distributed.scheduler.allowed-failures``,
default 3). When the prediction fails, no output appears and temporary files are removed.

The package, by responsibility (the names above are re-exported here):

- :mod:`~cropseq.inference.cache`: the per-process model cache, :class:`ModelRef`, and
  :func:`~cropseq.inference.cache.resolve_model` (the client's view of the model).
- :mod:`~cropseq.inference.season`: :func:`select_season`, :func:`select_bands`,
  :func:`day_of_year`.
- :mod:`~cropseq.inference.resources`: chunk edge, workers and threads, memory, disk, device.
- :mod:`~cropseq.inference.blocks`: the work of one chunk (probabilities, class, confidence).
- :mod:`~cropseq.inference.plan`: :func:`plan_prediction` and :func:`predict_cube`.
- :mod:`~cropseq.inference.execute`: threaded and distributed execution, the Dask client.
- this module: :func:`run_prediction`, from the stack to the written outputs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from cropseq.errors import CropseqError
from cropseq.inference.blocks import DirectBlocks
from cropseq.inference.cache import (
    Loader,
    ModelRef,
    cached_predictor,
    clear_predictor_cache,
    load_count,
    resolve_model,
)
from cropseq.inference.execute import (
    IN_FLIGHT_PER_THREAD,
    _run_threaded_direct,  # noqa: F401 - tests/io/test_huge_raster.py drives the bounded window directly
    dask_client,
    run_distributed,
    run_threaded,
)
from cropseq.inference.plan import DEFAULT_MIN_VALID, PredictionPlan, plan_for_model, plan_prediction, predict_cube
from cropseq.inference.resources import (
    DEFAULT_CHUNK,
    MODEL_WORKING_BYTES,
    auto_chunk,
    auto_workers,
    check_output_size,
    cpu_count,
    parallel_slots,
)
from cropseq.inference.season import day_of_year, select_bands, select_season
from cropseq.predictors import Predictor, resolve_device
from cropseq.smoothing import Smoothing
from cropseq.uncertainty import check_measures

__all__ = [
    "DEFAULT_CHUNK",
    "DEFAULT_MIN_VALID",
    "DEFAULT_RETRIES",
    "IN_FLIGHT_PER_THREAD",
    "MODEL_WORKING_BYTES",
    "DirectBlocks",
    "ModelRef",
    "PredictionPlan",
    "PredictionResult",
    "auto_chunk",
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

#: Default number of times the distributed scheduler retries a failed chunk task.
DEFAULT_RETRIES = 2

ProgressFn = Callable[[int, int], None]


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


def uncertainty_paths(out: str | os.PathLike[str], measures: Any) -> dict[str, Path]:
    """``{measure: path}`` of the uncertainty COGs: names go to ``<stem>.<measure>.tif``.

    Args:
        out: The crop map.
        measures: Measure names, or a ``{measure: path}`` dict, or None.

    Returns:
        The path of each measure's COG.

    Raises:
        CropseqError: an unknown measure.
    """
    out = Path(out)
    if isinstance(measures, dict):
        check_measures(list(measures))
        return {str(k): Path(v) for k, v in measures.items()}
    return {m: out.with_name(f"{out.stem}.{m}.tif") for m in check_measures(list(measures or ()))}


def _opt_path(value: Any, default: Path) -> Path | None:
    """``True`` -> ``default``; None/False -> None; anything else -> a path."""
    if value is True:
        return default
    if value is None or value is False:
        return None
    return Path(value)


@dataclass(frozen=True)
class _Outputs:
    """The paths :func:`run_prediction` writes (None: not written)."""

    map: Path
    confidence: Path | None
    probabilities: Path | None
    area: Path | None
    qml: Path | None
    zarr: Path | None
    stac: Path | None
    measures: dict[str, Path]

    @property
    def want(self) -> tuple[str, ...]:
        """The extra per-chunk layers: ``probabilities`` (COG or Zarr), uncertainty measures."""
        probs = ("probabilities",) if self.probabilities is not None or self.zarr is not None else ()
        return probs + tuple(self.measures)

    def float_layers(self, n_classes: int) -> int:
        """float32 layers beyond the confidence (for the disk-space check)."""
        return n_classes * (bool(self.probabilities) + bool(self.zarr)) + len(self.measures)


def _output_paths(out: Path, confidence: Any, probabilities: Any, area: Any, qml: Any, uncertainty: Any,
                  probabilities_zarr: Any, stac: Any) -> _Outputs:  # fmt: skip
    """Every output path, each checked writable before anything is loaded (fail fast, write nothing)."""
    from cropseq.atomic import check_writable
    from cropseq.outputs import sidecar_paths
    from cropseq.stac_item import stac_path

    side = sidecar_paths(out)
    paths = _Outputs(
        map=out,
        confidence=_opt_path(confidence, side["confidence"]),
        probabilities=None if probabilities is None or probabilities is False else Path(probabilities),
        area=_opt_path(area, side["area"]),
        qml=_opt_path(qml, side["qml"]),
        zarr=None if probabilities_zarr is None else Path(probabilities_zarr),
        stac=_opt_path(stac, stac_path(out)),
        measures=uncertainty_paths(out, uncertainty),
    )
    for p in (out, paths.confidence, paths.probabilities, paths.area, paths.qml, paths.zarr, paths.stac,
              *paths.measures.values()):  # fmt: skip
        if p is not None:
            check_writable(p)
    if not str(out).lower().endswith((".tif", ".tiff")):
        raise CropseqError("the crop map must be a GeoTIFF (.tif)", out)
    return paths


def _mode(workers: int | None, scheduler: str | None) -> str:
    """``scheduler``, ``threads`` (``workers=0``) or ``local-cluster``."""
    if scheduler:
        return "scheduler"
    return "threads" if workers == 0 else "local-cluster"


def _model_device(model: Predictor | str | os.PathLike[str], device: str) -> str:
    """The device, resolved once: a RandomForest file runs on the CPU (no torch import)."""
    if isinstance(model, (str, os.PathLike)) and Path(model).suffix == ".skops" and device in ("auto", "cpu"):
        return "cpu"
    return resolve_device(device)


def _open_cube(stack: xr.DataArray | str | os.PathLike[str], chunk: int | None, slots: int) -> tuple[xr.DataArray, int]:
    """The cube and the chunk edge (automatic: decided from the grid inside the one open)."""
    if isinstance(stack, xr.DataArray):
        cube = stack
    else:
        from cropseq.io import open_stack

        cube = open_stack(stack, chunks=chunk or (lambda h, w: auto_chunk(h, w, slots)))
    if chunk is None:
        chunk = auto_chunk(cube.sizes["y"], cube.sizes["x"], slots)  # what open_stack used
    return cube, int(chunk)


def _pool_size(mode: str, workers: int | None, threads: int | None, device: str, plan: PredictionPlan) -> tuple[int, int]:
    """``(worker processes, threads)`` of the run (0 workers: threaded; 0, 0: a scheduler's)."""
    if mode == "local-cluster" and workers is None:
        n_workers, n_threads = auto_workers(device, plan.chunk_bytes())
        if threads is not None:
            n_threads = int(threads)
    elif mode == "local-cluster":
        n_workers, n_threads = int(workers), int(threads or 1)  # type: ignore[arg-type]
    elif mode == "threads":
        n_workers, n_threads = 0, int(threads or cpu_count())
    else:
        return 0, 0
    if n_threads < 1 or n_workers < 0:
        raise CropseqError(f"workers/threads must be positive (got workers={workers}, threads={threads})")
    return n_workers, n_threads


def _block_counter(progress: ProgressFn | None, total: int) -> Callable[[], None]:
    """A thread-safe ``on_block`` callback reporting ``progress(done, total)``."""
    done = [0]
    lock = threading.Lock()

    def on_block() -> None:
        with lock:
            done[0] += 1
            n = done[0]
        if progress is not None:
            progress(n, total)

    return on_block


def _execute(plan: PredictionPlan, writer: Any, mode: str, pool: tuple[int, int], scheduler: str | None,
             retries: int, progress: ProgressFn | None, want: tuple[str, ...]) -> int:  # fmt: skip
    """Compute and write every chunk; returns the worker count (a scheduler's, once connected)."""
    n_workers, n_threads = pool
    if mode == "threads":
        if progress is not None:
            progress(0, plan.n_chunks)
        run_threaded(plan, writer, n_threads, want)
        return n_workers
    with dask_client(scheduler, n_workers, n_threads) as client:
        if mode == "scheduler":
            n_workers = len(client.scheduler_info().get("workers", {}))
        if progress is not None:
            progress(0, plan.n_chunks)  # only now: a user error never follows a progress bar
        run_distributed(client, plan, writer, want, int(retries))
    return n_workers


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
    engine: str | None = None,
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
        start: First date of the season window ``[start, end)``.
        end: End of the season window (excluded).
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
        engine: How a deep model runs (:data:`cropseq.predictors.ENGINES`: ``torch``,
            ``bf16``, ``int8``, ``onnx``; None = ``auto``); checked before any work.

    Returns:
        A :class:`PredictionResult`.

    Raises:
        CropseqError: unwritable output folder, missing model, band mismatch, empty season
            window, unreachable scheduler. Nothing is written then, and nothing is left
            behind when the computation itself fails.
    """
    from cropseq.outputs import CropMapWriter, Grid

    t0 = time.perf_counter()
    paths = _output_paths(Path(out), confidence, probabilities, area, qml, uncertainty, probabilities_zarr, stac)
    mode = _mode(workers, scheduler)
    device = _model_device(model, device)
    # Worker processes load their own copy: a client that must load one (custom loader)
    # keeps it on the CPU instead of taking GPU memory.
    ref, info = resolve_model(model, device, loader, client_device=None if mode == "threads" else "cpu", engine=engine)
    cube, chunk = _open_cube(stack, chunk, parallel_slots(workers, threads, scheduler))
    plan = plan_for_model(cube, ref, info, chunk=chunk, min_valid=min_valid, start=start, end=end, smooth=smooth)
    pool = _pool_size(mode, workers, threads, device, plan)
    check_output_size(paths.map, len(plan.x) * len(plan.y), paths.confidence is not None, paths.float_layers(len(plan.classes)))
    grid = Grid(width=len(plan.x), height=len(plan.y), transform=plan.transform, crs=plan.crs)
    writer = CropMapWriter(
        paths.map, grid, plan.classes, confidence=paths.confidence, probabilities=paths.probabilities, area=paths.area,
        qml=paths.qml, compress=compress, on_block=_block_counter(progress, plan.n_chunks), uncertainty=paths.measures,
        probabilities_zarr=paths.zarr, zarr_chunk=chunk, stac=paths.stac, dates=plan.dates,
    )  # fmt: skip
    with writer:
        n_workers = _execute(plan, writer, mode, pool, scheduler, retries, progress, paths.want)
    result = writer.result
    assert result is not None and result.stats is not None
    return PredictionResult(
        outputs=result, chunks=plan.n_chunks, pixels=grid.width * grid.height, classified=result.stats.classified,
        seconds=time.perf_counter() - t0, mode=mode, workers=n_workers, threads=pool[1], note=result.stats.note,
    )  # fmt: skip
