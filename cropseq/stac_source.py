"""STAC catalogues as stacks: ``source: stac`` in ``stack.yaml``.

One job: find the STAC items a manifest asks for and load them, lazily, as the cube.

- Items come from a STAC API (pystac-client's search), a static catalogue (``catalog.json``,
  local or behind a URL, walked with pystac) or an ItemCollection JSON file; for the static
  forms the search (``collections``, ``bbox``, ``datetime``, ``query``) is done here with the
  API's semantics (closed datetime interval, a date-only end meaning that whole day,
  ``query`` comparisons as pystac-client writes them: ``eo:cloud_cover < 60``).
- Pixels are read by odc-stac (``odc.stac.load``) onto the target grid, items of the same
  solar day mosaicked (first valid pixel wins), with the resampling of
  :func:`cropseq.grid.default_resampling` (bilinear, average when coarsening, nearest for
  the mask band). The cube is :mod:`cropseq.io`'s one-layer graph: each spatial chunk (all
  dates and bands, the mask applied) is one task calling ``odc.stac.load`` on the chunk's
  window (:class:`StacWindows`), so the graph stays small, each file is opened once per
  chunk, and windows (tiles, inference halos) are read directly, as for manifest stacks.
  A band none of whose pixels is resampled is read in its stored integer type, the others
  in float32 (:attr:`BandPlan.read_as`: the same values, half the bytes).
- ``composite:`` (:mod:`cropseq.composite`) works as for manifest stacks: each window is
  read for the dates of its bins and composited in the same task.
- Values follow :mod:`cropseq.io`'s order: the band's nodata value (the manifest's, else the
  STAC ``raster:bands`` one) becomes NaN, masked pixels (the ``mask:`` band, any rule of
  :mod:`cropseq.masking`) become NaN in every band, ``value * scale + offset`` (manifest,
  else ``raster:bands``, else 1 / 0), then ``valid_range``; float32.

Manifest keys (besides ``source: stac``): ``catalog`` (URL or path, relative to the manifest),
``collections``, ``bbox`` (WGS84, the search box and, without ``grid``, the grid's extent),
``datetime`` (``2023-03-01/2023-10-31``, ``..`` for an open end), ``bands`` (asset keys or
eo:bands common names, or ``{alias: asset key}``; default: every raster asset all items
share), ``query``, ``mask``, ``grid``, ``groupby`` (``solar_day``, default, or ``time``),
``composite``, and the per-band ``nodata``/``scale``/``offset``/``valid_range``/``resampling`` of any stack.

Default grid: the CRS most items use, the finest band's resolution, the extent of ``bbox``
(else of every item), aligned with the first item's finest band (so a single-tile stack
is read without resampling).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import operator
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from cropseq.errors import CropseqError, reject_unknown_keys
from cropseq.grid import GridSpec, TargetGrid, default_resampling, native_resolution, parse_grid_spec, resolve_grid
from cropseq.manifest import _per_band_values, _resampling, _set_bands, _valid_range, parse_date
from cropseq.masking import MaskRule, parse_mask
from cropseq.raster_access import quiet_rasterio
from cropseq.remote import gdal_env, is_remote
from cropseq.remote import join as remote_join

__all__ = ["AssetGrid", "BandPlan", "GROUPBY", "STAC_KEYS", "StacManifest", "StacScene", "StacWindows", "ValueRules", "describe", "find_items", "open_stac", "parse_query", "parse_stac_manifest", "replace_spec", "stac_listing"]

STAC_KEYS = {
    "source", "catalog", "collections", "bbox", "datetime", "bands", "query", "mask", "grid", "groupby",
    "composite", "nodata", "scale", "offset", "valid_range", "resampling",
}  # fmt: skip
GROUPBY = ("solar_day", "time")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "neq": operator.ne, "lt": operator.lt, "lte": operator.le, "gt": operator.gt,
    "gte": operator.ge, "in": lambda a, b: a in b,
}  # fmt: skip
_SYMBOLS = {"<=": "lte", ">=": "gte", "!=": "neq", "<>": "neq", "==": "eq", "=": "eq", "<": "lt", ">": "gt"}
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img", ".nc")


@dataclass(frozen=True)
class ValueRules:
    """The per-band value keys of a manifest (as in :class:`cropseq.manifest.StackManifest`)."""

    nodata: dict[str, float | None]
    scale: dict[str, float]
    offset: dict[str, float]
    valid_range: dict[str, tuple[float, float]]
    resampling: dict[str, str]
    scale_set: frozenset[str]


def _value_rules(data: dict[str, Any], names: Sequence[str], mpath: Path) -> ValueRules:
    """``nodata``/``scale``/``offset``/``valid_range``/``resampling`` for the bands ``names``."""
    return ValueRules(
        nodata=_per_band_values(data.get("nodata"), "nodata", names, mpath, None),
        scale={b: float(v) for b, v in _per_band_values(data.get("scale"), "scale", names, mpath, 1.0).items()},  # type: ignore[arg-type]
        offset={b: float(v) for b, v in _per_band_values(data.get("offset"), "offset", names, mpath, 0.0).items()},  # type: ignore[arg-type]
        valid_range=_valid_range(data.get("valid_range"), names, mpath),
        resampling=_resampling(data.get("resampling"), names, mpath),
        scale_set=frozenset(_set_bands(data, ("scale", "offset"), names)),
    )


@dataclass(frozen=True)
class StacManifest:
    """A parsed ``stack.yaml`` with ``source: stac`` (nothing fetched yet).

    Attributes:
        path: The manifest file.
        catalog: A URL or an absolute path: STAC API root, static catalogue/collection,
            or ItemCollection.
        collections: Collection ids to keep (None: all).
        bbox: ``(west, south, east, north)`` in WGS84 degrees, or None.
        datetime: ``(start, end)`` naive UTC, either None for an open end; or None.
        bands: Cube band name -> asset key (or eo:bands common name), in cube order; empty:
            every raster asset the items share.
        query: Property -> ``{op: value}`` (ops ``eq, neq, lt, lte, gt, gte, in``).
        mask: The ``mask:`` rule (its band is an asset key or a ``bands`` alias), or None.
        grid: The ``grid:`` request, or None (the default grid).
        groupby: ``solar_day`` or ``time``.
        rules: The per-band value keys, or None until the bands are known (no ``bands:``).
        raw: The manifest's mapping.
    """

    path: Path
    catalog: str
    collections: tuple[str, ...] | None = None
    bbox: tuple[float, float, float, float] | None = None
    datetime: tuple[pd.Timestamp | None, pd.Timestamp | None] | None = None
    bands: dict[str, str] = field(default_factory=dict)
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    mask: MaskRule | None = None
    grid: GridSpec | None = None
    groupby: str = "solar_day"
    rules: ValueRules | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def root(self) -> Path:
        """The folder relative paths are resolved against."""
        return self.path.parent

    @property
    def is_url(self) -> bool:
        """Whether the catalogue is behind a URL (else a local file)."""
        return _is_url(self.catalog)


def _is_url(s: str) -> bool:
    return s.split("://", 1)[0].lower() in ("http", "https", "s3", "gs", "az") and "://" in s


# ----------------------------------------------------------------------------- manifest


def parse_stac_manifest(data: dict[str, Any], mpath: Path) -> StacManifest:
    """Validate the keys of a ``source: stac`` manifest (see the module doc).

    Args:
        data: The manifest's YAML mapping.
        mpath: The manifest file (named in errors; relative paths start from its folder).

    Raises:
        CropseqError: one line naming the manifest: unknown keys, no catalogue, a local
            catalogue that does not exist, malformed bbox/datetime/query/bands.
    """
    reject_unknown_keys(data, STAC_KEYS, mpath, key="unknown key {!r} for source: stac")
    cat = data.get("catalog")
    if not isinstance(cat, str) or not cat.strip():
        raise CropseqError("source: stac needs catalog: a STAC API URL, a catalog.json or an ItemCollection file", mpath)
    cat = cat.strip()
    if is_remote(mpath) and not _is_url(cat):  # a manifest behind a URL: relative to it
        cat = str(remote_join(str(mpath), cat))
    elif not _is_url(cat):
        p = Path(cat).expanduser()
        p = p if p.is_absolute() else mpath.parent / p
        if not p.is_file():
            raise CropseqError(f"STAC catalogue named in {mpath.name} not found", p)
        cat = str(p.resolve())
    bands = _parse_bands(data.get("bands"), mpath)
    names = list(bands)
    mask = parse_mask(data["mask"], mpath) if data.get("mask") is not None else None
    if mask is not None and mask.band in names:
        names.remove(mask.band)  # the mask band is read, but it is no cube band
    if bands and not names:
        raise CropseqError("bands lists only the mask band: the cube needs a data band", mpath)
    groupby = data.get("groupby", "solar_day")
    if groupby not in GROUPBY:
        raise CropseqError(f"groupby must be one of {', '.join(GROUPBY)}, not {groupby!r}", mpath)
    collections = data.get("collections")
    if isinstance(collections, str):
        collections = [collections]
    if collections is not None and (not isinstance(collections, list) or not all(isinstance(c, str) for c in collections)):
        raise CropseqError(f"collections must be a collection id or a list of them, not {collections!r}", mpath)
    return StacManifest(
        path=mpath if is_remote(mpath) else mpath.resolve(),
        catalog=cat,
        collections=tuple(collections) if collections is not None else None,
        bbox=_parse_bbox(data.get("bbox"), mpath),
        datetime=_parse_datetime(data.get("datetime"), mpath),
        bands=bands,
        query=parse_query(data.get("query"), mpath),
        mask=mask,
        grid=parse_grid_spec(data["grid"], mpath) if "grid" in data else None,
        groupby=str(groupby),
        # Without bands: the names are the asset keys found (describe() checks the keys then).
        rules=_value_rules(data, [*names, *([str(mask.band)] if mask else [])], mpath) if names else None,
        raw=dict(data),
    )


def _parse_bands(raw: Any, mpath: Path) -> dict[str, str]:
    """``bands:`` as cube name -> asset key (or common name), in order."""
    if raw is None:
        return {}
    if isinstance(raw, list) and raw and all(isinstance(b, str) and b.strip() for b in raw):
        out = {b: b for b in raw}
    elif isinstance(raw, dict) and raw and all(isinstance(v, str) and v.strip() for v in raw.values()):
        out = {str(k): v for k, v in raw.items()}
    else:
        raise CropseqError("bands must be a list of asset keys [B02, B04] or {alias: asset key} ({red: B04})", mpath)
    if len(out) != (len(raw) if isinstance(raw, list) else len(out)):
        raise CropseqError("a band is listed twice in bands", mpath)
    if len(set(out.values())) != len(out):
        dup = next(v for v in out.values() if list(out.values()).count(v) > 1)
        raise CropseqError(f"asset {dup!r} is named twice in bands", mpath)
    return out


def _parse_bbox(raw: Any, mpath: Path) -> tuple[float, float, float, float] | None:
    if raw is None:
        return None
    if (
        not isinstance(raw, list) or len(raw) != 4
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in raw)
    ):  # fmt: skip
        raise CropseqError(f"bbox must be [west, south, east, north] in degrees, not {raw!r}", mpath)
    w, s, e, n = (float(v) for v in raw)
    if not (w < e and s < n and -180 <= w and e <= 180 and -90 <= s and n <= 90):
        raise CropseqError(f"bbox {raw} must be [west, south, east, north] in degrees with west < east, south < north", mpath)
    return w, s, e, n


def _parse_datetime(raw: Any, mpath: Path) -> tuple[pd.Timestamp | None, pd.Timestamp | None] | None:
    """``2023-03-01/2023-10-31`` (``..`` = open), one date, or ``[start, end]``.

    A closed interval; a date-only end means the end of that day (as pystac-client reads it).
    """
    if raw is None:
        return None
    parts: list[Any]
    if isinstance(raw, (list, tuple)) and len(raw) == 2:
        parts = list(raw)
    elif isinstance(raw, str) and "/" in raw:
        parts = raw.split("/")
    elif isinstance(raw, (str, _dt.date)):
        parts = [raw, raw]
    else:
        raise CropseqError(f"datetime must be 'start/end' (e.g. 2023-03-01/2023-10-31), not {raw!r}", mpath)
    if len(parts) != 2:
        raise CropseqError(f"datetime must be 'start/end', not {raw!r}", mpath)
    out: list[pd.Timestamp | None] = []
    for i, p in enumerate(parts):
        if p is None or str(p).strip() in ("", ".."):
            out.append(None)
            continue
        ts = parse_date(p, "datetime", mpath)
        date_only = isinstance(p, _dt.date) and not isinstance(p, _dt.datetime) or len(str(p).strip()) <= 10
        out.append(ts + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1) if i == 1 and date_only else ts)
    if out[0] is not None and out[1] is not None and out[0] > out[1]:
        raise CropseqError(f"datetime {raw!r} ends before it starts", mpath)
    return out[0], out[1]


def parse_query(raw: Any, where: Path | str | None) -> dict[str, dict[str, Any]]:
    """A ``query`` as ``{property: {op: value}}``.

    Accepts what pystac-client accepts: ``"eo:cloud_cover < 60"``, a list of such strings,
    or the STAC query mapping ``{eo:cloud_cover: {lt: 60}}``.

    Raises:
        CropseqError: an expression without a comparison, or an unknown operator.
    """
    if raw is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    items = [raw] if isinstance(raw, str) else raw
    if isinstance(items, dict):
        for prop, cond in items.items():
            if not isinstance(cond, dict) or not cond or any(op not in _OPS for op in cond):
                raise CropseqError(f"query.{prop} must be {{op: value}} with op one of {', '.join(_OPS)}", where)
            out[str(prop)] = dict(cond)
        return out
    if not isinstance(items, list):
        raise CropseqError(f"query must be 'eo:cloud_cover < 60', a list of such, or a mapping, not {raw!r}", where)
    for expr in items:
        for sym in sorted(_SYMBOLS, key=len, reverse=True):
            if isinstance(expr, str) and sym in expr:
                prop, value = (s.strip() for s in expr.split(sym, 1))
                if prop and value:
                    out.setdefault(prop, {})[_SYMBOLS[sym]] = _literal(value)
                    break
        else:
            raise CropseqError(f"query {expr!r} is not 'property op value' (op one of < <= > >= = !=)", where)
    return out


def _literal(s: str) -> Any:
    try:
        return json.loads(s)
    except ValueError:
        return s.strip("'\"")


# ----------------------------------------------------------------------------- finding items


def _read_json(href: str) -> dict[str, Any]:
    """A STAC JSON document (file or URL), one-line errors naming it."""
    import pystac

    try:
        text = pystac.StacIO.default().read_text(href)
    except Exception as e:  # urllib, OSError ...: any reason the catalogue cannot be read
        reason = str(getattr(e, "reason", "") or e).strip().splitlines()
        raise CropseqError(f"cannot reach the STAC catalogue ({reason[0] if reason else type(e).__name__})", href) from None
    try:
        data = json.loads(text)
    except ValueError:
        raise CropseqError("not a STAC catalogue (not JSON)", href) from None
    if not isinstance(data, dict):
        raise CropseqError("not a STAC catalogue (a JSON object expected)", href)
    return data


def _is_api(doc: dict[str, Any]) -> bool:
    """A STAC API root: a ``search`` link or the item-search conformance class."""
    links = doc.get("links") or []
    return any(isinstance(ln, dict) and ln.get("rel") == "search" for ln in links) or any(
        "item-search" in str(c) for c in doc.get("conformsTo") or []
    )


def find_items(m: StacManifest) -> list[Any]:
    """The STAC items the manifest selects, sorted by datetime then id.

    Raises:
        CropseqError: unreachable or malformed catalogue; no item matching the search
            (the message says what the catalogue holds).
    """
    import pystac

    doc = _read_json(m.catalog)
    try:
        if doc.get("type") != "FeatureCollection" and _is_api(doc):
            return _sorted(_search_api(m))
        if doc.get("type") == "FeatureCollection":
            every = list(pystac.ItemCollection.from_dict(doc, preserve_dict=False).items)
            for it in every:  # relative asset hrefs are relative to the file
                for a in it.assets.values():
                    a.href = pystac.utils.make_absolute_href(a.href, m.catalog)
        else:
            obj = pystac.read_dict(doc, href=m.catalog)
            every = [obj] if isinstance(obj, pystac.Item) else list(obj.get_items(recursive=True)) if isinstance(obj, pystac.Catalog) else []
    except CropseqError:
        raise
    except Exception as e:  # a child link that is missing, unreadable or not STAC
        raise CropseqError(f"cannot read the STAC catalogue ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})", m.catalog) from None
    found = [it for it in every if _matches(it, m)]
    if not found:
        raise CropseqError(_nothing_found(m, every), m.catalog)
    return _sorted(found)


def _search_api(m: StacManifest) -> list[Any]:
    from pystac_client import Client

    dt = None
    if m.datetime is not None:
        dt = "/".join(".." if t is None else t.isoformat() + "Z" for t in m.datetime)
    try:
        search = Client.open(m.catalog).search(
            collections=list(m.collections) if m.collections else None, bbox=list(m.bbox) if m.bbox else None,
            datetime=dt, query=m.query or None,
        )  # fmt: skip
        items = list(search.items())
    except Exception as e:  # pystac_client.APIError, urllib/requests errors
        raise CropseqError(f"STAC API search failed ({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})", m.catalog) from None
    if not items:
        raise CropseqError(f"the STAC API found no item for {_search_terms(m)}", m.catalog)
    return items


def _sorted(items: list[Any]) -> list[Any]:
    return sorted(items, key=lambda it: (_item_time(it), it.id))


def _item_time(item: Any) -> pd.Timestamp:
    t = item.datetime or item.common_metadata.start_datetime
    ts = pd.Timestamp(t)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _matches(item: Any, m: StacManifest) -> bool:
    """The STAC API's item search, applied to one item of a static catalogue."""
    if m.collections is not None and item.collection_id not in m.collections:
        return False
    if m.bbox is not None and item.bbox is not None:
        w, s, e, n = m.bbox
        iw, is_, ie, in_ = item.bbox[:2] + item.bbox[-2:] if len(item.bbox) == 6 else item.bbox
        if iw > e or ie < w or is_ > n or in_ < s:
            return False
    if m.datetime is not None:
        start, end = m.datetime
        cm = item.common_metadata
        lo = pd.Timestamp(cm.start_datetime or item.datetime)
        hi = pd.Timestamp(cm.end_datetime or item.datetime)
        lo, hi = (t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t for t in (lo, hi))
        if (start is not None and hi < start) or (end is not None and lo > end):
            return False
    for prop, cond in m.query.items():
        if prop not in item.properties:
            return False
        for op, value in cond.items():
            try:
                if not _OPS[op](item.properties[prop], value):
                    return False
            except TypeError:  # a string property compared with a number
                return False
    return True


