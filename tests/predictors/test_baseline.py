"""RandomForest baseline: training, skops round trip, safe loading, predictor protocol."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cropseq.baseline import train_random_forest
from cropseq.classes import ClassTable
from cropseq.errors import CropseqError
from cropseq.predictors import Predictor, load_predictor
from cropseq.predictors.forest import RandomForestPredictor
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
    proba_img = rf.predict_image(image, np.arange(t, dtype=np.float32) * 16 + 1)
    seqs = image.transpose(2, 3, 0, 1).reshape(h * w, t, c)[..., None, None]
    proba_seq = rf.predict_proba(seqs, None)
    assert proba_img.shape == (3, h, w)
    np.testing.assert_array_equal(proba_img.reshape(3, -1).T, proba_seq)
    mask = np.zeros((h, w), bool)
    mask[0, 0] = mask[2, 1:] = True
    masked = rf.predict_image(image, None, mask=mask)
    np.testing.assert_array_equal(masked[:, mask], proba_img[:, mask])
    assert np.isnan(masked[:, ~mask]).all()


def test_patches_use_the_centre_pixel(rf_file) -> None:
    rf, _ = rf_file
    x = _arrays(t=5, p=3, seed=2).x
    centre = x[:, :, :, 1:2, 1:2]
    np.testing.assert_array_equal(rf.predict_proba(x, None), rf.predict_proba(centre, None))


def test_dates_are_mapped_to_the_training_dates_by_day_of_year(rf_file) -> None:
    """Issue 12 item 7: extra dates, another order or another year never shift features."""
    rf, _ = rf_file
    test = _arrays(seed=2)
    ref = rf.predict_proba(test.x, test.doy)
    # Twice as many dates (the training ones plus one between each), and 2 days later.
    rng = np.random.default_rng(0)
    extra = rng.normal(size=test.x.shape).astype(np.float32) * 50
    x2 = np.stack([test.x, extra], axis=2).reshape(36, 10, 2, 1, 1)
    doy2 = np.stack([test.doy + 2, test.doy + 10], axis=2).reshape(36, 10)
    np.testing.assert_array_equal(rf.predict_proba(x2, doy2), ref)
    # Reversed order, one timeline for all rows (a stack chunk).
    np.testing.assert_array_equal(rf.predict_proba(test.x[:, ::-1], test.doy[0, ::-1]), ref)
    # A date a sequence lacks (padding, NaN day) is filled like a cloud.
    doy3 = test.doy.copy()
    doy3[0, 2] = np.nan
    f = rf.features(test.x, doy3)
    np.testing.assert_array_equal(f[0].reshape(5, 2)[2], rf.fill[2])


def test_missing_training_dates_are_refused_naming_both_timelines(rf_file) -> None:
    rf, path = rf_file
    loaded = load_predictor(path)
    test = _arrays(seed=2)
    keep = [0, 2, 4]  # the forest needs doy 17 and 49 too
    with pytest.raises(CropseqError) as e:
        loaded.predict_proba(test.x[:, keep], test.doy[:, keep])
    msg = str(e.value)
    assert msg.startswith(str(path)) and "trained on 5 dates (01-01, 01-17, 02-02, 02-18, 03-06)" in msg
    assert "no date near 01-17, 02-18" in msg and "input: 3 dates: 01-01, 02-02, 03-06" in msg
    assert "--start/--end" in msg
    with pytest.raises(CropseqError, match="no date near 01-17, 02-18"):
        loaded.predict_image(np.zeros((3, 2, 2, 2), np.float32), test.doy[0, keep])
    # Without dates, only the training length can be aligned (by position).
    with pytest.raises(CropseqError, match="input has 3 steps that cannot be aligned"):
        loaded.predict_proba(test.x[:, keep], None)
    assert loaded.predict_proba(test.x, None).shape == (36, 3)


def test_check_timeline_refuses_a_stack_of_several_seasons(rf_file) -> None:
    rf, _ = rf_file
    one = np.datetime64("2021-01-01") + (np.arange(5) * 16).astype("timedelta64[D]")
    rf.check_timeline(one, "stack.yaml")
    two = np.concatenate([one, one + np.timedelta64(365, "D")])
    with pytest.raises(CropseqError, match="stack.yaml: the stack spans more than one season.*--start/--end"):
        rf.check_timeline(two, "stack.yaml")


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


def _tiny_forest(tmp_path, n_dates: int = 5):
    """A forest on the tiny stack's bands and dates (10 days apart from 2021-04-01)."""
    from _data_fixtures import tiny_dates

    arrays = _arrays(t=n_dates)
    days = np.array(tiny_dates(n_dates), dtype="datetime64[D]")
    arrays.doy = np.tile(pd.DatetimeIndex(days).day_of_year.to_numpy(np.float32), (arrays.n, 1))
    arrays.dates = np.tile(days, (arrays.n, 1))
    arrays.bands = ["red", "nir"]
    path = tmp_path / "rf.skops"
    train_random_forest(arrays, path, n_estimators=5, n_jobs=1)
    return path


def test_predict_and_evaluate_refuse_a_stack_or_table_with_other_dates(tmp_path) -> None:
    """Issue 12 item 7 end to end: both the stack path and the samples-table path."""
    from _data_fixtures import assert_user_error, make_samples_table, run_cli, write_stack

    model = _tiny_forest(tmp_path)
    good, _ = write_stack(tmp_path / "good", "per-date", n_dates=5)
    res = run_cli(["predict", "--model", model, "--stack", good, "--out", tmp_path / "ok.tif", "--workers", "0", "-q"])
    assert res.rc == 0, res
    short, _ = write_stack(tmp_path / "short", "per-date", n_dates=3)  # lacks 05-01 and 05-11
    out = tmp_path / "map.tif"
    res = run_cli(["predict", "--model", model, "--stack", short, "--out", out, "--workers", "0", "-q"])
    msg = assert_user_error(res, "rf.skops", "no date near 05-01, 05-11", outputs=[out])
    assert "trained on 5 dates of 2021" in msg
    # A samples table 16 days apart from 03-01 (03-17, 04-02, 04-18, 05-04): two training dates lack one.
    table = tmp_path / "t.csv"
    make_samples_table(n_samples=6, n_steps=5, bands=("red", "nir"), classes=("Cerrado", "Soy")).to_csv(table, index=False)
    metrics = tmp_path / "m.json"
    res = run_cli(["evaluate", "--model", model, "--samples", table, "--out", metrics])
    assert_user_error(res, "rf.skops", "no date near 04-11, 05-11", outputs=[metrics])
