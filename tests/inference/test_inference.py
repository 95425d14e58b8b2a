"""Tests of whole-scene inference (cropseq.inference): chunking, halos, nodata, Dask modes.

The predictor test double (``tests/_predictor_double.py``) is a real classifier, so halo and
chunking bugs change its output.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import cloudpickle
import dask.array as da
import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers the .rio accessor)
from _predictor_double import (
    BANDS,
    CLASSES,
    ORIGIN,
    PROFILES,
    RES,
    CentroidPredictor,
    FailingPredictor,
    load_centroid,
    load_flaky,
    load_slow,
    make_cube,
    make_predictor,
    truth_map,
    whole_array_probs,
)
from affine import Affine

from cropseq import inference
from cropseq.errors import CropseqError
from cropseq.inference import predict_cube, run_prediction
from cropseq.predictors import resolve_device

# Workers of a process-based LocalCluster unpickle this module's functions by value (it is
# not importable there under the same name).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


# --------------------------------------------------------------------------- tests
def test_lazy_dataset_and_accuracy() -> None:
    cube = make_cube(dask_chunks=16)
    ds = predict_cube(cube, make_predictor(), chunk=16, min_valid=1, probabilities=True)
    assert isinstance(ds["class"].data, da.Array) and isinstance(ds["confidence"].data, da.Array)
    assert ds["class"].dtype == np.uint8 and ds["confidence"].dtype == np.float32
    assert ds["probabilities"].dims == ("class_name", "y", "x")
    assert list(ds["probabilities"]["class_code"].values) == [3, 7, 9]
    assert ds.rio.crs.to_epsg() == 32633
    assert ds.rio.transform() == Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1])
    cls = ds["class"].values
    truth = np.array([3, 7, 9])[truth_map(40, 36)]
    valid = cls != 0
    assert (cls[valid] == truth[valid]).mean() > 0.95  # a real classifier, not a stub
    conf = ds["confidence"].values
    assert np.all((conf[valid] > 0) & (conf[valid] <= 1))
    np.testing.assert_allclose(ds["probabilities"].values.sum(axis=0)[valid], 1, rtol=1e-5)


@pytest.mark.parametrize("patch", [1, 3, 5])
def test_chunk_size_invariance(patch: int) -> None:
    cube = make_cube(ny=45, nx=38, seed=1)
    pred = make_predictor(patch)
    results = [
        predict_cube(cube, pred, chunk=c, min_valid=2, probabilities=True).compute()
        for c in (16, 17, 25, 64)
    ]
    for r in results[1:]:
        np.testing.assert_array_equal(r["class"].values, results[0]["class"].values)
        np.testing.assert_array_equal(r["confidence"].values, results[0]["confidence"].values)
        np.testing.assert_array_equal(r["probabilities"].values, results[0]["probabilities"].values)


@pytest.mark.parametrize("patch", [3, 5])
def test_halo_matches_whole_array(patch: int) -> None:
    cube = make_cube(ny=37, nx=41, seed=2, dask_chunks=16)
    pred = make_predictor(patch)
    got = predict_cube(cube, pred, chunk=16, min_valid=2, probabilities=True)["probabilities"].values
    want = whole_array_probs(cube, pred, min_valid=2)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, equal_nan=True)


def test_min_valid_makes_nodata() -> None:
    cube = make_cube(nan_frac=0.0).load()
    data = cube.values.copy()
    data[:4, :, 5, 5] = np.nan  # 2 valid dates of 6
    data[:3, 1, 6, 6] = np.nan  # one band missing on 3 dates: those dates are invalid
    data[:, :, 7, 7] = np.nan  # never observed
    cube = cube.copy(data=data)
    pred = make_predictor()
    ds3 = predict_cube(cube, pred, chunk=16, min_valid=3).compute()
    assert ds3["class"].values[5, 5] == 0 and np.isnan(ds3["confidence"].values[5, 5])
    assert ds3["class"].values[6, 6] != 0  # 3 valid dates
    assert ds3["class"].values[7, 7] == 0
    ds2 = predict_cube(cube, pred, chunk=16, min_valid=2).compute()
    assert ds2["class"].values[5, 5] != 0 and np.isfinite(ds2["confidence"].values[5, 5])
    ds4 = predict_cube(cube, pred, chunk=16, min_valid=4).compute()
    assert ds4["class"].values[6, 6] == 0
    assert (ds3["class"].values != 0).sum() == ds3["class"].size - 2
    # default: min(3, dates)
    assert predict_cube(cube, pred, chunk=16).attrs["min_valid"] == 3
    assert predict_cube(cube.isel(time=[0, 1]), pred, chunk=16).attrs["min_valid"] == 2


def test_min_valid_errors() -> None:
    cube = make_cube(n_dates=4)
    with pytest.raises(CropseqError, match="exceeds the 4 date"):
        predict_cube(cube, make_predictor(), min_valid=5)
    with pytest.raises(CropseqError, match="at least 1"):
        predict_cube(cube, make_predictor(), min_valid=0)


def test_all_nan_dates_and_empty_chunks() -> None:
    cube = make_cube(ny=48, nx=48, nan_frac=0.0).load()
    data = cube.values.copy()
    data[2] = np.nan  # a fully clouded date
    data[:, :, :16, :16] = np.nan  # a whole chunk never observed
    data[:, :, 32:, 32:] = np.nan  # another, at the scene corner
    cube = cube.copy(data=data)
    pred = make_predictor(patch=3)
    ds = predict_cube(cube, pred, chunk=16, min_valid=3).compute()
    cls = ds["class"].values
    assert (cls[:16, :16] == 0).all() and (cls[32:, 32:] == 0).all()
    assert np.isnan(ds["confidence"].values[:16, :16]).all()
    assert (cls[16:32, 16:32] != 0).all()
    assert pred.calls == 9 - 2  # the empty chunks never reach the model
    # everything empty: no error, all nodata
    empty = cube.copy(data=np.full_like(data, np.nan))
    ds = predict_cube(empty, pred, chunk=16).compute()
    assert (ds["class"].values == 0).all()


def test_band_selection_and_mismatch() -> None:
    cube = make_cube()
    pred = make_predictor(bands=["B3", "B1"])  # a model on a subset, in another order
    got = predict_cube(cube, pred, chunk=16, min_valid=1).compute()
    want = predict_cube(cube.sel(band=["B3", "B1"]), pred, chunk=16, min_valid=1).compute()
    np.testing.assert_array_equal(got["class"].values, want["class"].values)
    reordered = cube.isel(band=[2, 0, 1])
    np.testing.assert_array_equal(
        predict_cube(reordered, pred, chunk=16, min_valid=1)["class"].values, got["class"].values
    )
    with pytest.raises(CropseqError) as e:
        predict_cube(cube.sel(band=["B1", "B2"]), pred)
    msg = str(e.value)
    assert "tests/stack.yaml" in msg and "B3" in msg and "\n" not in msg


def test_season_window() -> None:
    # Two seasons of monthly dates; the model must only see the selected ones.
    cube = make_cube(n_dates=24, start="2019-01-01", freq="MS")
    seen: list[int] = []

    class Spy(CentroidPredictor):
        def predict_image(self, image, doy, mask=None):
            seen.append(image.shape[0])
            return super().predict_image(image, doy, mask)

    pred = Spy(BANDS, CLASSES, PROFILES)
    ds = predict_cube(cube, pred, chunk=16, start="2020-01-01", end="2021-01-01", min_valid=1).compute()
    assert set(seen) == {12}
    want = predict_cube(cube.isel(time=slice(12, 24)), make_predictor(), chunk=16, min_valid=1).compute()
    np.testing.assert_array_equal(ds["class"].values, want["class"].values)
    assert inference.select_season(cube, "2019-03-01", None).sizes["time"] == 22
    assert inference.select_season(cube, None, "2019-03-01").sizes["time"] == 2  # end exclusive
    assert inference.select_season(cube, None, "2019-03-02").sizes["time"] == 3
    with pytest.raises(CropseqError, match="no dates between"):
        predict_cube(cube, pred, start="2023-01-01", end="2023-12-31")
    with pytest.raises(CropseqError, match="not before end"):
        predict_cube(cube, pred, start="2020-06-01", end="2020-01-01")
    with pytest.raises(CropseqError, match="not a date"):
        predict_cube(cube, pred, start="june")


def test_threaded_run_loads_model_once(tmp_path: Path) -> None:
    inference.clear_predictor_cache()
    model = make_predictor(patch=3).save(tmp_path / "m.npz")
    cube = make_cube(ny=64, nx=64, dask_chunks=16)
    res = run_prediction(model, cube, tmp_path / "map.tif", chunk=16, workers=0, threads=4, min_valid=1, loader=load_centroid)
    assert res.chunks == 16 and res.mode == "threads"
    assert inference.load_count() == 1
    ref = predict_cube(cube, make_predictor(patch=3), chunk=16, min_valid=1)["class"].values
    import rasterio

    with rasterio.open(tmp_path / "map.tif") as src:
        np.testing.assert_array_equal(src.read(1), ref)
    # a second run reuses the loaded model (same path, same mtime)
    run_prediction(model, cube, tmp_path / "map2.tif", chunk=32, workers=0, threads=2, min_valid=1, loader=load_centroid)
    assert inference.load_count() == 1


@pytest.mark.e2e
def test_distributed_scheduler_address(tmp_path: Path) -> None:
    from distributed import LocalCluster

    inference.clear_predictor_cache()
    model = make_predictor(patch=3).save(tmp_path / "m.npz")
    cube = make_cube(ny=64, nx=48, dask_chunks=16)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        res = run_prediction(
            model, cube, tmp_path / "map.tif", chunk=16, scheduler=cluster.scheduler_address,
            min_valid=1, loader=load_centroid, probabilities=tmp_path / "p.tif",
        )
    assert res.mode == "scheduler" and res.workers == 1 and res.chunks == 12
    # Same process: the client's metadata copy and the worker share one cache entry set
    # (client: cpu copy; worker: "auto" copy).
    assert inference.load_count() <= 2
    ref = predict_cube(cube, make_predictor(patch=3), chunk=16, min_valid=1, probabilities=True)
    import rasterio

    with rasterio.open(tmp_path / "map.tif") as src:
        np.testing.assert_array_equal(src.read(1), ref["class"].values)
    with rasterio.open(tmp_path / "map.confidence.tif") as src:
        np.testing.assert_array_equal(src.read(1), ref["confidence"].values)
    with rasterio.open(tmp_path / "p.tif") as src:
        np.testing.assert_array_equal(src.read(), ref["probabilities"].values)
        assert src.descriptions == ("maize", "wheat", "forest")


@pytest.mark.e2e
def test_model_loaded_once_per_worker_process(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    model = make_predictor(patch=3).save(tmp_path / "m.npz")
    cube = make_cube(ny=96, nx=96, dask_chunks=16)  # 36 chunks >> 2 workers
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        res = run_prediction(
            model, cube, tmp_path / "map.tif", chunk=16, scheduler=cluster.scheduler_address,
            min_valid=1, loader=load_centroid,
        )
        counts = client.run(inference.load_count)
    assert res.chunks == 36
    assert len(counts) == 2
    assert all(c <= 1 for c in counts.values()), counts
    assert 1 <= sum(counts.values()) <= 2


@pytest.mark.e2e
def test_worker_killed_mid_prediction_does_not_lose_the_map(tmp_path: Path) -> None:
    """SIGKILL one of two worker processes mid-run: the scheduler reruns its chunks on the
    surviving (or restarted) worker and the map equals an undisturbed run."""
    import os
    import signal

    import rasterio
    from distributed import Client, LocalCluster

    model = make_predictor(patch=3).save(tmp_path / "m.npz")
    cube = make_cube(ny=96, nx=96, dask_chunks=16)  # 36 chunks x 0.2 s on 2 workers: ~4 s
    ref = run_prediction(model, cube, tmp_path / "ref.tif", chunk=16, workers=0, threads=2, min_valid=1,
                         loader=load_centroid)  # fmt: skip
    assert ref.chunks == 36
    killed: dict[str, object] = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:  # fmt: skip
        pids = client.run(os.getpid)

        def kill_one() -> None:
            import time

            time.sleep(1.5)  # a few chunks in, well before the ~4 s run ends
            addr, pid = sorted(pids.items())[0]
            killed["running"] = not done.is_set()
            os.kill(pid, signal.SIGKILL)
            killed["addr"] = addr

        done = threading.Event()
        killer = threading.Thread(target=kill_one)
        killer.start()
        res = run_prediction(model, cube, tmp_path / "map.tif", chunk=16, scheduler=cluster.scheduler_address,
                             min_valid=1, loader=load_slow, retries=2)  # fmt: skip
        done.set()
        killer.join()
    if not killed.get("running"):
        pytest.skip("prediction finished before the worker could be killed (machine too fast/slow)")
    assert res.chunks == 36
    with rasterio.open(tmp_path / "ref.tif") as a, rasterio.open(tmp_path / "map.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))


def test_distributed_retries_transient_failure(tmp_path: Path) -> None:
    from distributed import LocalCluster

    inference.clear_predictor_cache()
    model = make_predictor().save(tmp_path / "m.npz")
    cube = make_cube(dask_chunks=16)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        res = run_prediction(
            model, cube, tmp_path / "map.tif", chunk=16, scheduler=cluster.scheduler_address,
            min_valid=1, loader=load_flaky, retries=2,
        )
    assert res.classified > 0


def test_failure_mid_way_leaves_no_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    pred = FailingPredictor(BANDS, CLASSES, PROFILES, fail_on=3)
    cube = make_cube(ny=64, nx=64)
    with pytest.raises(RuntimeError, match="chunk 3"):
        run_prediction(pred, cube, out / "map.tif", chunk=16, workers=0, threads=2, min_valid=1,
                       probabilities=out / "p.tif")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # no map, no temp files


def test_existing_output_survives_failure(tmp_path: Path) -> None:
    (tmp_path / "map.tif").write_bytes(b"previous good map")
    pred = FailingPredictor(BANDS, CLASSES, PROFILES, fail_on=1)
    with pytest.raises(RuntimeError):
        run_prediction(pred, make_cube(), tmp_path / "map.tif", chunk=16, workers=0, min_valid=1)
    assert (tmp_path / "map.tif").read_bytes() == b"previous good map"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif"]


def test_run_prediction_errors(tmp_path: Path) -> None:
    cube = make_cube()
    with pytest.raises(CropseqError, match="does not exist"):
        run_prediction(make_predictor(), cube, tmp_path / "nope" / "map.tif", workers=0)
    with pytest.raises(CropseqError, match="model file not found"):
        run_prediction(tmp_path / "missing.pt", cube, tmp_path / "map.tif", workers=0)
    with pytest.raises(CropseqError, match="lacks band"):
        run_prediction(make_predictor(), cube.sel(band=["B1"]), tmp_path / "map.tif", workers=0)
    assert list(tmp_path.iterdir()) == []


def test_tile_core_window_crop() -> None:
    cube = make_cube(ny=40, nx=40)
    pred = make_predictor(patch=3)
    full = predict_cube(cube, pred, chunk=16, min_valid=1).compute()
    tile = cube.isel(y=slice(9, 31), x=slice(4, 26)).copy()
    tile.attrs.update(tile_core=[1, 1, 20, 20], tile_halo=1)  # a 20 px core with a 1 px halo
    ds = predict_cube(tile, pred, chunk=16, min_valid=1).compute()
    np.testing.assert_array_equal(ds["class"].values, full["class"].values[10:30, 5:25])
    assert ds.rio.transform() == Affine(RES, 0, ORIGIN[0] + 5 * RES, 0, -RES, ORIGIN[1] - 10 * RES)
    with pytest.raises(CropseqError, match="re-tile with --halo 2"):
        predict_cube(tile, make_predictor(patch=5), chunk=16)


def test_tiles_from_tiling_match_whole_scene(tmp_path: Path) -> None:
    """cropseq.tiling tiles -> zarr -> open_stack -> per-tile maps == the whole-scene map."""
    from cropseq.io import open_stack
    from cropseq.tiling import tile_stack

    cube = make_cube(ny=50, nx=44, seed=5)
    pred = make_predictor(patch=3)
    full = predict_cube(cube, pred, chunk=16, min_valid=2).compute()["class"].values
    index = tile_stack(cube, tmp_path / "tiles", size=24, halo=1)
    got = np.full_like(full, 255)
    for t in index["tiles"]:
        ds = predict_cube(open_stack(tmp_path / "tiles" / t["path"], chunks=16), pred, chunk=16, min_valid=2).compute()
        r, c, h, w = t["core"]
        assert ds["class"].shape == (h, w)
        got[r : r + h, c : c + w] = ds["class"].values
    np.testing.assert_array_equal(got, full)


@pytest.mark.e2e
def test_stack_chunks_read_with_their_halo(tmp_path: Path) -> None:
    """From a stack on disk, chunks read their own halo (no overlap graph, no dependency
    between chunks) and predict exactly what the overlap path predicts."""
    from _data_fixtures import write_stack

    from cropseq.io import open_stack, window_reader

    path, _ = write_stack(tmp_path, "per-date", bands=BANDS, n_dates=6, shape=(40, 37), masks=True, seed=3)
    cube = open_stack(path, chunks=16)
    pred = CentroidPredictor(BANDS, CLASSES, PROFILES * 1000.0, patch=3)
    plan = inference.plan_prediction(cube, pred, chunk=16, min_valid=5)
    layers = plan.probs.__dask_graph__().layers
    assert not any(name.startswith(("overlap", "getitem", "open_stack")) for name in layers)
    assert any(name.startswith("read-with-halo") for name in layers)
    direct = predict_cube(cube, pred, chunk=16, min_valid=5, probabilities=True).compute()
    # The same cube through a graph the direct reader must not take (values * 1): overlap.
    general = cube.copy(data=cube.data * 1.0)
    assert window_reader(general) is None
    ref = predict_cube(general, pred, chunk=16, min_valid=5, probabilities=True).compute()
    np.testing.assert_array_equal(direct["class"].values, ref["class"].values)
    np.testing.assert_array_equal(direct["probabilities"].values, ref["probabilities"].values)
    assert (direct["class"].values > 0).any() and (direct["class"].values == 0).any()


def test_random_forest_end_to_end(tmp_path: Path) -> None:
    """The real baseline through the default loader (``*.skops`` path)."""
    from cropseq.baseline import train_random_forest
    from cropseq.sequences import SequenceArrays

    cube = make_cube(ny=48, nx=48, seed=3).load()
    truth = truth_map(48, 48, 3)
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 48, 300), rng.integers(0, 48, 300)
    x = cube.values[:, :, rows, cols].transpose(2, 0, 1)[:, :, :, None, None]
    doy = np.broadcast_to(inference.day_of_year(cube), (300, cube.sizes["time"])).copy()
    arrays = SequenceArrays(
        x=x.astype(np.float32), doy=doy, present=np.ones_like(doy, bool), bands=BANDS,
        labels=np.array(CLASSES.names)[truth[rows, cols]],
    )
    train_random_forest(arrays, tmp_path / "rf.skops", classes=CLASSES, n_estimators=20, n_jobs=1)
    res = run_prediction(tmp_path / "rf.skops", cube, tmp_path / "map.tif", chunk=16, workers=0, threads=2)
    import rasterio

    with rasterio.open(tmp_path / "map.tif") as src:
        cls = src.read(1)
    valid = cls != 0
    assert res.classified == valid.sum() > 0.9 * cls.size
    assert (cls[valid] == np.array(CLASSES.codes)[truth][valid]).mean() > 0.9


# --------------------------------------------------------------------------- deep model
def _patches(img: np.ndarray, rows: np.ndarray, cols: np.ndarray, p: int) -> np.ndarray:
    """``(N, T, C, p, p)`` patches around pixels of ``img (T, C, H, W)``, NaN beyond the edge."""
    h = p // 2
    pad = np.pad(img, ((0, 0), (0, 0), (h, h), (h, h)), constant_values=np.nan)
    return np.stack([pad[:, :, r : r + p, c : c + p] for r, c in zip(rows, cols)]).astype(np.float32)


@pytest.fixture(scope="module")
def deep_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CNN + BiLSTM (patch 3) trained for two epochs on pixels of a test cube."""
    from cropseq.sequences import SequenceArrays
    from cropseq.training import TrainConfig, train_model

    cube = make_cube(ny=48, nx=48, seed=7)
    img = cube.values
    truth = truth_map(48, 48, 7)
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 48, 256), rng.integers(0, 48, 256)
    x = _patches(img, rows, cols, 3)
    doy = np.broadcast_to(inference.day_of_year(cube), (256, cube.sizes["time"])).copy()
    arrays = SequenceArrays(x=x, doy=doy, present=np.ones(doy.shape, bool), bands=BANDS,
                            labels=np.array(CLASSES.names)[truth[rows, cols]])
    cfg = TrainConfig(epochs=2, hidden_size=8, num_layers=1, encoder_width=8, encoder_dim=8, batch_size=64,
                      device="cpu", threads=1, plot="", val_fraction=0.0)
    out = tmp_path_factory.mktemp("deep") / "deep.pt"
    train_model(arrays, None, cfg, out, classes=CLASSES, progress=False)
    return out


