"""Opening rasters for windowed reads (:mod:`cropseq.raster_access`, used by :mod:`cropseq.io`).

Each file is opened once per window whatever bands and dates it holds; VRTs stay open per
thread between windows (bounded, never stale, never pickled with the cube).
"""

from __future__ import annotations

import gc
import os
import pickle
import threading
from pathlib import Path

import cloudpickle
import dask
import numpy as np
import pytest
import rasterio
import yaml
from _data_fixtures import tiny_dates, write_stack
from _http_server import serve

from cropseq import raster_access
from cropseq.io import open_stack, window_reader


def _vrt(tif: Path, out: Path) -> Path:
    """A VRT over every band of ``tif`` (same grid), written next to it."""
    with rasterio.open(tif) as src:
        kind = {"float32": "Float32", "uint16": "UInt16"}[src.dtypes[0]]
        bands = "".join(
            f'<VRTRasterBand dataType="{kind}" band="{i}"><SimpleSource><SourceFilename relativeToVRT="1">{tif.name}'
            f"</SourceFilename><SourceBand>{i}</SourceBand></SimpleSource></VRTRasterBand>"
            for i in range(1, src.count + 1)
        )
        geo = ", ".join(str(v) for v in src.transform.to_gdal())
        out.write_text(
            f'<VRTDataset rasterXSize="{src.width}" rasterYSize="{src.height}"><SRS>{src.crs.to_wkt().replace("<", "&lt;")}'
            f"</SRS><GeoTransform>{geo}</GeoTransform>{bands}</VRTDataset>"
        )
    return out


def _vrt_stack(root: Path, n_dates: int = 4) -> tuple[Path, np.ndarray]:
    """A per-date stack (3 bands) whose files are VRTs over GeoTIFFs; its expected cube."""
    _, expected = write_stack(root, "per-date", bands=("red", "nir", "swir"), n_dates=n_dates, shape=(20, 24))
    vrts = [_vrt(tif, tif.with_suffix(".vrt")) for tif in sorted(root.glob("S2_*.tif"))]
    manifest = {"layout": "per-date", "bands": ["red", "nir", "swir"], "files": [v.name for v in vrts], "dates": tiny_dates(n_dates)}
    (root / "vrt.yaml").write_text(yaml.safe_dump(manifest))
    return root / "vrt.yaml", expected


@pytest.fixture(autouse=True)
def _fresh() -> None:
    raster_access.close_rasters()  # this thread's datasets from earlier tests


