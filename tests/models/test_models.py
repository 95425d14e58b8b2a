"""Model shapes, masking, padding, the valid-convolution encoder and the deep predictor."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

from cropseq.checkpoint import save_checkpoint
from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.models import ArchConfig, PatchEncoder, SequenceClassifier
from cropseq.models.recurrent import reverse_padded, run_direction, run_direction_outputs, sequence_lengths
from cropseq.predictors import band_indices
from cropseq.predictors.deep import DeepPredictor

NAN = float("nan")
#: Heads under test: many-to-one with each pooling ("many-to-one" = season bins), and many-to-many.
HEADS = ["many-to-one", "mean-max", "many-to-many"]
#: Every recurrent cell (``"rnn"`` = the simple tanh RNN).
CELLS = ["lstm", "gru", "rnn"]


def _model(patch: int = 1, cell: str = "lstm", bi: bool = True, head: str = "many-to-one", layers: int = 2, k: int = 4,
           c: int = 3, encoder_time: bool = False) -> SequenceClassifier:
    torch.manual_seed(0)
    arch = ArchConfig(n_bands=c, n_classes=k, patch=patch, cell=cell, bidirectional=bi, hidden_size=8,
                      num_layers=layers, dropout=0.0, encoder_width=8, encoder_dim=6,
                      head="many-to-many" if head == "many-to-many" else "many-to-one",
                      pooling="mean-max" if head == "mean-max" else "season", period_steps=12,
                      encoder_time=encoder_time)
    return SequenceClassifier(arch, torch.tensor([0.5] * c), torch.tensor([2.0] * c)).eval()


def _data(n: int = 5, t: int = 12, c: int = 3, p: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, c, p, p, generator=g)
    doy = (torch.arange(t, dtype=torch.float32) * 16 + 5).repeat(n, 1)
    return x, doy


@pytest.mark.parametrize(
    "patch,cell,bi,head", list(itertools.product([1, 3], CELLS, [True, False], HEADS))
)
def test_shapes_and_probabilities(patch: int, cell: str, bi: bool, head: str) -> None:
    m = _model(patch, cell, bi, head)
    x, doy = _data(p=patch)
    logits = m(x, doy)
    assert logits.shape == ((5, 4) if head != "many-to-many" else (5, 12, 4))
    p = m.sequence_proba(logits, m.valid_mask(x))
    assert p.shape == (5, 4)
    torch.testing.assert_close(p.sum(1), torch.ones(5))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("bi,encoder_time", [(True, False), (False, False), (True, True)])
def test_masked_step_values_do_not_matter(head: str, bi: bool, encoder_time: bool) -> None:
    """A NaN observation and the same step holding other values but marked missing agree."""
    m = _model(patch=3, bi=bi, head=head, encoder_time=encoder_time)
    x, doy = _data(p=3)
    a = x.clone()
    a[1, 4] = NAN  # whole observation missing
    b = x.clone()
    b[1, 4] = 1e6  # garbage everywhere ...
    b[1, 4, 2, 1, 1] = NAN  # ... but one band at the centre is missing -> step invalid
    c = x.clone()
    c[1, 4, 0, 1, 1] = -NAN
    c[1, 4, 1] = -3e4
    out_a, out_b, out_c = m(a, doy), m(b, doy), m(c, doy)
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)
    torch.testing.assert_close(out_a, out_c, rtol=0, atol=0)
    # ... and the missing step really changes the result vs. the observed one.
    assert not torch.allclose(out_a[1], m(x, doy)[1])
    # Other sequences in the batch are untouched by row 1's missing step.
    torch.testing.assert_close(out_a[0], m(x, doy)[0])


def test_nan_neighbour_of_valid_centre_is_zero_filled() -> None:
    m = _model(patch=3)
    x, doy = _data(p=3)
    y = x.clone()
    y[0, 2, :, 0, 0] = NAN  # corner pixel missing, centre valid
    out = m(y, doy)
    assert torch.isfinite(out).all()
    assert m.valid_mask(y)[0, 2]


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("cell", CELLS)
def test_different_lengths_batch_like_single_sequences(head: str, cell: str) -> None:
    """Padding (NaN steps after the end) never changes a sequence's result."""
    m = _model(cell=cell, head=head)
    x, doy = _data(n=3, t=12)
    lengths = [12, 7, 9]
    batch_x = x.clone()
    batch_doy = doy.clone()
    for i, ln in enumerate(lengths):
        batch_x[i, ln:] = NAN
        batch_doy[i, ln:] = NAN
    batched = m(batch_x, batch_doy)
    for i, ln in enumerate(lengths):
        alone = m(x[i : i + 1, :ln], doy[i : i + 1, :ln])
        if head != "many-to-many":
            torch.testing.assert_close(batched[i], alone[0], atol=1e-6, rtol=1e-5)
        else:
            torch.testing.assert_close(batched[i, :ln], alone[0], atol=1e-6, rtol=1e-5)


