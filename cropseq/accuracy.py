"""Good-practice accuracy and area estimation (Olofsson et al. 2014) from an error matrix.

A crop map is used for *areas*. Pixel counts of the map are biased by its errors; the
good-practice estimate (Olofsson et al. 2014, "Good practices for estimating area and
assessing accuracy of land change", Remote Sensing of Environment 148: 42-57) combines a
reference **sample** with the map's class areas. Everything here is pure numpy on an error
matrix of sample counts, **rows = map class, columns = reference class** (the paper's
convention; note :mod:`cropseq.evaluation` uses rows = reference), plus the map area of
every class. Four designs:

- ``stratified`` (:func:`stratified_assessment`): stratified random sample with the map
  classes as strata (what ``cropseq sample-design`` draws). With ``W_i = A_i / A`` the map
  share of class ``i`` and ``n_i.`` its sample size, the area-weighted error matrix is
  ``p_ij = W_i n_ij / n_i.`` (eq. 4); overall accuracy ``sum_j p_jj`` (eq. 1), user's
  accuracy ``n_ii / n_i.`` (eq. 2), producer's accuracy ``p_jj / p_.j`` (eq. 3); variances
  eqs. 5-7 (the producer's one from Olofsson et al. 2013, eq. 7 of 2014); area proportion
  of reference class ``k`` ``p_.k`` (eq. 9) with its standard error (eq. 10); area
  ``A p_.k`` (eq. 11) with SE ``A S(p_.k)`` (eq. 12). 95 % intervals are
  ``estimate +- 1.96 SE``, clipped to the possible range (``[0, 1]``, areas ``>= 0``).
  Given the strata's population sizes ``N_i`` (pixels), every stratum's variance term is
  multiplied by the finite population correction ``1 - n_i. / N_i`` (Cochran 1977, 5.3):
  a stratum sampled completely (a class of one pixel with its one point) has no sampling
  error, and a single point in a larger stratum stays an error (its variance needs 2).
  Also valid, as post-stratification, for a simple random sample.
- ``simple_random`` (:func:`simple_random_assessment`): a simple random sample read as
  plain proportions: OA ``sum n_ii / n``, UA ``n_ii / n_i.``, PA ``n_jj / n_.j``, area
  share ``n_.k / n``; SE ``sqrt(p (1 - p) / m)`` for ``m`` trials and Wilson score
  intervals (:func:`wilson_interval`), which behave at 0 % and 100 % (73 of 73 correct
  gives ``[0.950, 1]``, not ``[1, 1]``).
- ``non_probability`` (:func:`non_probability_assessment`): points that are no probability
  sample of the map (held-out field samples: a few fields, many pixels each). Accuracies
  as for ``simple_random`` (Wilson intervals), but they describe these points, not the
  map; no class area can be estimated (``area_estimate`` and its intervals ``null``,
  ``error_matrix_proportions`` ``null``), and the note says why.
- ``census`` (:func:`census_assessment`): the map against a full reference raster. The
  matrix holds population pixel counts, so the figures are exact (for the pixels that have
  a reference): ``se = 0`` and no interval (``ci95 = null``); the result says
  ``census: true``.

Sample sizes: :func:`sample_size_for_oa` (eq. 13: the sample giving a target standard error
of OA, from the expected user's accuracies) and :func:`allocate_sample` (``proportional``,
``equal`` or ``neyman`` allocation to the strata with a minimum per class).

JSON written by :meth:`AccuracyAssessment.to_dict` (what ``cropseq assess`` writes; areas
in ``area_unit``, hectares from the CLI):

.. code-block:: text

    {
      "design": "stratified" | "simple_random" | "non_probability" | "census",
      "census": false,                  # true: exact figures, no sampling error
      "confidence": 0.95,
      "n_samples": 640,                 # sample points (census: pixels)
      "area_unit": "ha",
      "area_total": 900000.0,           # total map area of the classes
      "classes": ["deforestation", ...],
      "overall_accuracy": {"estimate": 0.947, "se": 0.0094, "ci95": [0.928, 0.965]},
      "per_class": {
        "deforestation": {
          "n_samples": 75,              # sample points in the stratum (map class)
          "weight": 0.02,               # W_i, map share of the class
          "users_accuracy":    {"estimate": 0.88, "se": 0.038, "ci95": [0.81, 0.95]},
          "producers_accuracy": {"estimate": 0.75, "se": 0.109, "ci95": [0.54, 0.96]},
          "area_map": 18000.0,          # mapped area (pixel count x pixel area)
          "area_estimate": 21157.8,     # error-adjusted area of the class
          "area_se": 3141.6,
          "area_ci95": [15000.2, 27315.3],
          "area_proportion": {"estimate": 0.0235, "se": 0.0035, "ci95": [...]}
        }, ...
      },
      "error_matrix_counts": [[66, 0, 5, 4], ...],
      "error_matrix_proportions": [[0.0176, 0.0, ...], ...],   # p_ij, sums to 1 (null: non_probability)
      "error_matrix_axes": "rows = map class, columns = reference class",
      "note": "",                       # caveats (census coverage, undefined accuracies)
      "map": "map.tif", "reference": "points.gpkg"   # inputs, added by cropseq assess
    }                                               # (--matrix: "matrix", "map_areas")

An accuracy that is undefined (a class never mapped or without a sample point, or absent
from the reference) is ``null`` with ``null`` se and ci95; no NaN reaches the JSON.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from cropseq.errors import CropseqError
from cropseq.figures import pyplot, save_png

__all__ = ["ALLOCATIONS", "AccuracyAssessment", "Allocation", "ClassAccuracy", "Design", "Estimate", "MATRIX_AXES", "NON_PROBABILITY_NOTE", "allocate_sample", "census_assessment", "error_matrix_proportions", "non_probability_assessment", "plot_areas", "sample_size_for_oa", "simple_random_assessment", "stratified_assessment", "wilson_interval"]

#: Axis convention of every error matrix in this module.
MATRIX_AXES = "rows = map class, columns = reference class"
#: The designs an assessment can come from.
Design = Literal["stratified", "simple_random", "non_probability", "census"]
#: Allocation methods of :func:`allocate_sample`.
Allocation = Literal["proportional", "equal", "neyman"]
ALLOCATIONS: tuple[str, ...] = ("proportional", "equal", "neyman")


def _z(confidence: float) -> float:
    """Two-sided normal quantile (1.959964 for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise CropseqError(f"confidence {confidence} must lie strictly between 0 and 1")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Estimate:
    """A point estimate with its standard error and confidence interval.

    Attributes:
        estimate: The value, or None when undefined (e.g. UA of a class never mapped).
        se: Standard error (0 for a census), or None when undefined.
        ci95: ``(low, high)`` interval at the assessment's confidence, or None (census,
            or undefined estimate).
    """

    estimate: float | None
    se: float | None = None
    ci95: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"estimate", "se", "ci95"}`` with plain floats/None (``ci95`` a 2-list)."""
        return {
            "estimate": _num(self.estimate),
            "se": _num(self.se),
            "ci95": None if self.ci95 is None else [_num(self.ci95[0]), _num(self.ci95[1])],
        }


@dataclass(frozen=True)
class ClassAccuracy:
    """Accuracy and area of one class.

    Attributes:
        name: Class name.
        n_samples: Sample points in the class's stratum (its map class); census: pixels.
        weight: Map share ``W_i`` of the class (0..1).
        area_map: Mapped area of the class (pixel count x pixel area).
        users_accuracy: UA of the class as mapped (commission errors).
        producers_accuracy: PA of the class in the reference (omission errors).
        area: Error-adjusted area of the class (reference class ``k``), same unit as the map areas.
        area_proportion: The same as a share of the total map area.
    """

    name: str
    n_samples: int
    weight: float
    area_map: float
    users_accuracy: Estimate
    producers_accuracy: Estimate
    area: Estimate
    area_proportion: Estimate

    def to_dict(self) -> dict[str, Any]:
        """Per-class JSON entry (keys in the module docstring)."""
        return {
            "n_samples": int(self.n_samples),
            "weight": _num(self.weight),
            "users_accuracy": self.users_accuracy.to_dict(),
            "producers_accuracy": self.producers_accuracy.to_dict(),
            "area_map": _num(self.area_map),
            "area_estimate": _num(self.area.estimate),
            "area_se": _num(self.area.se),
            "area_ci95": self.area.to_dict()["ci95"],
            "area_proportion": self.area_proportion.to_dict(),
        }


@dataclass(frozen=True)
class AccuracyAssessment:
    """Result of an assessment: overall and per-class accuracy, areas, the matrices.

    Attributes:
        design: ``stratified``, ``simple_random``, ``non_probability`` or ``census``.
        classes: Class names, the order of the matrices' rows and columns.
        counts: ``(K, K)`` sample counts (census: pixels), rows = map, columns = reference.
        proportions: ``(K, K)`` estimated area proportions ``p_ij`` (sum 1); NaN for a
            ``non_probability`` sample (no area can be estimated from it).
        overall_accuracy: OA with SE and interval.
        per_class: One :class:`ClassAccuracy` per class, in ``classes`` order.
        area_total: Total map area ``A`` of the classes.
        area_unit: Unit of every area (``ha`` from the CLI).
        confidence: Confidence level of the intervals.
        note: Caveats for the reader, or ``""``.
    """

    design: Design
    classes: tuple[str, ...]
    counts: np.ndarray
    proportions: np.ndarray
    overall_accuracy: Estimate
    per_class: tuple[ClassAccuracy, ...]
    area_total: float
    area_unit: str = "ha"
    confidence: float = 0.95
    note: str = ""

    @property
    def census(self) -> bool:
        """True when the figures are a census (exact, no sampling error)."""
        return self.design == "census"

    def __getitem__(self, name: str) -> ClassAccuracy:
        """The :class:`ClassAccuracy` of class ``name``."""
        for c in self.per_class:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document described in the module docstring (plain types, no NaN)."""
        return {
            "design": self.design,
            "census": self.census,
            "confidence": self.confidence,
            "n_samples": int(np.asarray(self.counts).sum()),
            "area_unit": self.area_unit,
            "area_total": _num(self.area_total),
            "classes": list(self.classes),
            "overall_accuracy": self.overall_accuracy.to_dict(),
            "per_class": {c.name: c.to_dict() for c in self.per_class},
            "error_matrix_counts": np.asarray(self.counts).astype(np.int64).tolist(),
            "error_matrix_proportions": [[_num(v) for v in row] for row in np.asarray(self.proportions)],
            "error_matrix_axes": MATRIX_AXES,
            "note": self.note,
        }


