"""Planning a prediction: the cube cut and checked, chunks with halos, the lazy graph.

:func:`plan_prediction` turns a cube and a model into a :class:`PredictionPlan`: the lazy
``(K, y, x)`` probability array plus everything needed to write it. Nothing is computed
here but a bounded sample of pixels (the off-scale check). :func:`predict_cube` wraps the
plan as a lazy ``xarray.Dataset``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import dask.array as da
import numpy as np
import xarray as xr
from affine import Affine
from dask.base import tokenize

from cropseq.classes import NODATA_CODE, ClassTable
from cropseq.errors import CropseqError
from cropseq.inference.blocks import DirectBlocks, class_block, confidence_block, predict_block
from cropseq.inference.cache import Loader, ModelRef, resolve_model
from cropseq.inference.resources import DEFAULT_CHUNK
from cropseq.inference.season import cube_source, day_of_year, select_bands, select_season
from cropseq.io import BlockWindows, WindowReader, read_with_halo, window_reader
from cropseq.predictors import Predictor
from cropseq.smoothing import Smoothing
from cropseq.uncertainty import MEASURES, check_measures, uncertainty

__all__ = ["DEFAULT_MIN_VALID", "PlanOptions", "PredictionPlan", "plan_prediction", "predict_cube"]

#: Default minimum number of valid observations for a pixel to be classified.
#: Fewer than three dates cannot describe a seasonal profile; the model would be guessing.
DEFAULT_MIN_VALID = 3
#: Scenes up to this many pixels are checked for off-scale inputs on one centred window.
SCALE_CHECK_ONE_WINDOW_PX = 1024 * 1024


class PlanOptions(TypedDict, total=False):
    """How :func:`predict_cube` plans a prediction: the keywords of :func:`plan_prediction`.

    Attributes:
        chunk: Chunk edge in pixels; the result does not depend on it.
        min_valid: Minimum number of valid observations for a pixel to be classified;
            default ``min(3, number of dates)``.
        start: Season window start ``YYYY-MM-DD`` (inclusive); None = the first date.
        end: Season window end (exclusive); None = after the last date.
        device: ``auto``, ``cpu`` or ``cuda`` for deep models loaded from a path.
        loader: Custom model loader (see :func:`~cropseq.inference.cache.cached_predictor`).
        smooth: Spatial smoothing of the probabilities before labelling
            (:mod:`cropseq.smoothing`); the result still does not depend on ``chunk``.
        engine: How a deep model loaded from a path runs (:data:`cropseq.predictors.ENGINES`).
    """

    chunk: int
    min_valid: int | None
    start: Any
    end: Any
    device: str
    loader: Loader | None
    smooth: Smoothing | None
    engine: str | None


@dataclass
class PredictionPlan:
    """A lazy prediction: the probability array and everything needed to write it.

    Attributes:
        probs: ``(K, y, x)`` float32 Dask array, NaN where nodata.
        classes: The model's class table (``probs`` row ``k`` is ``classes.classes[k]``).
        y: Output pixel-centre row coordinates.
        x: Output pixel-centre column coordinates.
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
            (read with halo, predict, finish), so :func:`~cropseq.inference.run_prediction`
            can submit chunks a few at a time instead of building a graph of the whole scene.
        smooth: The smoothing applied to the probabilities, or None.
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
        """Number of output chunks."""
        return int(self.probs.numblocks[1] * self.probs.numblocks[2])

    @property
    def codes(self) -> np.ndarray:
        """uint8 class codes in probability row order."""
        return np.asarray(self.classes.codes, dtype=np.uint8)

    def chunk_bytes(self) -> int:
        """Input bytes of the largest chunk with its halo (float32, all dates and bands)."""
        ych, xch = max(self.probs.chunks[1]), max(self.probs.chunks[2])
        return int(len(self.dates) * len(self.bands) * (ych + 2 * self.halo) * (xch + 2 * self.halo) * 4)

    def offsets(self) -> Iterator[tuple[int, int, int, int]]:
        """``(i, j, row_off, col_off)`` of every output chunk."""
        rows = np.concatenate([[0], np.cumsum(self.probs.chunks[1])[:-1]])
        cols = np.concatenate([[0], np.cumsum(self.probs.chunks[2])[:-1]])
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                yield i, j, int(r), int(c)


