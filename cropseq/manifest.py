"""``stack.yaml``: the manifest describing a multitemporal image stack.

A manifest names the rasters of a stack, their band names and their dates, plus how to turn
raw values into physical ones (nodata, masks, valid ranges, scale/offset). See
``docs/ARCHITECTURE.md`` ("stack.yaml") for the keys. :func:`load_manifest` parses and
validates it and resolves every path, glob and date, so :func:`cropseq.io.open_stack` only
has to check the raster headers and read.

Resolution rules (beyond ARCHITECTURE.md, which they refine):

- ``dates`` may be a file (one ISO date or timestamp per line; blank lines and ``#``
  comments ignored), a YAML list, or ``descriptions`` (per-band layout only: the band
  descriptions of the first band's raster). Timestamps keep their time of day, so two
  acquisitions on the same day (e.g. Sentinel-2 at 10:04 and 10:11) are distinct dates;
  exactly equal dates are an error.
- per-date ``files`` may be a glob (matched files sorted by name) or a list. Dates come from
  ``date_pattern`` (regex group 1, ``YYYYMMDD`` or ``YYYY-MM-DD``, searched in the file
  name) **or** from ``dates`` (then paired with the files in order); not both.
- per-date ``masks`` as a glob are paired with the files by the date found in each mask
  file name (``date_pattern`` first, else the first ``YYYYMMDD``/``YYYY-MM-DD`` in the name);
  when mask names hold no dates they are paired by sorted name order. A list is paired in
  order.
- ``valid_range`` is applied after ``scale``/``offset`` (physical units); a single
  ``[lo, hi]`` applies to every band.
- ``crs`` / ``transform`` *assign* georeferencing (like ``gdal_translate -a_srs/-a_ullr``):
  ``crs: none`` reads rasters without georeferencing in pixel coordinates; ``crs: EPSG:32633``
  plus ``transform: [a, b, c, d, e, f]`` (the affine ``x = a*col + b*row + c``,
  ``y = d*col + e*row + f``) gives them a grid. Without them a raster lacking georeferencing
  is an error. Nothing is resampled by these keys.
- ``grid: {crs, resolution, bounds | bbox}`` is the *target* grid every raster is read onto
  (reprojected/resampled with GDAL's warper, :mod:`cropseq.grid`). ``grid: {}`` keeps the
  default grid (the finest band of the first date) but still resamples rasters on other
  grids. Without ``grid``, the per-band and per-date layouts require every raster on one grid
  (as before), except a ``mask:`` band; the ``single-band`` layout always resamples.
- ``mask: {band, invalid | valid | bits}`` names a band of the stack holding a class or QA
  mask (:mod:`cropseq.masking`); that band is read with nearest neighbour and is not a cube
  band. ``masks:`` (separate mask files) and ``mask:`` exclude each other.
- ``single-band`` layout: one single-band raster per band per date; ``files`` is one glob
  (band and date from ``pattern``'s named groups) or ``{band: glob}`` (:mod:`cropseq.filenames`).
  ``bands`` (optional) picks and orders the bands; every band (and the mask band) must have a
  file on every date.
- ``scale`` / ``offset`` not set in the manifest for a band come from the raster's own
  scale/offset tags (GDAL metadata), else 1 / 0.
- Any path may be a URL (``http(s)://``, ``s3://``, ``gs://``, ``az://``) or a GDAL
  ``/vsi…/`` path, and the manifest itself may be an ``http(s)`` URL: relative paths in it
  resolve against its URL; globs are listed on object stores but refused over plain HTTP
  (:mod:`cropseq.remote`, ``docs/remote-data.md``).
- ``composite: {period, method, origin}`` puts the cube on a regular time grid of N-day
  composites (:mod:`cropseq.composite`; each bin dated by its start).
- ``interleaved`` layout: ``files`` is one raster holding every band of every date
  (e.g. 447 bands = 149 dates × 3 bands); ``bands`` lists the bands within a date,
  ``order: date-major`` (raster bands d1b1 d1b2 ... d2b1) or ``band-major`` (b1d1 b1d2 ...
  b2d1) says the order, ``dates`` a file, a list or ``descriptions`` (each raster band's
  description holds its date, e.g. ``NDVI_2021-07-04``; the bands of one date must agree);
  ``masks`` as for per-band. A band count that is not dates × bands is an error that says
  the arithmetic.
- ``dtype: {band: int16}`` (or one type for all bands) reinterprets the stored bits before
  nodata, scale and offset (a MODIS NDVI of -0.01 stored unsigned as 65535 reads -1); the
  same size as the stored type only, not for a band resampled onto another grid. A nodata
  in the manifest is in the new type's terms; the file's own is reinterpreted with the data.
"""

from __future__ import annotations

import datetime as _dt
import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd
import yaml

from cropseq import remote
from cropseq.composite import CompositeSpec, parse_composite
from cropseq.errors import CropseqError, reject_unknown_keys
from cropseq.filenames import compile_pattern, match_files
from cropseq.grid import RESAMPLING, GridSpec, parse_grid_spec
from cropseq.masking import MaskRule, parse_mask
from cropseq.remote import RemotePath, Source, is_remote

if TYPE_CHECKING:
    from cropseq.stac_source import StacManifest

__all__ = ["LAYOUTS", "MANIFEST_NAME", "ORDERS", "REINTERPRET_DTYPES", "StackManifest", "find_manifest", "interleaved_band", "interleaved_count_error", "load_manifest", "parse_date"]

