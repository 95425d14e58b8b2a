"""CLI ``cropseq train``: outputs, YAML config, RandomForest, resume, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from _data_fixtures import write_table

from cropseq.cli import main
from cropseq.predictors.deep import DeepPredictor

FAST_YAML = """\
hidden_size: 16
num_layers: 1
encoder_width: 16
encoder_dim: 16
lr: 0.03
threads: 1
doy_shift: 0
"""


@pytest.fixture()
def table(tmp_path: Path) -> Path:
    return write_table(tmp_path / "samples.csv")


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    p = tmp_path / "fast.yaml"
    p.write_text(FAST_YAML)
    return p


def _one_line_error(capsys: pytest.CaptureFixture[str], rc: int, pattern: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert pattern in err, err
    return err


def test_train_writes_model_history_curves(tmp_path: Path, table: Path, config: Path, capsys) -> None:
    out = tmp_path / "model.pt"
    rc = main(["train", "--samples", str(table), "--out", str(out), "--config", str(config),
               "--epochs", "3", "--batch-size", "8", "--device", "cpu", "--seed", "1", "--bands", "swir,ndvi",
               "--no-bidirectional", "--arch", "gru"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert out.is_file() and (tmp_path / "model.history.csv").is_file() and (tmp_path / "model.curves.png").is_file()
    assert "epoch   3/3" in cap.err and str(out) in cap.out
    pred = DeepPredictor.load(out, device="cpu")
    assert pred.bands == ["swir", "ndvi"]
    tr = pred.meta["training"]
    assert (tr["epochs"], tr["batch_size"], tr["seed"], tr["hidden_size"], tr["arch"], tr["bidirectional"]) == (3, 8, 1, 16, "gru", False)
    assert len(pd.read_csv(tmp_path / "model.history.csv")) == 3


def test_train_explicit_outputs_val_table_and_resume(tmp_path: Path, table: Path, config: Path, capsys) -> None:
    val = write_table(tmp_path / "val.csv", n=12, seed=5)
    out = tmp_path / "m.pt"
    args = ["train", "--samples", str(table), "--val-samples", str(val), "--out", str(out), "--config", str(config),
            "--epochs", "2", "--history", str(tmp_path / "h.csv"), "--plot", str(tmp_path / "c.png"), "-q"]
    assert main(args) == 0
    h = pd.read_csv(tmp_path / "h.csv")
    assert h["val_accuracy"].notna().all() and (tmp_path / "c.png").is_file()
    assert capsys.readouterr().err == ""
    assert main(args + ["--resume"]) == 0  # finished run: nothing left to do
    assert "optimizer" not in torch.load(out, map_location="cpu", weights_only=True)


@pytest.mark.e2e
def test_train_random_forest(tmp_path: Path, table: Path) -> None:
    out = tmp_path / "rf.skops"
    assert main(["train", "--samples", str(table), "--out", str(out), "--arch", "rf", "--seed", "0"]) == 0
    from cropseq.predictors import load_predictor

    assert load_predictor(out).kind == "rf"


@pytest.mark.parametrize(
    "extra,pattern",
    [
        (["--patch", "2"], "--patch"),
        (["--patch", "-1"], "--patch"),
        (["--k1", "2", "--k2", "3"], "k2"),
        (["--k2", "3"], "k1"),
        (["--epochs", "0"], "--epochs"),
        (["--arch", "transformer"], "--arch"),
        (["--device", "tpu"], "--device"),
        (["--bands", "ndvi,blue"], "blue"),
        (["--patch", "3"], "patch"),
    ],
)
def test_option_errors_exit_2_with_one_line(tmp_path: Path, table: Path, capsys, extra: list[str], pattern: str) -> None:
    rc = main(["train", "--samples", str(table), "--out", str(tmp_path / "m.pt"), "--epochs", "1", *extra])
    _one_line_error(capsys, rc, pattern)
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.e2e
def test_file_errors_exit_2(tmp_path: Path, table: Path, capsys) -> None:
    rc = main(["train", "--samples", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "m.pt")])
    _one_line_error(capsys, rc, "nope.csv")
    rc = main(["train", "--samples", str(table), "--out", str(tmp_path / "missing" / "m.pt")])
    _one_line_error(capsys, rc, "does not exist")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    rc = main(["train", "--samples", str(table), "--out", str(tmp_path / "m.pt"), "--config", str(bad)])
    err = _one_line_error(capsys, rc, "epochz")
    assert "bad.yaml" in err
    rc = main(["train", "--samples", str(table), "--out", str(tmp_path / "m.pt"), "--config", str(tmp_path / "none.yaml")])
    _one_line_error(capsys, rc, "none.yaml")


@pytest.mark.e2e
def test_interrupted_run_is_refused_until_finished(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A run killed after epoch 1 of 3: no model.pt; predict/evaluate refuse the .partial state unless
    --allow-incomplete; --resume refuses swapped train/validation tables and finishes the same run."""
    from _data_fixtures import run_cli, tiny_models

    from cropseq.samples import read_samples, table_to_arrays
    from cropseq.training import TrainConfig, train_model
    from cropseq.training.config import load_yaml_options

    m = tiny_models(tmp_path_factory)
    tr, va = tmp_path / "train.csv", tmp_path / "val.csv"
    assert run_cli(["split", "--samples", m["samples"], "--train", tr, "--val", va, "--val-fraction", "0.3"]).rc == 0
    out, partial = tmp_path / "model.pt", tmp_path / "model.pt.partial"
    cfg = TrainConfig.from_dict({**load_yaml_options(m["config"]), "epochs": 3})
    arrays = [table_to_arrays(read_samples(p), where=p) for p in (tr, va)]
    train_model(*arrays, cfg, out, progress=False, on_epoch_end=lambda row: row["epoch"] == 1)  # "killed" after epoch 1
    assert partial.is_file() and not out.exists()

    res = run_cli(["evaluate", "--model", out, "--samples", va, "--out", tmp_path / "e.json"])
    assert res.rc == 2 and "model file not found: its training is unfinished (model.pt.partial" in res.err, res
    for cmd in (["evaluate", "--model", partial, "--samples", va, "--out", tmp_path / "e.json"],
                ["predict", "--model", partial, "--stack", m["stack"], "--out", tmp_path / "map.tif", "--workers", "0", "-q"]):
        res = run_cli(cmd)
        assert res.rc == 2 and res.err.count("\n") == 1, res
        assert "incomplete checkpoint: training stopped after epoch 1 of 3" in res.err and "--allow-incomplete" in res.err, res
        res = run_cli([*cmd, "--allow-incomplete"])
        assert res.rc == 0, res
    assert (tmp_path / "map.tif").is_file() and (tmp_path / "e.json").is_file()

    base = ["train", "--config", m["config"], "--epochs", "3", "--out", out, "--resume", "-q"]
    res = run_cli([*base, "--samples", va, "--val-samples", tr])  # swapped tables
    assert res.rc == 2 and "model.pt.partial: cannot resume: training data differs" in res.err, res
    assert "validation data differs" in res.err and not out.exists()
    res = run_cli([*base, "--samples", tr, "--val-samples", va])
    assert res.rc == 0, res
    assert out.is_file() and not partial.exists()
    assert len(pd.read_csv(tmp_path / "model.history.csv")) == 3
    assert run_cli(["evaluate", "--model", out, "--samples", va, "--out", tmp_path / "e.json"]).rc == 0
