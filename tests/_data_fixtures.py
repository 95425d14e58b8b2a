"""Tiny seeded data made by code: samples tables, rasters, stack manifests, labels.

Importable from any test module (pytest puts ``tests/`` on ``sys.path``)::

    from _data_fixtures import make_samples_table, write_stack

Everything is a few KB and takes milliseconds; values are seeded so tests are repeatable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

#: Grid of the tiny test scene: UTM 33N, 10 m pixels, top-left corner.
TINY_CRS = "EPSG:32633"
TINY_ORIGIN = (500000.0, 5000000.0)
TINY_RES = 10.0


def make_samples_table(
    n_samples: int = 6,
    n_steps: int = 4,
    bands: Sequence[str] = ("blue", "nir"),
    patch: int = 1,
    seed: int = 0,
    dates: bool = True,
    classes: Sequence[str] = ("maize", "wheat"),
    ragged: bool = False,
) -> pd.DataFrame:
    """A valid long-form samples table.

    Args:
        n_samples: Number of samples (ids 10, 11, ...: not 0-based, to catch index mix-ups).
        n_steps: Steps per sample (the last sample has one fewer when ``ragged``).
        bands: Band names.
        patch: Patch size; ``> 1`` adds ``{band}@r{i}c{j}`` columns (centre = band column).
        seed: Random seed.
        dates: Use a ``date`` column (True) or a ``t`` column (False).
        classes: Labels, assigned round-robin.
        ragged: Make the last sample one step shorter (legal: sequences may differ in length).
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    base = np.datetime64("2021-03-01")
    for k in range(n_samples):
        steps = n_steps - 1 if (ragged and k == n_samples - 1) else n_steps
        for s in range(steps):
            r: dict[str, Any] = {"sample_id": 10 + k, "label": classes[k % len(classes)], "group": f"g{k // 2}"}
            if dates:
                r["date"] = str(base + np.timedelta64(16 * s, "D"))
            else:
                r["t"] = s
            for bi, b in enumerate(bands):
                if patch > 1:
                    vals = rng.random((patch, patch)).round(4)
                    for i in range(patch):
                        for j in range(patch):
                            r[f"{b}@r{i}c{j}"] = float(vals[i, j])
                    r[b] = float(vals[patch // 2, patch // 2])
                else:
                    r[b] = float(round(rng.random() + bi, 4))
            rows.append(r)
    df = pd.DataFrame(rows)
    # Band (centre) columns before the patch columns, as extraction writes them.
    front = [c for c in df.columns if "@" not in c]
    return df[front + [c for c in df.columns if "@" in c]]


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str = TINY_CRS,
    origin: tuple[float, float] = TINY_ORIGIN,
    res: float = TINY_RES,
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
    driver: str = "GTiff",
) -> Path:
    """Write ``data`` ``(count, H, W)`` as a raster on the tiny grid."""
    import rasterio
    from affine import Affine

    count, h, w = data.shape
    with rasterio.open(
        path, "w", driver=driver, height=h, width=w, count=count, dtype=data.dtype.name,
        crs=crs, transform=Affine(res, 0.0, origin[0], 0.0, -res, origin[1]), nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(data)
        for i, d in enumerate(descriptions or []):
            dst.set_band_description(i + 1, d)
    return path


def tiny_dates(n: int = 5) -> list[str]:
    """``n`` ISO dates 10 days apart, starting 2021-04-01."""
    return [str(np.datetime64("2021-04-01") + np.timedelta64(10 * i, "D")) for i in range(n)]


def write_stack(
    root: Path,
    layout: str = "per-band",
    *,
    bands: Sequence[str] = ("red", "nir"),
    n_dates: int = 5,
    shape: tuple[int, int] = (7, 9),
    seed: int = 0,
    masks: bool = False,
    nodata: float | None = None,
    extra: dict[str, Any] | None = None,
    shuffle_dates: bool = False,
) -> tuple[Path, np.ndarray]:
    """Write a tiny stack (rasters + ``stack.yaml``) under ``root``.

    Values are ``band_index * 1000 + date_index * 10 + small noise`` (float32), so tests can
    tell which band/date a value came from.

    Args:
        root: Folder to write into (created).
        layout: ``per-band`` (one multi-date file per band, dates in a ``timeline`` file) or
            ``per-date`` (one multi-band file per date, dates from the file names).
        bands: Band names.
        n_dates: Number of dates.
        shape: ``(H, W)``.
        seed: Random seed.
        masks: Also write cloud masks (non-zero = cloud; about a quarter cloudy).
        nodata: Value written into pixel (0, 0) of every band/date and declared in the manifest.
        extra: Additional manifest keys (override the generated ones).
        shuffle_dates: Store dates out of order (the cube must come out sorted).

    Returns:
        ``(manifest path, expected cube values (T, C, H, W) float32 in date order with NaN
        where masked or nodata)``.
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = shape
    t, c = n_dates, len(bands)
    vals = (
        np.arange(c)[None, :, None, None] * 1000.0
        + np.arange(t)[:, None, None, None] * 10.0
        + rng.random((t, c, h, w)).round(3)
    ).astype(np.float32)
    mask = (rng.random((t, h, w)) < 0.25).astype(np.uint8) if masks else np.zeros((t, h, w), np.uint8)
    if nodata is not None:
        vals[:, :, 0, 0] = nodata
    dates = tiny_dates(t)
    order = list(range(t))
    if shuffle_dates:
        order = list(rng.permutation(t))
    manifest: dict[str, Any] = {"layout": layout}
    if layout == "per-band":
        manifest["bands"] = {}
        for bi, b in enumerate(bands):
            write_raster(root / f"{b}.tif", vals[order, bi])
            manifest["bands"][b] = f"{b}.tif"
        (root / "timeline").write_text("\n".join(dates[i] for i in order) + "\n")
        manifest["dates"] = "timeline"
        if masks:
            write_raster(root / "clouds.tif", mask[order])
            manifest["masks"] = "clouds.tif"
    else:
        manifest["bands"] = list(bands)
        for ti in order:
            stamp = dates[ti].replace("-", "")
            write_raster(root / f"S2_{stamp}.tif", vals[ti])
            if masks:
                write_raster(root / f"MASK_{stamp}.tif", mask[ti][None])
        manifest["files"] = "S2_*.tif"
        manifest["date_pattern"] = r"S2_(\d{8})"
        if masks:
            manifest["masks"] = "MASK_*.tif"
    if nodata is not None:
        manifest["nodata"] = nodata
    manifest.update(extra or {})
    path = root / "stack.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    expected = vals.copy()
    if nodata is not None:
        expected[:, :, 0, 0] = np.nan
    expected[np.broadcast_to(mask[:, None] != 0, expected.shape)] = np.nan
    return path, expected


def write_points_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write label points as CSV (columns from the dicts)."""
    pd.DataFrame(list(rows)).to_csv(path, index=False)
    return path


def pixel_centre(row: int, col: int) -> tuple[float, float]:
    """Map coordinates of the centre of pixel (row, col) on the tiny grid."""
    return TINY_ORIGIN[0] + (col + 0.5) * TINY_RES, TINY_ORIGIN[1] - (row + 0.5) * TINY_RES
