"""Accuracy against cost of cropseq's model sizes, with RandomForest, TempCNN and a plain BiLSTM.

Usage::

    python benchmarks/pareto.py --grid quick                      # a few configs, 1 fold, 1 resample
    python benchmarks/pareto.py --grid full [--datasets matogrosso,dtwsat] [--resume]
    python benchmarks/pareto.py --grid full --configs 'h64-*,rf'  # a subset (fnmatch patterns)
    python benchmarks/pareto.py --grid screen --folds 2 --tag s1  # the fast-preset screen (issue 15)
    python benchmarks/pareto.py --grid presets --datasets matogrosso   # both presets + references, one run
    python benchmarks/pareto.py --merge a.csv b.csv --merge-out benchmarks/figures/pareto_candidates

For every configuration, on Mato Grosso (``StratifiedKFold(5, shuffle=True, random_state=0)``,
as in ``shared/TARGETS.md``; :func:`cropseq.crossval.make_folds`) and dtwSat (the authors'
resamples 1-20, samples through cropseq's own loader as in ``benchmarks/crossval.py``):

- **OA** (and kappa, macro F1) on the held-out fold: cropseq's configs and the RandomForest
  trained with the package's API (:func:`cropseq.crossval.fit_deep` = ``train_model``,
  :func:`cropseq.crossval.fit_random_forest`), loaded back from their files and scored by
  :func:`cropseq.evaluation.evaluate_samples`; the reference networks of ``_tempcnn.py``
  scored on the same folds with the same metrics.
- **training CPU-seconds**: user + system time of this process and its children
  (``resource.getrusage``) while the model trains and is written.
- **FLOPs per pixel**: ``torch.utils.flop_counter.FlopCounterMode`` over one forward pass of
  one pixel's sequence (torch models only).
- **prediction px per CPU-second**: the held-out sequences, repeated to ``--predict-px``
  pixels, through the model's ``predict_proba`` (first fold only: it does not depend on it).

Writes under ``benchmarks/out/pareto/``: ``pareto_<grid>.csv`` (one row per config and fold,
rewritten after each fold; ``--resume`` skips rows already there), ``pareto_<grid>.md`` (one
table per dataset, sorted by cost, the Pareto front marked) and ``pareto_<grid>.png`` (OA
against training CPU-seconds, log x, the front highlighted); ``--merge`` writes the table and
plot of the rows of several runs (one per data set, or a configuration run alone). Torch and BLAS run with
``--threads`` threads (default 1, as ``benchmarks/crossval.py``: CPU-seconds are then the
least disturbed by other jobs). Timings on a shared machine are noisy: run the full grid
on a quiet one.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import cropseq  # noqa: E402,F401 - first: OpenMP's passive wait policy before torch loads

# isort: split
from _realdata import load_dtwsat, load_dtwsat_package, load_matogrosso  # noqa: E402
from _tempcnn import fit_reference  # noqa: E402
from crossval import dtwsat_splits, matogrosso_splits  # noqa: E402

from cropseq.classes import ClassTable  # noqa: E402
from cropseq.crossval import fit_deep, fit_random_forest, format_mean_sd, mean_sd  # noqa: E402
from cropseq.evaluation import align_arrays, classification_metrics, evaluate_samples  # noqa: E402
from cropseq.figures import pyplot, save_png  # noqa: E402
from cropseq.predictors import load_predictor  # noqa: E402
from cropseq.sequences import SequenceArrays  # noqa: E402
from cropseq.threads import fit_threads  # noqa: E402

OUT = HERE / "out" / "pareto"
#: Fixed epochs of the reference networks, as in TARGETS.md (20 on Mato Grosso: its time budget).
REFERENCE_EPOCHS = {"matogrosso": 20, "dtwsat": 100}


# --------------------------------------------------------------------------------------
# configurations
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One point of the grid: a cropseq ``TrainConfig`` variant or a reference model."""

    name: str
    kind: str  # "cropseq", "rf", "tempcnn", "bilstm-plain"
    options: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides (cropseq)


def _small(hidden: int, layers: int, pooling: str = "season", **more: Any) -> dict[str, Any]:
    """Options of a model size; the rest from the ``accurate`` preset (the default when these
    grids were written: BiGRU, 64/64 encoder, nothing held out), so rows keep their meaning."""
    return {"preset": "accurate", "hidden_size": hidden, "num_layers": layers, "pooling": pooling, **more}


