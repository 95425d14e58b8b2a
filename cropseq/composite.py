"""Regular time grid: N-day composites of the valid observations (``composite:`` in stack.yaml).

``composite: {period: 10D, method: median}`` turns a stack's irregular dates into fixed
periods, as sits' ``sits_regularize`` does:

- Bins are ``[origin + k * period, origin + (k + 1) * period)``, ``k = 0, 1, …`` up to the
  bin holding the last date. ``origin`` defaults to the first date's day (midnight); dates
  before an explicit ``origin`` are not used. Each bin's date (the cube's ``time``) is its
  **start**.
- Per pixel and band, only valid (non-NaN) observations of the bin are combined:
  ``median`` / ``mean`` (NaN-ignoring), ``first`` (the earliest valid value of each band),
  ``max-ndvi`` (all bands from the date whose NDVI is highest; needs ``red``/``nir`` bands,
  named by ``red:``/``nir:`` or found among the common names). A bin with no valid
  observation (no date at all, or clouds on every date) is NaN.

The composite is applied by the reader (:class:`CompositeReader` wraps the reader of
:mod:`cropseq.io`): each chunk's window is read for all dates and composited in the same
task, so memory stays flat and the direct window reads of inference keep working.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cropseq.errors import CropseqError, reject_unknown_keys

__all__ = ["CompositeReader", "CompositeSpec", "METHODS", "NIR_NAMES", "RED_NAMES", "bin_dates", "composite_block", "composite_reader", "parse_composite"]

METHODS = ("median", "mean", "first", "max-ndvi")
_KEYS = {"period", "method", "origin", "red", "nir"}
_PERIOD = re.compile(r"^P?(\d+)([DW])$", re.IGNORECASE)
#: Band names tried for ``max-ndvi`` when ``red:``/``nir:`` are not given (first found wins).
RED_NAMES = ("red", "B04", "B4", "SR_B4")
NIR_NAMES = ("nir", "B08", "B8", "B8A", "SR_B5")


@dataclass(frozen=True)
class CompositeSpec:
    """A parsed ``composite:`` key.

    Attributes:
        period_days: Bin length in days.
        method: One of :data:`METHODS`.
        origin: Start of the first bin, or None (the first date's day).
        red: ``max-ndvi``: the red band's name (None for other methods).
        nir: ``max-ndvi``: the near-infrared band's name.
    """

    period_days: int
    method: str
    origin: pd.Timestamp | None = None
    red: str | None = None
    nir: str | None = None

    @property
    def label(self) -> str:
        """E.g. ``10D median``."""
        return f"{self.period_days}D {self.method}"


def parse_composite(
    raw: Any, bands: Sequence[str], where: Any, parse_date: Callable[[Any, str, Any], pd.Timestamp]
) -> CompositeSpec:
    """Check a manifest's ``composite:`` mapping.

    Args:
        raw: The YAML value, e.g. ``{period: 10D, method: median}``.
        bands: The cube's band names (to check ``red``/``nir``).
        where: The manifest, named in errors.
        parse_date: Parses ``origin`` (the manifest's date parser).

    Raises:
        CropseqError: unknown keys or method, a period that is not a whole number of days
            or weeks, an unparseable origin, ``max-ndvi`` without red/nir bands.
    """
    if not isinstance(raw, dict):
        raise CropseqError("composite must be a mapping like {period: 10D, method: median}", where)
    reject_unknown_keys(raw, _KEYS, where, key="unknown key composite.{}")
    days = _period_days(raw.get("period"), where)
    method = str(raw.get("method", "median")).lower()
    if method not in METHODS:
        raise CropseqError(f"composite.method must be one of {', '.join(METHODS)}, not {raw.get('method')!r}", where)
    origin = parse_date(raw["origin"], "composite.origin", where) if raw.get("origin") is not None else None
    red = nir = None
    if method == "max-ndvi":
        red = _ndvi_band(raw.get("red"), RED_NAMES, "red", bands, where)
        nir = _ndvi_band(raw.get("nir"), NIR_NAMES, "nir", bands, where)
    elif raw.get("red") is not None or raw.get("nir") is not None:
        raise CropseqError("composite.red/nir are for method: max-ndvi", where)
    return CompositeSpec(days, method, origin, red, nir)


def _period_days(raw: Any, where: Any) -> int:
    """``10``, ``10D``, ``P16D``, ``2W`` -> days."""
    m = None if raw is None or isinstance(raw, bool) else _PERIOD.match(str(raw).strip())
    if isinstance(raw, int) and not isinstance(raw, bool):
        days = raw
    elif m is not None:
        days = int(m.group(1)) * (7 if m.group(2).upper() == "W" else 1)
    else:
        raise CropseqError(
            f"composite.period must be a whole number of days or weeks (10D, P16D, 2W), not {raw!r}"
            " (months and years have no fixed length)",
            where,
        )
    if days < 1:
        raise CropseqError(f"composite.period must be at least 1 day, not {raw!r}", where)
    return days


def _ndvi_band(raw: Any, defaults: Sequence[str], what: str, bands: Sequence[str], where: Any) -> str:
    if raw is not None:
        if str(raw) not in bands:
            raise CropseqError(f"composite.{what} {raw!r} is not a band of the stack ({', '.join(bands)})", where)
        return str(raw)
    lower = {b.lower(): b for b in bands}
    for name in defaults:
        if name.lower() in lower:
            return lower[name.lower()]
    raise CropseqError(f"composite method max-ndvi needs a {what} band: set composite.{what} (bands: {', '.join(bands)})", where)


def bin_dates(dates: pd.DatetimeIndex, spec: CompositeSpec, where: Any = None) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """The bins of sorted ``dates``: their start dates and each date's bin (-1: not used).

    Raises:
        CropseqError: when every date lies before ``origin``.
    """
    dates = pd.DatetimeIndex(dates).as_unit("ns")
    origin = spec.origin if spec.origin is not None else dates[0].normalize()
    if dates[-1] < origin:
        raise CropseqError(
            f"composite.origin {origin.date().isoformat()} is after the last date {dates[-1].date().isoformat()}", where
        )
    step = pd.Timedelta(days=spec.period_days)
    index = np.floor((dates - origin) / step).astype(np.int64)
    index = np.where(dates < origin, -1, index)
    n_bins = int(index.max()) + 1
    starts = pd.DatetimeIndex([origin + k * step for k in range(n_bins)]).as_unit("ns")
    return starts, index


def composite_block(
    block: np.ndarray, bin_of: Sequence[int], n_bins: int, method: str, ndvi: tuple[int, int] | None = None
) -> np.ndarray:
    """Composite a ``(time, band, y, x)`` block into ``(n_bins, band, y, x)`` (float32).

    Args:
        block: Values per date (NaN = missing), dates in the order of ``bin_of``.
        bin_of: Each date's bin (-1: not used).
        n_bins: Number of bins.
        method: One of :data:`METHODS`.
        ndvi: ``max-ndvi``: the (red, nir) band indices in ``block``.
    """
    bins = np.asarray(bin_of, dtype=np.int64)
    out = np.full((n_bins, *block.shape[1:]), np.nan, dtype=np.float32)
    for k in np.unique(bins[bins >= 0]):
        obs = block[bins == k]
        if method in ("median", "mean"):
            out[k] = _nan_reduce(np.nanmedian if method == "median" else np.nanmean, obs)
        elif method == "first":
            out[k] = _take(obs, np.argmax(~np.isnan(obs), axis=0))
        else:
            assert ndvi is not None
            out[k] = _max_ndvi(obs, *ndvi)
    return out


def _nan_reduce(reduce: Callable[..., np.ndarray], obs: np.ndarray) -> np.ndarray:
    """``reduce(obs, axis=0)`` ignoring NaN; NaN where every observation is NaN.

    All-NaN pixels get a placeholder first: numpy would warn about them, and
    ``warnings.catch_warnings`` is not thread-safe (Dask reads chunks in threads).
    """
    empty = np.isnan(obs).all(axis=0)
    result = reduce(np.where(empty, 0.0, obs), axis=0)
    result[empty] = np.nan
    return result


def _take(obs: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """``obs[pick[...], ...]`` along the time axis (NaN stays NaN)."""
    return np.take_along_axis(obs, pick[None], axis=0)[0]


def _max_ndvi(obs: np.ndarray, red: int, nir: int) -> np.ndarray:
    """Every band from the date with the highest NDVI (NaN where no date has one)."""
    r, n = obs[:, red].astype(np.float64), obs[:, nir].astype(np.float64)
    ndvi = (n - r) / (n + r)
    # A date counts only where all its bands are valid: the composite keeps one date's spectrum.
    ok = np.isfinite(ndvi) & ~np.isnan(obs).any(axis=1)
    pick = np.argmax(np.where(ok, ndvi, -np.inf), axis=0)
    picked = np.take_along_axis(obs, pick[None, None], axis=0)[0]
    picked[:, ~ok.any(axis=0)] = np.nan
    return picked


@dataclass(frozen=True)
class CompositeReader:
    """Picklable window reader that composites what ``reader`` reads.

    ``reader`` is any window reader with ``n_time``, ``bands``, ``select(times, bands)``
    and ``(row_off, col_off, height, width) -> (time, band, h, w)`` (the stack reader of
    :mod:`cropseq.io`). The output holds bins ``time_take`` and bands ``band_take`` of the
    full composite, so a selection of dates or bands reads only the dates it needs.
    """

    reader: Any
    bin_of: tuple[int, ...]  # per date of reader
    n_bins: int
    method: str
    ndvi: tuple[int, int] | None
    time_take: tuple[int, ...]
    band_take: tuple[int, ...]

    @property
    def n_time(self) -> int:
        """Number of output dates (bins)."""
        return len(self.time_take)

    @property
    def bands(self) -> tuple[Any, ...]:
        """The output bands (the reader's band descriptions)."""
        return tuple(self.reader.bands[b] for b in self.band_take)

    def __call__(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        """The composite's float32 ``(bin, band, height, width)`` block of this window."""
        n_bands = len(self.reader.bands)
        if self.reader.n_time == 0:  # only empty bins selected: nothing to read
            block = np.empty((0, n_bands, height, width), dtype=np.float32)
        else:
            block = self.reader(row_off, col_off, height, width)
        full = composite_block(block, self.bin_of, self.n_bins, self.method, self.ndvi)
        return full[np.asarray(self.time_take)][:, np.asarray(self.band_take)]

    def select(self, times: Sequence[int], bands: Sequence[int]) -> CompositeReader:
        """The reader of output bins ``times`` and bands ``bands`` (indices, in output order)."""
        want = [self.time_take[t] for t in times]
        bins = sorted(set(want))
        dates = [d for d, k in enumerate(self.bin_of) if k in set(bins)]
        band_want = [self.band_take[b] for b in bands]
        needed = sorted(set(band_want) | set(self.ndvi or ()))
        return CompositeReader(
            self.reader.select(dates, needed),
            tuple(bins.index(self.bin_of[d]) for d in dates),
            len(bins),
            self.method,
            (needed.index(self.ndvi[0]), needed.index(self.ndvi[1])) if self.ndvi else None,
            tuple(bins.index(k) for k in want),
            tuple(needed.index(b) for b in band_want),
        )


def composite_reader(
    reader: Any, dates: pd.DatetimeIndex, bands: Sequence[str], spec: CompositeSpec, where: Any = None
) -> tuple[CompositeReader, pd.DatetimeIndex, dict[str, Any]]:
    """Wrap a stack reader (sorted ``dates``, ``bands``) so it yields ``spec``'s composite.

    Returns:
        The reader, the bin start dates (the new time axis) and a JSON-ready description
        (``period``, ``method``, ``origin``, ``observations`` used, ``bins``, ``empty_bins``:
        bins without any date) for ``cube.attrs["composite"]``.
    """
    starts, index = bin_dates(dates, spec, where)
    used = [d for d, k in enumerate(index) if k >= 0]
    sub = reader.select(used, list(range(len(bands)))) if len(used) < len(index) else reader
    ndvi = (list(bands).index(str(spec.red)), list(bands).index(str(spec.nir))) if spec.method == "max-ndvi" else None
    out = CompositeReader(
        sub, tuple(int(index[d]) for d in used), len(starts), spec.method, ndvi,
        tuple(range(len(starts))), tuple(range(len(bands))),
    )  # fmt: skip
    info = {
        "period": f"{spec.period_days}D",
        "method": spec.method,
        "origin": starts[0].isoformat(),
        "observations": len(used),
        "bins": len(starts),
        "empty_bins": int(len(starts) - len(set(index[index >= 0].tolist()))),
    }
    return out, starts, info
