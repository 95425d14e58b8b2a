"""CLI command ``cropseq train``: train a deep sequence classifier (or the RandomForest baseline).

Thin over :func:`cropseq.training.train_model` (and :func:`cropseq.baseline.train_random_forest`
for ``--arch rf``). Options given on the command line override the same keys of ``--config``,
which override the preset's values (``--preset`` or ``preset:`` in ``--config``; default
``fast``), which override the :class:`~cropseq.training.TrainConfig` defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from cropseq.cli import app
from cropseq.errors import CropseqError

__all__ = ["train_cmd"]


def _read_arrays(path: Path, bands: list[str] | None, patch: int | None, what: str) -> Any:
    """Samples table -> SequenceArrays."""
    if not path.exists():
        raise CropseqError(f"{what} not found", path)
    from cropseq.samples import read_samples, table_to_arrays

    df = read_samples(path)
    return table_to_arrays(df, bands=bands, patch=patch, where=path)


@app.command("train")
def train_cmd(
    samples: Path = typer.Option(..., "--samples", help="Training samples table (CSV or Parquet)."),
    out: Path = typer.Option(..., "--out", help="Model file to write (.pt; .skops for --arch rf)."),
    val_samples: Optional[Path] = typer.Option(None, "--val-samples", help="Validation table, for curves/early stopping (default: none; val_fraction in --config holds out groups)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="fast (default: BiLSTM 1x32, early stopping on --val-samples) | accurate (2-layer BiGRU 128, the pre-preset default); explicit options win."),
    arch: Optional[str] = typer.Option(None, "--arch", help="gru | lstm | rnn (simple tanh RNN) | rf (default: the preset's, lstm for fast, gru for accurate)."),
    bidirectional: Optional[bool] = typer.Option(None, "--bidirectional/--no-bidirectional", help="Bidirectional RNN (default on)."),
    patch: Optional[int] = typer.Option(None, "--patch", help="Patch size (odd; default: the table's)."),
    k1: Optional[int] = typer.Option(None, "--k1", help="TBPTT: steps per window (one update per window); default full BPTT."),
    k2: Optional[int] = typer.Option(None, "--k2", help="TBPTT: gradient steps at the end of each window (<= k1; default k1)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (default: automatic, 60; more for tiny tables)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Sequences per batch, at most (default 64; smaller for tiny tables)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda (default auto)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default 0)."),
    bands: Optional[str] = typer.Option(None, "--bands", help="Comma-separated bands to use, in order (default: all)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of training options (same keys; CLI wins)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Class table YAML fixing codes/colours (default: the one stored with the samples table, else from the labels)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from <MODEL>.partial (refused unless data, bands and options are the same)."),
    history: Optional[Path] = typer.Option(None, "--history", help="Metrics CSV (default <MODEL stem>.history.csv)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Training-curve PNG (default <MODEL stem>.curves.png)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Train a crop classifier on a samples table and write the model file."""
    from cropseq.classes import ClassTable
    from cropseq.training import TrainConfig, train_model
    from cropseq.training.config import load_yaml_options

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "preset": preset,
            "arch": arch,
            "bidirectional": bidirectional,
            "patch": patch,
            "k1": k1,
            "k2": k2,
            "epochs": epochs,
            "batch_size": batch_size,
            "device": device,
            "seed": seed,
            "bands": bands,
            "history": None if history is None else str(history),
            "plot": None if plot is None else str(plot),
        }.items()
        if v is not None
    }
    if resume:
        overrides["resume"] = True
    merged = {**(load_yaml_options(config) if config is not None else {}), **overrides}
    is_rf = str(merged.get("arch", "gru")).lower() == "rf"
    if is_rf:
        merged.pop("arch")  # the shared options (patch, bands, seed...) are still validated
    cfg = TrainConfig.from_dict(merged, where=None if config is None else str(config))
    if not str(out.parent) or not out.parent.exists():
        raise CropseqError(f"output folder {out.parent} does not exist", out)
    table_classes = ClassTable.from_yaml(classes) if classes is not None else None

    train = _read_arrays(samples, cfg.bands, cfg.patch, "samples table")
    if table_classes is None:  # the table `cropseq samples` stored: same codes/colours however trained
        from cropseq.samples import read_samples_classes

        table_classes = read_samples_classes(samples)
    val = None if val_samples is None else _read_arrays(val_samples, cfg.bands, cfg.patch, "validation table")

    if is_rf:
        from cropseq.baseline import train_random_forest

        if table_classes is None and train.labels is not None:
            table_classes = ClassTable.from_names(train.labels)
        train_random_forest(train, out, table_classes, seed=cfg.seed)
        print(f"model {out}")
        return

    res = train_model(train, val, cfg, out, classes=table_classes, progress=not quiet)
    acc = "" if res.val_accuracy is None else f"  validation accuracy {res.val_accuracy:.4f}"
    print(f"model {res.path}  epochs {res.epochs_run}{acc}  history {res.history_path}"
          + ("" if res.plot_path is None else f"  curves {res.plot_path}"), file=sys.stdout)


