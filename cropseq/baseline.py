"""RandomForest baseline on flattened sequences: training, saved with skops.

The baseline every deep model has to beat, applied through the same
:class:`~cropseq.predictors.Predictor` seam (evaluation, inference, benchmarks): the trained
model is a :class:`~cropseq.predictors.forest.RandomForestPredictor` (features, date
matching, file format: see :mod:`cropseq.predictors.forest`), as a deep model is a
:class:`~cropseq.predictors.deep.DeepPredictor` trained by :mod:`cropseq.training`.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

import numpy as np

from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.predictors.forest import RandomForestPredictor, step_mode, step_tolerance
from cropseq.sequences import SequenceArrays

__all__ = ["train_random_forest"]


def _training_timeline(train: SequenceArrays) -> dict[str, Any]:
    """``step_doy`` / ``step_dates``: the most common day of year / date of each step.

    None when a step has no date, or when two steps fall on (nearly) the same day of year
    (a multi-year timeline): then inputs are aligned by position instead.
    """
    doy = step_mode(np.asarray(train.doy, np.float64))
    if any(d is None for d in doy):
        return {"step_doy": None, "step_dates": None}
    step_doy = np.asarray(doy, np.float64)
    if step_doy.size > 1 and (step_tolerance(step_doy) <= 0).any():
        return {"step_doy": None, "step_dates": None}
    dates = step_mode(np.asarray(train.dates)) if train.dates is not None else [None] * len(doy)
    return {"step_doy": [float(d) for d in step_doy], "step_dates": [None if d is None else str(d)[:10] for d in dates]}


def _centre_steps(arrays: SequenceArrays) -> np.ndarray:
    c = arrays.patch // 2
    return np.asarray(arrays.x[:, :, :, c, c], dtype=np.float32)  # (N, T, C)


def _band_statistics(seq: np.ndarray, standardize: bool) -> tuple[np.ndarray, ...]:
    """Training statistics of ``(N, T, C)`` sequences: ``(band mean, band std, fill, mean, std)``.

    ``fill`` (T, C) replaces missing values (the step's mean, else the band's),
    ``mean``/``std`` standardise the bands (0 and 1 unless ``standardize``).
    """
    c = seq.shape[2]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        # "Mean of empty slice" for all-NaN steps/bands: handled right below.
        warnings.simplefilter("ignore", RuntimeWarning)
        band_mean = np.nanmean(seq.reshape(-1, c), axis=0)
        step_mean = np.nanmean(seq, axis=0)  # (T, C)
        band_std = np.nanstd(seq.reshape(-1, c), axis=0)
    band_mean = np.where(np.isfinite(band_mean), band_mean, 0.0).astype(np.float32)
    fill = np.where(np.isfinite(step_mean), step_mean, band_mean[None]).astype(np.float32)
    if standardize:
        mean = band_mean
        std = np.where(np.isfinite(band_std) & (band_std > 0), band_std, 1.0).astype(np.float32)
    else:
        mean = np.zeros(c, np.float32)
        std = np.ones(c, np.float32)
    return band_mean, band_std, fill, mean, std


def _model_meta(train: SequenceArrays, labels: np.ndarray, classes: ClassTable, band_mean: np.ndarray,
                band_std: np.ndarray, n_estimators: int, seed: int, standardize: bool,
                rf_options: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The model file's metadata: training timeline, raw band statistics, training options."""
    counts = {name: int((labels == name).sum()) for name in classes.names}
    return {
        **_training_timeline(train),
        # Raw training statistics per band: inputs on another scale are warned about.
        "input_norm": {
            "mean": [float(v) for v in band_mean],
            "std": [float(v) if np.isfinite(v) else None for v in band_std],
        },
        "training": {
            "n_samples": int(len(labels)),
            "class_counts": counts,
            "n_estimators": int(n_estimators),
            "seed": int(seed),
            "standardize": bool(standardize),
            "rf_options": {k: v for k, v in rf_options.items() if isinstance(v, str | int | float | bool | None)},
        }
    }


def train_random_forest(
    train: SequenceArrays,
    out: str | os.PathLike[str] | None,
    classes: ClassTable | None = None,
    *,
    n_estimators: int = 500,
    seed: int = 0,
    n_jobs: int | None = -1,
    standardize: bool = False,
    **rf_options: Any,
) -> RandomForestPredictor:
    """Train the RandomForest baseline and save it with skops.

    Args:
        train: Labelled training sequences (the centre pixel of any patch is used).
        out: Output ``*.skops`` path, or None to keep the model in memory only.
        classes: Class table (codes, colours, output order); derived from the training
            labels (sorted names) when None. Training labels must all be in it.
            Everything after ``classes`` is keyword-only.
        n_estimators: Number of trees.
        seed: ``random_state`` of the forest (results are reproducible for a fixed seed
            and ``n_jobs``).
        n_jobs: Parallel jobs for fitting and prediction (-1: all cores).
        standardize: Standardise each band with its training mean/std (no effect on the
            trees; kept for parity with published baselines).
        **rf_options: Further ``RandomForestClassifier`` options (e.g. ``max_features``).

    Returns:
        The trained :class:`RandomForestPredictor` (also written to ``out``).

    Raises:
        CropseqError: for unlabelled/empty input, labels outside ``classes``, or an
            unwritable output path.
    """
    from sklearn.ensemble import RandomForestClassifier

    from cropseq.atomic import check_writable

    if train.labels is None or train.n == 0:
        raise CropseqError("training needs labelled samples (none given)")
    if out is not None:
        out = check_writable(out)
        if out.suffix != ".skops":
            raise CropseqError("a RandomForest model file must end in .skops", out)
    labels = np.asarray(train.labels).astype(str)
    if classes is None:
        classes = ClassTable.from_names(labels)
    y = np.asarray(classes.index_of(labels), dtype=np.int64)

    seq = _centre_steps(train)
    t = seq.shape[1]
    band_mean, band_std, fill, mean, std = _band_statistics(seq, standardize)

    model = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs, **rf_options)
    meta = _model_meta(train, labels, classes, band_mean, band_std, n_estimators, seed, standardize, rf_options)
    predictor = RandomForestPredictor(model, list(train.bands), classes, t, fill, mean, std, meta)
    t0 = time.perf_counter()
    model.fit(predictor.features(seq), y)  # by position: the training steps define the features
    predictor.meta["training"]["fit_seconds"] = round(time.perf_counter() - t0, 3)
    if out is not None:
        predictor.save(out)
    return predictor