def _search_terms(m: StacManifest) -> str:
    terms = []
    if m.collections is not None:
        terms.append(f"collections {', '.join(m.collections)}")
    if m.bbox is not None:
        terms.append(f"bbox {list(m.bbox)}")
    if m.datetime is not None:
        terms.append("datetime " + "/".join(".." if t is None else t.isoformat() for t in m.datetime))
    if m.query:
        terms.append(f"query {m.query}")
    return ", ".join(terms) or "the search"


def _nothing_found(m: StacManifest, every: list[Any]) -> str:
    """Why nothing matched: the search beside what the catalogue holds."""
    if not every:
        return "the STAC catalogue holds no item"
    times = sorted(_item_time(it) for it in every)
    boxes = np.array([it.bbox[:2] + it.bbox[-2:] if len(it.bbox) == 6 else it.bbox for it in every if it.bbox])
    held = f"its {len(every)} items span {times[0].date()} .. {times[-1].date()}"
    if len(boxes):
        held += f", bbox [{boxes[:, 0].min():.4f}, {boxes[:, 1].min():.4f}, {boxes[:, 2].max():.4f}, {boxes[:, 3].max():.4f}]"
    cols = sorted({str(it.collection_id) for it in every if it.collection_id})
    if cols:
        held += f", collections {', '.join(cols)}"
    return f"no STAC item matches {_search_terms(m)} ({held})"


