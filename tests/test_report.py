"""The report's map products: map, confidence, uncertainty and error map side by side with
one legend; the scene's RGB composite and valid pixels per date; the parcel map and its
score. (The rest of the report builder is tested in tests/e2e/test_workflow.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cropseq.cli import main


def test_error_map_compares_class_names_not_codes():
    from cropseq.report import error_map

    m = np.array([[1, 2, 0], [2, 1, 1]])
    t = np.array([[5, 5, 5], [0, 6, 6]])  # the truth's own codes: 5 = wheat, 6 = maize
    out = error_map(m, t, {1: "wheat", 2: "maize"}, {5: "wheat", 6: "maize"})
    assert out.tolist() == [[1, 2, 0], [3, 2, 2]]  # right, wrong, unclassified / no reference, wrong, wrong


@pytest.fixture(scope="module")
def products(tmp_path_factory) -> dict[str, Path]:
    """A simulated scene, a map made from its truth, entropy, and its parcel map."""
    from cropseq.classes import ClassTable
    from cropseq.outputs import write_crop_map
    from cropseq.simulate import simulate_scene

    d = tmp_path_factory.mktemp("report")
    info = simulate_scene(d / "sim", size=32, n_dates=8, seed=0)
    with rasterio.open(info.truth) as src:
        truth = src.read(1)
        transform, crs = src.transform, src.crs
    cls = truth.copy()
    cls[::7, ::5] = 1  # some errors
    conf = np.where(cls == truth, 0.9, 0.4).astype(np.float32)
    write_crop_map(d / "map.tif", cls, transform, crs, ClassTable.from_yaml(d / "sim" / "classes.yaml"),
                   confidence=conf, confidence_path=d / "map.confidence.tif")
    with rasterio.open(d / "map.entropy.tif", "w", driver="GTiff", width=32, height=32, count=1, dtype="float32",
                       transform=transform, crs=crs) as dst:
        dst.write(1.0 - conf, 1)
    assert main(["parcels", "--map", str(d / "map.tif"), "--parcels", str(info.test_fields), "--truth",
                 str(info.test_truth), "--out", str(d / "parcels.gpkg")]) == 0
    return {"dir": d, "stack": info.stack, "test_truth": info.test_truth}


@pytest.mark.e2e
def test_report_shows_panels_scene_and_parcels(products):
    d = products["dir"]
    out = d / "r.html"
    rc = main(["report", "--out", str(out), "--map", str(d / "map.tif"), "--confidence", str(d / "map.confidence.tif"),
               "--uncertainty", str(d / "map.entropy.tif"), "--truth", str(products["test_truth"]),
               "--stack", str(products["stack"]), "--parcels", str(d / "parcels.tif"),
               "--parcels-metrics", str(d / "parcels.json"), "--preview-size", "128"])
    assert rc == 0
    html = out.read_text()
    for alt in ("map panels", "RGB composite", "valid pixels per date", "parcel map", "crop map preview"):
        assert f'alt="{alt}"' in html, alt
    assert "map, confidence, uncertainty, errors against the reference: one extent, one legend" in html
    assert "RGB composite (bands B04, B03, B02)" in html
    m = json.loads((d / "parcels.json").read_text())
    assert re.search(rf"Majority class right for <b>{m['right']} of {m['scored']}</b> reference parcels", html)
    assert '<section id="scene"><h2>The image</h2>' in html and '<section id="parcels"><h2>Parcel map</h2>' in html


@pytest.mark.e2e
def test_valid_share_per_date_and_rgb_bands(products):
    from cropseq.io import open_stack
    from cropseq.report import rgb_and_valid_previews

    rgb, valid, note = rgb_and_valid_previews(products["stack"], max_size=16)
    assert rgb[:4] == valid[:4] == b"\x89PNG"
    assert note == "bands B04, B03, B02; every 2th pixel in each direction"
    cube = open_stack(products["stack"])
    share = np.isfinite(cube.sel(band=["B04", "B03", "B02"]).values).all(axis=1).mean(axis=(1, 2))
    assert share.min() < share.max()  # clouds: the dates differ, which the bar chart shows


def test_missing_product_input_is_one_line_error(tmp_path, capsys):
    rc = main(["report", "--out", str(tmp_path / "r.html"), "--stack", str(tmp_path / "nope.yaml")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "image stack not found" in err
