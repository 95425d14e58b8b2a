"""RandomForest baseline: training, skops round trip, safe loading, predictor protocol."""

from __future__ import annotations

import numpy as np
import pytest

from cropseq.baseline import RandomForestPredictor, train_random_forest
from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.predictor import Predictor, load_predictor
from cropseq.sequences import SequenceArrays


def _arrays(n: int = 36, t: int = 5, c: int = 2, p: int = 1, seed: int = 0) -> SequenceArrays:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, t, c, p, p)).astype(np.float32)
    x[:, :, 0] += 2.5 * y[:, None, None, None]
    x[rng.random(x.shape) < 0.1] = np.nan  # clouds
    return SequenceArrays(
        x=x,
        doy=np.tile(np.arange(t, dtype=np.float32) * 16 + 1, (n, 1)),
        present=np.ones((n, t), bool),
        bands=["red", "nir", "swir", "blue"][:c],
        labels=np.array(["Cerrado", "Forest", "Soy"])[y],
    )


@pytest.fixture(scope="module")
def rf_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rf") / "model.skops"
    rf = train_random_forest(_arrays(), path, n_estimators=12, seed=3, n_jobs=1)
    return rf, path


def test_round_trip_gives_identical_probabilities(rf_file) -> None:
    rf, path = rf_file
    loaded = load_predictor(path)
    assert isinstance(loaded, RandomForestPredictor) and isinstance(loaded, Predictor)
    assert loaded.kind == "rf" and loaded.patch == 1 and loaded.bands == ["red", "nir"]
    assert loaded.classes == rf.classes and loaded.n_steps == 5
    test = _arrays(seed=9)
    a = rf.predict_proba(test.x, test.doy)
    b = loaded.predict_proba(test.x, test.doy, batch_size=7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (36, 3) and a.dtype == np.float32
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-5)
    assert loaded.meta["training"]["n_samples"] == 36


def test_training_is_reproducible_for_a_seed(tmp_path) -> None:
    a = train_random_forest(_arrays(), None, n_estimators=8, seed=1, n_jobs=1)
    b = train_random_forest(_arrays(), None, n_estimators=8, seed=1, n_jobs=1)
    x = _arrays(seed=5).x
    np.testing.assert_array_equal(a.predict_proba(x, None), b.predict_proba(x, None))


def test_predict_image_equals_predict_proba_on_the_same_pixels(rf_file) -> None:
    rf, _ = rf_file
    rng = np.random.default_rng(4)
    t, c, h, w = 5, 2, 3, 4
    image = rng.normal(size=(t, c, h, w)).astype(np.float32)
    image[0, 1, 0, 0] = np.nan
    proba_img = rf.predict_image(image, np.arange(t, dtype=np.float32))
    seqs = image.transpose(2, 3, 0, 1).reshape(h * w, t, c)[..., None, None]
    proba_seq = rf.predict_proba(seqs, None)
    assert proba_img.shape == (3, h, w)
    np.testing.assert_array_equal(proba_img.reshape(3, -1).T, proba_seq)
    mask = np.zeros((h, w), bool)
    mask[0, 0] = mask[2, 1:] = True
    masked = rf.predict_image(image, None, mask=mask)
    np.testing.assert_array_equal(masked[:, mask], proba_img[:, mask])
    assert np.isnan(masked[:, ~mask]).all()


def test_other_lengths_and_patches_are_aligned(rf_file) -> None:
    rf, _ = rf_file
    x = _arrays(t=5, p=3, seed=2).x
    centre = x[:, :, :, 1:2, 1:2]
    np.testing.assert_array_equal(rf.predict_proba(x, None), rf.predict_proba(centre, None))
    longer = np.concatenate([centre, centre[:, :2]], axis=1)  # first T steps are used
    np.testing.assert_array_equal(rf.predict_proba(longer, None), rf.predict_proba(centre, None))
    shorter = centre[:, :3]  # padded: missing steps take the training fill values
    f = rf.features(shorter)
    assert f.shape == (36, 10) and np.isfinite(f).all()
    np.testing.assert_array_equal(f[:, 6:].reshape(36, 2, 2), np.broadcast_to(rf.fill[3:], (36, 2, 2)))


def test_class_missing_from_training_gets_a_zero_column() -> None:
    classes = ClassTable.from_names(["Cerrado", "Forest", "Pasture", "Soy"])
    rf = train_random_forest(_arrays(), None, classes=classes, n_estimators=5, n_jobs=1)
    p = rf.predict_proba(_arrays(seed=1).x, None)
    assert p.shape == (36, 4) and (p[:, 2] == 0).all()
    bad = ClassTable.from_names(["Forest", "Soy"])
    with pytest.raises(CropseqError, match="Cerrado"):
        train_random_forest(_arrays(), None, classes=bad, n_estimators=5, n_jobs=1)


def test_untrusted_types_are_refused(tmp_path, rf_file) -> None:
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    _, good = rf_file
    obj = sio.load(good, trusted=["sklearn.tree._tree.Tree"])
    obj["model"] = FunctionTransformer(np.sum)  # numpy.sum: a callable, never trusted
    bad = tmp_path / "evil.skops"
    sio.dump(obj, bad)
    with pytest.raises(CropseqError, match="untrusted") as e:
        load_predictor(bad)
    assert "numpy.sum" in str(e.value) and str(bad) in str(e.value)


def test_bad_files_are_clear_errors(tmp_path) -> None:
    import skops.io as sio

    not_zip = tmp_path / "junk.skops"
    not_zip.write_text("hello")
    with pytest.raises(CropseqError, match="not a readable skops"):
        RandomForestPredictor.load(not_zip)
    other = tmp_path / "other.skops"
    sio.dump({"format": "something-else"}, other)
    with pytest.raises(CropseqError, match="not a cropseq RandomForest"):
        RandomForestPredictor.load(other)
    with pytest.raises(CropseqError, match="not found"):
        load_predictor(tmp_path / "missing.skops")
    with pytest.raises(CropseqError, match=r"\.skops"):
        train_random_forest(_arrays(), tmp_path / "model.pt", n_estimators=2, n_jobs=1)