MANIFEST_NAME = "stack.yaml"
_KEYS = {
    "layout", "bands", "dates", "files", "date_pattern", "masks", "mask_invalid",
    "nodata", "valid_range", "scale", "offset", "crs", "transform", "grid", "mask", "pattern", "resampling",
    "order", "dtype", "composite",
}  # fmt: skip
_Layout = Literal["per-band", "per-date", "single-band", "interleaved"]
LAYOUTS: tuple[_Layout, ...] = ("per-band", "per-date", "single-band", "interleaved")
#: Raster band order of the ``interleaved`` layout (one raster holding every band of every date).
ORDERS = ("date-major", "band-major")
#: What ``dtype:`` may reinterpret a band's stored values as (same size as the stored type).
REINTERPRET_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")
_GENERIC_DATE = re.compile(r"(?<!\d)(\d{4}-\d{2}-\d{2}|\d{8})(?!\d)")


@dataclass(frozen=True)
class StackManifest:
    """A parsed, resolved ``stack.yaml``.

    Attributes:
        path: The manifest file.
        layout: ``"per-band"``, ``"per-date"``, ``"single-band"`` or ``"interleaved"``.
        bands: Band names, in cube order.
        dates: Dates in **file order** (raster band order for per-band, ``files`` order for
            per-date); :attr:`date_order` sorts them.
        band_files: per-band: band name -> multi-date raster (raster band i = ``dates[i]``).
        files: per-date: one multi-band raster per date, aligned with ``dates``; interleaved:
            the one raster holding every band of every date (a 1-tuple).
        masks: per-date: one single-band mask per date, aligned with ``dates``; per-band: one
            multi-date mask raster (a 1-tuple); empty when there are no masks.
        mask_invalid: ``"nonzero"`` (non-zero = invalid) or ``"zero"``.
        nodata: band -> nodata value overriding the file's (None: use the file's).
        valid_range: band -> ``(lo, hi)``; values outside become NaN.
        scale: band -> scale factor (default 1).
        offset: band -> offset (default 0).
        dates_source: Where the dates came from (named in errors).
        crs: CRS to assign (any string rasterio reads, e.g. ``EPSG:32633``), ``"none"`` to
            accept rasters without georeferencing, or None (use the files').
        transform: Affine ``(a, b, c, d, e, f)`` to assign, or None (use the files').
        grid: The target grid to read onto (``grid:`` key), or None (one grid required,
            except for the ``single-band`` layout and a ``mask:`` band).
        mask: The ``mask:`` rule and band, or None.
        band_date_files: single-band: band -> one raster per date, aligned with ``dates``
            (the mask band included).
        resampling: band -> resampling method overriding the default (bilinear, average
            when coarsening, nearest for the mask band).
        scale_set: Bands whose ``scale``/``offset`` the manifest sets (others may take the
            raster's own scale/offset tags).
        order: interleaved: ``"date-major"`` (raster bands d1b1 d1b2 ... d2b1 ...) or
            ``"band-major"`` (b1d1 b1d2 ... b2d1 ...); None for the other layouts.
        dtype: band -> numpy type name its stored values are reinterpreted as (same size:
            a uint16 65535 read as int16 is -1), before nodata, scale and offset.
        composite: The ``composite:`` regular time grid (:mod:`cropseq.composite`), or None.

    Files are :class:`~pathlib.Path` when local and :class:`~cropseq.remote.RemotePath`
    (a URL kept verbatim) when remote (:mod:`cropseq.remote`).
    """

    path: Source
    layout: _Layout
    bands: tuple[str, ...]
    dates: pd.DatetimeIndex
    band_files: dict[str, Source] = field(default_factory=dict)
    files: tuple[Source, ...] = ()
    masks: tuple[Source, ...] = ()
    mask_invalid: Literal["nonzero", "zero"] = "nonzero"
    nodata: dict[str, float | None] = field(default_factory=dict)
    valid_range: dict[str, tuple[float, float]] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    offset: dict[str, float] = field(default_factory=dict)
    dates_source: str = ""
    crs: str | None = None
    transform: tuple[float, float, float, float, float, float] | None = None
    grid: GridSpec | None = None
    mask: MaskRule | None = None
    band_date_files: dict[str, tuple[Source, ...]] = field(default_factory=dict)
    resampling: dict[str, str] = field(default_factory=dict)
    scale_set: frozenset[str] = frozenset()
    order: Literal["date-major", "band-major"] | None = None
    dtype: dict[str, str] = field(default_factory=dict)
    composite: CompositeSpec | None = None

    @property
    def cube_bands(self) -> tuple[str, ...]:
        """The cube's bands: :attr:`bands` without the ``mask:`` band."""
        return tuple(b for b in self.bands if self.mask is None or b != self.mask.band)

    @property
    def root(self) -> Source:
        """The folder relative paths are resolved against."""
        return self.path.parent

    @property
    def date_order(self) -> np.ndarray:
        """Indices that sort :attr:`dates` ascending (stable)."""
        return np.argsort(self.dates.to_numpy(), kind="stable")

    @property
    def sorted_dates(self) -> pd.DatetimeIndex:
        """Dates ascending (the cube's time axis)."""
        return self.dates[self.date_order]

    def raster_files(self) -> list[Source]:
        """Every raster the stack reads (bands, then masks)."""
        if self.layout == "single-band":
            return [f for b in self.bands for f in self.band_date_files[b]]
        data = list(self.band_files.values()) if self.layout == "per-band" else list(self.files)
        return data + list(self.masks)


