"""Recurrent sequence classifier: CNN encoder per date -> (bi)LSTM/GRU/RNN -> head.

Inputs and masking
------------------
The model takes *raw* values ``x (N, T, C, p, p)`` (NaN = missing) and day of year
``doy (N, T)``; band normalisation lives in the model as buffers, so every consumer (training,
:class:`~cropseq.predictors.deep.DeepPredictor`, whole-image inference) applies the same one.

- An observation is **valid** when all ``C`` bands at the centre pixel are finite. Invalid
  steps are never encoded: their encoder vector is exactly zero and a flag input says the step
  is missing, so the values stored at a masked step (NaN or anything else) cannot change an
  output. NaN neighbours of a valid centre pixel (scene edge, partial nodata) are zero-filled
  after normalisation, i.e. replaced by the training mean.
- Each sequence is cut after its **last valid step** (length ``L``); trailing missing steps,
  padding included, are skipped by both directions (packed sequences, per-sequence reversal),
  so padding a sequence to any length never changes its result and sequences of different
  lengths batch together. Missing steps *inside* ``[0, L)`` are fed as "zero vector, flag 0,
  its date", so the network knows time passed without an observation.
- Step input = ``[encoder vector (D), sin(phase), cos(phase), valid flag]``. The phase is
  ``2*pi*(doy - 1)/365.25`` when the day of year is known, otherwise
  ``2*pi*t/period_steps`` with ``t`` the step index and ``period_steps`` the number of
  steps of the training sequences (about one season per cycle), so dateless tables still get
  a consistent position signal.

Recurrent core
--------------
``num_layers`` layers of single-direction ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (tanh) modules, one
per direction, instead of one ``bidirectional=True`` module: each direction must be runnable on
its own, from a given state and over a given window, for truncated BPTT
(:mod:`cropseq.models.tbptt`) and for per-sequence reversal of padded batches. Dropout sits
between layers and before the head.

Heads
-----
- ``many-to-one`` (default): a pooling of the last layer's per-step outputs (both directions
  concatenated) over **all valid steps**, then a linear layer. Every valid date contributes,
  so a missing first or last date costs nothing special (a last-state head would lean on the
  ends of the season), and the pools are weighted sums and maxima over steps, which decompose
  over time windows: this is what makes truncated BPTT well defined for a sequence label.
  Two poolings (``pooling``):

  - ``"season"`` (the training default): the masked mean, plus the outputs pooled into
    ``season_bins`` bins evenly spread over the seasonal cycle (the same phase as the
    temporal encoding; 72 bins = one every 5.1 days). Step ``t`` weighs
    ``exp(-d^2 / (2 sigma^2))`` in a bin, ``d`` the circular distance between its date and
    the bin centre and ``sigma = season_sigma`` days, normalised over the valid steps; a bin
    without a date nearby takes its nearest dates' outputs. The head thus sees *when* a
    state occurs, position by position, as a convolutional network's flattened time axis
    does (TempCNN), yet takes any dates, cloud gaps and sequence lengths. It is what lets
    the recurrent model separate crop sequences that differ mainly in timing (soybean then
    cotton vs soybean then millet): on the 20 dtwSat resamples it removed nearly 40 % of the
    errors of mean+max pooling (OA 0.9777 -> 0.9862, ``benchmarks/README.md``). Bins fold
    the year: train and predict one season (at most a year of dates) at a time.
  - ``"mean-max"``: masked mean and max pooling (what checkpoints without the key use).
    Mean pooling carries the typical profile, max pooling the salient peaks, but neither
    says when.
- ``many-to-many``: a linear layer on every step's output -> ``(N, T, K)`` logits, trained
  with the sequence label at every valid date. For a per-sequence answer
  (:meth:`SequenceClassifier.sequence_proba`) the per-date probabilities are averaged over
  valid dates.

A sequence without any valid observation gets uniform probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, Self, cast

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from cropseq.errors import CropseqError
from cropseq.models.encoder import PatchEncoder

__all__ = ["ArchConfig", "CELLS", "ConfigRecord", "CELL_MODULES", "DAYS_PER_YEAR", "HEADS", "LEGACY_ARCH", "POOLINGS", "SequenceClassifier", "State", "build_model", "reverse_padded", "run_direction", "run_direction_outputs", "sequence_lengths", "state_detach"]

#: RNN state: ``h`` for a GRU or simple RNN, ``(h, c)`` for an LSTM, each ``(1, N, H)``.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

HEADS = ("many-to-one", "many-to-many")
POOLINGS = ("season", "mean-max")
#: Recurrent cells by ``cell`` name. ``"rnn"`` is the simple (Elman) RNN of the lecture,
#: ``h_t = tanh(W_ih x_t + W_hh h_{t-1} + b)``, whose vanishing gradient motivates the gated
#: cells (measured on real data in ``benchmarks/gradient_length.py``).
CELL_MODULES: dict[str, Callable[..., nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
CELLS = tuple(CELL_MODULES)
DAYS_PER_YEAR = 365.25
#: Below this sum of a bin's weights a sequence's bins are pooled in log space (exact).
_TINY_WEIGHT = 1e-30


class ConfigRecord:
    """``to_dict`` / ``from_dict`` of a model config dataclass: a checkpoint's ``arch`` record."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return asdict(cast(Any, self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict` output (unknown keys are ignored for forward compat)."""
        names = {f.name for f in fields(cast(Any, cls))}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class ArchConfig(ConfigRecord):
    """Every hyper-parameter needed to rebuild a :class:`SequenceClassifier`.

    Stored as the checkpoint's ``arch`` record. The defaults are cropseq's one set of model
    defaults (:class:`cropseq.training.TrainConfig` takes its model options from here). A
    record written before an option existed means something else by its absence:
    :meth:`from_record` fills such keys from :data:`LEGACY_ARCH` explicitly.

    Attributes:
        n_bands: Input bands ``C``.
        n_classes: Output classes ``K``.
        patch: Odd patch size ``p``.
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"`` (tanh simple RNN).
        bidirectional: Run a right-to-left direction too.
        hidden_size: Hidden units per direction.
        num_layers: Stacked recurrent layers.
        dropout: Dropout between layers and before the head.
        encoder_width: Hidden channels of the per-date CNN.
        encoder_dim: Size of the per-date vector fed to the RNN.
        head: ``"many-to-one"`` or ``"many-to-many"``.
        period_steps: Steps per cycle of the step-index fallback of the temporal encoding.
        encoder_time: Also feed the season phase (sin, cos) to the per-date encoder as two
            constant input planes, so per-date vectors are date-conditioned ("green in
            February" differs from "green in May" before any pooling).
        pooling: Many-to-one pooling, ``"season"`` (mean + seasonal bins) or
            ``"mean-max"``; see the module docstring.
        season_bins: Bins over the seasonal cycle (``"season"`` pooling).
        season_sigma: Width (standard deviation, days) of a bin's Gaussian weights.
    """

    n_bands: int
    n_classes: int
    patch: int = 1
    cell: str = "gru"
    bidirectional: bool = True
    hidden_size: int = 128
    num_layers: int = 2
    dropout: float = 0.2
    encoder_width: int = 64
    encoder_dim: int = 64
    head: str = "many-to-one"
    period_steps: int = 23
    encoder_time: bool = True
    pooling: str = "season"
    season_bins: int = 72
    season_sigma: float = 6.0

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise CropseqError(f"unknown recurrent cell {self.cell!r} (choose from {', '.join(CELLS)})")
        if self.head not in HEADS:
            raise CropseqError(f"unknown head {self.head!r} (choose from {', '.join(HEADS)})")
        if self.patch < 1 or self.patch % 2 == 0:
            raise CropseqError(f"patch size must be odd and >= 1, got {self.patch}")
        if self.num_layers < 1 or self.hidden_size < 1:
            raise CropseqError("num_layers and hidden_size must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise CropseqError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.pooling not in POOLINGS:
            raise CropseqError(f"unknown pooling {self.pooling!r} (choose from {', '.join(POOLINGS)})")
        if self.season_bins < 1 or not self.season_sigma > 0:
            raise CropseqError("season_bins must be >= 1 and season_sigma > 0")


    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ArchConfig:
        """Rebuild a checkpoint's ``arch`` record, upgrading one written by an older cropseq.

        Keys the record lacks take the value the model had before the option existed
        (:data:`LEGACY_ARCH`), never today's defaults: an old LSTM checkpoint stays an LSTM
        with mean+max pooling and no date in its encoder.
        """
        return cls.from_dict({**LEGACY_ARCH, **record})


#: What a checkpoint's ``arch`` record that lacks a key was built with (the model before the
#: option existed, or the default of the time): :meth:`ArchConfig.from_record` fills these.
LEGACY_ARCH: dict[str, Any] = {
    "patch": 1,
    "cell": "lstm",
    "bidirectional": True,
    "hidden_size": 128,
    "num_layers": 2,
    "dropout": 0.2,
    "encoder_width": 64,
    "encoder_dim": 64,
    "head": "many-to-one",
    "period_steps": 23,
    "encoder_time": False,
    "pooling": "mean-max",
    "season_bins": 72,
    "season_sigma": 6.0,
}


# ----------------------------------------------------------------------------- helpers


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first ``lengths[i]`` steps of each row of ``x (N, S, ...)``.

    Steps at or beyond a row's length stay where they are, so padding stays at the tail.
    Applying it twice is the identity.
    """
    n, s = x.shape[:2]
    t = torch.arange(s, device=x.device)[None, :]
    ln = lengths.to(x.device)[:, None]
    idx = torch.where(t < ln, ln - 1 - t, t)
    idx = idx.view(n, s, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, idx)


def _state_select(state: State, mask: torch.Tensor) -> State:
    if isinstance(state, tuple):
        return (state[0][:, mask], state[1][:, mask])
    return state[:, mask]


def _state_zeros(rnn: nn.RNNBase, n: int, ref: torch.Tensor) -> State:
    h = torch.zeros(1, n, rnn.hidden_size, dtype=ref.dtype, device=ref.device)
    return (h, h.clone()) if isinstance(rnn, nn.LSTM) else h


def _state_scatter(full: State, mask: torch.Tensor, part: State) -> State:
    """``full`` with the rows ``mask`` replaced by ``part`` (out of place, autograd-safe)."""
    if isinstance(full, tuple):
        assert isinstance(part, tuple)
        return tuple(_state_scatter(f, mask, p) for f, p in zip(full, part))  # type: ignore[return-value]
    assert not isinstance(part, tuple)
    out = full.clone()
    out[:, mask] = part.to(out.dtype)
    return out


def state_detach(state: State) -> State:
    """Detached copy of an RNN state (cuts the graph between TBPTT windows)."""
    if isinstance(state, tuple):
        return (state[0].detach(), state[1].detach())
    return state.detach()


def run_direction(
    rnn: nn.RNNBase,
    x: torch.Tensor,
    lengths: torch.Tensor,
    reverse: bool = False,
    state: State | None = None,
) -> tuple[torch.Tensor, State]:
    """Run one single-direction RNN over a padded segment.

    Args:
        rnn: A one-layer, unidirectional, ``batch_first`` ``nn.LSTM``/``nn.GRU``/``nn.RNN``.
        x: ``(N, S, F)`` inputs; row ``i`` is valid for its first ``lengths[i]`` steps.
        lengths: ``(N,)`` int64 in ``[0, S]``.
        reverse: Process each row right to left over its valid steps (from step
            ``lengths[i] - 1`` down to 0).
        state: Initial state (zeros when None).

    Returns:
        ``(out, state_n)``: ``(N, S, H)`` outputs in the original step order, zero beyond a
        row's length; and the state after each row's last processed step (the initial state
        passes through unchanged for rows of length 0).
    """
    n, s, _ = x.shape
    if state is None:
        state = _state_zeros(rnn, n, x)
    lengths = lengths.to(torch.int64)
    if reverse:
        x = reverse_padded(x, lengths)
    if n > 0 and bool((lengths == s).all()):
        out, state_n = rnn(x, state)
    else:
        active = lengths > 0
        out = x.new_zeros(n, s, rnn.hidden_size)
        state_n = state
        if bool(active.any()):
            packed = pack_padded_sequence(
                x[active], lengths[active].cpu(), batch_first=True, enforce_sorted=False
            )
            out_p, st_a = rnn(packed, _state_select(state, active))
            out_a, _ = pad_packed_sequence(out_p, batch_first=True, total_length=s)
            out = out.index_put((active.nonzero(as_tuple=True)[0],), out_a.to(out.dtype))
            state_n = _state_scatter(state, active, st_a)
    if reverse:
        out = reverse_padded(out, lengths)
    return out, state_n


def run_direction_outputs(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """Outputs of one direction from a zero state, without packing.

    Same outputs as :func:`run_direction` at every step ``< lengths[i]`` (the only steps any
    head reads: steps at or beyond a row's length are never valid), but the padded tail is
    simply run through the cell instead of being skipped, and the final state is not
    returned. A forward output depends only on earlier steps, and the per-row reversal puts
    a row's valid steps first, so the extra tail steps cannot reach a valid output. Packed
    sequences cost ~1.3-1.6x more on the CPU (measured on 9,216 x 23-step GRU batches), and
    whole-image batches are ragged wherever the last date is cloudy.

    Returns:
        ``(N, S, H)``; finite but unspecified at steps ``>= lengths[i]``.
    """
    lengths = lengths.to(torch.int64)
    if reverse:
        x = reverse_padded(x, lengths)
    out, _ = rnn(x)
    return reverse_padded(out, lengths) if reverse else out


def sequence_lengths(valid: torch.Tensor) -> torch.Tensor:
    """Per-row length = index of the last valid step + 1 (0 when none is valid)."""
    t = torch.arange(1, valid.shape[1] + 1, device=valid.device)
    return (valid.to(torch.int64) * t).amax(dim=1) if valid.shape[1] else valid.new_zeros(valid.shape[0], dtype=torch.int64)


# ----------------------------------------------------------------------------- model


def _make_cell(rnn_cls: Callable[..., nn.RNNBase], in_features: int, hidden: int) -> nn.RNNBase:
    """One single-layer, single-direction, ``batch_first`` recurrent module of ``rnn_cls``."""
    if rnn_cls is nn.RNN:
        # Spelled out: tanh is nn.RNN's default today, and it is the cell the lecture means.
        return nn.RNN(in_features, hidden, num_layers=1, nonlinearity="tanh", batch_first=True)
    return rnn_cls(in_features, hidden, num_layers=1, batch_first=True)


class SequenceClassifier(nn.Module):
    """CNN encoder per date + recurrent core + many-to-one / many-to-many head.

    See the module docstring for masking, temporal encoding and head choices.

    Args:
        arch: Hyper-parameters.
        norm_center: ``(C,)`` per-band centre subtracted before encoding (default 0).
        norm_scale: ``(C,)`` per-band scale divided by (default 1).
    """

    norm_center: torch.Tensor
    norm_scale: torch.Tensor

    def __init__(
        self,
        arch: ArchConfig,
        norm_center: torch.Tensor | None = None,
        norm_scale: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.arch = arch
        c = arch.n_bands
        self.register_buffer(
            "norm_center", torch.zeros(c) if norm_center is None else torch.as_tensor(norm_center, dtype=torch.float32)
        )
        self.register_buffer(
            "norm_scale", torch.ones(c) if norm_scale is None else torch.as_tensor(norm_scale, dtype=torch.float32)
        )
        self.encoder = PatchEncoder(c + (2 if arch.encoder_time else 0), arch.patch, arch.encoder_width, arch.encoder_dim)
        rnn_cls = CELL_MODULES[arch.cell]
        h = arch.hidden_size
        self.n_dirs = 2 if arch.bidirectional else 1
        in_f = arch.encoder_dim + 3
        self.fwd = nn.ModuleList()
        self.bwd = nn.ModuleList()
        for layer in range(arch.num_layers):
            f = in_f if layer == 0 else h * self.n_dirs
            self.fwd.append(_make_cell(rnn_cls, f, h))
            if arch.bidirectional:
                self.bwd.append(_make_cell(rnn_cls, f, h))
        self.drop = nn.Dropout(arch.dropout)
        self.out_dim = h * self.n_dirs
        if arch.head == "many-to-many":
            head_in = self.out_dim
        elif arch.pooling == "season":
            head_in = (1 + arch.season_bins) * self.out_dim
        else:
            head_in = 2 * self.out_dim
        self.head = nn.Linear(head_in, arch.n_classes)

    # -- input preparation ---------------------------------------------------------

    @property
    def halo(self) -> int:
        """Pixels of context each side of a pixel the encoder needs (``patch // 2``)."""
        return self.arch.patch // 2

    def cell(self, layer: int, reverse: bool = False) -> nn.RNNBase:
        """The recurrent module of ``layer`` in one direction (right-to-left when ``reverse``)."""
        # An nn.RNNBase, or its int8 dynamic-quantised twin (`predict --engine int8`), which
        # is not a subclass but runs the same way.
        return cast(nn.RNNBase, (self.bwd if reverse else self.fwd)[layer])

    def valid_mask(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, T)`` bool: all bands finite at the centre pixel of ``x (N, T, C, p, p)``."""
        h = self.halo
        return torch.isfinite(x[:, :, :, h, h]).all(dim=2)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Per-band normalisation on the band axis (axis ``-3``) with NaN -> 0 (the mean)."""
        z = (x - self.norm_center.view(-1, 1, 1)) / self.norm_scale.view(-1, 1, 1)
        return torch.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)

    def encoder_input(self, x: torch.Tensor, phase: torch.Tensor | None) -> torch.Tensor:
        """Normalised, NaN-free encoder input ``(M, C [+2], H, W)`` from raw ``x (M, C, H, W)``.

        Args:
            x: Raw planes (patches or image rows), band axis 1.
            phase: ``(M, 2)`` sin/cos of each plane's date, used when ``encoder_time``.
        """
        z = self.normalise(x)
        if self.arch.encoder_time:
            assert phase is not None
            planes = phase.to(z.dtype)[:, :, None, None].expand(-1, -1, z.shape[-2], z.shape[-1])
            z = torch.cat([z, planes], dim=1)
        return z

    def encode(self, x: torch.Tensor, valid: torch.Tensor, doy: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
        """Encode the valid observations of ``x (N, T, C, p, p)`` -> ``(N, T, D)``.

        Invalid steps are not encoded at all and get exact zeros. ``doy``/``offset`` (as in
        :meth:`temporal_features`) are needed when ``encoder_time`` is on.
        """
        n, t = valid.shape
        feats = x.new_zeros(n, t, self.arch.encoder_dim)
        if bool(valid.any()):
            phase = None
            if self.arch.encoder_time:
                if doy is None:
                    doy = torch.full((n, t), float("nan"), device=x.device)
                phase = self.temporal_features(doy, offset)[valid]
            enc = self.encoder(self.encoder_input(x[valid], phase)).flatten(1)
            feats = feats.index_put(valid.nonzero(as_tuple=True), enc.to(feats.dtype))
        return feats

    def season_phase(self, doy: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``(N, T)`` phase in the seasonal cycle: from the day of year, or the step index when NaN.

        Args:
            doy: ``(N, T)`` day of year, NaN when unknown.
            offset: Index of the first step in the full sequence (windows of a sequence).
        """
        t = torch.arange(offset, offset + doy.shape[1], device=doy.device, dtype=torch.float32)
        step_phase = 2 * math.pi * t / max(1, self.arch.period_steps)
        doy = doy.to(torch.float32)
        return torch.where(torch.isfinite(doy), 2 * math.pi * (doy - 1.0) / DAYS_PER_YEAR, step_phase[None, :])

    def temporal_features(self, doy: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``(N, T, 2)`` sin/cos of the season phase (:meth:`season_phase`)."""
        phase = self.season_phase(doy, offset)
        return torch.stack([torch.sin(phase), torch.cos(phase)], dim=-1)

    def step_inputs(self, feats: torch.Tensor, valid: torch.Tensor, doy: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Concatenate ``[feats, sin, cos, flag]`` -> ``(N, T, D + 3)``."""
        tf = self.temporal_features(doy, offset).to(feats.dtype)
        return torch.cat([feats, tf, valid.unsqueeze(-1).to(feats.dtype)], dim=-1)

    def prepare(self, x: torch.Tensor, doy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw inputs -> ``(step inputs (N,T,F), valid (N,T), lengths (N,))``."""
        valid = self.valid_mask(x)
        feats = self.encode(x, valid, doy)
        return self.step_inputs(feats, valid, doy), valid, sequence_lengths(valid)

    # -- recurrent core and head ---------------------------------------------------

    def recurrent(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Full-sequence recurrent pass -> last layer's ``(N, T, H * n_dirs)`` outputs.

        Outputs at steps at or beyond a row's length are zero, as with packed sequences
        (the layers run unpacked, :func:`run_direction_outputs`; only the last layer's tail
        needs clearing, because a tail step never reaches a valid step's output).
        """
        h = inputs
        for layer in range(self.arch.num_layers):
            if layer > 0:
                h = self.drop(h)
            out_f = run_direction_outputs(self.cell(layer), h, lengths)
            if self.arch.bidirectional:
                out_b = run_direction_outputs(self.cell(layer, reverse=True), h, lengths, reverse=True)
                h = torch.cat([out_f, out_b], dim=-1)
            else:
                h = out_f
        tail = torch.arange(h.shape[1], device=h.device)[None, :] >= lengths.to(h.device)[:, None]
        return h.masked_fill(tail.unsqueeze(-1), 0.0)

    def pool(self, out: torch.Tensor, valid: torch.Tensor, phase: torch.Tensor | None = None) -> torch.Tensor:
        """Many-to-one pooling of ``out (N, T, H)`` over valid steps -> ``(N, P * H)``.

        ``"mean-max"``: ``[mean, max]``; ``"season"``: ``[mean, bin 1 .. bin B]``, which needs
        the steps' ``phase (N, T)`` (:meth:`season_phase`).
        """
        m = valid.unsqueeze(-1).to(out.dtype)
        count = m.sum(dim=1).clamp_min(1.0)
        mean = (out * m).sum(dim=1) / count
        if self.arch.pooling == "season":
            if phase is None:
                raise ValueError("season pooling needs the steps' phase")
            return torch.cat([mean, self.season_bins(out, valid, phase)], dim=-1)
        neg = torch.finfo(out.dtype).min
        mx = out.masked_fill(~valid.unsqueeze(-1), neg).amax(dim=1)
        mx = torch.where(valid.any(dim=1, keepdim=True), mx, torch.zeros_like(mx))
        return torch.cat([mean, mx], dim=-1)

    def season_log_weights(self, phase: torch.Tensor) -> torch.Tensor:
        """Log of each step's Gaussian weight in each seasonal bin: ``phase (N, T)`` -> ``(N, T, B)``."""
        b = self.arch.season_bins
        centres = torch.arange(b, device=phase.device, dtype=torch.float32) * (2 * math.pi / b)
        d = torch.remainder(phase.to(torch.float32)[:, :, None] - centres, 2 * math.pi)
        d = torch.minimum(d, 2 * math.pi - d)
        sigma = 2 * math.pi * self.arch.season_sigma / DAYS_PER_YEAR
        return -0.5 * (d / sigma) ** 2

    def season_bins(self, out: torch.Tensor, valid: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """Outputs pooled into the seasonal bins (module docstring) -> ``(N, B * H)``."""
        if phase.shape[0] > 0 and bool((phase == phase[:1]).all()):
            return self._season_bins_shared_dates(out, valid, phase[:1])
        return self._season_bins_exact(out, valid, self.season_log_weights(phase))

    @staticmethod
    def _season_bins_exact(out: torch.Tensor, valid: torch.Tensor, logw: torch.Tensor) -> torch.Tensor:
        """Seasonal bins with per-sequence weights ``logw (N, T, B)``, normalised in log space.

        Normalised per bin over the valid steps, in log space: a bin far from every valid
        date takes its nearest dates' outputs instead of underflowing to zero.
        """
        logw = logw.masked_fill(~valid[:, :, None], float("-inf"))
        w = torch.nan_to_num(torch.softmax(logw, dim=1), nan=0.0)  # no valid step: all zero
        # float32 under autocast too, as the shared-dates path: both give the same numbers
        with torch.autocast(out.device.type, enabled=False):
            return torch.einsum("ntb,nth->nbh", w, out.float()).flatten(1).to(out.dtype)

    def _season_bins_shared_dates(self, out: torch.Tensor, valid: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """Seasonal bins when every sequence has the same dates (a scene): one weight table.

        The weights ``g (T, B)`` are computed once and the pooling is one matrix product,
        instead of an ``(N, T, B)`` softmax (which cost a distilled student as much as its GRU
        when mapping a scene; this path is 2.4x faster).
        Equal to :meth:`_season_bins_exact` up to rounding; the sequences whose valid dates
        are all so far from some bin that its weight sum is tiny (exact only in log space)
        go through the exact path.
        """
        logw = self.season_log_weights(phase)[0]  # (T, B)
        g = torch.exp(logw - logw.amax(dim=0, keepdim=True))  # each bin's nearest date weighs 1
        m = valid.to(torch.float32)
        # float32 throughout: faster than bf16 for these small products, and weight sums need it
        with torch.autocast(out.device.type, enabled=False):
            denom = m @ g  # (N, B)
            pooled = torch.matmul(g.T, out.float() * m[:, :, None])  # (N, B, H)
            pooled = pooled.div_(denom.clamp_min(_TINY_WEIGHT)[:, :, None])
        redo = valid.any(dim=1) & (denom < _TINY_WEIGHT).any(dim=1)
        if bool(redo.any()):
            idx = redo.nonzero().squeeze(1)
            exact = self._season_bins_exact(out[idx].float(), valid[idx], logw.expand(len(idx), -1, -1))
            pooled.index_copy_(0, idx, exact.view(len(idx), *pooled.shape[1:]))
        return pooled.flatten(1).to(out.dtype)

    def head_logits(self, out: torch.Tensor, valid: torch.Tensor, phase: torch.Tensor | None = None) -> torch.Tensor:
        """Logits: ``(N, K)`` (many-to-one) or ``(N, T, K)`` (many-to-many).

        ``phase`` (:meth:`season_phase` of the same steps) is needed by ``"season"`` pooling.
        """
        if self.arch.head == "many-to-one":
            return self.head(self.drop(self.pool(out, valid, phase)))
        return self.head(self.drop(out))

    def forward_features(self, feats: torch.Tensor, valid: torch.Tensor, doy: torch.Tensor) -> torch.Tensor:
        """Logits from already encoded per-date vectors (the whole-image path)."""
        inputs = self.step_inputs(feats, valid, doy)
        out = self.recurrent(inputs, sequence_lengths(valid))
        return self.head_logits(out, valid, self.season_phase(doy))

    def forward(self, x: torch.Tensor, doy: torch.Tensor) -> torch.Tensor:
        """Logits for raw sequences ``x (N, T, C, p, p)`` (NaN = missing), ``doy (N, T)``."""
        inputs, valid, lengths = self.prepare(x, doy)
        out = self.recurrent(inputs, lengths)
        return self.head_logits(out, valid, self.season_phase(doy))

    def sequence_proba(self, logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Per-sequence probabilities ``(N, K)`` from :meth:`forward`'s logits.

        Many-to-many: mean of the per-date probabilities over valid dates. Sequences with
        no valid observation get uniform probabilities.
        """
        k = self.arch.n_classes
        if self.arch.head == "many-to-one":
            p = torch.softmax(logits.float(), dim=-1)
        else:
            m = valid.unsqueeze(-1).float()
            p = (torch.softmax(logits.float(), dim=-1) * m).sum(1) / m.sum(1).clamp_min(1.0)
        none = ~valid.any(dim=1)
        if bool(none.any()):
            p = torch.where(none[:, None], torch.full_like(p, 1.0 / k), p)
        return p


def build_model(arch: ArchConfig | dict[str, Any], norm_center: Any = None, norm_scale: Any = None) -> SequenceClassifier:
    """Build a :class:`SequenceClassifier` from an :class:`ArchConfig` or its dict."""
    if isinstance(arch, dict):
        arch = ArchConfig.from_record(arch)
    return SequenceClassifier(arch, norm_center, norm_scale)
