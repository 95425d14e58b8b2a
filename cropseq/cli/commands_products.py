"""``cropseq parcels`` and ``cropseq suggest``: map products beyond the per-pixel map.

Thin over :mod:`cropseq.parcels` (object-based map: one class per field) and
:mod:`cropseq.suggest` (where to label next).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cropseq.cli import app
from cropseq.errors import CropseqError

__all__ = ["parcels_cmd", "suggest_cmd"]


def _parcels_source(parcels: Path | None, segments: str | None, stack: Path | None, bands: list[str] | None,
                    segment_size: int, id_column: str | None, crs: object) -> tuple[object, str]:
    """The parcels GeoDataFrame (from a vector layer or image segments) and where they came from."""
    from cropseq.parcels import read_parcels, segment_stack

    if (parcels is None) == (segments is None):
        raise CropseqError("give either --parcels FILE (field polygons) or --segments slic|felzenszwalb with --stack")
    if parcels is not None:
        if stack is not None or bands:
            raise CropseqError("--stack and --band go with --segments (not with --parcels)")
        return read_parcels(parcels, crs, id_column), str(parcels)
    if stack is None:
        raise CropseqError("--segments needs --stack (the image the segments are computed from)")
    if id_column is not None:
        raise CropseqError("--id-column goes with --parcels (segments are numbered 1..N)")
    return segment_stack(stack, method=str(segments), bands=bands, segment_size=segment_size), f"{segments} segments"


@app.command("parcels")
def parcels_cmd(
    map_path: Annotated[Path, typer.Option("--map", help="Crop map COG (from cropseq predict).")],
    out: Annotated[Path, typer.Option("--out", help="Parcel table to write (.gpkg): one row per parcel.")],
    parcels: Annotated[Path | None, typer.Option("--parcels", help="Field polygons (any vector file: GPKG, SHP, GeoJSON).")] = None,
    segments: Annotated[
        str | None, typer.Option("--segments", help="Or segment the image: slic | felzenszwalb (scikit-image).")
    ] = None,
    stack: Annotated[Path | None, typer.Option("--stack", help="With --segments: the stack (stack.yaml) to segment.")] = None,
    bands: Annotated[
        list[str] | None,
        typer.Option("--band", help="With --segments: a band of the median composite (repeat; default 3 of red, NIR, "
                     "SWIR, green, blue by name, else the first three)."),
    ] = None,
    segment_size: Annotated[
        int, typer.Option("--segment-size", min=4, help="With --segments: target mean segment area in pixels.")
    ] = 200,
    raster: Annotated[
        Path | None, typer.Option("--raster", help="Parcel map COG [default: <out stem>.tif beside the table].")
    ] = None,
    probabilities_zarr: Annotated[
        Path | None,
        typer.Option("--probabilities-zarr", help="Class probabilities (predict --probabilities-zarr): adds the mean "
                     "probability of each class per parcel."),
    ] = None,
    id_column: Annotated[str | None, typer.Option("--id-column", help="Field-id column of --parcels, kept in the table.")] = None,
    truth: Annotated[
        Path | None,
        typer.Option("--truth", help="Score: a class raster on the map's grid; a parcel's reference is the majority "
                     "of its truth pixels (parcels without any are not scored)."),
    ] = None,
    reference_column: Annotated[
        str | None, typer.Option("--reference-column", help="Score: the parcels' own class column (e.g. label).")
    ] = None,
    test_samples: Annotated[
        Path | None,
        typer.Option("--test-samples", help="With --reference-column: score only the fields of this samples table "
                     "(its group column, e.g. the test split; matched to --id-column)."),
    ] = None,
    metrics: Annotated[
        Path | None, typer.Option("--metrics", help="Scoring JSON (parcel counts only when nothing scores them) "
                                  "[default: <out stem>.json when scored].")
    ] = None,
) -> None:
    """Summarise a crop map per parcel; write the parcel table (GeoPackage) and the parcel map (COG).

    Per parcel: majority class, its share, valid pixels, mean probabilities.

    Parcels come from field polygons (--parcels) or from segments of the image
    (--segments with --stack). With --truth or --reference-column, the share of reference
    parcels whose majority class is right is printed and written as JSON. Memory stays
    flat: the map is read window by window and counts are kept per parcel.
    """
    import rasterio

    from cropseq.atomic import check_writable
    from cropseq.parcels import check_outputs, parcel_table, summarise_parcels, write_parcels

    if truth is not None and reference_column is not None:
        raise CropseqError("score with --truth or with --reference-column, not both")
    if test_samples is not None and reference_column is None:
        raise CropseqError("--test-samples goes with --reference-column")
    raster = raster if raster is not None else out.with_suffix(".tif")
    scored = truth is not None or reference_column is not None
    metrics = metrics if metrics is not None or not scored else out.with_suffix(".json")
    check_outputs(out, raster)
    if metrics is not None:
        check_writable(metrics)
    if not map_path.is_file():
        raise CropseqError("crop map not found", map_path)
    with rasterio.open(map_path) as src:
        crs = src.crs
    gdf, source = _parcels_source(parcels, segments, stack, bands, segment_size, id_column, crs)
    stats = summarise_parcels(map_path, gdf, probabilities_zarr=probabilities_zarr, truth=truth)
    table = parcel_table(gdf, stats)
    result = None
    if metrics is not None:
        result = _score_parcels(table, stats, gdf, truth, reference_column, test_samples, parcels or out, id_column)
    write_parcels(table, gdf, map_path, out, raster)
    typer.echo(f"parcels: {out} ({len(table)} parcels from {source}; {int((table['valid_pixels'] > 0).sum())} with a class)")
    typer.echo(f"parcel map: {raster}")
    if result is not None and metrics is not None:
        _write_parcel_metrics(result, metrics, map_path, out, scored)


def _score_parcels(table: Any, stats: Any, gdf: Any, truth: Path | None, reference_column: str | None,
                   test_samples: Path | None, where: Path, id_column: str | None) -> dict[str, Any]:  # fmt: skip
    """Score the parcels' majority classes against the reference given (or nothing: counts only).

    The reference is the majority of the truth pixels of each parcel (``truth``), else the
    parcels' own ``reference_column`` (limited to the fields of ``test_samples`` when
    given); with neither, nothing is scored.
    """
    import pandas as pd

    from cropseq.parcels import reference_from_column, reference_from_truth, score_parcels, split_groups

    if truth is not None:
        return score_parcels(table, reference_from_truth(stats, gdf), source=f"majority of {truth.name} per parcel")
    if reference_column is not None:
        groups = split_groups(test_samples) if test_samples is not None else None
        ref = reference_from_column(gdf, reference_column, where, test_groups=groups, id_column=id_column)
        what = f"column {reference_column!r}" + (f" of the fields in {test_samples.name}" if test_samples else "")
        return score_parcels(table, ref, source=what)
    return score_parcels(table, pd.Series([None] * len(table), dtype=object), source="none")


def _write_parcel_metrics(result: dict[str, Any], metrics: Path, map_path: Path, out: Path, scored: bool) -> None:
    """Write the scoring JSON and print the share of reference parcels classed right."""
    from cropseq.evaluation import write_metrics

    write_metrics({**result, "map": str(map_path), "parcels": str(out)}, metrics)
    if not scored:
        typer.echo(f"metrics: {metrics} (no reference: nothing scored)")
        return
    share = "n/a" if result["share_right"] is None else f"{result['share_right']:.3f}"
    ci = "" if result["ci95"] is None else f" [{result['ci95'][0]:.3f}, {result['ci95'][1]:.3f}]"
    typer.echo(f"majority class right for {result['right']} of {result['scored']} reference parcels: {share}{ci}")
    typer.echo(f"metrics: {metrics}")


@app.command("suggest")
def suggest_cmd(
    map_path: Annotated[Path, typer.Option("--map", help="Crop map COG (from cropseq predict).")],
    out: Annotated[Path, typer.Option("--out", help="Points to write (.gpkg; or .geojson, .csv with x,y).")],
    n: Annotated[int, typer.Option("--n", help="Number of points.")] = 100,
    uncertainty: Annotated[
        Path | None,
        typer.Option("--uncertainty", help="Uncertainty raster (predict --uncertainty), or the confidence raster "
                     "(1 - confidence is used) [default: <map stem>.entropy/margin/least/confidence.tif]."),
    ] = None,
    min_distance: Annotated[
        float, typer.Option("--min-distance", min=0, help="Minimum distance between points in pixels.")
    ] = 10.0,
    min_distance_m: Annotated[
        float | None, typer.Option("--min-distance-m", min=0, help="The same in map units (metres); overrides --min-distance.")
    ] = None,
    min_per_class: Annotated[int, typer.Option("--min-per-class", min=0, help="At least this many points per mapped class.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed (ties between equal uncertainties).")] = 0,
) -> None:
    """Pick points to label next: the most uncertain pixels, spread out, stratified by mapped class.

    Points keep a minimum distance; the strata are proportional, with a minimum per class.

    Writes them with the columns of sample-design points (fill 'reference', then add them
    to the training labels and retrain) plus their uncertainty, most uncertain first.
    """
    from cropseq.sampling_design import check_points_path, write_points
    from cropseq.suggest import suggest_points

    check_points_path(out)
    points = suggest_points(map_path, n, uncertainty=uncertainty, min_distance=min_distance,
                            min_distance_m=min_distance_m, min_per_class=min_per_class, seed=seed)
    write_points(points, out)
    counts = points["map_class"].value_counts()
    per = ", ".join(f"{name} {int(counts[name])}" for name in sorted(counts.index))
    typer.echo(f"wrote {out}: {len(points)} points ({per}); uncertainty {points['uncertainty'].min():.3f}"
               f"..{points['uncertainty'].max():.3f}; fill the 'reference' column, then retrain")
