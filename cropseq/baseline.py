"""RandomForest baseline on flattened sequences, saved with skops.

The baseline every deep model has to beat, applied through the same
:class:`~cropseq.predictor.Predictor` seam (evaluation, inference, benchmarks).

Features: the centre pixel of each sequence (``patch = 1``), flattened time-major into
``T * C`` values (step 0 bands, step 1 bands, ...), where ``T`` is the training sequence
length. Sequences of another length are aligned on the step index: a longer one keeps its
first ``T`` steps, a shorter one is padded with missing steps. That is the right rule for
season-aligned series (same composite schedule each year, as MODIS 16-day products); for
irregular acquisitions resample the cube to a common timeline first.

Missing values (NaN: clouds, nodata, padding) are replaced by the training mean of the
same step and band (the band's overall mean when a step has no valid training value), so
a gap looks like "an average date" rather than an extreme sentinel the trees would split on.

Optional per-band standardisation (``standardize=True``) is offered for parity with
published baselines; tree splits are invariant to it, so it changes nothing but the file.

File format (``*.skops``, loaded with an explicit list of trusted types, never pickle)::

    {"format": "cropseq-rf", "format_version": 1,
     "meta_json": str,              # cropseq_version, bands, classes, n_steps, options
     "model": RandomForestClassifier,   # trained on class indices 0..K-1
     "fill": float32 (T, C), "mean": float32 (C,), "std": float32 (C,)}
"""

from __future__ import annotations

import json
import os
import time
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from cropseq.atomic import atomic_path
from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.sequences import SequenceArrays

FORMAT = "cropseq-rf"
FORMAT_VERSION = 1

# Everything a cropseq RandomForest file may contain beyond skops' default-trusted
# builtins/numpy/sklearn estimators. Anything else in a file is refused before loading.
TRUSTED_TYPES: list[str] = ["sklearn.tree._tree.Tree"]


def _version() -> str:
    from cropseq import __version__

    return __version__


class RandomForestPredictor:
    """A trained RandomForest that implements the :class:`~cropseq.predictor.Predictor` protocol.

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

    def __repr__(self) -> str:
        return (
            f"RandomForestPredictor(bands={self.bands}, classes={self.classes.names}, "
            f"n_steps={self.n_steps}, n_estimators={getattr(self.model, 'n_estimators', '?')})"
        )

    # ---------------------------------------------------------------- features
    def features(self, x: np.ndarray) -> np.ndarray:
        """Flattened, gap-filled feature rows for sequences.

        Args:
            x: ``(N, T', C)`` centre-pixel values or ``(N, T', C, p, p)`` patches, raw, NaN
                where missing, bands in :attr:`bands` order.

        Returns:
            ``(N, T * C)`` float32.
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
        if t >= self.n_steps:
            x = x[:, : self.n_steps]
        else:
            pad = np.full((n, self.n_steps - t, x.shape[2]), np.nan, dtype=np.float32)
            x = np.concatenate([x, pad], axis=1)
        x = np.where(np.isnan(x), self.fill[None], x)
        x = (x - self.mean) / self.std
        return x.reshape(n, -1).astype(np.float32, copy=False)

    # ---------------------------------------------------------------- predictor protocol
    def predict_proba(self, x: np.ndarray, doy: np.ndarray | None = None, batch_size: int = 4096) -> np.ndarray:
        """Class probabilities ``(N, K)`` for ``x`` ``(N, T, C, p, p)`` (``doy`` is unused)."""
        n = int(np.shape(x)[0])
        k = len(self.classes)
        out = np.zeros((n, k), dtype=np.float32)
        # Classes absent from training have no column in sklearn's output: scatter.
        cols = np.asarray(self.model.classes_, dtype=np.int64)
        step = max(1, int(batch_size))
        for s in range(0, n, step):
            f = self.features(np.asarray(x[s : s + step]))
            out[s : s + step, cols] = self.model.predict_proba(f)
        return out

    def predict_image(self, image: np.ndarray, doy: np.ndarray | None = None, mask: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities ``(K, H, W)`` for an image chunk ``(T, C, H, W)`` (no halo: p = 1).

        ``mask`` (``(H, W)`` bool), when given, restricts the forest to those pixels; the
        others get NaN.
        """
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 4:
            raise CropseqError(f"expected an image chunk (T, C, H, W), got shape {image.shape}")
        t, c, h, w = image.shape
        seq = image.reshape(t, c, h * w).transpose(2, 0, 1)  # (H*W, T, C)
        if mask is None:
            proba = self.predict_proba(seq, None, batch_size=65536)
            return proba.T.reshape(len(self.classes), h, w)
        keep = np.asarray(mask, dtype=bool).reshape(-1)
        if keep.shape != (h * w,):
            raise CropseqError(f"mask must have the image shape {(h, w)}, got {np.shape(mask)}")
        out = np.full((len(self.classes), h * w), np.nan, np.float32)
        if keep.any():
            out[:, keep] = self.predict_proba(seq[keep], None, batch_size=65536).T
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
            return cls(
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


def _centre_steps(arrays: SequenceArrays) -> np.ndarray:
    c = arrays.patch // 2
    return np.asarray(arrays.x[:, :, :, c, c], dtype=np.float32)  # (N, T, C)


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
    n, t, c = seq.shape
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

    model = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs, **rf_options)
    counts = {name: int((labels == name).sum()) for name in classes.names}
    meta = {
        "training": {
            "n_samples": int(n),
            "class_counts": counts,
            "n_estimators": int(n_estimators),
            "seed": int(seed),
            "standardize": bool(standardize),
            "rf_options": {k: v for k, v in rf_options.items() if isinstance(v, str | int | float | bool | None)},
        }
    }
    predictor = RandomForestPredictor(model, list(train.bands), classes, t, fill, mean, std, meta)
    t0 = time.perf_counter()
    model.fit(predictor.features(seq), y)
    predictor.meta["training"]["fit_seconds"] = round(time.perf_counter() - t0, 3)
    if out is not None:
        predictor.save(out)
    return predictor

