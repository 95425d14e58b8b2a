"""Labelled reference data: polygons or points, read into the stack's CRS.

:func:`read_labels` reads

- **vector files** any GDAL/OGR format (GeoPackage, GeoJSON, Shapefile, ...) with
  polygons and/or points; multi-points are split into points; features without a geometry
  are an error; everything is reprojected to the stack CRS;
- **label rasters** (a land-cover map): one point per labelled pixel, read onto the stack's
  grid, grouped by connected patch of one class (:mod:`cropseq.label_raster`);
- **CSV points** with ``longitude, latitude`` (or ``lon, lat``; WGS84) or ``x, y`` (already
  in the stack CRS) columns, a class column, and optional ``from``/``to`` validity dates
  (a point labelled for one season, ``[from, to)``) — like dtwSat's ``samples.csv``.

The class table (codes, names, colours) is, in this order: the one given; the labels' own
table — ``<labels stem>.classes.yaml`` or ``classes.yaml`` beside the labels file (as
``cropseq simulate`` writes), else ``code`` (and optional ``color``) columns of the file; else
derived from the class names (sorted, codes 1..K). The samples table stores it, so codes and
colours follow the labels however the model is trained.

Each feature gets a ``sample_id`` = its 0-based row (feature) number in the file, so that
published splits map one to one, and a ``group``: the ``id_column`` value when given, else
the row number (extraction replaces a point's group by its pixel, see
:func:`cropseq.samples.extract_samples`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cropseq import remote
from cropseq.atomic import register_input
from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.grid import TargetGrid
from cropseq.label_raster import UNLABELLED, is_label_raster, read_label_raster
from cropseq.remote import RemotePath, Source

__all__ = ["LabelSet", "SITS_BOUNDS", "own_class_table_files", "read_labels"]

_LONLAT = (("longitude", "latitude"), ("lon", "lat"))
_XY = ("x", "y")


@dataclass
class LabelSet:
    """Labelled features in the stack CRS.

    Attributes:
        features: GeoDataFrame with columns ``sample_id`` (int, 0-based row in the file),
            ``label`` (str), ``group`` (str), ``from``/``to`` (datetime64, NaT = unbounded)
            and ``geometry`` (Point or Polygon/MultiPolygon), in the stack CRS.
        classes: The class table (given, or derived from the labels' names).
        path: The file read.
        id_column: The column the groups came from (None: groups are row numbers;
            ``"patch"`` for a label raster: connected patches of one class).
        classes_source: Where the class table came from: a YAML path, ``"column 'code'"``,
            ``"given"``, or None when it was derived from the class names.
    """

    features: Any  # geopandas.GeoDataFrame (typed loosely: geopandas is imported lazily)
    classes: ClassTable
    path: Source
    id_column: str | None = None
    classes_source: str | None = None

    @property
    def n(self) -> int:
        """Number of features."""
        return len(self.features)

    @property
    def is_point(self) -> np.ndarray:
        """Boolean per feature: True for points, False for polygons."""
        return (self.features.geometry.geom_type == "Point").to_numpy()


def _show(value: Any) -> str:
    """``repr`` of a table cell for messages: ``10.5``, not ``np.float64(10.5)``."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _one_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


def _find_column(columns: list[str], name: str) -> str | None:
    """Exact column, else a case-insensitive match."""
    if name in columns:
        return name
    lower = {c.lower(): c for c in columns}
    return lower.get(name.lower())


#: sits' sample tables bound a sample's season by ``start_date`` and an *inclusive*
#: ``end_date``; cropseq's ``from``/``to`` are end-exclusive, so ``to = end_date + 1 day``.
SITS_BOUNDS = ("start_date", "end_date")


def _bound_columns(columns: list[str]) -> tuple[tuple[str | None, str | None], bool]:
    """The season-bound columns: ``from``/``to``, else sits' ``start_date``/``end_date``.

    The flag is ``True`` for sits' columns: their end is inclusive.
    """
    frm, to = _find_column(columns, "from"), _find_column(columns, "to")
    if frm is None and to is None:
        start, end = (_find_column(columns, c) for c in SITS_BOUNDS)
        if start is not None or end is not None:
            return (start, end), True
    return (frm, to), False


def _validity(df: pd.DataFrame, where: Source) -> tuple[pd.Series, pd.Series]:
    """Season bounds parsed to datetimes (NaT when absent or empty).

    ``from``/``to`` are end-exclusive; sits' ``start_date``/``end_date`` are end-inclusive,
    made exclusive.
    """
    out = []
    cols, end_inclusive = _bound_columns(list(map(str, df.columns)))
    for key, col in zip(("from", "to"), cols):
        if col is None:
            out.append(pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]"))
            continue
        raw = df[col]
        text = raw.astype("string").str.strip()
        empty = (raw.isna() | (text == "")).fillna(True).to_numpy()
        if pd.api.types.is_datetime64_any_dtype(raw):
            parsed = pd.to_datetime(raw)
        else:
            parsed = pd.to_datetime(text.where(~empty), format="ISO8601", errors="coerce")
        bad = parsed.isna().to_numpy() & ~empty
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise CropseqError(f"{col!r} value {_show(raw.iloc[i])} in row {i} is not a date (use YYYY-MM-DD)", where)
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        if key == "to" and end_inclusive:
            parsed = parsed + pd.Timedelta(days=1)  # the end date's observations stay in
        out.append(pd.Series(pd.DatetimeIndex(parsed).as_unit("ns"), index=df.index))
    frm, to = out
    bad = (frm.notna() & to.notna() & (to <= frm)).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CropseqError(f"row {i}: 'to' ({to.iloc[i].date()}) is not after 'from' ({frm.iloc[i].date()})", where)
    return frm, to


def _labels_column(df: pd.DataFrame, class_column: str, where: Source) -> pd.Series:
    col = _find_column(list(map(str, df.columns)), class_column)
    if col is None:
        avail = ", ".join(str(c) for c in df.columns if str(c) != "geometry")
        raise CropseqError(f"no class column {class_column!r} (columns: {avail}); pick one with --class-column", where)
    lab = df[col]
    missing = lab.isna().to_numpy() | (lab.astype(str).str.strip() == "").to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise CropseqError(f"row {i} has an empty class in column {col!r} ({int(missing.sum())} rows in all)", where)
    # Integer-coded classes read as floats (1.0) from some formats: keep "1".
    if pd.api.types.is_float_dtype(lab) and np.isfinite(lab).all() and (lab % 1 == 0).all():
        lab = lab.astype(np.int64)
    return lab.astype(str).str.strip()


def _read_csv_points(path: Source, crs: Any, class_column: str) -> Any:
    import geopandas as gpd

    try:
        df = pd.read_csv(io.StringIO(remote.read_text(path, "labels CSV")) if isinstance(path, RemotePath) else path)
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise CropseqError(f"cannot read CSV ({_one_line(e)})", path) from None
    cols = list(map(str, df.columns))
    pair: tuple[str, str] | None = None
    src_crs: Any = None
    for a, b in _LONLAT:
        ca, cb = _find_column(cols, a), _find_column(cols, b)
        if ca and cb:
            pair, src_crs = (ca, cb), "EPSG:4326"
            break
    if pair is None:
        ca, cb = _find_column(cols, _XY[0]), _find_column(cols, _XY[1])
        if ca and cb:
            pair, src_crs = (ca, cb), crs
    if pair is None:
        raise CropseqError(
            f"CSV points need longitude,latitude (WGS84) or x,y (stack CRS) columns (columns: {', '.join(cols)})", path
        )
    coords = []
    for c in pair:
        num = pd.to_numeric(df[c], errors="coerce")
        bad = num.isna().to_numpy() | ~np.isfinite(num.to_numpy(dtype="float64", na_value=np.nan))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise CropseqError(
                f"row {i} (line {i + 2}) has a non-numeric {c!r} coordinate {_show(df[c].iloc[i])}", path
            )
        coords.append(num.to_numpy(dtype="float64"))
    if src_crs == "EPSG:4326":
        for c, v, lim in ((pair[0], coords[0], 360.0), (pair[1], coords[1], 90.0)):
            out = np.abs(v) > lim
            if out.any():
                i = int(np.flatnonzero(out)[0])
                raise CropseqError(
                    f"row {i} (line {i + 2}) has {c!r} {v[i]:g} outside [-{lim:g}, {lim:g}] (WGS84 degrees expected)", path
                )
    labels = _labels_column(df, class_column, path)
    frm, to = _validity(df, path)
    gdf = gpd.GeoDataFrame(
        {"sample_id": np.arange(len(df), dtype=np.int64), "label": labels.to_numpy(), "from": frm, "to": to},
        geometry=gpd.points_from_xy(coords[0], coords[1]),
        crs=src_crs,
    )
    return gdf, df


def _read_vector(path: Source, class_column: str) -> Any:
    import geopandas as gpd

    try:
        with remote.gdal_env(path):
            gdf = gpd.read_file(remote.gdal_path(path))
    except Exception as e:  # pyogrio raises DataSourceError and friends
        raise CropseqError(f"cannot read vector file ({_one_line(e)})", path) from None
    if gdf.crs is None:
        raise CropseqError("vector file has no CRS; set one (e.g. with ogr2ogr -a_srs)", path)
    empty = (gdf.geometry.isna() | gdf.geometry.is_empty).to_numpy()
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise CropseqError(f"feature {i} has no geometry ({int(empty.sum())} in all)", path)
    kinds = set(gdf.geometry.geom_type)
    unsupported = kinds - {"Point", "MultiPoint", "Polygon", "MultiPolygon"}
    if unsupported:
        raise CropseqError(f"unsupported geometry type(s) {', '.join(sorted(unsupported))}; use points or polygons", path)
    labels = _labels_column(gdf, class_column, path)
    frm, to = _validity(gdf, path)
    out = gpd.GeoDataFrame(
        {"sample_id": np.arange(len(gdf), dtype=np.int64), "label": labels.to_numpy(), "from": frm.to_numpy(), "to": to.to_numpy()},
        geometry=gdf.geometry.to_numpy(),
        crs=gdf.crs,
    )
    return out, pd.DataFrame(gdf.drop(columns="geometry"))


def own_class_table_files(path: str | os.PathLike[str]) -> list[Path]:
    """Class-table files that belong to a labels file.

    ``<stem>.classes.yaml``, then ``classes.yaml`` in its folder (the first that exists is used).
    """
    p = Path(path)
    return [p.with_name(f"{p.stem}.classes.yaml"), p.with_name("classes.yaml")]


def _code_column_table(table: pd.DataFrame, labels: pd.Series, class_column: str, where: Source) -> ClassTable | None:
    """A class table from ``code`` (and optional ``color``/``colour``) columns, or None."""
    cols = list(map(str, table.columns))
    code_col = _find_column(cols, "code")
    if code_col is None or code_col == _find_column(cols, class_column):
        return None
    codes = pd.to_numeric(table[code_col], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isfinite(codes) | (codes % 1 != 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CropseqError(f"row {i}: class code {_show(table[code_col].iloc[i])} in column {code_col!r} is not an integer", where)
    colour_col = _find_column(cols, "color") or _find_column(cols, "colour")
    pairs = pd.DataFrame({"name": labels.to_numpy(), "code": codes.astype(np.int64)})
    if colour_col is not None:
        pairs["color"] = table[colour_col].to_numpy()
    for key, other in (("name", "code"), ("code", "name")):
        n = pairs.groupby(key)[other].nunique()
        if (n > 1).any():
            k = n[n > 1].index[0]
            raise CropseqError(f"{key} {k!r} has more than one {other} in columns {class_column!r}/{code_col!r}", where)
    first = pairs.drop_duplicates("name").sort_values("code")
    records = [{k: v for k, v in r.items() if not (k == "color" and pd.isna(v))} for r in first.to_dict("records")]
    return ClassTable.from_records(records, str(where))


def _labels_class_table(
    path: Source, table: pd.DataFrame, labels: pd.Series, class_column: str
) -> tuple[ClassTable | None, str | None]:
    """The labels' own class table and where it came from (see the module docstring)."""
    for candidate in own_class_table_files(path):
        if candidate.is_file():
            return ClassTable.from_yaml(candidate), str(candidate)
    from_column = _code_column_table(table, labels, class_column, path)
    if from_column is not None:
        return from_column, "column 'code'"
    return None, None


def read_labels(
    path: str | os.PathLike[str],
    crs: Any,
    class_column: str = "label",
    id_column: str | None = None,
    classes: ClassTable | None = None,
    grid: TargetGrid | None = None,
    unlabelled: Sequence[int] = UNLABELLED,
) -> LabelSet:
    """Read labelled polygons or points into the stack CRS.

    Args:
        path: A vector file (GeoPackage, GeoJSON, Shapefile, ...), a CSV of points, or a
            label raster (``.tif``, ``.vrt``, ...: one point per labelled pixel, grouped by
            patch; :mod:`cropseq.label_raster`).
        crs: The stack CRS (anything ``pyproj``/``rasterio`` accepts; e.g. ``cube.rio.crs``).
            CSV ``x, y`` columns are taken to be in it.
        class_column: Column holding the class names (case-insensitive match).
        id_column: Column holding a field/parcel id, used as the sample ``group`` (default:
            the feature's row number).
        classes: A class table; labels it does not know are an error. Default: the labels'
            own table (``<stem>.classes.yaml`` or ``classes.yaml`` beside the file, or
            ``code``/``color`` columns), else derived from the label names
            (``ClassTable.from_names``: sorted, codes 1..K).
        grid: The stack's grid; a label raster is read onto it (nearest neighbour).
        unlabelled: Label-raster values that mean "no label" (besides its nodata).

    Returns:
        A :class:`LabelSet`.

    Raises:
        CropseqError: missing/unreadable file, missing class or id column (listing the
            columns), non-numeric coordinates (naming the row), empty or unknown classes.
    """
    import geopandas as gpd

    path = remote.source(path)  # a URL stays a URL (read through GDAL's /vsicurl/ ...)
    if isinstance(path, Path) and not path.exists():
        raise CropseqError("labels file not found", path)
    register_input(path, what="labels file")  # outputs may not replace an input
    if is_label_raster(path):
        if id_column is not None:
            raise CropseqError("--id-column is for vector labels: a label raster's groups are its patches of one class", path)
        return read_label_raster(path, crs, grid=grid, classes=classes, unlabelled=unlabelled)
    if path.suffix.lower() in (".csv", ".txt"):
        gdf, table = _read_csv_points(path, crs, class_column)
    else:
        gdf, table = _read_vector(path, class_column)
    if len(gdf) == 0:
        raise CropseqError("labels file holds no features", path)
    source: str | None = "given"
    if classes is None:
        classes, source = _labels_class_table(path, table, gdf["label"], class_column)

    if id_column is not None:
        col = _find_column(list(map(str, table.columns)), id_column)
        if col is None:
            avail = ", ".join(str(c) for c in table.columns)
            raise CropseqError(f"no id column {id_column!r} (columns: {avail})", path)
        ids = table[col]
        if ids.isna().any():
            i = int(np.flatnonzero(ids.isna().to_numpy())[0])
            raise CropseqError(f"row {i} has an empty id in column {col!r}", path)
        if pd.api.types.is_float_dtype(ids) and np.isfinite(ids).all() and (ids % 1 == 0).all():
            ids = ids.astype(np.int64)
        gdf["group"] = ids.astype(str).to_numpy()
    else:
        gdf["group"] = gdf["sample_id"].astype(str)

    try:
        gdf = gdf.to_crs(crs)
    except Exception as e:  # pyproj CRSError and friends
        raise CropseqError(f"cannot reproject labels to the stack CRS ({_one_line(e)})", path) from None
    # Multi-points become one feature per point; sample ids are then renumbered 0..n-1 in
    # file order (they must stay unique) while the group keeps the original feature.
    if (gdf.geometry.geom_type == "MultiPoint").any():
        gdf = gdf.explode(index_parts=False).reset_index(drop=True)
        gdf["sample_id"] = np.arange(len(gdf), dtype=np.int64)

    names = sorted(set(gdf["label"]))
    if classes is None:
        classes = ClassTable.from_names(names)
    else:
        unknown = [n for n in names if n not in classes.names]
        if unknown:
            origin = "" if source in (None, "given") else f" of {source}; pass --classes to use another"
            raise CropseqError(
                f"unknown class(es) {', '.join(map(repr, unknown))} not in the class table{origin} "
                f"(known: {', '.join(classes.names)})",
                path,
            )
    feats = gpd.GeoDataFrame(
        gdf[["sample_id", "label", "group", "from", "to"]].reset_index(drop=True),
        geometry=gdf.geometry.reset_index(drop=True),
        crs=gdf.crs,
    )
    return LabelSet(features=feats, classes=classes, path=path, id_column=id_column, classes_source=source)