# ----------------------------------------------------------------------------- what was found


@dataclass(frozen=True)
class AssetGrid:
    """An asset's pixel grid (from the projection extension, else the file's header)."""

    crs: CRS | None
    transform: Affine
    shape: tuple[int, int]

    @property
    def resolution(self) -> tuple[float, float]:
        """``(xres, yres)`` in the CRS's units, positive."""
        return abs(float(self.transform.a)), abs(float(self.transform.e))


@dataclass(frozen=True)
class BandPlan:
    """How one band (or the mask band) is read: its asset and value rules."""

    name: str
    asset: str
    nodata: float | None
    scale: float
    offset: float
    valid_range: tuple[float, float] | None
    resampling: str
    resolution: tuple[float, float]
    crs: str | None
    read_as: str = "float32"  # the type odc-stac reads it as: its stored type when no pixel is resampled


@dataclass(frozen=True)
class StacScene:
    """Everything known about a STAC stack before any pixel is read."""

    manifest: StacManifest
    items: tuple[Any, ...]
    grid: TargetGrid
    bands: tuple[BandPlan, ...]
    mask: BandPlan | None
    times: pd.DatetimeIndex  # one per group (solar day), the group's earliest item
    groups: tuple[tuple[int, ...], ...]  # item indices per time

    def listing(self) -> dict[str, Any]:
        """JSON-ready: items, dates, bands with asset keys and resolutions, CRS, grid."""
        from cropseq.io import crs_name, format_time

        plans = (*self.bands, *((self.mask,) if self.mask is not None else ()))
        return {
            "catalog": self.manifest.catalog,
            "items": [{"id": it.id, "datetime": _item_time(it).isoformat(), "collection": it.collection_id} for it in self.items],
            "dates": format_time(self.times),
            "groupby": self.manifest.groupby,
            "bands": {
                p.name: {"asset": p.asset, "resolution": list(p.resolution), "crs": p.crs, "resampling": p.resampling,
                         "nodata": p.nodata, "scale": p.scale, "offset": p.offset, "mask": p is self.mask}
                for p in plans
            },  # fmt: skip
            "mask": self.manifest.mask.describe() if self.manifest.mask is not None else None,
            "crs": crs_name(self.grid.crs),
            "resolution": list(self.grid.resolution),
            "shape": list(self.grid.shape),
        }