# ----------------------------------------------------------------------------- helpers


def _resolve(root: Source, p: Any) -> Source:
    # A URL stays a URL (Path would collapse "https://" to "https:/"); a relative path in a
    # remote manifest is resolved against the manifest's URL.
    if is_remote(p) or is_remote(root):
        return remote.join(str(root), str(p))
    p = Path(os.path.expanduser(str(p)))
    return p if p.is_absolute() else root / p


def _glob(root: Source, pattern: str) -> list[Source]:
    if is_remote(pattern) or is_remote(root):
        return list(remote.glob(str(root), pattern))
    # The folder is literal (a path like "scenes [2023]" holds glob metacharacters); only the
    # pattern is a glob. os.path.join keeps an absolute pattern as is.
    return sorted(Path(p) for p in glob.glob(os.path.join(glob.escape(str(root)), os.path.expanduser(pattern))))


def parse_date(value: Any, what: str, where: str | os.PathLike[str] | None) -> pd.Timestamp:
    """Parse one date: ISO ``YYYY-MM-DD``, ``YYYYMMDD``, or an ISO timestamp.

    Time zones are converted to UTC and dropped (the cube's time axis is naive UTC).

    Raises:
        CropseqError: naming ``what`` (e.g. "date 3 in timeline") when it does not parse.
    """
    if isinstance(value, (_dt.date, _dt.datetime, np.datetime64, pd.Timestamp)):
        ts = pd.Timestamp(value)
    else:
        s = str(value).strip()
        try:
            if re.fullmatch(r"\d{8}", s):
                ts = pd.Timestamp(_dt.datetime.strptime(s, "%Y%m%d"))
            else:
                ts = pd.Timestamp(pd.to_datetime(s, format="ISO8601"))
        except (ValueError, TypeError, OverflowError):
            raise CropseqError(f"{what} {s!r} is not a date (use YYYY-MM-DD)", where) from None
    if pd.isna(ts):
        raise CropseqError(f"{what} {value!r} is not a date (use YYYY-MM-DD)", where)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def _check_unique_dates(dates: Sequence[pd.Timestamp], source: str, where: Source) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(list(dates)).as_unit("ns")
    dup = idx.duplicated(keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        j = int(np.flatnonzero(idx == idx[i])[0])
        remedy = "" if "file names" in source else (
            ": two acquisitions on one day need their times (2015-12-08T10:04:09 and 2015-12-08T10:11:25 stay two "
            "dates); else drop one"
        )  # fmt: skip
        raise CropseqError(f"duplicate date {idx[i].isoformat()} in {source} (entries {j + 1} and {i + 1}){remedy}", where)
    return idx


def _per_band_values(
    raw: Any, key: str, bands: Sequence[str], where: Source, default: float | None
) -> dict[str, float | None]:
    """A number or ``{band: number}`` -> value for every band."""
    if raw is None:
        return {b: default for b in bands}
    if isinstance(raw, dict):
        unknown = [str(k) for k in raw if str(k) not in bands]
        if unknown:
            raise CropseqError(f"{key} names unknown band {unknown[0]!r} (bands: {', '.join(bands)})", where)
        out = {b: default for b in bands}
        for k, v in raw.items():
            out[str(k)] = _number(v, f"{key}.{k}", where)
        return out
    v = _number(raw, key, where)
    return {b: v for b in bands}


def _number(v: Any, key: str, where: Source) -> float:
    if isinstance(v, bool):
        raise CropseqError(f"{key} must be a number, not {v!r}", where)
    try:
        return float(v)
    except (TypeError, ValueError):
        raise CropseqError(f"{key} must be a number, not {v!r}", where) from None


def _valid_range(raw: Any, bands: Sequence[str], where: Source) -> dict[str, tuple[float, float]]:
    if raw is None:
        return {}
    items: dict[str, Any]
    if isinstance(raw, (list, tuple)):
        items = {b: raw for b in bands}
    elif isinstance(raw, dict):
        items = {str(k): v for k, v in raw.items()}
    else:
        raise CropseqError("valid_range must be {band: [lo, hi]} or [lo, hi]", where)
    out: dict[str, tuple[float, float]] = {}
    for b, v in items.items():
        if b not in bands:
            raise CropseqError(f"valid_range names unknown band {b!r} (bands: {', '.join(bands)})", where)
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise CropseqError(f"valid_range.{b} must be [lo, hi], not {v!r}", where)
        lo, hi = _number(v[0], f"valid_range.{b}", where), _number(v[1], f"valid_range.{b}", where)
        if lo > hi:
            raise CropseqError(f"valid_range.{b} has lo {lo} > hi {hi}", where)
        out[b] = (lo, hi)
    return out


def _date_from_name(name: str, pattern: re.Pattern[str] | None, where: Source) -> pd.Timestamp | None:
    m = pattern.search(name) if pattern is not None else None
    if m is None:
        m = _GENERIC_DATE.search(name)
        if m is None:
            return None
    try:
        return parse_date(m.group(1), f"date in file name {name!r}", where)
    except CropseqError:
        return None


def _read_descriptions(raster: Source, where: Source) -> list[str | None]:
    import rasterio  # lazy: manifest parsing alone should not need GDAL

    if isinstance(raster, Path) and not raster.is_file():
        raise CropseqError(f"raster named in {where.name} not found", raster)
    try:
        with remote.gdal_env(raster), rasterio.open(remote.gdal_path(raster)) as src:
            return list(src.descriptions)
    except rasterio.errors.RasterioError as e:
        raise CropseqError(f"cannot read raster ({str(e).splitlines()[0]})", raster) from None


# ----------------------------------------------------------------------------- loading


def find_manifest(path: str | os.PathLike[str]) -> Source:
    """The manifest file for ``path``: a ``stack.yaml`` or a folder holding one.

    A URL ending with ``/`` is a folder.
    """
    if is_remote(path):
        url = remote.source(path)
        return url / MANIFEST_NAME if isinstance(url, RemotePath) and url.endswith("/") else url
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_NAME
        if not p.is_file():
            if (Path(path) / "tiles.json").is_file():
                raise CropseqError("a tiles folder: open one of its <tile_id>.zarr stores", path)
            raise CropseqError(f"no {MANIFEST_NAME} in this folder", path)
    elif not p.is_file():
        raise CropseqError("stack manifest not found", p)
    return p


def load_manifest(path: str | os.PathLike[str]) -> StackManifest | StacManifest:
    """Parse and validate a stack manifest.

    Args:
        path: A ``stack.yaml`` (any name) or a folder holding ``stack.yaml``.

    Returns:
        The resolved :class:`StackManifest` (paths absolute, globs expanded, dates parsed).
        Raster headers are not checked here (except reading band descriptions for
        ``dates: descriptions``); :func:`cropseq.io.open_stack` does that. With
        ``source: stac``, a :class:`cropseq.stac_source.StacManifest` instead.

    Raises:
        CropseqError: naming the manifest (or the file concerned) and the problem: not YAML,
            unknown or missing keys, unknown band names, unparseable or duplicate dates,
            a glob that matches nothing, counts that do not match.
    """
    mpath = find_manifest(path)
    data = _read_yaml(mpath)
    if "source" in data:  # source: stac -> a StacManifest (cropseq.stac_source), opened by open_stack
        if data["source"] != "stac":
            raise CropseqError(f"source must be 'stac' (or left out for files), not {data['source']!r}", mpath)
        from cropseq.stac_source import parse_stac_manifest

        # parse_stac_manifest handles a remote manifest (is_remote branch) but its mpath is
        # annotated Path: drop this ignore once stac_source.py takes a remote.Source.
        return parse_stac_manifest(data, mpath)  # type: ignore[arg-type]
    reject_unknown_keys(data, _KEYS, mpath)
    root = mpath.parent if isinstance(mpath, RemotePath) else mpath.parent.resolve()

    layout = _layout(data, mpath)
    raw_bands = data.get("bands")
    mask = parse_mask(data["mask"], mpath) if data.get("mask") is not None else None
    if mask is not None and data.get("masks") is not None:
        raise CropseqError("give mask: (a band holding a mask) or masks: (mask files), not both", mpath)
    band_date_files: dict[str, tuple[Source, ...]] = {}
    if layout == "single-band":
        bands, band_date_files, dates = _single_band(data, root, mask, mpath)
        source = "file names (pattern)"
    else:
        bands = _band_names(raw_bands, layout, mpath)
    mask_invalid = data.get("mask_invalid", "nonzero")
    _check_bands(bands, mask, mask_invalid, mpath)

    # ---- dates, files, masks
    band_files: dict[str, Source] = {}
    files: list[Source] = []
    masks: list[Source] = []
    if layout != "single-band" and data.get("pattern") is not None:
        raise CropseqError("pattern is for the single-band layout (per-date dates use date_pattern)", mpath)
    if layout == "interleaved":
        files, dates, source, masks = _interleaved(data, root, len(bands), mpath)
    elif layout == "per-band":
        band_files, dates, source, masks = _per_band(data, bands, root, mpath)
    elif layout == "per-date":
        files, dates, source, masks = _per_date(data, root, mpath)
    return StackManifest(
        path=mpath if isinstance(mpath, RemotePath) else mpath.resolve(),
        layout=layout,
        bands=tuple(bands),
        dates=_unique_dates(dates, source, layout, mpath),
        band_files=band_files,
        files=tuple(files),
        masks=tuple(masks),
        mask_invalid=mask_invalid,
        nodata=_per_band_values(data.get("nodata"), "nodata", bands, mpath, None),
        valid_range=_valid_range(data.get("valid_range"), bands, mpath),
        scale=_per_band_numbers(data.get("scale"), "scale", bands, mpath, 1.0),
        offset=_per_band_numbers(data.get("offset"), "offset", bands, mpath, 0.0),
        dates_source=source,
        grid=parse_grid_spec(data["grid"], mpath) if "grid" in data else None,
        mask=mask,
        band_date_files=band_date_files,
        resampling=_resampling(data.get("resampling"), bands, mpath),
        scale_set=frozenset(_set_bands(data, ("scale", "offset"), bands)),
        composite=_composite(data.get("composite"), bands, mask, mpath),
        order=data["order"] if layout == "interleaved" else None,
        dtype=_dtypes(data.get("dtype"), bands, mpath),
        **_georeferencing(data, mpath),
    )


def _read_yaml(mpath: Source) -> dict[Any, Any]:
    """The manifest's YAML mapping (fetched when ``mpath`` is an ``http(s)`` URL)."""
    try:
        text = remote.read_text(mpath, "stack manifest") if isinstance(mpath, RemotePath) else mpath.read_text(encoding="utf-8-sig")
        data = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise CropseqError("not a YAML manifest (a binary file? point to a stack.yaml)", mpath) from None
    except yaml.YAMLError as e:
        raise CropseqError(f"not valid YAML ({str(e).splitlines()[0]})", mpath) from None
    if not isinstance(data, dict):
        raise CropseqError("a stack manifest must be a YAML mapping (layout, bands, dates, ...)", mpath)
    return data


def _layout(data: dict[str, Any], mpath: Source) -> _Layout:
    """The ``layout`` key, checked (with ``order``, which only ``interleaved`` takes)."""
    layout = data.get("layout")
    if layout not in LAYOUTS:
        raise CropseqError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}, not {layout!r}", mpath)
    if layout != "interleaved" and data.get("order") is not None:
        raise CropseqError("order is for the interleaved layout (one raster holding every band of every date)", mpath)
    return cast(_Layout, layout)