def _check_cube(cube: Any) -> xr.DataArray:
    """``cube`` as ``(time, band, y, x)``, or an error naming its dims."""
    if not isinstance(cube, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray cube, got {type(cube).__name__}")
    need = {"time", "band", "y", "x"}
    if set(cube.dims) != need:
        raise CropseqError(f"a cube needs dims (time, band, y, x), this one has {cube.dims}", cube_source(cube))
    return cube.transpose("time", "band", "y", "x")


def _axis_chunks(n: int, chunk: int, halo: int) -> tuple[int, ...]:
    """Chunk sizes along one axis.

    A last chunk thinner than the halo is merged into its neighbour (Dask's overlap needs
    every chunk at least as deep as the halo).
    """
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
    src = cube_source(cube)
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


def _check_min_valid(min_valid: int | None, n_dates: int, src: str) -> int:
    """The effective ``min_valid`` (default ``min(3, dates)``), or an error when out of range."""
    if n_dates == 0:
        raise CropseqError("the stack has no dates", src)
    value = min(DEFAULT_MIN_VALID, n_dates) if min_valid is None else int(min_valid)
    if value < 1:
        raise CropseqError(f"min_valid must be at least 1 (got {value}): a pixel without observations cannot be classified")
    if value > n_dates:
        raise CropseqError(
            f"min_valid={value} exceeds the {n_dates} date(s) selected, so no pixel could be classified; lower --min-valid",
            src,
        )
    return value


def _check_inputs(info: Any, cube: xr.DataArray, src: str) -> None:
    """Checks of the inputs against the model, in the client before any chunk runs.

    The RandomForest's per-date features need the training dates (``check_timeline``);
    inputs far from the training normalisation draw a warning (a bounded sample of pixels).
    """
    from cropseq.evaluation import warn_if_off_scale
    from cropseq.io import sample_cube

    check_timeline = getattr(info, "check_timeline", None)
    if callable(check_timeline):
        check_timeline(np.asarray(cube["time"].values), src)
    # One centred window on scenes up to ~1 Mpx: each window is a read of every file of the
    # stack (a STAC demo: 0.4 s each), and 4 x 4 of them cost more than mapping a small scene.
    per_side = 1 if cube.sizes["y"] * cube.sizes["x"] <= SCALE_CHECK_ONE_WINDOW_PX else 4
    warn_if_off_scale(info, sample_cube(cube, per_side), src, band_axis=1)  # (T, C, M)


def _input_blocks(cube: xr.DataArray, reader: WindowReader | None, ych: tuple[int, ...], xch: tuple[int, ...], halo: int) -> da.Array:
    """The cube as ``(T, C, y, x)`` blocks of ``ych x xch`` pixels, each with its halo.

    A manifest stack reads each chunk's window *with* its halo in one task: chunks do not
    depend on each other, so memory stays flat as the scene grows (Dask's overlap, the
    fallback for any other cube, holds a chunk's read until its neighbours are read).
    """
    if reader is not None and halo:
        return read_with_halo(reader, ych, xch, halo)
    data = cube.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=(-1, -1, ych, xch))
    data = data.astype(np.float32, copy=False).rechunk(((cube.sizes["time"],), (cube.sizes["band"],), ych, xch))
    if halo:
        data = da.overlap.overlap(
            data,
            depth={0: 0, 1: 0, 2: halo, 3: halo},
            boundary={0: "none", 1: "none", 2: np.nan, 3: np.nan},  # beyond the edge = missing
        )
    return data


def _georeferencing(cube: xr.DataArray, src: str) -> tuple[Affine, Any]:
    """``(transform, crs)`` of the cube (rioxarray), or one error line."""
    try:
        return cube.rio.transform(), cube.rio.crs
    except Exception as e:  # noqa: BLE001 - rioxarray raises various errors without georeferencing
        raise CropseqError(f"the stack has no usable georeferencing ({e})", src) from None


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
    engine: str | None = None,
) -> PredictionPlan:
    """Build the lazy prediction graph.

    Args:
        cube: The cube (see :func:`predict_cube`).
        model: A model path or a :class:`~cropseq.predictors.Predictor` (see :func:`predict_cube`).
        chunk: See :class:`PlanOptions`, which documents every keyword below.
        min_valid: See :class:`PlanOptions`.
        start: See :class:`PlanOptions`.
        end: See :class:`PlanOptions`.
        device: See :class:`PlanOptions`.
        loader: See :class:`PlanOptions`.
        smooth: See :class:`PlanOptions`.
        engine: See :class:`PlanOptions`.

    Returns:
        The :class:`PredictionPlan`.

    Raises:
        CropseqError: see :func:`predict_cube`.
    """
    ref, info = resolve_model(model, device, loader, engine=engine)
    return plan_for_model(cube, ref, info, chunk=chunk, min_valid=min_valid, start=start, end=end, smooth=smooth)


