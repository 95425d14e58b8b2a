"""Bayesian / edge-preserving smoothing of probabilities (cropseq.smoothing), chunk-safe."""

from __future__ import annotations

import numpy as np
import pytest
from _predictor_double import make_cube, make_predictor, truth_map, whole_array_probs

from cropseq.errors import CropseqError
from cropseq.inference import predict_cube
from cropseq.smoothing import Smoothing, isolated_share, make_smoothing


def noisy_probs(ny: int = 48, nx: int = 48, k: int = 3, seed: int = 0, noise: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of rectangular fields with per-pixel noise (speckle), and the truth."""
    rng = np.random.default_rng(seed)
    truth = truth_map(ny, nx, seed)
    logits = 1.0 * (np.arange(k)[:, None, None] == truth[None]) + rng.normal(0, noise, (k, ny, nx))
    e = np.exp(logits - logits.max(axis=0))
    return (e / e.sum(axis=0)).astype(np.float32), truth


def smooth_whole(probs: np.ndarray, s: Smoothing) -> np.ndarray:
    r = s.radius
    return s.apply(np.pad(probs, ((0, 0), (r, r), (r, r)), constant_values=np.nan))


@pytest.mark.parametrize("method", ["bayes", "edge"])
def test_smoothing_fewer_isolated_pixels_and_higher_accuracy(method: str) -> None:
    probs, truth = noisy_probs()
    before = probs.argmax(axis=0)
    after = smooth_whole(probs, Smoothing(method)).argmax(axis=0)
    # the edge-preserving variant trusts noisy neighbours less, so it smooths less
    gain, shrink = (0.05, 0.5) if method == "bayes" else (0.1, 0.95)
    assert (after == truth).mean() > (before == truth).mean() + gain
    assert isolated_share(after + 1) < isolated_share(before + 1) * shrink


def test_edge_preserving_keeps_a_thin_feature() -> None:
    probs = np.full((2, 21, 21), 0.1, np.float32)
    probs[0] = 0.9
    probs[:, :, 10] = [[0.2], [0.8]]  # a one-pixel-wide line of class 1 (a hedge, a track)
    bayes = smooth_whole(probs, Smoothing("bayes", window=7, variance=50)).argmax(axis=0)
    edge = smooth_whole(probs, Smoothing("edge", window=7, variance=50, edge_sigma=0.25)).argmax(axis=0)
    assert (bayes[:, 10] == 1).mean() < 0.5  # the plain smoother erases the line ...
    assert (edge[:, 10] == 1).all() and (edge[:, :10] == 0).all()  # ... the edge-preserving one keeps it


def test_smoothed_probabilities_sum_to_one_and_keep_nodata() -> None:
    probs, _ = noisy_probs(20, 20)
    probs[:, 3, 4] = np.nan
    out = smooth_whole(probs, Smoothing("bayes", window=3))
    assert np.isnan(out[:, 3, 4]).all()
    ok = np.isfinite(out).all(axis=0)
    assert ok.sum() == 399
    np.testing.assert_allclose(out[:, ok].sum(axis=0), 1, rtol=1e-5)


def test_larger_variance_smooths_more() -> None:
    probs, _ = noisy_probs()
    weak = smooth_whole(probs, Smoothing("bayes", variance=0.5)).argmax(axis=0)
    strong = smooth_whole(probs, Smoothing("bayes", variance=50)).argmax(axis=0)
    assert isolated_share(strong + 1) <= isolated_share(weak + 1)


@pytest.mark.parametrize("method", ["bayes", "edge"])
def test_result_does_not_depend_on_chunk_size(method: str) -> None:
    cube = make_cube(ny=150, nx=135, n_dates=4, seed=3, nan_frac=0.3)
    pred = make_predictor(patch=3)
    s = Smoothing(method, window=5)
    runs = [predict_cube(cube, pred, chunk=c, min_valid=2, probabilities=True, smooth=s).compute() for c in (32, 64, 256)]
    for r in runs[1:]:
        np.testing.assert_array_equal(r["class"].values, runs[0]["class"].values)
        np.testing.assert_array_equal(r["probabilities"].values, runs[0]["probabilities"].values)
    # and equal to smoothing the whole scene at once (the halos are right)
    want = smooth_whole(whole_array_probs(cube, pred, min_valid=2), s)
    np.testing.assert_allclose(runs[0]["probabilities"].values, want, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_bad_parameters_are_one_line_errors() -> None:
    for kw, needle in (({"window": 4}, "odd"), ({"variance": -1.0}, "positive"), ({"edge_sigma": 0.0}, "positive")):
        with pytest.raises(CropseqError, match=needle):
            Smoothing("bayes", **kw)
    with pytest.raises(CropseqError, match="unknown smoothing"):
        make_smoothing("median")
    assert make_smoothing("none") is None
    with pytest.raises(CropseqError, match="2 smoothing variances given for 3 classes"):
        smooth_whole(noisy_probs(10, 10)[0], Smoothing("bayes", variance=(1.0, 2.0)))


def test_isolated_share() -> None:
    m = np.ones((5, 5), np.uint8)
    m[2, 2] = 2
    assert isolated_share(m) == pytest.approx(1 / 9)
    m[0, 0] = 0  # a nodata neighbour makes (1, 1) not count
    assert isolated_share(m) == pytest.approx(1 / 8)
