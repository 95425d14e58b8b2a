"""The reference sample of a crop map: design it, draw it, read it back and assess the map.

Good practice (Olofsson et al. 2014) scores a map on a **stratified random sample** with
the map classes as strata, then estimates accuracy and area with the estimators of
:mod:`cropseq.accuracy`. This module does the map-side work, always block by block, so a
map of 10^9 pixels is never held in memory:

- :func:`map_strata`: the map's classes (names from its metadata, read by
  :func:`cropseq.raster_metadata.raster_class_names`) and their pixel counts and hectares
  (:func:`cropseq.outputs.area_stats`, one pass over the blocks);
- :func:`plan_design`: sample size from a target SE of OA (eq. 13) or given, allocated
  ``proportional | equal | neyman`` with a minimum per class;
- :func:`draw_points`: per stratum, ``k`` of its ``N`` pixels drawn without replacement as
  sorted random indices into the stratum's pixels in row-major order, then picked up in one
  pass over strips of rows; points are pixel centres, listed in random order (so the
  analyst labelling them in turn does not see the strata one after another);
- :func:`write_points`: GeoPackage (or GeoJSON, CSV) in the map's CRS with ``point_id``,
  ``map_class``, ``map_code``, ``reference`` (empty, for the analyst), ``x``, ``y``;
- :func:`assess_points`: the filled points read back (any file
  :func:`cropseq.labels.read_labels` reads), the map sampled at them, the error matrix
  built and assessed against the map's class areas (the strata's pixel counts give the
  finite population correction); :func:`assess_tables` does the same from a count table
  and an area table (samples labelled elsewhere, e.g. Collect Earth);
  :func:`assess_census` scores the map against a full reference raster (a census).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cropseq.accuracy import (
    AccuracyAssessment,
    allocate_sample,
    census_assessment,
    non_probability_assessment,
    sample_size_for_oa,
    simple_random_assessment,
    stratified_assessment,
)
from cropseq.atomic import atomic_path, check_writable, register_input
from cropseq.classes import NODATA_CODE, ClassTable
from cropseq.errors import CropseqError
from cropseq.raster_metadata import raster_class_names

__all__ = ["DEFAULT_EXPECTED_UA", "MapStrata", "POINT_COLUMNS", "POINT_DESIGNS", "STRIP_PIXELS", "SampleDesign", "assess_census", "assess_points", "assess_tables", "check_points_path", "draw_points", "error_matrix", "map_strata", "parse_expected_ua", "plan_design", "points_frame", "read_count_tables", "read_reference_points", "write_points"]

#: Expected user's accuracy of a class the user gave none for (sample size, Neyman).
DEFAULT_EXPECTED_UA = 0.8
#: Pixels read per strip of whole rows (bounded memory whatever the map's tiling).
STRIP_PIXELS = 4_000_000
#: Columns of a points file written by :func:`write_points`.
POINT_COLUMNS = ("point_id", "map_class", "map_code", "reference", "x", "y")


# --------------------------------------------------------------------------- strata
@dataclass(frozen=True)
class MapStrata:
    """The map classes as strata.

    Attributes:
        path: The crop map.
        codes: Class codes (order of every per-class array here).
        names: Class names.
        pixels: Pixels of each class.
        hectares: Area of each class in hectares.
        crs: The map's CRS (rasterio ``CRS`` or None).
        transform: The map's affine transform.
        note: Caveat on the hectares (geographic CRS), or ``""``.
    """

    path: Path
    codes: tuple[int, ...]
    names: tuple[str, ...]
    pixels: np.ndarray
    hectares: np.ndarray
    crs: Any
    transform: Any
    note: str = ""

    def name_of(self, code: int) -> str:
        """Class name of a code."""
        return self.names[self.codes.index(int(code))]


def _map_names(path: Path) -> dict[int, str]:
    """Code → name of a crop map, with one-line errors for a missing or nameless map."""
    import rasterio

    if not path.is_file():
        raise CropseqError("crop map not found", path)
    try:
        table = raster_class_names(path)
    except rasterio.errors.RasterioIOError as e:
        raise CropseqError(f"not a readable raster ({str(e).splitlines()[0]})", path) from None
    if not table:
        raise CropseqError("the map carries no class names (write it with cropseq predict, or add a .qml style)", path)
    return table


def map_strata(map_path: str | os.PathLike[str]) -> MapStrata:
    """The classes of a crop map and their pixel counts and areas, read block by block.

    Raises:
        CropseqError: missing/unreadable map, no class names, a map code without a name,
            or a map with no classified pixel.
    """
    import rasterio

    from cropseq.outputs import area_stats

    path = Path(map_path)
    table = _map_names(path)
    classes = ClassTable.from_records([{"code": c, "name": n} for c, n in sorted(table.items())], str(path))
    stats = area_stats(path, classes)
    with rasterio.open(path) as src:
        crs, transform, nodata = src.crs, src.transform, src.nodata
    skip = {NODATA_CODE} | ({int(nodata)} if nodata is not None else set())
    unnamed = [c for c in np.flatnonzero(stats.pixels) if int(c) not in table and int(c) not in skip]
    if unnamed:
        raise CropseqError(f"map code(s) {', '.join(map(str, unnamed))} have no class name in the map's metadata", path)
    codes = tuple(c for c in sorted(table) if c not in skip)
    pixels = np.array([stats.pixels[c] for c in codes], dtype=np.int64)
    if pixels.sum() == 0:
        raise CropseqError("the map has no classified pixel", path)
    return MapStrata(
        path=path, codes=codes, names=tuple(table[c] for c in codes), pixels=pixels,
        hectares=np.array([stats.hectares[c] for c in codes], dtype=np.float64), crs=crs,
        transform=transform, note=stats.note,
    )  # fmt: skip


# --------------------------------------------------------------------------- design
@dataclass(frozen=True)
class SampleDesign:
    """How many points each stratum gets, and why.

    Attributes:
        strata: The map's strata.
        expected_ua: Expected user's accuracy per class (strata order).
        allocation: ``proportional``, ``equal`` or ``neyman``.
        n_planned: Sample size from the target SE (or given with ``n``).
        points: Points per stratum (strata order); sums to the drawn size.
        target_se: Target SE of OA, or None when ``n`` was given.
        min_per_class: Minimum points per stratum.
    """

    strata: MapStrata
    expected_ua: np.ndarray
    allocation: str
    n_planned: int
    points: np.ndarray
    target_se: float | None
    min_per_class: int


def parse_expected_ua(items: list[str] | None, names: tuple[str, ...]) -> np.ndarray:
    """``["Soy=0.8", ...]`` → expected UA per class (others :data:`DEFAULT_EXPECTED_UA`).

    Raises:
        CropseqError: malformed item, unknown class name or a value outside ``[0, 1]``.
    """
    out = np.full(len(names), DEFAULT_EXPECTED_UA)
    for item in items or []:
        name, sep, value = str(item).rpartition("=")
        if not sep or not name:
            raise CropseqError(f"--expected-ua {item!r}: write CLASS=VALUE, e.g. soy=0.85")
        if name not in names:
            raise CropseqError(f"--expected-ua: unknown class {name!r} (map classes: {', '.join(names)})")
        try:
            u = float(value)
        except ValueError:
            raise CropseqError(f"--expected-ua {item!r}: {value!r} is not a number") from None
        if not 0.0 <= u <= 1.0:
            raise CropseqError(f"--expected-ua {item!r}: a user's accuracy lies in [0, 1]")
        out[names.index(name)] = u
    return out


def plan_design(
    strata: MapStrata,
    *,
    expected_ua: np.ndarray | None = None,
    target_se: float = 0.01,
    allocation: str = "proportional",
    min_per_class: int = 50,
    n: int | None = None,
) -> SampleDesign:
    """Sample size (Olofsson 2014 eq. 13, unless ``n`` is given) and its allocation.

    Args:
        strata: From :func:`map_strata`.
        expected_ua: Expected UA per stratum (default :data:`DEFAULT_EXPECTED_UA` each).
        target_se: Target standard error of OA (ignored when ``n`` is given).
        allocation: ``proportional``, ``equal`` or ``neyman``.
        min_per_class: Minimum points per stratum (capped by its pixels).
        n: Total sample size, overriding the target SE.

    Raises:
        CropseqError: bad target, size or allocation.
    """
    ua = np.full(len(strata.codes), DEFAULT_EXPECTED_UA) if expected_ua is None else np.asarray(expected_ua, float)
    if n is not None and n < 1:
        raise CropseqError(f"--n {n}: the sample needs at least one point")
    weights = strata.hectares if strata.hectares.sum() > 0 else strata.pixels.astype(float)
    planned = int(n) if n is not None else sample_size_for_oa(weights, ua, target_se, float(strata.pixels.sum()))
    points = allocate_sample(
        planned, weights, allocation, min_per_class=min_per_class, expected_ua=ua, stratum_sizes=strata.pixels
    )
    return SampleDesign(strata, ua, allocation, planned, points, None if n is not None else target_se, min_per_class)


# --------------------------------------------------------------------------- draw
def draw_points(design: SampleDesign, seed: int = 0) -> Any:
    """Draw the stratified random points: pixel centres, without replacement per stratum.

    Memory is bounded by one strip of rows plus the drawn indices: each stratum's ``k``
    picks are sorted random indices into its ``N`` pixels (row-major order), matched in
    one pass over the map.

    Args:
        design: From :func:`plan_design`.
        seed: Random seed; the same map, design and seed give the same points.

    Returns:
        A GeoDataFrame with :data:`POINT_COLUMNS` and point geometries in the map's CRS.
    """
    import rasterio
    from rasterio.windows import Window

    strata = design.strata
    rng = np.random.default_rng(seed)
    # Generator.choice without replacement uses a set-based draw when k << N: O(k) memory.
    picks = {
        code: np.sort(rng.choice(int(n_px), size=int(k), replace=False))
        for code, n_px, k in zip(strata.codes, strata.pixels, design.points, strict=True)
        if k > 0
    }
    seen = dict.fromkeys(picks, 0)
    found_rows: list[np.ndarray] = []
    found_cols: list[np.ndarray] = []
    found_codes: list[np.ndarray] = []
    with rasterio.open(strata.path) as src:
        width, height = src.width, src.height
        step = max(1, STRIP_PIXELS // max(1, width))
        for r0 in range(0, height, step):
            flat = src.read(1, window=Window(0, r0, width, min(step, height - r0))).ravel()
            counts = np.bincount(flat, minlength=256)
            for code, idx in picks.items():
                lo, hi = seen[code], seen[code] + int(counts[code])
                a, b = np.searchsorted(idx, [lo, hi])
                if b > a:
                    pos = np.flatnonzero(flat == code)[idx[a:b] - lo]
                    found_rows.append(r0 + pos // width)
                    found_cols.append(pos % width)
                    found_codes.append(np.full(pos.size, code, dtype=np.int64))
                seen[code] = hi
    rows = np.concatenate(found_rows) if found_rows else np.zeros(0, np.int64)
    cols = np.concatenate(found_cols) if found_cols else np.zeros(0, np.int64)
    codes = np.concatenate(found_codes) if found_codes else np.zeros(0, np.int64)
    # Canonical order (stratum, then scan position) before the seeded shuffle, so the
    # listing depends on the seed only, not on how the map was split into strips.
    canon = np.lexsort((rows * width + cols, codes))
    rows, cols, codes = rows[canon], cols[canon], codes[canon]
    order = rng.permutation(rows.size)  # random listing order: blind to the strata
    return points_frame(strata, rows[order], cols[order], codes[order])


def points_frame(strata: MapStrata, rows: np.ndarray, cols: np.ndarray, codes: np.ndarray, **extra: Any) -> Any:
    """Sample points at pixel centres, in listing order, as :data:`POINT_COLUMNS` (empty ``reference``).

    Args:
        strata: The map the points lie on (grid, CRS and class names).
        rows: Pixel rows of the points.
        cols: Pixel columns of the points.
        codes: Map class code at each point.
        **extra: Further columns, placed after ``y`` (e.g. ``uncertainty``).

    Returns:
        A point ``GeoDataFrame`` in the map's CRS.
    """
    import geopandas as gpd

    t = strata.transform
    xs = t.c + (cols + 0.5) * t.a + (rows + 0.5) * t.b
    ys = t.f + (cols + 0.5) * t.d + (rows + 0.5) * t.e
    columns = {
        "point_id": np.arange(rows.size, dtype=np.int64),
        "map_class": [strata.name_of(c) for c in codes],
        "map_code": codes.astype(np.int64),
        "reference": pd.Series([None] * rows.size, dtype=object),
        "x": xs,
        "y": ys,
    }
    return gpd.GeoDataFrame({**columns, **extra}, geometry=gpd.points_from_xy(xs, ys), crs=strata.crs)


def check_points_path(out: str | os.PathLike[str]) -> Path:
    """Check, before any work, that ``out`` is a points format we write and can be created.

    Raises:
        CropseqError: on a suffix other than ``.gpkg``/``.geojson``/``.csv`` or an
            unwritable folder.
    """
    out = Path(out)
    if out.suffix.lower() not in (".gpkg", ".geojson", ".csv"):
        raise CropseqError("points go to a .gpkg (GeoPackage), .geojson or .csv file", out)
    return check_writable(out)


def write_points(points: Any, out: str | os.PathLike[str]) -> Path:
    """Write sample points atomically as GeoPackage (``.gpkg``), GeoJSON or CSV (x, y columns).

    Single-file formats only, so the atomic rename moves everything (a Shapefile's
    sidecars would keep the temporary name). A GeoPackage layer is named after the stem.

    Raises:
        CropseqError: on another suffix, or when the file cannot be written.
    """
    out = check_points_path(out)
    suffix = out.suffix.lower()
    with atomic_path(out) as tmp:
        if suffix == ".csv":
            pd.DataFrame(points.drop(columns="geometry")).to_csv(tmp, index=False)
        else:
            try:
                points.to_file(tmp, layer=out.stem, driver="GPKG" if suffix == ".gpkg" else "GeoJSON")
            except Exception as e:  # pyogrio DataSourceError and friends
                raise CropseqError(f"cannot write points ({str(e).splitlines()[0]})", out) from None
    return out


# --------------------------------------------------------------------------- read back
def _raw_table(path: Path) -> pd.DataFrame:
    """The attribute table of a points file (CSV or vector), for checks before reading."""
    if path.suffix.lower() in (".csv", ".txt"):
        try:
            return pd.read_csv(path)
        except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
            raise CropseqError(f"cannot read CSV ({str(e).splitlines()[0]})", path) from None
    import pyogrio

    try:
        return pd.DataFrame(pyogrio.read_dataframe(path, read_geometry=False))
    except Exception as e:  # pyogrio DataSourceError and friends
        raise CropseqError(f"cannot read vector file ({str(e).splitlines()[0]})", path) from None


def _check_reference_column(table: pd.DataFrame, column: str, path: Path) -> str:
    """The reference column's real name; errors when it is empty or partly empty."""
    from cropseq.labels import _find_column

    col = _find_column(list(map(str, table.columns)), column)
    if col is None:
        avail = ", ".join(str(c) for c in table.columns)
        raise CropseqError(f"no reference column {column!r} (columns: {avail}); pick one with --reference-column", path)
    values = table[col]
    empty = (values.isna() | (values.astype(str).str.strip() == "")).to_numpy()
    if len(table) == 0:
        raise CropseqError("the points file holds no points", path)
    if empty.all():
        raise CropseqError(
            f"the reference column {col!r} is empty: label every point with its true class first", path
        )
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise CropseqError(
            f"{int(empty.sum())} of {len(table)} points have no reference class (first: row {i}); label them "
            "(dropping the hard ones biases the estimates)",
            path,
        )
    return col


