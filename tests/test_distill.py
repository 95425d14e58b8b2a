"""``cropseq distill``: a small student trained on a teacher's probabilities is a normal cropseq model."""

from __future__ import annotations

from pathlib import Path

import pytest
import rasterio
from _data_fixtures import assert_user_error, run_cli, small_deep_scene, tiny_models

pytestmark = pytest.mark.e2e  # trains a teacher and a student: the e2e tier


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return small_deep_scene(tmp_path_factory)


def test_distill_writes_a_model_predict_maps(scene: dict[str, Path], tmp_path: Path) -> None:
    """The student checkpoint loads as any model, is small, records its teacher, and maps the scene."""
    from cropseq.predictors import load_predictor

    student = tmp_path / "student.pt"
    res = run_cli(["distill", "--teacher", scene["model"], "--stack", scene["stack"], "--out", student,
                   "--pixels", "400", "--epochs", "3", "-q"])  # fmt: skip
    assert res.rc == 0, res
    assert "agreement with the teacher" in res.out
    pred = load_predictor(student, device="cpu")
    teacher = load_predictor(scene["model"], device="cpu")
    assert pred.model.arch.hidden_size == 32 and pred.model.arch.num_layers == 1
    assert pred.bands == teacher.bands and pred.classes.codes == teacher.classes.codes and pred.patch == teacher.patch
    record = pred.meta["training"]["distillation"]
    assert record["teacher"] == str(scene["model"]) and record["pixels_sampled"] == 400
    out = tmp_path / "map.tif"
    res = run_cli(["predict", "--model", student, "--stack", scene["stack"], "--out", out, "--workers", "0", "-q", "--no-stac"])
    assert res.rc == 0, res
    with rasterio.open(out) as src:
        classes = src.read(1)
    assert (classes > 0).mean() > 0.5 and len(set(classes[classes > 0].tolist())) > 2


def test_distill_is_seeded(scene: dict[str, Path], tmp_path: Path) -> None:
    """The same seed gives the same student (pixel sample, hold-out, initialisation, shuffles)."""
    import torch

    from cropseq.distill import DistillConfig, distill

    cfg = DistillConfig(pixels=200, epochs=1, threads=1)
    a = distill(scene["model"], scene["stack"], tmp_path / "a.pt", cfg)
    b = distill(scene["model"], scene["stack"], tmp_path / "b.pt", cfg)
    sa = torch.load(a.path, weights_only=True)["state_dict"]
    sb = torch.load(b.path, weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.agreement == b.agreement


def test_distill_errors_are_one_line(scene: dict[str, Path], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A missing teacher, a file that is not a cropseq model, a RandomForest teacher: one line, nothing written."""
    out = tmp_path / "student.pt"
    base = ["distill", "--stack", scene["stack"], "--out", out, "-q"]
    assert_user_error(run_cli([*base, "--teacher", tmp_path / "none.pt"]), "model file not found", outputs=[out])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert_user_error(run_cli([*base, "--teacher", junk]), str(junk), outputs=[out])
    rf = tiny_models(tmp_path_factory)["rf"]
    assert_user_error(run_cli([*base, "--teacher", rf]), "deep model", outputs=[out])


def test_distill_sequences_takes_the_callers_pixels(scene: dict[str, Path], tmp_path: Path) -> None:
    """Given sequences (e.g. every pixel over several seasons) the student learns from those;
    sequences the teacher cannot read are one clear error, nothing written."""
    import numpy as np

    from cropseq.distill import DistillConfig, distill_sequences, sample_scene_pixels
    from cropseq.errors import CropseqError
    from cropseq.inference.season import day_of_year, select_bands
    from cropseq.io import open_stack
    from cropseq.predictors import load_predictor

    teacher = load_predictor(scene["model"], device="cpu")
    cube = select_bands(open_stack(scene["stack"]), teacher.bands)
    cfg = DistillConfig(epochs=2, threads=1)
    x = sample_scene_pixels(cube, teacher.patch, 300, cfg)
    doy = np.broadcast_to(day_of_year(cube), x.shape[:2]).astype(np.float32)
    res = distill_sequences(scene["model"], x, doy, tmp_path / "s.pt", cfg, source="test pixels")
    record = load_predictor(res.path, device="cpu").meta["training"]["distillation"]
    assert res.pixels == len(x) == record["pixels_sampled"] and record["stack"] == "test pixels"
    assert 0.0 <= res.agreement <= 1.0
    with pytest.raises(CropseqError, match="do not fit the teacher"):
        distill_sequences(scene["model"], x[:, :, :1], doy, tmp_path / "bad.pt", cfg)
    assert not (tmp_path / "bad.pt").exists()