def test_each_file_is_opened_once_per_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A per-date file holds every band of its date: one open per window, not one per band."""
    path, expected = write_stack(tmp_path, "per-date", bands=("red", "nir", "swir"), n_dates=4, shape=(20, 24), masks=True)
    reader = window_reader(open_stack(path, chunks=8))
    assert reader is not None
    opened: list[str] = []
    real = rasterio.open
    monkeypatch.setattr(rasterio, "open", lambda p, *a, **k: opened.append(str(p)) or real(p, *a, **k))
    block = reader(3, 5, 10, 12)
    np.testing.assert_array_equal(block, expected[:, :, 3:13, 5:17])
    assert sorted(opened) == sorted(str(f) for f in tmp_path.glob("*.tif"))  # 4 dates + 4 masks, once each


def test_vrts_stay_open_per_thread_and_threads_read_the_same_values(tmp_path: Path) -> None:
    path, expected = _vrt_stack(tmp_path)
    cube = open_stack(path, chunks=8)
    with dask.config.set(scheduler="threads", num_workers=4):
        threaded = cube.values
    with dask.config.set(scheduler="sync"):
        single = cube.values
        before = raster_access.open_count()
        again = cube.values  # this thread's VRTs are open already: nothing more is opened
        assert raster_access.open_count() == before >= 4
    np.testing.assert_array_equal(threaded, expected)
    np.testing.assert_array_equal(single, expected)
    np.testing.assert_array_equal(again, expected)


def test_a_pickled_cube_reads_and_carries_no_dataset(tmp_path: Path) -> None:
    path, expected = _vrt_stack(tmp_path)
    cube = open_stack(path, chunks=8)
    with dask.config.set(scheduler="sync"):
        cube.values  # datasets now open in this thread
    assert raster_access.open_count() > 0
    for dumps in (pickle.dumps, cloudpickle.dumps):
        blob = dumps(cube)
        assert len(blob) < 50_000  # paths and grids only
        with dask.config.set(scheduler="sync"):
            np.testing.assert_array_equal(pickle.loads(blob).values, expected)
    # The process scheduler pickles every task (in a child process, nothing is open yet).
    with dask.config.set(scheduler="processes", num_workers=2):
        np.testing.assert_array_equal(cube.values, expected)


def test_kept_datasets_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(raster_access, "MAX_OPEN", raster_access.open_count() + 2)
    path, expected = _vrt_stack(tmp_path, n_dates=5)
    with dask.config.set(scheduler="sync"):
        got = open_stack(path, chunks=8).values
    np.testing.assert_array_equal(got, expected)
    assert raster_access.open_count() == raster_access.MAX_OPEN  # filled up to the bound, no further


def test_datasets_close_when_their_thread_ends_or_on_request(tmp_path: Path) -> None:
    path, expected = _vrt_stack(tmp_path)
    reader = window_reader(open_stack(path))
    assert reader is not None
    start = raster_access.open_count()
    seen: list[int] = []

    def read() -> None:
        np.testing.assert_array_equal(reader(0, 0, 20, 24), expected)
        seen.append(raster_access.open_count())

    t = threading.Thread(target=read)
    t.start()
    t.join()
    gc.collect()
    assert seen == [start + 4] and raster_access.open_count() == start
    reader(0, 0, 5, 5)
    assert raster_access.open_count() == start + 4
    raster_access.close_rasters()
    assert raster_access.open_count() == start


def test_a_rewritten_file_is_not_served_stale(tmp_path: Path) -> None:
    path, expected = _vrt_stack(tmp_path)
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(open_stack(path).values, expected)  # the VRTs are now kept open
        # The first date's VRT now points at the second date's raster (same size on disk).
        first, second = sorted(tmp_path.glob("S2_*.vrt"))[:2]
        text = first.read_text().replace(first.with_suffix(".tif").name, second.with_suffix(".tif").name)
        first.write_text(text)
        st = first.stat()
        os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        got = open_stack(path).values
    np.testing.assert_array_equal(got[0], expected[1])
    np.testing.assert_array_equal(got[1:], expected[1:])


def test_over_http_vrts_stay_open_and_geotiffs_do_not(tmp_path: Path) -> None:
    """A remote VRT is kept like a local one; a remote GeoTIFF is opened per window (kept, its
    VSI cache of up to 25 MB would stay with it)."""
    path, expected = _vrt_stack(tmp_path)
    with serve(tmp_path) as url:
        m = yaml.safe_load(path.read_text())
        m["files"] = [f"{url}/{f}" for f in m["files"]]
        (tmp_path / "remote-vrt.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
        m["files"] = [f.replace(".vrt", ".tif") for f in m["files"]]
        (tmp_path / "remote-tif.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
        for name, kept in (("remote-vrt", 4), ("remote-tif", 0)):
            reader = window_reader(open_stack(tmp_path / f"{name}.yaml"))
            assert reader is not None
            start = raster_access.open_count()
            np.testing.assert_array_equal(reader(0, 0, 10, 24), expected[:, :, :10])
            np.testing.assert_array_equal(reader(10, 0, 10, 24), expected[:, :, 10:])
            assert raster_access.open_count() == start + kept, name


def test_worth_keeping() -> None:
    assert raster_access.worth_keeping("/data/S2.VRT") and raster_access.worth_keeping("/vsicurl/https://host/a.vrt?sig=1")
    assert not raster_access.worth_keeping("/data/S2.tif") and not raster_access.worth_keeping("/vsicurl/https://host/a.tif")
