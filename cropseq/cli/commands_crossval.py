"""``cropseq crossval``: k-fold cross-validation of the deep model beside the RandomForest.

Thin over :mod:`cropseq.crossval` (folds, training, scoring; the JSON keys are documented
there). Training options are those of ``cropseq train`` (``--config`` YAML, then the
command-line options, over the :class:`~cropseq.training.TrainConfig` defaults).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cropseq.cli import app
from cropseq.errors import CropseqError

__all__ = ["crossval_cmd", "default_plot_path", "model_plot_path"]


def default_plot_path(out: Path) -> Path:
    """``crossval.json`` → ``crossval.confusion.png`` (one file per model is derived from it)."""
    return out.with_name(f"{out.stem}.confusion.png")


def model_plot_path(plot: Path, model: str) -> Path:
    """``cm.png`` + ``gru`` → ``cm.gru.png``: the pooled confusion matrix of one model."""
    return plot.with_name(f"{plot.stem}.{model}{plot.suffix or '.png'}")


def _train_config(config: Path | None, options: dict[str, Any]) -> Any:
    """The deep model's :class:`~cropseq.training.TrainConfig`: YAML, then the CLI options."""
    from cropseq.training import TrainConfig
    from cropseq.training.config import load_yaml_options

    merged = {**(load_yaml_options(config) if config is not None else {}), **{k: v for k, v in options.items() if v is not None}}
    if str(merged.get("arch", "gru")).lower() == "rf":
        raise CropseqError("--arch is the deep model (gru, lstm or rnn); the RandomForest runs beside it (--rf, the default)")
    return TrainConfig.from_dict(merged, where=None if config is None else str(config))


def _print_tables(result: dict[str, Any]) -> None:
    """Per-fold rows, mean ± sd per model, and per-class F1 as rich tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    from cropseq.crossval import format_mean_sd

    def f(v: float | None) -> str:
        return "–" if v is None else f"{v:.4f}"

    folds = Table(title="Per fold", title_justify="left")
    for col in ("fold", "model", "train", "test", "OA", "kappa", "macro F1", "train s"):
        folds.add_column(col, justify="left" if col == "model" else "right")
    for r in result["per_fold"]:
        folds.add_row(str(r["fold"]), r["model"], str(r["n_train"]), str(r["n_test"]), f(r["overall_accuracy"]),
                      f(r["kappa"]), f(r["macro_f1"]), f"{r['train_seconds']:.1f}")  # fmt: skip
    models = list(result["summary"])
    means = Table(title=f"{result['folds']}-fold cross-validation ({result['splitter']}, group {result['group']}, "
                  f"seed {result['seed']}): mean ± sd", title_justify="left")  # fmt: skip
    for col in ("model", "OA", "kappa", "macro F1", "train s"):
        means.add_column(col, justify="left" if col == "model" else "right")
    for m in models:
        s = result["summary"][m]
        means.add_row(m, *(format_mean_sd(s[k]) for k in ("overall_accuracy", "kappa", "macro_f1")),
                      f"{s['train_seconds']['mean']:.1f}")  # fmt: skip
    per_class = Table(title="F1 per class: mean ± sd over folds", title_justify="left")
    per_class.add_column("class")
    for m in models:
        per_class.add_column(m, justify="right")
    for name in result["labels"]:
        per_class.add_row(name, *(format_mean_sd(result["summary"][m]["per_class_f1"][name]) for m in models))
    console = Console()
    for table in (folds, means, per_class):
        console.print(table)
    pooled = ", ".join(f"{m} {f(result['pooled'][m]['overall_accuracy'])}" for m in models)
    console.print(f"pooled over the folds (one confusion matrix): OA {pooled}")


@app.command("crossval")
def crossval_cmd(
    samples: Annotated[Path, typer.Option("--samples", help="Labelled samples table (CSV or Parquet).")],
    folds: Annotated[int, typer.Option("--folds", help="Number of folds (>= 2).")] = 5,
    group: Annotated[
        str, typer.Option("--group", help="Keep together: field (the table's group column), block:SIZE (square "
                          "blocks of SIZE metres, from x/y) or none (independent samples).")
    ] = "field",
    arch: Annotated[str | None, typer.Option("--arch", help="Deep model cell: gru | lstm | rnn (default: the fast preset's lstm).")] = None,
    rf: Annotated[bool, typer.Option("--rf/--no-rf", help="Also cross-validate the RandomForest baseline.")] = True,
    rf_trees: Annotated[int, typer.Option("--rf-trees", min=1, help="RandomForest trees.")] = 500,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the folds and of both models.")] = 0,
    out: Annotated[Path, typer.Option("--out", help="JSON with every fold, mean ± sd and pooled metrics.")] = Path("crossval.json"),
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Pooled confusion-matrix PNG; one per model, named <stem>.<model>.png "
                                  "(default <out stem>.confusion.<model>.png).")
    ] = None,
    bidirectional: Annotated[bool | None, typer.Option("--bidirectional/--no-bidirectional", help="Bidirectional RNN (default on).")] = None,
    patch: Annotated[int | None, typer.Option("--patch", help="Patch size (odd; default: the table's).")] = None,
    k1: Annotated[int | None, typer.Option("--k1", help="TBPTT: steps per window; default full BPTT.")] = None,
    k2: Annotated[int | None, typer.Option("--k2", help="TBPTT: gradient steps at the end of each window.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Training epochs per fold (default: automatic).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Sequences per batch, at most.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda (default auto).")] = None,
    bands: Annotated[str | None, typer.Option("--bands", help="Comma-separated bands to use (default: all).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file of training options (CLI wins).")] = None,
    classes: Annotated[Path | None, typer.Option("--classes", help="Class table YAML (default: the one stored with the samples).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Cross-validate the deep model and the RandomForest on the same stratified, grouped folds.

    Prints per-fold scores and mean ± sd, writes everything to --out and the pooled
    confusion matrix of each model as a PNG.
    """
    from cropseq.atomic import check_writable
    from cropseq.classes import ClassTable
    from cropseq.cli._common import existing_path
    from cropseq.crossval import make_folds, parse_grouping, sample_groups
    from cropseq.samples import read_samples, read_samples_classes, table_to_arrays

    grouping = parse_grouping(group)
    cfg = _train_config(config, {"arch": arch, "bidirectional": bidirectional, "patch": patch, "k1": k1, "k2": k2,
                                 "epochs": epochs, "batch_size": batch_size, "device": device, "seed": seed, "bands": bands})  # fmt: skip
    plot = plot if plot is not None else default_plot_path(out)
    models = [cfg.arch] + (["rf"] if rf else [])
    for path in (out, *(model_plot_path(plot, m) for m in models)):
        check_writable(path)
    table_classes = ClassTable.from_yaml(classes) if classes is not None else None

    df = read_samples(existing_path(samples, "samples table"))
    arrays = table_to_arrays(df, bands=cfg.bands, patch=cfg.patch, where=samples)
    assert arrays.labels is not None  # read_samples requires a label column
    groups = sample_groups(df, arrays.sample_ids, grouping, samples)
    fold_index = make_folds(arrays.labels, groups, folds, seed)
    table_classes = table_classes or read_samples_classes(samples) or ClassTable.from_names(arrays.labels)
    result = _run(arrays, fold_index, groups, cfg, table_classes, rf_trees if rf else None, seed, quiet)
    _write(result, samples, out, plot, models, grouping, folds, seed, cfg, rf_trees if rf else None)
    _print_tables(result)
    typer.echo(f"wrote {out} and {', '.join(str(model_plot_path(plot, m)) for m in models)}")


