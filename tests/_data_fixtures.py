"""Tiny seeded data made by code: samples tables, rasters, stack manifests, labels.

Importable from any test module, in any folder (pyproject's ``pythonpath`` puts ``tests/`` on ``sys.path``)::

    from _data_fixtures import make_samples_table, write_stack

Everything is a few KB and takes milliseconds; values are seeded so tests are repeatable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

if TYPE_CHECKING:
    from cropseq.sequences import SequenceArrays

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


def dtwsat_manifest(shared_data: Path, out: Path) -> Path:
    """A manifest for the dtwSat MODIS stack (absolute paths), written to ``out``."""
    raw = shared_data / "dtwsat_lucc_mt" / "raw"
    if not raw.is_dir():
        import pytest

        pytest.skip("dtwSat data absent")
    bands = ["blue", "red", "nir", "mir", "evi", "ndvi", "doy"]
    m = {
        "layout": "per-band",
        "bands": {b: str(raw / f"{b}.tif") for b in bands},
        "dates": str(raw / "timeline"),
        "nodata": -1.7e308,
    }
    out.write_text(yaml.safe_dump(m, sort_keys=False))
    return out


# ----------------------------------------------------------------------------- CLI contract
#
# Helpers for the bad-input, fuzz and untrusted-file tests: run ``cropseq.cli.main`` in
# process and check the user-error contract (exit 2, one line on stderr naming the file,
# no traceback, no output left behind).

#: Warning categories Python hides by default: a user never sees them on the console.
_HIDDEN_WARNINGS: tuple[type[Warning], ...] = (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                                               ResourceWarning)  # fmt: skip


class CliResult:
    """What one in-process ``cropseq`` run did."""

    def __init__(self, argv: list[str], rc: int, out: str, err: str, warnings: list[str]) -> None:
        self.argv, self.rc, self.out, self.err, self.warnings = argv, rc, out, err, warnings

    def __repr__(self) -> str:
        return (f"cropseq {' '.join(self.argv)}\n  rc={self.rc}\n  stderr={self.err!r}\n"
                f"  warnings={self.warnings!r}\n  stdout={self.out[-500:]!r}")  # fmt: skip

    @property
    def stderr_lines(self) -> list[str]:
        """Lines on stderr plus the warnings Python would have printed there."""
        return [ln for ln in self.err.splitlines() if ln.strip()] + self.warnings


def run_cli(argv: Sequence[Any]) -> CliResult:
    """Run ``cropseq ARGV`` in process; capture stdout, stderr and user-visible warnings.

    Exceptions other than the ones ``main`` handles propagate (they are crashes: a user
    would see a traceback).
    """
    import contextlib
    import io
    import warnings

    from cropseq.cli import main

    args = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        warnings.simplefilter("always")
        rc = main(args)
    shown = [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, _HIDDEN_WARNINGS)]
    return CliResult(args, rc, out.getvalue(), err.getvalue(), shown)


def temp_leftovers(*folders: Path) -> list[Path]:
    """Temporary siblings (``.name.tmp-xxxx.ext``) left in ``folders`` by atomic writes."""
    found: list[Path] = []
    for f in folders:
        if Path(f).is_dir():
            found += [p for p in Path(f).iterdir() if ".tmp-" in p.name]
    return sorted(found)


def assert_user_error(res: CliResult, *needles: str, outputs: Sequence[Path] = ()) -> str:
    """Check the user-error contract and return the message.

    Exit code 2; exactly one line on stderr (no warnings either), no traceback; every
    ``needle`` in the message (case-sensitive); none of ``outputs`` exists and no temporary
    sibling is left beside them.
    """
    lines = res.stderr_lines
    assert res.rc == 2, res
    assert "Traceback" not in res.err, res
    assert len(lines) == 1, res
    msg = lines[0]
    assert "error:" in msg, res
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    for o in outputs:
        assert not Path(o).exists(), f"{o} left behind: {res}"
    assert not temp_leftovers(*{Path(o).parent for o in outputs}), res
    return msg


def write_grid_points(path: Path, shape: tuple[int, int] = (8, 8), classes: Sequence[str] = ("maize", "wheat"),
                      step: int = 1) -> Path:  # fmt: skip
    """CSV label points at the centres of every ``step``-th pixel of the tiny grid."""
    rows = []
    for r in range(0, shape[0], step):
        for c in range(0, shape[1], step):
            x, y = pixel_centre(r, c)
            rows.append({"x": x, "y": y, "label": classes[(r // 2 + c // 2) % len(classes)]})
    return write_points_csv(path, rows)


#: A deep model small enough to train in a second on CPU (the real ``train`` code path).
TINY_TRAIN_CONFIG = {
    "hidden_size": 4, "num_layers": 1, "encoder_width": 4, "encoder_dim": 4, "epochs": 1,
    "batch_size": 64, "device": "cpu", "threads": 1, "plot": "",
}  # fmt: skip

_MODEL_CACHE: dict[str, dict[str, Path]] = {}


def tiny_models(root_factory: Any) -> dict[str, Path]:
    """A tiny stack, its samples table and two models trained on it, built once per session.

    Args:
        root_factory: pytest's ``tmp_path_factory``.

    Returns:
        ``stack`` (8x8 px, 4 dates, bands red/nir), ``labels`` (CSV points), ``samples``
        (CSV table), ``classes`` (its class YAML), ``rf`` (a 5-tree RandomForest ``.skops``,
        via the API), ``deep`` (a tiny LSTM ``.pt``, via ``cropseq train``), ``config``
        (the tiny training YAML).
    """
    if "models" in _MODEL_CACHE and _MODEL_CACHE["models"]["deep"].is_file():
        return _MODEL_CACHE["models"]
    from cropseq.baseline import train_random_forest
    from cropseq.samples import read_samples, table_to_arrays

    root = Path(root_factory.mktemp("tiny_models"))
    stack, _ = write_stack(root / "stack", shape=(8, 8), n_dates=4, bands=("red", "nir"))
    labels = write_grid_points(root / "points.csv")
    samples = root / "samples.csv"
    res = run_cli(["samples", "--stack", stack, "--labels", labels, "--out", samples])
    assert res.rc == 0, res
    rf = root / "rf.skops"
    train_random_forest(table_to_arrays(read_samples(samples)), rf, n_estimators=5, n_jobs=1)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_TRAIN_CONFIG))
    deep = root / "deep.pt"
    res = run_cli(["train", "--samples", samples, "--out", deep, "--config", config, "-q"])
    assert res.rc == 0, res
    _MODEL_CACHE["models"] = {
        "root": root, "stack": stack, "labels": labels, "samples": samples,
        "classes": root / "samples.classes.yaml", "rf": rf, "deep": deep, "config": config,
    }  # fmt: skip
    return _MODEL_CACHE["models"]


def small_deep_scene(tmp_path_factory: Any) -> dict[str, Path]:
    """A 32 px simulated scene (8 dates) and a small patch-3 BiGRU trained on its truth pixels (once per session)."""
    if "scene" in _MODEL_CACHE:
        return _MODEL_CACHE["scene"]
    import rasterio

    from cropseq.classes import ClassTable
    from cropseq.inference import day_of_year
    from cropseq.io import open_stack
    from cropseq.sequences import SequenceArrays
    from cropseq.simulate import simulate_scene
    from cropseq.training import TrainConfig, train_model

    root = tmp_path_factory.mktemp("engines")
    simulate_scene(root / "scene", size=32, n_dates=8, seed=3)
    stack = root / "scene" / "stack.yaml"
    cube = open_stack(stack).load()
    with rasterio.open(root / "scene" / "truth.tif") as src:
        truth = src.read(1)
    rows, cols = np.nonzero(truth)
    img = np.pad(cube.values, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=np.nan)
    x = np.stack([img[:, :, r : r + 3, c : c + 3] for r, c in zip(rows, cols)]).astype(np.float32)
    classes = ClassTable.from_yaml(root / "scene" / "classes.yaml")
    names = {c.code: c.name for c in classes.classes}
    arrays = SequenceArrays(
        x=x, doy=np.broadcast_to(day_of_year(cube), (len(rows), cube.sizes["time"])).copy(),
        present=np.ones((len(rows), cube.sizes["time"]), bool), bands=[str(b) for b in cube["band"].values],
        labels=np.array([names[int(v)] for v in truth[rows, cols]]),
    )  # fmt: skip
    cfg = TrainConfig(hidden_size=16, num_layers=1, encoder_width=16, encoder_dim=16, epochs=8, device="cpu",
                      threads=1, plot="", val_fraction=0.0, seed=0)  # fmt: skip
    train_model(arrays, None, cfg, root / "model.pt", classes=classes, progress=False)
    _MODEL_CACHE["scene"] = {"root": root, "stack": stack, "model": root / "model.pt", "truth": root / "scene" / "truth.tif"}
    return _MODEL_CACHE["scene"]


# Toy sequences for the training, checkpoint and preset tests (no raster involved).


def toy_sequences(n: int = 48, t: int = 10, p: int = 1, seed: int = 0, n_classes: int = 3) -> SequenceArrays:
    """Separable toy classes: each class has its own seasonal peak date; some clouds."""
    from cropseq.sequences import SequenceArrays

    rng = np.random.default_rng(seed)
    labels = np.array([f"crop{i % n_classes}" for i in range(n)])
    steps = np.arange(t)
    x = np.empty((n, t, 2, p, p), np.float32)
    for i in range(n):
        k = i % n_classes
        peak = 2 + 3 * k
        ndvi = 0.2 + 0.6 * np.exp(-0.5 * ((steps - peak) / 1.2) ** 2)
        x[i, :, 0] = (ndvi + rng.normal(0, 0.05, t))[:, None, None]
        x[i, :, 1] = (0.3 - 0.2 * ndvi + rng.normal(0, 0.03, t))[:, None, None] * (1 + 0.01 * rng.normal(size=(p, p)))
    x[rng.random((n, t)) < 0.1] = np.nan  # clouds
    doy = np.tile((steps * 30 + 10).astype(np.float32), (n, 1))
    groups = np.array([f"g{i // 2}" for i in range(n)])  # pairs of pixels share a field
    return SequenceArrays(x=x, doy=doy, present=np.ones((n, t), bool), bands=["ndvi", "swir"],
                          labels=labels, groups=groups)


#: Training options that make ``train_model`` on :func:`toy_sequences` take about a second.
FAST = dict(hidden_size=16, num_layers=1, encoder_width=16, encoder_dim=16, batch_size=16, lr=3e-2,
            threads=1, small_data=10_000, doy_shift=0.0, date_dropout=0.0, plot="")


def write_table(path: Path, n: int = 30, seed: int = 0) -> Path:
    """The toy sequences as a long-form samples table (``date`` column, two bands)."""
    d = toy_sequences(n=n, seed=seed)
    t = d.x.shape[1]
    dates = pd.date_range("2021-01-10", periods=t, freq="30D").strftime("%Y-%m-%d")
    df = pd.DataFrame({
        "sample_id": np.repeat(np.arange(n), t),
        "label": np.repeat(d.labels, t),
        "date": np.tile(dates, n),
        "ndvi": d.x[:, :, 0, 0, 0].ravel(),
        "swir": d.x[:, :, 1, 0, 0].ravel(),
        "group": np.repeat(d.groups, t),
    })
    df.to_csv(path, index=False)
    return path