def _num(v: Any) -> float | None:
    """Plain float, None for None/NaN/inf (strict JSON)."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


# --------------------------------------------------------------------------- inputs
def _check_inputs(
    counts: Any, map_areas: Any, classes: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Validate a square non-negative count matrix and matching non-negative areas."""
    n = np.asarray(counts, dtype=np.float64)
    a = np.asarray(map_areas, dtype=np.float64).ravel()
    if n.ndim != 2 or n.shape[0] != n.shape[1] or n.shape[0] == 0:
        raise CropseqError(f"the error matrix must be square with one row and column per class (got shape {n.shape})")
    k = n.shape[0]
    if a.size != k:
        raise CropseqError(f"{a.size} map areas for {k} classes")
    if not (np.isfinite(n).all() and (n >= 0).all() and np.all(n == np.round(n))):
        raise CropseqError("sample counts must be non-negative whole numbers")
    if not (np.isfinite(a).all() and (a >= 0).all()) or a.sum() <= 0:
        raise CropseqError("map areas must be non-negative and not all zero")
    names = tuple(str(c) for c in classes) if classes is not None else tuple(f"class {i + 1}" for i in range(k))
    if len(names) != k or len(set(names)) != k:
        raise CropseqError(f"need {k} distinct class names, got {list(names)}")
    return n, a, names


