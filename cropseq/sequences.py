"""In-memory labelled sequences: the array form of the samples table.

:func:`cropseq.samples.table_to_arrays` turns a samples table into a :class:`SequenceArrays`;
training, evaluation, the RandomForest baseline and the benchmarks all consume this form,
and inference builds the same ``x``/``doy`` layout from cube chunks.

Layout (N sequences, T steps after padding, C bands, p x p patch):

- ``x``: float32 ``(N, T, C, p, p)``; NaN marks a missing observation (cloud, nodata, or
  padding after the end of a shorter sequence).
- ``doy``: float32 ``(N, T)`` day of year 1..366 of each step; NaN for padding or when
  dates are unknown (then models fall back to the step index).
- ``present``: bool ``(N, T)``: the step exists (False only for padding). A present step can
  still be cloudy (all-NaN bands); models derive the valid flag from ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["SequenceArrays"]


@dataclass
class SequenceArrays:
    """Labelled (or unlabelled) sequences as dense arrays.

    Attributes:
        x: ``(N, T, C, p, p)`` float32, NaN where missing.
        doy: ``(N, T)`` float32 day of year, NaN where unknown or padded.
        present: ``(N, T)`` bool, False for padding.
        bands: Band names, length C, in ``x`` order.
        labels: ``(N,)`` class names (object/str array), or None when unlabelled.
        sample_ids: ``(N,)`` int64 sample ids (ascending).
        groups: ``(N,)`` group ids (str) keeping a field on one side of a split.
        dates: ``(N, T)`` datetime64[D], NaT where unknown or padded.
    """

    x: np.ndarray
    doy: np.ndarray
    present: np.ndarray
    bands: list[str]
    labels: np.ndarray | None = None
    sample_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    groups: np.ndarray | None = None
    dates: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, t, c, p, p2 = self.x.shape
        assert p == p2, "patch must be square"
        assert self.doy.shape == (n, t) and self.present.shape == (n, t)
        assert len(self.bands) == c
        if self.sample_ids.size == 0:
            self.sample_ids = np.arange(n, dtype=np.int64)

    @property
    def n(self) -> int:
        """Number of sequences."""
        return int(self.x.shape[0])

    @property
    def patch(self) -> int:
        """Patch edge in pixels."""
        return int(self.x.shape[3])

    def subset(self, idx: np.ndarray) -> SequenceArrays:
        """Rows ``idx`` (indices or boolean mask) as a new object."""
        return SequenceArrays(
            x=self.x[idx],
            doy=self.doy[idx],
            present=self.present[idx],
            bands=list(self.bands),
            labels=None if self.labels is None else self.labels[idx],
            sample_ids=self.sample_ids[idx],
            groups=None if self.groups is None else self.groups[idx],
            dates=None if self.dates is None else self.dates[idx],
        )
