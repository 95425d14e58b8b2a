"""``cropseq cap-samples``, ``cropseq samples-to-points`` and ``cropseq label-points``.

Small steps between the big stages, each a rule of the Snakemake workflow (cap_samples,
heldout_points, label_points) and usable by hand. Thin over :mod:`cropseq.samples` and
:mod:`cropseq.reference_points`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cropseq.cli import app
from cropseq.cli._common import existing_path

__all__ = ["cap_samples_cmd", "label_points_cmd", "samples_to_points_cmd"]


@app.command("cap-samples")
def cap_samples_cmd(
    samples: Annotated[Path, typer.Option("--samples", help="Samples table (CSV or Parquet).")],
    out: Annotated[Path, typer.Option("--out", help="Samples table to write (.csv or .parquet).")],
    max_per_group: Annotated[
        int, typer.Option("--max-per-group", min=1, help="Keep at most N random samples per field (group).")
    ],
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the choice (same seed, same samples).")] = 0,
) -> None:
    """Keep at most N random samples of each field (group) of a samples table, seeded.

    Every field and class stays; the class table stored with the input goes with the
    samples. The same as `cropseq samples --max-per-group`, on a table already extracted.
    """
    from cropseq.atomic import check_writable
    from cropseq.samples import cap_per_group, read_samples, read_samples_classes, table_format, write_samples

    table_format(out)
    check_writable(out)
    df = read_samples(existing_path(samples, "samples table"))
    kept = cap_per_group(df, max_per_group, seed=seed, where=samples)
    write_samples(kept, out, classes=read_samples_classes(samples))
    print(f"{kept['sample_id'].nunique()} of {df['sample_id'].nunique()} samples kept (at most {max_per_group} "
          f"per group, {df['group'].nunique()} groups) -> {out}")  # fmt: skip


@app.command("samples-to-points")
def samples_to_points_cmd(
    samples: Annotated[Path, typer.Option("--samples", help="Samples table (CSV or Parquet), e.g. the test split.")],
    out: Annotated[Path, typer.Option("--out", help="Points to write (.csv: sample_id, x, y, label, group).")],
) -> None:
    """Write one point per sample of a samples table (x, y in the stack's CRS, label).

    A samples table has one row per sample and date; the points are what `cropseq
    evaluate --map --truth` and `cropseq assess --reference` read, one per sample, so the
    held-out samples can score a map.
    """
    from cropseq.reference_points import check_samples_points_path, samples_points, write_samples_points
    from cropseq.samples import read_samples

    check_samples_points_path(out)  # before reading anything
    points = samples_points(read_samples(existing_path(samples, "samples table")), where=samples)
    write_samples_points(points, out)
    print(f"{len(points)} points, one per sample -> {out}")


@app.command("label-points")
def label_points_cmd(
    points: Annotated[Path, typer.Option("--points", help="Points to label (.gpkg/.geojson, or .csv with x, y).")],
    reference: Annotated[
        Path, typer.Option("--reference", help="Raster that knows every pixel's class (named codes), e.g. truth.tif.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Labelled points to write (.gpkg, .geojson or .csv).")],
    column: Annotated[str, typer.Option("--column", help="Column to fill with the class names.")] = "reference",
) -> None:
    """Fill the points' reference column with the class under each point of a reference raster.

    `cropseq sample-design` leaves the column empty for an analyst to fill from field visits
    or imagery; where a raster knows every pixel's class (a simulated scene's truth.tif, a
    census map) this does it, and `cropseq assess` reads the result.
    """
    from cropseq.reference_points import label_points
    from cropseq.sampling_design import check_points_path, write_points

    check_points_path(out)
    gdf = label_points(points, reference, column=column)
    write_points(gdf, out)
    agree = ""
    if "map_class" in gdf.columns and len(gdf):
        agree = f" ({float((gdf[column] == gdf['map_class']).mean()):.1%} agree with the map)"
    print(f"{len(gdf)} points labelled from {reference}{agree} -> {out}")
