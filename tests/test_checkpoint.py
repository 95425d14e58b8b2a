"""The checkpoint file: ARCHITECTURE.md's format, weights_only loading, error messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cropseq.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint, save_checkpoint
from cropseq.errors import CropseqError
from cropseq.models import DeepPredictor
from cropseq.predictor import Predictor, load_predictor
from cropseq.training import TrainConfig, train_model

from test_training import FAST, toy_sequences


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple:
    d = tmp_path_factory.mktemp("ck")
    data = toy_sequences(n=24, p=3)
    res = train_model(data, None, TrainConfig(epochs=2, **FAST), d / "m.pt", progress=False)
    return res, data


def test_format_loads_with_weights_only(trained) -> None:
    res, data = trained
    raw = torch.load(res.path, map_location="cpu", weights_only=True)
    assert raw["format"] == FORMAT and raw["format_version"] == FORMAT_VERSION
    assert set(raw) == {"format", "format_version", "meta_json", "state_dict"}
    assert isinstance(raw["meta_json"], str)
    meta = json.loads(raw["meta_json"])
    for key in ("cropseq_version", "arch", "bands", "patch", "norm", "classes", "temporal_encoding", "head", "epoch", "training"):
        assert key in meta, key
    assert meta["bands"] == ["ndvi", "swir"] and meta["patch"] == 3 and meta["epoch"] == 2
    assert len(meta["norm"]["mean"]) == 2 and len(meta["norm"]["std"]) == 2
    assert [c["name"] for c in meta["classes"]] == ["crop0", "crop1", "crop2"]
    assert all(isinstance(v, torch.Tensor) for v in raw["state_dict"].values())
    # The normalisation in meta is the one inside the model.
    np.testing.assert_allclose(meta["norm"]["mean"], raw["state_dict"]["norm_center"].numpy())


def test_load_predictor_dispatch_and_protocol(trained) -> None:
    res, data = trained
    pred = load_predictor(res.path, device="cpu")
    assert isinstance(pred, DeepPredictor) and isinstance(pred, Predictor)
    p = pred.predict_proba(data.x, data.doy)
    assert p.shape == (24, 3) and np.allclose(p.sum(1), 1, atol=1e-5)


def test_roundtrip_and_resume_keys(tmp_path) -> None:
    sd = {"w": torch.arange(3.0)}
    meta = {k: 1 for k in ("arch", "bands", "patch", "norm", "classes", "temporal_encoding", "head")}
    save_checkpoint(tmp_path / "c.pt", sd, meta, optimizer={"state": {}, "loop": {"epoch": 3}}, rng={"torch": torch.get_rng_state()})
    ck = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(ck.state_dict["w"], sd["w"]) and ck.meta == meta
    assert ck.optimizer["loop"]["epoch"] == 3 and ck.rng["torch"].dtype == torch.uint8


def test_bad_files(tmp_path) -> None:
    with pytest.raises(CropseqError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip")
    with pytest.raises(CropseqError, match="junk.pt") as e:
        load_checkpoint(junk)
    assert "\n" not in str(e.value)
    cut = tmp_path / "cut.pt"  # a truncated real file: torch's message is cut to its first sentence
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, cut)
    cut.write_bytes(cut.read_bytes()[:2000])
    with pytest.raises(CropseqError, match=r"not a readable cropseq checkpoint \(PytorchStreamReader[^.()]*\)$"):
        load_checkpoint(cut)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CropseqError, match="format tag"):
        load_checkpoint(other)
    newer = tmp_path / "newer.pt"
    torch.save({"format": FORMAT, "format_version": 99, "meta_json": "{}", "state_dict": {}}, newer)
    with pytest.raises(CropseqError, match="newer"):
        load_checkpoint(newer)
    lacking = tmp_path / "lacking.pt"
    torch.save({"format": FORMAT, "format_version": 1, "meta_json": "{}", "state_dict": {}}, lacking)
    with pytest.raises(CropseqError, match="lacks"):
        load_checkpoint(lacking)

    class Evil:  # pickled code is refused by weights_only loading
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "x": Evil()}, evil)
    with pytest.raises(CropseqError, match="not a readable"):
        load_checkpoint(evil)
    with pytest.raises(CropseqError, match="not JSON"):
        save_checkpoint(tmp_path / "x.pt", {}, {"a": object()})
