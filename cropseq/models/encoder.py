"""Per-date CNN encoder built from unpadded ("valid") convolutions.

The encoder maps one date's ``p x p`` patch of ``C`` bands to a ``D``-vector. Because every
convolution is unpadded, ``h = p // 2`` 3x3 layers shrink a ``p x p`` patch to ``1 x 1``, and
the *same* module applied to a whole image chunk ``(T, C, H + 2h, W + 2h)`` yields per-pixel
vectors ``(T, D, H, W)`` in one convolution pass: the vector at pixel ``(i, j)`` is exactly the
vector of the patch centred on it. That identity is what makes whole-scene inference
(:meth:`cropseq.predictors.deep.DeepPredictor.predict_image`) fast.

``p = 1`` degenerates to a per-pixel encoder: only 1x1 convolutions (a per-pixel MLP).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cropseq.errors import CropseqError

__all__ = ["ChannelNorm", "PatchEncoder"]


class ChannelNorm(nn.Module):
    """LayerNorm over the channel axis of ``(M, D, H, W)`` maps (per pixel).

    Unlike BatchNorm it normalises each pixel on its own, so training (on gathered valid
    observations) and whole-image inference compute the same function, and masked steps
    never leak into any statistic.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (``(M, D, H, W)`` or ``(M, D)``) over its channel axis."""
        if x.dim() == 2:
            return F.layer_norm(x, (x.shape[1],), self.weight, self.bias, self.eps)
        y = F.layer_norm(x.movedim(1, -1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.movedim(-1, 1)


class PatchEncoder(nn.Module):
    """Per-date patch encoder: ``h`` valid 3x3 convolutions, then pointwise layers.

    Layout for patch ``p`` (``h = p // 2``)::

        [Conv3x3(valid) -> GELU] x h          # p x p -> 1 x 1
        [Conv1x1 -> GELU]        if h == 0     # so p = 1 still has a hidden layer
        Conv1x1 -> ChannelNorm -> GELU         # -> out_dim

    No BatchNorm: batch statistics would mix in masked (zero-filled) observations and make
    the patch path and the image path differ in training mode.

    Args:
        in_bands: Number of input bands ``C``.
        patch: Odd patch size ``p >= 1``.
        width: Channels of the hidden layers.
        out_dim: Size ``D`` of the per-date vector.
    """

    def __init__(self, in_bands: int, patch: int = 1, width: int = 64, out_dim: int = 64) -> None:
        super().__init__()
        if patch < 1 or patch % 2 == 0:
            raise CropseqError(f"patch size must be odd and >= 1, got {patch}")
        self.in_bands = in_bands
        self.patch = patch
        self.halo = patch // 2
        self.out_dim = out_dim
        layers: list[nn.Module] = []
        c = in_bands
        for _ in range(self.halo):
            layers += [nn.Conv2d(c, width, kernel_size=3), nn.GELU()]
            c = width
        if self.halo == 0:
            layers += [nn.Conv2d(c, width, kernel_size=1), nn.GELU()]
            c = width
        layers += [nn.Conv2d(c, out_dim, kernel_size=1), ChannelNorm(out_dim), nn.GELU()]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode patches or image planes: ``(M, C, H + 2h, W + 2h)`` -> ``(M, D, H, W)``.

        A ``p x p`` patch gives a ``(M, D, 1, 1)`` map (flatten it for vectors); a whole
        chunk gives per-pixel vectors of every core pixel. NaN-free input is the caller's job
        (masked values are zero-filled after normalisation).
        """
        if x.dim() != 4 or x.shape[1] != self.in_bands:
            raise ValueError(f"expected (M, {self.in_bands}, H, W), got {tuple(x.shape)}")
        for layer in self.layers:
            if isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and x.shape[-2:] == (1, 1):
                # A 1x1 conv on 1x1 maps is a matmul; F.linear is much faster on CPU than
                # conv2d with a huge batch of 1x1 images, and computes the same numbers.
                y = F.linear(x.flatten(1), layer.weight.flatten(1), layer.bias)
                x = y[:, :, None, None]
            else:
                x = layer(x)
        return x
