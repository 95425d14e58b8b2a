"""``cropseq report``: one self-contained HTML report of a run (thin over :mod:`cropseq.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cropseq.cli import app
from cropseq.errors import CropseqError

__all__ = ["report_cmd"]


def _pairs(values: list[str] | None, option: str) -> dict[str, Path]:
    """``NAME=PATH`` items (split on the first ``=``) → ``{NAME: PATH}``, in order."""
    out: dict[str, Path] = {}
    for v in values or []:
        name, sep, path = v.partition("=")
        if not sep or not name.strip() or not path:
            raise CropseqError(f"{option} expects NAME=PATH, got {v!r}")
        out[name.strip()] = Path(path)
    return out


@app.command("report")
def report_cmd(
    out: Annotated[Path, typer.Option("--out", help="HTML report to write (one self-contained file).")],
    title: Annotated[str, typer.Option("--title", help="Report title.")] = "cropseq report",
    description: Annotated[str, typer.Option("--description", help="Text under the title.")] = "",
    metrics: Annotated[
        list[str] | None,
        typer.Option("--metrics", help="NAME=metrics.json of a model on the test split (repeat per model)."),
    ] = None,
    confusion: Annotated[
        list[str] | None, typer.Option("--confusion", help="NAME=confusion.png of a model (repeat per model).")
    ] = None,
    curves: Annotated[list[Path] | None, typer.Option("--curves", help="Training-curves PNG (repeatable).")] = None,
    history: Annotated[Path | None, typer.Option("--history", help="Training history CSV.")] = None,
    map_path: Annotated[Path | None, typer.Option("--map", help="Crop-map COG (previewed with its legend).")] = None,
    confidence: Annotated[Path | None, typer.Option("--confidence", help="Confidence COG.")] = None,
    area: Annotated[Path | None, typer.Option("--area", help="Area CSV (code,name,pixels,hectares,share).")] = None,
    map_metrics: Annotated[
        Path | None, typer.Option("--map-metrics", help="Metrics JSON of the map against the truth.")
    ] = None,
    map_confusion: Annotated[
        Path | None, typer.Option("--map-confusion", help="Confusion-matrix PNG of the map against the truth.")
    ] = None,
    assess: Annotated[
        Path | None,
        typer.Option("--assess", help="cropseq assess JSON: estimated areas and accuracies with 95 % intervals."),
    ] = None,
    assess_plot: Annotated[
        Path | None, typer.Option("--assess-plot", help="Its mapped vs estimated area PNG.")
    ] = None,
    stack_summary: Annotated[
        Path | None, typer.Option("--stack-summary", help="Stack summary JSON (cropseq inspect --json).")
    ] = None,
    run_config: Annotated[
        Path | None, typer.Option("--run-config", help="Configuration of the run (JSON or YAML).")
    ] = None,
    benchmarks: Annotated[
        Path | None, typer.Option("--benchmarks", help="Folder of Snakemake benchmark *.tsv files (timings).")
    ] = None,
    preview: Annotated[Path | None, typer.Option("--preview", help="Also write the crop-map preview PNG here.")] = None,
    confidence_preview: Annotated[
        Path | None, typer.Option("--confidence-preview", help="Also write the confidence preview PNG here.")
    ] = None,
    preview_size: Annotated[
        int, typer.Option("--preview-size", min=64, max=8192, help="Longest side of the map previews in pixels.")
    ] = 1024,
    uncertainty: Annotated[
        Path | None, typer.Option("--uncertainty", help="Uncertainty COG (predict --uncertainty), beside the map.")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Reference class raster on the map's grid: the error map.")
    ] = None,
    stack: Annotated[
        Path | None, typer.Option("--stack", help="Image stack (stack.yaml): RGB composite, valid pixels per date.")
    ] = None,
    parcels: Annotated[Path | None, typer.Option("--parcels", help="Parcel map COG (cropseq parcels).")] = None,
    parcels_metrics: Annotated[
        Path | None, typer.Option("--parcels-metrics", help="Parcel scoring JSON (cropseq parcels --metrics).")
    ] = None,
) -> None:
    """Build one self-contained HTML report (images embedded).

    Metrics, confusion matrices, training curves, map previews with legends (map, confidence,
    uncertainty and error map side by side), the image (RGB composite, valid pixels per date),
    the parcel map, mapped and estimated areas with 95 % intervals, map accuracy against the
    held-out reference, inputs, timings.

    Every input is optional; sections without inputs are left out.
    """
    from cropseq.report import build_report

    path = build_report(
        out, title=title, description=description, metrics=_pairs(metrics, "--metrics"),
        confusion=_pairs(confusion, "--confusion"), curves=curves or None, history=history, map_path=map_path,
        confidence=confidence, area=area, map_metrics=map_metrics, map_confusion=map_confusion, assess=assess,
        assess_plot=assess_plot, stack_summary=stack_summary, run_config=run_config, benchmarks=benchmarks,
        preview=preview, confidence_preview_png=confidence_preview, preview_size=preview_size,
        uncertainty=uncertainty, truth=truth, stack=stack, parcels=parcels, parcels_metrics=parcels_metrics,
    )
    typer.echo(f"wrote {path}")
