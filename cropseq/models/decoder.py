"""The CNN decoder and the dense (segmentation) model built on the per-pixel core.

The lecture's encoder-decoder: "a first CNN (encoder) learns the data representation for the
RNN input; a second CNN (decoder) provides the RNN output". :class:`DenseSequenceModel` runs
the existing per-date :class:`~cropseq.models.encoder.PatchEncoder` and the recurrent core of
:class:`~cropseq.models.recurrent.SequenceClassifier` per pixel (the same modules, not copies),
pools each pixel's recurrent outputs with the many-to-one pooling, lays the pooled vectors out
as a ``(features, H, W)`` map and lets a :class:`CNNDecoder` turn the map into class logits.

Halo arithmetic (what makes chunked prediction exact): every model here maps an input with a
halo of ``receptive_radius`` pixels on each side to logits of the core only,
``(B, T, C, P + 2R, P + 2R) -> (B, K, P, P)``. The decoder's 3x3 convolutions are zero-padded,
but a core pixel lies at least ``R`` pixels from the border of the input, so no padding ever
reaches it: a core pixel's logits depend on its ``R``-neighbourhood only, whatever the window
or chunk it was computed in. Training windows are read with the same halo, so training and
whole-scene prediction compute the same function.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cropseq.errors import CropseqError
from cropseq.models.encoder import ChannelNorm
from cropseq.models.recurrent import ArchConfig, SequenceClassifier, sequence_lengths

__all__ = ["DECODERS", "CNNDecoder", "DenseSequenceModel", "crop_core"]

#: Decoders by ``--decoder`` name.
DECODERS = ("cnn",)


def crop_core(x: torch.Tensor, radius: int) -> torch.Tensor:
    """``x (..., H + 2r, W + 2r)`` without its ``r``-pixel border."""
    if radius == 0:
        return x
    return x[..., radius:-radius, radius:-radius]


class CNNDecoder(nn.Module):
    """A small CNN turning a ``(B, F, H, W)`` feature map into ``(B, K, H, W)`` logits.

    Layout: ``Conv1x1(F -> width) -> ChannelNorm -> GELU``, then ``layers`` times
    ``Conv3x3(pad 1) -> GELU``, then ``Conv1x1(width -> K)``. Per-pixel normalisation only (no
    BatchNorm), so a pixel's output never depends on the batch or window it sits in.

    Args:
        in_dim: Feature channels ``F``.
        n_classes: Classes ``K``.
        width: Hidden channels.
        layers: 3x3 convolutions; each widens the receptive field by one pixel per side.

    Attributes:
        receptive_radius: Pixels of context the decoder needs on each side (``layers``).
    """

    def __init__(self, in_dim: int, n_classes: int, width: int = 64, layers: int = 2) -> None:
        super().__init__()
        if layers < 0 or width < 1:
            raise CropseqError(f"decoder layers must be >= 0 and width >= 1, got {layers} and {width}")
        self.receptive_radius = layers
        mods: list[nn.Module] = [nn.Conv2d(in_dim, width, kernel_size=1), ChannelNorm(width), nn.GELU()]
        for _ in range(layers):
            mods += [nn.Conv2d(width, width, kernel_size=3, padding=1), nn.GELU()]
        mods.append(nn.Conv2d(width, n_classes, kernel_size=1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, H, W)`` of a feature map ``(B, F, H, W)`` (zero-padded borders)."""
        return self.net(x)


class DenseSequenceModel(nn.Module):
    """Per-pixel encoder + recurrent core + pooling, then a CNN decoder over the pooled map.

    Args:
        arch: The per-pixel model's hyper-parameters (many-to-one head: its pooling is used;
            its linear head is left unused).
        decoder_width: Hidden channels of the decoder.
        decoder_layers: 3x3 convolutions of the decoder.
        norm_center: ``(C,)`` per-band centre.
        norm_scale: ``(C,)`` per-band scale.

    Attributes:
        core: The :class:`SequenceClassifier` whose encoder and recurrent layers run per pixel.
        decoder: The :class:`CNNDecoder`.
        receptive_radius: Halo the model needs: encoder patch radius + decoder radius.
    """

    def __init__(self, arch: ArchConfig, decoder_width: int = 64, decoder_layers: int = 2,
                 norm_center: Any = None, norm_scale: Any = None) -> None:  # fmt: skip
        super().__init__()
        if arch.head != "many-to-one":
            raise CropseqError("the CNN decoder pools each pixel's sequence: it needs the many-to-one head")
        self.arch = arch
        self.core = SequenceClassifier(arch, norm_center, norm_scale)
        pooled_dim = self.core.head.in_features  # the many-to-one head's input: the pooled vector, whatever the pooling
        del self.core.head  # the decoder replaces the per-pixel linear head
        self.decoder = CNNDecoder(pooled_dim, arch.n_classes, decoder_width, decoder_layers)
        self.receptive_radius = self.core.halo + self.decoder.receptive_radius

    def pixel_features(self, x: torch.Tensor, doy: torch.Tensor, batch: int = 4096) -> torch.Tensor:
        """Pooled per-pixel features ``(F, H + 2d, W + 2d)`` of one image ``x (T, C, H + 2R, W + 2R)``.

        ``d`` is the decoder radius; the encoder consumes its own patch radius. A pixel
        without any valid date gets an all-zero vector (every pooling of no step is zero).

        Args:
            x: Raw values, NaN where missing.
            doy: ``(T,)`` day of year (NaN when unknown).
            batch: Pixel sequences per recurrent call (bounds the memory of large chunks).
        """
        m, h = self.core, self.core.halo
        t = x.shape[0]
        hh, ww = x.shape[-2] - 2 * h, x.shape[-1] - 2 * h
        doy_b = doy[None, :].to(torch.float32)
        phase = m.temporal_features(doy_b)[0] if self.arch.encoder_time else None
        valid = torch.isfinite(x[:, :, h : h + hh, h : h + ww]).all(dim=1)  # (T, H', W')
        feats = m.encoder(m.encoder_input(x, phase)) * valid[:, None].to(x.dtype)  # masked steps: exact zeros
        feats = feats.permute(2, 3, 0, 1).reshape(hh * ww, t, -1)
        valid_px = valid.permute(1, 2, 0).reshape(hh * ww, t)
        season = m.season_phase(doy_b)
        pooled = []
        for i in range(0, hh * ww, batch):
            f, v = feats[i : i + batch], valid_px[i : i + batch]
            db = doy_b.expand(f.shape[0], t)
            out = m.recurrent(m.step_inputs(f, v, db), sequence_lengths(v))
            pooled.append(m.pool(out, v, season.expand(f.shape[0], t)))
        return torch.cat(pooled).T.reshape(-1, hh, ww)

    def forward(self, x: torch.Tensor, doy: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, P, P)`` of windows ``x (B, T, C, P + 2R, P + 2R)`` with ``doy (B, T)``."""
        maps = torch.stack([self.pixel_features(xb, db) for xb, db in zip(x, doy, strict=True)])
        return crop_core(self.decoder(self.core.drop(maps)), self.decoder.receptive_radius)