REFERENCES = [Spec("rf", "rf"), Spec("tempcnn", "tempcnn"), Spec("bilstm-plain", "bilstm-plain")]

QUICK = [
    Spec("default", "cropseq"),
    Spec("h64-l1-season", "cropseq", _small(64, 1)),
    Spec("h32-l1-meanmax-enc32", "cropseq", _small(32, 1, "mean-max", encoder_width=32, encoder_dim=32)),
]


#: Fast-default candidates near the quick run's front, measured on every fold / resample.
CANDIDATES = [
    Spec("h32-l1-meanmax-enc32", "cropseq", _small(32, 1, "mean-max", encoder_width=32, encoder_dim=32)),
    Spec("h32-l1-season-enc32", "cropseq", _small(32, 1, encoder_width=32, encoder_dim=32)),
    Spec("h64-l1-meanmax-enc32", "cropseq", _small(64, 1, "mean-max", encoder_width=32, encoder_dim=32)),
    Spec("h64-l1-season-enc32", "cropseq", _small(64, 1, encoder_width=32, encoder_dim=32)),
    Spec("h32-l2-season-enc32", "cropseq", _small(32, 2, encoder_width=32, encoder_dim=32)),
    Spec("accurate", "cropseq", {"preset": "accurate"}),
    Spec("h32-l1-season-enc32-early", "cropseq",
         _small(32, 1, encoder_width=32, encoder_dim=32, val_fraction=0.1, patience=10)),
]

#: Issue 15's screen for a fast preset reaching Mato Grosso >= 0.94 within 1.5x the plain
#: BiLSTM's training time: variations of the 2026-12-06 fast preset (``h32-gru-early``: BiGRU
#: 1x32 on a 32/32 encoder, 72 seasonal bins, early stopping on a grouped 10 %), options
#: spelled out so that the rows keep their meaning when the preset changes. Screened on 2 Mato
#: Grosso folds and 5 dtwSat resamples (``--folds 2`` / ``--folds 5``), the best on all.
_H32 = {"hidden_size": 32, "num_layers": 1, "encoder_width": 32, "encoder_dim": 32, "pooling": "season"}
_EARLY = {"val_fraction": 0.1, "patience": 10}
_ALL_DATA = {"val_fraction": 0.0, "patience": None}  # nothing held out: the whole one-cycle schedule
SCREEN = [
    Spec("h32-gru-early", "cropseq", {**_H32, **_EARLY}),
    Spec("h32-gru-early-bins48", "cropseq", {**_H32, **_EARLY, "season_bins": 48, "season_sigma": 12.0}),
    Spec("h32-gru-early-bins24", "cropseq", {**_H32, **_EARLY, "season_bins": 24, "season_sigma": 12.0}),
    Spec("h32-gru-early-meanmax", "cropseq", {**_H32, **_EARLY, "pooling": "mean-max"}),
    Spec("h64-gru-early", "cropseq", {**_H32, **_EARLY, "hidden_size": 64}),
    Spec("h32-gru-early-enc64", "cropseq", {**_H32, **_EARLY, "encoder_width": 64, "encoder_dim": 64}),
    Spec("h32-lstm-early", "cropseq", {**_H32, **_EARLY, "arch": "lstm"}),
    Spec("h32-gru-early-p20acc", "cropseq", {**_H32, **_EARLY, "patience": 20, "monitor": "val_accuracy"}),
    Spec("h32-gru-e30", "cropseq", {**_H32, **_ALL_DATA, "min_epochs": 30}),
    Spec("h32-gru-avg30", "cropseq", {**_H32, **_ALL_DATA, "average_last": 0.3}),
    Spec("h32-lstm", "cropseq", {**_H32, **_ALL_DATA, "arch": "lstm"}),
    Spec("h32-lstm-bins48", "cropseq", {**_H32, **_ALL_DATA, "arch": "lstm", "season_bins": 48, "season_sigma": 12.0}),
    Spec("h32-lstm-avg30", "cropseq", {**_H32, **_ALL_DATA, "arch": "lstm", "average_last": 0.3}),
]

