"""Uncertainty measures (cropseq.uncertainty) and their COG / Zarr outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from _predictor_double import make_cube, make_predictor

from cropseq.errors import CropseqError
from cropseq.inference import predict_cube, run_prediction
from cropseq.uncertainty import check_measures, uncertainty


def test_measures_on_known_probabilities() -> None:
    p = np.array([[1 / 3, 1.0, 0.5, np.nan], [1 / 3, 0.0, 0.3, np.nan], [1 / 3, 0.0, 0.2, np.nan]], np.float32)[:, None, :]
    ent, mar, least = (uncertainty(p, m)[0] for m in ("entropy", "margin", "least"))
    np.testing.assert_allclose(ent[:3], [1.0, 0.0, -(0.5 * np.log(0.5) + 0.3 * np.log(0.3) + 0.2 * np.log(0.2)) / np.log(3)], rtol=1e-5)
    np.testing.assert_allclose(mar[:3], [1.0, 0.0, 0.8], rtol=1e-5)
    np.testing.assert_allclose(least[:3], [2 / 3, 0.0, 0.5], rtol=1e-5)
    assert np.isnan(ent[3]) and np.isnan(mar[3]) and np.isnan(least[3])
    assert ent.dtype == np.float32


def test_unknown_measure() -> None:
    with pytest.raises(CropseqError, match="unknown uncertainty measure 'variance'"):
        check_measures(["entropy", "variance"])
    assert check_measures(["margin", "margin", "least"]) == ("margin", "least")


def test_lazy_dataset_has_measures() -> None:
    ds = predict_cube(make_cube(dask_chunks=16), make_predictor(), chunk=16, min_valid=1, uncertainty_measures=("entropy",))
    e = ds["entropy"].values
    ok = ds["class"].values != 0
    assert e.dtype == np.float32 and np.all((e[ok] >= 0) & (e[ok] <= 1)) and np.isnan(e[~ok]).all()


def test_uncertainty_cogs_and_probability_zarr(tmp_path: Path) -> None:
    import rioxarray  # noqa: F401
    import xarray as xr

    cube = make_cube(ny=40, nx=36, seed=4)
    out = tmp_path / "map.tif"
    res = run_prediction(make_predictor(), cube, out, workers=0, chunk=16, min_valid=1,
                         uncertainty=["entropy", "margin", "least"], probabilities_zarr=tmp_path / "p.zarr")
    o = res.outputs
    assert set(o.uncertainty) == {"entropy", "margin", "least"}
    for m, p in o.uncertainty.items():
        assert p == tmp_path / f"map.{m}.tif" and (tmp_path / f"map.{m}.qml").is_file()
        with rasterio.open(p) as src:
            assert src.dtypes[0] == "float32" and np.isnan(src.nodata)
            assert src.descriptions[0].startswith(m) and src.units[0] == "1"
    # plain xarray + rioxarray: the CRS comes back through spatial_ref
    z = xr.open_zarr(tmp_path / "p.zarr")
    assert z.rio.crs.to_epsg() == 32633
    assert z["probabilities"].dims == ("class", "y", "x") and list(z["class"].values) == [3, 7, 9]
    assert z.rio.transform() == cube.rio.transform()
    probs = z["probabilities"].values
    with rasterio.open(o.uncertainty["least"]) as src:
        np.testing.assert_allclose(src.read(1), 1 - probs.max(axis=0), rtol=1e-6, equal_nan=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no part files left