def read_reference_points(
    points: str | os.PathLike[str], strata: MapStrata, reference_column: str = "reference"
) -> tuple[np.ndarray, np.ndarray]:
    """Map class and reference class of every labelled point.

    Points are read by :func:`cropseq.labels.read_labels` (vector points, or CSV with
    ``x, y`` in the map's CRS or ``longitude, latitude``) and the map is sampled at each.

    Returns:
        ``(map_names, reference_names)``, one entry per point.

    Raises:
        CropseqError: empty reference column, non-point geometries, a point outside the map
            or on an unclassified pixel, a reference class the map does not have, or a
            ``map_code`` column that disagrees with the map (points drawn from another map).
    """
    import rasterio

    from cropseq.labels import read_labels

    path = Path(points)
    if not path.exists():
        raise CropseqError("reference points not found", path)
    register_input(path, what="reference points")  # an output may not replace it
    table = _raw_table(path)
    col = _check_reference_column(table, reference_column, path)
    feats = read_labels(path, strata.crs, class_column=col).features
    if not (feats.geometry.geom_type == "Point").all():
        raise CropseqError("reference must be points (one per sample), not polygons", path)
    xs, ys = feats.geometry.x.to_numpy(), feats.geometry.y.to_numpy()
    inv = ~strata.transform
    cols = np.floor(inv.a * xs + inv.b * ys + inv.c).astype(np.int64)
    rows = np.floor(inv.d * xs + inv.e * ys + inv.f).astype(np.int64)
    with rasterio.open(strata.path) as src:
        outside = (rows < 0) | (rows >= src.height) | (cols < 0) | (cols >= src.width)
        _reject_points(outside, lambda i, n: f"point in row {i} at ({xs[i]:.3f}, {ys[i]:.3f}) lies outside the map "
                       f"({n} in all); remove it or assess the map the points were drawn on", path)
        centres = zip(xs, ys, strict=True)
        map_codes = np.fromiter((v[0] for v in src.sample(centres, indexes=1)), dtype=np.int64, count=xs.size)
    _check_map_codes(map_codes, table, strata, path)
    reference = feats["label"].astype(str).to_numpy()
    unknown = sorted(set(reference) - set(strata.names))
    if unknown:
        i = int(np.flatnonzero(reference == unknown[0])[0])
        raise CropseqError(
            f"reference class {unknown[0]!r} (row {i}) is not a class of the map (classes: {', '.join(strata.names)}); "
            "fix the label, names are case-sensitive", path,
        )  # fmt: skip
    return np.array([strata.name_of(c) for c in map_codes], dtype=object), reference