#: The two presets as ``cropseq train`` has them (no option spelled out: the rows follow the
#: presets), beside the references in the same run: issue 15's acceptance table.
PRESETS_GRID = [Spec("fast-default", "cropseq", {}), Spec("accurate", "cropseq", {"preset": "accurate"})]

GRIDS = {"quick": lambda: QUICK, "candidates": lambda: CANDIDATES, "screen": lambda: SCREEN, "presets": lambda: PRESETS_GRID}


def full_grid() -> list[Spec]:
    """hidden 32/64/128 x layers 1/2 x season bins on/off, then encoder width, epochs,
    early stopping, TBPTT and the LSTM cell around two sizes (``accurate``, the default when
    this grid was written, and h64-l1)."""
    acc = {"preset": "accurate"}
    specs = [Spec("accurate", "cropseq", acc)]
    for hidden in (32, 64, 128):
        for layers in (1, 2):
            for pooling, tag in (("season", "season"), ("mean-max", "meanmax")):
                if (hidden, layers, pooling) != (128, 2, "season"):  # that one is "accurate"
                    specs.append(Spec(f"h{hidden}-l{layers}-{tag}", "cropseq", _small(hidden, layers, pooling)))
    for width in (16, 32):
        specs.append(Spec(f"h64-l1-season-enc{width}", "cropseq", _small(64, 1, encoder_width=width, encoder_dim=width)))
    for epochs in (20, 40):
        specs.append(Spec(f"accurate-e{epochs}", "cropseq", {**acc, "epochs": epochs}))
        specs.append(Spec(f"h64-l1-season-e{epochs}", "cropseq", _small(64, 1, epochs=epochs)))
    early = {"val_fraction": 0.1, "patience": 10, "monitor": "val_loss"}  # small sets (< small_data) keep all data
    specs.append(Spec("accurate-early", "cropseq", {**acc, **early}))
    specs.append(Spec("h64-l1-season-early", "cropseq", _small(64, 1, **early)))
    # TBPTT: both sets have 23-date seasons, so this measures its cost/accuracy trade-off
    # on short series only; long series (> 60 dates) need their own data set.
    specs.append(Spec("accurate-tbptt8", "cropseq", {**acc, "k1": 8, "k2": 8}))
    specs.append(Spec("h64-l1-season-tbptt8-4", "cropseq", _small(64, 1, k1=8, k2=4)))
    specs.append(Spec("accurate-lstm", "cropseq", {**acc, "arch": "lstm"}))
    return specs


def grid_specs(grid: str, patterns: str | None) -> list[Spec]:
    """The grid's configurations plus the references, filtered by fnmatch ``patterns``."""
    specs = GRIDS.get(grid, full_grid)() + REFERENCES
    if patterns:
        wanted = [p.strip() for p in patterns.split(",") if p.strip()]
        specs = [s for s in specs if any(fnmatch.fnmatch(s.name, p) for p in wanted)]
    return specs


# --------------------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------------------


def cpu_seconds() -> float:
    """User + system CPU time of this process and its (waited-for) children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measured(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``'s result, CPU-seconds and wall seconds."""
    c0, w0 = cpu_seconds(), time.perf_counter()
    out = fn()
    return out, cpu_seconds() - c0, time.perf_counter() - w0


def flops_per_pixel(predictor: Any, x: np.ndarray, doy: np.ndarray) -> float:
    """FLOPs of one forward pass over one pixel's sequence (NaN for models without torch)."""
    import torch

    from cropseq.models.flops import forward_flops

    net = getattr(predictor, "model", None) or getattr(predictor, "net", None)
    if not isinstance(net, torch.nn.Module):
        return float("nan")
    if hasattr(predictor, "standardise"):  # a reference network: (1, T, C)
        c = x.shape[3] // 2
        return forward_flops(net, predictor.standardise(x[:1, :, :, c, c]))
    return forward_flops(net, torch.from_numpy(np.ascontiguousarray(x[:1], dtype=np.float32)), torch.from_numpy(doy[:1].astype(np.float32)))


