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



def _padded_recurrence(m: ConvLSTMModel, x: torch.Tensor, doy: torch.Tensor) -> torch.Tensor:
    """The textbook ConvLSTM over the whole window (zero-padded gates), cut to the core at the end."""
    seq, valid = m.step_inputs(x, doy)
    finals = []
    for layer in range(m.arch.num_layers):
        outs, finals = [], []
        for cells, order in ((m.fwd, range(seq.shape[1])), (m.bwd, range(seq.shape[1] - 1, -1, -1))):
            if len(cells) == 0:
                continue
            cell = cells[layer]
            h = seq.new_zeros(seq.shape[0], cell.hidden, *seq.shape[-2:])
            c, steps = torch.zeros_like(h), [h] * seq.shape[1]
            for s in order:
                i, f, o, g = cell.gates(torch.cat([seq[:, s], h], dim=1)).chunk(4, dim=1)
                c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                keep = valid[:, s, None]
                h, c = torch.where(keep, torch.sigmoid(o) * torch.tanh(c_new), h), torch.where(keep, c_new, c)
                steps[s] = h
            outs.append(torch.stack(steps, dim=1))
            finals.append(h)
        seq = torch.cat(outs, dim=2)
    r = m.core_radius
    feats = torch.cat(finals, dim=1)[..., r:-r, r:-r]
    d = m.decoder.receptive_radius
    return m.decoder(feats)[..., d:-d, d:-d]


@pytest.mark.parametrize("layers, bidirectional", [(1, True), (2, True), (2, False)])
def test_convlstm_unpadded_steps_give_the_padded_recurrence_on_the_core(layers, bidirectional):
    # Each step computes only where the neighbourhood is known (cheaper); the core must not change.
    torch.manual_seed(0)
    m = ConvLSTMModel(ConvLSTMConfig(2, 3, max_dates=6, hidden_size=4, num_layers=layers, bidirectional=bidirectional),
                      decoder_width=8, decoder_layers=1, norm_center=NORM[0], norm_scale=NORM[1]).eval()  # fmt: skip
    r = m.receptive_radius
    x = torch.randn(2, 5, 2, 5 + 2 * r, 5 + 2 * r) * 15 + NORM[0].view(1, 1, 2, 1, 1)
    x[0, 1, :, :6, :9] = float("nan")  # a cloud
    with torch.no_grad():
        torch.testing.assert_close(m(x, DOY.expand(2, -1)), _padded_recurrence(m, x, DOY.expand(2, -1)), atol=1e-5, rtol=0)

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


@pytest.mark.e2e
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


@pytest.mark.e2e
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


@pytest.mark.e2e
@pytest.mark.parametrize("engine", ["int8", "bf16", "onnx"])
def test_predict_engine_on_a_dense_model_says_it_runs_on_torch(scene, dense_model, tmp_path, engine):
    out = tmp_path / "map.tif"
    argv = ["predict", "--stack", scene, "--model", dense_model, "--out", out, "--engine", engine, "--device", "cpu",
            "--workers", "0"]
    msg = assert_user_error(run_cli(argv), f"--engine {engine}", "dense model", "runs on torch", outputs=[out])
    assert "RandomForest" not in msg


@pytest.mark.e2e
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