def _asset_grid(item: Any, key: str) -> AssetGrid:
    """The asset's grid from ``proj:*`` (asset, else item), else from the file's header."""
    asset = item.assets[key]
    fields = {**item.properties, **asset.extra_fields}
    code = fields.get("proj:code") or (f"EPSG:{fields['proj:epsg']}" if fields.get("proj:epsg") else None)
    tr, shape = fields.get("proj:transform"), fields.get("proj:shape")
    if code and tr and shape:
        return AssetGrid(CRS.from_user_input(code), Affine(*tr[:6]), (int(shape[0]), int(shape[1])))
    import rasterio

    href = asset.get_absolute_href() or asset.href
    try:
        with rasterio.open(href) as src:
            return AssetGrid(src.crs, src.transform, (src.height, src.width))
    except Exception as e:  # rasterio/GDAL errors
        raise CropseqError(f"cannot read the header of asset {key!r} of item {item.id} ({str(e).splitlines()[0]})", href) from None


def _raster_band(item: Any, key: str) -> dict[str, Any]:
    rb = item.assets[key].extra_fields.get("raster:bands") or [{}]
    return rb[0] if isinstance(rb[0], dict) else {}


def _is_raster(asset: Any) -> bool:
    t = str(asset.media_type or "").lower()
    return "tiff" in t or "jp2" in t or "netcdf" in t or asset.href.lower().split("?")[0].endswith(_RASTER_SUFFIXES)


