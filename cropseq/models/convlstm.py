"""ConvLSTM (Shi et al. 2015): an LSTM whose gates are convolutions, for image sequences.

The gates of :class:`ConvLSTMCell` are one ``k x k`` convolution over ``[x_t, h_{t-1}]``::

    i, f, o, g = split(conv([x_t, h_{t-1}]))
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

Masking, as in the per-pixel models: a date is valid at a pixel when all its bands are finite
there. At an invalid date the pixel's state ``(h, c)`` is carried through unchanged, so a
missing date (a cloud, or a padded date) is skipped at that pixel; a date missing everywhere
changes nothing at all. Step input = normalised bands (NaN -> 0) + sin/cos of the season phase
+ the valid flag, as planes.

Receptive field: the hidden-to-hidden convolution widens a pixel's context by ``k // 2`` pixels
*per date*, so after ``T`` dates and ``L`` layers a pixel sees ``L * T * (k // 2)`` pixels each
side. The model is built for at most ``max_dates`` dates and its :attr:`ConvLSTMModel.receptive_radius`
(plus the decoder's) is the halo that keeps chunked prediction exact; more dates are refused.
The gate convolutions are unpadded: each step computes the state only where the pixel's whole
neighbourhood is known, so the computed region shrinks by ``k // 2`` pixels a side per date and
no padding ever reaches a pixel the model outputs (nor costs a step's work).
The final state of each direction (the state after the pixel's last valid date) is the
pixel's feature vector; the :class:`~cropseq.models.decoder.CNNDecoder` turns the map into logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cropseq.errors import CropseqError
from cropseq.models.decoder import CNNDecoder, crop_core
from cropseq.models.recurrent import DAYS_PER_YEAR, ConfigRecord

__all__ = ["ConvLSTMCell", "ConvLSTMConfig", "ConvLSTMModel"]


@dataclass(frozen=True)
class ConvLSTMConfig(ConfigRecord):
    """Hyper-parameters of a :class:`ConvLSTMModel` (the checkpoint's ``arch`` record).

    Attributes:
        n_bands: Input bands ``C``.
        n_classes: Output classes ``K``.
        max_dates: Most dates a sequence may have (fixes the receptive radius).
        hidden_size: Hidden channels per direction.
        num_layers: Stacked ConvLSTM layers.
        kernel: Odd gate-convolution size ``k``.
        bidirectional: Also run the dates backwards.
        period_steps: Steps per cycle of the step-index phase (dates without a day of year).
        dropout: Dropout before the decoder.
        cell: Always ``"convlstm"`` (tells the record apart from an :class:`ArchConfig`).
    """

    n_bands: int
    n_classes: int
    max_dates: int
    hidden_size: int = 32
    num_layers: int = 1
    kernel: int = 3
    bidirectional: bool = True
    period_steps: int = 23
    dropout: float = 0.2
    cell: str = "convlstm"

    def __post_init__(self) -> None:
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise CropseqError(f"ConvLSTM kernel must be odd and >= 1, got {self.kernel}")
        if min(self.hidden_size, self.num_layers, self.max_dates) < 1:
            raise CropseqError("ConvLSTM hidden_size, num_layers and max_dates must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise CropseqError(f"dropout must be in [0, 1), got {self.dropout}")



class ConvLSTMCell(nn.Module):
    """One ConvLSTM cell (gates = one unpadded ``k x k`` convolution over ``[x, h]``).

    Args:
        in_channels: Input channels.
        hidden: Hidden channels.
        kernel: Odd kernel size.
    """

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
                valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """One step: ``x (B, C, H, W)``, ``state (h, c)``, ``valid (B, H, W)`` -> new ``(h, c)``.

        Pixels where ``valid`` is false keep their state. The gate convolution is unpadded,
        so the new state covers ``(H - 2r, W - 2r)`` (``r = kernel // 2``): only the pixels
        whose whole neighbourhood is known, which is all that the core of a window needs.
        """
        h, c = state
        i, f, o, g = F.conv2d(torch.cat([x, h], dim=1), self.gates.weight, self.gates.bias).chunk(4, dim=1)
        r = self.gates.kernel_size[0] // 2
        h, c, keep = crop_core(h, r), crop_core(c, r), crop_core(valid, r)[:, None]
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        return torch.where(keep, h_new, h), torch.where(keep, c_new, c)


class ConvLSTMModel(nn.Module):
    """(Bi)ConvLSTM over the dates, final states as features, then the CNN decoder.

    Args:
        cfg: Hyper-parameters.
        decoder_width: Hidden channels of the decoder.
        decoder_layers: 3x3 convolutions of the decoder.
        norm_center: ``(C,)`` per-band centre.
        norm_scale: ``(C,)`` per-band scale.

    Attributes:
        receptive_radius: Halo needed: ``num_layers * max_dates * (kernel // 2)`` + decoder radius.
    """

    norm_center: torch.Tensor
    norm_scale: torch.Tensor

    def __init__(self, cfg: ConvLSTMConfig, decoder_width: int = 64, decoder_layers: int = 2,
                 norm_center: Any = None, norm_scale: Any = None) -> None:  # fmt: skip
        super().__init__()
        self.arch = cfg
        c = cfg.n_bands
        self.register_buffer("norm_center", torch.zeros(c) if norm_center is None else torch.as_tensor(norm_center, dtype=torch.float32))
        self.register_buffer("norm_scale", torch.ones(c) if norm_scale is None else torch.as_tensor(norm_scale, dtype=torch.float32))
        n_dirs = 2 if cfg.bidirectional else 1
        self.fwd = nn.ModuleList()
        self.bwd = nn.ModuleList()
        for layer in range(cfg.num_layers):
            f = c + 3 if layer == 0 else cfg.hidden_size * n_dirs
            self.fwd.append(ConvLSTMCell(f, cfg.hidden_size, cfg.kernel))
            if cfg.bidirectional:
                self.bwd.append(ConvLSTMCell(f, cfg.hidden_size, cfg.kernel))
        self.drop = nn.Dropout(cfg.dropout)
        self.decoder = CNNDecoder(cfg.hidden_size * n_dirs, cfg.n_classes, decoder_width, decoder_layers)
        self.core_radius = cfg.num_layers * cfg.max_dates * (cfg.kernel // 2)
        self.receptive_radius = self.core_radius + self.decoder.receptive_radius

    def step_inputs(self, x: torch.Tensor, doy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs (B, T, C + 3, H, W), valid (B, T, H, W))`` of raw ``x (B, T, C, H, W)``."""
        b, t, _, hh, ww = x.shape
        valid = torch.isfinite(x).all(dim=2)
        z = (x - self.norm_center.view(-1, 1, 1)) / self.norm_scale.view(-1, 1, 1)
        z = torch.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
        step = torch.arange(t, device=x.device, dtype=torch.float32)[None, :] * (2 * math.pi / max(1, self.arch.period_steps))
        doy = doy.to(torch.float32)
        phase = torch.where(torch.isfinite(doy), 2 * math.pi * (doy - 1.0) / DAYS_PER_YEAR, step)
        planes = torch.stack([torch.sin(phase), torch.cos(phase)], dim=2)[..., None, None].expand(b, t, 2, hh, ww)
        return torch.cat([z, planes.to(z.dtype), valid[:, :, None].to(z.dtype)], dim=2), valid

    @staticmethod
    def _cell(cells: nn.ModuleList, layer: int) -> ConvLSTMCell:
        """The typed cell of ``layer``."""
        cell = cells[layer]
        assert isinstance(cell, ConvLSTMCell)
        return cell

    def _direction(self, cell: ConvLSTMCell, seq: torch.Tensor, valid: torch.Tensor,
                   reverse: bool) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Per-step outputs ``(B, T, hidden, H - 2m, W - 2m)`` and the final ``h`` of one direction.

        Each step's unpadded convolution drops the ``r``-pixel ring whose neighbourhood is
        not known (``r = kernel // 2``), so the region shrinks as the dates go by: ``m = T r``
        after ``T`` steps. The outputs are cut to that final region. Computing only what the
        core can depend on makes a step on a long series (Slovenia: 68 dates, a halo of 70 px)
        about twice as cheap as the padded convolution over the whole window, with the same
        numbers on the core.
        """
        t = seq.shape[1]
        r = cell.gates.kernel_size[0] // 2
        h = seq.new_zeros(seq.shape[0], cell.hidden, seq.shape[-2], seq.shape[-1])
        state = (h, torch.zeros_like(h))
        outs: list[torch.Tensor] = [h] * t
        for n, s in enumerate(range(t - 1, -1, -1) if reverse else range(t)):
            state = cell(crop_core(seq[:, s], n * r), state, crop_core(valid[:, s], n * r))
            outs[s] = state[0]
        done = [r * (t - s) if reverse else r * (s + 1) for s in range(t)]  # the border step s's output lacks
        return torch.stack([crop_core(o, r * t - d) for o, d in zip(outs, done, strict=True)], dim=1), state[0]

    def features(self, x: torch.Tensor, doy: torch.Tensor) -> torch.Tensor:
        """Final states of every direction of the last layer, ``(B, H * dirs, H' - 2m, W' - 2m)``.

        ``m = num_layers * T * (kernel // 2)`` for ``T`` dates: each layer's steps drop the
        border that their unpadded convolutions cannot compute (:meth:`_direction`).
        """
        if x.shape[1] > self.arch.max_dates:
            raise CropseqError(
                f"{x.shape[1]} dates but this ConvLSTM was built for at most {self.arch.max_dates} "
                "(its receptive field, hence the prediction halo, grows with the dates)"
            )
        seq, valid = self.step_inputs(x, doy)
        finals: list[torch.Tensor] = []
        shrink = x.shape[1] * (self.arch.kernel // 2)
        for layer in range(self.arch.num_layers):
            if layer > 0:
                seq, valid = self.drop(seq), crop_core(valid, shrink)
            out_f, fin_f = self._direction(self._cell(self.fwd, layer), seq, valid, reverse=False)
            outs, finals = [out_f], [fin_f]
            if self.arch.bidirectional:
                out_b, fin_b = self._direction(self._cell(self.bwd, layer), seq, valid, reverse=True)
                outs.append(out_b)
                finals.append(fin_b)
            seq = torch.cat(outs, dim=2)
        return torch.cat(finals, dim=1)

    def forward(self, x: torch.Tensor, doy: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, P, P)`` of windows ``x (B, T, C, P + 2R, P + 2R)`` with ``doy (B, T)``."""
        shrunk = self.arch.num_layers * x.shape[1] * (self.arch.kernel // 2)  # what features() already cut
        feats = crop_core(self.features(x, doy), self.core_radius - shrunk)
        return crop_core(self.decoder(self.drop(feats)), self.decoder.receptive_radius)