def _check_sizes(sizes: Any, k: int) -> np.ndarray | None:
    """Stratum population sizes ``N_i`` (pixels) as float64, or None when unknown."""
    if sizes is None:
        return None
    out = np.asarray(sizes, dtype=np.float64).ravel()
    if out.size != k:
        raise CropseqError(f"{out.size} stratum sizes for {k} classes")
    if not (np.isfinite(out).all() and (out >= 0).all() and np.all(out == np.round(out))):
        raise CropseqError("stratum sizes (pixels per map class) must be non-negative whole numbers")
    return out


def _check_strata(n: np.ndarray, a: np.ndarray, names: tuple[str, ...], unit: str, sizes: np.ndarray | None) -> None:
    """Every stratum with map area needs a sample point, and 2 unless it is fully enumerated.

    A stratum's variance divides by ``n_i. - 1``; with its population size known, one point
    in a stratum of one pixel is a census of that stratum (no variance), so it is accepted.
    """
    rows = n.sum(axis=1)
    for i, name in enumerate(names):
        if a[i] > 0 and rows[i] == 0:
            raise CropseqError(
                f"map class {name!r} covers {a[i]:g} {unit} but has no sample point; add reference points "
                "in it (cropseq sample-design draws --min-per-class points in every class)"
            )
        if sizes is not None and rows[i] > sizes[i]:
            raise CropseqError(
                f"map class {name!r} has {int(rows[i])} sample points but only {int(sizes[i])} pixels; "
                "a stratified sample draws each pixel at most once (points repeated, or from another map?)"
            )
        if a[i] > 0 and rows[i] == 1 and (sizes is None or sizes[i] > 1):
            of = f" of {int(sizes[i])} pixels" if sizes is not None else ""
            hint = "" if sizes is not None else (
                "; if the class is a single pixel, give the map areas in pixels (--pixel-area) so it counts as complete"
            )
            raise CropseqError(
                f"map class {name!r} has a single sample point{of}; its variance needs at least 2 "
                f"(add points in it){hint}"
            )