def plan_for_model(
    cube: xr.DataArray,
    ref: ModelRef,
    info: Any,
    *,
    chunk: int,
    min_valid: int | None,
    start: Any,
    end: Any,
    smooth: Smoothing | None,
) -> PredictionPlan:
    """:func:`plan_prediction` for a model already resolved (:func:`~cropseq.inference.cache.resolve_model`).

    Args:
        cube: The cube.
        ref: What the chunk tasks carry to find the predictor.
        info: The model's description (``bands``, ``classes``, ``patch``, ``kind``).
        chunk: Chunk edge in pixels (at least 16).
        min_valid: Minimum valid observations per pixel, or None for the default.
        start: Season window start (inclusive), or None.
        end: Season window end (exclusive), or None.
        smooth: Optional smoothing of the probabilities.

    Returns:
        The :class:`PredictionPlan`.
    """
    cube = _check_cube(cube)
    src = cube_source(cube)
    if int(chunk) < 16:
        raise CropseqError(f"chunk size {chunk} px is too small (at least 16)")
    bands, classes = [str(b) for b in info.bands], info.classes
    model_halo = int(info.patch) // 2
    halo = model_halo + (smooth.radius if smooth is not None else 0)  # the smoothing needs a wider ring
    cube = select_bands(select_season(cube, start, end), bands)
    min_valid = _check_min_valid(min_valid, int(cube.sizes["time"]), src)
    doy = day_of_year(cube)
    _check_inputs(info, cube, src)

    ych, xch = _axis_chunks(int(cube.sizes["y"]), int(chunk), halo), _axis_chunks(int(cube.sizes["x"]), int(chunk), halo)
    task = {"model": ref, "doy": doy, "halo": model_halo, "min_valid": min_valid, "n_classes": len(classes), "smooth": smooth}
    reader = window_reader(cube)  # a manifest stack (cut to dates/bands only), else None
    data = _input_blocks(cube, reader, ych, xch, halo)
    name = "cropseq-predict-" + tokenize(data.name, ref.token(), doy.tobytes(), halo, min_valid, len(classes), smooth)
    # da.map_blocks(f, a) is what a.map_blocks(f) calls; the method's functools.wraps signature misleads mypy.
    probs = da.map_blocks(
        predict_block, data, **task, drop_axis=0, chunks=((len(classes),), ych, xch), dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32), name=name,
    )  # fmt: skip
    direct = None if reader is None else DirectBlocks(reader, BlockWindows.from_chunks(ych, xch, halo), task)

    y, x = np.asarray(cube["y"].values), np.asarray(cube["x"].values)
    transform, crs = _georeferencing(cube, src)
    core = _core_window(cube, halo)
    if core is not None:  # a tile: its map covers the core only (and its chunks need the graph)
        r, c, h, w = core
        probs, y, x = probs[:, r : r + h, c : c + w], y[r : r + h], x[c : c + w]
        transform, direct = transform @ Affine.translation(c, r), None
    return PredictionPlan(
        probs=probs, classes=classes, y=y, x=x, transform=transform, crs=crs, source=src,
        dates=np.asarray(cube["time"].values), min_valid=min_valid, halo=halo, bands=bands,
        kind=str(getattr(info, "kind", "deep")), direct=direct, smooth=smooth,
    )  # fmt: skip


def predict_cube(
    cube: xr.DataArray,
    model: Predictor | str | os.PathLike[str],
    *,
    probabilities: bool = False,
    uncertainty_measures: tuple[str, ...] = (),
    **options: Unpack[PlanOptions],
) -> xr.Dataset:
    """Lazily predict a crop map from a cube.

    Args:
        cube: The cube (``time, band, y, x``), Dask- or NumPy-backed, georeferenced with
            rioxarray. Extra bands are ignored; bands are matched to the model by name.
        model: A model path (loaded once per process, see
            :func:`~cropseq.inference.cache.cached_predictor`) or a
            :class:`~cropseq.predictors.Predictor`.
        probabilities: Also return the ``(K, y, x)`` probability cube.
        uncertainty_measures: Also return these :mod:`cropseq.uncertainty` measures
            (``entropy``, ``margin``, ``least``) as float32 variables of the same names.
        **options: How to plan it (:class:`PlanOptions`: ``chunk``, ``min_valid``, ``start``,
            ``end``, ``device``, ``loader``, ``smooth``, ``engine``).

    Returns:
        A lazy ``xarray.Dataset`` with ``class`` (uint8, 0 = nodata), ``confidence``
        (float32 0..1, NaN = nodata) and, if asked, ``probabilities`` (float32, dim
        ``class_name`` with a ``class_code`` coordinate); CRS and transform set
        (rioxarray); ``attrs["classes"]`` holds the class records.

    Raises:
        CropseqError: missing bands, empty season window, bad ``min_valid``, missing model.
    """
    plan = plan_prediction(cube, model, **options)
    cls = da.map_blocks(class_block, plan.probs, plan.codes, drop_axis=0, dtype=np.uint8, meta=np.empty((0, 0), np.uint8))
    conf = da.map_blocks(confidence_block, plan.probs, drop_axis=0, dtype=np.float32, meta=np.empty((0, 0), np.float32))
    ds = xr.Dataset(
        {
            "class": (("y", "x"), cls, {"long_name": "crop class", "nodata": NODATA_CODE}),
            "confidence": (("y", "x"), conf, {"long_name": "probability of the mapped class", "units": "1"}),
        },
        coords={"y": plan.y, "x": plan.x},
        attrs={"classes": plan.classes.to_records(), "min_valid": plan.min_valid, "source": plan.source, "bands": plan.bands},
    )
    for m in check_measures(uncertainty_measures):
        u = da.map_blocks(uncertainty, plan.probs, m, drop_axis=0, dtype=np.float32, meta=np.empty((0, 0), np.float32))
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
    return ds.rio.write_transform(plan.transform)
