"""Cross-validation: the deep model and the RandomForest baseline on the same folds.

Folds come from scikit-learn: :class:`~sklearn.model_selection.StratifiedGroupKFold` when the
samples are grouped (by field, or by square spatial blocks), so that no group — and hence no
pair of neighbouring pixels of one field or block — sits on both sides of a split;
:class:`~sklearn.model_selection.StratifiedKFold` when every sample is independent
(``--group none``; with ``seed=0`` these are exactly the folds of ``shared/TARGETS.md``).
Every model is trained on the training part of a fold, written to its file, loaded back (as
:func:`cropseq.predictors.load_predictor` loads it) and scored with
:func:`cropseq.evaluation.evaluate_samples` — the path ``cropseq train`` + ``cropseq evaluate``
takes — so the numbers are those a user would get fold by fold.

JSON written by ``cropseq crossval``; :func:`cross_validate` returns ``n_samples``, ``labels``,
``per_fold``, ``summary``, ``pooled``, ``confusion_matrix_axes`` and ``assignment``, and the
command adds the run's settings, ``plots`` and ``seconds``:

.. code-block:: text

    {
      "samples": "samples.parquet",          # the table
      "n_samples": 2115, "labels": [...],    # class order of every matrix and per-class entry
      "folds": 5, "group": "field",          # field | block:SIZE | none
      "splitter": "StratifiedGroupKFold",    # or StratifiedKFold (group none)
      "seed": 0,
      "models": {"gru": {"kind": "deep", "options": {...TrainConfig...}},
                 "rf": {"kind": "random_forest", "n_estimators": 500}},
      "per_fold": [                          # one row per fold and model, fold by fold
        {"fold": 1, "model": "gru", "n_train": 1692, "n_test": 423,
         "n_train_groups": 1692, "n_test_groups": 423,
         "overall_accuracy": 0.95, "kappa": 0.94, "macro_f1": 0.93,
         "per_class_f1": {"Forest": 0.98, ...},   # null: class on neither side in this fold
         "train_seconds": 35.2, "predict_seconds": 0.4,
         "confusion_matrix": [[...], ...]}, ...],
      "summary": {"gru": {"folds": 5,        # mean and sample sd (ddof 1) over the folds
                          "overall_accuracy": {"mean": 0.94, "sd": 0.008, "n": 5},
                          "kappa": {...}, "macro_f1": {...},
                          "per_class_f1": {"Forest": {"mean": ..., "sd": ..., "n": 5}, ...},
                          "train_seconds": {...}}, "rf": {...}},
      "pooled": {"gru": {...metrics dictionary of cropseq.evaluation...}, "rf": {...}},
                                             # the fold matrices summed, scored once
      "confusion_matrix_axes": "rows = reference (true), columns = predicted",
      "assignment": {"sample_id": [...], "group": [...], "fold": [...]},
                                             # the test fold of every sample (1-based)
      "plots": {"gru": "cm.gru.png", "rf": "cm.rf.png"},  # pooled confusion matrices
      "seconds": 812.4                       # wall time of the whole run
    }

``sd`` is null with a single value; ``mean`` is null when a metric is undefined in every fold.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.evaluation import CONFUSION_AXES, evaluate_samples, metrics_from_confusion
from cropseq.predictors import load_predictor
from cropseq.sequences import SequenceArrays

__all__ = ["Fit", "FoldScore", "GROUP_SPEC_HELP", "Grouping", "METRICS", "OnFit", "cross_validate", "fit_deep", "fit_random_forest", "format_mean_sd", "make_folds", "mean_sd", "parse_grouping", "sample_groups", "score_fold", "summarize"]

#: ``fit(train, workdir) -> model file``: trains one model on a fold's training part.
Fit = Callable[[SequenceArrays, Path], Path]
#: ``on_fit(fold, model, note)``: progress callback (``note`` e.g. ``"epoch 3"`` or a score line).
OnFit = Callable[[int, str, str], None]

GROUP_SPEC_HELP = "field (the table's group column), block:SIZE (square blocks of SIZE map units, from x and y) or none"
#: Summary metrics, in table order.
METRICS = ("overall_accuracy", "kappa", "macro_f1")


# --------------------------------------------------------------------------------------
# grouping and folds
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grouping:
    """How samples are kept together in a fold.

    Attributes:
        kind: ``"field"`` (the ``group`` column), ``"block"`` (spatial blocks) or ``"none"``.
        size: Block side in map units (metres for a projected CRS); only for ``"block"``.
    """

    kind: str
    size: float | None = None

    def __str__(self) -> str:
        return f"block:{self.size:g}" if self.kind == "block" else self.kind


def parse_grouping(spec: str) -> Grouping:
    """Parse ``--group``: ``field``, ``block:SIZE`` or ``none``.

    Raises:
        CropseqError: for any other value, or a block size that is not a positive number.
    """
    text = str(spec).strip().lower()
    if text in ("field", "none"):
        return Grouping(text)
    kind, sep, size = text.partition(":")
    if kind == "block" and sep:
        try:
            value = float(size)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value > 0:
            return Grouping("block", value)
        raise CropseqError(f"--group block:SIZE needs a block side > 0 in map units (e.g. block:500), got {spec!r}")
    raise CropseqError(f"--group must be {GROUP_SPEC_HELP}; got {spec!r}")


def sample_groups(df: pd.DataFrame, sample_ids: np.ndarray, grouping: Grouping, where: Any = None) -> np.ndarray | None:
    """The group of each sample (aligned with ``sample_ids``), or None for ``--group none``.

    Args:
        df: The samples table (long form; the first row of a sample supplies its group/x/y).
        sample_ids: Sample ids in the order wanted (``SequenceArrays.sample_ids``).
        grouping: See :func:`parse_grouping`. Blocks are ``floor(x / size), floor(y / size)``.
        where: The table's path, named in errors.

    Raises:
        CropseqError: when the needed columns are missing or hold missing values.
    """
    if grouping.kind == "none":
        return None
    first = df.drop_duplicates("sample_id").set_index("sample_id")
    if grouping.kind == "field":
        if "group" not in first.columns:
            raise CropseqError("--group field needs a 'group' column (field id per sample); the table has none: "
                               "use --group block:SIZE (needs x, y) or --group none", where)  # fmt: skip
        groups = first["group"].reindex(sample_ids)
        if groups.isna().any():
            raise CropseqError(f"{int(groups.isna().sum())} samples have no value in the 'group' column", where)
        return groups.astype(str).to_numpy()
    missing = [c for c in ("x", "y") if c not in first.columns]
    if missing:
        raise CropseqError(f"--group {grouping} needs the map coordinates x and y; the table lacks "
                           f"{' and '.join(missing)}: use --group field or --group none", where)  # fmt: skip
    xy = first[["x", "y"]].reindex(sample_ids).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        raise CropseqError(f"{int(bad.sum())} samples have no numeric x/y for --group {grouping}", where)
    assert grouping.size is not None  # parse_grouping gives every "block" grouping its size
    block = np.floor(xy / float(grouping.size)).astype(np.int64)
    return np.array([f"{bx}_{by}" for bx, by in block], dtype=str)


def _check_groups_per_class(labels: np.ndarray, groups: np.ndarray, n_folds: int, grouped: bool) -> None:
    """Every class must reach every test fold: at least ``n_folds`` groups (samples) each."""
    per_class = pd.DataFrame({"label": labels, "group": groups}).groupby("label")["group"].nunique()
    short = per_class[per_class < n_folds].sort_values()
    if short.empty:
        return
    unit = "groups" if grouped else "samples"
    listed = ", ".join(f"{name} ({count})" for name, count in short.items())
    fewer = f"lower --folds to {int(short.min())}, " if short.min() >= 2 else ""
    finer = ", or use a finer --group (smaller blocks; none for independent pixels)" if grouped else ""
    raise CropseqError(
        f"{len(short)} class(es) have fewer {unit} than --folds {n_folds}: {listed}; "
        f"{fewer}drop or merge the class(es){finer}, or add samples"
    )


def make_folds(
    labels: Sequence[str] | np.ndarray,
    groups: Sequence[str] | np.ndarray | None,
    n_folds: int,
    seed: int = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (and grouped) folds from scikit-learn, shuffled with ``seed``.

    Args:
        labels: Class per sample.
        groups: Group per sample (:func:`sample_groups`), or None: every sample independent
            (then ``StratifiedKFold(n_folds, shuffle=True, random_state=seed)``, the folds
            of ``shared/TARGETS.md`` for seed 0).
        n_folds: Number of folds (>= 2).
        seed: ``random_state`` of the splitter: the same seed gives the same folds.

    Returns:
        ``[(train_index, test_index), ...]``, one pair per fold.

    Raises:
        CropseqError: fewer than 2 folds, or a class with fewer groups (samples) than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(labels).astype(str)
    if n_folds < 2:
        raise CropseqError(f"--folds must be at least 2, got {n_folds}")
    grouped = groups is not None
    g = np.asarray(groups).astype(str) if grouped else np.arange(len(y)).astype(str)
    _check_groups_per_class(y, g, n_folds, grouped)
    if grouped:
        splits = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, g)
    else:
        splits = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    return [(np.asarray(tr), np.asarray(te)) for tr, te in splits]


# --------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------


def fit_deep(
    train: SequenceArrays,
    workdir: Path,
    config: Any,
    classes: ClassTable,
    on_epoch_end: Callable[[dict[str, Any]], bool | None] | None = None,
) -> Path:
    """Train the deep model on ``train`` with :func:`cropseq.training.train_model`.

    No validation set is passed: the held-out fold must stay unseen (``config.val_fraction``
    may still hold out training groups). No curve PNG is drawn.

    Returns:
        The checkpoint, ``workdir/<arch>.pt``.
    """
    import dataclasses

    from cropseq.training import train_model

    cfg = dataclasses.replace(config, plot="", history=None, resume=False)
    out = Path(workdir) / f"{cfg.arch}.pt"
    train_model(train, None, cfg, out, classes=classes, progress=False, on_epoch_end=on_epoch_end)
    return out


def fit_random_forest(
    train: SequenceArrays,
    workdir: Path,
    classes: ClassTable,
    *,
    n_estimators: int = 500,
    seed: int = 0,
    n_jobs: int | None = -1,
) -> Path:
    """Train the RandomForest baseline (:func:`cropseq.baseline.train_random_forest`).

    Returns:
        The model file, ``workdir/rf.skops``.
    """
    from cropseq.baseline import train_random_forest

    out = Path(workdir) / "rf.skops"
    train_random_forest(train, out, classes, n_estimators=n_estimators, seed=seed, n_jobs=n_jobs)
    return out


@dataclass
class FoldScore:
    """One model scored on one fold: the metrics dictionary and the wall times."""

    metrics: dict[str, Any]
    train_seconds: float
    predict_seconds: float


def score_fold(fit: Fit, train: SequenceArrays, test: SequenceArrays, folder: Path) -> FoldScore:
    """Train with ``fit`` into ``folder``, load the model file back and score ``test``.

    Args:
        fit: ``fit(train, folder) -> model file``, e.g. a :func:`fit_deep` or
            :func:`fit_random_forest` with its options bound.
        train: The fold's training sequences.
        test: The fold's held-out sequences.
        folder: An existing folder for this fit's model file (the caller removes it).
    """
    t0 = time.perf_counter()
    path = fit(train, Path(folder))
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = evaluate_samples(load_predictor(path, device="cpu"), test)
    t_pred = time.perf_counter() - t0
    return FoldScore(metrics, round(t_train, 2), round(t_pred, 2))


# --------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------


def mean_sd(values: Sequence[float | None] | np.ndarray | pd.Series) -> dict[str, float | int | None]:
    """``{"mean", "sd", "n"}`` of the defined values (None/NaN skipped); sd is the sample sd.

    ``sd`` is None for fewer than two values, ``mean`` None for none.
    """
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    return {
        "mean": float(v.mean()) if v.size else None,
        "sd": float(v.std(ddof=1)) if v.size > 1 else None,
        "n": int(v.size),
    }


def format_mean_sd(stat: dict[str, Any], digits: int = 4) -> str:
    """``0.9423 ± 0.0078`` (``–`` when undefined; no ``±`` part for a single value)."""
    if stat.get("mean") is None:
        return "–"
    if stat.get("sd") is None:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"


def _fold_row(fold: int, model: str, score: FoldScore, labels: list[str], n: tuple[int, int, int, int]) -> dict[str, Any]:
    m = score.metrics
    k = len(labels)
    return {
        "fold": fold,
        "model": model,
        "n_train": n[0],
        "n_test": n[1],
        "n_train_groups": n[2],
        "n_test_groups": n[3],
        **{key: m[key] for key in METRICS},
        "per_class_f1": {name: m["per_class"][name]["f1"] for name in labels},
        "train_seconds": score.train_seconds,
        "predict_seconds": score.predict_seconds,
        # The class table covers every label, so the matrix is K x K in `labels` order.
        "confusion_matrix": np.asarray(m["confusion_matrix"], dtype=np.int64)[:k, :k].tolist(),
    }


def summarize(rows: list[dict[str, Any]], labels: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per model: mean ± sd over folds (:func:`mean_sd`) and the pooled metrics.

    Returns:
        ``(summary, pooled)`` keyed by model name (see the module docstring).
    """
    summary: dict[str, Any] = {}
    pooled: dict[str, Any] = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        summary[model] = {
            "folds": len(mine),
            **{key: mean_sd([r[key] for r in mine]) for key in METRICS},
            "per_class_f1": {name: mean_sd([r["per_class_f1"][name] for r in mine]) for name in labels},
            "train_seconds": mean_sd([r["train_seconds"] for r in mine]),
        }
        cm = np.sum([np.asarray(r["confusion_matrix"], dtype=np.int64) for r in mine], axis=0)
        pooled[model] = metrics_from_confusion(cm, labels)
    return summary, pooled