def error_matrix_proportions(counts: Any, map_areas: Any) -> np.ndarray:
    """The area-weighted error matrix ``p_ij = W_i n_ij / n_i.`` (Olofsson 2014, eq. 4).

    Args:
        counts: ``(K, K)`` sample counts, rows = map class, columns = reference class.
        map_areas: ``(K,)`` map area of each class (pixels, hectares: any one unit).

    Returns:
        ``(K, K)`` float64 proportions of the total area; rows with no sample are 0.

    Raises:
        CropseqError: on a malformed matrix or areas.
    """
    n, a, _ = _check_inputs(counts, map_areas, None)
    w = a / a.sum()
    rows = n.sum(axis=1, keepdims=True)
    return np.divide(w[:, None] * n, rows, out=np.zeros_like(n), where=rows > 0)


def _normal(est: float | None, se: float | None, z: float, hi: float | None = 1.0) -> Estimate:
    """``est +- z se`` clipped to ``[0, hi]`` (None when the estimate is undefined)."""
    if est is None or se is None or not math.isfinite(est) or not math.isfinite(se):
        return Estimate(None, None, None)
    lo_, hi_ = max(0.0, est - z * se), est + z * se
    if hi is not None:
        hi_ = min(hi, hi_)
    return Estimate(float(est), float(se), (lo_, hi_))


# --------------------------------------------------------------------------- stratified
def stratified_assessment(
    counts: Any,
    map_areas: Any,
    classes: Sequence[str] | None = None,
    *,
    area_unit: str = "ha",
    confidence: float = 0.95,
    stratum_sizes: Any = None,
) -> AccuracyAssessment:
    """Stratified estimators of Olofsson et al. (2014), strata = map classes.

    Args:
        counts: ``(K, K)`` sample counts, rows = map class (stratum), columns = reference.
        map_areas: ``(K,)`` map area of each class (its stratum size), in ``area_unit``.
        classes: The K class names (default ``class 1 .. class K``).
        area_unit: Unit of ``map_areas`` and of the area estimates.
        confidence: Confidence level of the normal intervals.
        stratum_sizes: ``(K,)`` population size ``N_i`` of each stratum (its pixels), or
            None when unknown. Given, each stratum's variance term gets the finite
            population correction ``1 - n_i. / N_i``, and a stratum sampled completely
            (e.g. one point in a class of one pixel) is accepted with no variance.

    Returns:
        The :class:`AccuracyAssessment` (design ``stratified``).

    Raises:
        CropseqError: malformed input, a stratum with area but no sample, a single sample
            in a stratum not known to be a single pixel, or more samples than pixels.
    """
    n, a, names = _check_inputs(counts, map_areas, classes)
    sizes = _check_sizes(stratum_sizes, len(names))
    _check_strata(n, a, names, area_unit, sizes)
    z = _z(confidence)
    total = float(a.sum())
    w = a / total
    rows = n.sum(axis=1)
    p = error_matrix_proportions(n, a)
    q = np.divide(n, rows[:, None], out=np.zeros_like(n), where=rows[:, None] > 0)  # n_ij / n_i.
    # Per-stratum variance factor (1 - n_i./N_i) / (n_i. - 1): with n_i. <= 1 (a stratum
    # with no area, or fully enumerated by its single point) it contributes nothing.
    # Below, every variance term divides by dof = (n_i. - 1) / (1 - n_i./N_i).
    fpc = np.ones_like(rows) if sizes is None else 1.0 - np.divide(rows, sizes, out=np.zeros_like(rows), where=sizes > 0)
    dof = np.divide(np.where(rows > 1, rows - 1, np.inf), fpc, out=np.full_like(rows, np.inf), where=fpc > 0)

    diag_q = np.diag(q)
    oa = float(np.trace(p))
    oa_se = math.sqrt(float(np.sum(w**2 * diag_q * (1 - diag_q) / dof)))
    pk = p.sum(axis=0)  # area proportion of each reference class (eq. 9)
    pk_se = np.sqrt(np.sum(w[:, None] ** 2 * q * (1 - q) / dof[:, None], axis=0))  # eq. 10
    # Estimated reference totals N_.j (in area units) for the PA variance.
    n_ref = (a[:, None] * q).sum(axis=0)

    per: list[ClassAccuracy] = []
    for j, name in enumerate(names):
        ua: Estimate
        if rows[j] > 0 and w[j] > 0:
            u = float(diag_q[j])
            ua = _normal(u, math.sqrt(u * (1 - u) / dof[j]), z)
        else:
            ua = Estimate(None)
        per.append(
            ClassAccuracy(
                name=name,
                n_samples=int(rows[j]),
                weight=float(w[j]),
                area_map=float(a[j]),
                users_accuracy=ua,
                producers_accuracy=_stratified_pa(j, a, q, dof, n_ref, p, z),
                area=_normal(total * pk[j], total * pk_se[j], z, hi=None),
                area_proportion=_normal(pk[j], pk_se[j], z),
            )
        )
    note = _undefined_note(per)
    return AccuracyAssessment(
        design="stratified", classes=names, counts=n.astype(np.int64), proportions=p,
        overall_accuracy=_normal(oa, oa_se, z), per_class=tuple(per), area_total=total,
        area_unit=area_unit, confidence=confidence, note=note,
    )  # fmt: skip