def px_per_cpu_second(predictor: Any, x: np.ndarray, doy: np.ndarray, n_px: int) -> float:
    """Pixels classified per CPU-second: the sequences repeated to ``n_px``, one ``predict_proba``."""
    reps = int(np.ceil(n_px / len(x)))
    xs, ds = np.concatenate([x] * reps)[:n_px], np.concatenate([doy] * reps)[:n_px]
    predictor.predict_proba(xs[:256], ds[:256])  # warm-up (allocations, lazy init)
    _, cpu, _ = measured(lambda: predictor.predict_proba(xs, ds))
    return n_px / cpu if cpu > 0 else float("nan")


# --------------------------------------------------------------------------------------
# training and scoring one fold
# --------------------------------------------------------------------------------------


def train_cropseq(spec: Spec, train: SequenceArrays, classes: ClassTable, folder: Path, args: argparse.Namespace) -> Any:
    """A cropseq configuration through the package's training API; the predictor loaded back."""
    from cropseq.training import TrainConfig

    runtime = {"device": "cpu", "threads": args.threads, "seed": args.seed, "plot": ""}
    # Built, not replaced: a preset fills only the options not given (dataclasses.replace
    # would keep the default preset's values).
    cfg = TrainConfig(**{**runtime, **spec.options})
    return load_predictor(fit_deep(train, folder, cfg, classes), device="cpu")


def train_model(spec: Spec, dataset: str, train: SequenceArrays, classes: ClassTable, folder: Path, args: argparse.Namespace) -> Any:
    """Train ``spec`` on ``train``; returns an object with ``predict_proba(x, doy)``."""
    if spec.kind == "cropseq":
        return train_cropseq(spec, train, classes, folder, args)
    if spec.kind == "rf":
        path = fit_random_forest(train, folder, classes, n_estimators=args.n_estimators, seed=args.seed, n_jobs=args.threads)
        return load_predictor(path, device="cpu")
    return fit_reference(spec.kind, train, classes, epochs=REFERENCE_EPOCHS[dataset], seed=args.seed)


def score(predictor: Any, test: SequenceArrays) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics on ``test`` and the model-aligned inputs ``x`` (for the speed/FLOP measurements)."""
    if hasattr(predictor, "standardise"):  # a reference network
        proba = predictor.predict_proba(test.x)
        y_pred = np.asarray(predictor.classes.names, dtype=object)[np.argmax(proba, axis=1)]
        return classification_metrics(test.labels.astype(str), y_pred, list(predictor.classes.names)), test.x
    return evaluate_samples(predictor, test), align_arrays(predictor, test)


def run_fold(spec: Spec, dataset: str, fold: int, train: SequenceArrays, test: SequenceArrays,
             classes: ClassTable, args: argparse.Namespace, first: bool) -> dict[str, Any]:
    """Train, score and (on the first fold) time the prediction of one configuration."""
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        predictor, cpu, wall = measured(lambda: train_model(spec, dataset, train, classes, Path(tmp), args))
        m, x = score(predictor, test)
        flops = px_s = float("nan")
        if first:
            flops = flops_per_pixel(predictor, x, test.doy)
            px_s = px_per_cpu_second(predictor, x, test.doy, args.predict_px)
    return {
        "dataset": dataset, "config": spec.name, "kind": spec.kind, "fold": fold,
        "options": json.dumps(spec.options, sort_keys=True), "n_train": train.n, "n_test": test.n,
        "overall_accuracy": m["overall_accuracy"], "kappa": m["kappa"], "macro_f1": m["macro_f1"],
        "train_cpu_s": round(cpu, 2), "train_wall_s": round(wall, 2),
        "flops_per_px": flops, "px_per_cpu_s": px_s, "threads": args.threads,
    }


# --------------------------------------------------------------------------------------
# data sets
# --------------------------------------------------------------------------------------


def dataset_splits(name: str, args: argparse.Namespace) -> tuple[SequenceArrays, list[tuple[int, np.ndarray, np.ndarray]]]:
    """The arrays and ``(fold, train rows, test rows)`` of a data set, limited by the grid."""
    if name == "matogrosso":
        arrays = load_matogrosso()
        splits = [(k, tr, te) for k, tr, te, _ in matogrosso_splits(arrays, 5)]
    elif name == "dtwsat":
        data = load_dtwsat_package(workdir=OUT) if args.loader == "package" else load_dtwsat()
        arrays = data.arrays
        splits = [(k, tr, te) for k, tr, te, _ in dtwsat_splits(data, 20)]
    else:
        raise SystemExit(f"unknown data set {name!r}; choose from matogrosso, dtwsat")
    n = args.folds if args.folds is not None else (1 if args.grid == "quick" else len(splits))
    return arrays, splits[:n]


# --------------------------------------------------------------------------------------
# summary: table, front, plot
# --------------------------------------------------------------------------------------


def pareto_front(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """True where no other point is at least as cheap and as accurate, and better in one."""
    on = np.ones(len(cost), dtype=bool)
    for i in range(len(cost)):
        dominated = (cost <= cost[i]) & (acc >= acc[i]) & ((cost < cost[i]) | (acc > acc[i]))
        on[i] = not dominated.any()
    return on


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per data set and configuration: means over folds and the front flag."""
    g = rows.groupby(["dataset", "config"], sort=False)
    s = g.agg(kind=("kind", "first"), folds=("fold", "count"), oa=("overall_accuracy", "mean"),
              kappa=("kappa", "mean"), macro_f1=("macro_f1", "mean"), train_cpu_s=("train_cpu_s", "mean"),
              flops_per_px=("flops_per_px", "max"), px_per_cpu_s=("px_per_cpu_s", "max")).reset_index()
    s["oa_text"] = [format_mean_sd(mean_sd(grp["overall_accuracy"].tolist())) for _, grp in g]
    s["front"] = False
    for idx in s.groupby("dataset").groups.values():
        s.loc[idx, "front"] = pareto_front(s.loc[idx, "train_cpu_s"].to_numpy(), s.loc[idx, "oa"].to_numpy())
    return s.sort_values(["dataset", "train_cpu_s"])