def _band_names(raw_bands: Any, layout: str, mpath: Source) -> list[str]:
    """The band names of the per-band (``{name: file}``), per-date and interleaved layouts."""
    if layout == "per-band":
        if not isinstance(raw_bands, dict) or not raw_bands:
            raise CropseqError("per-band layout needs bands: {name: file, ...}", mpath)
        return [str(b) for b in raw_bands]
    if not isinstance(raw_bands, list) or not raw_bands:
        order = " within a date" if layout == "interleaved" else " in raster order"
        raise CropseqError(f"{layout} layout needs bands: [name, ...] (band names{order})", mpath)
    return [str(b) for b in raw_bands]


def _check_bands(bands: list[str], mask: MaskRule | None, mask_invalid: Any, mpath: Source) -> None:
    """Band names unique and usable, ``mask_invalid`` known, the ``mask:`` band one of several."""
    if len(set(bands)) != len(bands):
        dup = next(b for b in bands if bands.count(b) > 1)
        raise CropseqError(f"band {dup!r} is listed twice", mpath)
    for b in bands:
        if not b.strip() or "@" in b:
            raise CropseqError(f"band name {b!r} is empty or contains '@'", mpath)
    if mask_invalid not in ("nonzero", "zero"):
        raise CropseqError(f"mask_invalid must be 'nonzero' or 'zero', not {mask_invalid!r}", mpath)
    if mask is not None and mask.band not in bands:
        raise CropseqError(f"mask band {mask.band!r} is not one of the bands ({', '.join(bands)})", mpath)
    if mask is not None and len(bands) < 2:
        raise CropseqError(f"the mask band {mask.band!r} is the only band: the cube needs a data band", mpath)