def _stratified_pa(
    j: int, a: np.ndarray, q: np.ndarray, dof: np.ndarray, n_ref: np.ndarray, p: np.ndarray, z: float
) -> Estimate:
    """Producer's accuracy of class ``j`` and its variance (Olofsson et al. 2013, eq. 7 of 2014).

    ``V(P_j) = 1/N_.j^2 [ N_j.^2 (1-P_j)^2 U_j (1-U_j) / (n_j.-1)
    + P_j^2 sum_{i!=j} N_i.^2 (n_ij/n_i.) (1 - n_ij/n_i.) / (n_i.-1) ]``, with ``N_i.`` the
    map area of class ``i`` and ``N_.j`` the estimated reference area of class ``j``;
    ``dof`` holds each stratum's ``(n_i. - 1)``, divided by its finite population
    correction when the stratum sizes are known.
    """
    if n_ref[j] <= 0:
        return Estimate(None)  # the class never occurs in the reference sample
    pa = float(p[j, j] / p[:, j].sum())
    u = q[j, j]
    first = a[j] ** 2 * (1 - pa) ** 2 * u * (1 - u) / dof[j]
    others = np.arange(a.size) != j
    second = pa**2 * np.sum(a[others] ** 2 * q[others, j] * (1 - q[others, j]) / dof[others])
    return _normal(pa, math.sqrt(float(first + second)) / n_ref[j], z)


