"""Regular time grid (issue 13 item 7): ``composite: {period, method}`` in stack.yaml.

Values are checked against an independent numpy computation on the fixture's known
values (bins computed here in plain Python from day offsets).
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from _data_fixtures import (
    TINY_TRAIN_CONFIG,
    assert_user_error,
    run_cli,
    write_grid_points,
    write_stack,
)

#: Uneven acquisition dates: with 10-day bins from 2021-04-01, bins 2 and 4 hold no date.
DATES = ["2021-04-01", "2021-04-03", "2021-04-08", "2021-04-25", "2021-05-20", "2021-05-22"]
BIN_STARTS = ["2021-04-01", "2021-04-11", "2021-04-21", "2021-05-01", "2021-05-11", "2021-05-21"]


def _stack(root: Path, composite: dict, **kw) -> tuple[Path, np.ndarray]:
    """The per-band tiny stack on DATES, with clouds (NaN) and a nodata pixel."""
    return write_stack(
        root, "per-band", n_dates=len(DATES), masks=True, nodata=-1.0, shape=(6, 7),
        extra={"dates": DATES, "composite": composite}, **kw,
    )  # fmt: skip


def _bins(origin: str, days: int) -> list[int]:
    """Each of DATES's bin (-1 before origin), by plain date arithmetic."""
    o = dt.date.fromisoformat(origin)
    return [(dt.date.fromisoformat(d) - o).days // days if dt.date.fromisoformat(d) >= o else -1 for d in DATES]


def _expected(values: np.ndarray, bins: list[int], n_bins: int, reduce) -> np.ndarray:
    out = np.full((n_bins, *values.shape[1:]), np.nan, np.float32)
    for k in range(n_bins):
        idx = [t for t, b in enumerate(bins) if b == k]
        if idx:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out[k] = reduce(values[idx])
    return out


def _first_valid(obs: np.ndarray) -> np.ndarray:
    out = np.full(obs.shape[1:], np.nan, np.float32)
    for t in range(obs.shape[0] - 1, -1, -1):  # earliest valid wins
        out = np.where(np.isnan(obs[t]), out, obs[t])
    return out


def _max_ndvi(obs: np.ndarray) -> np.ndarray:
    red, nir = obs[:, 0].astype(np.float64), obs[:, 1].astype(np.float64)
    ndvi = np.where(np.isnan(obs).any(axis=1), -np.inf, (nir - red) / (nir + red))
    out = np.full(obs.shape[1:], np.nan, np.float32)
    for i in np.ndindex(obs.shape[2:]):
        column = ndvi[(slice(None), *i)]
        if np.isfinite(column).any():
            out[(slice(None), *i)] = obs[(int(np.argmax(column)), slice(None), *i)]
    return out


@pytest.mark.parametrize(
    ("method", "reduce"),
    [("median", lambda o: np.nanmedian(o, axis=0)), ("mean", lambda o: np.nanmean(o, axis=0)),
     ("first", _first_valid), ("max-ndvi", _max_ndvi)],
)  # fmt: skip
def test_composite_values_equal_numpy(tmp_path: Path, method: str, reduce) -> None:
    from cropseq.io import open_stack

    stack, values = _stack(tmp_path / "s", {"period": "10D", "method": method})
    cube = open_stack(stack, chunks=4)
    assert [str(t)[:10] for t in cube["time"].values] == BIN_STARTS  # each bin dated by its start
    expected = _expected(values, _bins("2021-04-01", 10), len(BIN_STARTS), reduce)
    np.testing.assert_allclose(cube.values, expected, rtol=1e-6)
    assert np.isnan(cube.values[[1, 3]]).all()  # empty bins: NaN
    assert cube.dtype == np.float32 and cube.chunks[2] == (4, 2)  # lazy, chunked as any cube


def test_origin_and_week_periods(tmp_path: Path) -> None:
    """``origin`` anchors the bins; dates before it are not used; ``2W`` = 14 days."""
    from cropseq.io import open_stack

    stack, values = _stack(tmp_path / "s", {"period": "2W", "method": "median", "origin": "2021-04-05"})
    cube = open_stack(stack)
    bins = _bins("2021-04-05", 14)
    assert bins[:2] == [-1, -1]
    n = max(bins) + 1
    assert [str(t)[:10] for t in cube["time"].values] == [
        str(np.datetime64("2021-04-05") + np.timedelta64(14 * k, "D")) for k in range(n)
    ]
    np.testing.assert_allclose(cube.values, _expected(values, bins, n, lambda o: np.nanmedian(o, axis=0)), rtol=1e-6)


def test_window_reader_reads_the_composite(tmp_path: Path) -> None:
    """Inference's direct window reads (halo windows, selections) give the composite too."""
    from cropseq.io import open_stack, window_reader

    stack, _ = _stack(tmp_path / "s", {"period": "10D", "method": "median"})
    cube = open_stack(stack, chunks=4)
    full = cube.values
    reader = window_reader(cube)
    assert reader is not None
    halo = reader(-1, -1, 8, 9)  # one pixel beyond every edge: NaN there
    np.testing.assert_array_equal(halo[:, :, 1:-1, 1:-1], full)
    assert np.isnan(halo[:, :, 0]).all()
    sub = cube.isel(time=[4, 0, 1], band=[1])
    np.testing.assert_array_equal(window_reader(sub)(0, 0, 6, 7), sub.values)


def test_inspect_counts_empty_bins(tmp_path: Path) -> None:
    stack, _ = _stack(tmp_path / "s", {"period": "10D", "method": "median"})
    res = run_cli(["inspect", "--json", stack])
    assert res.rc == 0, res
    summary = json.loads(res.out)
    assert summary["dates"] == BIN_STARTS
    assert summary["composite"] == {
        "period": "10D", "method": "median", "origin": "2021-04-01T00:00:00", "observations": 6, "bins": 6,
        "empty_bins": 2,
    }  # fmt: skip
    res = run_cli(["inspect", stack])
    assert res.rc == 0, res
    assert "10D median of 6 dates: 6 bins" in " ".join(res.out.split()) and "2 empty" in res.out


@pytest.mark.parametrize(
    ("composite", "needle"),
    [({"period": "1M"}, "whole number of days"), ({"period": "10D", "method": "mode"}, "composite.method"),
     ({"period": 0}, "at least 1 day"), ({"period": "10D", "speed": 1}, "unknown key composite.speed"),
     ({"period": "10D", "origin": "2022-01-01"}, "after the last date"),
     ({"period": "10D", "method": "median", "red": "red"}, "max-ndvi"), ("10D", "must be a mapping")],
)  # fmt: skip
def test_bad_composite_is_one_line(tmp_path: Path, composite, needle: str) -> None:
    stack, _ = _stack(tmp_path / "s", composite)
    assert_user_error(run_cli(["inspect", stack]), "stack.yaml", needle)


def test_max_ndvi_needs_red_and_nir(tmp_path: Path) -> None:
    stack, _ = _stack(tmp_path / "s", {"period": "10D", "method": "max-ndvi"}, bands=("b1", "b2"))
    assert_user_error(run_cli(["inspect", stack]), "needs a red band")
    manifest = yaml.safe_load(stack.read_text())
    manifest["composite"].update(red="b1", nir="b2")
    stack.write_text(yaml.safe_dump(manifest))
    assert run_cli(["inspect", stack]).rc == 0


def test_samples_train_predict_on_a_composited_stack(tmp_path: Path) -> None:
    """End to end: the model sees the bin dates, predict reads the composite (halo path)."""
    import rasterio

    from cropseq.samples import read_samples

    stack, _ = write_stack(
        tmp_path / "s", "per-band", n_dates=len(DATES), masks=True, shape=(8, 8),
        extra={"dates": DATES, "composite": {"period": "10D", "method": "median"}},
    )  # fmt: skip
    labels = write_grid_points(tmp_path / "points.csv")
    samples = tmp_path / "samples.csv"
    assert run_cli(["samples", "--stack", stack, "--labels", labels, "--out", samples]).rc == 0
    dates = sorted({str(d)[:10] for d in read_samples(samples)["date"]})
    assert set(dates) <= set(BIN_STARTS) and "2021-04-03" not in dates
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_TRAIN_CONFIG))
    model = tmp_path / "deep.pt"
    res = run_cli(["train", "--samples", samples, "--out", model, "--config", config, "-q"])
    assert res.rc == 0, res
    out = tmp_path / "map.tif"
    res = run_cli(["predict", "--model", model, "--stack", stack, "--out", out, "--workers", "0", "--threads", "1",
                   "--min-valid", "1", "-q"])  # fmt: skip
    assert res.rc == 0, res
    with rasterio.open(out) as src:
        classes = src.read(1)
    assert classes.shape == (8, 8) and (classes > 0).any()
