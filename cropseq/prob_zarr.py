"""The class-probabilities cube as a CF-compliant Zarr store, written chunk by chunk.

Layout (``xarray.open_zarr(P)`` gives it back; ``.rio.crs`` works through ``spatial_ref``)::

    probabilities (class, y, x) float32, NaN = nodata, grid_mapping = "spatial_ref"
    class         (class)       int class codes, with class_name / class_color coords
    y, x          pixel-centre coordinates in the map's CRS (CF standard names)
    spatial_ref   scalar with the CRS as CF grid-mapping attributes and crs_wkt/GeoTransform

The store is created empty (metadata only, no data written) under a hidden part name beside
its final path; blocks are written into it as they are predicted (:meth:`write`, under the
caller's lock: a block may straddle two Zarr chunks); :meth:`finish` consolidates the
metadata and :class:`cropseq.outputs.CropMapWriter` renames it into place with the maps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from cropseq.classes import ClassTable


class ProbabilityZarr:
    """A Zarr probabilities cube being written (see the module docs).

    Args:
        path: Where the store is created (a part name; renamed later by the caller).
        grid: The map's grid (``width``, ``height``, ``transform``, ``crs``).
        classes: The class table (one ``class`` entry per class, in probability order).
        chunk: Zarr chunk edge in pixels (the prediction's chunk size).
    """

    def __init__(self, path: str | os.PathLike[str], grid: Any, classes: ClassTable, chunk: int = 512) -> None:
        import rioxarray  # noqa: F401  (registers the .rio accessor)

        self.path = Path(path)
        t = grid.transform
        k = len(classes)
        chunk = max(16, min(int(chunk), max(grid.width, grid.height)))
        data = da.full((k, grid.height, grid.width), np.nan, dtype=np.float32, chunks=(k, chunk, chunk))
        ds = xr.Dataset(
            {"probabilities": (("class", "y", "x"), data, {"long_name": "class probability", "units": "1",
                                                            "valid_min": 0.0, "valid_max": 1.0})},
            coords={
                "class": ("class", np.asarray(classes.codes, np.int32), {"long_name": "class code"}),
                "class_name": ("class", np.asarray(classes.names, dtype=str)),
                "class_color": ("class", np.asarray([c.color for c in classes.classes], dtype=str)),
                "y": ("y", t.f + (np.arange(grid.height) + 0.5) * t.e),
                "x": ("x", t.c + (np.arange(grid.width) + 0.5) * t.a),
            },
            attrs={"Conventions": "CF-1.8", "title": "cropseq class probabilities"},
        )
        if grid.crs is not None:
            ds = ds.rio.write_crs(grid.crs)  # CF grid mapping in spatial_ref + grid_mapping attr
        ds = ds.rio.write_transform(t)
        ds["probabilities"].encoding["_FillValue"] = np.float32(np.nan)
        # xarray leaves a coordinate named by grid_mapping out of "coordinates", so plain
        # open_zarr would read spatial_ref back as a data variable and .rio.crs as None.
        ds["probabilities"].encoding["coordinates"] = "class_name class_color spatial_ref"
        # Zarr v2: readable by GDAL's Zarr driver and older zarr/xarray alike.
        ds.to_zarr(self.path, mode="w", compute=False, consolidated=True, zarr_format=2)
        import zarr

        array = zarr.open_group(str(self.path), mode="r+")["probabilities"]
        assert isinstance(array, zarr.Array)  # written just above as a variable, not a group
        self._array = array

    def write(self, row_off: int, col_off: int, probs: np.ndarray) -> None:
        """Write ``(K, h, w)`` probabilities at pixel offset ``(row_off, col_off)``."""
        _, h, w = probs.shape
        self._array[:, row_off : row_off + h, col_off : col_off + w] = np.asarray(probs, np.float32)

    def finish(self) -> None:
        """Consolidate the metadata (the data were written in place)."""
        import zarr

        zarr.consolidate_metadata(str(self.path))


__all__ = ["ProbabilityZarr"]