def _resolve_assets(m: StacManifest, items: Sequence[Any]) -> dict[str, str]:
    """Cube band name -> asset key (common names resolved); every key must be in some item."""
    keys = sorted({k for it in items for k in it.assets})
    if not m.bands:
        shared = [k for k in items[0].assets if all(k in it.assets for it in items) and _is_raster(items[0].assets[k])]
        out = {k: k for k in shared if m.mask is None or k != m.mask.band}
        if not out:
            raise CropseqError(f"the items share no raster asset (their asset keys: {', '.join(keys)}); name bands:", m.path)
        return out
    common: dict[str, str] = {}
    for it in items:
        for k, a in it.assets.items():
            for b in a.extra_fields.get("eo:bands") or []:
                if isinstance(b, dict) and b.get("common_name"):
                    common.setdefault(b["common_name"], k)
    out = {}
    for name, key in m.bands.items():
        asset = key if key in keys else common.get(key)
        if asset is None:
            raise CropseqError(f"asset {key!r} is in no item (the items' asset keys: {', '.join(keys)})", m.path)
        out[name] = asset
    return out


def describe(m: StacManifest, grid: GridSpec | None = None) -> StacScene:
    """Find the items and decide the grid, bands and dates; reads no pixel.

    Args:
        m: The manifest.
        grid: A target grid overriding the manifest's ``grid:``.

    Raises:
        CropseqError: see :func:`find_items`; an asset key no item has; a band (or the mask
            band) missing on some dates (naming them).
    """
    items = find_items(m)
    assets = _resolve_assets(m, items)
    mask_asset = None
    if m.mask is not None:
        mask_asset = m.bands.get(str(m.mask.band), str(m.mask.band))
        if not any(mask_asset in it.assets for it in items):
            keys = sorted({k for it in items for k in it.assets})
            raise CropseqError(f"mask band asset {mask_asset!r} is in no item (the items' asset keys: {', '.join(keys)})", m.path)
    rules = m.rules or _value_rules(m.raw, [*assets, *([str(m.mask.band)] if m.mask else [])], m.path)
    # The reference item: the first holding every band (else the first).
    first = next((it for it in items if all(a in it.assets for a in assets.values())), items[0])
    grids = {name: _asset_grid(first, a) for name, a in assets.items() if a in first.assets}
    ref_name = min(grids, key=lambda n: grids[n].resolution[0] * grids[n].resolution[1])
    target = _target_grid(m, grid if grid is not None else m.grid, items, assets[ref_name], grids[ref_name])
    times, groups = _group(items, m.groupby, target)
    for name, a in [*assets.items(), *(((str(m.mask.band), str(mask_asset)),) if m.mask is not None else ())]:
        _check_every_date(name, a, items, times, groups, m, is_mask=m.mask is not None and name == m.mask.band)
    plans = tuple(_plan(rules, name, a, items, first, target, False) for name, a in assets.items())
    mplan = _plan(rules, str(m.mask.band), mask_asset, items, first, target, True) if m.mask is not None and mask_asset else None
    return StacScene(m, tuple(items), target, plans, mplan, times, groups)


def _plan(
    rules: ValueRules, name: str, asset: str, items: Sequence[Any], item: Any, target: TargetGrid, is_mask: bool
) -> BandPlan:
    rb = _raster_band(item, asset) if asset in item.assets else {}
    g = _asset_grid(item, asset) if asset in item.assets else None
    src_res = native_resolution(g.crs, g.transform, g.shape, target.crs) if g is not None else target.resolution
    nodata = rules.nodata.get(name)
    if nodata is None and rb.get("nodata") is not None:
        nodata = _number_or_nan(rb["nodata"])
    scale, offset = (rules.scale.get(name, 1.0), rules.offset.get(name, 0.0)) if name in rules.scale_set else (
        float(rb.get("scale", 1.0)), float(rb.get("offset", 0.0)))  # fmt: skip
    resampling = rules.resampling.get(name) or default_resampling(src_res, target.resolution, is_mask)
    return BandPlan(
        name=name, asset=asset, nodata=nodata, scale=float(scale), offset=float(offset),
        valid_range=None if is_mask else rules.valid_range.get(name), resampling=resampling,
        resolution=g.resolution if g is not None else target.resolution,
        crs=g.crs.to_string() if g is not None and g.crs is not None else None,
        read_as=_read_as(items, asset, rb, nodata, resampling, target),
    )  # fmt: skip


_INTEGER_TYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32")


def _read_as(items: Sequence[Any], asset: str, rb: dict[str, Any], nodata: float | None, resampling: str, target: TargetGrid) -> str:
    """The type odc-stac reads ``asset`` as: its stored integer type where that gives the same values, else float32.

    The same values: no pixel is resampled (nearest, or every item's asset on the target
    grid's lattice by its ``proj:`` fields) and a fill value is known (odc-stac fills what no
    item covers with it, as it does in float32). Half the bytes to read, fill, mosaic and
    convert: 10-25 % less CPU per chunk on ``benchmarks/read_throughput.py``'s stack. The
    ``proj:`` fields and ``raster:bands`` data type are trusted, as odc-stac itself does.
    """
    stored = str(rb.get("data_type") or "")
    if stored not in _INTEGER_TYPES or nodata is None or not float(nodata).is_integer():
        return "float32"
    if not np.iinfo(stored).min <= nodata <= np.iinfo(stored).max:  # a fill value the type cannot hold
        return "float32"
    if resampling == "nearest" or all(_on_lattice(it, asset, target) for it in items if asset in it.assets):
        return stored
    return "float32"


