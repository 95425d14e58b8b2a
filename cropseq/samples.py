"""The samples table: read, write, validate, convert to arrays, extract from a cube, split.

The samples table is cropseq's exchange format for labelled pixel time series (see
``docs/ARCHITECTURE.md``, "Samples table"): long form, one row per (sample, observation),
CSV or Parquet. This module owns its rules:

- **Required columns**: ``sample_id`` (integer), ``label`` (class name; optional only when
  ``require_label=False``), and ``date`` (ISO date or timestamp) **or** ``t`` (0-based step).
- **Band columns**: every column that is not reserved (:data:`RESERVED`) and has no ``@``;
  at least one, numeric (empty cells are NaN = missing observation; :func:`table_to_arrays`
  also treats +-Inf and values beyond float32 as missing, like the cube).
- **Patch columns**: ``{band}@r{i}c{j}`` for a square odd patch ``p`` (all ``i, j`` in
  ``0..p-1`` for every band), holding the patch around the centre pixel.
- **One label per sample**; **no duplicate** ``(sample_id, date)`` or ``(sample_id, t)``.
- **Class table** (codes, names, colours): stored with the table — in the Parquet schema
  metadata (key :data:`CLASSES_METADATA_KEY`), or for CSV in the sidecar
  ``<stem>.classes.yaml`` — so a model trained on the table maps each class to the same code
  and colour however the table was made (:func:`write_samples`, :func:`read_samples_classes`).
- **Ragged sequences**: samples may have different numbers of steps (real stacks and seasons
  differ; :func:`table_to_arrays` pads them). What is an error ("ragged" in the messages) is a
  sample whose ``t`` values are not exactly ``0..n-1`` (a gap or a step that does not start at 0),
  or a ``date`` that does not parse as an ISO date/timestamp.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cropseq.atomic import atomic_path, register_input
from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.sequences import SequenceArrays

if TYPE_CHECKING:  # imported lazily at run time: they pull in rasterio/xarray/geopandas
    import xarray as xr

    from cropseq.labels import LabelSet

__all__ = [
    "CLASSES_METADATA_KEY",
    "ExtractionReport",
    "RESERVED",
    "SIDECAR_HEADER",
    "assign_split",
    "band_columns",
    "cap_per_group",
    "check_patch",
    "classes_sidecar",
    "extract_samples",
    "grouped_stratified_split",
    "label_pixels",
    "patch_column",
    "patch_columns",
    "read_samples",
    "read_samples_classes",
    "table_format",
    "table_patch_size",
    "table_to_arrays",
    "validate_samples",
    "write_samples",
]

#: Column names that are never bands.
RESERVED: frozenset[str] = frozenset({"sample_id", "label", "date", "t", "group", "x", "y", "row", "col", "doy"})

#: Parquet schema-metadata key holding the class table (JSON records ``[{code, name, color}]``).
CLASSES_METADATA_KEY = b"cropseq.classes"

_PATCH_RE = re.compile(r"^(?P<band>.+)@r(?P<i>\d+)c(?P<j>\d+)$")
_CSV_SUFFIXES = {".csv"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}


# --------------------------------------------------------------------------------------
# columns


def _show(value: Any) -> str:
    """``repr`` of a table cell for messages: ``10.5``, not ``np.float64(10.5)``."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def band_columns(df: pd.DataFrame) -> list[str]:
    """Band columns of a samples table, in table order.

    Args:
        df: A samples table.

    Returns:
        Every column that is not reserved and is not a ``{band}@r{i}c{j}`` patch column.
    """
    return [str(c) for c in df.columns if str(c) not in RESERVED and "@" not in str(c)]


def patch_column(band: str, i: int, j: int) -> str:
    """Name of the patch column of ``band`` at patch row ``i``, column ``j``."""
    return f"{band}@r{i}c{j}"


def patch_columns(bands: Sequence[str], patch: int) -> list[str]:
    """All patch column names for ``bands`` and a ``patch`` x ``patch`` patch (band-major, row-major)."""
    return [patch_column(b, i, j) for b in bands for i in range(patch) for j in range(patch)]


def table_patch_size(df: pd.DataFrame, where: str | os.PathLike[str] | None = None) -> int:
    """The patch size ``p`` stored in a table (1 when it has no patch columns).

    Raises:
        CropseqError: when patch columns are malformed, name an unknown band, are even-sized
            or incomplete.
    """
    bands = band_columns(df)
    sizes: dict[str, set[tuple[int, int]]] = {}
    for c in map(str, df.columns):
        if "@" not in c:
            continue
        m = _PATCH_RE.match(c)
        if m is None:
            raise CropseqError(f"column {c!r} is not a patch column of the form band@r<i>c<j>", where)
        if m["band"] not in bands:
            raise CropseqError(f"patch column {c!r} names band {m['band']!r} that has no centre column", where)
        sizes.setdefault(m["band"], set()).add((int(m["i"]), int(m["j"])))
    if not sizes:
        return 1
    n = max(max(max(i, j) for i, j in s) for s in sizes.values()) + 1
    if n % 2 == 0:
        raise CropseqError(f"patch columns describe an even {n}x{n} patch; the patch size must be odd", where)
    full = {(i, j) for i in range(n) for j in range(n)}
    for b in bands:
        missing = full - sizes.get(b, set())
        if missing:
            i, j = sorted(missing)[0]
            raise CropseqError(
                f"incomplete {n}x{n} patch: {len(missing)} patch columns missing, e.g. {patch_column(b, i, j)!r}", where
            )
    return n


# --------------------------------------------------------------------------------------
# validation


