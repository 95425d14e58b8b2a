"""The simple tanh RNN cell (``--arch rnn``): config, checkpoint round trip, train + predict CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from _data_fixtures import TINY_TRAIN_CONFIG, run_cli, write_grid_points, write_stack
from _paths import REPO

from cropseq.checkpoint import save_checkpoint
from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.models import ArchConfig, SequenceClassifier
from cropseq.models.recurrent import CELLS
from cropseq.predictors.deep import DeepPredictor
from cropseq.training import TrainConfig


def _rnn_model(bi: bool = True, layers: int = 2) -> SequenceClassifier:
    torch.manual_seed(0)
    arch = ArchConfig(n_bands=2, n_classes=3, patch=3, cell="rnn", bidirectional=bi, hidden_size=5,
                      num_layers=layers, dropout=0.0, encoder_width=4, encoder_dim=4)
    return SequenceClassifier(arch, torch.tensor([0.5, 1.0]), torch.tensor([2.0, 3.0])).eval()


@pytest.mark.parametrize("bi,layers", [(True, 2), (False, 1)])
def test_rnn_cell_is_a_stacked_tanh_rnn(bi: bool, layers: int) -> None:
    m = _rnn_model(bi, layers)
    cells = list(m.fwd) + list(m.bwd)
    assert len(cells) == layers * (2 if bi else 1)
    assert all(type(c) is torch.nn.RNN and c.nonlinearity == "tanh" and c.num_layers == 1 for c in cells)
    assert m.fwd[-1].input_size == (5 * (2 if bi else 1) if layers > 1 else 4 + 3)


def test_train_config_accepts_rnn_and_lists_it() -> None:
    cfg = TrainConfig(arch="rnn").validate()
    assert cfg.arch_config(n_bands=2, n_classes=3, patch=1, period_steps=5).cell == "rnn"
    with pytest.raises(CropseqError, match="lstm, gru, rnn"):
        TrainConfig(arch="elman").validate()
    with pytest.raises(CropseqError, match="lstm, gru, rnn"):
        ArchConfig(n_bands=2, n_classes=3, cell="elman")


def test_workflow_schema_lists_every_cell() -> None:
    """The workflow config's ``train.arch`` enum offers exactly the package's cells (or null: the preset's)."""
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert tuple(schema["properties"]["train"]["properties"]["arch"]["enum"]) == (*CELLS, None)


def test_rnn_checkpoint_round_trip(tmp_path: Path) -> None:
    """An rnn record and its weights load back into the same function; old records stay LSTM."""
    m = _rnn_model()
    classes = ClassTable.from_names(["a", "b", "c"])
    meta = {"arch": m.arch.to_dict(), "bands": ["red", "nir"], "patch": 3,
            "norm": {"mean": m.norm_center.tolist(), "std": m.norm_scale.tolist()},
            "classes": classes.to_records(), "temporal_encoding": {}, "head": m.arch.head, "epoch": 1}
    path = save_checkpoint(tmp_path / "rnn.pt", m.state_dict(), meta)
    pred = DeepPredictor.load(path, device="cpu", engine="torch")  # float32, as the reference
    assert pred.model.arch == m.arch and type(pred.model.fwd[0]) is torch.nn.RNN
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 7, 2, 3, 3)).astype(np.float32)
    x[1, 5:] = np.nan  # a shorter sequence
    doy = np.tile((np.arange(7) * 20 + 3).astype(np.float32), (6, 1))
    with torch.no_grad():
        ref = m.sequence_proba(m(torch.from_numpy(x), torch.from_numpy(doy)), m.valid_mask(torch.from_numpy(x)))
    np.testing.assert_allclose(pred.predict_proba(x, doy), ref.numpy(), atol=1e-6, rtol=1e-5)
    legacy = {k: v for k, v in m.arch.to_dict().items() if k != "cell"}
    assert ArchConfig.from_record(legacy).cell == "lstm"  # a record without the key: the LSTM of old


def test_cli_train_arch_rnn_then_predict(tmp_path: Path) -> None:
    """``cropseq train --arch rnn`` then ``cropseq predict`` on a tiny scene: a full map."""
    stack, _ = write_stack(tmp_path / "stack", shape=(8, 8), n_dates=4, bands=("red", "nir"))
    samples = tmp_path / "samples.csv"
    points = write_grid_points(tmp_path / "points.csv")
    res = run_cli(["samples", "--stack", stack, "--labels", points, "--out", samples])
    assert res.rc == 0, res
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY_TRAIN_CONFIG, "num_layers": 2}))
    model = tmp_path / "rnn.pt"
    res = run_cli(["train", "--samples", samples, "--out", model, "--config", config, "--arch", "rnn",
                   "--k1", "2", "-q"])  # fmt: skip
    assert res.rc == 0, res
    pred = DeepPredictor.load(model, device="cpu")
    assert pred.meta["arch"]["cell"] == "rnn" and pred.meta["training"]["arch"] == "rnn"
    assert type(pred.model.bwd[1]) is torch.nn.RNN
    out = tmp_path / "map.tif"
    res = run_cli(["predict", "--model", model, "--stack", stack, "--out", out, "--workers", "0", "--threads", "1",
                   "-q"])  # fmt: skip
    assert res.rc == 0, res
    with rasterio.open(out) as r:
        codes = r.read(1)
    assert codes.shape == (8, 8) and (codes > 0).all()
