"""CLI command ``cropseq simulate``: write the seeded synthetic demo scene."""

from __future__ import annotations

from pathlib import Path

import typer

from cropseq.cli import app
from cropseq.simulate import (
    DEFAULT_LABEL_NOISE,
    MAX_DATES,
    MAX_FIELD,
    MAX_LABEL_NOISE,
    MAX_SIZE,
    MIN_DATES,
    MIN_FIELD,
    MIN_SIZE,
)

__all__ = ["simulate_cmd"]

_LAYOUT_HELP = ("stac: a static STAC catalogue of per-band COGs like a Sentinel-2 L2A product (10 m B02 B03 B04 B08; "
                "20 m B05 B11 B12 and the scene classification SCL; uint16, scale 0.0001, fill 0) read through "
                "source: stac; one-grid: one 6-band GeoTIFF and one cloud mask per date on one 10 m grid (images/).")


@app.command("simulate")
def simulate_cmd(
    outdir: Path = typer.Argument(..., help="Folder to write the scene into (created if missing)."),
    size: int = typer.Option(512, "--size", min=MIN_SIZE, max=MAX_SIZE,
                             help="Width and height in 10 m pixels."),
    dates: int = typer.Option(24, "--dates", min=MIN_DATES, max=MAX_DATES,
                              help="Acquisition dates in the 2023 season (5-day slots, some missing)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed; the same seed gives identical files."),
    label_fraction: float = typer.Option(
        0.5, "--label-fraction",
        help="Share of each class's fields in labels.gpkg (0 < f <= 1); the rest go to test_fields.gpkg."),
    field_size: int = typer.Option(32, "--field-size", min=MIN_FIELD, max=MAX_FIELD,
                                   help="Parcel grid cell in pixels (fields of ~1-10 ha at 32)."),
    label_noise: float = typer.Option(
        DEFAULT_LABEL_NOISE, "--label-noise", min=0.0, max=MAX_LABEL_NOISE,
        help="Share of the labelled crop fields written under another crop's name (label noise); "
             "truth.tif and test_fields.gpkg stay true."),
    layout: str = typer.Option("stac", "--layout", help=_LAYOUT_HELP),
) -> None:
    """Write a synthetic Sentinel-2 season with crop fields, clouds, labels and truth.

    OUTDIR gets stack.yaml (a source: stac manifest), catalog/ (a static STAC catalogue: one item per date, one COG per band, SCL cloud classes; --layout one-grid: images/S2_YYYYMMDD.tif and images/MASK_YYYYMMDD.tif with a per-date manifest), truth.tif (class of every pixel), classes.yaml, labels.gpkg (the labelled fields), test_fields.gpkg (the held-out fields) and scene.json. The scene is as hard as real data: fields of a class differ in sowing date and vigour, sowing windows of classes overlap, small clouds mask different dates on different fields, pixels on field edges mix both fields, and a few labelled fields carry a wrong label. The same seed gives identical files.
    """
    from cropseq.simulate import simulate_scene  # heavy imports only when the command runs

    info = simulate_scene(outdir, size=size, n_dates=dates, seed=seed,
                          label_fraction=label_fraction, field_size=field_size, label_noise=label_noise,
                          layout=layout)
    print(info.summary())