def _parse_dates(values: pd.Series, where: str | os.PathLike[str] | None) -> pd.Series:
    """Parse a ``date`` column (ISO dates or timestamps); name the first bad row.

    Timestamps with a UTC offset are converted to UTC and made naive (as the cube's time
    axis, see :func:`cropseq.manifest.parse_date`); offsets may differ between rows.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        text = values.astype("string")
        try:
            parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
        except (ValueError, TypeError, OverflowError):  # mixed UTC offsets (or naive and aware)
            parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CropseqError(
            f"date {_show(values.iloc[i])} in row {i} is not an ISO date (YYYY-MM-DD); {int(bad.sum())} bad dates in all",
            where,
        )
    return parsed.dt.tz_localize(None) if getattr(parsed.dt, "tz", None) is not None else parsed


def _step_key(df: pd.DataFrame, where: str | os.PathLike[str] | None) -> pd.Series:
    """The per-row ordering key: parsed ``date`` when present, else ``t``."""
    if "date" in df.columns:
        return _parse_dates(df["date"], where)
    return df["t"]


def validate_samples(
    df: pd.DataFrame,
    where: str | os.PathLike[str] | None = None,
    *,
    require_label: bool = True,
) -> None:
    """Check that ``df`` is a valid samples table (see the module docstring for the rules).

    Args:
        df: The table.
        where: The file it came from (named in errors).
        require_label: Whether a ``label`` column is required (False for unlabelled tables,
            e.g. points to predict).

    Raises:
        CropseqError: one line naming ``where`` and the first problem found.
    """
    cols = set(map(str, df.columns))
    bands = _check_columns(df, cols, where, require_label)
    sid = _check_sample_ids(df, where)
    _check_band_values(df, bands, where)
    table_patch_size(df, where)
    if "label" in cols:
        _check_labels(df, sid, where)
    if "date" in cols:
        _check_dates(df, sid, where)
    if "t" in cols:
        _check_steps(df, sid, where)


def _check_columns(df: pd.DataFrame, cols: set[str], where: str | os.PathLike[str] | None,
                   require_label: bool) -> list[str]:  # fmt: skip
    """The required columns are there, with rows; return the band columns."""
    if "sample_id" not in cols:
        raise CropseqError(f"missing column 'sample_id' (columns: {', '.join(map(str, df.columns))})", where)
    if require_label and "label" not in cols:
        raise CropseqError(f"missing column 'label' (columns: {', '.join(map(str, df.columns))})", where)
    if "date" not in cols and "t" not in cols:
        raise CropseqError("missing column 'date' (or 't' when dates are unknown)", where)
    bands = band_columns(df)
    if not bands:
        raise CropseqError("no band columns (every column is reserved: " + ", ".join(sorted(RESERVED)) + ")", where)
    if len(df) == 0:
        raise CropseqError("the samples table has no rows", where)
    return bands


def _check_sample_ids(df: pd.DataFrame, where: str | os.PathLike[str] | None) -> pd.Series:
    """Every ``sample_id`` is an integer float64 holds exactly; return them as numbers."""
    sid = pd.to_numeric(df["sample_id"], errors="coerce")
    sv = sid.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        # integers that float64 holds exactly (and int64 too): |id| < 2**53
        bad = ~np.isfinite(sv) | (sv % 1 != 0) | (np.abs(sv) >= 2.0**53)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        why = "is too large (at most 2**53 - 1)" if np.isfinite(sv[i]) and sv[i] % 1 == 0 else "is not an integer"
        raise CropseqError(f"sample_id {_show(df['sample_id'].iloc[i])} in row {i} {why}", where)
    return sid


def _check_band_values(df: pd.DataFrame, bands: list[str], where: str | os.PathLike[str] | None) -> None:
    """Band columns hold numbers (or nothing)."""
    for b in bands:
        col = df[b]
        if not (pd.api.types.is_numeric_dtype(col) or col.isna().all()):
            num = pd.to_numeric(col, errors="coerce")
            badb = num.isna().to_numpy() & col.notna().to_numpy()
            if badb.any():
                i = int(np.flatnonzero(badb)[0])
                raise CropseqError(f"band column {b!r} holds a non-numeric value {_show(col.iloc[i])} in row {i}", where)


def _check_labels(df: pd.DataFrame, sid: pd.Series, where: str | os.PathLike[str] | None) -> None:
    """Every row has a label, and each sample one label."""
    lab = df["label"]
    missing = lab.isna().to_numpy() | (lab.astype("string").str.strip() == "").fillna(True).to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise CropseqError(f"row {i} (sample {df['sample_id'].iloc[i]}) has no label", where)
    per = pd.DataFrame({"s": sid.to_numpy(), "l": lab.astype(str).to_numpy()}).groupby("s")["l"].nunique()
    mixed = per[per > 1]
    if len(mixed):
        raise CropseqError(
            f"{len(mixed)} samples have more than one label, e.g. sample {int(mixed.index[0])}", where
        )


def _check_dates(df: pd.DataFrame, sid: pd.Series, where: str | os.PathLike[str] | None) -> None:
    """Dates parse, and no sample has two rows on one date."""
    dates = _parse_dates(df["date"], where)
    dup = pd.DataFrame({"s": sid.to_numpy(), "d": dates.to_numpy()}).duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise CropseqError(
            f"duplicate rows for sample {int(sid.iloc[i])} on date {df['date'].iloc[i]} (row {i})", where
        )


def _check_steps(df: pd.DataFrame, sid: pd.Series, where: str | os.PathLike[str] | None) -> None:
    """Steps ``t`` are non-negative integers, exactly ``0..n-1`` per sample."""
    t = pd.to_numeric(df["t"], errors="coerce")
    tv = t.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        badt = ~np.isfinite(tv) | (tv % 1 != 0) | (tv < 0) | (tv >= 2.0**31)
    if badt.any():
        i = int(np.flatnonzero(badt)[0])
        raise CropseqError(f"t {_show(df['t'].iloc[i])} in row {i} is not a non-negative integer step", where)
    st = pd.DataFrame({"s": sid.to_numpy(), "t": tv.astype(np.int64)})
    dup = st.duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise CropseqError(f"duplicate rows for sample {int(sid.iloc[i])} at step t={int(tv[i])} (row {i})", where)
    # Steps of each sample must be exactly 0..n-1: min 0 and max n-1 given no duplicates.
    agg = st.groupby("s")["t"].agg(["min", "max", "size"])
    ragged = agg[(agg["min"] != 0) | (agg["max"] != agg["size"] - 1)]
    if len(ragged):
        s0 = int(ragged.index[0])
        raise CropseqError(
            f"ragged steps: {len(ragged)} samples have t values that are not 0..n-1 "
            f"(e.g. sample {s0}: t from {int(ragged['min'].iloc[0])} to {int(ragged['max'].iloc[0])} "
            f"over {int(ragged['size'].iloc[0])} rows)",
            where,
        )


# --------------------------------------------------------------------------------------
# file I/O


def table_format(path: Path) -> str:
    """``"csv"`` or ``"parquet"`` from the file suffix; CropseqError otherwise."""
    suffix = path.suffix.lower()
    if suffix in _CSV_SUFFIXES:
        return "csv"
    if suffix in _PARQUET_SUFFIXES:
        return "parquet"
    raise CropseqError(f"unknown samples table format {suffix!r} (use .csv or .parquet)", path)


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Canonical dtypes and row order (sample_id, then date/t)."""
    df = df.copy()
    df["sample_id"] = pd.to_numeric(df["sample_id"]).astype(np.int64)
    if "label" in df.columns:
        df["label"] = df["label"].astype(str)
    if "group" in df.columns:
        df["group"] = df["group"].astype(str)
    if "t" in df.columns:
        df["t"] = pd.to_numeric(df["t"]).astype(np.int64)
    for b in [c for c in df.columns if str(c) not in RESERVED]:
        if not pd.api.types.is_float_dtype(df[b]):
            df[b] = pd.to_numeric(df[b], errors="coerce").astype(np.float64)
    key = _step_key(df, None)
    order = np.lexsort((key.to_numpy(), df["sample_id"].to_numpy()))
    return df.iloc[order].reset_index(drop=True)