def _undefined_note(per: Sequence[ClassAccuracy]) -> str:
    """Which accuracies are undefined, and why (no NaN reaches the JSON: they are null)."""
    unmapped = [c.name for c in per if c.users_accuracy.estimate is None and c.area_map <= 0]
    unsampled = [c.name for c in per if c.users_accuracy.estimate is None and c.area_map > 0]
    missing_pa = [c.name for c in per if c.producers_accuracy.estimate is None]
    parts = []
    if unmapped:
        parts.append(f"user's accuracy undefined (class not mapped): {', '.join(unmapped)}")
    if unsampled:
        parts.append(f"user's accuracy undefined (no sample point in the class): {', '.join(unsampled)}")
    if missing_pa:
        parts.append(f"producer's accuracy undefined (class absent from the reference): {', '.join(missing_pa)}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- simple random
def wilson_interval(successes: float, trials: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    Unlike the normal interval it stays inside ``[0, 1]`` and is not empty at 0 % or 100 %:
    73 successes of 73 give ``(0.9500, 1.0)``.

    Args:
        successes: Number of successes (``0 <= successes <= trials``).
        trials: Number of trials (``> 0``).
        confidence: Confidence level.

    Raises:
        CropseqError: on no trials or successes outside ``[0, trials]``.
    """
    if trials <= 0 or not 0 <= successes <= trials:
        raise CropseqError(f"Wilson interval needs 0 <= successes <= trials and trials > 0 (got {successes}/{trials})")
    z = _z(confidence)
    phat = successes / trials
    denom = 1 + z * z / trials
    centre = (phat + z * z / (2 * trials)) / denom
    half = z / denom * math.sqrt(phat * (1 - phat) / trials + z * z / (4 * trials * trials))
    # Exact bounds at the ends (the formula gives them up to rounding).
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == trials else min(1.0, centre + half)
    return lo, hi


def _binomial(successes: float, trials: float, confidence: float, scale: float = 1.0) -> Estimate:
    if trials <= 0:
        return Estimate(None)
    p = successes / trials
    lo, hi = wilson_interval(successes, trials, confidence)
    return Estimate(scale * p, scale * math.sqrt(p * (1 - p) / trials), (scale * lo, scale * hi))


def simple_random_assessment(
    counts: Any, map_areas: Any, classes: Sequence[str] | None = None, *, area_unit: str = "ha", confidence: float = 0.95
) -> AccuracyAssessment:
    """Proportions of a simple random sample with Wilson intervals.

    OA = ``sum n_ii / n``; UA of class i = ``n_ii / n_i.``; PA of class j = ``n_jj / n_.j``;
    area of reference class k = ``A n_.k / n``; each with SE ``sqrt(p (1 - p) / m)`` (``m``
    its trials) and a Wilson interval. The map areas give ``A`` and ``area_map`` only; the
    stratified estimator (:func:`stratified_assessment`) used as post-stratification is
    usually more precise.

    Args:
        counts: ``(K, K)`` sample counts, rows = map class, columns = reference class.
        map_areas: ``(K,)`` map area of each class, in ``area_unit``.
        classes: Class names.
        area_unit: Unit of the areas.
        confidence: Confidence level.

    Raises:
        CropseqError: on malformed input or an empty sample.
    """
    n, a, names = _check_inputs(counts, map_areas, classes)
    total_n = float(n.sum())
    if total_n == 0:
        raise CropseqError("the sample is empty")
    total = float(a.sum())
    rows, cols, diag = n.sum(axis=1), n.sum(axis=0), np.diag(n)
    per = [
        ClassAccuracy(
            name=name,
            n_samples=int(rows[i]),
            weight=float(a[i] / total),
            area_map=float(a[i]),
            users_accuracy=_binomial(diag[i], rows[i], confidence),
            producers_accuracy=_binomial(diag[i], cols[i], confidence),
            area=_binomial(cols[i], total_n, confidence, scale=total),
            area_proportion=_binomial(cols[i], total_n, confidence),
        )
        for i, name in enumerate(names)
    ]
    return AccuracyAssessment(
        design="simple_random", classes=names, counts=n.astype(np.int64), proportions=n / total_n,
        overall_accuracy=_binomial(diag.sum(), total_n, confidence), per_class=tuple(per),
        area_total=total, area_unit=area_unit, confidence=confidence, note=_undefined_note(per),
    )  # fmt: skip


#: Why a non-probability sample gives accuracies of the points only, and no areas.
NON_PROBABILITY_NOTE = (
    "not a probability sample of the map (e.g. held-out field samples: a few fields, many pixels "
    "each): the accuracies and their Wilson intervals describe these sample points, not the map, "
    "and no class area can be estimated from them (area estimates null; the mapped areas are pixel "
    "counts, biased by the map's errors); for the map's accuracy and areas label a stratified "
    "sample drawn by cropseq sample-design"
)


def non_probability_assessment(
    counts: Any, map_areas: Any, classes: Sequence[str] | None = None, *, area_unit: str = "ha", confidence: float = 0.95
) -> AccuracyAssessment:
    """Accuracies of points that are no probability sample of the map; no area estimates.

    OA, UA and PA are the sample's proportions with Wilson intervals, as in
    :func:`simple_random_assessment`, but they describe the points (e.g. held-out field
    samples), not the map. Areas cannot be estimated from such points: ``area`` and
    ``area_proportion`` are undefined and ``proportions`` NaN; the map areas give
    ``area_map`` only. The note (:data:`NON_PROBABILITY_NOTE`) says why. The arguments and
    errors are those of :func:`simple_random_assessment`.
    """
    from dataclasses import replace

    srs = simple_random_assessment(counts, map_areas, classes, area_unit=area_unit, confidence=confidence)
    per = tuple(replace(c, area=Estimate(None), area_proportion=Estimate(None)) for c in srs.per_class)
    note = "; ".join(s for s in (NON_PROBABILITY_NOTE, srs.note) if s)
    return replace(srs, design="non_probability", per_class=per, note=note,
                   proportions=np.full(srs.proportions.shape, np.nan))  # fmt: skip


# --------------------------------------------------------------------------- census
def census_assessment(
    counts: Any,
    pixel_area: float | Sequence[float] = 1.0,
    classes: Sequence[str] | None = None,
    *,
    area_unit: str = "ha",
    note: str = "",
) -> AccuracyAssessment:
    """Exact figures of a map scored against a full reference raster (a census).

    Args:
        counts: ``(K, K)`` pixel counts, rows = map class, columns = reference class.
        pixel_area: Area of one pixel, or ``(K,)`` the mean pixel area of each map class
            (geographic grids); a reference class's area sums its pixels over the rows.
        classes: Class names.
        area_unit: Unit of ``pixel_area``.
        note: Extra caveat (e.g. which pixels the reference covers).

    Returns:
        An :class:`AccuracyAssessment` with design ``census``: ``se = 0``, no intervals.
    """
    n = np.asarray(counts, dtype=np.float64)
    px = np.broadcast_to(np.asarray(pixel_area, dtype=np.float64), (n.shape[0],)) if n.ndim == 2 else np.zeros(0)
    n, row_area, names = _check_inputs(n, n.sum(axis=1) * px if n.ndim == 2 else [], classes)
    total_n = float(n.sum())
    area = n * px[:, None]  # area of each (map, reference) cell
    total = float(area.sum())
    rows, cols, diag = n.sum(axis=1), n.sum(axis=0), np.diag(n)

    def exact(num: float, den: float) -> Estimate:
        return Estimate(None) if den == 0 else Estimate(float(num / den), 0.0, None)

    per = [
        ClassAccuracy(
            name=name, n_samples=int(rows[i]), weight=float(row_area[i] / total), area_map=float(row_area[i]),
            users_accuracy=exact(diag[i], rows[i]), producers_accuracy=exact(diag[i], cols[i]),
            area=Estimate(float(area[:, i].sum()), 0.0, None),
            area_proportion=Estimate(float(area[:, i].sum() / total), 0.0, None),
        )
        for i, name in enumerate(names)
    ]  # fmt: skip
    text = "census: every pixel with a reference is counted, so the figures are exact (no sampling error)"
    extra = "; ".join(s for s in (note, _undefined_note(per)) if s)
    return AccuracyAssessment(
        design="census", classes=names, counts=n.astype(np.int64), proportions=area / total,
        overall_accuracy=exact(diag.sum(), total_n), per_class=tuple(per), area_total=total,
        area_unit=area_unit, note=f"{text}; {extra}" if extra else text,
    )  # fmt: skip


# --------------------------------------------------------------------------- sample size
#: Per-class numbers: a sequence or a 1-D array.
_Floats = Sequence[float] | np.ndarray
_Ints = Sequence[int] | np.ndarray


def _std_from_ua(expected_ua: _Floats) -> np.ndarray:
    u = np.asarray(expected_ua, dtype=np.float64)
    if not (np.isfinite(u).all() and ((u >= 0) & (u <= 1)).all()):
        raise CropseqError(f"expected user's accuracies must lie in [0, 1] (got {u.tolist()})")
    return np.sqrt(u * (1 - u))


def _weights(weights: _Floats) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.size == 0 or not (np.isfinite(w).all() and (w >= 0).all()) or w.sum() <= 0:
        raise CropseqError("class weights (map areas) must be non-negative and not all zero")
    return w / w.sum()


def sample_size_for_oa(
    weights: _Floats,
    expected_ua: _Floats,
    target_se: float = 0.01,
    population: float | None = None,
) -> int:
    """Stratified sample size for a target standard error of OA (Olofsson 2014, eq. 13).

    ``n = (sum W_i S_i)^2 / (S(O)^2 + sum W_i S_i^2 / N)`` with ``S_i = sqrt(U_i (1 - U_i))``;
    without ``population`` (``N``, e.g. the pixel count) the finite-population term is
    dropped: ``n = (sum W_i S_i / S(O))^2``.

    Args:
        weights: Map share (or area) of each class; normalised here.
        expected_ua: Expected user's accuracy of each class.
        target_se: Wanted standard error of the overall accuracy (e.g. 0.01).
        population: Population size ``N`` (pixels), or None.

    Returns:
        The sample size, rounded up; at least 1.

    Raises:
        CropseqError: on bad weights, accuracies or target.
    """
    w = _weights(weights)
    s = _std_from_ua(expected_ua)
    if s.size != w.size:
        raise CropseqError(f"{s.size} expected user's accuracies for {w.size} classes")
    if not (target_se > 0 and math.isfinite(target_se)):
        raise CropseqError(f"target standard error {target_se} must be positive")
    num = float(np.sum(w * s)) ** 2
    den = target_se**2 + (float(np.sum(w * s**2)) / population if population else 0.0)
    return max(1, math.ceil(num / den - 1e-9))


def allocate_sample(
    n: int,
    weights: _Floats,
    method: Allocation | str = "proportional",
    *,
    min_per_class: int = 50,
    expected_ua: _Floats | None = None,
    stratum_sizes: _Ints | None = None,
) -> np.ndarray:
    """Split ``n`` sample points between the strata (map classes).

    ``proportional``: ``n W_i``; ``equal``: ``n / K``; ``neyman``: ``n W_i S_i / sum W S``
    with ``S_i = sqrt(U_i (1 - U_i))`` from ``expected_ua`` (optimal for OA). Then every
    stratum gets at least ``min_per_class`` points (Olofsson 2014 recommends 50-100 so the
    rare classes' accuracies are estimable), taken from the others in proportion to their
    share, and never more than ``stratum_sizes`` (pixels available). Strata with zero
    weight get none. Integer rounding keeps the total (largest remainders).

    Args:
        n: Total sample size wanted.
        weights: Map share (or area) of each class.
        method: ``proportional``, ``equal`` or ``neyman``.
        min_per_class: Minimum per stratum (capped by its size).
        expected_ua: Expected user's accuracies (``neyman`` only).
        stratum_sizes: Pixels in each stratum, or None for unbounded.

    Returns:
        ``(K,)`` int64 points per stratum. The total is ``n``, unless the minimums need more
        (then ``sum(min)``) or the strata hold fewer pixels (then all of them).

    Raises:
        CropseqError: on an unknown method, bad weights, or ``neyman`` without ``expected_ua``.
    """
    w = _weights(weights)
    k = w.size
    if method not in ALLOCATIONS:
        raise CropseqError(f"unknown allocation {method!r}; use one of {', '.join(ALLOCATIONS)}")
    if n < 0 or min_per_class < 0:
        raise CropseqError("sample size and minimum per class must not be negative")
    active = w > 0
    if method == "proportional":
        share = w.copy()
    elif method == "equal":
        share = active.astype(np.float64)
    else:
        if expected_ua is None:
            raise CropseqError("neyman allocation needs the expected user's accuracies")
        share = w * _std_from_ua(expected_ua)
        if share.sum() <= 0:  # every expected UA is 0 or 1: no variance to optimise; fall back
            share = w.copy()
    cap = np.full(k, np.inf) if stratum_sizes is None else np.asarray(stratum_sizes, dtype=np.float64)
    cap = np.where(active, cap, 0.0)
    floor = np.minimum(float(min_per_class), cap)
    total = min(max(float(n), float(floor.sum())), float(cap.sum()))
    alloc = _bounded_split(total, share, floor, cap)
    return _round_keep_total(alloc, int(round(total)), cap)


def _bounded_split(total: float, share: np.ndarray, floor: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """``total`` split in proportion to ``share``, each part within ``[floor, cap]``."""
    fixed = np.full(share.size, np.nan)
    for _ in range(share.size + 1):  # each pass fixes at least one stratum or stops
        free = np.isnan(fixed)
        rest = total - np.nansum(fixed)
        s = np.where(free, share, 0.0)
        if s.sum() <= 0:  # only zero-share strata left: spread evenly among them
            s = free.astype(np.float64)
        alloc = np.where(free, rest * s / s.sum(), fixed)
        low = free & (alloc < floor)
        high = free & (alloc > cap)
        if not (low.any() or high.any()):
            return alloc
        fixed[low] = floor[low]
        fixed[high] = cap[high]
    return np.where(np.isnan(fixed), 0.0, fixed)


def _round_keep_total(alloc: np.ndarray, total: int, cap: np.ndarray) -> np.ndarray:
    """Integer parts with the given total: floors, then +1 to the largest remainders under cap."""
    base = np.floor(alloc + 1e-9)
    left = int(total - base.sum())
    order = np.argsort(-(alloc - base), kind="stable")
    for i in order:
        if left <= 0:
            break
        if base[i] + 1 <= cap[i]:
            base[i] += 1
            left -= 1
    return base.astype(np.int64)


# --------------------------------------------------------------------------- plot
def plot_areas(assessment: AccuracyAssessment, path: str | os.PathLike[str], title: str = "") -> Path:
    """Bar chart PNG of mapped vs estimated area per class, the estimate with its interval.

    A ``non_probability`` assessment has no area estimate: the mapped areas only.

    Args:
        assessment: The assessment to draw.
        path: Output PNG, written atomically.
        title: Figure title (the OA line is added below it).

    Returns:
        The path written.
    """
    plt = pyplot()


    names = list(assessment.classes)
    x = np.arange(len(names))
    mapped = np.array([c.area_map for c in assessment.per_class])
    est = np.array([c.area.estimate or 0.0 for c in assessment.per_class])
    lo = np.array([c.area.ci95[0] if c.area.ci95 else e for c, e in zip(assessment.per_class, est, strict=True)])
    hi = np.array([c.area.ci95[1] if c.area.ci95 else e for c, e in zip(assessment.per_class, est, strict=True)])
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 2.5), 4.5), dpi=120)
    try:
        estimated = assessment.design != "non_probability"  # no area estimate from such points
        ax.bar(x - 0.2 if estimated else x, mapped, 0.4, label="mapped (pixel count)", color="#9ecae1")
        if estimated:
            label = "estimated (census)" if assessment.census else f"estimated, {assessment.confidence:.0%} CI"
            ax.bar(x + 0.2, est, 0.4, label=label, color="#3182bd",
                   yerr=np.vstack([est - lo, hi - est]), capsize=4, ecolor="black")  # fmt: skip
        ax.set_xticks(x, names, rotation=30, ha="right", rotation_mode="anchor")
        ax.set_ylabel(f"area ({assessment.area_unit})")
        oa = assessment.overall_accuracy
        oa_text = "OA n/a" if oa.estimate is None else f"OA {oa.estimate:.3f}"
        if oa.ci95 is not None:
            oa_text += f" [{oa.ci95[0]:.3f}, {oa.ci95[1]:.3f}]"
        if not estimated:
            oa_text += " of the sample points; areas not estimated (not a probability sample)"
        ax.set_title(f"{title or 'Mapped vs estimated area'}\n{oa_text} ({assessment.design})", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = save_png(fig, path)
    finally:
        plt.close(fig)
    return path