def _on_lattice(item: Any, asset: str, target: TargetGrid) -> bool:
    """Whether the asset's ``proj:`` grid has the target's CRS and pixel size, shifted by whole pixels."""
    fields = {**item.properties, **item.assets[asset].extra_fields}
    code = fields.get("proj:code") or (f"EPSG:{fields['proj:epsg']}" if fields.get("proj:epsg") else None)
    tr = fields.get("proj:transform")
    if not code or not tr or target.crs is None or CRS.from_user_input(code) != target.crs:
        return False
    a, b, c, d, e, f = (float(v) for v in tr[:6])
    t = target.transform
    if b != 0.0 or d != 0.0 or t.b != 0.0 or t.d != 0.0 or not (math.isclose(a, t.a, rel_tol=1e-9) and math.isclose(e, t.e, rel_tol=1e-9)):
        return False
    cols, rows = (c - t.c) / t.a, (f - t.f) / t.e
    return abs(cols - round(cols)) < 1e-6 and abs(rows - round(rows)) < 1e-6


def _number_or_nan(v: Any) -> float:
    return math.nan if isinstance(v, str) and v.lower() == "nan" else float(v)


def _target_grid(m: StacManifest, spec: GridSpec | None, items: Sequence[Any], ref_asset: str, ref: AssetGrid) -> TargetGrid:
    """The manifest's grid, the rest by default.

    That is the items' usual CRS, the finest band's resolution, the extent of ``bbox`` (else
    of all items), on the reference's pixel lattice.
    """
    from rasterio.transform import array_bounds
    from rasterio.warp import transform_bounds

    spec = spec or GridSpec()
    grids = [_asset_grid(it, ref_asset) for it in items if ref_asset in it.assets]
    crs = CRS.from_user_input(spec.crs) if spec.crs is not None else _usual_crs(grids, ref)
    if spec.bounds is not None or spec.bbox is not None:
        return resolve_grid(replace_spec(spec, crs), ref.crs, ref.transform, ref.shape, m.path)
    if m.bbox is not None:
        left, bottom, right, top = transform_bounds(CRS.from_epsg(4326), crs, *m.bbox, densify_pts=21)
    else:
        boxes = [transform_bounds(g.crs, crs, *array_bounds(*g.shape, g.transform), densify_pts=21) for g in grids]
        left, bottom = min(b[0] for b in boxes), min(b[1] for b in boxes)
        right, top = max(b[2] for b in boxes), max(b[3] for b in boxes)
    res = spec.resolution or native_resolution(ref.crs, ref.transform, ref.shape, crs)
    if ref.crs == crs and np.allclose(res, ref.resolution, rtol=1e-9):
        # On the reference's pixel lattice: its pixels are read as they are, not resampled.
        left = ref.transform.c + math.floor((left - ref.transform.c) / res[0] + 1e-9) * res[0]
        top = ref.transform.f + math.ceil((top - ref.transform.f) / res[1] - 1e-9) * res[1]
    return resolve_grid(GridSpec(crs=crs.to_string(), resolution=tuple(res), bounds=(left, bottom, right, top)),  # type: ignore[arg-type]
                        ref.crs, ref.transform, ref.shape, m.path)  # fmt: skip


def replace_spec(spec: GridSpec, crs: CRS) -> GridSpec:
    """``spec`` with its CRS set (the items' usual CRS when the manifest names none)."""
    return GridSpec(crs=spec.crs or crs.to_string(), resolution=spec.resolution, bounds=spec.bounds, bbox=spec.bbox)


def _usual_crs(grids: Sequence[AssetGrid], ref: AssetGrid) -> CRS:
    """The CRS most items use (the first item's on ties)."""
    named = [g.crs.to_string() for g in grids if g.crs is not None]
    if not named:
        raise CropseqError("the STAC items carry no CRS (proj:code) and their files none either; set grid: {crs: ...}")
    counts = Counter(named)
    best = max(counts.values())
    first = ref.crs.to_string() if ref.crs is not None and counts.get(ref.crs.to_string()) == best else None
    return CRS.from_user_input(first or next(c for c in named if counts[c] == best))


def _group(items: Sequence[Any], groupby: str, target: TargetGrid) -> tuple[pd.DatetimeIndex, tuple[tuple[int, ...], ...]]:
    """Items per time step, as odc-stac groups them.

    By solar day at the grid's centre longitude, or exact time; each step is labelled with
    its earliest item's time.
    """
    from rasterio.warp import transform as warp_transform

    keys: list[Any]
    times = [_item_time(it) for it in items]
    if groupby == "solar_day":
        h, w = target.shape
        cx, cy = target.transform * (w / 2.0, h / 2.0)
        lon = float(warp_transform(target.crs, CRS.from_epsg(4326), [cx], [cy])[0][0]) if target.crs else 0.0
        keys = [(t + pd.Timedelta(hours=lon * 24.0 / 360.0)).date() for t in times]
    else:
        keys = times
    groups: OrderedDict[Any, list[int]] = OrderedDict()
    for i in sorted(range(len(items)), key=lambda i: (keys[i], times[i], items[i].id)):
        groups.setdefault(keys[i], []).append(i)
    labels = pd.DatetimeIndex([times[g[0]] for g in groups.values()]).as_unit("ns")
    return labels, tuple(tuple(g) for g in groups.values())