def test_deep_model_halo_and_chunking(deep_model: Path) -> None:
    from cropseq.predictors import load_predictor

    pred = load_predictor(deep_model, device="cpu")
    assert pred.patch == 3
    cube = make_cube(ny=40, nx=37, seed=8)
    a = predict_cube(cube, deep_model, chunk=16, min_valid=1, probabilities=True, device="cpu").compute()
    b = predict_cube(cube, deep_model, chunk=32, min_valid=1, probabilities=True, device="cpu").compute()
    pa, pb = a["probabilities"].values, b["probabilities"].values
    np.testing.assert_allclose(pa, pb, atol=2e-5, equal_nan=True)
    # Halo correctness: chunk edges and scene edges equal the patch path (predict_proba).
    rows = np.array([0, 0, 15, 16, 31, 32, 39, 39, 20])
    cols = np.array([0, 36, 15, 16, 15, 16, 0, 36, 17])
    x = _patches(cube.values, rows, cols, 3)
    doy = np.broadcast_to(inference.day_of_year(cube), (len(rows), cube.sizes["time"]))
    want = pred.predict_proba(x, doy)
    np.testing.assert_allclose(pa[:, rows, cols].T, want, atol=2e-5)
    assert (a["class"].values != 0).all()


def test_deep_model_run_prediction_threads(deep_model: Path, tmp_path: Path) -> None:
    import rasterio

    cube = make_cube(ny=40, nx=40, seed=9, dask_chunks=16)
    res = run_prediction(deep_model, cube, tmp_path / "m.tif", chunk=16, workers=0, threads=2, device="cpu")
    assert res.chunks == 9 and res.classified > 0
    ref = predict_cube(cube, deep_model, chunk=40, device="cpu")["class"].values
    with rasterio.open(tmp_path / "m.tif") as src:
        got = src.read(1)
    assert (got == ref).mean() > 0.999  # float rounding may flip an exact tie, nothing more