def read_samples(path: str | os.PathLike[str], *, require_label: bool = True) -> pd.DataFrame:
    """Read and validate a samples table (CSV or Parquet, chosen by the suffix).

    Args:
        path: ``*.csv`` or ``*.parquet``.
        require_label: Whether a ``label`` column is required.

    Returns:
        The table with ``sample_id`` (and ``t``) as int64, ``label``/``group``/``date`` as
        strings, band columns as floats, rows sorted by ``sample_id`` then date/step.

    Raises:
        CropseqError: missing/unreadable file, unknown suffix, or an invalid table.
    """
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise CropseqError("samples table not found", path)
    register_input(path, what="samples table")  # outputs may not replace an input
    try:
        if fmt == "csv":
            # Keep ids and dates as text: '001' groups and ISO dates must survive unchanged.
            df = pd.read_csv(path, dtype={"label": str, "group": str, "date": str})
        else:
            df = pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise CropseqError(f"cannot read samples table ({str(e).splitlines()[0] if str(e) else type(e).__name__})", path) from None
    except Exception as e:  # pyarrow raises its own error types for corrupt Parquet
        raise CropseqError(f"cannot read samples table ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})", path) from None
    validate_samples(df, path, require_label=require_label)
    return _normalise(df)


def classes_sidecar(path: str | os.PathLike[str]) -> Path:
    """``DIR/STEM.classes.yaml``: where a CSV samples table keeps its class table."""
    p = Path(path)
    return p.with_name(f"{p.stem}.classes.yaml")


def _check_table_classes(df: pd.DataFrame, classes: ClassTable, where: Path) -> None:
    """Every label of ``df`` must be a class of ``classes``."""
    if "label" not in df.columns:
        return
    unknown = sorted(set(df["label"].astype(str)) - set(classes.names))
    if unknown:
        raise CropseqError(
            f"label(s) {', '.join(map(repr, unknown))} not in the class table (classes: {', '.join(classes.names)})", where
        )


def write_samples(
    df: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    require_label: bool = True,
    classes: ClassTable | None = None,
) -> Path:
    """Validate and write a samples table atomically (CSV or Parquet by suffix).

    Args:
        df: The table (not modified).
        path: Output ``*.csv`` or ``*.parquet``.
        require_label: Whether a ``label`` column is required.
        classes: The class table to store with the table: in the Parquet schema metadata, or
            for CSV in ``<stem>.classes.yaml`` (see :func:`read_samples_classes`). None: no
            table is stored (and a CSV's stale sidecar is removed).

    Returns:
        The output path.

    Raises:
        CropseqError: unknown suffix, unwritable folder, an invalid table, or labels that
            ``classes`` does not know.
    """
    path = Path(path)
    fmt = table_format(path)
    validate_samples(df, path, require_label=require_label)
    if classes is not None:
        _check_table_classes(df, classes, path)
    out = _normalise(df)
    if fmt == "csv":
        _check_csv_sidecar(path)  # before anything is written
    with atomic_path(path) as tmp:
        if fmt == "csv":
            out.to_csv(tmp, index=False)
        else:
            _write_parquet(out, tmp, classes)
    if fmt == "csv":
        _write_csv_sidecar(path, classes)
    return path


#: First line of the class table beside a CSV samples table: only such a file is replaced.
SIDECAR_HEADER = "# cropseq: class table of the samples table "


def _check_csv_sidecar(path: Path) -> None:
    """Refuse a CSV output whose ``STEM.classes.yaml`` is a file cropseq did not write as a sidecar.

    Such a file (a labels file's own class table, ``fields.classes.yaml`` beside
    ``fields.gpkg``) would be replaced or removed.
    """
    sidecar = classes_sidecar(path)
    if sidecar.exists():
        with open(sidecar, encoding="utf-8", errors="replace") as f:
            ours = f.readline().startswith(SIDECAR_HEADER)
        if not ours:
            raise CropseqError(
                f"{sidecar.name}, where this CSV table keeps its class table, is another file (not written "
                "by cropseq samples/split); choose another output name or move that file", path)


def _write_csv_sidecar(path: Path, classes: ClassTable | None) -> None:
    """Write (or, without a table, remove) ``STEM.classes.yaml`` beside a CSV table."""
    sidecar = classes_sidecar(path)
    if classes is None:
        sidecar.unlink(missing_ok=True)  # an earlier table's: it would describe another table
        return
    with atomic_path(sidecar) as tmp:
        classes.to_yaml(tmp)
        tmp.write_text(f"{SIDECAR_HEADER}{path.name}\n" + tmp.read_text())