def _check_every_date(
    name: str, asset: str, items: Sequence[Any], times: pd.DatetimeIndex, groups: Sequence[Sequence[int]],
    m: StacManifest, is_mask: bool,
) -> None:
    """Every date needs the band (or mask) in at least one of its items."""
    from cropseq.io import format_time

    lacking = [k for k, g in enumerate(groups) if not any(asset in items[i].assets for i in g)]
    if lacking:
        days = format_time(times[lacking])
        shown = ", ".join(days[:5]) + (f" and {len(days) - 5} more" if len(days) > 5 else "")
        what = "mask band" if is_mask else "band"
        raise CropseqError(f"{what} {name} (asset {asset!r}) is missing on {len(lacking)} of {len(times)} dates: {shown}", m.path)


# ----------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class _Values:
    """Picklable block function: raw band values (and mask) -> the cube's float32 values."""

    bands: tuple[BandPlan, ...]
    mask_rule: MaskRule | None
    mask_nodata: float | None

    def __call__(self, raw: Sequence[np.ndarray], mask: np.ndarray | None = None) -> np.ndarray:
        """The float32 ``(time, band, y, x)`` block of the raw ``(time, y, x)`` per band (and mask)."""
        out = np.empty((raw[0].shape[0], len(raw), *raw[0].shape[1:]), np.float32)
        for c, b in enumerate(self.bands):
            for t in range(out.shape[0]):  # date by date: the temporaries stay small (cache-sized)
                _band_values(raw[c][t], b, out[t, c])
        if mask is not None and self.mask_rule is not None:
            mvals = mask.astype(np.float64)
            if self.mask_nodata is not None:
                mvals[mvals == self.mask_nodata] = np.nan  # no mask value: nothing says clear
            bad = self.mask_rule.invalid(mvals)
            out[np.broadcast_to(bad[:, None], out.shape)] = np.nan
        return out


def _band_values(raw: np.ndarray, b: BandPlan, out: np.ndarray) -> None:
    """One band's raw values (as odc-stac read them: float32, or the stored integer type) -> the cube's float32 values, into ``out``.

    ``value * scale + offset`` is rounded to float32 once, as the manifest reader does. With
    no offset the product is computed in float64 by the ufunc's buffered loop straight into
    ``out`` (no float64 copy, and the copy into the block is the scaling itself); the masks
    compare float32 values in float32 (exactly: no float64 copy either).
    """
    from cropseq.io import _nan_where

    with np.errstate(over="ignore", invalid="ignore"):
        if b.offset != 0.0:  # two operations, rounded once: in float64
            vals64 = raw.astype(np.float64)
            if b.nodata is not None and not np.isnan(b.nodata):
                vals64[vals64 == b.nodata] = np.nan
            vals64 *= b.scale
            vals64 += b.offset
            out[...] = vals64
        else:
            if b.scale == 1.0 and raw.dtype == np.float32:
                np.copyto(out, raw)  # x * 1.0 in float64, rounded back, is x
            else:
                np.multiply(raw, b.scale, out=out, dtype=np.float64, casting="unsafe")
            if b.nodata is not None and not np.isnan(b.nodata):
                _nan_where(out, _is_exactly(raw, b.nodata))
    if b.valid_range is not None:
        with np.errstate(invalid="ignore"):
            _nan_where(out, _outside(out, *b.valid_range))
    _nan_where(out, np.isinf(out))  # beyond float32's range: missing, not infinite


def _is_exactly(raw: np.ndarray, value: float) -> np.ndarray:
    """``raw == value`` compared exactly, in ``raw``'s own type where that is exact (no float64 copy)."""
    if raw.dtype.kind in "iu":
        from cropseq.io import _equals

        return _equals(raw, value)  # integers: exact
    if raw.dtype != np.float32:
        return raw == np.float64(value)
    with np.errstate(over="ignore"):
        v32 = np.float32(value)
    if float(v32) != value:  # no float32 equals it
        return np.zeros(raw.shape, dtype=bool)
    return raw == v32


