"""CLI commands for data: ``inspect``, ``tile``, ``samples``, ``split``.

Thin over :mod:`cropseq.io`, :mod:`cropseq.tiling`, :mod:`cropseq.labels` and
:mod:`cropseq.samples`; heavy imports happen inside the commands so ``cropseq --help``
stays fast.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import typer

from cropseq.cli import app
from cropseq.cli._common import existing_path, print_json
from cropseq.errors import CropseqError

__all__ = ["inspect_cmd", "samples_cmd", "split_cmd", "tile_cmd"]


def _warn(message: str) -> None:
    print(f"cropseq: warning: {message}", file=sys.stderr)


def _print_summary(s: dict[str, Any]) -> None:
    """The ``inspect`` report as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    dates = s["dates"]
    grid = Table(title=f"Stack {s['source']}", show_header=False, title_justify="left")
    grid.add_column("key", style="bold")
    grid.add_column("value")
    grid.add_row("dates", f"{len(dates)}: {dates[0]} .. {dates[-1]}" if dates else "0")
    if s.get("composite"):  # a regular time grid (cropseq.composite): the dates are bin starts
        c = s["composite"]
        grid.add_row("composite", f"{c['period']} {c['method']} of {c['observations']} dates: {c['bins']} bins "
                     f"(dates = bin starts), {c['empty_bins']} empty (no date in the bin: NaN)")
    grid.add_row("bands", ", ".join(s["bands"]))
    grid.add_row("size", f"{s['shape']['y']} rows x {s['shape']['x']} cols (y x x)")
    grid.add_row("CRS", s["crs_name"])
    per_band = s.get("band_resolution") or {}
    resampled = [b for b, r in per_band.items() if r["resampling"]]
    target = " (target grid: bands read onto it)" if resampled else ""
    grid.add_row("resolution", f"{s['resolution'][0]:.6g} x {s['resolution'][1]:.6g}{target}")
    grid.add_row("bounds", "left {:.3f}, bottom {:.3f}, right {:.3f}, top {:.3f}".format(*s["bounds"]))
    console.print(grid)
    sampled = s.get("missing_sampled_px")
    note = f" (estimated from {sampled} sampled px)" if sampled else ""
    miss = Table(title=f"Missing (NaN) share per band{note}", title_justify="left")
    miss.add_column("band")
    miss.add_column("missing", justify="right")
    if per_band:
        miss.add_column("resolution as read")
        miss.add_column("resampled")
    for b, f in s["missing_fraction"].items():
        cells = [b, f"{100 * f:.2f} %"]
        if per_band and b in per_band:
            r = per_band[b]
            cells += [f"{r['resolution'][0]:.6g} x {r['resolution'][1]:.6g}", r["resampling"] or "no (on the grid)"]
        miss.add_row(*cells)
    console.print(miss)
    stats = s.get("value_stats") or {}
    if stats:
        vals = Table(title=f"Valid values ({s['value_sampled_px']} sampled px, all dates)", title_justify="left")
        for col in ("band", "min", "1st pct", "99th pct", "max"):
            vals.add_column(col, justify="left" if col == "band" else "right")
        for b, v in stats.items():
            vals.add_row(b, *("-" if v[k] is None else f"{v[k]:.6g}" for k in ("min", "p1", "p99", "max")))
        console.print(vals)


