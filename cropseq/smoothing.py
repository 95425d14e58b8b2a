"""Spatial smoothing of class probabilities before labelling (Bayesian, as sits' ``sits_smooth``).

Per-pixel classifiers label every pixel on its own, so fields come out speckled. Bayesian
smoothing (Câmara et al., the method of sits' ``sits_smooth``) pulls each pixel's class
probabilities towards those of its neighbourhood, as much as the neighbourhood agrees:

1. Probabilities become logits ``x = log(p / (1 - p))`` (clipped to ``[1e-4, 1 - 1e-4]``).
2. For each class ``k`` and pixel ``i``, over the ``window x window`` neighbourhood
   (nodata neighbours excluded): weighted mean ``m_k`` and variance ``s2_k`` of the logits.
3. Posterior mean (prior: the neighbourhood, ``N(m_k, s2_k)``; likelihood: the pixel with
   variance ``v_k``, the *smoothness*)::

       x'_k = (s2_k * x_k + v_k * m_k) / (s2_k + v_k)

   A homogeneous neighbourhood (small ``s2_k``) pulls the pixel to its mean; a
   heterogeneous one (a field border: large ``s2_k``) leaves it nearly as it was. A larger
   ``v_k`` smooths more. sits' default smoothness is 10 (logit units squared).
4. Back to probabilities (logistic), normalised to sum to 1; nodata pixels stay nodata.

``method="bayes"`` weighs all neighbours equally. ``method="edge"`` (edge-preserving)
multiplies each neighbour's weight by a bilateral term ``exp(-d^2 / (2 * edge_sigma^2))``,
``d`` the Euclidean distance between the neighbour's and the centre pixel's probability
vectors: neighbours across a strong probability gradient (another field) hardly count,
so field borders stay sharp and thin features survive.

Chunk safety: :meth:`Smoothing.apply` takes probabilities with a halo of
:attr:`Smoothing.radius` pixels and returns the core. Each output pixel is computed from
the same values in the same order whatever the chunk, so with halos the result does not
depend on the chunk size (:mod:`cropseq.inference` adds the radius to the model's halo).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cropseq.errors import CropseqError

#: Smoothing methods (``none`` = no smoothing).
METHODS = ("none", "bayes", "edge")
#: Default neighbourhood edge in pixels (sits: 7 for 10 m imagery; 5 keeps narrow fields).
DEFAULT_WINDOW = 5
#: Default smoothness ``v`` (variance of the pixel's own logits; sits' default).
DEFAULT_VARIANCE = 10.0
#: Default bilateral scale of the edge-preserving method (probability-vector distance).
DEFAULT_EDGE_SIGMA = 0.5
#: Probabilities are clipped to ``[EPS, 1 - EPS]`` before the logit (p = 0 or 1 is infinite).
EPS = 1e-4


@dataclass(frozen=True)
class Smoothing:
    """A spatial smoothing of class probabilities (see the module docs).

    Attributes:
        method: ``bayes`` or ``edge``.
        window: Neighbourhood edge in pixels (odd, >= 3).
        variance: Smoothness ``v``: one value for all classes or one per class (> 0).
        edge_sigma: Bilateral scale of ``edge`` (probability-vector distance, > 0).
    """

    method: str = "bayes"
    window: int = DEFAULT_WINDOW
    variance: float | tuple[float, ...] = DEFAULT_VARIANCE
    edge_sigma: float = DEFAULT_EDGE_SIGMA

    def __post_init__(self) -> None:
        if self.method not in ("bayes", "edge"):
            raise CropseqError(f"unknown smoothing {self.method!r} (choose bayes or edge)")
        if self.window < 3 or self.window % 2 == 0:
            raise CropseqError(f"the smoothing window must be an odd number of pixels >= 3 (got {self.window})")
        v = np.atleast_1d(np.asarray(self.variance, np.float64))
        if not np.all(np.isfinite(v) & (v > 0)):
            raise CropseqError(f"the smoothing variance must be positive (got {self.variance})")
        if not self.edge_sigma > 0:
            raise CropseqError(f"the edge sigma must be positive (got {self.edge_sigma})")

    @property
    def radius(self) -> int:
        """Halo the smoothing needs around a chunk, in pixels."""
        return self.window // 2

    def _variance(self, k: int) -> np.ndarray:
        v = np.atleast_1d(np.asarray(self.variance, np.float64))
        if v.size == 1:
            v = np.full(k, v[0])
        if v.size != k:
            raise CropseqError(f"{v.size} smoothing variances given for {k} classes (give one, or one per class)")
        return v[:, None, None]

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Smooth ``(K, H + 2r, W + 2r)`` probabilities (NaN = nodata) into ``(K, H, W)``.

        Args:
            probs: Probabilities of the chunk *with* a halo of :attr:`radius` pixels
                (NaN beyond the scene edge and at nodata pixels).

        Returns:
            float32 smoothed probabilities of the core, NaN where the core was nodata.
        """
        r = self.radius
        k, hh, ww = probs.shape
        h, w = hh - 2 * r, ww - 2 * r
        valid = np.isfinite(probs).all(axis=0)
        p = np.clip(np.where(valid[None], probs, 0.5).astype(np.float64), EPS, 1.0 - EPS)
        x = np.log(p) - np.log1p(-p)
        core = (slice(None), slice(r, r + h), slice(r, r + w))
        xc, pc = x[core], p[core]
        sw = np.zeros((h, w))
        s1 = np.zeros((k, h, w))
        s2 = np.zeros((k, h, w))
        for dy in range(-r, r + 1):  # same offsets in the same order for every chunk
            for dx in range(-r, r + 1):
                win = (slice(None), slice(r + dy, r + dy + h), slice(r + dx, r + dx + w))
                wgt = valid[win[1:]].astype(np.float64)
                if self.method == "edge":
                    d2 = ((p[win] - pc) ** 2).sum(axis=0)
                    wgt = wgt * np.exp(-d2 / (2.0 * self.edge_sigma**2))
                xn = x[win]
                sw += wgt
                s1 += wgt * xn
                s2 += wgt * xn * xn
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s1 / sw
            var = np.maximum(s2 / sw - mean * mean, 0.0)
        v = self._variance(k)
        post = (var * xc + v * mean) / (var + v)
        out = 1.0 / (1.0 + np.exp(-post))
        out /= out.sum(axis=0, keepdims=True)
        return np.where(valid[core[1:]][None], out, np.nan).astype(np.float32)