def _per_band(
    data: dict[str, Any], bands: list[str], root: Source, mpath: Source
) -> tuple[dict[str, Source], list[pd.Timestamp], str, list[Source]]:
    """The ``per-band`` layout: ``({band: raster}, dates, their source, [mask raster])``."""
    for key in ("files", "date_pattern"):
        if key in data:
            raise CropseqError(f"{key!r} is for the per-date layout; per-band files are given in bands", mpath)
    band_files = {str(b): _resolve(root, f) for b, f in data["bands"].items()}  # a mapping (_band_names)
    raw_dates = data.get("dates")
    if raw_dates is None:
        raise CropseqError("per-band layout needs dates (a file, a list, or 'descriptions')", mpath)
    if raw_dates == "descriptions":
        first = band_files[bands[0]]
        desc = _read_descriptions(first, mpath)
        if any(d is None or not str(d).strip() for d in desc):
            raise CropseqError("dates: descriptions, but the raster has bands without a description", first)
        source = f"band descriptions of {first.name}"
        dates = [parse_date(d, f"band {i + 1} description", first) for i, d in enumerate(desc)]
    else:
        dates, source = _explicit_dates(raw_dates, root, mpath)
    masks: list[Source] = []
    if "masks" in data and data["masks"] is not None:
        m = data["masks"]
        if not isinstance(m, str) or any(ch in m for ch in "*?["):
            raise CropseqError("per-band masks must be one multi-date raster (band i = date i)", mpath)
        masks = [_resolve(root, m)]
    return band_files, dates, source, masks


def _per_date(data: dict[str, Any], root: Source, mpath: Source) -> tuple[list[Source], list[pd.Timestamp], str, list[Source]]:
    """The ``per-date`` layout: ``(rasters, dates, their source, masks)``, one raster and mask per date."""
    raw_dates, pattern_s = data.get("dates"), data.get("date_pattern")
    pattern = _date_pattern(pattern_s, mpath)
    files = _per_date_files(data.get("files"), root, mpath)
    if raw_dates is not None and pattern is not None:
        raise CropseqError("give dates or date_pattern, not both", mpath)
    if pattern is not None:
        dates = []
        for f in files:
            m = pattern.search(f.name)
            if m is None:
                raise CropseqError(f"date_pattern {pattern_s!r} does not match file name {f.name!r}", mpath)
            dates.append(parse_date(m.group(1), f"date in file name {f.name!r}", mpath))
        source = "file names (date_pattern)"
    elif raw_dates is not None:
        if raw_dates == "descriptions":
            raise CropseqError("dates: descriptions is for the per-band layout", mpath)
        dates, source = _explicit_dates(raw_dates, root, mpath)
    else:
        raise CropseqError("per-date layout needs date_pattern or dates", mpath)
    if len(dates) != len(files):
        raise CropseqError(f"{len(files)} files but {len(dates)} dates in {source}", mpath)
    masks = _pair_masks(data["masks"], root, files, dates, pattern, mpath) if data.get("masks") is not None else []
    return files, dates, source, masks


