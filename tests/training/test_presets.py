"""Training presets (``fast`` default, ``accurate``), the long-series TBPTT switch, ``--preset``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from _data_fixtures import FAST, assert_user_error, run_cli, toy_sequences, write_table

from cropseq.errors import CropseqError
from cropseq.models.recurrent import ArchConfig
from cropseq.predictors.deep import DeepPredictor
from cropseq.training import TrainConfig, train_model
from cropseq.training.config import DEFAULT_PRESET, FAST_PRESET, PRESETS
from cropseq.training.loop import tbptt_window

#: The defaults of TrainConfig before presets existed (commit 413a48f): ``accurate`` must equal them.
BEFORE = {"hidden_size": 128, "num_layers": 2, "encoder_width": 64, "encoder_dim": 64, "pooling": "season",
          "bidirectional": True, "arch": "gru", "dropout": 0.2, "season_bins": 72, "epochs": None, "val_fraction": 0.0,
          "patience": None, "k1": None, "k2": None, "min_epochs": 60, "batch_size": 64, "lr": 3e-3}  # fmt: skip

#: Tiny-run options that no preset sets (the model size comes from the preset under test).
RUN = {k: v for k, v in FAST.items() if k not in FAST_PRESET and k not in ("hidden_size", "num_layers", "encoder_width", "encoder_dim")}


def test_default_is_the_fast_preset() -> None:
    cfg = TrainConfig()
    assert cfg.preset == DEFAULT_PRESET == "fast"
    assert {k: getattr(cfg, k) for k in FAST_PRESET} == FAST_PRESET
    assert (cfg.arch, cfg.hidden_size, cfg.num_layers, cfg.encoder_width, cfg.encoder_dim, cfg.pooling) == (
        "lstm", 32, 1, 32, 32, "season")
    # Issue 15's measured choice: every training sequence trains (no hold-out); early stopping
    # on a validation table when one is given.
    assert (cfg.val_fraction, cfg.patience, cfg.epochs, cfg.long_series_k1) == (0.0, 10, None, None)
    assert set(PRESETS) == {"fast", "accurate"} and all(set(p) == set(FAST_PRESET) for p in PRESETS.values())


def test_accurate_preset_is_the_old_default_and_arch_defaults_are_unchanged() -> None:
    cfg = TrainConfig(preset="accurate")
    assert {k: getattr(cfg, k) for k in BEFORE} == BEFORE
    assert cfg.long_series_k1 is None  # full BPTT on any length, as before
    # ArchConfig (what old checkpoints' records imply) keeps the old defaults.
    arch = ArchConfig(n_bands=2, n_classes=3)
    assert (arch.hidden_size, arch.num_layers, arch.encoder_width, arch.encoder_dim, arch.pooling) == (128, 2, 64, 64, "season")
    assert cfg.arch_config(2, 3, 1, 23) == arch


def test_explicit_options_win_over_the_preset(tmp_path: Path) -> None:
    assert TrainConfig(preset="accurate", hidden_size=16).hidden_size == 16
    assert TrainConfig(preset="accurate", hidden_size=16).num_layers == 2
    assert TrainConfig(hidden_size=128).num_layers == 1
    assert TrainConfig(preset="fast", long_series_k1=None).long_series_k1 is None  # an explicit None wins too
    y = tmp_path / "c.yaml"
    y.write_text("train:\n  preset: accurate\n  num_layers: 1\n")
    cfg = TrainConfig.from_yaml(y, {"hidden_size": 8})
    assert (cfg.preset, cfg.hidden_size, cfg.num_layers, cfg.encoder_width) == ("accurate", 8, 1, 64)
    # The record round-trips: a checkpoint's training record rebuilds the same options.
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert dataclasses.asdict(TrainConfig.from_dict({"preset": "fast"})) == dataclasses.asdict(TrainConfig())


def test_unknown_preset_is_a_one_line_error(tmp_path: Path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("preset: quick\n")
    with pytest.raises(CropseqError, match="unknown preset 'quick' \\(choose from fast, accurate\\)") as e:
        TrainConfig.from_yaml(y)
    assert str(y) in str(e.value)
    table = write_table(tmp_path / "s.csv")
    res = run_cli(["train", "--samples", table, "--out", tmp_path / "m.pt", "--preset", "quick"])
    assert_user_error(res, "unknown preset 'quick'", outputs=[tmp_path / "m.pt"])


def test_cli_preset_is_recorded_and_explicit_options_win(tmp_path: Path) -> None:
    table = write_table(tmp_path / "s.csv")
    y = tmp_path / "c.yaml"
    y.write_text("threads: 1\nhidden_size: 8\n")
    out = tmp_path / "m.pt"
    res = run_cli(["train", "--samples", table, "--out", out, "--preset", "accurate", "--config", y, "--epochs", "1", "-q"])
    assert res.rc == 0, res
    meta = DeepPredictor.load(out, device="cpu").meta
    assert meta["training"]["preset"] == "accurate"
    assert (meta["arch"]["hidden_size"], meta["arch"]["num_layers"], meta["arch"]["encoder_width"]) == (8, 2, 64)
    res = run_cli(["train", "--samples", table, "--out", tmp_path / "f.pt", "--epochs", "1", "--config", y])
    assert res.rc == 0, res
    assert "training lstm bi hidden 8 x 1 layer (fast preset)" in res.err
    assert DeepPredictor.load(tmp_path / "f.pt", device="cpu").meta["training"]["preset"] == "fast"


def test_long_series_switch_threshold() -> None:
    fast, accurate = TrainConfig(), TrainConfig(preset="accurate")
    assert tbptt_window(fast, 60) == (None, None)  # at the threshold: full BPTT
    assert tbptt_window(fast, 149) == (None, None)  # measured faster than TBPTT at the same accuracy
    assert tbptt_window(TrainConfig(long_series_k1=32), 61) == (32, 32)  # the switch, when asked for
    assert tbptt_window(accurate, 149) == (None, None)
    assert tbptt_window(TrainConfig(k1=10, k2=5), 149) == (10, 5)  # explicit k1/k2 win
    assert tbptt_window(TrainConfig(long_series_dates=8, long_series_k1=4), 10) == (4, 4)


def test_long_series_switch_is_recorded_in_the_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = toy_sequences(n=24, t=12)
    small = dict(RUN, hidden_size=8, encoder_width=8, encoder_dim=8)
    train_model(data, None, TrainConfig(epochs=1, long_series_dates=10, long_series_k1=4, **small), tmp_path / "long.pt")
    assert "truncated BPTT k1=4 k2=4" in capsys.readouterr().err
    tr = DeepPredictor.load(tmp_path / "long.pt", device="cpu").meta["training"]
    assert tr["tbptt"] == {"k1": 4, "k2": 4, "auto": True}
    assert (tr["long_series_k1"], tr["long_series_dates"], tr["k1"]) == (4, 10, None)
    train_model(data, None, TrainConfig(epochs=1, long_series_dates=12, **small), tmp_path / "short.pt")
    assert DeepPredictor.load(tmp_path / "short.pt", device="cpu").meta["training"]["tbptt"] is None


def test_validation_is_held_out_only_with_enough_sequences_and_groups() -> None:
    from cropseq.training.loop import holds_out_validation

    data = toy_sequences(n=240)  # 120 groups (pairs of pixels)
    cfg = TrainConfig(val_fraction=0.1, small_data=200)
    assert holds_out_validation(data, cfg)  # 240 >= 200 sequences, 12 held-out groups
    assert not holds_out_validation(data, TrainConfig(val_fraction=0.1, small_data=300))  # too few sequences
    assert not holds_out_validation(data, TrainConfig(val_fraction=0.0, small_data=10))  # nothing asked
    few = dataclasses.replace(data, groups=np.array([f"g{i % 50}" for i in range(240)]))
    assert not holds_out_validation(few, cfg)  # 50 groups x 0.1 = 5 held-out fields: too noisy


def test_fast_preset_trains_every_sequence_and_early_stopping_is_asked_for(tmp_path: Path) -> None:
    """The default holds nothing out, even with enough data for a split; ``val_fraction`` +
    ``patience`` still hold out fields and stop on them, and a small set (below
    ``small_data``) then trains the fixed schedule on everything."""
    small = dict(RUN, hidden_size=8, encoder_width=8, encoder_dim=8)
    big = toy_sequences(n=240)  # 120 fields: 12 held out when asked
    r = train_model(big, None, TrainConfig(epochs=2, **{**small, "small_data": 200}), tmp_path / "all.pt")
    assert r.n_val == 0 and r.n_train == 240
    early = {**small, "small_data": 200, "val_fraction": 0.1, "patience": 10}
    r = train_model(big, None, TrainConfig(epochs=2, **early), tmp_path / "big.pt")
    assert r.n_val > 0 and r.n_train + r.n_val == 240
    r = train_model(toy_sequences(n=60), None, TrainConfig(epochs=2, **{**early, "small_data": 300}), tmp_path / "small.pt")
    assert r.n_val == 0 and r.n_train == 60


def test_fast_preset_stops_early_on_a_given_validation_table_only(tmp_path: Path) -> None:
    """With ``--val-samples`` the default stops once validation stops improving and restores the
    best epoch; without one it trains the whole schedule (nothing held out to stop on)."""
    small = dict(RUN, hidden_size=8, encoder_width=8, encoder_dim=8, lr=1e-9)  # nothing improves
    train, val = toy_sequences(n=40, seed=1), toy_sequences(n=20, seed=2)
    r = train_model(train, val, TrainConfig(epochs=15, **small), tmp_path / "es.pt")
    assert TrainConfig().patience == 10 and r.epochs_run == 11 and r.best_epoch == 1
    r = train_model(train, None, TrainConfig(epochs=15, **small), tmp_path / "all.pt")
    assert r.epochs_run == 15 and r.n_val == 0