def make_smoothing(
    method: str | None,
    window: int = DEFAULT_WINDOW,
    variance: float | Sequence[float] = DEFAULT_VARIANCE,
    edge_sigma: float = DEFAULT_EDGE_SIGMA,
) -> Smoothing | None:
    """A :class:`Smoothing`, or None for ``method`` None / ``"none"``.

    Raises:
        CropseqError: unknown method, even or too small window, non-positive variance.
    """
    if method is None or method == "none":
        return None
    var = tuple(float(v) for v in variance) if isinstance(variance, Sequence) else float(variance)
    if isinstance(var, tuple) and len(var) == 1:
        var = var[0]
    return Smoothing(str(method), int(window), var, float(edge_sigma))


def isolated_share(cls: np.ndarray, nodata: int = 0) -> float:
    """Share of classified pixels whose eight neighbours all carry another class.

    Only pixels with all eight neighbours inside the map and classified count (the border
    and nodata neighbours would make isolation ambiguous).
    """
    c = np.asarray(cls)
    if c.shape[0] < 3 or c.shape[1] < 3:
        return 0.0
    centre = c[1:-1, 1:-1]
    ok = centre != nodata
    same = np.zeros(centre.shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            nb = c[1 + dy : c.shape[0] - 1 + dy, 1 + dx : c.shape[1] - 1 + dx]
            ok &= nb != nodata
            same |= nb == centre
    n = int(ok.sum())
    return float((ok & ~same).sum() / n) if n else 0.0


__all__ = ["DEFAULT_EDGE_SIGMA", "DEFAULT_VARIANCE", "DEFAULT_WINDOW", "METHODS", "Smoothing", "isolated_share", "make_smoothing"]