# --------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------


def cross_validate(
    arrays: SequenceArrays,
    models: dict[str, Fit],
    classes: ClassTable,
    folds: list[tuple[np.ndarray, np.ndarray]],
    groups: np.ndarray | None = None,
    *,
    on_fit: OnFit | None = None,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Train and score every model on every fold (fold by fold, the models side by side).

    Args:
        arrays: Labelled sequences.
        models: Name -> ``fit`` (see :func:`score_fold`), in display order.
        classes: One class table for every fold and model (class order of the matrices).
        folds: From :func:`make_folds`.
        groups: Group per sample (counted per fold; None: each sample its own group).
        on_fit: Called ``(fold, model, "")`` before each fit and ``(fold, model, line)``
            with a one-line score after it.
        workdir: Folder for the temporary model files.

    Returns:
        ``per_fold``, ``summary``, ``pooled``, ``labels``, ``assignment`` and
        ``confusion_matrix_axes`` of the JSON (module docstring).
    """
    labels = list(classes.names)
    g = np.asarray(groups).astype(str) if groups is not None else arrays.sample_ids.astype(str)
    fold_of = np.zeros(arrays.n, dtype=np.int64)
    rows: list[dict[str, Any]] = []
    # One folder for the whole run; each fold's model files are small and stay until the end.
    with tempfile.TemporaryDirectory(dir=workdir, prefix="crossval-") as tmp:
        for k, (tr, te) in enumerate(folds, start=1):
            fold_of[te] = k
            train, test = arrays.subset(tr), arrays.subset(te)
            counts = (len(tr), len(te), len(np.unique(g[tr])), len(np.unique(g[te])))
            for name, fit in models.items():
                if on_fit is not None:
                    on_fit(k, name, "")
                folder = Path(tmp) / f"fold{k}-{name}"
                folder.mkdir()
                row = _fold_row(k, name, score_fold(fit, train, test, folder), labels, counts)
                rows.append(row)
                if on_fit is not None:
                    on_fit(k, name, f"OA {row['overall_accuracy']:.4f}  kappa {_f(row['kappa'])}  "
                                    f"macro F1 {_f(row['macro_f1'])}  train {row['train_seconds']:.1f}s")  # fmt: skip
    summary, pooled = summarize(rows, labels)
    return {
        "n_samples": arrays.n,
        "labels": labels,
        "per_fold": rows,
        "summary": summary,
        "pooled": pooled,
        "confusion_matrix_axes": CONFUSION_AXES,
        "assignment": {"sample_id": arrays.sample_ids.tolist(), "group": g.tolist(), "fold": fold_of.tolist()},
    }


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"
