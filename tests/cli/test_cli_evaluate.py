"""``cropseq evaluate``: happy paths (samples, map) and one-line user errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cropseq.cli import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny labelled table and a RandomForest trained on it."""
    from cropseq.baseline import train_random_forest
    from cropseq.samples import read_samples, table_to_arrays, write_samples

    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    rows = []
    for s in range(24):
        k = s % 3
        for t in range(4):
            rows.append(
                {
                    "sample_id": s,
                    "label": ["Forest", "Maize", "Soy"][k],
                    "date": f"2021-0{t + 1}-15",
                    "red": rng.normal() + 3 * k,
                    "nir": rng.normal(),
                }
            )
    table = write_samples(pd.DataFrame(rows), root / "samples.csv")
    model = root / "rf.skops"
    train_random_forest(table_to_arrays(read_samples(table)), model, n_estimators=10, n_jobs=1)
    return root, table, model


def test_evaluate_samples_writes_metrics_and_default_plot(tiny, capsys) -> None:
    root, table, model = tiny
    out = root / "metrics.json"
    assert main(["evaluate", "--model", str(model), "--samples", str(table), "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["n"] == 24 and m["labels"] == ["Forest", "Maize", "Soy"] and m["overall_accuracy"] == 1.0
    assert m["model_kind"] == "rf" and "rows = reference" in m["confusion_matrix_axes"]
    assert (root / "metrics.confusion.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "OA=1.0000" in printed and "kappa=" in printed and "macro F1=" in printed


def test_evaluate_map_against_truth_raster(tiny, tmp_path) -> None:
    import rasterio
    from affine import Affine

    _, _, model = tiny
    grid = {"driver": "GTiff", "height": 2, "width": 3, "count": 1, "dtype": "uint8", "nodata": 0,
            "crs": "EPSG:32633", "transform": Affine(10, 0, 0, 0, -10, 20)}  # fmt: skip
    with rasterio.open(tmp_path / "map.tif", "w", **grid) as ds:  # no class table: the model's is used
        ds.write(np.array([[1, 2, 3], [1, 1, 0]], np.uint8), 1)
    with rasterio.open(tmp_path / "truth.tif", "w", **grid) as ds:
        ds.write(np.array([[1, 2, 3], [2, 0, 1]], np.uint8), 1)
    out, plot = tmp_path / "m.json", tmp_path / "cm.png"
    argv = ["evaluate", "--model", str(model), "--map", str(tmp_path / "map.tif"),
            "--truth", str(tmp_path / "truth.tif"), "--out", str(out), "--plot", str(plot)]  # fmt: skip
    assert main(argv) == 0
    m = json.loads(out.read_text())
    assert m["n"] == 4 and m["n_unclassified"] == 1 and m["overall_accuracy"] == pytest.approx(0.75)
    assert m["labels"] == ["Forest", "Maize", "Soy"] and plot.is_file()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--model", "{root}/missing.skops", "--samples", "{table}"], "model file not found"),
        (["--model", "{model}"], "exactly one of --samples or --map"),
        (["--model", "{model}", "--samples", "{table}", "--map", "{root}/m.tif", "--truth", "{table}"],
         "exactly one of --samples or --map"),
        (["--map", "{root}/m.tif"], "--map needs --truth"),
        (["--model", "{model}", "--samples", "{root}/nope.csv"], "samples table not found"),
        (["--samples", "{table}"], "--samples needs --model"),
    ],
)
def test_user_errors_exit_2_with_one_line(tiny, capsys, argv, needle) -> None:
    root, table, model = tiny
    args = [a.format(root=root, table=table, model=model) for a in argv]
    rc = main(["evaluate", *args, "--out", str(root / "err.json")])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (root / "err.json").exists()


@pytest.mark.e2e
def test_evaluate_deep_checkpoint_through_the_same_path(tiny, tmp_path) -> None:
    training = pytest.importorskip("cropseq.training")
    from cropseq.samples import read_samples, table_to_arrays

    _, table, _ = tiny
    arrays = table_to_arrays(read_samples(table))
    cfg = training.TrainConfig(epochs=1, hidden_size=8, encoder_width=8, encoder_dim=8, plot="", threads=1)
    model = tmp_path / "deep.pt"
    training.train_model(arrays, None, cfg, model, progress=False)
    out = tmp_path / "deep.json"
    assert main(["evaluate", "--model", str(model), "--samples", str(table), "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["model_kind"] == "deep" and m["n"] == 24 and len(m["confusion_matrix"]) == 3