def _two_class_scene(shift: float = 1.0, seed: int = 0):
    """A 25 x 25 scene of 25 fields (5 x 5 px), 5 of them (20 %) of a minority class a bit brighter than the rest."""
    import pandas as pd
    import xarray as xr

    rng = np.random.default_rng(seed)
    field = (np.arange(25)[:, None] // 5) * 5 + np.arange(25)[None, :] // 5
    minority = np.isin(field, [1, 7, 13, 19, 20])
    values = rng.normal(0.0, 1.0, (5, 2, 25, 25)) + shift * minority
    cube = xr.DataArray(values.astype(np.float32), dims=("time", "band", "y", "x"),
                        coords={"time": pd.date_range("2021-03-01", periods=5, freq="30D"), "band": ["red", "nir"]})  # fmt: skip
    labels = DenseLabels(minority.astype(np.int64), field.astype(np.int64), ClassTable.from_names(["major", "minor"]))
    return cube, labels


def _tiny_config(**kw):
    from cropseq.dense.train import DenseConfig

    # Mean-max pooling and no augmentation: small and fast, and these tests are about the loop.
    opts = {"window": 10, "epochs": 4, "windows_per_epoch": 16, "batch_size": 4, "hidden_size": 8, "decoder_width": 8,
            "lr": 1e-2, "val_fraction": 0.0, "pooling": "mean-max", "date_dropout": 0.0, "doy_shift": 0.0, "device": "cpu",
            **kw}  # fmt: skip
    return DenseConfig(**opts)


def _scene_classes(model_path, cube) -> np.ndarray:
    """The class index the checkpoint maps every pixel of ``cube`` to."""
    from cropseq.checkpoint import load_checkpoint
    from cropseq.dense.train import scene_logits
    from cropseq.dense.windows import padded_array
    from cropseq.inference.season import day_of_year
    from cropseq.predictors.dense import dense_model_from_checkpoint

    model = dense_model_from_checkpoint(load_checkpoint(model_path))
    padded = padded_array(cube.values, model.receptive_radius)
    doy = torch.from_numpy(day_of_year(cube)[None])
    return scene_logits(model, padded, doy, 10, torch.device("cpu")).argmax(0)


@pytest.mark.e2e
def test_class_weighting_makes_the_dense_model_map_a_minority_class(tmp_path):
    # 80 % / 20 %: unweighted, 16 steps map everything as the majority; balanced weights find the minority.
    from cropseq.dense.train import train_dense

    cube, labels = _two_class_scene()
    res = train_dense(cube, labels, _tiny_config(class_weighting="balanced"), tmp_path / "m.pt", progress=False)
    pred = _scene_classes(res.path, cube)
    minority = labels.index == 1
    assert (pred[minority] == 1).mean() > 0.5
    assert (pred[~minority] == 1).mean() < 0.2


def test_dense_training_makes_the_configured_steps(tmp_path):
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from cropseq.dense.train import train_dense

    cube, labels = _two_class_scene()
    steps: list[int] = []
    handle = register_optimizer_step_post_hook(lambda *a: steps.append(1))
    try:
        res = train_dense(cube, labels, _tiny_config(epochs=2, windows_per_epoch=10, batch_size=4), tmp_path / "m.pt",
                          progress=False)  # fmt: skip
    finally:
        handle.remove()
    assert len(steps) == res.steps == 2 * 3  # ceil(10 / 4) steps per epoch
    assert [r["epoch"] for r in res.history] == [1, 2]


@pytest.mark.e2e
def test_dense_training_delivers_the_epoch_with_the_lowest_validation_loss(tmp_path):
    from cropseq.checkpoint import load_checkpoint
    from cropseq.dense.train import train_dense, validation_metrics
    from cropseq.dense.windows import padded_array
    from cropseq.inference.season import day_of_year
    from cropseq.predictors.dense import dense_model_from_checkpoint
    from cropseq.training.loop import class_weights

    cube, labels = _two_class_scene(shift=0.3)  # a weak signal and a high constant rate: the validation loss jumps
    cfg = _tiny_config(epochs=6, lr=5e-2, schedule="constant", val_fraction=0.3, class_weighting="balanced")
    res = train_dense(cube, labels, cfg, tmp_path / "m.pt", progress=False)
    val_losses = [r["val_loss"] for r in res.history]
    assert res.best_epoch == 1 + int(np.argmin(val_losses)) < cfg.epochs  # the last epoch is not the best here
    ck = load_checkpoint(res.path)
    assert ck.meta["training"]["best_epoch"] == res.best_epoch
    model = dense_model_from_checkpoint(ck)
    train, val = split_groups(labels, cfg.val_fraction, cfg.seed)
    weight = class_weights(train.index[train.index != IGNORE], 2, "balanced")
    loss, acc = validation_metrics(model, padded_array(cube.values, model.receptive_radius), val,
                                   torch.from_numpy(day_of_year(cube)[None]), cfg.window, torch.device("cpu"), weight)  # fmt: skip
    assert loss == pytest.approx(min(val_losses), abs=1e-5)
    assert acc == pytest.approx(res.val_accuracy, abs=1e-6)


@pytest.mark.e2e
def test_train_dense_shows_a_line_per_epoch_and_writes_the_history(scene, tmp_path):
    model = tmp_path / "m.pt"
    argv = ["train-dense", "--stack", scene, "--labels", scene / "labels.gpkg", "--out", model, *TINY[:-1]]
    res = run_cli([*argv[:argv.index("--epochs") + 1], "2", *argv[argv.index("--epochs") + 2 :]])
    assert res.rc == 0, res
    assert "epoch   1/2  train_loss" in res.err and "epoch   2/2  train_loss" in res.err and "val_loss" in res.err
    assert "class weighting sqrt" in res.err and "(best " in res.out
    rows = (tmp_path / "m.history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,val_loss") and len(rows) == 3
