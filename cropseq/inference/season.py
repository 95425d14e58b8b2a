"""The season window and band selection of a cube, before any chunk runs.

:func:`select_season` cuts the cube to ``[start, end)``; :func:`select_bands` picks and orders
the model's bands by name; :func:`day_of_year` is the ``doy`` every predictor takes. They index
with slices where they can (:func:`_index`), so a huge Dask cube stays a cheap lazy view.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from cropseq.errors import CropseqError

__all__ = ["cube_source", "day_of_year", "select_bands", "select_season"]


def cube_source(cube: xr.DataArray) -> str:
    """The stack a cube came from (its ``source`` attribute, else its name), for messages."""
    return str(cube.attrs.get("source") or cube.name or "stack")


def _parse_date(value: Any, what: str) -> np.datetime64 | None:
    """``value`` as ``datetime64[ns]`` (naive), None for an open end.

    Raises:
        CropseqError: when ``value`` is not an ISO date.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, (_dt.date, np.datetime64, pd.Timestamp)):
            ts = pd.Timestamp(value)
        else:
            # ISO only (np.datetime64 is strict): pandas would read "june" as this June.
            ts = pd.Timestamp(np.datetime64(str(value).strip(), "ns"))
    except (ValueError, TypeError):
        raise CropseqError(f"{what} date {value!r} is not a date (use YYYY-MM-DD)") from None
    if ts is pd.NaT:
        raise CropseqError(f"{what} date {value!r} is not a date (use YYYY-MM-DD)")
    return np.datetime64(ts.tz_localize(None) if ts.tzinfo else ts, "ns")


def select_season(cube: xr.DataArray, start: Any = None, end: Any = None) -> xr.DataArray:
    """The dates of ``cube`` within ``[start, end)`` (start inclusive, end exclusive).

    End-exclusive like the ``from``/``to`` season bounds of labels and ``cropseq samples``,
    so one season's ``--start 2011-09-01 --end 2012-09-01`` means the same everywhere.

    Use it to pick one season from a multi-year stack (e.g. one of dtwSat's six).

    Args:
        cube: A cube with a datetime ``time`` coordinate.
        start: ``YYYY-MM-DD`` string, date or datetime; None = open start.
        end: The same for the (exclusive) end; None = open end.

    Returns:
        The cube cut to the window (the cube itself when both ends are open).

    Raises:
        CropseqError: on an unparsable date, ``start > end``, a stack without dates, or
            when no date falls in the window (names the stack and its date range).
    """
    s, e = _parse_date(start, "start"), _parse_date(end, "end")
    if s is None and e is None:
        return cube
    src = cube_source(cube)
    t = np.asarray(cube["time"].values)
    if not np.issubdtype(t.dtype, np.datetime64):
        raise CropseqError("the stack has no dates, so a --start/--end window cannot be applied", src)
    if s is not None and e is not None and s >= e:
        raise CropseqError(f"start {start} is not before end {end}", src)
    keep = np.ones(t.shape, bool)
    if s is not None:
        keep &= t >= s
    if e is not None:
        keep &= t < e
    if not keep.any():
        first = str(t.min())[:10] if t.size else "-"
        last = str(t.max())[:10] if t.size else "-"
        raise CropseqError(
            f"no dates between {start or 'the start'} and {end or 'the end'} (the stack spans {first} to {last})",
            src,
        )
    return cube.isel(time=_index(np.flatnonzero(keep)))


def select_bands(cube: xr.DataArray, bands: list[str]) -> xr.DataArray:
    """``cube`` with exactly ``bands``, in that order (matched by name).

    Args:
        cube: A cube with a ``band`` coordinate of names.
        bands: The model's bands, in model order.

    Returns:
        The cube restricted and reordered to ``bands``.

    Raises:
        CropseqError: naming the stack, the missing bands and the bands it has.
    """
    from cropseq.predictors import band_indices

    have = [str(b) for b in np.asarray(cube["band"].values)]
    return cube.isel(band=_index(band_indices(bands, have, cube_source(cube))))


def _index(idx: Any) -> slice | list[int]:
    """A consecutive ascending index as a slice, any other as a list.

    Dask slices any number of chunks lazily, while a list ("take") builds one task per chunk,
    unbounded for a huge scene.
    """
    idx = [int(i) for i in idx]
    if idx and idx == list(range(idx[0], idx[-1] + 1)):
        return slice(idx[0], idx[-1] + 1)
    return idx


def day_of_year(cube: xr.DataArray) -> np.ndarray:
    """``(T,)`` float32 day of year of each date (NaN when the stack has no dates)."""
    t = np.asarray(cube["time"].values)
    if np.issubdtype(t.dtype, np.datetime64):
        return pd.DatetimeIndex(t).day_of_year.to_numpy().astype(np.float32)
    return np.full(t.shape, np.nan, np.float32)