def _check_map_codes(map_codes: np.ndarray, table: pd.DataFrame, strata: MapStrata, path: Path) -> None:
    """Every point on a named map class, and on the class it was drawn in (if recorded)."""
    _reject_points(~np.isin(map_codes, strata.codes), lambda i, n: f"point in row {i} falls on an unclassified map "
                   f"pixel (code {int(map_codes[i])}; {n} in all); a stratified sample cannot hold it: remove it", path)
    if "map_code" in table.columns and len(table) == map_codes.size:
        drawn = pd.to_numeric(table["map_code"], errors="coerce").to_numpy()
        diff = np.isfinite(drawn) & (drawn != map_codes)
        _reject_points(diff, lambda i, n: f"point in row {i} was drawn in map code {int(drawn[i])} but the map has "
                       f"{int(map_codes[i])} there ({n} points differ): assess the map the points were drawn from", path)


def _reject_points(flagged: np.ndarray, problem: Callable[[int, int], str], path: Path) -> None:
    """Raise ``problem(first flagged row, number flagged)`` as one error line when any point is flagged."""
    if flagged.any():
        raise CropseqError(problem(int(np.flatnonzero(flagged)[0]), int(flagged.sum())), path)


def error_matrix(map_names: np.ndarray, reference: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """``(K, K)`` sample counts, rows = map class, columns = reference class (``classes`` order)."""
    index = {n: i for i, n in enumerate(classes)}
    k = len(classes)
    mi = np.fromiter((index[n] for n in map_names), dtype=np.int64, count=len(map_names))
    ri = np.fromiter((index[n] for n in reference), dtype=np.int64, count=len(reference))
    return np.bincount(mi * k + ri, minlength=k * k).reshape(k, k)


def assess_points(
    map_path: str | os.PathLike[str],
    points: str | os.PathLike[str],
    *,
    reference_column: str = "reference",
    design: str = "stratified",
) -> AccuracyAssessment:
    """Accuracy and area of a crop map from labelled sample points (hectares).

    Args:
        map_path: The crop map the points were drawn on.
        points: The points with their reference class filled in.
        reference_column: Column holding the reference class names.
        design: ``stratified`` (by map class, as ``cropseq sample-design`` draws),
            ``simple_random``, or ``non_probability`` (points that are no probability
            sample, e.g. held-out field samples: accuracies of the points, no areas).

    Raises:
        CropseqError: see :func:`read_reference_points`; a map class with area but no
            point, or a single point in a class of more than one pixel (stratified).
    """
    strata = map_strata(map_path)
    map_names, reference = read_reference_points(points, strata, reference_column)
    counts = error_matrix(map_names, reference, strata.names)
    try:
        return _assess(counts, strata.hectares, strata.names, design, strata.note, sizes=strata.pixels)
    except CropseqError as e:  # name the points file: that is where points are missing
        raise CropseqError(e.message, e.path or points) from None


#: Designs :func:`_assess` knows (``cropseq assess --design``, dashes for underscores).
POINT_DESIGNS = ("stratified", "simple_random", "non_probability")


def _assess(
    counts: np.ndarray,
    hectares: np.ndarray,
    names: tuple[str, ...],
    design: str,
    note: str = "",
    sizes: np.ndarray | None = None,
) -> AccuracyAssessment:
    """Run the estimator of ``design``; ``sizes`` (pixels per class, or None) give the FPC."""
    if design == "stratified":
        result = stratified_assessment(counts, hectares, names, area_unit="ha", stratum_sizes=sizes)
    elif design == "simple_random":
        result = simple_random_assessment(counts, hectares, names, area_unit="ha")
    elif design == "non_probability":
        result = non_probability_assessment(counts, hectares, names, area_unit="ha")
    else:
        raise CropseqError(f"unknown design {design!r}; use {', '.join(POINT_DESIGNS)}")
    if note:
        from dataclasses import replace

        result = replace(result, note="; ".join(s for s in (result.note, note) if s))
    return result


# --------------------------------------------------------------------------- tables
def _numeric_column(df: pd.DataFrame, col: str, path: Path, whole: bool) -> np.ndarray:
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0) | ((values != np.round(values)) if whole else False)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        kind = "a whole number >= 0" if whole else "a number >= 0"
        raise CropseqError(f"column {col!r}, row {i}: {df[col].iloc[i]!r} is not {kind}", path)
    return values


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise CropseqError("table not found", path)
    try:
        df = pd.read_csv(path, dtype={required[0]: str})
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise CropseqError(f"cannot read CSV ({str(e).splitlines()[0]})", path) from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise CropseqError(f"needs column(s) {', '.join(missing)} (columns: {', '.join(df.columns)})", path)
    names = df[required[0]].astype(str).str.strip()
    dup = names[names.duplicated()]
    if len(dup):
        raise CropseqError(f"class {dup.iloc[0]!r} appears twice in column {required[0]!r}", path)
    df[required[0]] = names
    return df


