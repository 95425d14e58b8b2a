"""Training loop: loss falls, outputs, reload, resume == uninterrupted, options, splits."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from _data_fixtures import FAST, toy_sequences

from cropseq.errors import CropseqError
from cropseq.predictors.deep import DeepPredictor
from cropseq.sequences import SequenceArrays
from cropseq.training import TrainConfig, train_model
from cropseq.training.augmentation import Augmentation
from cropseq.training.loop import crop_patch, lr_factor, select_bands, split_train_val
from cropseq.training.normalization import band_statistics


def test_loss_falls_and_model_reloads(tmp_path) -> None:
    data = toy_sequences()
    cfg = TrainConfig(epochs=10, **{**FAST, "plot": None})
    out = tmp_path / "model.pt"
    res = train_model(data, None, cfg, out, progress=False)
    losses = [r["train_loss"] for r in res.history]
    assert len(losses) == 10 and losses[-1] < 0.6 * losses[0]
    assert res.path == out and out.is_file()
    assert res.history_path == tmp_path / "model.history.csv"
    assert res.plot_path == tmp_path / "model.curves.png" and res.plot_path.stat().st_size > 1000
    with open(res.history_path) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds"]
    assert len(rows) == 10 and rows[0]["val_loss"] == ""  # small data: no validation split
    pred = DeepPredictor.load(out, device="cpu")
    p = pred.predict_proba(data.x, data.doy)
    acc = (np.array(pred.classes.names)[p.argmax(1)] == data.labels).mean()
    assert acc > 0.9
    # Reloading gives identical predictions.
    p2 = DeepPredictor.load(out, device="cpu").predict_proba(data.x, data.doy)
    np.testing.assert_array_equal(p, p2)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes left nothing behind


def test_same_seed_same_weights_and_validation_split(tmp_path) -> None:
    data = toy_sequences(n=80)  # 40 groups: a quarter holds out 10, the fewest a validation part may get
    cfg = TrainConfig(epochs=2, **{**FAST, "small_data": 20, "val_fraction": 0.25, "date_dropout": 0.2, "doy_shift": 5.0})
    r1 = train_model(data, None, cfg, tmp_path / "a.pt", progress=False)
    r2 = train_model(data, None, cfg, tmp_path / "b.pt", progress=False)
    assert r1.n_val > 0 and r1.n_train + r1.n_val == 80
    assert (r2.n_train, r2.n_val) == (r1.n_train, r1.n_val)
    assert r1.history[-1]["val_accuracy"] is not None
    sa = DeepPredictor.load(tmp_path / "a.pt").model.state_dict()
    sb = DeepPredictor.load(tmp_path / "b.pt").model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.e2e
@pytest.mark.parametrize("extra", [{}, {"k1": 4, "k2": 2, "head": "many-to-many", "average_last": 0.5}])
def test_resume_equals_uninterrupted(tmp_path, extra) -> None:
    from cropseq.checkpoint import partial_path

    data = toy_sequences(n=40)
    cfg = TrainConfig(epochs=4, **{**FAST, "date_dropout": 0.2, "doy_shift": 4.0, "dropout": 0.3, **extra})
    full = train_model(data, None, cfg, tmp_path / "full.pt", progress=False)

    class Killed(Exception):
        pass

    def kill_after_2(row: dict) -> bool:
        if row["epoch"] == 2:
            raise Killed
        return False

    part = tmp_path / "part.pt"
    with pytest.raises(Killed):
        train_model(data, None, cfg, part, progress=False, on_epoch_end=kill_after_2)
    # Killed after epoch 2: the model's name does not exist yet, the resumable state sits beside it.
    assert not part.exists()
    ck = torch.load(partial_path(part), map_location="cpu", weights_only=True)
    assert "optimizer" in ck and "rng" in ck
    resumed = train_model(data, None, TrainConfig(**{**cfg.to_dict(), "resume": True}), part, progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    a = DeepPredictor.load(tmp_path / "full.pt").model.state_dict()
    b = DeepPredictor.load(part).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The delivered file holds no resume state; resuming a finished run is a no-op.
    assert "optimizer" not in torch.load(part, map_location="cpu", weights_only=True)
    assert not partial_path(part).exists()
    again = train_model(data, None, TrainConfig(**{**cfg.to_dict(), "resume": True}), part, progress=False)
    assert again.extra.get("already_complete")


def test_resume_with_other_model_is_an_error(tmp_path) -> None:
    data = toy_sequences(n=24)
    cfg = TrainConfig(epochs=2, **FAST)
    train_model(data, None, cfg, tmp_path / "m.pt", progress=False, on_epoch_end=lambda r: True)
    other = TrainConfig(**{**cfg.to_dict(), "hidden_size": 32, "resume": True})
    with pytest.raises(CropseqError, match="resume"):
        train_model(data, None, other, tmp_path / "m.pt", progress=False)


def test_killed_run_leaves_no_model_under_its_name(tmp_path) -> None:
    """A run stopped after epoch 2 of 4 leaves model.pt.partial only; loaders refuse it unless allowed."""
    from cropseq.checkpoint import partial_path
    from cropseq.predictors import load_predictor

    out = tmp_path / "m.pt"
    res = train_model(toy_sequences(n=24), None, TrainConfig(epochs=4, **FAST), out, progress=False,
                      on_epoch_end=lambda r: r["epoch"] == 2)
    assert res.path == partial_path(out) == tmp_path / "m.pt.partial"
    assert not out.exists() and res.path.is_file()
    with pytest.raises(CropseqError, match=r"m\.pt: model file not found: its training is unfinished .*--resume"):
        load_predictor(out)
    with pytest.raises(CropseqError, match=r"incomplete checkpoint: training stopped after epoch 2 of 4; .*--allow-incomplete"):
        load_predictor(res.path)
    assert load_predictor(res.path, allow_incomplete=True).meta["epoch"] == 2


def _swap(train, val):
    return val, train


def _other_values(train, val):
    x = train.x.copy()
    x[0, 0, 0] += 0.01
    from dataclasses import replace

    return replace(train, x=x), val


@pytest.mark.parametrize(
    "change,options,pattern",
    [
        (_swap, {}, r"training data differs .*; validation data differs"),
        (_other_values, {}, r"training data differs \(content hash [0-9a-f]{12}, the run used [0-9a-f]{12}\); train without --resume to start over$"),
        (None, {"epochs": 5}, r"epochs 5 \(the run used 4\)"),
        (None, {"bands": ["swir", "ndvi"]}, r"bands swir,ndvi \(the run used ndvi,swir\)"),
        (None, {"lr": 0.01}, r"lr 0.01"),
    ],
)
def test_resume_refuses_another_run(tmp_path, change, options, pattern) -> None:
    """--resume continues only the same run: same data (content hash), bands and options."""
    train, val = toy_sequences(n=24, seed=0), toy_sequences(n=12, seed=3)
    cfg = TrainConfig(epochs=4, **FAST)
    out = tmp_path / "m.pt"
    train_model(train, val, cfg, out, progress=False, on_epoch_end=lambda r: r["epoch"] == 2)
    if change is not None:
        train, val = change(train, val)
    again = TrainConfig(**{**cfg.to_dict(), **options, "resume": True, "threads": 2, "device": "cpu"})
    with pytest.raises(CropseqError, match=r"m\.pt\.partial: cannot resume: " + pattern) as e:
        train_model(train, val, again, out, progress=False)
    assert "\n" not in str(e.value) and not out.exists()


def test_resume_with_runtime_changes_finishes(tmp_path) -> None:
    """Nothing that changes what is learnt differs: the run resumes and delivers the model."""
    from cropseq.checkpoint import partial_path

    train, val = toy_sequences(n=24, seed=0), toy_sequences(n=12, seed=3)
    cfg = TrainConfig(epochs=3, **FAST)
    out = tmp_path / "m.pt"
    train_model(train, val, cfg, out, progress=False, on_epoch_end=lambda r: r["epoch"] == 1)
    res = train_model(train, val, TrainConfig(**{**cfg.to_dict(), "resume": True, "threads": 2}), out, progress=False)
    assert [r["epoch"] for r in res.history] == [1, 2, 3] and res.path == out
    assert out.is_file() and not partial_path(out).exists()
    assert DeepPredictor.load(out).meta["complete"] is True


def test_early_stopping_restores_best(tmp_path) -> None:
    data = toy_sequences(n=60)
    val = toy_sequences(n=30, seed=1)
    cfg = TrainConfig(epochs=30, **{**FAST, "patience": 2, "lr": 0.05, "schedule": "constant"})
    res = train_model(data, val, cfg, tmp_path / "m.pt", progress=False)
    losses = [r["val_loss"] for r in res.history]
    assert res.best_epoch == int(np.argmin(losses)) + 1
    assert res.epochs_run <= 30 and res.epochs_run - res.best_epoch == 2 or res.epochs_run == 30
    meta_epoch = DeepPredictor.load(tmp_path / "m.pt").meta["training"]["best_epoch"]
    assert meta_epoch == res.best_epoch


def test_gru_unidirectional_patch3_many_to_many_trains(tmp_path) -> None:
    data = toy_sequences(n=30, p=3)
    cfg = TrainConfig(epochs=2, arch="gru", bidirectional=False, head="many-to-many", patch=1,
                      class_weighting="balanced", sampling="balanced", noise=0.05, **FAST)
    res = train_model(data, None, cfg, tmp_path / "m.pt", progress=False)
    pred = DeepPredictor.load(res.path)
    assert pred.patch == 1  # centre crop of the 3x3 table
    x, doy = data.x[:, :, :, 1:2, 1:2], data.doy
    with torch.no_grad():  # the many-to-many head: per-date logits, pooled by predict_proba
        assert pred.model(torch.from_numpy(x), torch.from_numpy(doy)).shape == (30, 10, 3)
    assert pred.predict_proba(x, doy).shape == (30, 3)


def test_progress_lines_on_stderr(tmp_path, capsys) -> None:
    train_model(toy_sequences(n=20), None, TrainConfig(epochs=2, **FAST), tmp_path / "m.pt", progress=True)
    err = capsys.readouterr().err
    assert "epoch   1/2" in err and "epoch   2/2" in err and "saved" in err


def test_bad_inputs(tmp_path) -> None:
    data = toy_sequences(n=20)
    with pytest.raises(CropseqError, match="k2"):
        train_model(data, None, TrainConfig(k1=2, k2=3), tmp_path / "m.pt")
    with pytest.raises(CropseqError, match="epochs"):
        TrainConfig(epochs=0).validate()
    with pytest.raises(CropseqError, match="patch"):
        TrainConfig(patch=4).validate()
    with pytest.raises(CropseqError, match="pooling"):
        TrainConfig(pooling="median").validate()
    with pytest.raises(CropseqError, match="season_bins"):
        TrainConfig(season_sigma=0).validate()
    with pytest.raises(CropseqError, match="wheat"):
        from cropseq.classes import ClassTable

        train_model(data, None, TrainConfig(epochs=1, **FAST), tmp_path / "m.pt",
                    classes=ClassTable.from_names(["crop0", "crop1", "wheat"]))
    with pytest.raises(CropseqError, match="does not exist"):
        train_model(data, None, TrainConfig(epochs=1, **FAST), tmp_path / "nope" / "m.pt")
    with pytest.raises(CropseqError, match="blue"):
        select_bands(data, ["ndvi", "blue"])
    with pytest.raises(CropseqError, match="larger"):
        crop_patch(data, 3)
    unlabeled = SequenceArrays(x=data.x, doy=data.doy, present=data.present, bands=data.bands)
    with pytest.raises(CropseqError, match="labels"):
        train_model(unlabeled, None, TrainConfig(epochs=1), tmp_path / "m.pt")


def test_model_options_reach_the_checkpoint(tmp_path) -> None:
    """Every model option of TrainConfig lands in the checkpoint's arch record."""
    arch = TrainConfig().arch_config(n_bands=2, n_classes=3, patch=1, period_steps=12)
    assert (arch.pooling, arch.season_bins, arch.season_sigma) == ("season", 72, 6.0)
    cfg = TrainConfig(**{**FAST, "epochs": 1, "pooling": "mean-max", "hidden_size": 12})
    train_model(toy_sequences(n=20), None, cfg, tmp_path / "m.pt")
    model = DeepPredictor.load(tmp_path / "m.pt", device="cpu").model
    assert (model.arch.pooling, model.arch.hidden_size) == ("mean-max", 12)
    assert model.head.in_features == 2 * 2 * 12  # [mean, max] of both directions


