"""Cloud/validity masks: which raw mask values mean "invalid".

One job: turn the manifest's mask description into a rule, and apply the rule to the raw
mask values read for a window. Four kinds of rule:

- ``nonzero`` / ``zero``: the legacy ``masks:`` + ``mask_invalid:`` keys (a binary mask).
- ``values``: a class raster, e.g. Sentinel-2's scene classification (SCL):
  ``mask: {band: SCL, invalid: [0, 1, 3, 8, 9, 10, 11]}`` (or ``valid: [4, 5, 6]``).
- ``bits``: a bit-packed quality band, e.g. Landsat Collection 2 ``QA_PIXEL``:
  ``mask: {band: QA_PIXEL, bits: {fill: 0, cloud: 3, shadow: 4}}``: a pixel is invalid
  when any named bit is set.

Mask pixels that are missing (NaN: the mask raster's nodata value, or outside the mask
raster when it is read onto another grid) are invalid for the ``values`` and ``bits`` rules:
nothing says the pixel is clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cropseq.errors import CropseqError, reject_unknown_keys
from cropseq.remote import Source

__all__ = ["MaskKind", "MaskRule", "parse_mask"]

MaskKind = Literal["nonzero", "zero", "values", "valid-values", "bits"]
_MASK_KEYS = {"band", "invalid", "valid", "bits"}


@dataclass(frozen=True)
class MaskRule:
    """How raw mask values map to "invalid".

    Attributes:
        kind: ``nonzero``, ``zero``, ``values`` (listed values invalid), ``valid-values``
            (values not listed invalid) or ``bits`` (any listed bit set = invalid).
        values: The listed values (``values`` / ``valid-values``).
        bits: Bit name -> bit index (``bits``; index 0 = least significant).
        band: The stack band holding the mask (``mask:`` key), or None for the legacy
            ``masks:`` files.
    """

    kind: MaskKind = "nonzero"
    values: tuple[float, ...] = ()
    bits: tuple[tuple[str, int], ...] = ()
    band: str | None = None

    def invalid(self, raw: np.ndarray) -> np.ndarray:
        """Boolean array: True where ``raw`` (mask values, any dtype) marks a pixel invalid."""
        if self.kind == "nonzero":
            return raw != 0
        if self.kind == "zero":
            return raw == 0
        missing = np.isnan(raw) if raw.dtype.kind == "f" else np.zeros(raw.shape, bool)
        if self.kind in ("values", "valid-values"):
            listed = np.isin(raw, np.asarray(self.values, dtype=np.float64))
            return missing | (listed if self.kind == "values" else ~listed)
        # Unsigned 64-bit words: bit 63 is a valid QA bit index, and 1 << 63 overflows int64.
        word = np.where(missing, 0, raw).astype(np.uint64)
        bitmask = np.uint64(sum(1 << b for _, b in self.bits))
        return missing | ((word & bitmask) != 0)

    def describe(self) -> str:
        """A short human description (``inspect``, errors)."""
        if self.kind in ("nonzero", "zero"):
            return f"{self.kind} = invalid"
        if self.kind == "values":
            return f"{self.band} in {list(map(_num, self.values))} = invalid"
        if self.kind == "valid-values":
            return f"{self.band} not in {list(map(_num, self.values))} = invalid"
        return f"{self.band} bits " + ", ".join(f"{n} ({b})" for n, b in self.bits) + " set = invalid"


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else v


def parse_mask(raw: Any, where: Source) -> MaskRule:
    """The manifest's ``mask:`` mapping as a :class:`MaskRule`.

    Raises:
        CropseqError: one line naming the manifest: not a mapping, no ``band``, none or
            more than one of ``invalid`` / ``valid`` / ``bits``, values that are not
            numbers, bits outside 0..63.
    """
    if not isinstance(raw, dict):
        raise CropseqError(
            "mask must be a mapping: {band: SCL, invalid: [0, 1, 3, ...]} or {band: QA_PIXEL, bits: {cloud: 3}}", where
        )
    reject_unknown_keys(raw, _MASK_KEYS, where, key="mask: unknown key {!r}")
    band = raw.get("band")
    if not isinstance(band, str) or not band.strip():
        raise CropseqError("mask needs band: the name of the band holding the mask (e.g. SCL, QA_PIXEL)", where)
    given = [k for k in ("invalid", "valid", "bits") if raw.get(k) is not None]
    if len(given) != 1:
        raise CropseqError("mask needs exactly one of invalid: [values], valid: [values], bits: {name: bit}", where)
    key = given[0]
    if key == "bits":
        bits = raw["bits"]
        if not isinstance(bits, dict) or not bits:
            raise CropseqError("mask.bits must be a mapping {name: bit index}, e.g. {cloud: 3, shadow: 4}", where)
        out: list[tuple[str, int]] = []
        for name, b in bits.items():
            if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b <= 63:
                raise CropseqError(f"mask.bits.{name} must be a bit index 0..63, not {b!r}", where)
            out.append((str(name), int(b)))
        return MaskRule("bits", bits=tuple(out), band=band)
    values = raw[key]
    if not isinstance(values, list) or not values:
        raise CropseqError(f"mask.{key} must be a list of values, e.g. [0, 1, 3, 8, 9, 10, 11]", where)
    nums = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise CropseqError(f"mask.{key} holds {v!r}, not a number", where)
        nums.append(float(v))
    return MaskRule("values" if key == "invalid" else "valid-values", values=tuple(nums), band=band)
