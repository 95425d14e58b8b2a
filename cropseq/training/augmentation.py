"""Temporal augmentation of training batches (torch ops, driven by an explicit generator).

Why these three: satellite time series of the same crop differ mostly by *which* dates were
observed (clouds, revisit), by *when* the season happened (sowing a week or two earlier or
later) and by small radiometric differences. Each transform mimics one of them and keeps the
label valid:

- **date dropout**: each valid observation is marked missing (set to NaN) with probability
  ``date_dropout``; the masking path of the model then sees exactly what a cloud would give;
- **day-of-year shift**: every sequence's dates move by one uniform shift in
  ``[-doy_shift, +doy_shift]`` days (phenology shifts between fields and years);
- **band noise**: Gaussian noise of ``noise`` x the band scale on every value.

Applied on the training device with a ``torch.Generator`` seeded per epoch, so a run (and a
resumed run) is repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Augmentation"]


@dataclass(frozen=True)
class Augmentation:
    """Augmentation strengths (0 disables each).

    Attributes:
        date_dropout: Probability of dropping each valid observation.
        doy_shift: Maximum absolute shift of a sequence's day of year, in days.
        noise: Gaussian noise standard deviation, in units of each band's scale.
    """

    date_dropout: float = 0.0
    doy_shift: float = 0.0
    noise: float = 0.0

    @property
    def active(self) -> bool:
        """Whether any augmentation is switched on."""
        return self.date_dropout > 0 or self.doy_shift > 0 or self.noise > 0

    def __call__(
        self,
        x: torch.Tensor,
        doy: torch.Tensor,
        scale: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented copies of ``x (N, T, C, p, p)`` and ``doy (N, T)``.

        Args:
            x: Raw values, NaN = missing.
            doy: Day of year, NaN = unknown (stays NaN).
            scale: ``(C,)`` per-band scale (the normalisation scale) for the noise.
            generator: Random source (on the CPU; draws are moved to ``x.device``).
        """
        if not self.active:
            return x, doy
        n, t = doy.shape
        dev = x.device
        if self.noise > 0:
            eps = torch.randn(x.shape, generator=generator).to(dev)
            x = x + eps * (self.noise * scale.to(dev).view(1, 1, -1, 1, 1))
        if self.date_dropout > 0:
            drop = (torch.rand(n, t, generator=generator) < self.date_dropout).to(dev)
            x = x.masked_fill(drop[:, :, None, None, None], float("nan"))
        if self.doy_shift > 0:
            shift = (torch.rand(n, 1, generator=generator) * 2 - 1).to(dev) * self.doy_shift
            doy = doy + shift
        return x, doy