@app.command("export")
def export_cmd(
    model: Path = typer.Argument(..., help="Deep checkpoint (*.pt) to export."),
    onnx: Path = typer.Option(..., "--onnx", help="ONNX file to write (.onnx; `cropseq predict --engine onnx` looks for <model>.onnx)."),
    dates: int = typer.Option(..., "--dates", min=2, help="Dates T of the stacks it will map (the graph unrolls the recurrent layers over them)."),
) -> None:
    """Export a deep model as an ONNX graph: raw (N, T, C, p, p) patches + (N, T) day of year -> (N, K) probabilities.

    The normalisation is inside the graph; the file's metadata holds the model's record
    (bands, classes, patch) under cropseq.meta_json. N is dynamic, T fixed (--dates; the
    number of dates `cropseq inspect` lists). Tracing takes a minute or two on 2 cores.
    """
    from cropseq.export import export_onnx

    out = export_onnx(model, onnx, dates)
    print(f"onnx {out}")


@app.command("distill")
def distill_cmd(
    teacher: Path = typer.Option(..., "--teacher", help="Trained deep model (*.pt) whose probabilities the student learns."),
    stack: Path = typer.Option(..., "--stack", help="stack.yaml (or its folder, a tile store): the scene whose pixels are sampled."),
    out: Path = typer.Option(..., "--out", help="Student model to write (.pt; a normal cropseq model)."),
    pixels: int = typer.Option(20_000, "--pixels", min=10, help="Unlabelled pixels sampled over the scene (10 % held out to score agreement)."),
    epochs: int = typer.Option(20, "--epochs", min=1, help="Passes over the sampled pixels."),
    hidden_size: int = typer.Option(32, "--hidden-size", min=1, help="Student GRU hidden units per direction."),
    num_layers: int = typer.Option(1, "--num-layers", min=1, help="Student recurrent layers."),
    encoder_width: int = typer.Option(16, "--encoder-width", min=1, help="Student encoder channels."),
    temperature: float = typer.Option(2.0, "--temperature", min=0.1, help="Softening of both distributions (KL loss x T^2)."),
    start: Optional[str] = typer.Option(None, "--start", help="Season window start (YYYY-MM-DD, inclusive), as for predict."),
    end: Optional[str] = typer.Option(None, "--end", help="Season window end (YYYY-MM-DD, exclusive)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the pixel sample, hold-out and initialisation."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Distil a teacher model into a small, fast student on the unlabelled pixels of a scene.

    The student (1-layer bidirectional GRU, hidden 32, 16-channel encoder by default) learns
    the teacher's class probabilities (KL divergence at --temperature) and keeps its bands,
    patch, classes and normalisation: map with it as with any model (cropseq predict).
    """
    from cropseq.distill import DistillConfig, distill
    from cropseq.progress import progress_bar

    if not teacher.is_file():
        from cropseq.predictors import missing_model_error

        raise missing_model_error(teacher)
    cfg = DistillConfig(pixels=pixels, epochs=epochs, hidden_size=hidden_size, num_layers=num_layers,
                        encoder_width=encoder_width, temperature=temperature, seed=seed)  # fmt: skip
    with progress_bar("distill", not quiet, unit="batches", transient=True) as bar:
        res = distill(teacher, stack, out, cfg, start=start, end=end, progress=bar)
    print(f"model {res.path}  {res.pixels} pixels  agreement with the teacher {100 * res.agreement:.1f} % "
          f"(held-out pixels)  {res.seconds:.0f} s")  # fmt: skip
