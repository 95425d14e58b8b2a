"""A predictor test double and the cubes it classifies (inference, smoothing, uncertainty tests).

The double is a real classifier: nearest centroid on the mean of all valid observations in
each pixel's ``patch x patch`` neighbourhood, with softmax probabilities. It implements the
full Predictor protocol, including the halo contract of ``predict_image``, so halo and
chunking bugs change its output.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine

from cropseq import inference
from cropseq.classes import ClassTable

# Workers of a process-based LocalCluster unpickle the test double by value (this module
# is not importable there: tests/ is not on their sys.path).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

BANDS = ["B1", "B2", "B3"]
CLASSES = ClassTable.from_records(
    [
        {"code": 3, "name": "maize", "color": "#fdae61"},
        {"code": 7, "name": "wheat", "color": "#f6e8a6"},
        {"code": 9, "name": "forest", "color": "#1b7837"},
    ]
)
ORIGIN = (500000.0, 5000000.0)
RES = 10.0


# --------------------------------------------------------------------------- test double
class CentroidPredictor:
    """Nearest centroid on neighbourhood means of all valid observations (a real classifier).

    Feature of a pixel: per band, the mean of every finite value over all dates in its
    ``patch x patch`` neighbourhood. Probabilities: softmax of ``-distance^2 / scale``.
    """

    kind = "test"

    def __init__(self, bands: list[str], classes: ClassTable, centroids: np.ndarray, patch: int = 1, scale: float = 0.05) -> None:
        self.bands = list(bands)
        self.classes = classes
        self.centroids = np.asarray(centroids, np.float64)  # (K, C)
        self.patch = int(patch)
        self.scale = float(scale)
        self.calls = 0
        self._lock = threading.Lock()

    def _probs(self, feat: np.ndarray) -> np.ndarray:
        # feat (C, ...) -> probabilities (K, ...)
        d2 = ((feat[None] - self.centroids.reshape(self.centroids.shape + (1,) * (feat.ndim - 1))) ** 2).sum(axis=1)
        z = -d2 / self.scale
        z -= z.max(axis=0, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)

    def predict_image(self, image: np.ndarray, doy: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        with self._lock:
            self.calls += 1
        image = np.asarray(image, np.float64)
        assert image.ndim == 4 and image.shape[1] == len(self.bands), image.shape
        assert doy.shape == (image.shape[0],)
        finite = np.isfinite(image)
        s = np.where(finite, image, 0.0).sum(axis=0)  # (C, Hp, Wp)
        n = finite.sum(axis=0).astype(np.float64)
        p = self.patch
        if p > 1:
            s = np.lib.stride_tricks.sliding_window_view(s, (p, p), axis=(1, 2)).sum(axis=(-2, -1))
            n = np.lib.stride_tricks.sliding_window_view(n, (p, p), axis=(1, 2)).sum(axis=(-2, -1))
        with np.errstate(invalid="ignore", divide="ignore"):
            feat = s / n  # NaN where no observation
        return self._probs(feat)

    def predict_proba(self, x: np.ndarray, doy: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        x = np.asarray(x, np.float64)  # (N, T, C, p, p)
        finite = np.isfinite(x)
        with np.errstate(invalid="ignore", divide="ignore"):
            feat = np.where(finite, x, 0).sum(axis=(1, 3, 4)) / finite.sum(axis=(1, 3, 4))
        return self._probs(feat.T).T

    def save(self, path: Path) -> Path:
        np.savez(path, centroids=self.centroids, patch=self.patch, scale=self.scale, bands=np.array(self.bands))
        return path


class FailingPredictor(CentroidPredictor):
    """Raises on its ``fail_on``-th call to ``predict_image`` (a crash in the middle)."""

    def __init__(self, *a, fail_on: int = 3, **k) -> None:
        super().__init__(*a, **k)
        self.fail_on = fail_on

    def predict_image(self, image: np.ndarray, doy: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        with self._lock:
            n = self.calls + 1
        if n == self.fail_on:
            with self._lock:
                self.calls += 1
            raise RuntimeError("simulated model crash on chunk 3")
        return super().predict_image(image, doy, mask)


def load_centroid(path: Path, device: str) -> CentroidPredictor:
    """Loader of saved test doubles (what ``cached_predictor`` calls)."""
    z = np.load(path)
    return CentroidPredictor([str(b) for b in z["bands"]], CLASSES, z["centroids"], int(z["patch"]), float(z["scale"]))


def load_slow(path: Path, device: str) -> CentroidPredictor:
    """A predictor that takes 0.2 s per chunk, so a worker can be killed mid-run."""
    import time

    pred = load_centroid(path, device)
    orig = pred.predict_image

    def predict_image(image: np.ndarray, doy: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        time.sleep(0.2)
        return orig(image, doy, mask)

    pred.predict_image = predict_image  # type: ignore[method-assign]
    return pred


_FLAKY_SEEN: set[int] = set()


def load_flaky(path: Path, device: str) -> CentroidPredictor:
    """A predictor whose first call in this process fails (a transient worker error)."""
    pred = load_centroid(path, device)
    orig = pred.predict_image

    def predict_image(image: np.ndarray, doy: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        if id(pred) not in _FLAKY_SEEN:
            _FLAKY_SEEN.add(id(pred))
            raise RuntimeError("transient failure")
        return orig(image, doy, mask)

    pred.predict_image = predict_image  # type: ignore[method-assign]
    return pred


# --------------------------------------------------------------------------- cubes
PROFILES = np.array(
    [  # class x band: mean level; each class has a distinct temporal shape too
        [0.10, 0.30, 0.50],
        [0.40, 0.20, 0.10],
        [0.05, 0.05, 0.60],
    ]
)


def truth_map(ny: int, nx: int, seed: int = 0) -> np.ndarray:
    """Class index (0..2) per pixel: rectangular 'fields' of random classes."""
    rng = np.random.default_rng(seed)
    field = 8
    f = rng.integers(0, 3, size=(ny // field + 1, nx // field + 1))
    return np.kron(f, np.ones((field, field), int))[:ny, :nx]


def make_cube(
    ny: int = 40,
    nx: int = 36,
    n_dates: int = 6,
    bands: list[str] | None = None,
    seed: int = 0,
    nan_frac: float = 0.15,
    start: str = "2020-01-10",
    freq: str = "30D",
    dask_chunks: int | None = None,
) -> xr.DataArray:
    """A georeferenced cube with three classes of fields, noise and random cloud gaps."""
    rng = np.random.default_rng(seed)
    bands = bands or BANDS
    truth = truth_map(ny, nx, seed)
    base = PROFILES[truth][..., : len(bands)]  # (ny, nx, C)
    t = np.arange(n_dates)[:, None, None, None]
    season = 0.05 * np.sin(2 * np.pi * t / max(n_dates, 1))
    data = base.transpose(2, 0, 1)[None] + season + rng.normal(0, 0.04, (n_dates, len(bands), ny, nx))
    data = data.astype(np.float32)
    cloud = rng.random((n_dates, 1, ny, nx)) < nan_frac
    data = np.where(cloud, np.nan, data).astype(np.float32)
    times = pd.date_range(start, periods=n_dates, freq=freq)
    y = ORIGIN[1] - (np.arange(ny) + 0.5) * RES
    x = ORIGIN[0] + (np.arange(nx) + 0.5) * RES
    cube = xr.DataArray(
        data,
        dims=("time", "band", "y", "x"),
        coords={"time": times.values, "band": bands, "y": y, "x": x},
        name="reflectance",
        attrs={"source": "tests/stack.yaml"},
    )
    cube = cube.rio.write_crs("EPSG:32633").rio.write_transform(Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1]))
    if dask_chunks:
        cube = cube.chunk({"time": -1, "band": -1, "y": dask_chunks, "x": dask_chunks})
    return cube


def make_predictor(patch: int = 1, bands: list[str] | None = None) -> CentroidPredictor:
    bands = bands or BANDS
    idx = [BANDS.index(b) for b in bands]
    return CentroidPredictor(bands, CLASSES, PROFILES[:, idx], patch=patch)


def whole_array_probs(cube: xr.DataArray, pred: CentroidPredictor, min_valid: int) -> np.ndarray:
    """Reference: the predictor applied once to the whole NaN-padded image, then masked."""
    img = np.asarray(cube.sel(band=pred.bands).values, np.float32)
    h = pred.patch // 2
    padded = np.pad(img, ((0, 0), (0, 0), (h, h), (h, h)), constant_values=np.nan)
    probs = pred.predict_image(padded, inference.day_of_year(cube))
    ok = np.isfinite(img).all(axis=1).sum(axis=0) >= min_valid
    return np.where(ok[None], probs, np.nan)