def markdown(summary: pd.DataFrame, header: str) -> str:
    """One table per data set, cheapest first; front members in bold."""
    lines = [header, ""]
    for dataset, s in summary.groupby("dataset", sort=False):
        lines += [f"### {dataset}", "",
                  "| config | kind | folds | OA mean ± sd | kappa | macro F1 | train CPU-s | MFLOP / px | px / CPU-s | front |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in s.itertuples():
            name = f"**{r.config}**" if r.front else r.config
            mflop = "–" if not np.isfinite(r.flops_per_px) else f"{r.flops_per_px / 1e6:.2f}"
            px = "–" if not np.isfinite(r.px_per_cpu_s) else f"{r.px_per_cpu_s:,.0f}"
            lines.append(f"| {name} | {r.kind} | {r.folds} | {r.oa_text} | {r.kappa:.4f} | {r.macro_f1:.4f} | "
                         f"{r.train_cpu_s:.1f} | {mflop} | {px} | {'yes' if r.front else ''} |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: pd.DataFrame, path: Path, title: str) -> Path:
    """OA against training CPU-seconds (log x), one panel per data set, the front drawn as a step line."""
    plt = pyplot()
    datasets = list(dict.fromkeys(summary["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 5), squeeze=False)
    colours = {"cropseq": "tab:blue", "rf": "tab:green", "tempcnn": "tab:orange", "bilstm-plain": "tab:purple"}
    try:
        for ax, dataset in zip(axes[0], datasets, strict=True):
            s = summary[summary["dataset"] == dataset]
            for kind, k in s.groupby("kind"):
                ax.scatter(k["train_cpu_s"], k["oa"], c=colours.get(kind, "grey"), label=kind, s=30, alpha=0.7)
            f = s[s["front"]].sort_values("train_cpu_s")
            ax.step(f["train_cpu_s"], f["oa"], where="post", color="crimson", lw=1.5, label="Pareto front")
            ax.scatter(f["train_cpu_s"], f["oa"], facecolors="none", edgecolors="crimson", s=110, lw=1.5)
            for r in s.itertuples():
                ax.annotate(r.config, (r.train_cpu_s, r.oa), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set_xscale("log")
            ax.set(xlabel="training CPU-seconds per fold (log)", ylabel="overall accuracy (mean over folds)", title=dataset)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8, loc="best")
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        return save_png(fig, path, dpi=120)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> pd.DataFrame:
    fit = fit_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    # one file set per grid and data-set list, so two data sets can run as two processes
    stem = f"pareto_{args.grid}" + ("" if datasets == ["matogrosso", "dtwsat"] else "_" + "-".join(datasets))
    stem += f"_{args.tag}" if args.tag else ""
    csv_path = OUT / f"{stem}.csv"
    done = pd.read_csv(csv_path) if args.resume and csv_path.exists() else pd.DataFrame()
    rows = done.to_dict("records")
    have = {(r["dataset"], r["config"], int(r["fold"])) for r in rows}
    specs = grid_specs(args.grid, args.configs)
    t_start = time.perf_counter()
    for dataset in datasets:
        arrays, splits = dataset_splits(dataset, args)
        classes = ClassTable.from_names(arrays.labels)  # one class order for every fold and model
        for spec in specs:
            for i, (k, tr, te) in enumerate(splits):
                if (dataset, spec.name, k) in have:
                    continue
                row = run_fold(spec, dataset, k, arrays.subset(tr), arrays.subset(te), classes, args, first=i == 0)
                rows.append(row)
                print(f"{dataset} {spec.name} fold {k}: OA {row['overall_accuracy']:.4f}  train {row['train_cpu_s']:.1f} "
                      f"CPU-s ({row['train_wall_s']:.1f} s wall)", flush=True)
                pd.DataFrame(rows).to_csv(csv_path, index=False)  # a killed run keeps its rows
    df = pd.DataFrame(rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"Pareto grid `{args.grid}`, {date.today().isoformat()}: {platform.machine()}, {fit.affinity} CPUs, "
              f"{fit.threads} thread(s), load average {load:.1f} at the end; this run took "
              f"{time.perf_counter() - t_start:.0f} s. CPU-seconds on a shared machine are noisy.")
    write_summary(df, OUT / stem, header, header.split(":")[0])
    print(f"rows: {csv_path}")
    return df


def write_summary(rows: pd.DataFrame, stem: Path, header: str, title: str) -> None:
    """``<stem>.md`` (``header`` + tables) and ``<stem>.png`` (plot titled ``title``) of ``rows``;
    the tables are printed too."""
    summary = summarize(rows)
    stem.with_suffix(".md").write_text(markdown(summary, header) + "\n")
    png = plot(summary, stem.with_suffix(".png"), title)
    print()
    print(markdown(summary, header))
    print(f"plot: {png}")


def merge(paths: list[Path], stem: Path, note: str) -> pd.DataFrame:
    """One table and plot from the rows of several runs (e.g. one per data set, or a later
    configuration run alone); a (dataset, config, fold) row of a later file replaces an earlier one."""
    df = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    df = df.drop_duplicates(["dataset", "config", "fold"], keep="last")
    header = f"Pareto rows of {', '.join(p.name for p in paths)} ({date.today().isoformat()}). {note}".strip()
    write_summary(df, stem, header, f"Pareto rows of {len(paths)} runs, {date.today().isoformat()}")
    return df


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", choices=[*GRIDS, "full"], default="quick")
    p.add_argument("--datasets", default="matogrosso,dtwsat", help="comma-separated: matogrosso, dtwsat")
    p.add_argument("--configs", default=None, help="only these configs (comma-separated fnmatch patterns)")
    p.add_argument("--folds", type=int, default=None, help="first N folds/resamples (default: 1 quick, all full)")
    p.add_argument("--loader", choices=["package", "direct"], default="package", help="dtwsat loader (see crossval.py)")
    p.add_argument("--threads", type=int, default=1, help="torch/BLAS/RandomForest threads (default 1)")
    p.add_argument("--n-estimators", type=int, default=500, help="RandomForest trees")
    p.add_argument("--predict-px", type=int, default=8192, help="pixels per prediction-speed measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="", help="suffix of the output files (runs side by side)")
    p.add_argument("--resume", action="store_true", help="keep the rows of an earlier run and skip them")
    p.add_argument("--merge", nargs="+", type=Path, metavar="CSV",
                   help="train nothing: one table and plot from these row files, written to --merge-out")
    p.add_argument("--merge-out", type=Path, default=OUT / "pareto_merged", help="output stem of --merge (.md, .png)")
    p.add_argument("--note", default="", help="a sentence added to the header of --merge's table")
    args = p.parse_args(argv)
    if args.merge:
        merge(args.merge, args.merge_out, args.note)
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