def test_config_yaml_and_coercion(tmp_path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("train:\n  epochs: 7\n  batch-size: 32\n  lr: 1e-3\n  bands: ndvi,evi\n  bidirectional: false\n")
    cfg = TrainConfig.from_yaml(y, {"epochs": 9})
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.bands, cfg.bidirectional) == (9, 32, 1e-3, ["ndvi", "evi"], False)
    y.write_text("epochs: 3\nbogus: 1\n")
    with pytest.raises(CropseqError, match="bogus") as e:
        TrainConfig.from_yaml(y)
    assert str(y) in str(e.value)
    y.write_text("epochs: many\n")
    with pytest.raises(CropseqError, match="epochs"):
        TrainConfig.from_yaml(y)


def test_helpers() -> None:
    data = toy_sequences(n=40)
    tr, va = split_train_val(data.labels, data.groups, 0.25, seed=0)
    assert len(tr) + len(va) == 40 and not set(data.groups[tr]) & set(data.groups[va])
    assert set(data.labels[va]) == set(data.labels)  # stratified
    c, s = band_statistics(data.x)
    assert c.shape == (2,) and np.all(s > 0)
    big = data.x.copy()
    big[0, 0, 0] = 1e9  # one wild value does not move robust statistics
    c2, s2 = band_statistics(big)
    np.testing.assert_allclose(c2, c, rtol=1e-3)
    np.testing.assert_allclose(s2, s, rtol=1e-2)
    assert lr_factor(0, 100, "onecycle", 0.1) < 0.1 and lr_factor(10, 100, "onecycle", 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 100, "onecycle", 0.1) < 0.01 and lr_factor(5, 100, "constant", 0.1) == 1.0
    aug = Augmentation(date_dropout=0.5, doy_shift=10.0, noise=0.0)
    x = torch.from_numpy(np.nan_to_num(data.x))
    d = torch.from_numpy(data.doy)
    xa, da = aug(x, d, torch.ones(2), torch.Generator().manual_seed(0))
    frac = torch.isnan(xa[:, :, 0, 0, 0]).float().mean().item()
    assert 0.35 < frac < 0.65
    shift = (da - d)
    assert shift.abs().max() <= 10 and torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-4)


