"""The checkpoint file: ARCHITECTURE.md's format, weights_only loading, error messages."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from _data_fixtures import FAST, toy_sequences

from cropseq.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint, save_checkpoint
from cropseq.errors import CropseqError
from cropseq.predictors import Predictor, load_predictor
from cropseq.predictors.deep import DeepPredictor
from cropseq.training import TrainConfig, train_model


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


def _edit_meta(key: str, value: object) -> object:
    """An edit of the metadata record: set ``key`` (dotted) to ``value`` (a callable edits in place)."""

    def edit(meta: dict) -> None:
        *parents, last = key.split(".")
        d = meta
        for p in parents:
            d = d[p]
        if callable(value):
            value(d[last])
        else:
            d[last] = value

    return edit


META_EDITS = {
    "one class fewer": (_edit_meta("classes", lambda c: c.pop()), r"2 classes but the model has 3 outputs"),
    "one class more": (_edit_meta("classes", lambda c: c.append({"code": 9, "name": "x"})), r"4 classes but the model has 3"),
    "classes not a list": (_edit_meta("classes", "crop0,crop1"), r"classes must be a list"),
    "bad class code": (_edit_meta("classes", lambda c: c[0].update(code="one")), r"classes: invalid literal"),
    "one band fewer": (_edit_meta("bands", lambda b: b.pop()), r"1 bands \(ndvi\) but the model takes 2"),
    "bands a string": (_edit_meta("bands", "ndvi,swir"), r"bands must be a list of distinct band names"),
    "duplicate band": (_edit_meta("bands", ["ndvi", "ndvi"]), r"distinct band names"),
    "norm length": (_edit_meta("norm.mean", lambda m: m.pop()), r"norm\.mean has 1 values for 2 bands"),
    "norm values": (_edit_meta("norm.std", [9.0, 9.0]), r"norm\.std disagrees with the normalisation stored in the weights"),
    "arch a string": (_edit_meta("arch", "gru"), r"arch must be a record of hyper-parameters, got str 'gru'"),
    "arch type": (_edit_meta("arch.hidden_size", "16"), r"arch\.hidden_size must be of type int, got '16'"),
    "arch bool": (_edit_meta("arch.bidirectional", "yes"), r"arch\.bidirectional must be of type bool"),
    "arch n_bands": (_edit_meta("arch.n_bands", 3), r"2 bands \(ndvi, swir\) but the model takes 3"),
    "arch cell": (_edit_meta("arch.cell", "gru"), r"weights do not match its architecture record \(fwd\.0\.weight_ih_l0 has shape"),
    "arch hidden": (_edit_meta("arch.hidden_size", 32), r"weights do not match its architecture record \(.* has shape"),
    "arch unknown cell": (_edit_meta("arch.cell", "elman"), r"unknown recurrent cell 'elman'"),
    "patch": (_edit_meta("patch", 5), r"patch 5 but the model's patch is 3"),
    "head": (_edit_meta("head", "many-to-many"), r"head 'many-to-many' but the model's head is 'many-to-one'"),
}


@pytest.mark.parametrize("edit,pattern", list(META_EDITS.values()), ids=list(META_EDITS))
def test_metadata_that_disagrees_with_the_weights_is_one_line(trained, tmp_path, capsys, edit, pattern) -> None:
    """An edited meta_json fails at load time, naming the file and the field, not deep in torch/numpy."""
    from cropseq.cli import main

    res, data = trained
    raw = torch.load(res.path, map_location="cpu", weights_only=True)
    meta = json.loads(raw["meta_json"])
    edit(meta)
    bad = tmp_path / "edited.pt"
    torch.save({**raw, "meta_json": json.dumps(meta)}, bad)
    with pytest.raises(CropseqError, match=pattern) as e:
        load_predictor(bad, device="cpu")
    assert str(e.value).startswith(f"{bad}: checkpoint ") and "\n" not in str(e.value)
    table = tmp_path / "t.csv"
    _write_table(table, data)
    rc = main(["evaluate", "--model", str(bad), "--samples", str(table), "--out", str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err and re.search(pattern, err), err


@pytest.mark.parametrize("version", ["1", 1.0, True, 0, None, [1]])
def test_format_version_that_is_not_a_version(tmp_path, version) -> None:
    """``"1"`` (a string) is not a valid version; it must not read as "newer"."""
    path = tmp_path / "v.pt"
    torch.save({"format": FORMAT, "format_version": version, "meta_json": "{}", "state_dict": {}}, path)
    with pytest.raises(CropseqError, match=r"checkpoint format version .* is not a valid version") as e:
        load_checkpoint(path)
    assert "newer" not in str(e.value)


def _write_table(path, data) -> None:
    """Sequences of the toy data (patch 3) as a samples table with patch columns."""
    import pandas as pd

    n, t, c, p, _ = data.x.shape
    cols = {"sample_id": np.repeat(np.arange(n), t), "label": np.repeat(data.labels, t), "t": np.tile(np.arange(t), n)}
    for k, band in enumerate(data.bands):
        cols[band] = data.x[:, :, k, p // 2, p // 2].ravel()
        for i in range(p):
            for j in range(p):
                cols[f"{band}@r{i}c{j}"] = data.x[:, :, k, i, j].ravel()
    pd.DataFrame(cols).to_csv(path, index=False)


def test_legacy_arch_record_is_upgraded_on_load(tmp_path) -> None:
    """A record written before ``cell``/``encoder_time``/``pooling``/``season_*`` existed means
    the model of that time (LSTM, mean+max pooling, no date in the encoder), not today's
    defaults (GRU, season pooling, date in the encoder): it loads and predicts identically."""
    from cropseq.classes import ClassTable
    from cropseq.models.recurrent import LEGACY_ARCH, ArchConfig, SequenceClassifier

    torch.manual_seed(0)
    old = ArchConfig(n_bands=2, n_classes=3, hidden_size=8, encoder_width=8, encoder_dim=6,
                     cell="lstm", pooling="mean-max", encoder_time=False)  # fmt: skip
    model = SequenceClassifier(old, torch.tensor([0.1, 0.2]), torch.tensor([1.0, 2.0])).eval()
    record = {k: v for k, v in old.to_dict().items() if k not in ("cell", "encoder_time", "pooling", "season_bins", "season_sigma")}
    meta = {"arch": record, "bands": ["red", "nir"], "patch": 1, "norm": {"mean": [0.1, 0.2], "std": [1.0, 2.0]},
            "classes": ClassTable.from_names(["a", "b", "c"]).to_records(), "temporal_encoding": {}, "head": "many-to-one"}  # fmt: skip
    save_checkpoint(tmp_path / "old.pt", model.state_dict(), meta)
    assert ArchConfig.from_dict({"n_bands": 2, "n_classes": 3}).cell == "gru"  # today's default differs
    loaded = load_predictor(tmp_path / "old.pt", device="cpu", engine="torch")  # float32, as the reference
    assert loaded.model.arch == old and LEGACY_ARCH["pooling"] == "mean-max"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 9, 2, 1, 1)).astype(np.float32)
    doy = np.tile(np.arange(9, dtype=np.float32) * 20 + 10, (7, 1))
    with torch.no_grad():
        want = model.sequence_proba(model(torch.from_numpy(x), torch.from_numpy(doy)), model.valid_mask(torch.from_numpy(x)))
    np.testing.assert_array_equal(loaded.predict_proba(x, doy), want.numpy())