def test_all_missing_sequence_is_uniform() -> None:
    m = _model()
    x, doy = _data()
    x[2] = NAN
    p = m.sequence_proba(m(x, doy), m.valid_mask(x))
    torch.testing.assert_close(p[2], torch.full((4,), 0.25))
    assert torch.isfinite(p).all()


def test_unknown_doy_falls_back_to_step_index() -> None:
    m = _model()
    x, _ = _data()
    nan_doy = torch.full((5, 12), NAN)
    tf = m.temporal_features(nan_doy)
    assert torch.isfinite(tf).all()
    # step t has phase 2*pi*t/period_steps (period_steps = 12 here)
    torch.testing.assert_close(tf[0, 3], torch.tensor([1.0, 0.0]), atol=1e-6, rtol=0)
    assert torch.isfinite(m(x, nan_doy)).all()


def test_season_bins_pool_by_date() -> None:
    """Each seasonal bin holds the outputs of the dates near its centre; a gap takes its neighbours'."""
    m = _model()
    b = 12
    m.arch = dataclasses.replace(m.arch, season_bins=b, season_sigma=2.0)  # narrow bins: one date each
    out = torch.randn(2, b, 5)
    phase = torch.arange(b, dtype=torch.float32).repeat(2, 1) * (2 * math.pi / b)  # one date per centre
    valid = torch.ones(2, b, dtype=torch.bool)
    valid[1, 3] = False  # cloudy date: bin 3 falls back to dates 2 and 4 (equally far)
    bins = m.season_bins(out, valid, phase).view(2, b, 5)
    torch.testing.assert_close(bins[0], out[0])
    torch.testing.assert_close(bins[1, 3], (out[1, 2] + out[1, 4]) / 2, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(bins[1, 5], out[1, 5])
    # Circular: a date just before the new year sits in the first bin, not the last.
    phase2 = torch.tensor([[2 * math.pi - 0.01, math.pi]])
    bins2 = m.season_bins(out[:1, :2], torch.ones(1, 2, dtype=torch.bool), phase2).view(b, 5)
    torch.testing.assert_close(bins2[0], out[0, 0])
    # No valid step at all: every bin is zero (and finite).
    none = m.season_bins(out[:1], torch.zeros(1, b, dtype=torch.bool), phase[:1])
    assert torch.equal(none, torch.zeros_like(none))


def test_arch_records_without_pooling_keep_mean_max() -> None:
    """Checkpoints written before ``pooling`` existed rebuild the mean+max head they were trained with."""
    record = _model(head="mean-max").arch.to_dict()
    for key in ("pooling", "season_bins", "season_sigma"):
        del record[key]
    m = SequenceClassifier(ArchConfig.from_record(record))  # the explicit upgrade of an old record
    assert m.arch.pooling == "mean-max"
    assert m.head.in_features == 2 * m.out_dim
    assert _model().head.in_features == (1 + _model().arch.season_bins) * m.out_dim
    with pytest.raises(CropseqError, match="pooling"):
        ArchConfig(n_bands=3, n_classes=2, pooling="median")


def test_reverse_padded_and_run_direction() -> None:
    x = torch.arange(2 * 5, dtype=torch.float32).view(2, 5, 1)
    r = reverse_padded(x, torch.tensor([5, 3]))
    assert r[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert r[1, :, 0].tolist() == [7, 6, 5, 8, 9]
    torch.testing.assert_close(reverse_padded(r, torch.tensor([5, 3])), x)
    rnn = torch.nn.GRU(1, 4, batch_first=True)
    out, st = run_direction(rnn, x, torch.tensor([5, 0]))
    assert (out[1] == 0).all() and (st[:, 1] == 0).all()  # length 0 passes the state through
    assert sequence_lengths(torch.tensor([[True, False, True, False], [False] * 4])).tolist() == [3, 0]


@pytest.mark.parametrize("cell", [torch.nn.GRU, torch.nn.LSTM, torch.nn.RNN])
@pytest.mark.parametrize("reverse", [False, True])
def test_unpacked_outputs_equal_packed_on_valid_steps(cell: type, reverse: bool) -> None:
    """The fast (unpacked) path the model uses matches the packed one wherever a head reads."""
    torch.manual_seed(1)
    rnn = cell(3, 5, batch_first=True)
    x = torch.randn(6, 7, 3)
    lengths = torch.tensor([7, 4, 1, 0, 6, 7])
    packed, _ = run_direction(rnn, x, lengths, reverse=reverse)
    fast = run_direction_outputs(rnn, x, lengths, reverse=reverse)
    inside = torch.arange(7)[None, :] < lengths[:, None]
    torch.testing.assert_close(fast[inside], packed[inside], atol=1e-6, rtol=1e-6)
    assert torch.isfinite(fast).all()


@pytest.mark.parametrize("patch", [1, 3, 5])
def test_encoder_valid_convolutions_patch_vs_image(patch: int) -> None:
    torch.manual_seed(0)
    enc = PatchEncoder(3, patch, width=8, out_dim=5).eval()
    h = patch // 2
    img = torch.randn(4, 3, 6 + 2 * h, 7 + 2 * h)
    maps = enc(img)
    assert maps.shape == (4, 5, 6, 7)
    patches = torch.stack([img[:, :, i : i + patch, j : j + patch] for i in range(6) for j in range(7)], 1)
    vec = enc(patches.reshape(-1, 3, patch, patch)).reshape(4, 42, 5)
    torch.testing.assert_close(vec, maps.flatten(2).transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_encoder_rejects_even_patch() -> None:
    with pytest.raises(CropseqError, match="odd"):
        PatchEncoder(3, 2)
    with pytest.raises(CropseqError):
        ArchConfig(n_bands=3, n_classes=2, patch=4)


def _save(tmp_path, m: SequenceClassifier, bands: list[str]) -> str:
    classes = ClassTable.from_names([f"c{i}" for i in range(m.arch.n_classes)])
    meta = {"arch": m.arch.to_dict(), "bands": bands, "patch": m.arch.patch,
            "norm": {"mean": m.norm_center.tolist(), "std": m.norm_scale.tolist()},
            "classes": classes.to_records(), "temporal_encoding": {}, "head": m.arch.head, "epoch": 1}
    path = tmp_path / "m.pt"
    save_checkpoint(path, m.state_dict(), meta)
    return str(path)


@pytest.mark.parametrize(
    "patch,head,encoder_time",
    [(1, "many-to-one", False), (3, "many-to-one", False), (3, "mean-max", False), (3, "many-to-many", False),
     (5, "many-to-one", True), (1, "many-to-one", True)],
)
def test_predict_image_equals_predict_proba(tmp_path, patch: int, head: str, encoder_time: bool) -> None:
    m = _model(patch=patch, head=head, encoder_time=encoder_time)
    pred = DeepPredictor.load(_save(tmp_path, m, ["a", "b", "c"]), device="cpu")
    h = patch // 2
    rng = np.random.default_rng(0)
    t, hh, ww = 9, 5, 6
    img = rng.normal(size=(t, 3, hh + 2 * h, ww + 2 * h)).astype(np.float32)
    img[2, :, 1 + h, 2 + h] = np.nan  # one cloudy observation
    img[:, 1, 3 + h, 4 + h] = np.nan  # one pixel never observed (band missing at the centre)
    img[4, :, 0, 0] = np.nan  # halo corner missing
    doy = (np.arange(t) * 16 + 1).astype(np.float32)
    prob_img = pred.predict_image(img, doy, batch_size=7, max_block_bytes=t * 6 * ww * 4 * 2)  # forces row blocks
    assert prob_img.shape == (4, hh, ww)
    patches = np.stack([img[:, :, i : i + patch, j : j + patch] for i in range(hh) for j in range(ww)])
    prob_seq = pred.predict_proba(patches, np.tile(doy, (hh * ww, 1)))
    np.testing.assert_allclose(prob_img.reshape(4, -1).T, prob_seq, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(prob_img[:, 3, 4], 0.25, atol=1e-6)  # never observed -> uniform
    # A mask sends only its pixels through the recurrent core: same numbers there, NaN elsewhere.
    mask = np.zeros((hh, ww), bool)
    mask[1, 1:4] = mask[4, 5] = True
    masked = pred.predict_image(img, doy, mask=mask, batch_size=2, max_block_bytes=t * 6 * ww * 4 * 2)
    np.testing.assert_allclose(masked[:, mask], prob_img[:, mask], atol=1e-5, rtol=1e-5)
    assert np.isnan(masked[:, ~mask]).all()
    with pytest.raises(CropseqError, match="mask"):
        pred.predict_image(img, doy, mask=mask[:, :-1])


def test_predictor_band_check_and_shapes(tmp_path) -> None:
    m = _model()
    pred = DeepPredictor.load(_save(tmp_path, m, ["red", "nir", "swir"]), device="cpu")
    assert pred.kind == "deep" and pred.patch == 1 and pred.classes.names == ["c0", "c1", "c2", "c3"]
    assert pred.check_bands(["blue", "swir", "red", "nir"]) == [2, 3, 1]
    with pytest.raises(CropseqError, match="swir") as e:
        band_indices(pred.bands, ["red", "nir", "blue"], "stack.yaml")
    assert "stack.yaml" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(CropseqError, match="expected sequences"):
        pred.predict_proba(np.zeros((2, 4, 2, 1, 1), np.float32), np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("autocast", [False, True])
def test_season_bins_of_a_scene_match_the_per_sequence_weights(autocast: bool) -> None:
    """Sequences sharing their dates (a scene) pool through one weight table: same bins as
    per-sequence weights, including pixels whose only valid dates are far from some bin."""
    m = _model()
    torch.manual_seed(1)
    n, t = 64, 24
    out = torch.randn(n, t, 6)
    valid = torch.rand(n, t) > 0.3
    valid[0] = False  # no valid date: zeros
    valid[1] = False
    valid[1, 3] = True  # a single date: far bins underflow outside log space
    valid[2, :20] = False  # a long gap
    phase = m.season_phase(torch.linspace(1, 360, t).expand(n, t))
    exact = m._season_bins_exact(out, valid, m.season_log_weights(phase))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        shared = m.season_bins(out.to(torch.bfloat16) if autocast else out, valid, phase)
    tol = 3e-2 if autocast else 1e-5
    torch.testing.assert_close(shared.float(), exact, atol=tol, rtol=tol)
    assert torch.equal(shared[0], torch.zeros_like(shared[0]))
    single = shared[1].float().view(m.arch.season_bins, 6)
    torch.testing.assert_close(single, out[1, 3].expand_as(single), atol=tol, rtol=tol)  # every bin: that date


def test_forward_flops_counts_the_lstm_and_leaves_the_model_as_it_was() -> None:
    """A linear layer's 2*in*out per row; an LSTM model counts its recurrent matmuls (oneDNN's
    fused kernel would count 0); the module's train/eval mode is kept."""
    from cropseq.models.flops import forward_flops

    assert forward_flops(torch.nn.Linear(8, 4), torch.zeros(3, 8)) == 2 * 8 * 4 * 3
    m = _model(cell="lstm", layers=1)
    m.train()
    x, doy = _data()
    small = forward_flops(m, x[:1], doy[:1])
    assert m.training
    assert small > 2 * 4 * m.arch.hidden_size * m.arch.hidden_size * x.shape[1]  # at least the recurrent h @ W_hh
    assert forward_flops(m, x[:2], doy[:2]) == pytest.approx(2 * small, rel=0.01)
