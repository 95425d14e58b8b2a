"""Tests of ``cropseq predict``, ``cropseq mosaic`` and ``cropseq area``.

A tiny simulated scene (``cropseq.simulate``) and a small RandomForest trained here on its
truth pixels: the real model-file path through ``load_predictor``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from cropseq.cli import main

pytestmark = pytest.mark.e2e  # every test maps a simulated scene through the CLI: the e2e tier

SIZE = 64


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 64 px simulated scene and a RandomForest trained on 600 of its truth pixels."""
    from cropseq.baseline import train_random_forest
    from cropseq.classes import ClassTable
    from cropseq.inference import day_of_year
    from cropseq.io import open_stack
    from cropseq.sequences import SequenceArrays
    from cropseq.simulate import simulate_scene

    root = tmp_path_factory.mktemp("scene")
    simulate_scene(root / "scene", size=SIZE, n_dates=8, seed=1)
    stack = root / "scene" / "stack.yaml"
    classes = ClassTable.from_yaml(root / "scene" / "classes.yaml")
    cube = open_stack(stack).load()
    with rasterio.open(root / "scene" / "truth.tif") as src:
        truth = src.read(1)
    rng = np.random.default_rng(0)
    rows, cols = np.nonzero(truth)
    pick = rng.choice(len(rows), size=min(600, len(rows)), replace=False)
    rows, cols = rows[pick], cols[pick]
    x = cube.values[:, :, rows, cols].transpose(2, 0, 1)[:, :, :, None, None].astype(np.float32)
    doy = np.broadcast_to(day_of_year(cube), (len(rows), cube.sizes["time"])).copy()
    names = {c.code: c.name for c in classes.classes}
    labels = np.array([names[int(v)] for v in truth[rows, cols]])
    arrays = SequenceArrays(x=x, doy=doy, present=np.ones(doy.shape, bool),
                            bands=[str(b) for b in cube["band"].values], labels=labels)
    train_random_forest(arrays, root / "rf.skops", classes=classes, n_estimators=25, n_jobs=1)
    return {"root": root, "stack": stack, "model": root / "rf.skops", "truth": root / "scene" / "truth.tif"}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def read_map(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_predict_happy_path(scene: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "map.tif"
    rc, stdout, stderr = run(["predict", "--model", scene["model"], "--stack", scene["stack"], "--out", out,
                              "--workers", 0, "--threads", 2, "--chunk", 32, "-q"], capsys)
    assert rc == 0, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "map.area.csv", "map.confidence.qml", "map.confidence.tif", "map.qml", "map.stac.json", "map.tif", "map.tif.aux.xml"]
    assert "map: " in stdout and "4 chunks" in stdout
    assert cog_validate(str(out))[0] and cog_validate(str(tmp_path / "map.confidence.tif"))[0]
    cls = read_map(out)
    with rasterio.open(out) as src:
        assert src.colormap(1)[1][3] == 255 and src.nodata == 0
    truth = read_map(scene["truth"])
    both = (cls > 0) & (truth > 0)
    assert both.sum() > 0.5 * cls.size
    assert (cls[both] == truth[both]).mean() > 0.6  # a model, not noise
    with open(tmp_path / "map.area.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sum(int(r["pixels"]) for r in rows) == int((cls > 0).sum())
    assert "<paletteEntry" in (tmp_path / "map.qml").read_text()


def test_predict_options_and_local_cluster(scene: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = tmp_path / "ref.tif"
    assert run(["predict", "--model", scene["model"], "--stack", scene["stack"], "--out", ref, "--workers", 0, "-q",
                "--start", "2023-01-01", "--end", "2024-01-01", "--min-valid", 2], capsys)[0] == 0
    out = tmp_path / "lc.tif"
    rc, stdout, stderr = run(["predict", "--model", scene["model"], "--stack", scene["stack"], "--out", out,
                              "--workers", 1, "--chunk", 16, "--start", "2023-01-01", "--end", "2024-01-01",
                              "--min-valid", 2, "--confidence", tmp_path / "c.tif", "--area", tmp_path / "a.csv",
                              "--probabilities", tmp_path / "p.tif", "--device", "cpu"], capsys)
    assert rc == 0, stderr
    assert "local cluster, 1 worker" in stdout and "16 chunks" in stdout
    np.testing.assert_array_equal(read_map(out), read_map(ref))  # chunking and scheduler do not matter
    assert (tmp_path / "c.tif").is_file() and (tmp_path / "a.csv").is_file() and (tmp_path / "lc.qml").is_file()
    with rasterio.open(tmp_path / "p.tif") as src:
        assert src.count == 10 and src.descriptions[0] == "winter_wheat"


def test_predict_errors_exit_2_one_line(scene: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from _data_fixtures import write_stack

    base = ["predict", "--model", scene["model"], "--stack", scene["stack"], "--workers", 0, "-q"]
    other_stack, _ = write_stack(tmp_path / "other", bands=("blue", "nir"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cases = [
        (base + ["--out", tmp_path / "missing" / "m.tif"], "does not exist"),
        (["predict", "--model", tmp_path / "nope.skops", "--stack", scene["stack"], "--out", out_dir / "m.tif", "--workers", 0], "model file not found"),
        (["predict", "--model", scene["model"], "--stack", other_stack, "--out", out_dir / "m.tif", "--workers", 0], "lacks band"),
        (base + ["--out", out_dir / "m.tif", "--start", "2030-01-01"], "no dates between"),
        (base + ["--out", out_dir / "m.tif", "--start", "june"], "not a date"),
        (base + ["--out", out_dir / "m.tif", "--min-valid", 99], "exceeds"),
        (base + ["--out", out_dir / "m.tif", "--device", "gpu"], "gpu"),
        (base + ["--out", out_dir / "m.tif", "--chunk", 8], "chunk"),
        (["predict", "--model", scene["model"], "--stack", tmp_path / "nostack.yaml", "--out", out_dir / "m.tif", "--workers", 0], "not found"),
    ]
    for argv, needle in cases:
        rc, _, err = run(argv, capsys)
        assert rc == 2, (argv, err)
        assert needle in err, (needle, err)
        assert len(err.strip().splitlines()) == 1, err
    assert list(out_dir.iterdir()) == []  # nothing written, nothing left behind
    assert err.startswith("cropseq")


def test_tiles_predict_then_mosaic(scene: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cropseq.io import open_stack
    from cropseq.tiling import tile_stack

    whole = tmp_path / "whole.tif"
    assert run(["predict", "--model", scene["model"], "--stack", scene["stack"], "--out", whole, "--workers", 0, "-q"], capsys)[0] == 0
    index = tile_stack(open_stack(scene["stack"]), tmp_path / "tiles", size=24, halo=1)
    (tmp_path / "pred").mkdir()
    maps = []
    for t in index["tiles"]:
        m = tmp_path / "pred" / f"{t['id']}.tif"
        rc, _, err = run(["predict", "--model", scene["model"], "--stack", tmp_path / "tiles" / t["path"],
                          "--out", m, "--workers", 0, "-q"], capsys)
        assert rc == 0, err
        maps.append(m)
    out = tmp_path / "mosaic.tif"
    rc, stdout, err = run(["mosaic", *maps, "--out", out, "--confidence", tmp_path / "mosaic.conf.tif",
                           "--area", tmp_path / "mosaic.area.csv"], capsys)
    assert rc == 0, err
    assert f"({len(maps)} tiles)" in stdout
    np.testing.assert_array_equal(read_map(out), read_map(whole))
    with rasterio.open(out) as src, rasterio.open(whole) as ref:
        assert src.transform == ref.transform and src.crs == ref.crs
        assert src.colormap(1) == ref.colormap(1) and src.tags(1) == ref.tags(1)
    assert cog_validate(str(out))[0]
    np.testing.assert_array_equal(read_map(tmp_path / "mosaic.conf.tif"), read_map(tmp_path / "whole.confidence.tif"))
    # the workflow's way: confidences mosaicked on their own
    confs = [m.with_name(f"{m.stem}.confidence.tif") for m in maps]
    assert run(["mosaic", *confs, "--out", tmp_path / "c2.tif"], capsys)[0] == 0
    np.testing.assert_array_equal(read_map(tmp_path / "c2.tif"), read_map(tmp_path / "whole.confidence.tif"))
    # area command on the mosaic == predict's own table
    rc, stdout, _ = run(["area", out, "--out", tmp_path / "area2.csv"], capsys)
    assert rc == 0
    assert (tmp_path / "area2.csv").read_text() == (tmp_path / "whole.area.csv").read_text()


def test_mosaic_errors_exit_2(scene: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = tmp_path / "a.tif"
    assert run(["predict", "--model", scene["model"], "--stack", scene["stack"], "--out", m, "--workers", 0, "-q"], capsys)[0] == 0
    cases = [
        (["mosaic", tmp_path / "nope.tif", "--out", tmp_path / "m.tif"], "not found"),
        (["mosaic", m, m, "--out", tmp_path / "m.tif"], "overlap"),
        (["mosaic", m, "--out", tmp_path / "no" / "m.tif"], "does not exist"),
        (["area", tmp_path / "nope.tif", "--out", tmp_path / "x.csv"], "not found"),
    ]
    for argv, needle in cases:
        rc, _, err = run(argv, capsys)
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (tmp_path / "m.tif").exists()


def test_predict_smoothing_uncertainty_zarr(scene: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import rioxarray  # noqa: F401
    import xarray as xr

    from cropseq.smoothing import isolated_share

    plain = tmp_path / "plain.tif"
    assert run(["predict", "--model", scene["model"], "--stack", scene["stack"], "--out", plain, "--workers", 0, "-q"], capsys)[0] == 0
    maps = {}
    for chunk in (16, 64):
        out = tmp_path / f"s{chunk}.tif"
        rc, stdout, stderr = run(["predict", "--model", scene["model"], "--stack", scene["stack"], "--out", out, "--workers", 0,
                                  "-q", "--chunk", chunk, "--smooth", "bayes", "--smooth-window", 5, "--uncertainty", "entropy",
                                  "--uncertainty", "margin", "--probabilities-zarr", tmp_path / f"p{chunk}.zarr"], capsys)
        assert rc == 0, stderr
        assert f"entropy: {tmp_path / f's{chunk}.entropy.tif'}" in stdout and "probabilities zarr: " in stdout
        maps[chunk] = read_map(out)
    np.testing.assert_array_equal(maps[16], maps[64])  # smoothing with halos: chunking does not matter
    assert isolated_share(maps[16]) < isolated_share(read_map(plain))
    assert cog_validate(str(tmp_path / "s16.entropy.tif"))[0]
    z = xr.open_zarr(tmp_path / "p16.zarr")
    assert z.rio.crs is not None and z["probabilities"].shape == (10, SIZE, SIZE)


def test_predict_bad_smoothing_is_one_line(scene: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, stdout, stderr = run(["predict", "--model", scene["model"], "--stack", scene["stack"], "--out", tmp_path / "m.tif",
                              "--smooth", "bayes", "--smooth-window", 4], capsys)
    assert rc == 2 and stderr.strip().count("\n") == 0 and "odd number of pixels" in stderr
    assert not list(tmp_path.iterdir())
