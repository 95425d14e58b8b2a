"""CLI commands ``cropseq predict``, ``cropseq mosaic`` and ``cropseq area``: crop maps.

Thin wrappers over :func:`cropseq.inference.run_prediction`,
:func:`cropseq.outputs.mosaic_maps` and :func:`cropseq.outputs.area_stats`; user errors
print one line and exit 2, and no output is left behind.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cropseq.cli import app
from cropseq.progress import progress_bar

if TYPE_CHECKING:
    from cropseq.inference import PredictionResult

__all__ = ["Device", "Smooth", "Uncertainty", "area_cmd", "mosaic_cmd", "predict_cmd"]


class Uncertainty(str, Enum):
    """Uncertainty measures (definitions in cropseq.uncertainty)."""

    entropy = "entropy"
    margin = "margin"
    least = "least"


class Smooth(str, Enum):
    """Spatial smoothing of the probabilities before labelling."""

    none = "none"
    bayes = "bayes"
    edge = "edge"


class Device(str, Enum):
    """Where deep models run."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Engine(str, Enum):
    """How deep models run (cropseq.predictors.ENGINES)."""

    auto = "auto"
    torch = "torch"
    bf16 = "bf16"
    int8 = "int8"
    onnx = "onnx"


@app.command("predict")
def predict_cmd(
    model: Path = typer.Option(..., "--model", help="Trained model: deep checkpoint (*.pt) or RandomForest (*.skops)."),
    stack: Path = typer.Option(..., "--stack", help="stack.yaml (or its folder), or a tile store <tile>.zarr from `cropseq tile`."),
    out: Path = typer.Option(..., "--out", help="Crop map to write (Cloud-Optimized GeoTIFF)."),
    confidence: Path | None = typer.Option(
        None, "--confidence", help="Confidence COG (probability of the mapped class). [default: <stem>.confidence.tif]"),
    probabilities: Path | None = typer.Option(None, "--probabilities", help="Also write all class probabilities (one band per class)."),
    area: Path | None = typer.Option(None, "--area", help="Per-class area CSV. [default: <stem>.area.csv]"),
    start: str | None = typer.Option(None, "--start", help="First date of the season window (YYYY-MM-DD, inclusive)."),
    end: str | None = typer.Option(None, "--end", help="End of the season window (YYYY-MM-DD, exclusive, like label from/to)."),
    workers: int | None = typer.Option(
        None, "--workers", min=0,
        help="Dask worker processes of a local cluster; 0 = threads in this process (small stacks, one job per "
             "core in Snakemake). [default: one per core, memory permitting]"),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="Threads per worker (with --workers 0: threads in total). [default: 1 / all cores]"),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Address of an existing Dask scheduler (tcp://host:8786)."),
    chunk: int | None = typer.Option(
        None, "--chunk", min=16,
        help="Chunk edge in pixels; memory grows with its square, the map does not change. [default: 512, halved "
             "down to 128 until every worker thread gets 4 chunks]"),
    min_valid: int | None = typer.Option(
        None, "--min-valid", min=1, help="Pixels with fewer valid observations are nodata (0). [default: 3, or the number of dates if fewer]"),
    device: Device = typer.Option(Device.auto, "--device", help="Where deep models run."),
    engine: Engine = typer.Option(
        Engine.auto, "--engine",
        help="How a deep model runs: torch = float32 PyTorch (bf16 on a GPU); on the CPU also bf16 = bfloat16 "
             "autocast, int8 = int8 dynamic quantisation of the recurrent and linear layers, onnx = ONNX Runtime "
             "on <model>.onnx from `cropseq export --onnx`. auto = bf16 for recurrent cores of 64+ units (the accurate "
             "preset) on CPUs with AVX512-BF16/AMX, else torch "
             "(CROPSEQ_ENGINE_AUTO=torch keeps float32; benchmarks/README.md: speed and map "
             "agreement of each)."),
    retries: int = typer.Option(2, "--retries", min=0, help="Retries of a failed chunk task on a Dask cluster."),
    allow_incomplete: bool = typer.Option(
        False, "--allow-incomplete", help="Accept the checkpoint of an unfinished training run (<model>.partial)."),
    uncertainty: list[Uncertainty] = typer.Option(
        [], "--uncertainty",
        help="Also write an uncertainty COG <stem>.<measure>.tif (float32 0..1; repeatable): entropy = normalised "
             "entropy of the probabilities, margin = 1 - (p1 - p2), least = 1 - p1."),
    probabilities_zarr: Path | None = typer.Option(
        None, "--probabilities-zarr", help="Also write all class probabilities as a CF Zarr cube (xarray.open_zarr(P).rio.crs works)."),
    smooth: Smooth = typer.Option(
        Smooth.none, "--smooth",
        help="Smooth the probabilities before labelling: bayes = Bayesian smoothing over a window (as sits_smooth), "
             "edge = the same with neighbours across strong probability gradients down-weighted."),
    smooth_window: int = typer.Option(5, "--smooth-window", min=3, help="Smoothing window edge in pixels (odd)."),
    smooth_variance: list[float] = typer.Option(
        [10.0], "--smooth-variance",
        help="Smoothness (logit variance; larger smooths more): one value, or one per class in the model's class order."),
    smooth_edge_sigma: float = typer.Option(
        0.5, "--smooth-edge-sigma",
        help="--smooth edge: probability-vector distance at which a neighbour's weight drops to 61 %; smaller keeps "
             "borders and thin features sharper, larger smooths noise more."),
    stac: bool = typer.Option(True, "--stac/--no-stac", help="Write a STAC Item <stem>.stac.json describing the outputs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Map a whole stack (or one tile) with a trained model, chunk by chunk with Dask.

    Writes the crop map COG (uint8 codes, colour table, class names, nodata 0), a QGIS
    style <stem>.qml beside it, GDAL categories and a raster attribute table in
    <stem>.tif.aux.xml, the confidence COG (with its own .qml), the per-class area CSV and a
    STAC Item <stem>.stac.json; optionally uncertainty COGs and the probabilities.
    """
    from cropseq.inference import run_prediction
    from cropseq.outputs import sidecar_paths
    from cropseq.predictors import load_incomplete_predictor
    from cropseq.smoothing import make_smoothing

    smoothing = make_smoothing(smooth.value, smooth_window, smooth_variance, smooth_edge_sigma)  # bad values: one line, before any work
    side = sidecar_paths(out)
    with progress_bar(f"predict {out.name}", not quiet, unit="chunks") as update:
        res = run_prediction(
            model, stack, out, confidence=confidence or side["confidence"], probabilities=probabilities,
            area=area or side["area"], qml=side["qml"], start=start, end=end, chunk=chunk, min_valid=min_valid,
            workers=workers, threads=threads, scheduler=scheduler, device=device.value, retries=retries,
            progress=update, loader=load_incomplete_predictor if allow_incomplete else None, smooth=smoothing,
            uncertainty=[u.value for u in uncertainty], probabilities_zarr=probabilities_zarr, stac=stac,
            engine=engine.value,
        )
    _print_prediction(res, scheduler)

def _print_prediction(res: PredictionResult, scheduler: str | None) -> None:
    """Print what ``cropseq predict`` wrote, one output per line, and a summary of the run."""
    o = res.outputs
    share = 100.0 * res.classified / res.pixels if res.pixels else 0.0
    where = {"threads": f"{res.threads} thread(s) in process", "local-cluster": f"local cluster, {res.workers} worker(s) x {res.threads} thread(s)",
             "scheduler": f"Dask scheduler {scheduler}, {res.workers} worker(s)"}[res.mode]
    print(f"map: {o.map}")
    shown = [("confidence", o.confidence), *o.uncertainty.items(), ("probabilities", o.probabilities),
             ("probabilities zarr", o.probabilities_zarr), ("area", o.area), ("style", o.qml), ("stac", o.stac)]
    for label, p in shown:
        if p is not None:
            print(f"{label}: {p}")
    print(f"{res.classified} of {res.pixels} px classified ({share:.1f} %), {res.chunks} chunks in {res.seconds:.1f} s ({where})")
    if res.note:
        print(f"note: {res.note}", file=sys.stderr)


@app.command("mosaic")
def mosaic_cmd(
    tile_maps: list[Path] = typer.Argument(
        ..., help="Per-tile crop maps from `cropseq predict`; their <stem>.confidence.tif may be listed too "
                  "(a *.tif glob catches them) and go into the confidence mosaic. Or only confidence rasters."),
    out: Path = typer.Option(..., "--out", help="Mosaic to write (Cloud-Optimized GeoTIFF)."),
    confidence: Path | None = typer.Option(
        None, "--confidence",
        help="Also mosaic each tile map's <stem>.confidence.tif into this COG "
             "[default: <OUT stem>.confidence.tif when the confidence rasters are listed]."),
    area: Path | None = typer.Option(None, "--area", help="Also write the per-class area CSV of the mosaic."),
) -> None:
    """Merge per-tile crop maps (same grid, non-overlapping cores) into one COG.

    Crop maps give a crop map with colour table, class names and a <stem>.qml style, and
    their listed confidence rasters a <OUT stem>.confidence.tif; float rasters alone (per-tile
    confidences) give a float COG.
    """
    from cropseq.outputs import mosaic_maps, partition_tile_rasters

    res = mosaic_maps(tile_maps, out, confidence=confidence, area=area)
    print(f"mosaic: {res.map} ({len(partition_tile_rasters(tile_maps)[0])} tiles)")
    for label, p in (("confidence", res.confidence), ("area", res.area), ("style", res.qml)):
        if p is not None:
            print(f"{label}: {p}")
    if res.stats is not None and res.stats.note and res.area is not None:
        print(f"note: {res.stats.note}", file=sys.stderr)


@app.command("area")
def area_cmd(
    map_path: Path = typer.Argument(..., help="A crop map written by cropseq (class table in its metadata)."),
    out: Path = typer.Option(..., "--out", help="CSV to write: code, name, pixels, hectares, share."),
) -> None:
    """Per-class pixel counts and hectares of a crop map (read block by block)."""
    from cropseq.outputs import area_stats, write_area_csv

    stats = area_stats(map_path)
    write_area_csv(out, stats)
    print(f"area: {out} ({stats.classified} classified px, {stats.hectares[1:].sum():.2f} ha)")
    if stats.note:
        print(f"note: {stats.note}", file=sys.stderr)