def read_count_tables(
    counts_csv: str | os.PathLike[str], areas_csv: str | os.PathLike[str], pixel_area: float | None = None
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray | None]:
    """Class names, sample counts and map areas (hectares) from two CSV tables.

    Args:
        counts_csv: ``map_class`` column + one column per reference class (sample counts);
            a reference class without a column counts 0.
        areas_csv: ``class,area``: map area of each class, in pixels when ``pixel_area``
            (hectares per pixel) is given, else in hectares.
        pixel_area: Hectares of one pixel, or None.

    Returns:
        ``(classes, counts (K, K) rows = map, areas (K,) ha, pixels (K,) or None)``;
        classes in ``counts_csv`` row order, then classes only ``areas_csv`` lists. The
        pixels (stratum sizes, for the finite population correction) are the areas when
        they are whole pixel counts (``pixel_area`` given), else None (unknown).

    Raises:
        CropseqError: missing columns, duplicates, non-numeric cells, a reference column
            that is no map class, a map class without an area.
    """
    cpath, apath = Path(counts_csv), Path(areas_csv)
    register_input(cpath, what="sample counts")
    register_input(apath, what="map areas")
    counts_df = _read_csv(cpath, ("map_class",))
    areas_df = _read_csv(apath, ("class", "area"))
    area_of = dict(zip(areas_df["class"], _numeric_column(areas_df, "area", apath, whole=False), strict=True))
    rows = tuple(counts_df["map_class"])
    classes = rows + tuple(c for c in areas_df["class"] if c not in set(rows))
    no_area = [c for c in counts_df["map_class"] if c not in area_of]
    if no_area:
        raise CropseqError(f"no area for map class {no_area[0]!r} (classes listed: {', '.join(area_of)})", apath)
    ref_cols = [c for c in counts_df.columns if c != "map_class"]
    unknown = [c for c in ref_cols if c not in classes]
    if unknown:
        raise CropseqError(
            f"reference class {unknown[0]!r} is not a map class (map classes: {', '.join(classes)}); "
            "add it as a row of the counts (zeros) and to the areas, or fix the column name", cpath,
        )  # fmt: skip
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for c in ref_cols:
        counts[: len(counts_df), classes.index(c)] = _numeric_column(counts_df, c, cpath, whole=True)
    if pixel_area is not None and not pixel_area > 0:
        raise CropseqError(f"--pixel-area {pixel_area} must be positive (hectares per pixel)")
    given = np.array([area_of[c] for c in classes])
    areas = given * (pixel_area if pixel_area is not None else 1.0)
    pixels = given if pixel_area is not None and np.all(given == np.round(given)) else None
    return classes, counts, areas, pixels