def _write_parquet(df: pd.DataFrame, path: Path, classes: ClassTable | None) -> None:
    """``df.to_parquet`` plus the class table in the schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if classes is not None:
        meta = {**(table.schema.metadata or {}), CLASSES_METADATA_KEY: json.dumps(classes.to_records()).encode()}
        table = table.replace_schema_metadata(meta)
    pq.write_table(table, path)


def read_samples_classes(path: str | os.PathLike[str]) -> ClassTable | None:
    """The class table stored with a samples table, or None when it has none.

    Parquet tables keep it in their schema metadata, CSV tables in ``<stem>.classes.yaml``
    beside them (written by :func:`write_samples`, hence by ``cropseq samples`` and ``split``).

    Raises:
        CropseqError: an unreadable file or a damaged class table.
    """
    path = Path(path)
    if table_format(path) == "csv":
        sidecar = classes_sidecar(path)
        return ClassTable.from_yaml(sidecar) if sidecar.is_file() else None
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception as e:  # pyarrow raises its own error types for corrupt Parquet
        raise CropseqError(f"cannot read samples table ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})", path) from None
    raw = meta.get(CLASSES_METADATA_KEY)
    if raw is None:
        return None
    try:
        records = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CropseqError(f"damaged class table in the Parquet metadata ({e})", path) from None
    if not isinstance(records, list):
        raise CropseqError("damaged class table in the Parquet metadata (not a list of classes)", path)
    return ClassTable.from_records(records, str(path))


# --------------------------------------------------------------------------------------
# arrays


def _bands_and_patch(df: pd.DataFrame, bands: Sequence[str] | None, patch: int | None,
                     where: str | os.PathLike[str] | None) -> tuple[list[str], int, int]:  # fmt: skip
    """``(bands, patch size, stored patch size)`` asked of a table, checked against it."""
    table_bands = band_columns(df)
    if bands is None:
        bands = table_bands
    bands = [str(b) for b in bands]
    unknown = [b for b in bands if b not in table_bands]
    if unknown:
        raise CropseqError(f"band(s) {', '.join(unknown)} not in the samples table (bands: {', '.join(table_bands)})", where)
    if not bands:
        raise CropseqError("no bands selected", where)
    stored = table_patch_size(df, where)
    p = stored if patch is None else int(patch)
    if p < 1 or p % 2 == 0:
        raise CropseqError(f"patch size {p} must be odd and >= 1", where)
    if p > stored:
        raise CropseqError(f"patch size {p} requested but the table holds {stored}x{stored} patches", where)
    return bands, p, stored


def _band_values(df: pd.DataFrame, bands: list[str], p: int, stored: int, order: np.ndarray) -> np.ndarray:
    """``(rows, C, p, p)`` float32 values of the table rows in ``order``.

    A smaller ``p`` than stored is the centre of the stored patch; +-Inf (and values beyond
    float32) are NaN.
    """
    if p == 1:
        cols = bands
    else:
        off = (stored - p) // 2  # centre crop of a larger stored patch
        cols = [patch_column(b, i + off, j + off) for b in bands for i in range(p) for j in range(p)]
    with np.errstate(over="ignore", invalid="ignore"):
        vals = df[cols].to_numpy(dtype=np.float32, na_value=np.nan)[order].reshape(len(order), len(bands), p, p)
    # +-Inf (and values beyond float32) are missing, as in the cube (cropseq.io)
    vals[~np.isfinite(vals)] = np.nan
    return vals


def table_to_arrays(
    df: pd.DataFrame,
    bands: Sequence[str] | None = None,
    patch: int | None = None,
    *,
    where: str | os.PathLike[str] | None = None,
) -> SequenceArrays:
    """Convert a (valid) samples table to dense padded arrays.

    Sequences are sorted by ``sample_id`` then ``date`` (or ``t``), padded with NaN to the
    longest one (``present`` False on padding). Vectorised: no per-sample Python loop.

    Args:
        df: A samples table (validated here).
        bands: Bands to use, in this order (default: all band columns in table order).
        patch: Patch size ``p`` (odd). Default: the table's own patch size. A smaller ``p``
            than stored takes the centre of the stored patch; ``p = 1`` uses the plain band
            columns.
        where: The file the table came from (named in errors).

    Returns:
        :class:`~cropseq.sequences.SequenceArrays` with ``x`` ``(N, T, C, p, p)`` float32,
        ``doy`` (1..366, NaN when only ``t`` is known), ``dates`` (datetime64[D]),
        ``labels``/``groups`` as str arrays (groups default to the sample id).

    Raises:
        CropseqError: invalid table, unknown band, or a patch larger than stored/even.
    """
    validate_samples(df, where, require_label=False)
    bands, p, stored = _bands_and_patch(df, bands, patch, where)
    has_date = "date" in df.columns
    key = _step_key(df, where)
    sid = pd.to_numeric(df["sample_id"]).to_numpy(dtype=np.int64)
    keyv = key.to_numpy()
    order = np.lexsort((keyv, sid))
    sid_s = sid[order]
    # Samples ascending (sorted ids => factorize codes ascending); step = rank within sample.
    uniq, first, counts = np.unique(sid_s, return_index=True, return_counts=True)
    codes = np.repeat(np.arange(len(uniq)), counts)
    step = np.arange(len(sid_s)) - np.repeat(first, counts)
    n, t_max, c = len(uniq), int(counts.max()), len(bands)

    vals = _band_values(df, bands, p, stored, order)
    x = np.full((n, t_max, c, p, p), np.nan, dtype=np.float32)
    x[codes, step] = vals
    present = np.zeros((n, t_max), dtype=bool)
    present[codes, step] = True

    doy = np.full((n, t_max), np.nan, dtype=np.float32)
    dates = np.full((n, t_max), np.datetime64("NaT"), dtype="datetime64[D]")
    if has_date:
        dv = pd.DatetimeIndex(keyv[order])
        doy[codes, step] = dv.day_of_year.to_numpy(dtype=np.float32)
        dates[codes, step] = dv.to_numpy().astype("datetime64[D]")

    labels = None
    if "label" in df.columns:
        labels = df["label"].astype(str).to_numpy()[order][first].astype(str)
    if "group" in df.columns:
        groups = df["group"].astype(str).to_numpy()[order][first].astype(str)
    else:
        groups = uniq.astype(str)
    return SequenceArrays(
        x=x, doy=doy, present=present, bands=list(bands), labels=labels,
        sample_ids=uniq.astype(np.int64), groups=groups, dates=dates,
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# extraction


@dataclass
class ExtractionReport:
    """What :func:`extract_samples` did, for the CLI summary and warnings.

    Attributes:
        n_samples: Samples written.
        n_observations: Rows written (sample x date).
        classes: Classes present in the output, sorted.
        outside: Label ``sample_id`` of points outside the raster, and of polygons with no
            pixel centre inside them (or outside the raster); skipped.
        no_dates: Label ``sample_id`` of features with no cube date in their validity period
            (``[from, to)`` intersected with ``[start, end)``); skipped.
        skipped_bands: Cube bands not extracted because their names are reserved
            samples-table columns (e.g. a MODIS ``doy`` band).
        patch: The patch size.
    """

    n_samples: int = 0
    n_observations: int = 0
    classes: list[str] = field(default_factory=list)
    outside: list[int] = field(default_factory=list)
    no_dates: list[int] = field(default_factory=list)
    skipped_bands: list[str] = field(default_factory=list)
    patch: int = 1

    def recount(self, df: pd.DataFrame) -> None:
        """Set the sample and observation counts to those of ``df``, the table written.

        Call it after trimming the table (e.g. :func:`cap_per_group`), so the summary reports what the
        file holds.
        """
        self.n_samples = int(df["sample_id"].nunique())
        self.n_observations = len(df)

    def summary(self) -> str:
        """One line: samples, observations, classes, skipped features."""
        return (
            f"{self.n_samples} samples, {self.n_observations} observations, {len(self.classes)} classes, "
            f"{len(self.outside)} outside the stack, {len(self.no_dates)} without dates in their period"
        )

    def warnings(self) -> list[str]:
        """Human-readable warnings (one line each)."""
        out = []
        for what, ids in (("outside the stack (or covering no pixel centre)", self.outside),
                          ("with no stack date in their validity period", self.no_dates)):
            if ids:
                shown = ", ".join(map(str, ids[:20])) + (" ..." if len(ids) > 20 else "")
                out.append(f"skipped {len(ids)} labels {what}: sample ids {shown}")
        if self.skipped_bands:
            out.append(
                f"band(s) {', '.join(self.skipped_bands)} not extracted: their names are reserved samples-table "
                "columns (rename them in stack.yaml to keep them)"
            )
        return out


def check_patch(patch: int) -> int:
    """Return ``patch`` as int if it is an odd integer >= 1; CropseqError otherwise."""
    if isinstance(patch, bool) or not isinstance(patch, (int, np.integer)) or patch < 1 or patch % 2 == 0:
        raise CropseqError(f"patch size must be an odd integer >= 1, not {patch!r}")
    return int(patch)


def _time_bound(value: Any, what: str) -> np.datetime64 | None:
    if value is None:
        return None
    from cropseq.manifest import parse_date

    return parse_date(value, what, None).to_datetime64()


@dataclass(frozen=True)
class _Pixels:
    """The labelled pixels, one sample each: position, sample id, label and group."""

    rows: np.ndarray  # (N,) int64
    cols: np.ndarray  # (N,) int64
    fidx: np.ndarray  # (N,) index of the pixel's label feature
    sample_id: np.ndarray  # (N,) int64
    label: np.ndarray  # (N,) str
    group: np.ndarray  # (N,) object (str)

    def take(self, keep: np.ndarray) -> _Pixels:
        """The pixels where ``keep`` is true."""
        return _Pixels(self.rows[keep], self.cols[keep], self.fidx[keep], self.sample_id[keep], self.label[keep],
                       self.group[keep])  # fmt: skip


def _extracted_bands(cube: xr.DataArray, src: Any, report: ExtractionReport) -> tuple[list[str], list[str]]:
    """``(cube bands, bands extracted)``: reserved column names are skipped (and reported)."""
    cube_bands = [str(b) for b in cube["band"].values]
    bands = [b for b in cube_bands if b not in RESERVED]
    report.skipped_bands = [b for b in cube_bands if b in RESERVED]
    if not bands:
        raise CropseqError(f"no band to extract (bands {', '.join(cube_bands)} are all reserved names)", src)
    return cube_bands, bands


def _sample_pixels(cube: xr.DataArray, feats: Any, labels: LabelSet, report: ExtractionReport) -> _Pixels:
    """The samples: one per point, one per pixel of each polygon, with their ids and groups."""
    transform = cube.rio.transform()
    shape = (int(cube.sizes["y"]), int(cube.sizes["x"]))
    rows, cols, fidx = label_pixels(feats, transform, shape, report)
    if len(fidx) == 0:
        raise CropseqError(
            f"no labelled pixel inside the stack ({len(report.outside)} labels outside; "
            f"{_extent_hint(feats, transform, shape, cube.rio.crs)})",
            labels.path,
        )
    fid = feats["sample_id"].to_numpy(dtype=np.int64)
    is_point = (feats.geometry.geom_type == "Point").to_numpy()
    point = is_point[fidx]
    sample_id = np.empty(len(fidx), np.int64)
    sample_id[point] = fid[fidx[point]]
    first_poly = int(fid[is_point].max()) + 1 if is_point.any() else 0
    sample_id[~point] = first_poly + np.arange(int((~point).sum()))
    labels_s = feats["label"].to_numpy().astype(str)[fidx]
    group = feats["group"].to_numpy().astype(str)[fidx].astype(object)
    if labels.id_column is None:  # points: the pixel is the group
        group[point] = np.char.add(np.char.add("r", rows[point].astype(str)), np.char.add("_c", cols[point].astype(str)))
    return _Pixels(rows, cols, fidx, sample_id, labels_s, group)


def _dated_pixels(px: _Pixels, feats: Any, times: np.ndarray, t0: np.datetime64 | None, t1: np.datetime64 | None,
                  report: ExtractionReport, src: Any) -> tuple[_Pixels, np.ndarray, np.ndarray]:  # fmt: skip
    """Keep the pixels with a date in ``[start, end)`` and in their feature's ``[from, to)``.

    Returns:
        ``(pixels, mask, tsel)``: the pixels kept, their ``(N, T')`` date mask over the
        cube dates ``tsel`` that any pixel keeps.
    """
    frm = feats["from"].to_numpy().astype("datetime64[ns]")[px.fidx]
    to = feats["to"].to_numpy().astype("datetime64[ns]")[px.fidx]
    M = _date_mask(times, t0, t1, frm, to)
    keep = np.asarray(M.any(axis=1))
    if not keep.all():
        fid = feats["sample_id"].to_numpy(dtype=np.int64)
        report.no_dates.extend(sorted({int(fid[i]) for i in px.fidx[~keep]}))
        px, M = px.take(keep), M[keep]
    if len(px.rows) == 0:
        raise CropseqError("no labelled pixel has a stack date in its validity period", src)
    report.outside = sorted(set(report.outside))
    tsel = np.flatnonzero(M.any(axis=0))
    return px, M[:, tsel], tsel


def _samples_table(cube: xr.DataArray, cube_bands: list[str], bands: list[str], px: _Pixels, M: np.ndarray,
                   tsel: np.ndarray, p: int) -> pd.DataFrame:  # fmt: skip
    """Read the pixel values once; one row per sample and kept date, sorted by sample, date."""
    transform = cube.rio.transform()
    times = cube["time"].values.astype("datetime64[ns]")
    rows, cols = px.rows, px.cols
    vals, pix = _read_patches(cube, [cube_bands.index(b) for b in bands], tsel, rows, cols, p)
    n_idx, t_idx = np.nonzero(M)  # sorted by sample, then time
    h = p // 2
    centre_vals = vals[t_idx, :, pix[:, h, h][n_idx]]  # (R, C)
    data: dict[str, Any] = {
        "sample_id": px.sample_id[n_idx],
        "label": _take_str(px.label, n_idx),
        "date": _take_str(_format_times(times[tsel]), t_idx),
        "group": _take_str(px.group, n_idx),
        "x": (transform.c + (cols + 0.5) * transform.a)[n_idx],
        "y": (transform.f + (rows + 0.5) * transform.e)[n_idx],
        "row": rows[n_idx],
        "col": cols[n_idx],
    }
    for ci, b in enumerate(bands):
        data[b] = centre_vals[:, ci]
    if p > 1:
        flat = pix.reshape(len(pix), p * p)
        pv = vals[t_idx[:, None], :, flat[n_idx]]  # (R, p*p, C)
        pv = np.transpose(pv, (0, 2, 1)).reshape(len(n_idx), len(bands) * p * p)  # band-major
        data.update({name: pv[:, k] for k, name in enumerate(patch_columns(bands, p))})
    df = pd.DataFrame(data)
    return df.iloc[np.lexsort((t_idx, df["sample_id"].to_numpy()))].reset_index(drop=True)


def extract_samples(
    cube: xr.DataArray,
    labels: LabelSet,
    patch: int = 1,
    start: Any = None,
    end: Any = None,
) -> tuple[pd.DataFrame, ExtractionReport]:
    """Extract labelled pixel time series from the cube into a samples table.

    - **Points** give the pixel containing them; ``group`` = the pixel (``r{row}_c{col}``, so
      repeated points at one pixel stay on one side of a split), or the ``id_column`` value
      when the labels were read with one. ``sample_id`` = the label's row number.
    - **Polygons** give every pixel whose centre is inside (one sample per pixel, ids
      numbered after the point ids in feature then row-major order); ``group`` = the
      polygon's id. Overlapping polygons each get the shared pixels.
    - Only dates in ``[start, end)`` and in the feature's ``[from, to)`` are kept.
    - Patches (``patch > 1``) reaching past the raster border are padded with NaN.

    Only the needed pixels are read from the (Dask) cube, in one vectorised computation.

    Args:
        cube: A cube from :func:`cropseq.io.open_stack`.
        labels: Labels from :func:`cropseq.labels.read_labels` (any CRS; reprojected).
        patch: Patch size ``p`` (odd, >= 1).
        start: First date kept (inclusive), ISO string or datetime; None = no bound.
        end: End date (exclusive); None = no bound.

    Returns:
        ``(table, report)``: the samples table (columns ``sample_id, label, date, group, x, y,
        row, col``, the bands, then the patch columns when ``p > 1``), and what was skipped.

    Raises:
        CropseqError: bad patch size or dates, no band to extract, or no sample left.
    """
    p = check_patch(patch)
    t0, t1 = _time_bound(start, "start date"), _time_bound(end, "end date")
    if t0 is not None and t1 is not None and t1 <= t0:
        raise CropseqError(f"end date {end} is not after start date {start}")
    report = ExtractionReport(patch=p)
    cube_bands, bands = _extracted_bands(cube, labels.path, report)
    feats = labels.features
    if cube.rio.crs is not None and feats.crs is not None and not feats.crs.equals(cube.rio.crs):
        feats = feats.to_crs(cube.rio.crs)
    px = _sample_pixels(cube, feats, labels, report)
    times = cube["time"].values.astype("datetime64[ns]")
    px, M, tsel = _dated_pixels(px, feats, times, t0, t1, report, labels.path)
    df = _samples_table(cube, cube_bands, bands, px, M, tsel, p)
    report.n_samples = int(len(np.unique(px.sample_id)))
    report.n_observations = len(df)
    report.classes = sorted(set(px.label.tolist()))
    return df, report


def _extent_hint(feats: Any, transform: Any, shape: tuple[int, int], crs: Any) -> str:
    """Where the labels are vs where the stack is: the usual cause is a CRS mix-up."""
    from cropseq.io import crs_name

    def fmt(b: Sequence[float]) -> str:
        return f"x {b[0]:.10g}..{b[2]:.10g}, y {b[1]:.10g}..{b[3]:.10g}"

    h, w = shape
    xs = (transform.c, transform.c + w * transform.a)
    ys = (transform.f, transform.f + h * transform.e)
    stack_b = (min(xs), min(ys), max(xs), max(ys))
    with np.errstate(invalid="ignore"):
        lab_b = tuple(float(v) for v in feats.total_bounds)
    try:
        from rasterio.crs import CRS

        name = crs_name(CRS.from_user_input(crs)) if crs is not None else "none"
    except Exception:  # noqa: BLE001 - only a hint
        name = str(crs)
    return (
        f"labels span {fmt(lab_b)}, the stack {fmt(stack_b)} in {name}; CSV x,y must be in the stack CRS, "
        "use longitude,latitude columns for WGS84"
    )


def label_pixels(
    feats: Any, transform: Any, shape: tuple[int, int], report: ExtractionReport
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, feature index)`` of every labelled pixel; records features outside.

    Points: the pixel containing them. Polygons: the pixels whose centre is inside
    (rasterised within the polygon's bounding window, so overlapping polygons each keep
    their pixels). Shared by ``cropseq samples`` and the dense windows
    (:func:`cropseq.dense.windows.dense_labels`).

    Args:
        feats: Label features (a GeoDataFrame with ``sample_id`` and geometry) in the grid's CRS.
        transform: The grid's affine transform.
        shape: The grid's ``(height, width)``.
        report: Receives the ``sample_id`` of every feature with no pixel on the grid
            (``report.outside``).

    Returns:
        ``(rows, cols, fidx)``: int64 arrays, one entry per labelled pixel; ``fidx`` is the
        feature's position in ``feats``.
    """
    from affine import Affine
    from rasterio.features import geometry_mask

    height, width = shape
    fid = feats["sample_id"].to_numpy(dtype=np.int64)
    is_point = (feats.geometry.geom_type == "Point").to_numpy()
    rows_l: list[np.ndarray] = [np.zeros(0, np.int64)]
    cols_l: list[np.ndarray] = [np.zeros(0, np.int64)]
    feat_l: list[np.ndarray] = [np.zeros(0, np.int64)]
    inv = ~transform
    if is_point.any():
        pi = np.flatnonzero(is_point)
        geom = feats.geometry.iloc[pi]
        with np.errstate(invalid="ignore", over="ignore"):  # a point that did not reproject: inf
            colf, rowf = inv @ (geom.x.to_numpy(), geom.y.to_numpy())
            ok = np.isfinite(rowf) & np.isfinite(colf) & (np.abs(rowf) < 2**62) & (np.abs(colf) < 2**62)
            r = np.where(ok, np.floor(np.where(ok, rowf, 0)), -1).astype(np.int64)
            c = np.where(ok, np.floor(np.where(ok, colf, 0)), -1).astype(np.int64)
        inside = ok & (r >= 0) & (r < height) & (c >= 0) & (c < width)
        report.outside.extend(fid[pi[~inside]].tolist())
        rows_l.append(r[inside])
        cols_l.append(c[inside])
        feat_l.append(pi[inside])
    for k in np.flatnonzero(~is_point):
        g = feats.geometry.iloc[k]
        left, bottom, right, top = g.bounds
        if not np.isfinite([left, bottom, right, top]).all():  # did not reproject (or empty)
            report.outside.append(int(fid[k]))
            continue
        (c1, r1), (c2, r2) = inv @ (left, top), inv @ (right, bottom)
        r_a, r_b = max(int(np.floor(min(r1, r2))), 0), min(int(np.ceil(max(r1, r2))), height)
        c_a, c_b = max(int(np.floor(min(c1, c2))), 0), min(int(np.ceil(max(c1, c2))), width)
        rr = cc = np.zeros(0, np.int64)
        if r_b > r_a and c_b > c_a:
            win_transform = transform @ Affine.translation(c_a, r_a)
            inside = geometry_mask([g], out_shape=(r_b - r_a, c_b - c_a), transform=win_transform, invert=True)
            rr, cc = np.nonzero(inside)  # row-major
        if rr.size == 0:  # outside the raster, or too small to hold a pixel centre
            report.outside.append(int(fid[k]))
            continue
        rows_l.append(rr + r_a)
        cols_l.append(cc + c_a)
        feat_l.append(np.full(rr.size, k, dtype=np.int64))
    return np.concatenate(rows_l), np.concatenate(cols_l), np.concatenate(feat_l)


def _date_mask(
    times: np.ndarray, t0: np.datetime64 | None, t1: np.datetime64 | None, frm: np.ndarray, to: np.ndarray
) -> np.ndarray:
    """``(N, T)``: date t is in ``[t0, t1)`` and in sample n's ``[from, to)`` (NaT = open)."""
    tmask = np.ones(len(times), bool)
    if t0 is not None:
        tmask &= times >= t0
    if t1 is not None:
        tmask &= times < t1
    M = np.broadcast_to(tmask, (len(frm), len(times))).copy()
    has_f, has_t = ~np.isnat(frm), ~np.isnat(to)
    M[has_f] &= times[None, :] >= frm[has_f, None]
    M[has_t] &= times[None, :] < to[has_t, None]
    return M


def _read_patches(
    cube: xr.DataArray, bidx: list[int], tsel: np.ndarray, rows: np.ndarray, cols: np.ndarray, p: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read every pixel the patches need, once, with vectorised point indexing on the cube.

    Returns:
        ``vals`` ``(T, C, P + 1)`` float32 (the last column is NaN, for patch cells outside
        the raster) and ``pix`` ``(N, p, p)``: each patch cell's column in ``vals``.
    """
    import xarray as xr

    height, width = int(cube.sizes["y"]), int(cube.sizes["x"])
    off = np.arange(-(p // 2), p // 2 + 1)
    pr, pc = np.broadcast_arrays(rows[:, None, None] + off[None, :, None], cols[:, None, None] + off[None, None, :])
    valid = (pr >= 0) & (pr < height) & (pc >= 0) & (pc < width)
    uniq, inv_idx = np.unique((pr * width + pc)[valid], return_inverse=True)
    pix = np.full(pr.shape, len(uniq), dtype=np.int64)
    pix[valid] = inv_idx
    sub = cube.isel(time=tsel, band=bidx).isel(
        y=xr.DataArray(uniq // width, dims="pix"), x=xr.DataArray(uniq % width, dims="pix")
    )
    vals = np.asarray(sub.transpose("time", "band", "pix").values, dtype=np.float32)
    vals = np.concatenate([vals, np.full((*vals.shape[:2], 1), np.nan, np.float32)], axis=2)
    return vals, pix


def _take_str(values: Any, idx: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``values[idx]`` as a pandas string array.

    Taking from a small string array is much faster than building strings from a large object
    array.
    """
    return pd.array(np.asarray(values, dtype=object), dtype="str").take(idx)


def _format_times(times: np.ndarray) -> list[str]:
    # Same rule as the cube summary: dates when all are midnight, else full timestamps, so
    # two acquisitions on one day stay distinct rows.
    from cropseq.io import format_time

    return format_time(times)


# --------------------------------------------------------------------------------------
# splitting


def cap_per_group(df: pd.DataFrame, max_per_group: int, seed: int = 0, where: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Keep at most ``max_per_group`` random samples of each group (field), seeded.

    Polygon labels give one sample per pixel: a 512 x 512 px scene has ~120,000 labelled
    pixels in ~200 fields, far more (and far more redundant: neighbouring pixels of a field
    are nearly identical) than a CPU needs to train on. Capping per field keeps every field
    and every class, and a later split stays grouped.

    Args:
        df: Samples table (long form, with a ``group`` column).
        max_per_group: Samples kept per group, at most (>= 1).
        seed: Seed of the random choice.
        where: The table's path, for error messages.

    Returns:
        The rows of the kept samples, in the input order.

    Raises:
        CropseqError: no ``group`` column, or ``max_per_group < 1``.
    """
    if max_per_group < 1:
        raise CropseqError(f"--max-per-group must be >= 1, got {max_per_group}", where)
    if "group" not in df.columns:
        raise CropseqError("the samples table has no group column to cap samples per group", where)
    ids = df.drop_duplicates("sample_id")[["sample_id", "group"]]
    rng = np.random.default_rng(seed)
    keep = []
    for _, g in ids.groupby("group", sort=True):
        sid = g["sample_id"].to_numpy()
        keep.append(sid if len(sid) <= max_per_group else rng.choice(sid, size=max_per_group, replace=False))
    kept = np.concatenate(keep) if keep else np.array([], dtype=np.int64)
    return df[df["sample_id"].isin(kept)]


def assign_split(
    labels: Sequence[str] | np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Assign each sample to ``"train"``, ``"val"`` or ``"test"``, keeping groups together.

    Greedy, deterministic for a given seed: groups are visited largest first (ties in a
    seeded random order) and each goes to the split whose per-class shortfall against its
    target fraction is largest, weighted by the group's class counts. Every group lands on one
    side; class proportions follow the fractions as closely as the group sizes allow.

    Args:
        labels: Class per sample.
        groups: Group per sample (field/pixel id).
        val_fraction: Target share of samples in validation.
        test_fraction: Target share in test (0: no test split).
        seed: Random seed for tie-breaking.

    Returns:
        ``(N,)`` array of ``"train"``/``"val"``/``"test"``.

    Raises:
        CropseqError: fractions out of range.
    """
    for name, f in (("val fraction", val_fraction), ("test fraction", test_fraction)):
        if not 0.0 <= float(f) < 1.0:
            raise CropseqError(f"{name} must be in [0, 1), not {f}")
    if val_fraction + test_fraction >= 1.0:
        raise CropseqError(f"val + test fractions ({val_fraction} + {test_fraction}) leave nothing to train on")
    y_names, y = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    _, g = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    n_g, n_k = int(g.max()) + 1 if len(g) else 0, len(y_names)
    counts = np.zeros((n_g, n_k))
    np.add.at(counts, (g, y), 1.0)
    totals = np.maximum(counts.sum(axis=0), 1.0)
    fr = np.array([1.0 - val_fraction - test_fraction, val_fraction, test_fraction])
    active = fr > 0
    target = fr[:, None] * counts.sum(axis=0)[None, :]
    assigned = np.zeros((3, n_k))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_g)
    order = perm[np.argsort(-counts[perm].sum(axis=1), kind="stable")]
    where_g = np.zeros(n_g, dtype=np.int64)
    for gi in order:
        c = counts[gi]
        score = ((target - assigned) * c[None, :] / totals[None, :]).sum(axis=1)
        score[~active] = -np.inf
        s = int(np.argmax(score))
        where_g[gi] = s
        assigned[s] += c
    return np.array(["train", "val", "test"], dtype=object)[where_g[g]].astype(str)


def grouped_stratified_split(
    df: pd.DataFrame,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split a samples table into train/val/test by sample, keeping groups on one side.

    Groups come from the ``group`` column (default: each sample its own group); see
    :func:`assign_split` for the method.

    Args:
        df: A labelled samples table.
        val_fraction: Target share of samples in validation.
        test_fraction: Target share in test (0: the test table is empty).
        seed: Random seed.

    Returns:
        ``(train, val, test)`` tables (rows in the input order).
    """
    validate_samples(df)
    per = df.drop_duplicates("sample_id")
    groups = per["group"] if "group" in per.columns else per["sample_id"]
    side = assign_split(per["label"].to_numpy(), groups.to_numpy(), val_fraction, test_fraction, seed)
    by_sample = pd.Series(side, index=per["sample_id"].to_numpy())
    row_side = by_sample.reindex(df["sample_id"].to_numpy()).to_numpy()
    return tuple(df[row_side == s].reset_index(drop=True) for s in ("train", "val", "test"))