def test_automatic_epochs_and_small_data_batches(tmp_path) -> None:
    from cropseq.training.loop import effective_batch_size

    cfg = TrainConfig()
    # ~2,000 sequences, batch 64: 27 updates per epoch, the 60-epoch floor gives 1,620 >= 400 updates.
    assert effective_batch_size(1692, cfg.batch_size, cfg.min_batches) == 64
    assert cfg.resolved_epochs(27) == 60
    # 62 sequences: batch 16, 4 updates per epoch, 100 epochs to reach 400 updates.
    assert effective_batch_size(62, cfg.batch_size, cfg.min_batches) == 16
    assert cfg.resolved_epochs(4) == 100
    assert effective_batch_size(20, 64, 4) == 8  # never below 8
    # An explicit epoch count is used as is, in either direction.
    assert TrainConfig(epochs=3).resolved_epochs(1) == 3
    assert TrainConfig(epochs=500).resolved_epochs(100) == 500
    # And it is what the loop runs: 48 sequences -> batch 12 (4 updates/epoch) -> ceil(20 / 4) = 5 > min_epochs 2.
    data = toy_sequences()
    auto = train_model(data, None, TrainConfig(**FAST, min_epochs=2, min_updates=20), tmp_path / "a.pt")
    assert auto.epochs_run == 5
    fixed = train_model(data, None, TrainConfig(**FAST, epochs=1, min_epochs=2, min_updates=20), tmp_path / "b.pt")
    assert fixed.epochs_run == 1
