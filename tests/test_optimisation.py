"""The options every training loop shares (:mod:`cropseq.optimisation`): declared once, defaults kept."""

from __future__ import annotations

import dataclasses

import pytest

from cropseq.dense.options import DenseConfig
from cropseq.distill import DistillConfig
from cropseq.errors import CropseqError
from cropseq.optimisation import OptimisationOptions, SupervisedOptions
from cropseq.training.config import TrainConfig

#: The defaults before the shared options existed (commit 3b2a2b8), every option.
TRAIN_BEFORE = {
    "preset": "fast", "arch": "lstm", "bidirectional": True, "hidden_size": 32, "num_layers": 1, "dropout": 0.2,
    "encoder_width": 32, "encoder_dim": 32, "encoder_time": True, "head": "many-to-one", "pooling": "season",
    "season_bins": 72, "season_sigma": 6.0, "patch": None, "bands": None, "k1": None, "k2": None, "grad_clip": 1.0,
    "long_series_k1": None, "long_series_dates": 60, "epochs": None, "min_epochs": 60, "min_updates": 400,
    "batch_size": 64, "min_batches": 4, "lr": 0.003, "weight_decay": 0.01, "schedule": "onecycle", "warmup": 0.1,
    "label_smoothing": 0.1, "class_weighting": "none", "sampling": "shuffle", "normalization": "robust",
    "average_last": 0.0, "date_dropout": 0.1, "doy_shift": 8.0, "noise": 0.0, "val_fraction": 0.0, "small_data": 300,
    "patience": 10, "monitor": "val_loss", "device": "auto", "amp": True, "seed": 0, "threads": None, "resume": False,
    "history": None, "plot": None,
}  # fmt: skip
ACCURATE_BEFORE = {**TRAIN_BEFORE, "preset": "accurate", "arch": "gru", "hidden_size": 128, "num_layers": 2,
                   "encoder_width": 64, "encoder_dim": 64, "patience": None}  # fmt: skip
DENSE_BEFORE = {
    "arch": "gru", "decoder": "cnn", "window": 32, "epochs": 20, "windows_per_epoch": 64, "batch_size": 4, "lr": 0.002,
    "weight_decay": 0.01, "schedule": "onecycle", "warmup": 0.1, "class_weighting": "sqrt", "hidden_size": 32,
    "num_layers": 1, "bidirectional": True, "patch": 1, "pooling": "season", "date_dropout": 0.1, "doy_shift": 8.0,
    "decoder_width": 32, "decoder_layers": 2, "val_fraction": 0.2, "grad_clip": 1.0, "seed": 0, "device": "auto",
}  # fmt: skip
#: ``weight_decay`` and ``grad_clip`` were hard-coded in ``distill._train`` (1e-4 and 1.0) before they were options.
DISTILL_BEFORE = {
    "pixels": 20000, "epochs": 20, "batch_size": 256, "lr": 0.003, "temperature": 2.0, "seed": 0, "hidden_size": 32,
    "num_layers": 1, "encoder_width": 16, "min_valid": 3, "block": 256, "max_blocks": 64, "threads": None,
    "weight_decay": 1e-4, "grad_clip": 1.0,
}  # fmt: skip

CONFIGS = [(TrainConfig, SupervisedOptions), (DenseConfig, SupervisedOptions), (DistillConfig, OptimisationOptions)]


@pytest.mark.parametrize("config,shared", CONFIGS)
def test_every_training_config_inherits_the_one_set_of_shared_options(config: type, shared: type) -> None:
    """Each shared option is declared once; a config redeclares one only to change its default or narrow its type."""
    assert issubclass(config, shared) and issubclass(config, OptimisationOptions)
    base = {f.name: f for f in dataclasses.fields(shared)}
    assert set(base) <= {f.name for f in dataclasses.fields(config)}
    for name in set(config.__dict__["__annotations__"]) & set(base):
        own = config.__dataclass_fields__[name]
        assert (own.default, own.type) != (base[name].default, base[name].type), f"{config.__name__}.{name} repeats the shared declaration"


def test_defaults_are_the_same_as_before_the_options_were_shared() -> None:
    assert TrainConfig().to_dict() == TRAIN_BEFORE
    assert TrainConfig(preset="accurate").to_dict() == ACCURATE_BEFORE
    assert dataclasses.asdict(DenseConfig()) == DENSE_BEFORE
    assert dataclasses.asdict(DistillConfig()) == DISTILL_BEFORE


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda: DenseConfig(lr=0.0), "lr must be > 0, got 0.0"),
        (lambda: DenseConfig(warmup=1.0), "warmup must be in [0, 1), got 1.0"),
        (lambda: DenseConfig(schedule="step"), "schedule must be one of onecycle, cosine, constant, got 'step'"),
        (lambda: DenseConfig(device="tpu"), "--device must be one of auto, cpu, cuda, got 'tpu'"),
        (lambda: DistillConfig(batch_size=0), "batch_size must be >= 1, got 0"),
        (lambda: DistillConfig(weight_decay=-1.0), "weight_decay must be >= 0, got -1.0"),
        (lambda: TrainConfig(warmup=1.0).validate(), "warmup must be in [0, 1), got 1.0"),
        (lambda: TrainConfig(date_dropout=1.0).validate(), "date_dropout must be in [0, 1), got 1.0"),
    ],
)
def test_a_bad_shared_option_is_the_same_one_line_error_in_every_config(make, needle: str) -> None:
    with pytest.raises(CropseqError) as e:
        make()
    assert e.value.message == needle


def test_configs_are_frozen_values() -> None:
    """Checked once when made (``TrainConfig``: by ``validate``), they cannot drift afterwards."""
    cfg = TrainConfig(preset="accurate")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    assert dataclasses.replace(cfg, lr=1e-3).to_dict() == {**ACCURATE_BEFORE, "lr": 1e-3}
    with pytest.raises(dataclasses.FrozenInstanceError):
        DenseConfig().lr = 1.0  # type: ignore[misc]