def _date_pattern(raw: Any, mpath: Source) -> re.Pattern[str] | None:
    """``date_pattern`` compiled (group 1 captures the date), or None."""
    if raw is None:
        return None
    try:
        pattern = re.compile(str(raw))
    except re.error as e:
        raise CropseqError(f"date_pattern is not a valid regex ({e})", mpath) from None
    if pattern.groups < 1:
        raise CropseqError("date_pattern needs a group: (\\d{8}) capturing the date", mpath)
    return pattern


def _per_date_files(raw_files: Any, root: Source, mpath: Source) -> list[Source]:
    """The per-date ``files``: a glob (matches sorted by name) or a list."""
    if isinstance(raw_files, str):
        files = _glob(root, raw_files)
        if not files:
            raise CropseqError(f"files glob {raw_files!r} matches no file in {root}", mpath)
        return files
    if isinstance(raw_files, list) and raw_files:
        return [_resolve(root, f) for f in raw_files]
    hint = " (one single-band file per band per date? use layout: single-band)" if isinstance(raw_files, dict) else ""
    raise CropseqError(f"per-date layout needs files: a glob or a list of rasters{hint}", mpath)


def _unique_dates(dates: list[pd.Timestamp], source: str, layout: str, mpath: Source) -> pd.DatetimeIndex:
    """:func:`_check_unique_dates`, hinting at ``single-band`` for a per-date folder of band files."""
    try:
        return _check_unique_dates(dates, source, mpath)
    except CropseqError as e:
        if layout == "per-date" and "date_pattern" in source:  # sits/BDC folders: a file per band per date
            raise CropseqError(f"{e.message}; one single-band file per band per date? use layout: single-band", e.path) from None
        raise


def _per_band_numbers(raw: Any, key: str, bands: Sequence[str], where: Source, default: float) -> dict[str, float]:
    """:func:`_per_band_values` with a number as the default, so every band has a number."""
    return {b: default if v is None else v for b, v in _per_band_values(raw, key, bands, where, default).items()}


def interleaved_band(order: str, t: int, b: int, n_dates: int, n_bands: int) -> int:
    """The 0-based raster band holding date ``t``'s band ``b`` in an interleaved raster."""
    return t * n_bands + b if order == "date-major" else b * n_dates + t


def interleaved_count_error(count: int, n_dates: int | None, n_bands: int) -> str:
    """The arithmetic of an interleaved raster whose band count does not fit the manifest."""
    if n_dates is None:
        return f"{count} raster bands is not a whole number of dates × {n_bands} bands"
    msg = f"{count} raster bands is not {n_dates} dates × {n_bands} bands"
    if count % n_bands == 0:
        msg += f" ({count} = {count // n_bands} dates × {n_bands} bands: check dates)"
    return msg


def _interleaved(
    data: dict[str, Any], root: Source, n_bands: int, mpath: Source
) -> tuple[list[Source], list[pd.Timestamp], str, list[Source]]:
    """The ``interleaved`` layout: ``([raster], dates, their source, [mask raster])``."""
    for key in ("date_pattern", "pattern"):
        if data.get(key) is not None:
            raise CropseqError(f"{key!r} is not used by the interleaved layout (dates: a file, a list or 'descriptions')", mpath)
    raw = data.get("files")
    raw = raw[0] if isinstance(raw, list) and len(raw) == 1 else raw
    if not isinstance(raw, str) or not raw.strip():
        raise CropseqError("interleaved layout needs files: one raster holding every band of every date", mpath)
    if data.get("order") not in ORDERS:
        raise CropseqError(
            "interleaved layout needs order: date-major (raster bands d1b1 d1b2 ... d2b1 ...) or band-major "
            f"(b1d1 b1d2 ... b2d1 ...), not {data.get('order')!r}",
            mpath,
        )
    raster = _resolve(root, raw)
    raw_dates = data.get("dates")
    if raw_dates is None:
        raise CropseqError("interleaved layout needs dates (a file, a list, or 'descriptions')", mpath)
    if raw_dates == "descriptions":
        dates = _interleaved_description_dates(raster, n_bands, str(data["order"]), mpath)
        source = f"band descriptions of {raster.name}"
    else:
        dates, source = _explicit_dates(raw_dates, root, mpath)
    masks = []
    if data.get("masks") is not None:
        m = data["masks"]
        if not isinstance(m, str) or any(ch in m for ch in "*?["):
            raise CropseqError("interleaved masks must be one multi-date raster (band i = date i)", mpath)
        masks = [_resolve(root, m)]
    return [raster], dates, source, masks


