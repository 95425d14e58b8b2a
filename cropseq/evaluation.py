"""Accuracy assessment: metrics, confusion-matrix plots, sample and map scoring.

One metrics dictionary serves every way of scoring a model (held-out samples, a crop map
against a truth raster, a crop map against held-out labels), so the CLI, the workflow and
the benchmarks all write the same JSON:

.. code-block:: text

    {
      "n": 541,                                  # scored items (samples or pixels)
      "labels": ["Forest", "Soy", ...],          # class order of the confusion matrix
      "overall_accuracy": 0.98,
      "kappa": 0.97,                             # Cohen's kappa (null when undefined)
      "macro_f1": 0.97,                          # mean F1 over the classes that occur
      "per_class": {"Forest": {"users_accuracy": 1.0, "producers_accuracy": 0.99,
                               "f1": 0.995, "support": 120, "predicted": 119}, ...},
      "confusion_matrix": [[...], ...],          # counts
      "confusion_matrix_axes": "rows = reference (true), columns = predicted"
    }

Rules for classes that are absent (no NaN ever reaches the JSON):

- user's accuracy (precision) of a class that is never predicted is ``null`` (undefined:
  no prediction to be right about);
- producer's accuracy (recall) of a class absent from the reference is ``null``;
- F1 is ``0`` when the class occurs on either side but is never correctly predicted, and
  ``null`` when the class occurs on neither side;
- ``macro_f1`` averages the non-null F1 values, i.e. over the classes that occur in the
  reference or the predictions (a class nobody used does not drag the mean down);
- ``kappa`` is ``null`` when chance agreement is 1 (a single class on both sides).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cropseq.atomic import atomic_path, register_input
from cropseq.classes import NODATA_CODE, ClassTable
from cropseq.errors import CropseqError
from cropseq.figures import pyplot, save_png
from cropseq.predictors import Predictor, band_indices
from cropseq.raster_metadata import raster_class_names
from cropseq.sequences import SequenceArrays

__all__ = [
    "CONFUSION_AXES",
    "SCALE_SIGMAS",
    "align_arrays",
    "classification_metrics",
    "confusion_matrix",
    "evaluate_samples",
    "metrics_from_confusion",
    "open_truth_raster",
    "plot_confusion_matrix",
    "score_map",
    "summary_line",
    "training_norm",
    "warn_if_off_scale",
    "write_metrics",
]

CONFUSION_AXES = "rows = reference (true), columns = predicted"

_RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".img", ".jp2"}
#: Class names per sample: a sequence or a 1-D array (e.g. a samples table column).
_Names = Sequence[str] | np.ndarray


# --------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else float(num) / float(den)


def confusion_matrix(y_true: _Names, y_pred: _Names, labels: list[str]) -> np.ndarray:
    """Count matrix with rows = reference (``y_true``) and columns = predicted.

    Raises:
        CropseqError: when a value of ``y_true``/``y_pred`` is not in ``labels``, or the
            two sequences differ in length.
    """
    yt = np.asarray(y_true, dtype=object).astype(str)
    yp = np.asarray(y_pred, dtype=object).astype(str)
    if yt.shape != yp.shape or yt.ndim != 1:
        raise CropseqError(f"y_true and y_pred differ in length ({yt.size} vs {yp.size})")
    if len(set(labels)) != len(labels):
        raise CropseqError(f"duplicate names in labels {labels}")
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted((set(np.unique(yt)) | set(np.unique(yp))) - set(index))
    if unknown:
        raise CropseqError(f"classes {unknown} are not in the label list {labels}")
    k = len(labels)
    ti = np.fromiter((index[v] for v in yt), dtype=np.int64, count=yt.size)
    pi = np.fromiter((index[v] for v in yp), dtype=np.int64, count=yp.size)
    return np.bincount(ti * k + pi, minlength=k * k).reshape(k, k)


def metrics_from_confusion(cm: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """The metrics dictionary (see the module docstring) from a count matrix.

    Args:
        cm: ``(K, K)`` counts, rows = reference, columns = predicted.
        labels: The K class names in matrix order.

    Raises:
        CropseqError: when the matrix is empty (nothing to score).
    """
    cm = np.asarray(cm, dtype=np.int64)
    n = int(cm.sum())
    if n == 0:
        raise CropseqError("nothing to score: no reference item matched a prediction")
    diag = np.diag(cm).astype(np.float64)
    rows = cm.sum(axis=1).astype(np.float64)  # reference totals
    cols = cm.sum(axis=0).astype(np.float64)  # predicted totals
    oa = float(diag.sum() / n)
    pe = float((rows * cols).sum() / (n * n))
    kappa = None if math.isclose(pe, 1.0) else (oa - pe) / (1.0 - pe)

    per_class: dict[str, dict[str, Any]] = {}
    f1s: list[float] = []
    for i, name in enumerate(labels):
        ua = _ratio(diag[i], cols[i])
        pa = _ratio(diag[i], rows[i])
        if rows[i] == 0 and cols[i] == 0:
            f1 = None
        else:
            # 2 TP / (2 TP + FP + FN) equals 2 UA PA / (UA + PA) where both are defined and
            # is 0 when the class occurs but is never hit (no 0/0).
            f1 = float(2 * diag[i] / (rows[i] + cols[i]))
            f1s.append(f1)
        per_class[name] = {
            "users_accuracy": ua,
            "producers_accuracy": pa,
            "f1": f1,
            "support": int(rows[i]),
            "predicted": int(cols[i]),
        }
    return {
        "n": n,
        "labels": list(labels),
        "overall_accuracy": oa,
        "kappa": None if kappa is None else float(kappa),
        "macro_f1": float(np.mean(f1s)) if f1s else None,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_axes": CONFUSION_AXES,
    }


def classification_metrics(y_true: _Names, y_pred: _Names, labels: list[str]) -> dict[str, Any]:
    """Overall accuracy, Cohen's kappa, macro F1, per-class UA/PA/F1 and the confusion matrix.

    Args:
        y_true: Reference class names.
        y_pred: Predicted class names (same length).
        labels: All class names, in the order wanted for the matrix; every value of
            ``y_true``/``y_pred`` must be one of them. Classes absent from both sides are
            kept in the matrix with null accuracies (see the module docstring).

    Returns:
        The metrics dictionary (JSON-ready: plain ints/floats/None, no NaN).

    Raises:
        CropseqError: on unknown class names, length mismatch or nothing to score.
    """
    return metrics_from_confusion(confusion_matrix(y_true, y_pred, labels), labels)


def write_metrics(metrics: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``metrics`` as indented JSON, atomically; returns the path.

    NaN/inf are refused (``allow_nan=False``) so the file is strict JSON any tool can read.
    """
    path = Path(path)
    text = json.dumps(_jsonable(metrics), indent=2, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return path


def _jsonable(obj: Any) -> Any:
    # numpy scalars/arrays from callers; NaN → None so the strict dump never fails on them.
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def summary_line(metrics: dict[str, Any]) -> str:
    """One human line: ``n=…  OA=…  kappa=…  macro F1=…``."""

    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    return (
        f"n={metrics['n']}  OA={f(metrics['overall_accuracy'])}  "
        f"kappa={f(metrics['kappa'])}  macro F1={f(metrics['macro_f1'])}"
    )


# --------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------


def plot_confusion_matrix(metrics: dict[str, Any], path: str | os.PathLike[str], title: str = "") -> Path:
    """Draw the confusion matrix as a PNG: counts in the cells, colour = row share.

    Rows are the reference classes and columns the predictions, so the colour of a row
    reads as the producer's accuracy / omission pattern of that class, whatever its size.

    Args:
        metrics: A metrics dictionary (needs ``confusion_matrix`` and ``labels``).
        path: Output PNG, written atomically.
        title: Figure title; the OA/kappa/macro-F1 line is added below it.

    Returns:
        The path written.
    """
    plt = pyplot()

    cm = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
    labels = [str(v) for v in metrics["labels"]]
    k = len(labels)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)

    # Size grows with the class count so 10 classes with long names stay legible.
    side = max(4.5, 0.75 * k + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), dpi=120)
    try:
        im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
        cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cbar.set_label("share of reference row")
        fontsize = 10 if k <= 6 else 8 if k <= 12 else 6
        for i in range(k):
            for j in range(k):
                if cm[i, j] == 0 and i != j:
                    continue  # empty off-diagonal cells stay blank: errors stand out
                colour = "white" if share[i, j] > 0.6 else "black"
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=colour, fontsize=fontsize)
        ax.set_xticks(range(k), labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=fontsize + 1)
        ax.set_yticks(range(k), labels, fontsize=fontsize + 1)
        ax.set_xlabel("predicted")
        ax.set_ylabel("reference")
        head = title or "Confusion matrix"
        ax.set_title(f"{head}\n{summary_line(metrics)}", fontsize=10)
        fig.tight_layout()
        path = save_png(fig, path)
    finally:
        plt.close(fig)
    return path


