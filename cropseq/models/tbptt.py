"""Truncated backpropagation through time (TBPTT) with the ``k1``/``k2`` scheme.

Definition (this is what the code does, and what the tests check)
------------------------------------------------------------------
The time axis ``[0, T)`` is cut into consecutive windows of ``k1`` steps (the last one may be
shorter); training makes **one optimiser update per window**, so ``k1`` steps are run between
updates. Within a window ``[s, e)``:

- **Forward (left-to-right) direction**: its state entering the window is the *detached* state
  carried from the end of the previous window (zeros for the first). It runs the first
  ``k1 - k2`` steps ``[s, e - k2)`` without a graph, then the last ``k2`` steps
  ``[e - k2, e)`` with gradient, and hands its final state, detached, to the next window.
- **Backward (right-to-left) direction** of a bidirectional network: before the first window,
  a no-grad right-to-left sweep over the whole sequence records the backward state at every
  window end; each window's backward direction starts at ``e`` from that detached state (so it
  still carries the future context of steps ``>= e``) and runs over the same ``k2`` steps
  ``[e - k2, e)`` with gradient. The sweep is made once per batch, before the window updates,
  so for later windows it is a few updates stale (as is the carried forward state in any TBPTT).
- **States**: ``(h, c)`` for an LSTM, the single tensor ``h`` for a GRU or the simple RNN
  (``cell="rnn"``); every cell is carried, detached and swept the same way.
- **Stacked layers** do the same per layer. On the no-grad prefix, layer ``l + 1`` reads layer
  ``l``'s forward outputs (just computed) and its backward outputs from the sweep.
- **Loss per window**: *many-to-many* -- the per-date losses at the valid dates in
  ``[e - k2, e)``; *many-to-one* -- the sequence label applied to the head's pooling
  (seasonal bins or mean/max) over **all** valid steps of the sequence, where the window's
  ``k2`` steps come from the gradient computation and every other step contributes its
  detached output from the no-grad sweep. So every window's loss is the real sequence loss,
  and its gradient is the part that flows through the window's steps.
- The no-grad context computations (sweep and prefixes) run without dropout.

Consequence: a window's loss has exactly zero gradient with respect to inputs outside
``[e - k2, e)``; for a loss at date ``t`` in the window, the forward direction reaches back at
most to ``e - k2 > t - k2`` and the backward direction forward at most to ``e - 1 < t + k2``.

``k2`` unset means ``k2 = k1``; ``k1`` unset (or ``k1 = k2 >= T``) is full BPTT, i.e. one
ordinary forward/backward pass. ``k2 > k1`` is an error. Peak memory holds the graph of ``k2``
steps (plus a few ``(N, T, H)`` no-grad tensors), so it falls with ``k2``; see
``benchmarks/tbptt_memory.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from cropseq.errors import CropseqError
from cropseq.models.recurrent import SequenceClassifier, State, run_direction, sequence_lengths, state_detach

__all__ = ["Window", "check_k", "is_full_bptt", "tbptt_windows", "window_bounds"]


def check_k(k1: int | None, k2: int | None) -> tuple[int | None, int | None]:
    """Validate ``k1``/``k2``; returns ``(k1, k2)`` with ``k2`` defaulting to ``k1``.

    Raises:
        CropseqError: when a value is < 1, ``k2`` is given without ``k1``, or ``k2 > k1``.
    """
    if k1 is None:
        if k2 is not None:
            raise CropseqError("--k2 needs --k1 (k2 is the gradient span inside a window of k1 steps)")
        return None, None
    if k1 < 1:
        raise CropseqError(f"--k1 must be >= 1, got {k1}")
    if k2 is None:
        k2 = k1
    if k2 < 1:
        raise CropseqError(f"--k2 must be >= 1, got {k2}")
    if k2 > k1:
        raise CropseqError(f"--k2 ({k2}) must not exceed --k1 ({k1})")
    return k1, k2


def is_full_bptt(t: int, k1: int | None, k2: int | None) -> bool:
    """True when ``k1``/``k2`` amount to ordinary full backpropagation over ``t`` steps."""
    return k1 is None or (k1 >= t and (k2 is None or k2 >= t))


def window_bounds(t: int, k1: int, k2: int) -> list[tuple[int, int, int]]:
    """``(s, g, e)`` per window: start, start of the gradient part, end (exclusive)."""
    out = []
    for s in range(0, t, k1):
        e = min(s + k1, t)
        out.append((s, max(s, e - k2), e))
    return out


@dataclass
class Window:
    """One TBPTT window's differentiable outputs.

    Attributes:
        start: First step of the window (``s``).
        grad_start: First step with gradient (``e - k2``, clipped to ``s``).
        end: One past the last step (``e``).
        logits: many-to-one ``(N, K)``; many-to-many ``(N, e - grad_start, K)``.
        valid: ``(N, e - grad_start)`` valid flags of the gradient steps.
    """

    start: int
    grad_start: int
    end: int
    logits: torch.Tensor
    valid: torch.Tensor


def _slice_lengths(lengths: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """Per-row valid length inside segment ``[a, b)`` for rows valid on ``[0, lengths)``."""
    return (lengths - a).clamp(0, b - a)


@torch.no_grad()
def _context_sweep(
    model: SequenceClassifier,
    inputs: torch.Tensor,
    lengths: torch.Tensor,
    bounds: list[tuple[int, int, int]],
) -> tuple[list[torch.Tensor], list[list[State | None]], torch.Tensor]:
    """No-grad full pass: per-layer backward outputs, backward states at window ends, last outputs.

    Returns:
        ``(bwd_out, bwd_state, last)``: ``bwd_out[l]`` ``(N, T, H)`` backward outputs of layer
        ``l`` (empty list entries when unidirectional); ``bwd_state[l][j]`` the backward state
        entering window ``j`` from the right (None = zeros, for the last window);
        ``last`` the last layer's ``(N, T, H * dirs)`` outputs.
    """
    n_layers = model.arch.num_layers
    bwd_out: list[torch.Tensor] = []
    bwd_state: list[list[State | None]] = []
    h = inputs
    for layer in range(n_layers):
        out_f, _ = run_direction(model.cell(layer), h, lengths)
        if not model.arch.bidirectional:
            bwd_out.append(h.new_zeros(0))
            bwd_state.append([None] * len(bounds))
            h = out_f
            continue
        states: list[State | None] = [None] * len(bounds)
        pieces: list[torch.Tensor] = [h.new_zeros(0)] * len(bounds)
        st: State | None = None
        # Right to left over the windows; the state after segment j is what enters window j-1.
        for j in range(len(bounds) - 1, -1, -1):
            s, _, e = bounds[j]
            states[j] = st
            seg_len = _slice_lengths(lengths, s, e)
            pieces[j], st = run_direction(model.cell(layer, reverse=True), h[:, s:e], seg_len, reverse=True, state=st)
        out_b = torch.cat(pieces, dim=1)
        bwd_out.append(out_b)
        bwd_state.append(states)
        h = torch.cat([out_f, out_b], dim=-1)
    return bwd_out, bwd_state, h


def tbptt_windows(
    model: SequenceClassifier,
    x: torch.Tensor,
    doy: torch.Tensor,
    k1: int,
    k2: int,
) -> Iterator[Window]:
    """Yield one :class:`Window` per ``k1`` steps; the caller backpropagates and steps.

    Each window's graph is independent (entering states are detached), so the caller may
    call ``loss.backward()`` and ``optimizer.step()`` between windows; the carried forward
    state is then computed with the weights of the previous update, as usual in TBPTT.

    Args:
        model: The classifier (its training flag controls dropout in the gradient steps).
        x: ``(N, T, C, p, p)`` raw inputs, NaN = missing.
        doy: ``(N, T)`` day of year (NaN = unknown).
        k1: Window length (steps between updates).
        k2: Gradient span at the end of each window, ``1 <= k2 <= k1``.
    """
    k1, k2 = check_k(k1, k2)  # type: ignore[assignment]
    assert k1 is not None and k2 is not None
    n, t = x.shape[:2]
    bounds = window_bounds(t, k1, k2)
    valid = model.valid_mask(x)
    lengths = sequence_lengths(valid)
    with torch.no_grad():
        full_inputs = model.step_inputs(model.encode(x, valid, doy), valid, doy)
    bwd_out, bwd_state, last = _context_sweep(model, full_inputs, lengths, bounds)
    phase = model.season_phase(doy)
    n_layers = model.arch.num_layers
    fstate: list[State | None] = [None] * n_layers

    for j, (s, g, e) in enumerate(bounds):
        # Layer-0 inputs: prefix from the no-grad encoding, gradient part encoded afresh.
        grad_inputs = model.step_inputs(
            model.encode(x[:, g:e], valid[:, g:e], doy[:, g:e], offset=g), valid[:, g:e], doy[:, g:e], offset=g
        )
        prefix_in: torch.Tensor | None = full_inputs[:, s:g] if g > s else None
        grad_in = grad_inputs
        for layer in range(n_layers):
            rnn_f = model.cell(layer)
            st = fstate[layer]
            prefix_out: torch.Tensor | None = None
            if prefix_in is not None:
                with torch.no_grad():
                    pre_f, st = run_direction(rnn_f, prefix_in, _slice_lengths(lengths, s, g), state=st)
                if model.arch.bidirectional:
                    prefix_out = torch.cat([pre_f, bwd_out[layer][:, s:g]], dim=-1)
                else:
                    prefix_out = pre_f
                st = state_detach(st)
            if layer > 0:
                grad_in = model.drop(grad_in)
            seg = _slice_lengths(lengths, g, e)
            out_f, st_end = run_direction(rnn_f, grad_in, seg, state=st)
            fstate[layer] = state_detach(st_end)
            if model.arch.bidirectional:
                bst = bwd_state[layer][j]
                out_b, _ = run_direction(model.cell(layer, reverse=True), grad_in, seg, reverse=True, state=bst)
                grad_in = torch.cat([out_f, out_b], dim=-1)
            else:
                grad_in = out_f
            prefix_in = prefix_out
        v = valid[:, g:e]
        if model.arch.head == "many-to-one":
            # Whole-sequence pooling: window steps with gradient, all others detached.
            out_all = torch.cat([last[:, :g], grad_in, last[:, e:]], dim=1)
            logits = model.head_logits(out_all, valid, phase)
        else:
            logits = model.head_logits(grad_in, v)
        yield Window(start=s, grad_start=g, end=e, logits=logits, valid=v)
