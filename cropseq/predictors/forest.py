""":class:`RandomForestPredictor`: a RandomForest baseline file behind the :class:`~cropseq.predictors.Predictor` protocol.

The mirror of :mod:`cropseq.predictors.deep`; training lives in :mod:`cropseq.baseline`.
Features: the centre pixel of each sequence (``patch = 1``), flattened time-major into
``T * C`` values (step 0 bands, step 1 bands, ...), where ``T`` is the training sequence
length. Each feature belongs to one training date, so the input is mapped onto the
training dates explicitly, never by position: training step ``k`` takes the input date
nearest in day of year (circular, so a season may cross New Year) within
:data:`DATE_TOLERANCE_DAYS`, capped at half the gap to the neighbouring training dates so
two training steps never share an input date. Input dates the forest has no feature for
are ignored; a training date without any input date near it is an error naming both
timelines (the forest cannot see that date, and filling it with the training mean would
silently degrade the map). Without days of year (a table with ``t`` only, or a model
trained on one) the input must have exactly ``T`` steps.

Missing values (NaN: clouds, nodata, padding) are replaced by the training mean of the
same step and band (the band's overall mean when a step has no valid training value), so
a gap looks like "an average date" rather than an extreme sentinel the trees would split on.

Optional per-band standardisation (``standardize=True``) is offered for parity with
published baselines; tree splits are invariant to it, so it changes nothing but the file.

File format (``*.skops``, loaded with an explicit list of trusted types, never pickle)::

    {"format": "cropseq-rf", "format_version": 1,
     "meta_json": str,              # cropseq_version, bands, classes, n_steps, options,
                                    # step_doy / step_dates (the training timeline; null
                                    # when unknown), input_norm (training mean/std per band)
     "model": RandomForestClassifier,   # trained on class indices 0..K-1
     "fill": float32 (T, C), "mean": float32 (C,), "std": float32 (C,)}
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cropseq.atomic import atomic_path
from cropseq.classes import ClassTable
from cropseq.errors import CropseqError

__all__ = ["DATE_TOLERANCE_DAYS", "FORMAT", "FORMAT_VERSION", "RandomForestPredictor", "TRUSTED_TYPES", "step_mode", "step_tolerance"]

FORMAT = "cropseq-rf"
FORMAT_VERSION = 1

#: How many days (of the year) an input date may lie from a training date to stand in for it.
#: About a Sentinel-2/Landsat revisit; closer training dates get half their gap instead.
DATE_TOLERANCE_DAYS = 8.0
_YEAR_DAYS = 365.25

# Everything a cropseq RandomForest file may contain beyond skops' default-trusted
# builtins/numpy/sklearn estimators. Anything else in a file is refused before loading.
TRUSTED_TYPES: list[str] = ["sklearn.tree._tree.Tree"]


def _doy_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Days between days of year, around the year (Dec 30 and Jan 2 are 3 days apart)."""
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) % _YEAR_DAYS
    return np.minimum(d, _YEAR_DAYS - d)


def step_tolerance(step_doy: np.ndarray) -> np.ndarray:
    """Per training step: the largest distance at which an input date stands in for it."""
    tol = np.full(step_doy.shape, DATE_TOLERANCE_DAYS)
    if step_doy.size > 1:
        d = _doy_distance(step_doy[:, None], step_doy[None, :])
        np.fill_diagonal(d, np.inf)
        tol = np.minimum(tol, d.min(axis=1) / 2 - 1e-3)  # never two steps on one date
    return tol


def _match_steps(step_doy: np.ndarray, tol: np.ndarray, doy: np.ndarray) -> np.ndarray:
    """``(K,)`` index of the input date standing in for each training step, -1 for none."""
    d = _doy_distance(step_doy[:, None], doy[None, :])
    d = np.where(np.isfinite(d), d, np.inf)
    j = d.argmin(axis=1)
    return np.where(d[np.arange(len(step_doy)), j] <= tol, j, -1)


def _days(doy: np.ndarray) -> str:
    """Days of year as ``MM-DD`` (of a non-leap year), comma-separated."""
    base = np.datetime64("2001-01-01")
    return ", ".join(str(base + np.timedelta64(int(round(d)) - 1, "D"))[5:] for d in np.asarray(doy).ravel())


def step_mode(values: np.ndarray) -> list[Any]:
    """The most common non-missing value of each column of ``(N, T)`` (None where none)."""
    out: list[Any] = []
    for col in values.T:
        col = col[~_missing(col)]
        if col.size == 0:
            out.append(None)
            continue
        vals, counts = np.unique(col, return_counts=True)
        out.append(vals[int(np.argmax(counts))])
    return out


def _missing(a: np.ndarray) -> np.ndarray:
    """NaN/NaT mask of a float or datetime64 array."""
    return np.isnat(a) if np.issubdtype(a.dtype, np.datetime64) else ~np.isfinite(a.astype(np.float64))