def test_auto_workers_and_device() -> None:
    w, t = inference.auto_workers("cpu", 50 * 2**20)
    assert 1 <= w <= inference.resources.cpu_count() and t == 1
    assert inference.auto_workers("cuda", 50 * 2**20) == (1, 2)  # one CUDA context, I/O overlapped
    assert inference.auto_workers("cpu", 2**50)[0] == 1  # never zero, even when memory is short
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(CropseqError, match="not one of"):
        resolve_device("tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(CropseqError, match="no CUDA GPU"):
            resolve_device("cuda")
        assert resolve_device("auto") == "cpu"


@pytest.mark.e2e
def test_local_cluster_workers_keep_glibc_malloc_defaults(monkeypatch) -> None:
    """Dask's MALLOC_TRIM_THRESHOLD_ makes every recurrent batch a fresh mmap (~30 % slower)."""
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with inference.dask_client(workers=1, threads=1) as client:
        env = client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS")))
    assert list(env.values()) == [(None, "1")]  # one BLAS/OpenMP thread per Dask thread is kept


def test_auto_chunk_gives_every_thread_work() -> None:
    """One 512-px chunk for two workers left one idle (issue 12/15): chunks shrink until
    every parallel slot gets four, but never below 128 px."""
    from cropseq.inference import auto_chunk

    assert auto_chunk(512, 512, 2) == 128  # 16 chunks for 2 workers
    assert auto_chunk(256, 256, 1) == 128  # a workflow tile on one thread: 4 chunks
    assert auto_chunk(4096, 4096, 2) == 512  # big scenes keep the large chunks
    assert auto_chunk(100, 100, 8) == 128  # never below the floor
    assert auto_chunk(1024, 1024, 2) == 256  # 4 chunks of 512 < 8: 16 of 256


def test_automatic_chunks_open_the_stack_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunk edge follows the grid's size, decided inside the one ``open_stack`` of a
    prediction (manifest, headers and fill-value sample read once, not again for the size)."""
    from _data_fixtures import write_stack

    import cropseq.io

    inference.clear_predictor_cache()
    stack = write_stack(tmp_path / "s", shape=(300, 300), n_dates=4, bands=BANDS)[0]
    model = make_predictor(patch=3).save(tmp_path / "m.npz")
    calls = []
    real = cropseq.io.load_manifest
    monkeypatch.setattr(cropseq.io, "load_manifest", lambda p: calls.append(p) or real(p))
    res = run_prediction(model, stack, tmp_path / "map.tif", workers=0, threads=2, min_valid=1, loader=load_centroid)
    assert len(calls) == 1
    assert res.chunks == 9  # 300 px: 512 gives 1 chunk < 4 x 2 slots; 256 gives 4; 128 gives 3 x 3


@pytest.mark.parametrize(("shape", "per_side"), [((300, 300), 1), ((1100, 1000), 4)])
def test_scale_check_reads_one_window_of_a_small_scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       shape: tuple[int, int], per_side: int) -> None:  # fmt: skip
    """The off-scale check samples one centred window up to ~1 Mpx (each window reads every
    file of the stack: 4 x 4 of them cost more than mapping a demo tile), 4 x 4 beyond."""
    import cropseq.io

    seen = []
    real = cropseq.io.sample_cube
    monkeypatch.setattr(cropseq.io, "sample_cube", lambda cube, *a, **k: seen.append(a[0] if a else k.get("per_side")) or real(cube, *a, **k))
    cube = make_cube(ny=shape[0], nx=shape[1], n_dates=2, dask_chunks=512)
    inference.plan_prediction(cube, make_predictor(patch=1))
    assert seen == [per_side]
