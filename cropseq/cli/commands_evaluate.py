"""``cropseq evaluate``: score a model on held-out samples, or a crop map against truth.

Thin over :mod:`cropseq.evaluation`; writes the metrics JSON and a confusion-matrix PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cropseq.cli import app
from cropseq.errors import CropseqError


def default_plot_path(out: Path) -> Path:
    """``metrics.json`` → ``metrics.confusion.png`` in the same folder."""
    return out.with_name(f"{out.stem}.confusion.png")


@app.command("evaluate")
def evaluate_cmd(
    out: Annotated[Path, typer.Option("--out", help="Metrics JSON to write.")],
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Trained model (*.pt or *.skops). Required with --samples; with --map it "
                     "only supplies the class table when the map carries none."),
    ] = None,
    samples: Annotated[Path | None, typer.Option("--samples", help="Held-out samples table (CSV/Parquet).")] = None,
    map_path: Annotated[Path | None, typer.Option("--map", help="Crop map GeoTIFF to score.")] = None,
    truth: Annotated[
        Path | None,
        typer.Option("--truth", help="Truth for --map: a class raster on the map's grid (.tif) or a label file."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Confusion-matrix PNG (default: <out stem>.confusion.png).")
    ] = None,
    class_column: Annotated[str, typer.Option("--class-column", help="Class attribute of --truth labels.")] = "label",
    valid_at: Annotated[
        str | None,
        typer.Option("--valid-at", help="With --truth labels that carry from/to seasons: score only the labels "
                     "valid on this date (YYYY-MM-DD, a date inside the map's period)."),
    ] = None,
    allow_incomplete: Annotated[
        bool, typer.Option("--allow-incomplete", help="Accept the checkpoint of an unfinished training run (<model>.partial).")
    ] = False,
) -> None:
    """Score a model on labelled samples, or a crop map against a truth raster or labels.

    Writes overall accuracy, kappa, macro F1, per-class user's/producer's accuracy and F1,
    and the confusion matrix (rows = reference) to --out, plus a confusion-matrix PNG.
    """
    from cropseq.atomic import check_writable
    from cropseq.evaluation import (
        evaluate_samples,
        plot_confusion_matrix,
        score_map,
        summary_line,
        write_metrics,
    )
    from cropseq.predictors import load_predictor, missing_model_error

    if (samples is None) == (map_path is None):
        raise CropseqError("give exactly one of --samples or --map")
    if map_path is not None and truth is None:
        raise CropseqError("--map needs --truth (a class raster or a label file)")
    if samples is not None and truth is not None:
        raise CropseqError("--truth goes with --map; with --samples the table's labels are the truth")
    if valid_at is not None and map_path is None:
        raise CropseqError("--valid-at goes with --map and --truth labels")
    if samples is not None and model is None:
        raise CropseqError("--samples needs --model")
    plot = plot if plot is not None else default_plot_path(out)
    check_writable(out)
    check_writable(plot)
    if model is not None and not model.is_file():
        raise missing_model_error(model)

    if samples is not None:
        from cropseq.samples import read_samples, table_to_arrays

        assert model is not None
        predictor = load_predictor(model, allow_incomplete=allow_incomplete)
        df = read_samples(samples)
        arrays = table_to_arrays(df, where=samples)
        metrics = evaluate_samples(predictor, arrays, where=str(samples))
        metrics["model"] = str(model)
        metrics["samples"] = str(samples)
        title = f"{model.name} on {samples.name}"
    else:
        assert map_path is not None and truth is not None
        classes = load_predictor(model, allow_incomplete=allow_incomplete).classes if model is not None else None
        metrics = score_map(map_path, truth, class_column=class_column, classes=classes, valid_at=valid_at)
        if model is not None:
            metrics["model"] = str(model)
        title = f"{map_path.name} vs {truth.name}"

    write_metrics(metrics, out)
    plot_confusion_matrix(metrics, plot, title=title)
    typer.echo(summary_line(metrics))
    extra = ""
    if metrics.get("unknown_labels"):
        extra = f" (labels unknown to the model, always counted wrong: {', '.join(metrics['unknown_labels'])})"
    if metrics.get("n_unclassified"):
        extra += f" ({metrics['n_unclassified']} reference pixels on unclassified map pixels left out)"
    typer.echo(f"wrote {out} and {plot}{extra}")