def _outside(out: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(out < lo) | (out > hi)`` for float32 ``out``, compared in float32 with the same result.

    The bounds become the nearest float32 inside ``[lo, hi]`` (no float32 lies between
    ``lo`` and the next float32 above it), so no float64 copy of ``out`` is made.
    """
    with np.errstate(over="ignore"):
        lo32, hi32 = np.float32(lo), np.float32(hi)
    if float(lo32) < lo:
        lo32 = np.nextafter(lo32, np.float32(np.inf))
    if float(hi32) > hi:
        hi32 = np.nextafter(hi32, np.float32(-np.inf))
    return (out < lo32) | (out > hi32)


@dataclass(frozen=True)
class StacWindows:
    """Picklable window reader of a STAC stack.

    ``(row_off, col_off, height, width) -> (time, band, h, w)`` float32, NaN beyond the
    grid's edges.

    Each call is one eager ``odc.stac.load`` of the window's sub-grid (the items of the
    dates it holds, its bands and the mask band), then :class:`_Values`. The cube of
    :func:`open_stac` reads its chunks with it (one task per spatial chunk, every date and
    band: a small graph), and being a reader of :mod:`cropseq.io`'s kind it gives STAC
    cubes direct window reads (tiles, halo reads of inference) and composites
    (:class:`cropseq.composite.CompositeReader`).
    """

    items: tuple[Any, ...]  # every item of the scene
    groups: tuple[tuple[int, ...], ...]  # item indices per date (all dates of the scene)
    plans: tuple[BandPlan, ...]  # every cube band
    mask: BandPlan | None
    mask_rule: MaskRule | None
    grid: TargetGrid
    groupby: str
    time_take: tuple[int, ...]  # the dates read, in output order
    band_take: tuple[int, ...]  # the bands read, in output order

    @property
    def n_time(self) -> int:
        """Number of output dates."""
        return len(self.time_take)

    @property
    def bands(self) -> tuple[BandPlan, ...]:
        """The output bands."""
        return tuple(self.plans[b] for b in self.band_take)

    def select(self, times: Sequence[int], bands: Sequence[int]) -> StacWindows:
        """The reader of output dates ``times`` and bands ``bands`` (indices, output order)."""
        return replace(self, time_take=tuple(self.time_take[t] for t in times), band_take=tuple(self.band_take[b] for b in bands))

    def __dask_tokenize__(self) -> Any:
        return (type(self).__name__, [it.id for it in self.items], self.groups, self.plans, self.mask,
                self.mask_rule, tuple(self.grid.transform), self.grid.shape, str(self.grid.crs), self.groupby,
                self.time_take, self.band_take)  # fmt: skip

    def __call__(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        """The float32 ``(time, band, height, width)`` block of this window."""
        ny, nx = self.grid.shape
        r0, c0, r1, c1 = max(row_off, 0), max(col_off, 0), min(row_off + height, ny), min(col_off + width, nx)
        dates = sorted(set(self.time_take))
        vals = None
        if r1 > r0 and c1 > c0 and self.n_time and self.band_take:
            raw, mraw = self._load(dates, r0, c0, r1, c1)
            vals = _Values(self.bands, self.mask_rule, self.mask.nodata if self.mask else None)(raw, mraw)
            if list(self.time_take) == dates and (r0, c0, r1, c1) == (row_off, col_off, row_off + height, col_off + width):
                return vals  # the usual case (a chunk, every date once): no copy
        out = np.full((self.n_time, len(self.band_take), height, width), np.nan, np.float32)
        if vals is not None:
            pos = {d: k for k, d in enumerate(dates)}
            out[:, :, r0 - row_off : r1 - row_off, c0 - col_off : c1 - col_off] = vals[[pos[t] for t in self.time_take]]
        return out

    def _load(self, dates: Sequence[int], r0: int, c0: int, r1: int, c1: int) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Raw ``(date, h, w)`` values per band (and the mask's) of the dates."""
        import odc.stac
        from odc.geo.geobox import GeoBox

        plans = (*self.bands, *((self.mask,) if self.mask is not None else ()))
        items = [self.items[i] for d in dates for i in self.groups[d]]
        gbox = GeoBox(self.grid.shape, self.grid.transform, self.grid.crs)[r0:r1, c0:c1]
        cfg = {"*": {"assets": {p.asset: {"nodata": p.nodata} for p in plans if p.nodata is not None}}}
        dtypes: dict[str, str] = {}
        for p in plans:  # an asset read for a band and for the mask: float32 unless both agree
            dtypes[p.asset] = p.read_as if dtypes.get(p.asset, p.read_as) == p.read_as else "float32"
        hrefs = [it.assets[p.asset].href for it in items[:1] for p in plans if p.asset in it.assets]
        # Remote assets: cropseq's GDAL HTTP defaults (no directory listing per file, retries,
        # block cache), where the user's environment sets none (odc-stac's own env nests inside).
        with quiet_rasterio(), gdal_env(*hrefs):
            ds = odc.stac.load(
                items, bands=list(dict.fromkeys(p.asset for p in plans)), groupby=self.groupby, geobox=gbox,
                resampling={p.asset: p.resampling for p in plans}, dtype=dtypes, stac_cfg=cfg,
            )  # fmt: skip
        if ds.sizes["time"] != len(dates):
            raise CropseqError(f"odc-stac grouped the items of {len(dates)} dates into {ds.sizes['time']}")
        raw = [ds[p.asset].values for p in self.bands]  # no stacked copy: _Values writes the block
        return raw, ds[self.mask.asset].values if self.mask is not None else None


# Listings of the STAC cubes opened in this process, by the name of their Dask array.
_FOUND: OrderedDict[str, dict[str, Any]] = OrderedDict()
_FOUND_LOCK = threading.Lock()
_FOUND_MAX = 64


def open_stac(m: StacManifest, chunks: Any = 512, grid: GridSpec | None = None) -> xr.DataArray:
    """Open a ``source: stac`` manifest as the cube (lazy: odc-stac reads per chunk).

    Args:
        m: The manifest (:func:`cropseq.manifest.load_manifest`).
        chunks: Spatial chunk edge, or a function of the grid's ``(height, width)``.
        grid: A target grid overriding the manifest's.

    Returns:
        The cube: ``(time, band, y, x)`` float32, NaN missing, Dask-backed, one chunk holds
        every date and band of a spatial block (read in one task by :class:`StacWindows`),
        CRS and transform written (rioxarray), ``attrs["source"]`` the manifest; with
        ``composite:``, the composite (``attrs["composite"]`` describes it).
    """
    from cropseq.atomic import register_input
    from cropseq.composite import composite_reader, parse_composite
    from cropseq.io import _build_cube

    register_input(m.path, m.catalog, what="part of the stack")  # URLs are skipped there
    scene = describe(m, grid)
    target = scene.grid
    names = [p.name for p in scene.bands]
    reader: Any = StacWindows(
        scene.items, scene.groups, scene.bands, scene.mask, m.mask, target, m.groupby,
        tuple(range(len(scene.times))), tuple(range(len(scene.bands))),
    )  # fmt: skip
    times, composite = scene.times, None
    if m.raw.get("composite") is not None:  # a regular time grid, composited in each read task
        spec = parse_composite(m.raw["composite"], names, m.path, parse_date)
        reader, times, composite = composite_reader(reader, times, names, spec, m.path)
    native: dict[str, tuple[float, float, str | None]] = {p.name: (*p.resolution, p.resampling) for p in scene.bands}
    cube = _build_cube(reader, times, names, target.crs, target.transform, target.shape, chunks, str(m.path), native)
    with _FOUND_LOCK:
        _FOUND[cube.data.name] = scene.listing()
        while len(_FOUND) > _FOUND_MAX:
            _FOUND.popitem(last=False)
    return cube if composite is None else cube.assign_attrs(composite=composite)


def stac_listing(cube: xr.DataArray) -> dict[str, Any] | None:
    """What :func:`open_stac` found for ``cube`` (items, dates, bands, CRS).

    None when the cube is not a STAC stack just opened in this process.
    """
    name = getattr(getattr(cube, "data", None), "name", None)
    with _FOUND_LOCK:
        return _FOUND.get(name) if name is not None else None
