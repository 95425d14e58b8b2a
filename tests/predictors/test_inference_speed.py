"""CPU inference engines (``cropseq predict --engine``) and the ONNX export (``cropseq export --onnx``).

Every engine must give (almost) the map of the float32 torch model: the adoption rule of
``benchmarks/inference_speed.py`` is >= 99.9 % of map pixels identical. Checked on a small
model trained here on a simulated scene (speed is the benchmark's business, not a test's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from _data_fixtures import assert_user_error, run_cli, small_deep_scene, tiny_models

pytestmark = pytest.mark.e2e  # trains a small BiGRU on a simulated scene first: the e2e tier


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return small_deep_scene(tmp_path_factory)


def scene_image(stack: Path) -> tuple[np.ndarray, np.ndarray]:
    """The whole scene with a 1 px NaN halo, and its day of year."""
    from cropseq.inference import day_of_year
    from cropseq.io import open_stack

    cube = open_stack(stack).load()
    return np.pad(cube.values.astype(np.float32), ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=np.nan), day_of_year(cube)


def identical_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels whose most probable class agrees (NaN pixels: none here)."""
    return float((a.argmax(0) == b.argmax(0)).mean())


@pytest.mark.parametrize("engine", ["bf16", "int8"])
def test_engine_map_matches_float32(scene: dict[str, Path], engine: str) -> None:
    """bf16 autocast and int8 dynamic quantisation change only near-ties of the float32 map.

    This 8-epoch model has more near-ties than a trained one: 1-2 of its 1,024 pixels
    (99.8-99.9 %) flip, each with a float32 top-2 margin under 0.006; the demo's trained
    model keeps 99.94-100 % (benchmarks/inference_speed.py).
    """
    from cropseq.predictors import load_predictor

    image, doy = scene_image(scene["stack"])
    ref = load_predictor(scene["model"], device="cpu").predict_image(image, doy)
    fast = load_predictor(scene["model"], device="cpu", engine=engine)
    got = fast.predict_image(image, doy)
    assert fast.engine == engine
    dp = float(np.abs(got - ref).max())
    assert dp < 0.05
    top2 = np.sort(ref, axis=0)[-2:]
    flipped = got.argmax(0) != ref.argmax(0)
    assert ((top2[1] - top2[0])[flipped] <= 2 * dp).all()  # only near-ties flip
    assert identical_share(got, ref) >= 0.998


def test_predict_engine_int8_cli(scene: dict[str, Path], tmp_path: Path) -> None:
    """`cropseq predict --engine int8` writes the map the float32 engine writes."""
    maps = {}
    for engine in ("torch", "int8"):
        out = tmp_path / f"{engine}.tif"
        res = run_cli(["predict", "--model", scene["model"], "--stack", scene["stack"], "--out", out, "--engine", engine,
                       "--workers", "0", "--device", "cpu", "-q", "--no-stac"])  # fmt: skip
        assert res.rc == 0, res
        with rasterio.open(out) as src:
            maps[engine] = src.read(1)
    assert (maps["int8"] == maps["torch"]).mean() >= 0.999


def test_engine_errors_are_one_line(scene: dict[str, Path], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No ONNX export, an engine for a forest, a CPU engine on a GPU: one line each, no map."""
    from cropseq.errors import CropseqError
    from cropseq.predictors import check_engine

    out = tmp_path / "m.tif"
    base = ["predict", "--stack", scene["stack"], "--out", out, "--workers", "0", "-q"]
    res = run_cli([*base, "--model", scene["model"], "--engine", "onnx", "--device", "cpu"])
    assert_user_error(res, "cropseq export", "--onnx", outputs=[out])
    rf = tiny_models(tmp_path_factory)["rf"]
    res = run_cli(["predict", "--stack", tiny_models(tmp_path_factory)["stack"], "--out", out, "--workers", "0", "-q",
                   "--model", rf, "--engine", "int8"])  # fmt: skip
    assert_user_error(res, "deep models", outputs=[out])
    with pytest.raises(CropseqError, match="runs on the CPU"):
        check_engine("int8", "cuda")
    res = run_cli(["export", rf, "--onnx", tmp_path / "rf.onnx", "--dates", "4"])
    assert_user_error(res, "only deep models", outputs=[tmp_path / "rf.onnx"])
    res = run_cli(["export", tmp_path / "missing.pt", "--onnx", tmp_path / "x.onnx", "--dates", "4"])
    assert_user_error(res, "model file not found")


@pytest.mark.slow  # tracing the model for ONNX takes ~1 min on 2 shared cores
def test_onnx_export_reproduces_torch(scene: dict[str, Path], tmp_path: Path) -> None:
    """The exported graph gives the torch probabilities; --engine onnx maps with it; stale exports are refused."""
    import json
    import shutil

    import onnxruntime as ort

    from cropseq.predictors import load_predictor

    model = tmp_path / "model.pt"
    shutil.copy(scene["model"], model)
    res = run_cli(["export", model, "--onnx", tmp_path / "model.onnx", "--dates", "8"])
    assert res.rc == 0, res
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["cropseq.meta_json"])
    torch_pred = load_predictor(model, device="cpu")
    assert meta["bands"] == torch_pred.bands
    image, doy = scene_image(scene["stack"])
    win = np.lib.stride_tricks.sliding_window_view(image, (3, 3), axis=(2, 3))  # (T, C, H, W, 3, 3)
    x = np.ascontiguousarray(win[:, :, :8, :].reshape(*win.shape[:2], -1, 3, 3).transpose(2, 0, 1, 3, 4))
    d = np.broadcast_to(doy, x.shape[:2]).astype(np.float32)
    x[::7, 2] = np.nan  # clouds
    got = session.run(None, {"x": x, "doy": d})[0]
    np.testing.assert_allclose(got, torch_pred.predict_proba(x, d), atol=1e-4)
    onnx_pred = load_predictor(model, device="cpu", engine="onnx")
    assert identical_share(onnx_pred.predict_image(image, doy), torch_pred.predict_image(image, doy)) >= 0.999
    out = tmp_path / "onnx.tif"
    res = run_cli(["predict", "--model", model, "--stack", scene["stack"], "--out", out, "--engine", "onnx",
                   "--workers", "0", "--device", "cpu", "-q", "--no-stac"])  # fmt: skip
    assert res.rc == 0, res
    model.write_bytes(model.read_bytes() + b"\0")  # another checkpoint under the same name
    res = run_cli(["predict", "--model", model, "--stack", scene["stack"], "--out", tmp_path / "stale.tif",
                   "--engine", "onnx", "--workers", "0", "--device", "cpu", "-q"])  # fmt: skip
    assert_user_error(res, "another version", outputs=[tmp_path / "stale.tif"])