def _run(arrays: Any, fold_index: list, groups: Any, cfg: Any, classes: Any, rf_trees: int | None, seed: int, quiet: bool) -> dict[str, Any]:
    """Cross-validate with a progress bar on a terminal and one line per fit on stderr."""
    import time

    from cropseq.crossval import cross_validate, fit_deep, fit_random_forest
    from cropseq.progress import progress_bar, stderr_is_terminal

    n_folds = len(fold_index)
    fits: dict[str, Any] = {}
    done = [0]
    total = n_folds * (1 + (rf_trees is not None))
    with progress_bar("cross-validation", enabled=not quiet and stderr_is_terminal(), unit="fits") as bar:

        def on_epoch(row: dict[str, Any]) -> None:
            bar(done[0], total, note=f"epoch {row['epoch']}")

        def on_fit(fold: int, model: str, line: str) -> None:
            if not line:
                bar(done[0], total, label=f"fold {fold}/{n_folds} {model}")
                return
            done[0] += 1
            bar(done[0], total, note="")
            if not quiet:
                print(f"fold {fold}/{n_folds} {model}: {line}", file=sys.stderr, flush=True)

        fits[cfg.arch] = functools.partial(fit_deep, config=cfg, classes=classes, on_epoch_end=on_epoch)
        if rf_trees is not None:
            fits["rf"] = functools.partial(fit_random_forest, classes=classes, n_estimators=rf_trees, seed=seed)
        t0 = time.perf_counter()
        result = cross_validate(arrays, fits, classes, fold_index, groups, on_fit=on_fit)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def _write(result: dict[str, Any], samples: Path, out: Path, plot: Path, models: list[str], grouping: Any,
           folds: int, seed: int, cfg: Any, rf_trees: int | None) -> None:  # fmt: skip
    """Complete the result with the run's settings; write the JSON and one PNG per model."""
    from cropseq.evaluation import plot_confusion_matrix, write_metrics

    model_info: dict[str, Any] = {cfg.arch: {"kind": "deep", "options": cfg.to_dict()}}
    if rf_trees is not None:
        model_info["rf"] = {"kind": "random_forest", "n_estimators": rf_trees}
    plots = {m: str(model_plot_path(plot, m)) for m in models}
    head = {
        "samples": str(samples), "n_samples": result["n_samples"], "labels": result["labels"], "folds": folds,
        "group": str(grouping), "splitter": "StratifiedKFold" if grouping.kind == "none" else "StratifiedGroupKFold",
        "seed": seed, "models": model_info,
    }  # fmt: skip
    ordered = {**head, **{k: v for k, v in result.items() if k not in head}, "plots": plots}
    result.clear()
    result.update(ordered)
    for m in models:
        plot_confusion_matrix(result["pooled"][m], plots[m], title=f"{m}: {folds} folds pooled ({samples.name})")
    write_metrics(result, out)