# --------------------------------------------------------------------------------------
# samples
# --------------------------------------------------------------------------------------


def align_arrays(predictor: Predictor, arrays: SequenceArrays, where: str | None = None) -> np.ndarray:
    """``arrays.x`` with the bands in the predictor's order and its patch size.

    Extra bands are dropped, missing ones are an error; a larger patch is cropped around
    the centre pixel (a table extracted with ``--patch 5`` still scores a ``p = 1`` model).

    Raises:
        CropseqError: naming the missing bands, or when the samples' patch is too small.
    """
    order = band_indices(predictor.bands, arrays.bands, where, what="samples")
    x = arrays.x if order == list(range(arrays.x.shape[2])) else arrays.x[:, :, order]
    p, q = int(predictor.patch), arrays.patch
    if q < p:
        raise CropseqError(f"the model needs {p}x{p} patches but the samples hold {q}x{q}", where)
    if q > p:
        off = q // 2 - p // 2
        x = x[:, :, :, off : off + p, off : off + p]
    return x


#: An input band whose median lies this many training standard deviations (and a factor
#: of 10 or more) away from the training mean is on another scale.
SCALE_SIGMAS = 20.0


def training_norm(predictor: Predictor) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-band training mean and std of a predictor's raw inputs, when it records them.

    Deep checkpoints keep them as ``norm``; RandomForest files as ``input_norm``.
    """
    meta = getattr(predictor, "meta", None) or {}
    norm = meta.get("norm") or meta.get("input_norm")
    if not isinstance(norm, dict):
        return None
    try:
        mean = np.asarray(norm["mean"], np.float64)
        std = np.asarray([np.nan if v is None else v for v in norm["std"]], np.float64)
    except (KeyError, TypeError, ValueError):
        return None
    n = len(predictor.bands)
    return (mean, std) if mean.shape == (n,) and std.shape == (n,) else None


def warn_if_off_scale(predictor: Predictor, values: np.ndarray, where: str | None = None, *, band_axis: int) -> list[str]:
    """Warn about input bands on another scale than the model's training data.

    One :class:`~cropseq.errors.DataWarning` per band, e.g. raw digital numbers
    (reflectance x 10000) scored against a model trained on reflectance.

    Args:
        predictor: The model (its bands, and :func:`training_norm`).
        values: Input values, the bands in the model's order on ``band_axis``: e.g.
            ``(N, T, C)`` sequences (axis 2) or ``(T, C, M)`` sampled cube pixels (axis 1).
        where: The input named in the warning.
        band_axis: The axis of ``values`` that holds the bands (explicit: the shapes alone
            cannot tell ``(N, T, C)`` from ``(T, C, M)``).

    Returns:
        The warning messages (also emitted).
    """
    import warnings

    from cropseq.errors import DataWarning

    norm = training_norm(predictor)
    if norm is None:
        return []
    mean, std = norm
    v = np.asarray(values, np.float64)
    v = np.moveaxis(v, band_axis, 0).reshape(len(predictor.bands), -1)
    out = []
    for b, band in enumerate(predictor.bands):
        finite = v[b][np.isfinite(v[b])]
        if finite.size == 0 or not np.isfinite(mean[b]):
            continue
        med = float(np.median(finite))
        spread = std[b] if np.isfinite(std[b]) and std[b] > 0 else abs(mean[b]) or 1.0
        ratio = abs(med) / max(abs(mean[b]), 1e-12)
        if abs(med - mean[b]) > SCALE_SIGMAS * spread and (ratio >= 10 or ratio <= 0.1):
            factor = 10 ** round(np.log10(ratio)) if ratio > 0 else 0
            msg = (
                f"{where + ': ' if where else ''}band {band} has values around {med:.4g} but the model was trained on "
                f"{mean[b]:.4g} +- {std[b]:.2g}: a scale factor (x{factor:g})? set scale in stack.yaml "
                "(e.g. scale: 0.0001 for reflectance x 10000) or rescale the table"
            )
            warnings.warn(msg, DataWarning, stacklevel=2)
            out.append(msg)
    return out


def evaluate_samples(
    predictor: Predictor,
    arrays: SequenceArrays,
    batch_size: int = 4096,
    where: str | None = None,
) -> dict[str, Any]:
    """Score a predictor on labelled sequences.

    Reference labels the model does not know are kept (always counted wrong) and listed
    under ``unknown_labels``, so a test set is never silently shrunk.

    Args:
        predictor: Any :class:`~cropseq.predictors.Predictor` (deep model or RandomForest).
        arrays: Labelled sequences (any band order / patch ≥ the model's).
        batch_size: Sequences per ``predict_proba`` call.
        where: File name used in error messages (the samples table).

    Returns:
        The metrics dictionary plus ``model_kind`` and ``unknown_labels``.

    Raises:
        CropseqError: when the samples are unlabelled, empty or lack the model's bands.
    """
    if arrays.labels is None:
        raise CropseqError("the samples have no labels to score against", where)
    if arrays.n == 0:
        raise CropseqError("no samples to score", where)
    x = align_arrays(predictor, arrays, where)
    proba = np.asarray(predictor.predict_proba(x, arrays.doy, batch_size=batch_size))
    c = x.shape[3] // 2
    warn_if_off_scale(predictor, x[:, :, :, c, c], where, band_axis=2)  # after the model's own refusals
    names = predictor.classes.names
    y_pred = np.asarray(names, dtype=object)[np.argmax(proba, axis=1)]
    y_true = np.asarray(arrays.labels).astype(str)
    unknown = sorted(set(np.unique(y_true)) - set(names))
    out = classification_metrics(y_true, y_pred, list(names) + unknown)
    out["model_kind"] = predictor.kind
    out["unknown_labels"] = unknown
    return out


# --------------------------------------------------------------------------------------
# maps
# --------------------------------------------------------------------------------------


def _check_same_grid(map_ds: Any, truth_ds: Any, truth_path: Path) -> None:
    same_crs = (map_ds.crs is None and truth_ds.crs is None) or (
        map_ds.crs is not None and truth_ds.crs is not None and map_ds.crs == truth_ds.crs
    )
    if not same_crs:
        raise CropseqError(f"truth raster CRS {truth_ds.crs} differs from the map's {map_ds.crs}", truth_path)
    if (map_ds.height, map_ds.width) != (truth_ds.height, truth_ds.width):
        raise CropseqError(
            f"truth raster is {truth_ds.height}x{truth_ds.width} pixels, the map "
            f"{map_ds.height}x{map_ds.width}; both must share one grid",
            truth_path,
        )
    if not map_ds.transform.almost_equals(truth_ds.transform, precision=1e-6 * abs(map_ds.transform.a or 1)):
        raise CropseqError("truth raster is not on the map's grid (different transform)", truth_path)


def _code_name(code: int, table: dict[int, str]) -> str:
    # Codes without a name keep a readable stand-in so they still count in the matrix.
    return table.get(int(code), f"code {int(code)}")


def _count_raster_pairs(
    map_ds: Any, t_path: Path, truth_nodata: int, map_table: dict[int, str], pairs: dict[tuple[str, int], int]
) -> dict[int, str]:
    """Add (reference name, map code) counts of a truth raster to ``pairs``, block by block.

    Returns:
        The truth raster's code → name table (its own, else the map's).
    """
    from rasterio.windows import Window

    with open_truth_raster(t_path, map_ds) as t_ds:
        truth_table = raster_class_names(t_path) or dict(map_table)
        skip = {int(truth_nodata)} | ({int(t_ds.nodata)} if t_ds.nodata is not None else set())
        code_pairs: dict[tuple[int, int], int] = {}
        # Strips of whole rows, ~4 M pixels each: bounded memory whatever the tiling.
        step = max(1, 4_000_000 // max(1, map_ds.width))
        for r0 in range(0, map_ds.height, step):
            win = Window(0, r0, map_ds.width, min(step, map_ds.height - r0))
            p = map_ds.read(1, window=win).astype(np.int64).ravel()
            t = t_ds.read(1, window=win).astype(np.int64).ravel()
            keep = ~np.isin(t, list(skip))
            if not keep.any():
                continue
            keys, counts = np.unique(np.stack([t[keep], p[keep]]), axis=1, return_counts=True)
            for (tc, pc), c in zip(keys.T, counts, strict=True):
                code_pairs[(int(tc), int(pc))] = code_pairs.get((int(tc), int(pc)), 0) + int(c)
    for (tc, pc), c in code_pairs.items():
        key = (_code_name(tc, truth_table), pc)
        pairs[key] = pairs.get(key, 0) + c
    return truth_table


def _open_input_raster(path: Path, what: str, unreadable: str) -> Any:
    """Open a raster the command reads (registered as an input: no output may replace it).

    Raises:
        CropseqError: ``<what> not found``, or ``unreadable`` when GDAL cannot open it.
    """
    import rasterio

    if not path.is_file():
        raise CropseqError(f"{what} not found", path)
    register_input(path, what=what)
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError:
        raise CropseqError(unreadable, path) from None


def _open_map(map_path: Path) -> Any:
    """Open the crop map (registered as an input), with one-line errors."""
    return _open_input_raster(map_path, "crop map", "cannot read the crop map as a raster")


def open_truth_raster(path: Path, map_ds: Any) -> Any:
    """Open a truth raster (registered as an input) that lies on the map's grid; the caller closes it.

    Args:
        path: The truth raster.
        map_ds: The open crop map whose grid the truth raster must share.

    Returns:
        The open rasterio dataset.

    Raises:
        CropseqError: the file is missing or unreadable, or its grid differs from the map's.
    """
    t_ds = _open_input_raster(path, "truth raster", "cannot read the truth raster")
    try:
        _check_same_grid(map_ds, t_ds, path)
    except CropseqError:
        t_ds.close()
        raise
    return t_ds


def _count_label_pairs(map_ds: Any, truth: Any, class_column: str, valid_at: str | np.datetime64 | None,
                       pairs: dict[tuple[str, int], int]) -> int:  # fmt: skip
    """Add the (reference name, map code) counts of labels to ``pairs``.

    Returns how many labelled pixels fall outside the map. Only the window around the labels
    is read.
    """
    from rasterio.windows import Window

    ref_names, rows, cols = _label_pixels(truth, map_ds, class_column, valid_at)
    inside = (rows >= 0) & (rows < map_ds.height) & (cols >= 0) & (cols < map_ds.width)
    outside = int((~inside).sum())
    ref_names, rows, cols = ref_names[inside], rows[inside], cols[inside]
    if rows.size:
        r0, c0 = int(rows.min()), int(cols.min())
        win = Window(c0, r0, int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1)
        pred_codes = map_ds.read(1, window=win)[rows - r0, cols - c0]
        keys, counts = np.unique(
            np.stack([ref_names.astype(str), pred_codes.astype(np.int64).astype(str)]), axis=1,
            return_counts=True,
        )
        for (name, code), cnt in zip(keys.T, counts, strict=True):
            pairs[(str(name), int(code))] = pairs.get((str(name), int(code)), 0) + int(cnt)
    return outside


def _pairs_confusion(pairs: dict[tuple[str, int], int], map_table: dict[int, str], map_nodata: Any,
                     truth_label: str) -> tuple[np.ndarray, list[str], int]:  # fmt: skip
    """``(matrix, class names, unclassified count)`` of (reference name, map code) counts.

    Pairs on unclassified map pixels (0 or the map's nodata) are counted, not scored.
    Matrix order: the map's classes by code, then names only the reference (or an unnamed
    map code) uses.
    """
    unclassified_codes = {NODATA_CODE} | ({int(map_nodata)} if map_nodata is not None else set())
    n_unclassified = sum(c for (_, code), c in pairs.items() if code in unclassified_codes)
    scored = {(ref, _code_name(code, map_table)): c for (ref, code), c in pairs.items() if code not in unclassified_codes}
    merged: dict[tuple[str, str], int] = {}
    for key, c in scored.items():  # two codes may share a fallback name only in theory; merge
        merged[key] = merged.get(key, 0) + c
    if not merged:
        raise CropseqError("no reference pixel falls on a classified map pixel", truth_label)
    known = [map_table[c] for c in sorted(map_table)]
    extra = sorted({n for key in merged for n in key} - set(known))
    labels = known + extra
    index = {n: i for i, n in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for (ref, pred), c in merged.items():
        cm[index[ref], index[pred]] += c
    return cm, labels, n_unclassified


def score_map(
    map_path: str | os.PathLike[str],
    truth: str | os.PathLike[str] | Any,
    *,
    class_column: str = "label",
    classes: ClassTable | None = None,
    truth_nodata: int = NODATA_CODE,
    valid_at: str | np.datetime64 | None = None,
) -> dict[str, Any]:
    """Score a crop map against a truth raster or held-out labels.

    Truth as a **raster**: a single-band integer raster on the map's grid (same CRS, size
    and transform); ``truth_nodata`` (default 0) and the raster's own nodata are not
    scored. Codes are matched *by name*: each raster's codes are named through its own
    class table (see :func:`raster_class_names`), falling back to the other raster's or
    ``classes``; with no table at all, codes are compared as they are.

    Truth as **labels**: any file :func:`cropseq.labels.read_labels` reads (points,
    polygons, CSV points), or an already-read ``LabelSet``; every map pixel whose centre
    lies in a polygon, or that holds a point, is one scored item. Labels that carry a
    validity period (``from``/``to``, e.g. one season per row) should be scored against
    the map of that period: pass ``valid_at`` (a date inside the map's period) to keep
    only the labels with ``from <= valid_at < to`` (open ends always match).

    Reference pixels where the map is nodata (0: could not be classified) are left out of
    the matrix and counted in ``n_unclassified``; reference items outside the map in
    ``n_outside``.

    Args:
        map_path: The crop map (uint8 codes, nodata 0).
        truth: Truth raster path, label file path, or a ``LabelSet``.
        class_column: Label attribute holding the class name (label files only).
        classes: Class table used when the map carries none.
        truth_nodata: Truth raster value that means "no reference".
        valid_at: Keep only labels valid on this ISO date (label files only).

    Returns:
        The metrics dictionary plus ``n_unclassified``, ``n_outside``, ``map``, ``truth``
        (and ``valid_at`` when given).

    Raises:
        CropseqError: on a missing/unreadable file, a grid mismatch, or nothing to score.
    """
    map_path = Path(map_path)
    map_ds = _open_map(map_path)
    truth_label = str(truth) if isinstance(truth, str | os.PathLike) else type(truth).__name__
    with map_ds:
        map_table = raster_class_names(map_path) or ({c.code: c.name for c in classes.classes} if classes else {})
        map_nodata = map_ds.nodata
        # Counts of (reference name, predicted code) pairs: memory stays bounded by one
        # strip of the rasters (or the labels' window), never the scene.
        pairs: dict[tuple[str, int], int] = {}
        if isinstance(truth, str | os.PathLike) and Path(truth).suffix.lower() in _RASTER_SUFFIXES:
            outside = 0
            truth_table = _count_raster_pairs(map_ds, Path(truth), truth_nodata, map_table, pairs)
            if not map_table:
                map_table = truth_table
        else:
            outside = _count_label_pairs(map_ds, truth, class_column, valid_at, pairs)
    cm, labels, n_unclassified = _pairs_confusion(pairs, map_table, map_nodata, truth_label)
    out = metrics_from_confusion(cm, labels)
    out.update({"n_unclassified": n_unclassified, "n_outside": outside, "map": str(map_path), "truth": truth_label})
    if valid_at is not None:
        out["valid_at"] = str(valid_at)
    return out


def _label_pixels(
    truth: Any, map_ds: Any, class_column: str, valid_at: str | np.datetime64 | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference names and map (row, col) of every labelled pixel of a label file/LabelSet."""
    gdf = _labels_frame(truth, map_ds.crs, class_column)
    if valid_at is not None:
        import pandas as pd

        try:
            when = pd.Timestamp(valid_at)
        except ValueError:
            raise CropseqError(f"valid_at {valid_at!r} is not an ISO date") from None
        keep = np.ones(len(gdf), dtype=bool)
        if "from" in gdf.columns:
            lo = pd.to_datetime(gdf["from"], errors="coerce")
            keep &= (lo.isna() | (lo <= when)).to_numpy()
        if "to" in gdf.columns:
            hi = pd.to_datetime(gdf["to"], errors="coerce")
            keep &= (hi.isna() | (when < hi)).to_numpy()
        gdf = gdf[keep]
        if len(gdf) == 0:
            raise CropseqError(f"no label is valid on {when.date()}", str(truth))
    if len(gdf) == 0:
        raise CropseqError("the label file holds no labels", str(truth))
    names: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    geom_types = gdf.geometry.geom_type.to_numpy()
    labels = gdf["__label__"].astype(str).to_numpy()
    is_point = np.isin(geom_types, ["Point"])
    if is_point.any():
        pts = gdf.geometry[is_point]
        r, c = _rowcol(map_ds.transform, pts.x.to_numpy(), pts.y.to_numpy())
        names.append(labels[is_point])
        rows.append(r)
        cols.append(c)
    others = ~is_point
    if others.any():
        from rasterio import features

        for geom, name in zip(gdf.geometry[others], labels[others], strict=True):
            if geom is None or geom.is_empty:
                continue
            if geom.geom_type == "MultiPoint":
                xs = np.array([p.x for p in geom.geoms])
                ys = np.array([p.y for p in geom.geoms])
                r, c = _rowcol(map_ds.transform, xs, ys)
            else:
                # One polygon at a time: pixels of overlapping fields are scored for each.
                mask = features.geometry_mask(
                    [geom], out_shape=(map_ds.height, map_ds.width), transform=map_ds.transform, invert=True
                )
                r, c = np.nonzero(mask)
            names.append(np.full(r.size, name, dtype=object))
            rows.append(r)
            cols.append(c)
    if not names:
        return np.zeros(0, dtype=object), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (
        np.concatenate(names).astype(object),
        np.concatenate(rows).astype(np.int64),
        np.concatenate(cols).astype(np.int64),
    )


def _rowcol(transform: Any, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Plain affine arithmetic (floor of the inverse transform): a point on a pixel's
    # top/left edge belongs to that pixel, as in GDAL.
    inv = ~transform
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    c = inv.a * xs + inv.b * ys + inv.c
    r = inv.d * xs + inv.e * ys + inv.f
    return np.floor(np.asarray(r)).astype(np.int64), np.floor(np.asarray(c)).astype(np.int64)


def _labels_frame(truth: Any, crs: Any, class_column: str) -> Any:
    """A GeoDataFrame in the map CRS with the class name in column ``__label__``."""
    import geopandas as gpd

    if isinstance(truth, str | os.PathLike):
        path = Path(truth)
        if not path.exists():
            raise CropseqError("truth labels not found", path)
        from cropseq.labels import read_labels

        truth = read_labels(path, crs, class_column=class_column)
    if isinstance(truth, gpd.GeoDataFrame):
        gdf = truth
        col = class_column if class_column in gdf.columns else "label"
    else:  # a cropseq.labels.LabelSet: names already in its ``label`` column
        gdf = getattr(truth, "features", None)
        if gdf is None:
            raise CropseqError(f"cannot use {type(truth).__name__} as truth labels")
        col = "label"
    if col not in gdf.columns:
        raise CropseqError(f"labels have no column {class_column!r}")
    if crs is not None and gdf.crs is not None and gdf.crs != crs:
        gdf = gdf.to_crs(crs)
    gdf = gdf.copy()
    gdf["__label__"] = gdf[col].astype(str)
    return gdf
