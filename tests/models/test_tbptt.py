"""Truncated BPTT: window bounds, forward-value equivalence, and the gradient support."""

from __future__ import annotations

import pytest
import torch

from cropseq.errors import CropseqError
from cropseq.models import ArchConfig, SequenceClassifier
from cropseq.models.tbptt import check_k, is_full_bptt, tbptt_windows, window_bounds

NAN = float("nan")
#: Heads under test: many-to-one with each pooling ("many-to-one" = season bins), and many-to-many.
HEADS = ["many-to-one", "mean-max", "many-to-many"]


def _model(cell: str = "lstm", bi: bool = True, head: str = "many-to-many", layers: int = 2, et: bool = False) -> SequenceClassifier:
    torch.manual_seed(1)
    arch = ArchConfig(n_bands=2, n_classes=3, patch=1, cell=cell, bidirectional=bi, hidden_size=6,
                      num_layers=layers, dropout=0.0, encoder_width=6, encoder_dim=4,
                      head="many-to-many" if head == "many-to-many" else "many-to-one",
                      pooling="mean-max" if head == "mean-max" else "season", period_steps=20,
                      encoder_time=et)
    return SequenceClassifier(arch).eval()


def _data(n: int = 4, t: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, t, 2, 1, 1, generator=g)
    x[1, 14:] = NAN  # shorter sequence (padding)
    x[2, 6] = NAN  # a cloudy date
    doy = (torch.arange(t, dtype=torch.float32) * 16 + 1).repeat(n, 1)
    return x, doy


def test_window_bounds_and_k_checks() -> None:
    assert window_bounds(10, 4, 2) == [(0, 2, 4), (4, 6, 8), (8, 8, 10)]
    assert window_bounds(10, 5, 5) == [(0, 0, 5), (5, 5, 10)]
    assert check_k(6, None) == (6, 6)
    assert check_k(None, None) == (None, None)
    with pytest.raises(CropseqError, match="k2"):
        check_k(3, 5)
    with pytest.raises(CropseqError):
        check_k(None, 2)
    with pytest.raises(CropseqError):
        check_k(0, None)
    assert is_full_bptt(23, None, None) and is_full_bptt(23, 23, 23) and is_full_bptt(23, 40, None)
    assert not is_full_bptt(23, 23, 5) and not is_full_bptt(23, 10, 10)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize(
    "cell,bi,layers,et",
    [("lstm", True, 2, False), ("gru", True, 1, True), ("lstm", False, 2, False), ("rnn", True, 2, True), ("rnn", False, 1, False)],
)
@pytest.mark.parametrize("k1,k2", [(5, 5), (6, 2), (20, 7), (7, 3)])
def test_windows_reproduce_the_full_forward(head: str, cell: str, bi: bool, layers: int, et: bool, k1: int, k2: int) -> None:
    """Without weight updates, the windows' outputs equal the full-sequence forward pass."""
    m = _model(cell, bi, head, layers, et)
    x, doy = _data()
    full = m(x, doy)
    ws = list(tbptt_windows(m, x, doy, k1, k2))
    assert [(w.start, w.grad_start, w.end) for w in ws] == window_bounds(20, k1, k2)
    for w in ws:
        ref = full[:, w.grad_start : w.end] if head == "many-to-many" else full
        torch.testing.assert_close(w.logits, ref, atol=1e-5, rtol=1e-5)


def _grad_steps(loss: torch.Tensor, x: torch.Tensor, row: int) -> list[int]:
    (g,) = torch.autograd.grad(loss, x, retain_graph=True)
    return (g[row].abs().flatten(1).sum(1) > 0).nonzero().flatten().tolist()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 2])
def test_gradient_support_is_exactly_k2(cell: str, layers: int) -> None:
    """Loss at date t of a window ending at e: non-zero gradient exactly on [e - k2, e)."""
    k1, k2 = 8, 3
    m = _model(cell, True, "many-to-many", layers, et=layers == 2)
    x, doy = _data()
    x = x.clone().requires_grad_(True)
    for w in tbptt_windows(m, x, doy, k1, k2):
        if w.end - w.grad_start < k2:
            continue
        e, g = w.end, w.grad_start
        # Loss at the last date: forward direction reaches back k2 - 1 steps, no further.
        last = _grad_steps(w.logits[0, -1].sum(), x, 0)
        assert last == list(range(g, e)), (w, last)
        assert min(last) == e - k2  # = t - (k2 - 1): within k2 ...
        assert (e - 1) - k2 not in last  # ... and exactly zero k2 steps before
        # Loss at the first gradient date: only the backward direction reaches later dates,
        # up to e - 1 (k2 - 1 after it) and never beyond the window (no future leakage).
        first = _grad_steps(w.logits[0, 0].sum(), x, 0)
        assert first == list(range(g, e)), (w, first)
        assert all(s < g + k2 for s in first)
        # Other sequences in the batch get no gradient from row 0's loss.
        assert _grad_steps(w.logits[0, -1].sum(), x, 3) == []


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_unidirectional_gradient_never_reaches_the_future(cell: str) -> None:
    m = _model(cell, False, "many-to-many", 2)
    x, doy = _data()
    x = x.clone().requires_grad_(True)
    w = list(tbptt_windows(m, x, doy, 10, 4))[0]  # window [0, 10), gradient on [6, 10)
    assert _grad_steps(w.logits[0, 1].sum(), x, 0) == [6, 7]  # loss at date 7
    assert _grad_steps(w.logits[0, 3].sum(), x, 0) == [6, 7, 8, 9]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_many_to_one_window_gradient_stays_in_window(cell: str) -> None:
    m = _model(cell, True, "many-to-one", 2)
    x, doy = _data()
    x = x.clone().requires_grad_(True)
    for w in tbptt_windows(m, x, doy, 6, 2):
        steps = _grad_steps(w.logits[0].sum(), x, 0)
        assert steps == list(range(w.grad_start, w.end))


def test_tbptt_training_step_runs_and_updates() -> None:
    m = _model("lstm", True, "many-to-one", 2).train()
    x, doy = _data()
    y = torch.tensor([0, 1, 2, 0])
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    before = [p.detach().clone() for p in m.parameters()]
    n = 0
    for w in tbptt_windows(m, x, doy, 7, 3):
        loss = torch.nn.functional.cross_entropy(w.logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += 1
    assert n == 3  # ceil(20 / 7) updates
    assert any(not torch.equal(a, b) for a, b in zip(before, m.parameters()))