def _print_stac(found: dict[str, Any]) -> None:
    """The STAC items, dates and bands (asset, resolution, CRS) a ``source: stac`` stack found."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    items, dates = found["items"], found["dates"]
    console.print(f"STAC {found['catalog']}: {len(items)} items on {len(dates)} dates "
                  f"({found['groupby']}), {dates[0]} .. {dates[-1]}")  # fmt: skip
    table = Table(title="Items", title_justify="left")
    for col in ("item", "datetime", "collection"):
        table.add_column(col)
    for it in items:
        table.add_row(it["id"], it["datetime"], str(it["collection"] or ""))
    console.print(table)
    bands = Table(title=f"Bands, read onto a {found['resolution'][0]:.6g} x {found['resolution'][1]:.6g} grid in {found['crs']}",
                  title_justify="left")  # fmt: skip
    for col in ("band", "asset", "resolution", "CRS", "resampling", "nodata", "scale"):
        bands.add_column(col)
    for name, b in found["bands"].items():
        bands.add_row(name + (" (mask)" if b["mask"] else ""), b["asset"], "{:.6g} x {:.6g}".format(*b["resolution"]),
                      str(b["crs"]), b["resampling"], str(b["nodata"]), f"{b['scale']:g}")  # fmt: skip
    console.print(bands)


@app.command("inspect")
def inspect_cmd(
    stack: Path = typer.Argument(..., help="stack.yaml, a folder holding one, or a tile store (*.zarr)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summarise a stack: dates, bands, grid, CRS, missing data and value ranges per band.

    Value ranges (min, 1st/99th percentile, max of the valid values) come from a bounded
    sample of windows; bands whose values sit at their integer type's limit are warned about.
    """
    from cropseq.io import open_stack, rewarn_opening, stack_summary
    from cropseq.stac_source import stac_listing

    with warnings.catch_warnings(record=True) as opening:
        warnings.simplefilter("always")
        cube = open_stack(existing_path(stack, "stack"))
    found = stac_listing(cube)
    if found is not None and not as_json:
        _print_stac(found)  # what the catalogue search found, before any pixel is read
    summary = stack_summary(cube)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)
    limits = summary.get("value_warnings") or []
    rewarn_opening(opening, limits)  # one line per problem: a band's fuller line replaces its warning at open
    for line in limits:
        _warn(line)


@app.command("tile")
def tile_cmd(
    stack: Path = typer.Argument(..., help="stack.yaml or a folder holding one."),
    out: Path = typer.Option(..., "--out", help="Output folder: <tile_id>.zarr stores + tiles.json."),
    size: int = typer.Option(256, "--size", min=1, help="Core tile size in pixels."),
    halo: int = typer.Option(1, "--halo", min=0, help="Halo in pixels around each core (patch // 2 of the model)."),
) -> None:
    """Cut a stack into tiles with a halo (OUT/<tile_id>.zarr, OUT/tiles.json)."""
    from cropseq.io import open_stack
    from cropseq.tiling import tile_stack

    cube = open_stack(existing_path(stack, "stack"), chunks=max(size, 64))
    index = tile_stack(cube, out, size=size, halo=halo)
    print(f"{len(index['tiles'])} tiles of {size} px (halo {halo}) -> {out}")


