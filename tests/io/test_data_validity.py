"""Issue 12 items 8, 9 and 12 (part): inputs that are not quite right."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from _data_fixtures import run_cli, tiny_dates, write_raster, write_stack

from cropseq.io import open_stack


def test_float_rasters_with_nan_nodata_agree(tmp_path: Path) -> None:
    """Item 9: NaN equals NaN when files' nodata values are compared."""
    for k, d in enumerate(tiny_dates(3)):
        data = np.full((2, 4, 5), 0.1 * (k + 1), np.float32)
        data[:, 0, 0] = np.nan
        write_raster(tmp_path / f"S2_{d.replace('-', '')}.tif", data, nodata=np.nan)
    manifest = {"layout": "per-date", "bands": ["red", "nir"], "files": "S2_*.tif", "date_pattern": r"S2_(\d{8})"}
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump(manifest))
    cube = open_stack(tmp_path / "stack.yaml").values
    assert np.isnan(cube[:, :, 0, 0]).all() and np.isfinite(cube[:, :, 1:]).all()


def _filled_stack(root: Path, extra: dict | None = None) -> Path:
    root.mkdir()
    a = (np.random.default_rng(0).random((5, 40, 40)) * 3000).astype("uint16")
    a[:, :, :15] = 65535  # gaps filled with the type's maximum, no nodata tag
    write_raster(root / "red.tif", a)
    manifest = {"layout": "per-band", "bands": {"red": "red.tif"}, "dates": tiny_dates(5), **(extra or {})}
    (root / "stack.yaml").write_text(yaml.safe_dump(manifest))
    return root / "stack.yaml"


def test_integer_fill_values_without_nodata_are_warned_about_once(tmp_path: Path) -> None:
    """Item 8: one line naming the band, the value, the share and the key to set."""
    res = run_cli(["inspect", _filled_stack(tmp_path / "a"), "--json"])
    assert res.rc == 0
    # once in all: a Python warning when the stack opens, or inspect's fuller value-statistics
    # line (which then replaces it), never both
    printed = [ln for ln in res.err.splitlines() if ln.startswith("cropseq: warning:")]
    fill = [w for w in [*res.warnings, *printed] if "65535" in w]
    assert len(fill) == 1, res
    assert "band red" in fill[0] and "maximum of uint16" in fill[0] and "nodata: {red: 65535}" in fill[0]
    assert "%" in fill[0] and "\n" not in fill[0]
    for extra in ({"nodata": 65535}, {"valid_range": [0, 10000]}):
        res = run_cli(["inspect", _filled_stack(tmp_path / str(len(extra) + len(str(extra))), extra), "--json"])
        assert res.rc == 0 and not res.warnings, res


@pytest.mark.e2e
def test_opening_warnings_are_reemitted_once_per_problem(tmp_path: Path) -> None:
    """cropseq.io.rewarn_opening: a band's fill-value warning at open gives way to inspect's
    fuller line on the same band; any other warning comes through as it was."""
    import warnings

    from cropseq.io import FillValueWarning, rewarn_opening

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        open_stack(_filled_stack(tmp_path / "a"))
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert [type(w.message) for w in caught] == [FillValueWarning, UserWarning] and caught[0].message.band == "red"
    for lines, shown in (
        (["band red: 37.50 % of sampled valid values sit at 65535 ..."], ["something else"]),
        (["band nir: 1.00 % of sampled valid values sit at 65535 ..."], [str(caught[0].message), "something else"]),
    ):
        with warnings.catch_warnings(record=True) as again:
            warnings.simplefilter("always")
            rewarn_opening(caught, lines)
        assert [str(w.message) for w in again] == shown