def _interleaved_description_dates(raster: Source, n_bands: int, order: str, mpath: Source) -> list[pd.Timestamp]:
    """Dates of an interleaved raster from its band descriptions.

    Each description holds its date (e.g. ``2021-07-04`` or ``NDVI_2021-07-04``); the bands
    of one date must agree.
    """
    desc = _read_descriptions(raster, mpath)
    if len(desc) % n_bands:
        raise CropseqError(interleaved_count_error(len(desc), None, n_bands), raster)
    n_dates = len(desc) // n_bands
    per_band = [_description_date(d, i, raster) for i, d in enumerate(desc)]
    dates = []
    for t in range(n_dates):
        idx = [interleaved_band(order, t, b, n_dates, n_bands) for b in range(n_bands)]
        other = next((i for i in idx if per_band[i] != per_band[idx[0]]), None)
        if other is not None:
            raise CropseqError(
                f"band descriptions do not follow order: {order} ({n_dates} dates × {n_bands} bands): raster bands "
                f"{idx[0] + 1} and {other + 1} should hold one date but say {desc[idx[0]]!r} and {desc[other]!r}",
                raster,
            )
        dates.append(per_band[idx[0]])
    return dates


def _description_date(desc: str | None, i: int, raster: Source) -> pd.Timestamp:
    """The date a band description holds: all of it, else its first YYYY-MM-DD/YYYYMMDD."""
    text = str(desc or "").strip()
    if not text:
        raise CropseqError("dates: descriptions, but the raster has bands without a description", raster)
    try:
        return parse_date(text, f"band {i + 1} description", raster)
    except CropseqError:
        m = _GENERIC_DATE.search(text)
        if m is None:
            raise CropseqError(f"band {i + 1} description {text!r} holds no date", raster) from None
        return parse_date(m.group(1), f"band {i + 1} description", raster)


def _per_band_choice(raw: Any, bands: Sequence[str], where: Source, key: str, choices: Sequence[str]) -> dict[str, str]:
    """``key: {band: value}`` (or one value for every band), each value one of ``choices``."""
    if raw is None:
        return {}
    items = {str(k): v for k, v in raw.items()} if isinstance(raw, dict) else {b: raw for b in bands}
    for b, v in items.items():
        if b not in bands:
            raise CropseqError(f"{key} names unknown band {b!r} (bands: {', '.join(bands)})", where)
        if str(v) not in choices:
            raise CropseqError(f"{key}.{b} must be one of {', '.join(choices)}, not {v!r}", where)
    return {b: str(v) for b, v in items.items()}


def _dtypes(raw: Any, bands: Sequence[str], where: Source) -> dict[str, str]:
    """``dtype: {band: type}`` (or one type for every band): how stored values are read."""
    return _per_band_choice(raw, bands, where, "dtype", REINTERPRET_DTYPES)


def _composite(raw: Any, bands: Sequence[str], mask: MaskRule | None, mpath: Source) -> CompositeSpec | None:
    """The ``composite:`` key, checked against the cube's bands (the mask band excluded)."""
    if raw is None:
        return None
    return parse_composite(raw, [b for b in bands if mask is None or b != mask.band], mpath, parse_date)


def _set_bands(data: dict[str, Any], keys: Sequence[str], bands: Sequence[str]) -> set[str]:
    """Bands that any of ``keys`` (a number for every band, or ``{band: number}``) sets."""
    out: set[str] = set()
    for k in keys:
        v = data.get(k)
        if isinstance(v, dict):
            out |= {str(b) for b in v}
        elif v is not None:
            out |= set(bands)
    return out


def _resampling(raw: Any, bands: Sequence[str], where: Source) -> dict[str, str]:
    """``resampling: {band: method}`` (or one method for every band), checked."""
    return _per_band_choice(raw, bands, where, "resampling", sorted(RESAMPLING))


def _single_band(
    data: dict[str, Any], root: Source, mask: MaskRule | None, mpath: Source
) -> tuple[list[str], dict[str, tuple[Source, ...]], list[pd.Timestamp]]:
    """The ``single-band`` layout: bands, ``band -> file per date`` and the sorted dates."""
    for key in ("dates", "date_pattern", "masks"):
        if data.get(key) is not None:
            hint = "use mask: {band: ..., invalid: [...]}" if key == "masks" else "dates come from the file names (pattern)"
            raise CropseqError(f"{key!r} is not used by the single-band layout ({hint})", mpath)
    groups = _single_band_groups(data.get("files"), root, mpath)
    pattern = compile_pattern(data.get("pattern"), None in groups, mpath)
    table = match_files(groups, pattern, parse_date, mpath)
    bands = _single_band_names(data.get("bands"), table, None in groups, mask.band if mask is not None else None, mpath)
    for b in bands:
        if b not in table:
            raise CropseqError(f"band {b!r} matches no file (bands found: {', '.join(sorted(table))})", mpath)
    dates = sorted(set().union(*(table[b] for b in bands)))
    for b in bands:
        lacking = [d for d in dates if d not in table[b]]
        if lacking:
            what = "mask band" if mask is not None and b == mask.band else "band"
            first = lacking[0].isoformat().replace("T00:00:00", "")
            raise CropseqError(
                f"{what} {b} has no file for {len(lacking)} of {len(dates)} dates (first: {first})", mpath
            )
    return bands, {b: tuple(table[b][d] for d in dates) for b in bands}, dates


def _single_band_groups(raw_files: Any, root: Source, mpath: Source) -> dict[str | None, list[Source]]:
    """The single-band ``files``: ``{None: files}`` for one glob, ``{band: files}`` for ``{band: glob}``."""
    groups: dict[str | None, list[Source]] = {}
    if isinstance(raw_files, str):
        groups[None] = _glob(root, raw_files)
        if not groups[None]:
            raise CropseqError(f"files glob {raw_files!r} matches no file in {root}", mpath)
    elif isinstance(raw_files, dict) and raw_files:
        for b, g in raw_files.items():
            found = _glob(root, g) if isinstance(g, str) else None
            if not found:
                raise CropseqError(f"files.{b}: glob {g!r} matches no file in {root}", mpath)
            groups[str(b)] = found
    else:
        raise CropseqError("single-band layout needs files: a glob (with pattern:) or {band: glob}", mpath)
    return groups


