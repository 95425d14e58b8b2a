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
) -> None:
    """Write a synthetic Sentinel-2 season with crop fields, clouds, labels and truth.

    OUTDIR gets stack.yaml (the per-date manifest), images/S2_YYYYMMDD.tif and images/MASK_YYYYMMDD.tif, truth.tif (class of every pixel), classes.yaml, labels.gpkg (the labelled fields), test_fields.gpkg (the held-out fields) and scene.json. The scene is as hard as real data: fields of a class differ in sowing date and vigour, sowing windows of classes overlap, small clouds mask different dates on different fields, pixels on field edges mix both fields, and a few labelled fields carry a wrong label. The same seed gives identical files.
    """
    from cropseq.simulate import simulate_scene  # heavy imports only when the command runs

    info = simulate_scene(outdir, size=size, n_dates=dates, seed=seed,
                          label_fraction=label_fraction, field_size=field_size, label_noise=label_noise)
    print(info.summary())
