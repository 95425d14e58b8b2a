"""Loaders for the shared real data sets used by the accuracy benchmarks.

Both return :class:`~cropseq.sequences.SequenceArrays` (the form every model consumes) plus
the published splits, so the benchmark harness only ever sees one data layout.

- Mato Grosso (sits): ``converted/samples_mt_9classes.npz`` — 2115 x 23 x 6, already one
  agricultural year per sample.
- dtwSat: the MODIS stack (6 bands) sampled at the 603 field points, each over its own
  season ``[from, to)``; 23 dates per season, 22 for 2012/13, whose missing composite
  (2013-07-28) is kept as an all-NaN (missing) step so every season lines up date slot by
  date slot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cropseq.sequences import SequenceArrays

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CROPSEQ_SHARED_DATA", REPO.parent / "shared" / "data"))
MT_DIR = SHARED_DATA / "sits_matogrosso_mod13q1_samples"
DTW_DIR = SHARED_DATA / "dtwsat_lucc_mt"

DTW_BANDS = ["blue", "red", "nir", "mir", "evi", "ndvi"]


def _doy(dates: np.ndarray) -> np.ndarray:
    """Day of year (float32, NaN for NaT) of a datetime64 array of any shape."""
    flat = pd.DatetimeIndex(np.asarray(dates, dtype="datetime64[ns]").ravel())
    out = flat.dayofyear.to_numpy(dtype=np.float32, na_value=np.nan)
    return out.reshape(np.shape(dates))


def load_matogrosso(path: Path | None = None) -> SequenceArrays:
    """The 2115 Mato Grosso samples (bands ndvi, evi, nir, red, blue, mir), p = 1."""
    path = path or MT_DIR / "converted" / "samples_mt_9classes.npz"
    z = np.load(path, allow_pickle=False)
    x = z["X"].astype(np.float32)  # (N, T, C)
    dates = z["dates"].astype("datetime64[D]")
    n, t, _ = x.shape
    return SequenceArrays(
        x=x[..., None, None],
        doy=_doy(dates),
        present=np.ones((n, t), dtype=bool),
        bands=[str(b) for b in z["bands"]],
        labels=z["label"].astype(str),
        sample_ids=np.arange(n, dtype=np.int64),
        groups=np.arange(n).astype(str),
        dates=dates,
    )


@dataclass
class DtwSat:
    """dtwSat samples and the authors' cross-validation resamples."""

    arrays: SequenceArrays
    partitions: dict[int, np.ndarray]  # resample number (1-based) -> 0-based training rows
    twdtw_oa: dict[int, float]  # resample number -> the authors' stored TWDTW overall accuracy


def _read_stack(folder: Path) -> tuple[dict[str, np.ndarray], object, object]:
    import rasterio

    stack: dict[str, np.ndarray] = {}
    crs = transform = None
    for b in DTW_BANDS:
        with rasterio.open(folder / f"{b}.tif") as r:
            a = r.read().astype(np.float64)
            if r.nodata is not None:
                a[a == r.nodata] = np.nan
            a[a < -1e300] = np.nan  # -1.7e308 even where the tag is rounded
            stack[b] = a.astype(np.float32)
            crs, transform = r.crs, r.transform
    return stack, crs, transform


