"""Class tables: integer codes, names and colours of the crop classes.

Codes are 1..254 in crop maps; 0 is reserved for nodata (pixels that could not be
classified), so a uint8 map with a colour table opens in QGIS with nodata transparent.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cropseq.atomic import register_input
from cropseq.errors import CropseqError

__all__ = [
    "ClassInfo",
    "ClassTable",
    "MAX_CLASSES",
    "NODATA_CODE",
]

NODATA_CODE = 0
MAX_CLASSES = 254

# Colours a GIS analyst expects for common classes; anything else gets a generated colour.
_KNOWN_COLOURS: dict[str, str] = {
    "forest": "#1b7837",
    "water": "#2166ac",
    "urban": "#8c8c8c",
    "built-up": "#8c8c8c",
    "cerrado": "#a6761d",
    "pasture": "#d9ef8b",
    "grassland": "#d9ef8b",
    "wheat": "#f6e8a6",
    "maize": "#fdae61",
    "corn": "#fdae61",
}


def _generated_colour(i: int) -> str:
    # Golden-ratio hue steps keep neighbouring codes visually distinct.
    h = (0.11 + i * 0.618034) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.65, 0.9)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _check_hex(colour: str, where: str | None) -> str:
    c = str(colour).strip()
    if not (len(c) == 7 and c.startswith("#") and all(ch in "0123456789abcdefABCDEF" for ch in c[1:])):
        raise CropseqError(f"colour {colour!r} is not a #rrggbb hex colour", where)
    return c.lower()


@dataclass(frozen=True)
class ClassInfo:
    """One class: its map code, name and ``#rrggbb`` colour."""

    code: int
    name: str
    color: str


@dataclass(frozen=True)
class ClassTable:
    """An ordered list of classes; the order is the model's output index order."""

    classes: tuple[ClassInfo, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        codes = [c.code for c in self.classes]
        names = [c.name for c in self.classes]
        if len(set(codes)) != len(codes):
            raise CropseqError(f"duplicate class codes in {codes}")
        if len(set(names)) != len(names):
            raise CropseqError(f"duplicate class names in {names}")
        for c in self.classes:
            if not 1 <= c.code <= MAX_CLASSES:
                raise CropseqError(f"class {c.name!r} has code {c.code}; codes must be 1..{MAX_CLASSES}")
            if not c.name.strip():
                raise CropseqError("a class has an empty name")

    @classmethod
    def from_names(cls, names: Iterable[str]) -> ClassTable:
        """Derive a table from class names: sorted, codes 1..K, default colours."""
        uniq = sorted({str(n) for n in names})
        if not uniq:
            raise CropseqError("no classes found")
        if len(uniq) > MAX_CLASSES:
            raise CropseqError(f"{len(uniq)} classes; at most {MAX_CLASSES} fit a uint8 map")
        return cls(
            tuple(
                ClassInfo(i + 1, n, _KNOWN_COLOURS.get(n.lower(), _generated_colour(i)))
                for i, n in enumerate(uniq)
            )
        )

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]], where: str | None = None) -> ClassTable:
        """Build from ``[{code, name, color?}, ...]`` (as in config or a checkpoint)."""
        out = []
        for i, r in enumerate(records):
            if not isinstance(r, dict) or "name" not in r:
                raise CropseqError(f"class entry {i} needs at least a 'name'", where)
            code = int(r.get("code", i + 1))
            colour = r.get("color") or r.get("colour") or _KNOWN_COLOURS.get(str(r["name"]).lower(), _generated_colour(i))
            out.append(ClassInfo(code, str(r["name"]), _check_hex(colour, where)))
        return cls(tuple(out))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> ClassTable:
        """Read a YAML file holding a list of ``{code, name, color}`` (or ``{classes: [...]}``)."""
        path = Path(path)
        if not path.is_file():
            raise CropseqError("class file not found", path)
        register_input(path, what="class table")  # outputs may not replace an input (cropseq.atomic)
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise CropseqError(f"not valid YAML ({str(e).splitlines()[0]})", path) from None
        if isinstance(data, dict):
            data = data.get("classes")
        if not isinstance(data, list):
            raise CropseqError("expected a list of classes ({code, name, color})", path)
        return cls.from_records(data, str(path))

    def to_records(self) -> list[dict[str, Any]]:
        """Plain records for JSON/YAML (checkpoints, config)."""
        return [{"code": c.code, "name": c.name, "color": c.color} for c in self.classes]

    def to_yaml(self, path: str | os.PathLike[str]) -> None:
        """Write the table as YAML (``{classes: [...]}``)."""
        Path(path).write_text(yaml.safe_dump({"classes": self.to_records()}, sort_keys=False))

    @property
    def names(self) -> list[str]:
        """Class names, in table order."""
        return [c.name for c in self.classes]

    @property
    def codes(self) -> list[int]:
        """Raster codes, in table order."""
        return [c.code for c in self.classes]

    @property
    def colors(self) -> list[str]:
        """Display colours, in table order."""
        return [c.color for c in self.classes]

    def __len__(self) -> int:
        return len(self.classes)

    def index_of(self, names: Iterable[str], where: str | None = None) -> list[int]:
        """Model output indices of class ``names``; unknown names are an error."""
        lookup = {c.name: i for i, c in enumerate(self.classes)}
        out = []
        for n in names:
            if n not in lookup:
                raise CropseqError(f"unknown class {n!r} (known: {', '.join(self.names)})", where)
            out.append(lookup[n])
        return out

    def rgba(self, code: int) -> tuple[int, int, int, int]:
        """RGBA tuple for a code (for GDAL colour tables)."""
        for c in self.classes:
            if c.code == code:
                h = c.color.lstrip("#")
                return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255
        return 0, 0, 0, 0
