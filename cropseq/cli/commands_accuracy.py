"""``cropseq sample-design`` and ``cropseq assess``: good-practice accuracy and area.

Thin over :mod:`cropseq.sampling_design` (the map side) and :mod:`cropseq.accuracy` (the
estimators; the JSON keys are documented there).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cropseq.cli import app
from cropseq.errors import CropseqError

if TYPE_CHECKING:
    from cropseq.accuracy import AccuracyAssessment, Estimate
    from cropseq.sampling_design import SampleDesign

__all__ = ["assess_cmd", "default_plot_path", "sample_design_cmd"]


def default_plot_path(out: Path) -> Path:
    """``assess.json`` → ``assess.areas.png`` in the same folder."""
    return out.with_name(f"{out.stem}.areas.png")


def _print_design(design: SampleDesign, out: Path, n_drawn: int) -> None:
    from rich.console import Console
    from rich.table import Table

    s = design.strata
    total = float(s.hectares.sum())
    how = f"target SE of OA {design.target_se:g}" if design.target_se is not None else "--n"
    table = Table(title=f"Sample design of {s.path.name}: {n_drawn} points ({design.allocation}, "
                  f"n = {design.n_planned} from {how}, at least {design.min_per_class} per class)",
                  title_justify="left")  # fmt: skip
    for col in ("class", "code", "map area (ha)", "share", "expected UA", "points"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for i, name in enumerate(s.names):
        share = s.hectares[i] / total if total else 0.0
        table.add_row(name, str(s.codes[i]), f"{s.hectares[i]:,.2f}", f"{share:.2%}",
                      f"{design.expected_ua[i]:.2f}", str(int(design.points[i])))  # fmt: skip
    Console().print(table)
    if s.note:
        typer.echo(f"note: {s.note}")
    typer.echo(f"wrote {out}: fill the 'reference' column with each point's true class, then run cropseq assess")


@app.command("sample-design")
def sample_design_cmd(
    map_path: Annotated[Path, typer.Option("--map", help="Crop map COG (uint8 codes, nodata 0, class names).")],
    out: Annotated[Path, typer.Option("--out", help="Points to write (.gpkg; or .geojson, .csv with x,y).")],
    target_se: Annotated[
        float, typer.Option("--target-se", help="Target standard error of the overall accuracy (sets n).")
    ] = 0.01,
    expected_ua: Annotated[
        list[str] | None,
        typer.Option("--expected-ua", help="CLASS=VALUE expected user's accuracy (repeat per class; others 0.8)."),
    ] = None,
    allocation: Annotated[
        str, typer.Option("--allocation", help="proportional | equal | neyman (to the map classes).")
    ] = "proportional",
    min_per_class: Annotated[int, typer.Option("--min-per-class", min=0, help="Minimum points per class.")] = 50,
    n: Annotated[int | None, typer.Option("--n", help="Total sample size (overrides --target-se).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the draw.")] = 0,
) -> None:
    """Draw a stratified random sample of points over a crop map, for reference labelling.

    The map classes are the strata. The sample size comes from --target-se with the
    expected user's accuracies (Olofsson et al. 2014, eq. 13) unless --n is given.
    """
    from cropseq.sampling_design import (
        check_points_path,
        draw_points,
        map_strata,
        parse_expected_ua,
        plan_design,
        write_points,
    )

    check_points_path(out)
    strata = map_strata(map_path)
    ua = parse_expected_ua(expected_ua, strata.names)
    design = plan_design(strata, expected_ua=ua, target_se=target_se, allocation=allocation,
                         min_per_class=min_per_class, n=n)  # fmt: skip
    points = draw_points(design, seed=seed)
    write_points(points, out)
    _print_design(design, out, len(points))


def _fmt(e: Estimate, digits: int = 3, scale: float = 1.0) -> str:
    if e.estimate is None:
        return "n/a"
    text = f"{e.estimate * scale:,.{digits}f}"
    if e.ci95 is not None:
        text += f" [{e.ci95[0] * scale:,.{digits}f}, {e.ci95[1] * scale:,.{digits}f}]"
    return text


def _print_assessment(result: AccuracyAssessment) -> None:
    from rich.console import Console
    from rich.table import Table

    ci = "" if result.census else f" [{result.confidence:.0%} CI]"
    oa = result.overall_accuracy
    areas = result.design != "non_probability"  # such points estimate no area: mapped only
    what = "Accuracy and area" if areas else "Accuracy of the sample points (no area estimate)"
    table = Table(title=f"{what} ({result.design}, n = {int(result.counts.sum())}): "
                  f"OA {_fmt(oa)}", title_justify="left")  # fmt: skip
    table.add_column("class")
    estimated = [f"estimated ({result.area_unit}){ci}"] if areas else []
    for col in ("n", f"mapped ({result.area_unit})", *estimated, f"UA{ci}", f"PA{ci}"):
        table.add_column(col, justify="right")
    for c in result.per_class:
        table.add_row(c.name, str(c.n_samples), f"{c.area_map:,.1f}", *([_fmt(c.area, 1)] if areas else []),
                      _fmt(c.users_accuracy), _fmt(c.producers_accuracy))  # fmt: skip
    console = Console()
    # Intervals make wide cells: when piped (no terminal width), use 120 columns, not 80.
    (console if console.is_terminal else Console(width=120)).print(table)
    if result.note:
        typer.echo(f"note: {result.note}")


@app.command("assess")
def assess_cmd(
    out: Annotated[Path, typer.Option("--out", help="Assessment JSON to write.")],
    map_path: Annotated[Path | None, typer.Option("--map", help="Crop map the points were drawn on.")] = None,
    reference: Annotated[
        Path | None,
        typer.Option("--reference", help="Labelled points (.gpkg/vector, or CSV with x,y or longitude,latitude); "
                     "or a reference raster (.tif) on the map's grid for a census."),
    ] = None,
    reference_column: Annotated[
        str, typer.Option("--reference-column", help="Column of --reference holding the true class.")
    ] = "reference",
    matrix: Annotated[
        Path | None,
        typer.Option("--matrix", help="Sample counts CSV: map_class column + one column per reference class."),
    ] = None,
    map_areas: Annotated[
        Path | None,
        typer.Option("--map-areas", help="With --matrix: CSV class,area (pixels with --pixel-area, else ha)."),
    ] = None,
    pixel_area: Annotated[
        float | None, typer.Option("--pixel-area", help="Hectares per pixel: --map-areas are pixel counts.")
    ] = None,
    design: Annotated[
        str,
        typer.Option("--design", help="stratified (by map class, as sample-design draws) | simple-random | "
                     "non-probability (e.g. held-out field samples: accuracies of the points, no area estimates)."),
    ] = "stratified",
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Area PNG (default: <out stem>.areas.png).")
    ] = None,
) -> None:
    """Estimate accuracy and class areas with 95 % intervals (Olofsson et al. 2014).

    From labelled points on a map (--map, --reference), from tables (--matrix,
    --map-areas), or as a census against a reference raster (--map, --reference X.tif).
    Points that are no probability sample of the map (--design non-probability) give the
    accuracies of those points only, and no area estimates.
    """
    from cropseq.accuracy import plot_areas
    from cropseq.atomic import check_writable
    from cropseq.evaluation import write_metrics
    from cropseq.sampling_design import (
        POINT_DESIGNS,
        assess_census,
        assess_points,
        assess_tables,
    )

    if (map_path is None) == (matrix is None):
        raise CropseqError("give either --map with --reference, or --matrix with --map-areas")
    if map_path is not None and reference is None:
        raise CropseqError("--map needs --reference (the labelled points)")
    if matrix is not None and (map_areas is None or reference is not None):
        raise CropseqError("--matrix goes with --map-areas (and without --reference)")
    if pixel_area is not None and matrix is None:
        raise CropseqError("--pixel-area goes with --matrix and --map-areas")
    design_key = design.replace("-", "_")
    if design_key not in POINT_DESIGNS:
        raise CropseqError(f"--design {design!r}: use {' | '.join(d.replace('_', '-') for d in POINT_DESIGNS)}")
    plot = plot if plot is not None else default_plot_path(out)
    check_writable(out)
    check_writable(plot)

    if matrix is not None:
        assert map_areas is not None
        result = assess_tables(matrix, map_areas, pixel_area=pixel_area, design=design_key)
        meta = {"matrix": str(matrix), "map_areas": str(map_areas)}
    elif reference is not None and reference.suffix.lower() in (".tif", ".tiff", ".vrt"):
        assert map_path is not None
        result = assess_census(map_path, reference)
        meta = {"map": str(map_path), "reference": str(reference)}
    else:
        assert map_path is not None and reference is not None
        result = assess_points(map_path, reference, reference_column=reference_column, design=design_key)
        meta = {"map": str(map_path), "reference": str(reference)}

    write_metrics({**result.to_dict(), **meta}, out)
    plot_areas(result, plot, title=Path(meta.get("map", meta.get("matrix", ""))).name)
    _print_assessment(result)
    typer.echo(f"wrote {out} and {plot}")