def load_dtwsat(folder: Path | None = None) -> DtwSat:
    """The 603 dtwSat field samples over their seasons, with the stored resamples.

    Read directly with rasterio + pyproj, the recipe of the data set's ``SOURCE.md``.
    """
    import rasterio.transform
    from pyproj import Transformer

    folder = folder or DTW_DIR
    stack, crs, transform = _read_stack(folder / "raw")
    timeline = pd.to_datetime((folder / "raw" / "timeline").read_text().split()).to_numpy().astype("datetime64[D]")
    s = pd.read_csv(folder / "raw" / "samples.csv")
    xs, ys = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(s.longitude.values, s.latitude.values)
    rows, cols = rasterio.transform.rowcol(transform, xs, ys)
    rows, cols = np.asarray(rows), np.asarray(cols)

    cube = np.stack([stack[b] for b in DTW_BANDS], axis=1)  # (D, C, H, W)
    seqs, dates_out = [], []
    for i, rec in s.iterrows():
        lo, hi = np.datetime64(rec["from"], "D"), np.datetime64(rec["to"], "D")
        idx = np.flatnonzero((timeline >= lo) & (timeline < hi))
        vals = cube[idx, :, rows[i], cols[i]]  # (t, C)
        d = timeline[idx]
        # Fill a missing composite slot (gap > 20 days) with an all-NaN step at the midpoint,
        # so step k is the same 16-day slot in every season.
        gaps = np.diff(d).astype(int)
        for g in np.flatnonzero(gaps > 20)[::-1]:
            mid = d[g] + np.timedelta64(int(gaps[g] // 2), "D")
            vals = np.insert(vals, g + 1, np.nan, axis=0)
            d = np.insert(d, g + 1, mid)
        seqs.append(vals)
        dates_out.append(d)
    t = max(len(v) for v in seqs)
    n, c = len(seqs), len(DTW_BANDS)
    x = np.full((n, t, c), np.nan, dtype=np.float32)
    dates = np.full((n, t), np.datetime64("NaT"), dtype="datetime64[D]")
    present = np.zeros((n, t), dtype=bool)
    for i, (v, d) in enumerate(zip(seqs, dates_out, strict=True)):
        x[i, : len(v)] = v
        dates[i, : len(d)] = d
        present[i, : len(d)] = True
    groups = np.array([f"r{r}c{c_}" for r, c_ in zip(rows, cols, strict=True)])
    arrays = SequenceArrays(
        x=x[..., None, None],
        doy=_doy(dates),
        present=present,
        bands=list(DTW_BANDS),
        labels=s["label"].astype(str).to_numpy(),
        sample_ids=np.arange(n, dtype=np.int64),
        groups=groups,
        dates=dates,
    )

    return _with_partitions(arrays, folder)


def load_dtwsat_package(folder: Path | None = None, workdir: Path | None = None) -> DtwSat:
    """The same samples through cropseq's own path — what a user runs.

    A ``stack.yaml`` pointing at the raw rasters → :func:`cropseq.io.open_stack` →
    :func:`cropseq.labels.read_labels` (CSV points with ``from``/``to`` seasons) →
    :func:`cropseq.samples.extract_samples` → :func:`cropseq.samples.table_to_arrays`.
    The ``doy`` raster is skipped (a reserved column name). Unlike :func:`load_dtwsat`, the
    2012/13 season is 22 steps padded at the end (no slot for the missing composite).
    """
    import tempfile

    from cropseq.io import open_stack
    from cropseq.labels import read_labels
    from cropseq.samples import extract_samples, table_to_arrays

    folder = folder or DTW_DIR
    raw = folder / "raw"
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        cube = open_stack(_dtwsat_manifest(raw, Path(tmp)))
        labels = read_labels(raw / "samples.csv", cube.rio.crs)
        table, report = extract_samples(cube, labels)
    if report.n_samples != 603:
        raise RuntimeError(f"expected 603 samples, extracted {report.summary()}")
    arrays = table_to_arrays(table, bands=DTW_BANDS)
    if not np.array_equal(arrays.sample_ids, np.arange(603)):
        raise RuntimeError("sample ids are not the CSV rows 0..602")
    return _with_partitions(arrays, folder)


def _dtwsat_manifest(raw: Path, folder: Path) -> Path:
    """A ``stack.yaml`` in ``folder`` naming the raw dtwSat rasters (the ``doy`` raster left out)."""
    import yaml

    manifest = folder / "stack.yaml"
    bands = {b: str(raw / f"{b}.tif") for b in DTW_BANDS}
    manifest.write_text(yaml.safe_dump({"layout": "per-band", "bands": bands, "dates": str(raw / "timeline")}))
    return manifest


def _with_partitions(arrays: SequenceArrays, folder: Path) -> DtwSat:
    """Attach the authors' resamples and TWDTW accuracies (rows = CSV rows)."""
    part = pd.read_csv(folder / "converted" / "cv_train_partitions.csv")
    part["k"] = part["resample"].str.extract(r"(\d+)$")[0].astype(int)
    partitions = {int(k): np.sort(g["train_row_1based"].to_numpy() - 1) for k, g in part.groupby("k")}
    oa = pd.read_csv(folder / "converted" / "cv_overall_accuracy.csv")
    oa["k"] = oa["resample"].str.extract(r"(\d+)$")[0].astype(int)
    twdtw = dict(zip(oa["k"].astype(int), oa["overall_accuracy"].astype(float), strict=True))
    return DtwSat(arrays=arrays, partitions=partitions, twdtw_oa=twdtw)


def dtwsat_scene_sequences(first_year: int = 2007, last_year: int = 2012, steps: int = 23) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel of the dtwSat stack over every agricultural season, unlabelled.

    Seasons ``[Sept. 1 y, Sept. 1 y+1)`` for ``y`` in ``first_year .. last_year`` (the stack
    covers 2007-09-14 .. 2013-08-29), read through cropseq (:func:`cropseq.io.open_stack`, as
    :func:`load_dtwsat_package`), padded at the end to ``steps`` dates with missing steps
    as :func:`load_dtwsat_package`'s samples are (2012/13 has 22 composites).

    Returns:
        ``x (N, steps, 6, 1, 1)`` float32 (NaN = missing) and ``doy (N, steps)`` float32
        (NaN on padding), ``N = 999 pixels x seasons``.
    """
    import tempfile

    from cropseq.inference.season import day_of_year, select_bands, select_season
    from cropseq.io import open_stack

    with tempfile.TemporaryDirectory() as tmp:
        cube = select_bands(open_stack(_dtwsat_manifest(DTW_DIR / "raw", Path(tmp))), DTW_BANDS).load()
    xs, doys = [], []
    for y in range(first_year, last_year + 1):
        season = select_season(cube, f"{y}-09-01", f"{y + 1}-09-01")
        v = np.asarray(season.values, np.float32)  # (T, C, H, W)
        t, c = v.shape[:2]
        x = np.full((v.shape[2] * v.shape[3], steps, c), np.nan, np.float32)
        x[:, :t] = v.transpose(2, 3, 0, 1).reshape(-1, t, c)
        doy = np.full((len(x), steps), np.nan, np.float32)
        doy[:, :t] = day_of_year(season)
        xs.append(x)
        doys.append(doy)
    return np.concatenate(xs)[..., None, None], np.concatenate(doys)
