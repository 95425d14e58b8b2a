"""Acceptance on real data: the eo-learn Slovenia patch (issue 13).

The NDVI stack opens with its cloud mask given by value (``clm_68dates.tif``, 1 = cloud),
``inspect`` shows it, and a map trained on the west half of ``lulc.tif`` is scored on the
east half, for the deep model and the RandomForest (``benchmarks/slovenia.py`` is the same
chain with a printed table).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from _paths import REPO


def _benchmark() -> ModuleType:
    """``benchmarks/slovenia.py`` (a script, loaded by path: the same chain as the test)."""
    spec = importlib.util.spec_from_file_location("slovenia_benchmark", REPO / "benchmarks" / "slovenia.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def slovenia(shared_data: Path) -> Path:
    conv = shared_data / "eolearn_testeopatch_slovenia" / "converted"
    if not (conv / "ndvi_68dates.tif").is_file():
        pytest.skip("eo-learn Slovenia data absent")
    return conv


@pytest.mark.realdata
def test_slovenia_opens_with_value_mask_and_inspect_shows_it(slovenia: Path, tmp_path: Path) -> None:
    import rasterio
    from _data_fixtures import run_cli

    stack, _, _ = _benchmark().write_inputs(tmp_path, slovenia)
    res = run_cli(["inspect", stack, "--json"])
    assert res.rc == 0, res
    import json

    s = json.loads(res.out)
    with rasterio.open(slovenia / "clm_68dates.tif") as src:
        cloudy = float((src.read() == 1).mean())
    assert len(s["dates"]) == 68 and s["bands"] == ["NDVI"]
    # 2015-12-08 holds two acquisitions (10:04 and 10:11): both kept, in time order.
    assert [d for d in s["dates"] if d.startswith("2015-12-08")] == ["2015-12-08T10:04:09", "2015-12-08T10:11:25"]
    assert s["missing_fraction"]["NDVI"] == pytest.approx(cloudy) and 0.3 < cloudy < 0.5
    v = s["value_stats"]["NDVI"]
    assert -0.2 < v["min"] < v["p1"] < v["p99"] < v["max"] < 0.9 and s["value_warnings"] == []


@pytest.mark.slow
@pytest.mark.realdata
def test_slovenia_map_trained_west_scored_east(slovenia: Path, tmp_path: Path) -> None:
    result = _benchmark().run(tmp_path, slovenia, epochs=15)
    assert result["samples"] == {"train_px": 4936, "patches": 47}
    for name, m in result["models"].items():
        # Every labelled east-half pixel scored (9945 labelled - 4936 west), none unclassified.
        assert m["n"] == 5009 and m["n_unclassified"] == 0, name
        assert m["overall_accuracy"] > 0.85 and m["kappa"] > 0.6, (name, m["overall_accuracy"], m["kappa"])
        assert np.isfinite(m["macro_f1"]), name