def test_fill_warning_is_one_line_in_a_terminal(tmp_path: Path) -> None:
    stack = _filled_stack(tmp_path / "a")
    res = subprocess.run([sys.executable, "-m", "cropseq", "inspect", str(stack)], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 0 and len(lines) == 1 and lines[0].startswith("cropseq: warning: "), res.stderr


def _forest(tmp_path: Path) -> Path:
    from cropseq.baseline import train_random_forest
    from cropseq.sequences import SequenceArrays

    rng = np.random.default_rng(0)
    days = np.array(tiny_dates(5), dtype="datetime64[D]")
    doy = (days - days.astype("datetime64[Y]")).astype(np.float32) + 1
    arrays = SequenceArrays(
        x=(rng.random((30, 5, 2, 1, 1)) * 0.3).astype(np.float32), doy=np.tile(doy, (30, 1)),
        present=np.ones((30, 5), bool), bands=["red", "nir"], labels=np.array(["a", "b", "c"] * 10),
    )  # fmt: skip
    path = tmp_path / "rf.skops"
    train_random_forest(arrays, path, n_estimators=5, n_jobs=-1)
    return path


@pytest.mark.e2e
def test_values_on_another_scale_than_training_are_warned_about(tmp_path: Path) -> None:
    """Item 8: raw DN (x 10000) against a model trained on reflectance, table and stack."""
    from _data_fixtures import make_samples_table

    model = _forest(tmp_path)
    df = make_samples_table(n_samples=6, n_steps=5, bands=("red", "nir"), classes=("a", "b"))
    df["date"] = np.tile(tiny_dates(5), 6)
    df[["red", "nir"]] = (df[["red", "nir"]] * 0.3).round(4)
    ok, dn = tmp_path / "ok.csv", tmp_path / "dn.csv"
    df.to_csv(ok, index=False)
    df.assign(red=(df["red"] * 10000).round(), nir=(df["nir"] * 10000).round()).to_csv(dn, index=False)
    res = run_cli(["evaluate", "--model", model, "--samples", ok, "--out", tmp_path / "m1.json"])
    assert res.rc == 0 and not [w for w in res.warnings if "scale" in w], res
    res = run_cli(["evaluate", "--model", model, "--samples", dn, "--out", tmp_path / "m2.json"])
    scale = [w for w in res.warnings if "scale factor" in w]
    assert res.rc == 0 and len(scale) == 2, res
    assert "dn.csv" in scale[0] and "band red" in scale[0] and "x10000" in scale[0] and "scale: 0.0001" in scale[0]
    # One band off, the other right: the warning names that band only (bands, not dates).
    one = tmp_path / "one.csv"
    df.assign(nir=(df["nir"] * 10000).round()).to_csv(one, index=False)
    res = run_cli(["evaluate", "--model", model, "--samples", one, "--out", tmp_path / "m3.json"])
    scale = [w for w in res.warnings if "scale factor" in w]
    assert res.rc == 0 and len(scale) == 1 and "band nir" in scale[0], res
    # A stack of the same kind (values ~ 0..1000 against a model trained on 0..0.3).
    stack, _ = write_stack(tmp_path / "s", "per-date", n_dates=5)
    res = run_cli(["predict", "--model", model, "--stack", stack, "--out", tmp_path / "map.tif", "--workers", "0", "-q"])
    assert res.rc == 0 and any("band nir" in w and "scale factor" in w for w in res.warnings), res


@pytest.mark.e2e
def test_quiet_predict_on_a_cluster_shows_no_sklearn_n_jobs_warnings(tmp_path: Path) -> None:
    """Item 12 (part): a forest saved with n_jobs=-1 runs one job per chunk in Dask workers."""
    model = _forest(tmp_path)
    stack, _ = write_stack(tmp_path / "s", "per-date", n_dates=5, shape=(40, 40))
    cmd = [sys.executable, "-m", "cropseq", "predict", "--model", str(model), "--stack", str(stack),
           "--out", str(tmp_path / "map.tif"), "--workers", "1", "--chunk", "16", "-q"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "n_jobs" not in res.stderr and "Warning" not in res.stderr, res.stderr
