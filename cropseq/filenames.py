r"""Band and date from file names: the one-file-per-band-per-date layout (``single-band``).

One job: turn ``files`` (one glob, or ``{band: glob}``) and ``pattern`` (a regex with named
groups ``band`` and ``date``, searched in each file name) into a ``band -> date -> file``
table, with one-line errors for what real folders get wrong. Examples of ``pattern``:

- sits/BDC: ``SENTINEL-2_MSI_20LLQ_(?P<band>B\d\d|SCL)_(?P<date>\d{4}-\d{2}-\d{2})``
- Sentinel-2 SAFE: ``T33UWP_(?P<date>\d{8}T\d{6})_(?P<band>B\d\d)_(?P<res>\d+m)\.jp2``
  (other groups, like ``res``, are allowed and ignored).

With ``files: {band: glob}`` the band is the key, and ``pattern`` needs only ``date`` (it
may be left out: then the first ``YYYY-MM-DD`` or ``YYYYMMDD`` in the name is the date).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pandas as pd

from cropseq.errors import CropseqError
from cropseq.remote import Source

__all__ = ["GENERIC_DATE", "compile_pattern", "match_files"]

#: The first ISO or compact date in a name (also a compact timestamp ``20230301T101021``).
GENERIC_DATE = re.compile(r"(?<!\d)(?P<date>\d{4}-\d{2}-\d{2}(?:T\d{2}:?\d{2}:?\d{2})?|\d{8}(?:T\d{6})?)(?!\d)")


def compile_pattern(raw: Any, need_band: bool, where: Source) -> re.Pattern[str]:
    """``pattern`` compiled and checked for its named groups.

    Raises:
        CropseqError: not a valid regex, or without a ``date`` (or, for one glob over every
            band, ``band``) named group.
    """
    if raw is None:
        if need_band:
            raise CropseqError("single-band layout with one files glob needs pattern: with (?P<band>...) and (?P<date>...) groups", where)
        return GENERIC_DATE
    try:
        pat = re.compile(str(raw))
    except re.error as e:
        raise CropseqError(f"pattern is not a valid regex ({e})", where) from None
    missing = [g for g in (("band", "date") if need_band else ("date",)) if g not in pat.groupindex]
    if missing:
        raise CropseqError(
            f"pattern {raw!r} has no named group {missing[0]!r}: write (?P<{missing[0]}>...) around the {missing[0]} in the file name",
            where,
        )
    return pat


def match_files(
    files: dict[str | None, list[Source]],
    pattern: re.Pattern[str],
    parse_date: Callable[[str, str, Source], pd.Timestamp],
    where: Source,
) -> dict[str, dict[pd.Timestamp, Source]]:
    """``band -> date -> file`` from file names.

    Args:
        files: ``{band: files}``, or ``{None: files}`` when the band comes from the name.
        pattern: From :func:`compile_pattern`.
        parse_date: ``(text, what, where) -> Timestamp`` (the manifest's date parser).
        where: The manifest (named in errors).

    Raises:
        CropseqError: a file name the pattern does not match, a date that does not parse,
            two files for one band and date.
    """
    out: dict[str, dict[pd.Timestamp, Source]] = {}
    for band, paths in files.items():
        for f in paths:
            m = pattern.search(f.name)
            if m is None:
                raise CropseqError(f"pattern {pattern.pattern!r} does not match file name {f.name!r}", where)
            b = band if band is not None else m.group("band")
            d = parse_date(m.group("date"), f"date in file name {f.name!r}", where)
            seen = out.setdefault(b, {})
            if d in seen:
                raise CropseqError(
                    f"two files for band {b} on {d.isoformat()}: {seen[d].name} and {f.name} (narrow files or pattern)", where
                )
            seen[d] = f
    return out