def assess_tables(
    counts_csv: str | os.PathLike[str],
    areas_csv: str | os.PathLike[str],
    *,
    pixel_area: float | None = None,
    design: str = "stratified",
) -> AccuracyAssessment:
    """Accuracy and area from a count table and a map-area table (see :func:`read_count_tables`).

    With ``pixel_area`` the areas are pixel counts: the stratified variances get the finite
    population correction; with areas in hectares the strata's sizes are unknown (none).
    """
    classes, counts, areas, pixels = read_count_tables(counts_csv, areas_csv, pixel_area)
    return _assess(counts, areas, classes, design, sizes=pixels)


# --------------------------------------------------------------------------- census
def assess_census(map_path: str | os.PathLike[str], truth: str | os.PathLike[str]) -> AccuracyAssessment:
    """Exact accuracy and areas of a map against a full reference raster on its grid.

    Pixels are paired block by block by :func:`cropseq.evaluation.score_map` (classes
    matched by name); areas use each map class's mean pixel area (exact for projected
    grids). Only pixels with a reference and a map class count.
    """
    from cropseq.evaluation import score_map

    strata = map_strata(map_path)
    scored = score_map(map_path, truth)
    names = tuple(scored["labels"])
    counts = np.asarray(scored["confusion_matrix"], dtype=np.int64).T  # to rows = map
    mean_px = float(strata.hectares.sum() / strata.pixels.sum())
    px_of = {n: float(h / p) for n, h, p in zip(strata.names, strata.hectares, strata.pixels, strict=True) if p > 0}
    pixel_area = [px_of.get(n, mean_px) for n in names]
    note = f"{int(counts.sum())} pixels with a reference"
    if scored.get("n_unclassified"):
        note += f"; {scored['n_unclassified']} reference pixels on unclassified map pixels left out"
    return census_assessment(counts, pixel_area, names, area_unit="ha", note=note)
