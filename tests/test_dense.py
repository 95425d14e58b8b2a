"""Dense (segmentation) models: CNN decoder, ConvLSTM, windows, grouped split, train-dense + predict."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch
from _data_fixtures import assert_user_error, run_cli, write_stack

from cropseq.classes import ClassTable
from cropseq.dense.windows import IGNORE, DenseLabels, grid_windows, random_windows, split_groups, window_batch
from cropseq.models.convlstm import ConvLSTMConfig, ConvLSTMModel
from cropseq.models.decoder import DenseSequenceModel
from cropseq.models.recurrent import ArchConfig

DOY = torch.tensor([[20.0, 60, 100, 140, 180]])
#: Band centre and scale of write_stack's values (band * 1000 + date * 10 + noise).
NORM = (torch.tensor([20.0, 1020.0]), torch.tensor([15.0, 15.0]))


def _pixel_model(patch: int = 3, cell: str = "gru") -> DenseSequenceModel:
    torch.manual_seed(0)
    arch = ArchConfig(n_bands=2, n_classes=3, patch=patch, cell=cell, hidden_size=6, num_layers=1,
                      encoder_width=6, encoder_dim=6, pooling="mean-max")
    return DenseSequenceModel(arch, decoder_width=8, decoder_layers=2, norm_center=NORM[0], norm_scale=NORM[1]).eval()


def _convlstm(max_dates: int = 7, bidirectional: bool = True) -> ConvLSTMModel:
    torch.manual_seed(0)
    return ConvLSTMModel(ConvLSTMConfig(2, 3, max_dates=max_dates, hidden_size=4, bidirectional=bidirectional),
                         decoder_width=8, decoder_layers=1, norm_center=NORM[0], norm_scale=NORM[1]).eval()


@pytest.mark.parametrize("make", [_pixel_model, _convlstm])
def test_dense_models_map_a_window_with_its_halo_to_its_core(make):
    m = make()
    r = m.receptive_radius
    x = torch.randn(2, 5, 2, 6 + 2 * r, 6 + 2 * r)
    with torch.no_grad():
        assert m(x, DOY.expand(2, -1)).shape == (2, 3, 6, 6)
    assert _pixel_model(patch=3).receptive_radius == 1 + 2  # encoder patch radius + two 3x3 convolutions
    assert _convlstm(max_dates=7).receptive_radius == 7 * 1 + 1  # one pixel per date, plus the decoder


@pytest.mark.parametrize("bidirectional", [True, False])
def test_convlstm_masked_dates_change_nothing(bidirectional):
    m = _convlstm(bidirectional=bidirectional)
    r = m.receptive_radius
    x = torch.randn(1, 5, 2, 4 + 2 * r, 4 + 2 * r)
    x[0, 2, :, :3, :3] = float("nan")  # a cloud on some pixels of one date
    gap = torch.full((1, 1, 2, x.shape[-2], x.shape[-1]), float("nan"))
    padded = torch.cat([x[:, :3], gap, x[:, 3:], gap], dim=1)  # a missing date inside, one at the end
    doy_p = torch.tensor([[20.0, 60, 100, 110, 140, 180, 300]])
    with torch.no_grad():
        assert torch.allclose(m(x, DOY), m(padded, doy_p), atol=1e-6)
        with pytest.raises(Exception, match="at most 7"):
            m(torch.cat([padded, gap], dim=1), torch.cat([doy_p, doy_p[:, :1]], dim=1))


def _predictor(model, bands, n_classes=3):
    from cropseq.predictors.dense import DensePredictor

    r = model.receptive_radius
    meta = {"bands": list(bands), "patch": 2 * r + 1,
            "classes": ClassTable.from_names([f"c{k}" for k in range(n_classes)]).to_records()}
    return DensePredictor(model, meta, torch.device("cpu"))


@pytest.mark.parametrize("make", [_pixel_model, _convlstm])
def test_dense_map_does_not_depend_on_the_chunk_size(tmp_path, make):
    from cropseq.inference import predict_cube
    from cropseq.io import open_stack

    manifest, _ = write_stack(tmp_path / "s", shape=(40, 44), n_dates=5, masks=True)
    cube = open_stack(manifest)
    model = make()
    pred = _predictor(model, ["red", "nir"])
    maps = [predict_cube(cube, pred, chunk=c, min_valid=1, probabilities=True).compute() for c in (16, 32, 64)]
    for m in maps[1:]:
        np.testing.assert_array_equal(maps[0]["class"].values, m["class"].values)
        np.testing.assert_allclose(maps[0]["probabilities"].values, m["probabilities"].values, atol=1e-5)
    assert (maps[0]["class"].values > 0).mean() > 0.5


def test_grouped_split_keeps_each_field_on_one_side():
    rng = np.random.default_rng(0)
    group = np.repeat(np.repeat(np.arange(16).reshape(4, 4), 8, axis=0), 8, axis=1)  # 16 square fields of 8x8
    index = (group % 3).astype(np.int64)
    index[rng.random(index.shape) < 0.2] = IGNORE
    group = np.where(index == IGNORE, -1, group)
    labels = DenseLabels(index, group, ClassTable.from_names(["a", "b", "c"]))
    train, val = split_groups(labels, 0.25, seed=1)
    assert val is not None
    tr_groups, va_groups = set(np.unique(train.group[train.group >= 0])), set(np.unique(val.group[val.group >= 0]))
    assert tr_groups and va_groups and not tr_groups & va_groups
    assert train.n_labelled + val.n_labelled == labels.n_labelled
    assert 0.15 < val.n_labelled / labels.n_labelled < 0.45
    wins = random_windows(train, 8, 20, seed=3)
    assert wins == random_windows(train, 8, 20, seed=3)  # seeded
    x, y = window_batch(np.zeros((2, 1, 32, 32), np.float32), train.index, wins, 8, 0)
    assert x.shape == (20, 2, 1, 8, 8) and all((yy != IGNORE).any() for yy in y)
    assert grid_windows((32, 30), 16) == [(0, 0), (0, 14), (16, 0), (16, 14)]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense") / "sim"
    subprocess.run(["cropseq", "simulate", str(root), "--size", "64", "--dates", "8"], check=True, capture_output=True)
    return root


TINY = ["--epochs", "1", "--windows-per-epoch", "4", "--batch-size", "4", "--window", "16", "--hidden", "8",
        "--device", "cpu", "-q"]


@pytest.mark.parametrize("arch, labels", [("gru", "labels.gpkg"), ("convlstm", "truth.tif")])
def test_train_dense_then_predict_writes_a_map(scene, tmp_path, arch, labels):
    model = tmp_path / f"{arch}.pt"
    res = run_cli(["train-dense", "--stack", scene, "--labels", scene / labels, "--out", model, "--arch", arch, *TINY])
    assert res.rc == 0, res
    assert "halo" in res.out and model.is_file()
    out = tmp_path / "map.tif"
    res = run_cli(["predict", "--stack", scene, "--model", model, "--out", out, "--workers", "0", "--chunk", "32"])
    assert res.rc == 0, res
    import rasterio

    with rasterio.open(out) as src:
        assert src.shape == (64, 64) and (src.read(1) > 0).mean() > 0.5


def test_train_dense_user_errors(scene, tmp_path):
    out = tmp_path / "m.pt"
    base = ["train-dense", "--stack", scene, "--labels", scene / "labels.gpkg", "--out", out]
    assert_user_error(run_cli([*base, "--arch", "transformer", *TINY]), "unknown dense architecture", outputs=[out])
    assert_user_error(run_cli([*base[:4], tmp_path / "none.gpkg", "--out", out]), "labels not found", outputs=[out])
    assert_user_error(run_cli([*base, "--val-fraction", "1.5"]), "validation fraction", outputs=[out])


@pytest.fixture(scope="module")
def dense_model(scene, tmp_path_factory):
    model = tmp_path_factory.mktemp("dense_model") / "gru.pt"
    res = run_cli(["train-dense", "--stack", scene, "--labels", scene / "labels.gpkg", "--out", model, *TINY])
    assert res.rc == 0, res
    return model


@pytest.mark.parametrize("engine", ["int8", "bf16", "onnx"])
def test_predict_engine_on_a_dense_model_says_it_runs_on_torch(scene, dense_model, tmp_path, engine):
    out = tmp_path / "map.tif"
    argv = ["predict", "--stack", scene, "--model", dense_model, "--out", out, "--engine", engine, "--device", "cpu",
            "--workers", "0"]
    msg = assert_user_error(run_cli(argv), f"--engine {engine}", "dense model", "runs on torch", outputs=[out])
    assert "RandomForest" not in msg


def test_load_predictor_reads_a_checkpoint_once(dense_model, tmp_path, monkeypatch):
    from cropseq.checkpoint import save_checkpoint
    from cropseq.models.recurrent import SequenceClassifier
    from cropseq.predictors import load_predictor

    arch = ArchConfig(n_bands=2, n_classes=3, patch=1, cell="gru", hidden_size=4, num_layers=1)
    pixel = SequenceClassifier(arch)
    meta = {"arch": arch.to_dict(), "bands": ["red", "nir"], "patch": 1, "head": arch.head, "epoch": 1,
            "norm": {"mean": pixel.norm_center.tolist(), "std": pixel.norm_scale.tolist()},
            "classes": ClassTable.from_names(["a", "b", "c"]).to_records(), "temporal_encoding": {}}
    pixel_path = save_checkpoint(tmp_path / "pixel.pt", pixel.state_dict(), meta)
    reads: list[object] = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: reads.append(f) or real_load(f, *a, **k))
    for path, kind in ((dense_model, "dense"), (pixel_path, "deep")):
        reads.clear()
        assert load_predictor(path, device="cpu").kind == kind
        assert len(reads) == 1, f"{kind}: read {len(reads)} times"


def test_grouped_split_trains_on_a_dominant_group_and_every_class():
    # A land-cover raster's connected patches: one forest holding most labels, a few small patches.
    index = np.full((40, 40), IGNORE, np.int64)
    group = np.full((40, 40), -1, np.int64)
    index[:30], group[:30] = 0, 0  # the forest: 1200 of 1440 labelled pixels
    for k in range(6):  # six 5x8 patches of classes 1 and 2
        rows, cols = slice(30 + 5 * (k // 3), 35 + 5 * (k // 3)), slice(8 * (k % 3), 8 * (k % 3) + 8)
        index[rows, cols], group[rows, cols] = 1 + k % 2, 1 + k
    labels = DenseLabels(index, group, ClassTable.from_names(["forest", "grass", "field"]))
    for seed in range(4):
        train, val = split_groups(labels, 0.2, seed=seed)
        assert val is not None and 0 in train.group and 0 not in val.group
        assert set(np.unique(train.index[train.index != IGNORE])) == {0, 1, 2}
