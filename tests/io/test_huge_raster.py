"""Issue 12 item 10: tiny files claiming huge rasters; rasters without georeferencing."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml
from _data_fixtures import assert_user_error, run_cli, tiny_dates

from cropseq.errors import CropseqError
from cropseq.io import open_stack, stack_summary

EDGE = 1_000_000  # 10^12 pixels, claimed by a file of a few hundred bytes


def _huge_stack(root: Path, n_dates: int = 3) -> Path:
    """A per-band stack whose one band is a ~300-byte VRT of EDGE x EDGE px (all zeros)."""
    root.mkdir(parents=True, exist_ok=True)
    bands = "".join(f'<VRTRasterBand dataType="UInt16" band="{i + 1}"/>' for i in range(n_dates))
    (root / "red.vrt").write_text(
        f'<VRTDataset rasterXSize="{EDGE}" rasterYSize="{EDGE}"><SRS>EPSG:32633</SRS>'
        f"<GeoTransform>500000, 10, 0, 5000000, 0, -10</GeoTransform>{bands}</VRTDataset>"
    )
    path = root / "stack.yaml"
    path.write_text(yaml.safe_dump({"layout": "per-band", "bands": {"red": "red.vrt"}, "dates": tiny_dates(n_dates)}))
    return path


def test_inspect_of_a_huge_claimed_raster_is_fast_and_small(tmp_path: Path) -> None:
    stack = _huge_stack(tmp_path)
    assert (tmp_path / "red.vrt").stat().st_size < 1000
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        s = stack_summary(open_stack(stack))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 10
    assert peak < 100 * 2**20, f"{peak / 2**20:.0f} MiB of Python objects"
    assert s["shape"]["y"] == EDGE and s["missing_sampled_px"] == 16 * 64 * 64
    assert s["missing_fraction"] == {"red": 0.0}
    res = run_cli(["inspect", stack])
    assert res.rc == 0 and "estimated from 65536 sampled px" in " ".join(res.out.split()), res


def _rf(tmp_path: Path, n_dates: int = 3) -> Path:
    from cropseq.baseline import train_random_forest
    from cropseq.sequences import SequenceArrays

    rng = np.random.default_rng(0)
    days = np.array(tiny_dates(n_dates), dtype="datetime64[D]")
    doy = (days - days.astype("datetime64[Y]")).astype(np.float32) + 1
    arrays = SequenceArrays(
        x=rng.random((20, n_dates, 1, 1, 1)).astype(np.float32), doy=np.tile(doy, (20, 1)),
        present=np.ones((20, n_dates), bool), bands=["red"], labels=np.array(["a", "b"] * 10),
    )  # fmt: skip
    path = tmp_path / "rf.skops"
    train_random_forest(arrays, path, n_estimators=3, n_jobs=1)
    return path


def test_predict_of_a_huge_claimed_raster_refuses_before_any_work(tmp_path: Path) -> None:
    stack = _huge_stack(tmp_path / "s")
    model = _rf(tmp_path)
    out = tmp_path / "map.tif"
    t0 = time.perf_counter()
    res = run_cli(["predict", "--model", model, "--stack", stack, "--out", out, "--workers", "0", "-q"])
    assert time.perf_counter() - t0 < 20
    # The all-zero VRT rightly draws the fill-value warning; the refusal is what is tested.
    res.warnings = [w for w in res.warnings if "sampled pixels hold 0" not in w]
    msg = assert_user_error(res, "map.tif", "uncompressed", "1,000,000,000,000 px", outputs=[out])
    assert "TB" in msg and "free" in msg


def test_chunks_are_submitted_in_a_bounded_window(tmp_path: Path) -> None:
    """Planning 3.8 million chunks is cheap, and only a few are ever in flight."""
    from cropseq.inference import IN_FLIGHT_PER_THREAD, DirectBlocks, _run_threaded_direct, plan_prediction
    from cropseq.io import BlockWindows

    cube = open_stack(_huge_stack(tmp_path / "s"))
    model = _rf(tmp_path)  # trained outside the measured span: only planning is timed
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        plan = plan_prediction(cube, model, chunk=512)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert plan.n_chunks > 3_000_000 and plan.direct is not None
    assert time.perf_counter() - t0 < 10 and peak < 100 * 2**20

    class Stop(Exception):
        pass

    class Writer:
        written = 0

        def write_block(self, *args: object, **kwargs: object) -> None:
            Writer.written += 1
            if Writer.written == 4:
                raise Stop

    submitted = []
    real = plan.offsets

    def counting():
        for item in real():
            submitted.append(item)
            yield item

    plan.offsets = counting  # type: ignore[method-assign]
    # Read 16-px windows instead of 512-px chunks: the test is about scheduling, not pixels.
    small = BlockWindows.from_chunks([16] * 1000, [16] * 1000, 0)
    plan.direct = DirectBlocks(plan.direct.reader, small, plan.direct.predict)
    with pytest.raises(Stop):
        _run_threaded_direct(plan, Writer(), threads=2, want=())
    assert len(submitted) <= 4 + IN_FLIGHT_PER_THREAD * 2 + 1


def _ungeoreferenced(root: Path, extra: dict | None = None) -> Path:
    import rasterio

    root.mkdir(parents=True, exist_ok=True)
    with rasterio.open(root / "red.tif", "w", driver="GTiff", width=9, height=7, count=3, dtype="float32") as dst:
        dst.write(np.ones((3, 7, 9), np.float32))
    path = root / "stack.yaml"
    path.write_text(yaml.safe_dump({"layout": "per-band", "bands": {"red": "red.tif"}, "dates": tiny_dates(3), **(extra or {})}))
    return path


def test_a_raster_without_georeferencing_needs_the_manifest_to_say_so(tmp_path: Path) -> None:
    stack = _ungeoreferenced(tmp_path / "a")
    res = run_cli(["inspect", stack])
    msg = assert_user_error(res, "red.tif", "no georeferencing", "crs: none", "transform:")
    assert not res.warnings, res  # rasterio's NotGeoreferencedWarning never shows
    res = run_cli(["inspect", _ungeoreferenced(tmp_path / "b", {"crs": "none"}), "--json"])
    assert res.rc == 0 and not res.warnings, res
    assert '"crs": null' in res.out
    cube = open_stack(_ungeoreferenced(tmp_path / "c", {"crs": "EPSG:32633", "transform": [10, 0, 500000, 0, -10, 5000000]}))
    assert cube.rio.crs.to_epsg() == 32633 and cube.rio.transform().c == 500000
    with pytest.raises(CropseqError, match="transform must be a list"):
        open_stack(_ungeoreferenced(tmp_path / "d", {"crs": "EPSG:32633", "transform": [1, 2]}))
    del msg
