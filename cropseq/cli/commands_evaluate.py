"""``cropseq evaluate``: score a model on held-out samples, or a crop map against truth.

Thin over :mod:`cropseq.evaluation`; writes the metrics JSON and a confusion-matrix PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cropseq.cli import app
from cropseq.errors import CropseqError

__all__ = ["default_plot_path", "evaluate_cmd"]


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
    from cropseq.evaluation import plot_confusion_matrix, summary_line, write_metrics
    from cropseq.predictors import missing_model_error

    _check_evaluate_options(model, samples, map_path, truth, valid_at)
    plot = plot if plot is not None else default_plot_path(out)
    check_writable(out)
    check_writable(plot)
    if model is not None and not model.is_file():
        raise missing_model_error(model)
    if samples is not None:
        assert model is not None
        metrics, title = _score_samples(model, samples, allow_incomplete)
    else:
        assert map_path is not None and truth is not None
        metrics, title = _score_map(map_path, truth, model, class_column, valid_at, allow_incomplete)
    write_metrics(metrics, out)
    plot_confusion_matrix(metrics, plot, title=title)
    typer.echo(summary_line(metrics))
    extra = ""
    if metrics.get("unknown_labels"):
        extra = f" (labels unknown to the model, always counted wrong: {', '.join(metrics['unknown_labels'])})"
    if metrics.get("n_unclassified"):
        extra += f" ({metrics['n_unclassified']} reference pixels on unclassified map pixels left out)"
    typer.echo(f"wrote {out} and {plot}{extra}")


def _check_evaluate_options(model: Path | None, samples: Path | None, map_path: Path | None, truth: Path | None,
                            valid_at: str | None) -> None:  # fmt: skip
    """One of --samples (with --model) or --map (with --truth); --valid-at only with --map."""
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


def _score_samples(model: Path, samples: Path, allow_incomplete: bool) -> tuple[dict[str, Any], str]:
    """The model's metrics on a labelled samples table, and the plot's title."""
    from cropseq.evaluation import evaluate_samples
    from cropseq.predictors import load_predictor
    from cropseq.samples import read_samples, table_to_arrays

    predictor = load_predictor(model, allow_incomplete=allow_incomplete)
    df = read_samples(samples)
    arrays = table_to_arrays(df, where=samples)
    metrics = evaluate_samples(predictor, arrays, where=str(samples))
    metrics["model"] = str(model)
    metrics["samples"] = str(samples)
    return metrics, f"{model.name} on {samples.name}"


def _score_map(map_path: Path, truth: Path, model: Path | None, class_column: str, valid_at: str | None,
               allow_incomplete: bool) -> tuple[dict[str, Any], str]:  # fmt: skip
    """The map's metrics against a truth raster or labels, and the plot's title.

    The model only supplies a class table.
    """
    from cropseq.evaluation import score_map
    from cropseq.predictors import load_predictor

    classes = load_predictor(model, allow_incomplete=allow_incomplete).classes if model is not None else None
    metrics = score_map(map_path, truth, class_column=class_column, classes=classes, valid_at=valid_at)
    if model is not None:
        metrics["model"] = str(model)
    return metrics, f"{map_path.name} vs {truth.name}"