def _version() -> str:
    from cropseq import __version__

    return __version__


class RandomForestPredictor:
    """A trained RandomForest that implements the :class:`~cropseq.predictors.Predictor` protocol.

    Attributes:
        bands: Band names the model expects, in order.
        classes: Class table; probability column ``k`` is ``classes.classes[k]``.
        patch: Always 1 (the centre pixel of a larger patch is used).
        kind: ``"rf"``.
        n_steps: Sequence length ``T`` the features are built on.
        model: The fitted ``sklearn.ensemble.RandomForestClassifier`` (targets 0..K-1).
        fill: ``(T, C)`` float32 values replacing NaN.
        mean, std: ``(C,)`` float32 standardisation (zeros/ones when not standardising).
        meta: Training metadata (options, sample counts, version).
        step_doy: ``(T,)`` day of year of each training step, or None when the training
            data had no dates (then inputs are aligned by position and must have ``T`` steps).
        path: The model file (named in errors), when loaded from or saved to one.
    """

    patch: int = 1
    kind: str = "rf"

    def __init__(
        self,
        model: Any,
        bands: list[str],
        classes: ClassTable,
        n_steps: int,
        fill: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.bands = list(bands)
        self.classes = classes
        self.n_steps = int(n_steps)
        self.fill = np.asarray(fill, dtype=np.float32).reshape(self.n_steps, len(self.bands))
        self.mean = np.asarray(mean, dtype=np.float32).reshape(len(self.bands))
        self.std = np.asarray(std, dtype=np.float32).reshape(len(self.bands))
        self.meta = dict(meta or {})
        self.patch = 1
        self.kind = "rf"
        step_doy = self.meta.get("step_doy")
        self.step_doy = None if step_doy is None else np.asarray(step_doy, dtype=np.float64).reshape(self.n_steps)
        self.path: Path | None = None
        self._chunk_model: Any = None

    def __repr__(self) -> str:
        return (
            f"RandomForestPredictor(bands={self.bands}, classes={self.classes.names}, "
            f"n_steps={self.n_steps}, n_estimators={getattr(self.model, 'n_estimators', '?')})"
        )

    # ---------------------------------------------------------------- features
    def features(self, x: np.ndarray, doy: np.ndarray | None = None) -> np.ndarray:
        """Flattened, gap-filled feature rows for sequences.

        Args:
            x: ``(N, T', C)`` centre-pixel values or ``(N, T', C, p, p)`` patches, raw, NaN
                where missing, bands in :attr:`bands` order.
            doy: ``(N, T')`` or ``(T',)`` day of year of each input step (NaN where
                unknown or padded), or None: then the steps are the training steps.

        Returns:
            ``(N, T * C)`` float32.

        Raises:
            CropseqError: for a wrong shape, or when the input's dates do not cover the
                training dates (see the module docs); names both timelines.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 5:
            c = x.shape[3] // 2
            x = x[:, :, :, c, c]
        if x.ndim != 3 or x.shape[2] != len(self.bands):
            raise CropseqError(
                f"expected sequences of shape (N, T, {len(self.bands)}[, p, p]) for bands "
                f"{self.bands}, got {tuple(x.shape)}"
            )
        n, t, _ = x.shape
        idx = self.step_index(doy, n, t)
        if idx is not None:
            x = np.take_along_axis(x, np.maximum(idx, 0)[:, :, None], axis=1)
            x[idx < 0] = np.nan  # a date this sequence lacks: gap-filled like a cloud
        x = np.where(np.isnan(x), self.fill[None], x)
        x = (x - self.mean) / self.std
        return x.reshape(n, -1).astype(np.float32, copy=False)

    def step_index(self, doy: np.ndarray | None, n: int, t: int) -> np.ndarray | None:
        """``(N, T)`` index of the input step standing in for each training step (-1: none).

        None when the input's steps are the training steps (no dates on either side and
        the same length).

        Raises:
            CropseqError: when a training date has no input date near it in more than half
                of the sequences, or when lengths differ and there are no dates to align by.
        """
        rows = None if doy is None else np.broadcast_to(np.asarray(doy, np.float64), (n, t))
        if self.step_doy is None or rows is None or not np.isfinite(rows).any():
            if t != self.n_steps:
                raise self._length_error(t)
            return None
        tol = step_tolerance(self.step_doy)
        if n and np.array_equal(rows, np.broadcast_to(rows[0], rows.shape), equal_nan=True):
            patterns, inverse = rows[:1], np.zeros(n, np.int64)  # one timeline (a stack chunk)
        else:
            patterns, inverse = np.unique(np.nan_to_num(rows, nan=-1.0), axis=0, return_inverse=True)
            patterns = np.where(patterns < 0, np.nan, patterns)
        maps = np.stack([_match_steps(self.step_doy, tol, row) for row in patterns])  # (P, K)
        idx = maps[np.asarray(inverse).reshape(-1)]
        lacking = (idx < 0).mean(axis=0) > 0.5 if n else np.zeros(self.n_steps, bool)
        if lacking.any():
            # Name the timeline of the most common input pattern.
            common = patterns[int(np.argmax(np.bincount(np.asarray(inverse).reshape(-1))))]
            raise self._timeline_error(lacking, common[np.isfinite(common)])
        return idx

    def check_timeline(self, dates: np.ndarray, where: str | os.PathLike[str] | None = None) -> None:
        """Refuse, before any work, a stack whose dates the forest cannot be applied to.

        Args:
            dates: ``(T,)`` datetime64 dates of the stack (after the season window).
            where: The stack, named in the multi-season error (the others name the model).

        Raises:
            CropseqError: a training date without a stack date near it, or a stack covering
                several seasons (two dates a year apart stand in for one training date).
        """
        t = np.asarray(dates)
        if not np.issubdtype(t.dtype, np.datetime64):  # a stack without dates: by position
            self.step_index(None, 1, len(t))
            return
        idx = pd.DatetimeIndex(t)
        doy = idx.day_of_year.to_numpy(np.float64)
        self.step_index(doy, 1, len(doy))
        if self.step_doy is None or len(idx) == 0 or (idx.max() - idx.min()).days < 183:
            return
        tol = step_tolerance(self.step_doy)
        near = _doy_distance(self.step_doy[:, None], doy[None, :]) <= tol[:, None]  # (K, T)
        for k in range(self.n_steps):
            cand = idx[near[k]]
            if len(cand) > 1 and (cand.max() - cand.min()).days >= 183:
                raise CropseqError(
                    f"the stack spans more than one season: {cand.min().date()} and {cand.max().date()} both "
                    f"stand for the training date {_days(self.step_doy[k : k + 1])} of {self._name()}; "
                    "select one season with --start/--end",
                    where,
                )

    def _name(self) -> str:
        return f"the RandomForest {self.path.name}" if self.path is not None else "the RandomForest"

    def _training_dates(self) -> str:
        years = sorted({str(d)[:4] for d in self.meta.get("step_dates") or [] if d})
        span = f" of {'-'.join(years[:: max(1, len(years) - 1)])}" if years else ""
        return f"{self.n_steps} dates{span} ({_days(self.step_doy)})" if self.step_doy is not None else ""

    def _timeline_error(self, lacking: np.ndarray, have: np.ndarray) -> CropseqError:
        assert self.step_doy is not None
        return CropseqError(
            f"{self._name()} was trained on {self._training_dates()} and its features are per date, "
            f"but the input has no date near {_days(self.step_doy[lacking])} (within {DATE_TOLERANCE_DAYS:g} days "
            f"and nearer than the neighbouring training dates; input: {len(have)} dates: {_days(have)}); "
            "give it the training dates "
            "(--start/--end selects one season of a longer stack) or retrain on this timeline",
            self.path,
        )

    def _length_error(self, t: int) -> CropseqError:
        if self.step_doy is None:
            what = f"{self.n_steps} steps without dates"
            fix = f"give it {self.n_steps} dates (--start/--end selects a season window) or retrain with dates"
        else:
            what = self._training_dates()
            fix = "give the input its dates (a date column, not t) or select the training season with --start/--end"
        return CropseqError(
            f"{self._name()} was trained on {what}, the input has {t} steps that cannot be aligned to them; {fix}",
            self.path,
        )

    # ---------------------------------------------------------------- predictor protocol
    def predict_proba(self, x: np.ndarray, doy: np.ndarray | None = None, batch_size: int = 4096) -> np.ndarray:
        """Class probabilities ``(N, K)`` for ``x`` ``(N, T, C, p, p)``.

        ``doy`` (``(N, T)`` or ``(T,)``) maps the input's dates onto the training dates
        (see the module docs); None aligns by position.
        """
        return self._proba(self.model, x, doy, batch_size)

    def _proba(self, model: Any, x: np.ndarray, doy: np.ndarray | None, batch_size: int) -> np.ndarray:
        n = int(np.shape(x)[0])
        k = len(self.classes)
        out = np.zeros((n, k), dtype=np.float32)
        # Classes absent from training have no column in sklearn's output: scatter.
        cols = np.asarray(model.classes_, dtype=np.int64)
        rows = None if doy is None else np.asarray(doy, dtype=np.float32)
        per_row = rows is not None and rows.ndim == 2
        step = max(1, int(batch_size))
        for s in range(0, n, step):
            d = rows[s : s + step] if per_row else rows  # type: ignore[index]
            f = self.features(np.asarray(x[s : s + step]), d)
            out[s : s + step, cols] = model.predict_proba(f)
        return out

    def _single_job_model(self) -> Any:
        """The forest set to one job.

        Image chunks run in parallel already (Dask threads or worker processes), and joblib
        inside a daemonic Dask worker warns on every call.
        """
        if self._chunk_model is None:
            import copy

            m = copy.copy(self.model)  # shallow: shares the fitted trees
            m.n_jobs = 1
            self._chunk_model = m
        return self._chunk_model

    def predict_image(self, image: np.ndarray, doy: np.ndarray | None = None, mask: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities ``(K, H, W)`` for an image chunk ``(T, C, H, W)`` (no halo: p = 1).

        ``doy`` (``(T,)``) maps the chunk's dates onto the training dates. ``mask``
        (``(H, W)`` bool), when given, restricts the forest to those pixels; the others
        get NaN. The forest runs single-threaded here (chunks are the unit of parallelism).
        """
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 4:
            raise CropseqError(f"expected an image chunk (T, C, H, W), got shape {image.shape}")
        t, c, h, w = image.shape
        seq = image.reshape(t, c, h * w).transpose(2, 0, 1)  # (H*W, T, C)
        model = self._single_job_model()
        if mask is None:
            proba = self._proba(model, seq, doy, 65536)
            return proba.T.reshape(len(self.classes), h, w)
        keep = np.asarray(mask, dtype=bool).reshape(-1)
        if keep.shape != (h * w,):
            raise CropseqError(f"mask must have the image shape {(h, w)}, got {np.shape(mask)}")
        out = np.full((len(self.classes), h * w), np.nan, np.float32)
        if keep.any():
            out[:, keep] = self._proba(model, seq[keep], doy, 65536).T
        return out.reshape(len(self.classes), h, w)

    # ---------------------------------------------------------------- files
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as a single skops file, atomically."""
        import skops.io as sio

        path = Path(path)
        meta = {
            **self.meta,
            "cropseq_version": _version(),
            "bands": self.bands,
            "classes": self.classes.to_records(),
            "n_steps": self.n_steps,
            "step_doy": None if self.step_doy is None else [float(d) for d in self.step_doy],
            "patch": 1,
            "feature_layout": "time-major flatten of (T, C) centre-pixel values",
        }
        obj = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "meta_json": json.dumps(meta),
            "model": self.model,
            "fill": self.fill,
            "mean": self.mean,
            "std": self.std,
        }
        with atomic_path(path) as tmp:
            sio.dump(obj, tmp, compression=zipfile.ZIP_DEFLATED)
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RandomForestPredictor:
        """Read a file written by :meth:`save` without executing pickled code.

        Raises:
            CropseqError: if the file is missing, not a skops file, holds types outside
                :data:`TRUSTED_TYPES`, or is not a cropseq RandomForest.
        """
        import skops.io as sio
        from skops.io.exceptions import UntrustedTypesFoundException

        path = Path(path)
        if not path.is_file():
            raise CropseqError("model file not found", path)
        try:
            untrusted = sio.get_untrusted_types(file=path)
            extra = sorted(set(untrusted) - set(TRUSTED_TYPES))
            if extra:
                raise CropseqError(f"refusing to load untrusted types {extra}", path)
            obj = sio.load(path, trusted=TRUSTED_TYPES)
        except CropseqError:
            raise
        except UntrustedTypesFoundException as e:
            raise CropseqError(f"refusing to load: {e}", path) from None
        except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError, json.JSONDecodeError) as e:
            raise CropseqError(f"not a readable skops model file ({type(e).__name__}: {e})", path) from None
        except (zlib.error, EOFError, AttributeError, IndexError) as e:
            # A damaged deflate stream or schema surfaces as these; skops has already refused
            # untrusted types by then, so nothing was executed.
            raise CropseqError(f"damaged skops model file ({type(e).__name__}: {e})", path) from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise CropseqError("not a cropseq RandomForest model (format key missing)", path)
        if int(obj.get("format_version", 0)) > FORMAT_VERSION:
            raise CropseqError(
                f"model format version {obj.get('format_version')} is newer than this cropseq "
                f"reads ({FORMAT_VERSION}); upgrade cropseq",
                path,
            )
        try:
            meta = json.loads(obj["meta_json"])
            classes = ClassTable.from_records(meta["classes"], str(path))
            predictor = cls(
                model=obj["model"],
                bands=list(meta["bands"]),
                classes=classes,
                n_steps=int(meta["n_steps"]),
                fill=obj["fill"],
                mean=obj["mean"],
                std=obj["std"],
                meta=meta,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CropseqError(f"damaged cropseq RandomForest model ({type(e).__name__}: {e})", path) from None
        predictor.path = path
        return predictor