def _single_band_names(
    raw_bands: Any, table: dict[str, Any], one_glob: bool, mask_band: str | None, mpath: Source
) -> list[str]:
    """The single-band ``bands`` (default: every band found), the ``mask:`` band last if not listed."""
    if raw_bands is None:
        bands = sorted(table) if one_glob else list(table)
        if mask_band is not None and mask_band in bands:  # the mask band last, after the data bands
            bands.remove(mask_band)
    elif isinstance(raw_bands, list) and raw_bands:
        bands = [str(b) for b in raw_bands]
    else:
        raise CropseqError("single-band layout: bands (optional) must be a list of band names", mpath)
    if mask_band is not None and mask_band not in bands:
        bands.append(mask_band)
    return bands


def _georeferencing(data: dict[str, Any], mpath: Source) -> dict[str, Any]:
    """The ``crs`` / ``transform`` keys, checked (the CRS string is parsed by the reader)."""
    crs, transform = data.get("crs"), data.get("transform")
    if crs is not None:
        if not isinstance(crs, str) or not crs.strip():
            raise CropseqError(f"crs must be a CRS string (EPSG:32633) or 'none', not {crs!r}", mpath)
        crs = "none" if crs.strip().lower() == "none" else crs.strip()
    if transform is not None:
        if not isinstance(transform, list) or len(transform) != 6:
            raise CropseqError(f"transform must be a list [a, b, c, d, e, f], not {transform!r}", mpath)
        transform = tuple(_number(v, f"transform[{i}]", mpath) for i, v in enumerate(transform))
        if transform[0] * transform[4] - transform[1] * transform[3] == 0:
            raise CropseqError(f"transform {list(transform)} is degenerate (zero pixel size)", mpath)
        if crs == "none":
            raise CropseqError("crs: none and a transform contradict each other (give the transform's CRS)", mpath)
    return {"crs": crs, "transform": transform}


def _explicit_dates(raw: Any, root: Source, mpath: Source) -> tuple[list[pd.Timestamp], str]:
    """Dates from a YAML list or a timeline file."""
    if isinstance(raw, list):
        if not raw:
            raise CropseqError("dates is an empty list", mpath)
        return [parse_date(v, f"date {i + 1} in dates", mpath) for i, v in enumerate(raw)], "dates"
    if isinstance(raw, str):
        f = _resolve(root, raw)
        if isinstance(f, Path) and not f.is_file():
            raise CropseqError(f"dates file {raw!r} named in {mpath.name} not found", f)
        try:
            text = f.read_text(encoding="utf-8-sig") if isinstance(f, Path) else remote.read_text(f, "dates file")
        except UnicodeDecodeError:
            raise CropseqError("dates file is not text (one ISO date per line expected)", f) from None
        lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
        out = [(n, s) for n, s in enumerate(lines, 1) if s]
        if not out:
            raise CropseqError("dates file holds no dates", f)
        return [parse_date(s, f"date on line {n}", f) for n, s in out], f.name
    raise CropseqError("dates must be a file name, a list of dates, or 'descriptions'", mpath)


def _pair_masks(
    raw: Any,
    root: Source,
    files: list[Source],
    dates: list[pd.Timestamp],
    pattern: re.Pattern[str] | None,
    mpath: Source,
) -> list[Source]:
    """Per-date masks aligned with ``files``."""
    if isinstance(raw, list):
        masks = [_resolve(root, m) for m in raw]
        if len(masks) != len(files):
            raise CropseqError(f"{len(masks)} masks but {len(files)} files", mpath)
        return masks
    if not isinstance(raw, str):
        raise CropseqError("masks must be a glob or a list of rasters", mpath)
    found = _glob(root, raw)
    if not found:
        raise CropseqError(f"masks glob {raw!r} matches no file in {root}", mpath)
    by_date = _masks_by_date(found, pattern, mpath)
    if by_date is not None and len(by_date) == len(found):
        # Mask names carry dates (day precision): pair each file with its day's mask.
        norm = {k.normalize(): v for k, v in by_date.items()}
        out_by_date = []
        for d in dates:
            mask = norm.get(d.normalize())
            if mask is None:
                raise CropseqError(f"no mask for date {d.date().isoformat()} (masks glob {raw!r})", mpath)
            out_by_date.append(mask)
        return out_by_date
    if len(found) != len(files):
        raise CropseqError(f"{len(found)} masks match {raw!r} but there are {len(files)} files", mpath)
    # No dates in the mask names: pair by name order with the files sorted by name.
    by_name = sorted(range(len(files)), key=lambda i: files[i].name)
    out: list[Source] = [Path()] * len(files)
    for k, i in enumerate(by_name):
        out[i] = found[k]
    return out


def _masks_by_date(found: list[Source], pattern: re.Pattern[str] | None, mpath: Source) -> dict[pd.Timestamp, Source] | None:
    """``date -> mask`` from the mask file names, or None when a name holds no date."""
    by_date: dict[pd.Timestamp, Source] = {}
    for m in found:
        d = _date_from_name(m.name, pattern, mpath)
        if d is None:
            return None
        by_date[d] = m
    return by_date