@app.command("samples")
def samples_cmd(
    stack: Path = typer.Option(..., "--stack", help="stack.yaml, a folder holding one, or a tile store."),
    labels: Path = typer.Option(
        ..., "--labels",
        help="Labels: vector file (polygons/points), CSV points, or a label raster (.tif: every labelled pixel "
             "is a sample, grouped by connected patch of one class; read onto the stack's grid).",
    ),
    out: Path = typer.Option(..., "--out", help="Samples table to write (.csv or .parquet)."),
    patch: int = typer.Option(1, "--patch", help="Patch size (odd, >= 1)."),
    class_column: str = typer.Option("label", "--class-column", help="Column holding the class names."),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="Column with a field id (the split group)."),
    classes: Optional[Path] = typer.Option(
        None, "--classes",
        help="Class table YAML (codes, names, colours); unknown labels are an error. Default: the labels' own "
             "table (<labels stem>.classes.yaml or classes.yaml beside them, or code/color columns), else "
             "the sorted class names.",
    ),
    start: Optional[str] = typer.Option(None, "--start", help="First date kept (YYYY-MM-DD, inclusive)."),
    end: Optional[str] = typer.Option(None, "--end", help="End date (YYYY-MM-DD, exclusive)."),
    max_per_group: Optional[int] = typer.Option(
        None, "--max-per-group", min=1,
        help="Keep at most N random samples per field (group): polygons give one sample per pixel.",
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed of --max-per-group."),
    unlabelled: Optional[list[int]] = typer.Option(
        None, "--unlabelled", help="Label-raster value meaning 'no label' (repeatable; default 0; its nodata too)."
    ),
) -> None:
    """Extract labelled pixel time series into a samples table.

    The class table (codes, names, colours) is stored with the table: in a Parquet file's
    metadata, or beside a CSV as <OUT stem>.classes.yaml. `cropseq train` uses it.
    """
    from cropseq.atomic import check_writable
    from cropseq.classes import ClassTable
    from cropseq.io import cube_grid, open_stack
    from cropseq.label_raster import UNLABELLED
    from cropseq.labels import read_labels
    from cropseq.samples import cap_per_group, check_patch, extract_samples, table_format, write_samples

    # Fail fast on options before reading anything.
    table_format(out)
    check_writable(out)
    try:
        check_patch(patch)
    except CropseqError as e:
        raise CropseqError(f"--patch: {e.message}") from None
    table = ClassTable.from_yaml(classes) if classes is not None else None
    cube = open_stack(existing_path(stack, "stack"))
    label_set = read_labels(existing_path(labels, "labels file"), cube.rio.crs, class_column=class_column,
                            id_column=id_column, classes=table, grid=cube_grid(cube),
                            unlabelled=unlabelled or UNLABELLED)  # fmt: skip
    df, report = extract_samples(cube, label_set, patch=patch, start=start, end=end)
    for w in report.warnings():
        _warn(w)
    if max_per_group is not None:
        n_all = df["sample_id"].nunique()
        df = cap_per_group(df, max_per_group, seed=seed)
        report.recount(df)
        print(f"{report.n_samples} of {n_all} samples kept (at most {max_per_group} per group)")
    write_samples(df, out, classes=label_set.classes)
    if label_set.classes_source not in (None, "given"):
        print(f"class table from {label_set.classes_source}")
    print(f"{report.summary()} -> {out}")


@app.command("split")
def split_cmd(
    samples: Path = typer.Option(..., "--samples", help="Samples table (CSV or Parquet)."),
    train: Path = typer.Option(..., "--train", help="Training table to write."),
    val: Path = typer.Option(..., "--val", help="Validation table to write."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test table to write (needs --test-fraction > 0)."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Share of samples for validation."),
    test_fraction: float = typer.Option(0.0, "--test-fraction", help="Share of samples for test."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same split)."),
) -> None:
    """Split a samples table by group (fields stay on one side), stratified by class."""
    from cropseq.atomic import check_writable
    from cropseq.samples import (
        grouped_stratified_split,
        read_samples,
        read_samples_classes,
        table_format,
        write_samples,
    )

    if test is not None and test_fraction <= 0:
        raise CropseqError("--test needs --test-fraction > 0", test)
    if test is None and test_fraction > 0:
        raise CropseqError("--test-fraction > 0 needs --test OUT")
    outs = [p for p in (train, val, test) if p is not None]
    for p in outs:
        table_format(p)
        check_writable(p)
    if len({p.resolve() for p in outs}) != len(outs):
        raise CropseqError("--train, --val and --test must be different files")
    df = read_samples(existing_path(samples, "samples table"))
    classes = read_samples_classes(samples)  # carried over: every part keeps the same codes
    parts = grouped_stratified_split(df, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    named = [(n, part, path) for n, part, path in zip(("train", "val", "test"), parts, (train, val, test), strict=True)
             if path is not None]  # fmt: skip
    # Check every part before writing any: a failed split leaves no output at all.
    for name, part, _ in named:
        if len(part) == 0:
            raise CropseqError(f"the {name} split is empty (too few groups for the fractions)", samples)
    counts = []
    for name, part, path in named:
        write_samples(part, path, classes=classes)
        counts.append(f"{name} {part['sample_id'].nunique()} samples")
    print(", ".join(counts))
