"""``cropseq.accuracy``: good-practice estimators against the paper and hand computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cropseq.accuracy import (
    allocate_sample,
    census_assessment,
    error_matrix_proportions,
    non_probability_assessment,
    sample_size_for_oa,
    simple_random_assessment,
    stratified_assessment,
    wilson_interval,
)
from cropseq.errors import CropseqError

Z = 1.959963984540054

# Olofsson et al. (2014), section 5: map areas in 30 m pixels (0.09 ha), counts rows = map.
OLOFSSON_CLASSES = ["deforestation", "forest gain", "stable forest", "stable non-forest"]
OLOFSSON_PIXELS = [200_000, 150_000, 3_200_000, 6_450_000]
OLOFSSON_COUNTS = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]


@pytest.fixture(scope="module")
def olofsson():
    areas = [p * 0.09 for p in OLOFSSON_PIXELS]
    return stratified_assessment(OLOFSSON_COUNTS, areas, OLOFSSON_CLASSES)


def test_olofsson_2014_published_figures(olofsson) -> None:
    d = olofsson["deforestation"]
    # Published: 21,158 ha +- 6,158 ha (95 % CI), UA 0.88, PA 0.75, OA 0.95.
    assert round(d.area.estimate) == 21_158
    assert round(Z * d.area.se) == 6_158
    assert d.area.ci95 == pytest.approx((21_158 - 6_158, 21_158 + 6_158), abs=1.0)
    assert round(d.users_accuracy.estimate, 2) == 0.88
    assert round(d.producers_accuracy.estimate, 2) == 0.75
    assert round(olofsson.overall_accuracy.estimate, 2) == 0.95


def test_olofsson_2014_all_classes(olofsson) -> None:
    # Areas (ha) and 95 % half-widths of the four classes, UA/PA/OA with their half-widths.
    expected = {
        "deforestation": (21_158, 6_158, 0.88, 0.074, 0.749, 0.213),
        "forest gain": (11_686, 3_756, 0.733, 0.101, 0.847, 0.254),
        "stable forest": (285_770, 15_510, 0.927, 0.040, 0.935, 0.034),
        "stable non-forest": (581_386, 16_282, 0.963, 0.021, 0.962, 0.018),
    }
    for name, (area, area_hw, ua, ua_hw, pa, pa_hw) in expected.items():
        c = olofsson[name]
        assert c.area.estimate == pytest.approx(area, abs=1)
        assert Z * c.area.se == pytest.approx(area_hw, abs=1)
        assert c.users_accuracy.estimate == pytest.approx(ua, abs=5e-4)
        assert Z * c.users_accuracy.se == pytest.approx(ua_hw, abs=5e-4)
        assert c.producers_accuracy.estimate == pytest.approx(pa, abs=5e-4)
        assert Z * c.producers_accuracy.se == pytest.approx(pa_hw, abs=5e-4)
    oa = olofsson.overall_accuracy
    assert oa.estimate == pytest.approx(0.9465, abs=1e-4) and Z * oa.se == pytest.approx(0.0185, abs=1e-4)
    assert sum(olofsson[n].area.estimate for n in OLOFSSON_CLASSES) == pytest.approx(900_000)


def test_json_keys_are_documented_and_strict(olofsson) -> None:
    d = json.loads(json.dumps(olofsson.to_dict(), allow_nan=False))
    assert d["design"] == "stratified" and d["census"] is False and d["n_samples"] == 640
    assert set(d["overall_accuracy"]) == {"estimate", "se", "ci95"}
    c = d["per_class"]["deforestation"]
    keys = ("users_accuracy", "producers_accuracy", "area_map", "area_estimate", "area_se", "area_ci95", "n_samples")
    assert set(keys) <= set(c)
    assert c["area_map"] == pytest.approx(18_000) and c["n_samples"] == 75
    assert c["producers_accuracy"]["ci95"][1] <= 1.0
    assert d["error_matrix_axes"] == "rows = map class, columns = reference class"
    assert np.sum(d["error_matrix_proportions"]) == pytest.approx(1.0)


def test_stratified_two_classes_by_hand() -> None:
    # W = (0.3, 0.7), 10 points per stratum; every figure below computed by hand.
    r = stratified_assessment([[8, 2], [1, 9]], [30.0, 70.0], ["a", "b"])
    p = error_matrix_proportions([[8, 2], [1, 9]], [30.0, 70.0])
    assert p == pytest.approx(np.array([[0.24, 0.06], [0.07, 0.63]]))
    var_oa = 0.3**2 * 0.8 * 0.2 / 9 + 0.7**2 * 0.9 * 0.1 / 9  # 0.0016 + 0.0049
    assert r.overall_accuracy.estimate == pytest.approx(0.87)
    assert r.overall_accuracy.se == pytest.approx(math.sqrt(var_oa))
    assert r["a"].users_accuracy.estimate == pytest.approx(0.8)
    assert r["a"].users_accuracy.se == pytest.approx(math.sqrt(0.8 * 0.2 / 9))
    pa = 0.24 / 0.31
    assert r["a"].producers_accuracy.estimate == pytest.approx(pa)
    # N_.a = 30 * 0.8 + 70 * 0.1 = 31 (ha); Olofsson 2013 variance of PA.
    var_pa = (30**2 * (1 - pa) ** 2 * 0.8 * 0.2 / 9 + pa**2 * 70**2 * 0.1 * 0.9 / 9) / 31**2
    assert r["a"].producers_accuracy.se == pytest.approx(math.sqrt(var_pa))
    assert r["b"].producers_accuracy.estimate == pytest.approx(0.63 / 0.69)
    # Area of reference class a: 100 * 0.31 = 31 ha, SE 100 * sqrt(var_oa) (same sums here).
    assert r["a"].area.estimate == pytest.approx(31.0)
    assert r["a"].area.se == pytest.approx(100 * math.sqrt(0.3**2 * 0.16 / 9 + 0.7**2 * 0.09 / 9))
    assert r["a"].area.ci95 == pytest.approx((31 - Z * r["a"].area.se, 31 + Z * r["a"].area.se))
    assert r["b"].area.estimate == pytest.approx(69.0)


def test_olofsson_2014_with_population_sizes(olofsson) -> None:
    # The paper's example with its strata's pixel counts N_i: the finite population
    # correction (n_i/N_i <= 4e-4) trims the half-widths by < 0.01 %: within 1.5 ha of the
    # published (rounded, computed without it) values, within 1e-4 of the uncorrected ones.
    areas = [p * 0.09 for p in OLOFSSON_PIXELS]
    r = stratified_assessment(OLOFSSON_COUNTS, areas, OLOFSSON_CLASSES, stratum_sizes=OLOFSSON_PIXELS)
    for name, (area, half) in {"deforestation": (21_158, 6_158), "forest gain": (11_686, 3_756),
                               "stable forest": (285_770, 15_510), "stable non-forest": (581_386, 16_282)}.items():
        assert r[name].area.estimate == pytest.approx(area, abs=1)
        assert Z * r[name].area.se == pytest.approx(half, abs=1.5) and Z * r[name].area.se < half
        assert r[name].area.se == pytest.approx(olofsson[name].area.se, rel=1e-4)
    assert Z * r.overall_accuracy.se == pytest.approx(0.0185, abs=1e-4)


def test_stratified_finite_population_correction_by_hand() -> None:
    # The two-class case above with N = (20, 50) pixels: 10 points each, f = (0.5, 0.2).
    r = stratified_assessment([[8, 2], [1, 9]], [30.0, 70.0], ["a", "b"], stratum_sizes=[20, 50])
    f = (1 - 10 / 20, 1 - 10 / 50)
    var_oa = 0.3**2 * f[0] * 0.8 * 0.2 / 9 + 0.7**2 * f[1] * 0.9 * 0.1 / 9
    assert r.overall_accuracy.estimate == pytest.approx(0.87)
    assert r.overall_accuracy.se == pytest.approx(math.sqrt(var_oa))
    assert r["a"].users_accuracy.se == pytest.approx(math.sqrt(f[0] * 0.8 * 0.2 / 9))
    assert r["b"].users_accuracy.se == pytest.approx(math.sqrt(f[1] * 0.9 * 0.1 / 9))
    pa = 0.24 / 0.31
    var_pa = (30**2 * (1 - pa) ** 2 * f[0] * 0.8 * 0.2 / 9 + pa**2 * 70**2 * f[1] * 0.1 * 0.9 / 9) / 31**2
    assert r["a"].producers_accuracy.se == pytest.approx(math.sqrt(var_pa))
    var_area = 100**2 * (0.3**2 * f[0] * 0.16 / 9 + 0.7**2 * f[1] * 0.09 / 9)
    assert r["a"].area.estimate == pytest.approx(31.0) and r["a"].area.se == pytest.approx(math.sqrt(var_area))


def test_fully_enumerated_strata() -> None:
    # Class c is one pixel, sampled by its one point: accepted, no variance from it.
    counts = [[9, 1, 0], [2, 8, 0], [0, 0, 1]]
    r = stratified_assessment(counts, [50.0, 49.99, 0.01], ["a", "b", "c"], stratum_sizes=[5000, 4999, 1])
    assert r["c"].n_samples == 1 and r["c"].users_accuracy.estimate == 1.0 and r["c"].users_accuracy.se == 0.0
    two = stratified_assessment([[9, 1], [2, 8]], [50.0, 49.99], stratum_sizes=[5000, 4999])
    w = np.array([50.0, 49.99]) / 100.0
    assert r.overall_accuracy.se == pytest.approx(two.overall_accuracy.se * w.sum())  # c adds no variance term
    # Every stratum enumerated (n_i = N_i): the figures are exact.
    full = stratified_assessment([[3, 1], [0, 2]], [4, 2], ["a", "b"], stratum_sizes=[4, 2])
    assert full.overall_accuracy.se == 0.0 and full["a"].area.se == 0.0 and full["a"].area.estimate == 3.0
    # One point in a stratum of more than one pixel stays an error, as do more points than pixels.
    with pytest.raises(CropseqError, match="'c' has a single sample point of 2 pixels; its variance needs at least 2"):
        stratified_assessment(counts, [50.0, 49.99, 0.02], ["a", "b", "c"], stratum_sizes=[5000, 4999, 2])
    with pytest.raises(CropseqError, match="'a' has 10 sample points but only 9 pixels"):
        stratified_assessment(counts, [50.0, 49.99, 0.01], ["a", "b", "c"], stratum_sizes=[9, 4999, 1])
    with pytest.raises(CropseqError, match="3 stratum sizes for 2 classes"):
        stratified_assessment([[5, 0], [0, 5]], [1, 1], stratum_sizes=[10, 10, 10])


def test_non_probability_accuracies_only() -> None:
    counts, areas = [[8, 2], [1, 9]], [30.0, 70.0]
    r = non_probability_assessment(counts, areas, ["a", "b"])
    srs = simple_random_assessment(counts, areas, ["a", "b"])
    assert r.design == "non_probability" and r.overall_accuracy == srs.overall_accuracy
    assert r["a"].users_accuracy == srs["a"].users_accuracy and r["a"].producers_accuracy.ci95 == wilson_interval(8, 9)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["per_class"]["a"]["area_estimate"] is None and d["per_class"]["a"]["area_ci95"] is None
    assert d["per_class"]["a"]["area_map"] == 30.0
    assert d["error_matrix_proportions"] == [[None, None], [None, None]]
    assert "not a probability sample" in d["note"] and "not the map" in d["note"]


def test_undefined_user_accuracy_says_why() -> None:
    # b is mapped (area 40) but has no sample point; c is not mapped at all.
    r = simple_random_assessment([[8, 0, 1], [0, 0, 0], [0, 0, 0]], [60.0, 40.0, 0.0], ["a", "b", "c"])
    assert "user's accuracy undefined (no sample point in the class): b" in r.note
    assert "user's accuracy undefined (class not mapped): c" in r.note


def test_stratified_scale_free_and_pixel_units() -> None:
    in_pixels = stratified_assessment([[8, 2], [1, 9]], [300, 700])
    in_ha = stratified_assessment([[8, 2], [1, 9]], [3.0, 7.0])
    assert in_pixels.overall_accuracy == in_ha.overall_accuracy
    assert in_pixels.per_class[0].area.estimate == pytest.approx(100 * in_ha.per_class[0].area.estimate)


def test_stratified_undefined_and_clipped() -> None:
    # Class c has no map area and no sample: UA undefined; never in the reference: PA undefined.
    r = stratified_assessment([[10, 0, 0], [0, 10, 0], [0, 0, 0]], [50, 50, 0], ["a", "b", "c"])
    assert r["c"].users_accuracy.estimate is None and r["c"].producers_accuracy.estimate is None
    assert r["a"].users_accuracy.ci95 == (1.0, 1.0)  # perfect stratum: se 0, interval inside [0, 1]
    assert "undefined" in r.note
    d = r.to_dict()["per_class"]["c"]
    assert d["users_accuracy"] == {"estimate": None, "se": None, "ci95": None}


@pytest.mark.parametrize(
    ("counts", "areas", "needle"),
    [
        ([[5, 0], [0, 0]], [10, 10], "has no sample point"),
        ([[5, 0], [0, 1]], [10, 10], "single sample point"),
        ([[5, 0], [0, 5]], [10, 10, 5], "3 map areas for 2 classes"),
        ([[5, -1], [0, 5]], [10, 10], "non-negative whole numbers"),
        ([[5, 1, 0], [0, 5, 0]], [10, 10], "must be square"),
        ([[5, 0], [0, 5]], [0, 0], "not all zero"),
    ],
)
def test_stratified_bad_input(counts, areas, needle) -> None:
    with pytest.raises(CropseqError, match=needle):
        stratified_assessment(counts, areas)


def test_wilson_known_values() -> None:
    # 73 of 73 correct: the lower bound is n / (n + z^2) = 0.9500 (the dtwSat "OA 100 %").
    lo, hi = wilson_interval(73, 73)
    assert lo == pytest.approx(73 / (73 + Z**2)) and lo == pytest.approx(0.9500, abs=1e-4) and hi == 1.0
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    with pytest.raises(CropseqError):
        wilson_interval(3, 0)


def test_simple_random_assessment_by_hand() -> None:
    r = simple_random_assessment([[8, 2], [1, 9]], [30.0, 70.0], ["a", "b"])
    assert r.design == "simple_random"
    assert r.overall_accuracy.estimate == pytest.approx(17 / 20)
    assert r.overall_accuracy.se == pytest.approx(math.sqrt(0.85 * 0.15 / 20))
    assert r.overall_accuracy.ci95 == pytest.approx(wilson_interval(17, 20))
    assert r["a"].users_accuracy.ci95 == pytest.approx(wilson_interval(8, 10))
    assert r["a"].producers_accuracy.estimate == pytest.approx(8 / 9)
    assert r["a"].area.estimate == pytest.approx(100 * 9 / 20)
    lo, hi = wilson_interval(9, 20)
    assert r["a"].area.ci95 == pytest.approx((100 * lo, 100 * hi))


def test_census_is_exact_and_says_so() -> None:
    r = census_assessment([[90, 10], [5, 95]], 0.01, ["a", "b"])
    d = r.to_dict()
    assert d["census"] is True and d["design"] == "census" and "census" in d["note"]
    assert d["overall_accuracy"] == {"estimate": pytest.approx(0.925), "se": 0.0, "ci95": None}
    assert d["per_class"]["a"]["area_estimate"] == pytest.approx(0.95)  # 95 reference pixels
    assert d["per_class"]["a"]["area_map"] == pytest.approx(1.0)
    assert d["per_class"]["a"]["area_ci95"] is None
    assert d["per_class"]["b"]["users_accuracy"]["estimate"] == pytest.approx(0.95)


def test_sample_size_eq13() -> None:
    # Olofsson 2014 sample-size example: U = 0.7, 0.6, 0.9, 0.95, S(O) = 0.01 -> n = 641.
    w, u = [0.02, 0.015, 0.32, 0.645], [0.7, 0.6, 0.9, 0.95]
    assert sample_size_for_oa(w, u, 0.01) == 641
    s = [math.sqrt(x * (1 - x)) for x in u]
    ws = sum(a * b for a, b in zip(w, s, strict=True))
    assert sample_size_for_oa(w, u, 0.02) == math.ceil((ws / 0.02) ** 2)
    # Finite population N = 1000: n = (sum W S)^2 / (S(O)^2 + sum W S^2 / N).
    by_hand = ws**2 / (0.01**2 + sum(a * b * b for a, b in zip(w, s, strict=True)) / 1000)
    assert sample_size_for_oa(w, u, 0.01, population=1000) == math.ceil(by_hand)
    assert sample_size_for_oa([1, 3], [0.5, 0.5], 0.05) == 100  # (0.5 / 0.05)^2
    with pytest.raises(CropseqError, match="in \\[0, 1\\]"):
        sample_size_for_oa(w, [1.2, 0.6, 0.9, 0.95])


def test_allocation_sums_and_minimums() -> None:
    w, u = [0.02, 0.015, 0.32, 0.645], [0.7, 0.6, 0.9, 0.95]
    prop = allocate_sample(641, w, "proportional")
    assert prop.sum() == 641 and prop.tolist() == [50, 50, 179, 362]  # rest split 0.32 : 0.645
    assert allocate_sample(641, w, "equal").sum() == 641
    ney = allocate_sample(641, w, "neyman", expected_ua=u)
    assert ney.sum() == 641 and ney.min() >= 50
    assert allocate_sample(1000, w, "proportional", min_per_class=0).tolist() == [20, 15, 320, 645]
    # Minimums above n: every class gets its minimum.
    assert allocate_sample(100, w, "equal", min_per_class=50).tolist() == [50, 50, 50, 50]
    # Small strata are capped at their pixels; a zero-weight stratum gets nothing.
    capped = allocate_sample(200, [0.5, 0.49, 0.01, 0.0], "proportional", stratum_sizes=[5000, 4900, 30, 0])
    assert capped.tolist()[2:] == [30, 0] and capped.sum() == 200
    with pytest.raises(CropseqError, match="unknown allocation"):
        allocate_sample(100, w, "random")
    with pytest.raises(CropseqError, match="expected user's accuracies"):
        allocate_sample(100, w, "neyman")
