"""One self-contained HTML report of a workflow run (or of any set of cropseq outputs).

:func:`build_report` gathers what a person needs to judge a crop map without a terminal:

- the headline numbers (map accuracy against the held-out reference, the models' test
  accuracy), each with its 95 % interval;
- the metrics table, deep model vs RandomForest (OA, kappa, macro F1; per-class user's /
  producer's accuracy and F1), read from the metrics JSON of :mod:`cropseq.evaluation`;
  every accuracy (a proportion of scored items) carries its 95 % Wilson interval
  (:func:`cropseq.accuracy.wilson_interval`);
- the confusion-matrix PNGs written by ``cropseq evaluate`` and the training curves PNG
  written by ``cropseq train`` (plus the last/best epochs of the history CSV);
- a PNG preview of the crop map with its legend (colours from the map's colour table, names
  from its metadata; read through the COG overviews, so a big map stays cheap) and of the
  confidence map;
- the area table: mapped area (pixel counts) beside the error-adjusted estimate and its 95 %
  interval, with the map's accuracy from the same sample (``cropseq assess`` JSON,
  Olofsson et al. 2014), and the map-vs-reference metrics;
- the run's inputs (stack summary from ``cropseq inspect --json``, the run configuration)
  and the time and memory of every stage (Snakemake benchmark files).

Every image is embedded as a base64 ``data:`` URI and the CSS is inline, so the one HTML
file can be mailed or archived. Each input is optional: a section whose inputs were not
given is left out; an input that was given but does not exist is a :class:`CropseqError`.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cropseq.atomic import atomic_path, check_writable
from cropseq.errors import CropseqError
from cropseq.figures import pyplot
from cropseq.raster_metadata import class_legend, raster_class_names

PathLike = str | os.PathLike[str]

__all__ = ["build_report", "confidence_preview", "error_map", "map_preview", "panels_preview", "read_benchmarks",
           "rgb_and_valid_previews"]


# --------------------------------------------------------------------------- small helpers
def _esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _need(path: PathLike | None, what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise CropseqError(f"{what} not found", p)
    return p


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise CropseqError(f"cannot read {what} ({e})", path) from None
    except json.JSONDecodeError as e:
        raise CropseqError(f"{what} is not valid JSON ({e.msg}, line {e.lineno})", path) from None


def _fmt(v: Any, digits: int = 3) -> str:
    """Numbers for tables: ``None``/NaN as an en dash, floats rounded."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, float | np.floating):
        x = float(v)
        if math.isnan(x):
            return "–"
        if x != 0 and abs(x) < 10 ** -digits:
            return f"{x:.2g}"
        return f"{x:.{digits}f}"
    return _esc(v)


def _pct(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{100 * float(v):.1f} %"


def _ci(lo_hi: Sequence[float] | None, digits: int = 3, pct: bool = False) -> str:
    """`` [lo, hi]`` of an interval, or "" when there is none."""
    if not lo_hi or lo_hi[0] is None or lo_hi[1] is None:
        return ""
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    if pct:
        return f" [{100 * lo:.1f}, {100 * hi:.1f}] %"
    return f" [{lo:.{digits}f}, {hi:.{digits}f}]"


def _wilson(p: Any, n: Any) -> tuple[float, float] | None:
    """95 % Wilson interval of a proportion ``p`` of ``n`` items, or None when undefined."""
    from cropseq.accuracy import wilson_interval

    p, n = _num(p), _num(n)
    if p is None or n is None or n <= 0:
        return None
    return wilson_interval(round(p * n), n)


def _prop(p: Any, n: Any) -> str:
    """A proportion with its 95 % Wilson interval: ``0.953 [0.941, 0.963]``."""
    return _fmt(p) + ("" if _num(p) is None else _ci(_wilson(p, n)))


def _estimate(e: Mapping[str, Any] | None, digits: int = 3) -> str:
    """An assess JSON estimate ``{estimate, se, ci95}`` as ``value [lo, hi]``."""
    if not e or e.get("estimate") is None:
        return "–"
    return _fmt(float(e["estimate"]), digits) + _ci(e.get("ci95"), digits)


def _crs_label(crs: Any) -> str:
    """A CRS by name (``EPSG:32633 (WGS 84 / UTM zone 33N)``, ``MODIS sinusoidal (...)``), never a WKT blob.

    Anything rasterio/pyproj cannot read is shown as given, shortened.
    """
    from rasterio.crs import CRS

    from cropseq.io import crs_name

    if crs is None or crs == "":
        return "none"
    try:
        name = crs_name(crs if isinstance(crs, CRS) else CRS.from_user_input(crs))
    except Exception:  # noqa: BLE001 - a label, never a failure (rasterio CRSError, pyproj errors)
        text = str(crs)
        return text if len(text) <= 80 else text[:77] + "…"
    # The MODIS land grid: a sinusoidal projection on a sphere of radius 6,371,007.181 m.
    if name.startswith("Sinusoidal") and "+R=6371007.181" in name:
        return "MODIS sinusoidal" + name[len("Sinusoidal"):]
    return name


def _img_uri(png: bytes | Path) -> str:
    data = png.read_bytes() if isinstance(png, Path) else png
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _img(png: bytes | Path, alt: str, cls: str = "fig") -> str:
    return f'<img class="{cls}" alt="{_esc(alt)}" src="{_img_uri(png)}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """An HTML table; cells are already HTML (escape them when building the rows)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def _metric(m: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if k in m:
            return m[k]
    return None


# --------------------------------------------------------------------------- previews
def _savefig(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def _read_decimated(path: Path, max_size: int) -> tuple[np.ma.MaskedArray, Any, Any]:
    """Band 1 at most ``max_size`` px on its longest side (GDAL reads the COG's overviews)."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        scale = max(1.0, max(src.width, src.height) / max_size)
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        data = src.read(1, out_shape=shape, resampling=Resampling.nearest, masked=True)
        return data, src.bounds, src.crs


def map_preview(
    map_path: PathLike,
    *,
    max_size: int = 1024,
    title: str | None = None,
    area_csv: PathLike | None = None,
) -> bytes:
    """PNG bytes of a crop map with its legend (only classes present in the map)."""
    plt = pyplot()
    from matplotlib.patches import Patch

    path = Path(map_path)
    table = class_legend(path, area_csv)
    data, b, crs = _read_decimated(path, max_size)
    codes = np.asarray(data.filled(0), dtype=np.int64)
    rgba = np.zeros((256, 4), np.float32)
    for code, _, colour in table:
        h = colour.lstrip("#")
        rgba[code] = [int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255, 1.0]
    h, w = codes.shape
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 7.5 * h / max(w, 1))), dpi=100)
    ax.imshow(rgba[np.clip(codes, 0, 255)], interpolation="nearest", extent=(b.left, b.right, b.bottom, b.top))
    present = set(np.unique(codes).tolist())
    handles = [Patch(facecolor=c, edgecolor="0.3", label=f"{code} {n}") for code, n, c in table if code in present]
    if 0 in present:
        handles.append(Patch(facecolor="white", edgecolor="0.3", label="0 nodata"))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="class")
    ax.set_title(title or path.name, fontsize=10)
    ax.tick_params(labelsize=7)
    ax.ticklabel_format(useOffset=False, style="plain")
    if crs is not None:
        ax.set_xlabel(f"x ({_crs_label(crs)[:70]})", fontsize=7)
    return _savefig(fig)


def confidence_preview(conf_path: PathLike, *, max_size: int = 1024, title: str | None = None) -> bytes:
    """PNG bytes of a confidence map (0..1 or percent) with a colour bar."""
    plt = pyplot()

    path = Path(conf_path)
    data, b, _ = _read_decimated(path, max_size)
    arr = np.ma.masked_invalid(data.astype(np.float32))
    vmax = 100.0 if arr.count() and float(arr.max()) > 1.0 + 1e-6 else 1.0
    h, w = arr.shape
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 7.5 * h / max(w, 1))), dpi=100)
    im = ax.imshow(arr, cmap="viridis", vmin=0.0, vmax=vmax, interpolation="nearest",
                   extent=(b.left, b.right, b.bottom, b.top))
    fig.colorbar(im, ax=ax, shrink=0.8, label="confidence" + (" (%)" if vmax == 100.0 else ""))
    ax.set_title(title or path.name, fontsize=10)
    ax.tick_params(labelsize=7)
    ax.ticklabel_format(useOffset=False, style="plain")
    return _savefig(fig)


# --------------------------------------------------------------------------- tables
def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CropseqError(f"cannot read CSV ({e})", path) from None


def _summary_table(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    names = list(metrics)
    rows = [["overall accuracy [95 % CI]"]
            + [_prop(_metric(metrics[n], "overall_accuracy", "oa"), metrics[n].get("n")) for n in names]]
    for label, keys in [
        ("kappa", ("kappa",)),
        ("macro F1", ("macro_f1",)),
        ("items scored", ("n",)),
    ]:
        rows.append([label] + [_fmt(_metric(metrics[n], *keys)) for n in names])
    return _table(["metric"] + [_esc(n) for n in names], rows, "num")


def _per_class_table(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    names = list(metrics)
    classes: list[str] = []
    for m in metrics.values():
        for c in m.get("labels") or list((m.get("per_class") or {}).keys()):
            if c not in classes:
                classes.append(c)
    header = ["class", "support"]
    for n in names:
        header += [f"{_esc(n)}<br>UA", f"{_esc(n)}<br>PA", f"{_esc(n)}<br>F1"]
    rows = []
    for c in classes:
        support = None
        row: list[str] = []
        for n in names:
            pc = (metrics[n].get("per_class") or {}).get(c, {})
            support = support if support is not None else pc.get("support")
            row += [
                _prop(_metric(pc, "users_accuracy", "ua", "precision"), pc.get("predicted")),
                _prop(_metric(pc, "producers_accuracy", "pa", "recall"), pc.get("support")),
                _fmt(pc.get("f1")),
            ]
        rows.append([_esc(c), _fmt(support)] + row)
    return _table(header, rows, "num")


def _history_table(path: Path) -> str:
    rows = _read_csv(path)
    if not rows:
        return "<p>The training history is empty.</p>"
    cols = list(rows[0].keys())

    def num(r: dict[str, str], k: str) -> float | None:
        try:
            return float(r[k])
        except (KeyError, TypeError, ValueError):
            return None

    picks = [("last epoch", rows[-1])]
    for key, better in (("val_loss", min), ("val_accuracy", max), ("val_acc", max), ("val_oa", max)):
        vals = [(num(r, key), i) for i, r in enumerate(rows) if num(r, key) is not None]
        if vals:
            _, i = better(vals)
            picks.append((f"best {key}", rows[i]))
            break
    def cell(r: dict[str, str], c: str) -> str:
        raw, x = r.get(c), num(r, c)
        if x is None:
            return _esc(raw)
        if x.is_integer() and raw is not None and "." not in raw and "e" not in raw.lower():
            return _fmt(int(x))
        return _fmt(x, 1 if c in ("seconds", "time", "s") else 3)

    body = [[_esc(label)] + [cell(r, c) for c in cols] for label, r in picks]
    return _table([""] + [_esc(c) for c in cols], body, "num") + f"<p class='note'>{len(rows)} epochs in the history.</p>"


def _area_table(path: Path, assessment: Mapping[str, Any] | None = None) -> str:
    """Mapped area per class; with an assessment, the estimated area and its interval beside it."""
    rows = _read_csv(path)
    per = (assessment or {}).get("per_class") or {}
    unit = _esc((assessment or {}).get("area_unit", "ha"))
    out = []
    tot_px = tot_ha = 0.0
    for r in rows:
        px = float(r.get("pixels") or 0)
        ha = float(r.get("hectares") or 0)
        tot_px += px
        tot_ha += ha
        share = r.get("share")
        row = [
            _esc(r.get("code")), _esc(r.get("name")), _fmt(int(px)), _fmt(ha, 1),
            _pct(float(share)) if share not in (None, "") else "–",
        ]
        if assessment is not None:
            row += _estimate_cells(per.get(str(r.get("name"))))
        out.append(row)
    total = ["", "<b>total</b>", f"<b>{_fmt(int(tot_px))}</b>", f"<b>{_fmt(tot_ha, 1)}</b>", "100 %"]
    header = ["code", "class", "pixels", "mapped ha", "share"]
    if assessment is not None:
        total += ["", "", ""]
        header += [f"estimated {unit}", f"95 % CI ({unit})", "± (half-width)"]
    out.append(total)
    return _table(header, out, "num")


def _estimate_cells(c: Mapping[str, Any] | None) -> list[str]:
    """Estimated area, its interval and half-width of one class of an assess JSON."""
    if not c or c.get("area_estimate") is None:
        return ["–", "–", "–"]
    ci = c.get("area_ci95")
    if not ci or ci[0] is None:
        return [_fmt(float(c["area_estimate"]), 1), "census (exact)" if c.get("area_se") == 0 else "–", "–"]
    half = 1.96 * float(c["area_se"]) if c.get("area_se") is not None else (ci[1] - ci[0]) / 2
    return [_fmt(float(c["area_estimate"]), 1), f"{ci[0]:,.1f} – {ci[1]:,.1f}", f"± {half:,.1f}"]


_DESIGNS = {
    "stratified": "a stratified random sample over the map classes (Olofsson et al. 2014, eqs. 2-12)",
    "simple_random": "the sample read as a simple random sample (Wilson intervals)",
    "non_probability": "points that are not a probability sample of the map (Wilson intervals of the points)",
    "census": "a census against a full reference raster (exact figures, no interval)",
}


#: Field samples read as a simple random sample: the accuracies hold, the areas follow the sample.
_SRS_CAVEAT = (
    "Simple random design: the estimated areas are the reference classes' shares of the points times "
    "the map area. Held-out field samples are not a random sample of the map (their class mix follows "
    "the survey, not the area), so read those areas as indicative only; for publishable areas draw a "
    "stratified sample over the map (cropseq sample-design) and label it."
)


#: Held-out field samples: accuracies of those points only, no areas (design non_probability).
_NON_PROBABILITY_CAVEAT = (
    "No estimated areas: the reference points (held-out field samples: a few fields, many pixels each) "
    "are not a probability sample of the map, so their class mix says nothing about the map's areas and "
    "their accuracies describe these points, not the map. The mapped areas are pixel counts, biased by the "
    "map's errors. For publishable accuracy and areas, label a stratified sample drawn over the map "
    "(cropseq sample-design) and run cropseq assess on it."
)

#: A probability sample over the map: it covers the training fields too.
_WHOLE_MAP_CAVEAT = (
    "The sample is drawn over the whole map, training fields included, so this accuracy is not a "
    "held-out score: it describes the map as delivered, which is what the area estimates need."
)


def estimates_areas(a: Mapping[str, Any] | None) -> bool:
    """Whether a ``cropseq assess`` JSON estimates class areas (not a non-probability sample)."""
    return a is not None and a.get("design") != "non_probability"


def _assessment_section(a: Mapping[str, Any], plot: Path | None, source: str, held_out: bool = False) -> str:
    """OA, per-class UA/PA and areas of a ``cropseq assess`` JSON, with 95 % intervals.

    ``held_out``: the report also has the map scored against a held-out reference (named
    beside the whole-map caveat as the held-out score).
    """
    unit = _esc(a.get("area_unit", "ha"))
    oa = a.get("overall_accuracy") or {}
    areas = estimates_areas(a)
    whose = "the map" if areas else "the sample points (not the map)"
    design = a.get("design")
    design_text = _DESIGNS.get(design, design) if isinstance(design, str) else design
    body = (f"<p>Overall accuracy of {whose} <b>{_estimate(oa)}</b> (95 % CI) from "
            f"{_fmt(a.get('n_samples'))} reference points: {_esc(design_text)}. "
            f"{_esc(source)}</p>")
    if areas and not a.get("census"):
        also = " The held-out score is under Map vs held-out reference." if held_out else ""
        body += f"<p class='note'>{_esc(_WHOLE_MAP_CAVEAT + also)}</p>"
    rows = []
    for name, c in (a.get("per_class") or {}).items():
        rows.append([_esc(name), _fmt(c.get("n_samples")), _estimate(c.get("users_accuracy")),
                     _estimate(c.get("producers_accuracy")), _fmt(_num(c.get("area_map")), 1),
                     *(_estimate_cells(c) if areas else [])])
    estimated = [f"estimated {unit}", f"95 % CI ({unit})", "± (half-width)"] if areas else []
    body += _table(["class", "points", "UA [95 % CI]", "PA [95 % CI]", f"mapped {unit}", *estimated], rows, "num")
    note = str(a.get("note") or "")
    if not areas:  # the caveat says it in the report's words; keep the rest of the note
        from cropseq.accuracy import NON_PROBABILITY_NOTE

        note = note.replace(NON_PROBABILITY_NOTE, "").strip("; ")
        body += f"<p class='note'>{_esc(_NON_PROBABILITY_CAVEAT)}</p>"
    if note:
        body += f"<p class='note'>{_esc(note)}</p>"
    if a.get("design") == "simple_random":
        body += f"<p class='note'>{_esc(_SRS_CAVEAT)}</p>"
    if plot is not None:
        caption = "mapped area vs estimated area with 95 % intervals" if areas else "mapped area (no estimate)"
        body += f'<div class="figs">{_figure(_img(plot, "mapped vs estimated area"), caption)}</div>'
    return body


def read_benchmarks(folder: PathLike) -> list[dict[str, Any]]:
    """Snakemake benchmark files (``*.tsv``, recursively) as rows per stage.

    Files in a sub-folder (e.g. ``predict/<tile>.tsv``) are one stage with one job per file.
    Returns ``[{stage, jobs, seconds (sum), max_seconds, max_rss_mb, cpu_seconds}]``, in the
    order the stages finished.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    stages: dict[str, dict[str, Any]] = {}
    for f in sorted(root.rglob("*.tsv")):
        rel = f.relative_to(root)
        stage = rel.parts[0] if len(rel.parts) > 1 else f.stem
        rows = _read_tsv(f)
        if not rows:
            continue
        r = rows[-1]  # with --benchmark-repeats the last row; one row otherwise
        s = _num(r.get("s"))
        st = stages.setdefault(stage, {"stage": stage, "jobs": 0, "seconds": 0.0, "max_seconds": 0.0,
                                       "max_rss_mb": None, "cpu_seconds": 0.0, "mtime": 0.0})
        st["jobs"] += 1
        st["seconds"] += s or 0.0
        st["max_seconds"] = max(st["max_seconds"], s or 0.0)
        rss = _num(r.get("max_rss"))
        if rss is not None:
            st["max_rss_mb"] = rss if st["max_rss_mb"] is None else max(st["max_rss_mb"], rss)
        st["cpu_seconds"] += _num(r.get("cpu_time")) or 0.0
        st["mtime"] = max(st["mtime"], f.stat().st_mtime)
    out = sorted(stages.values(), key=lambda d: d["mtime"])
    for d in out:
        d.pop("mtime")
    return out


def _read_tsv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _timing_table(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        body.append([
            _esc(r["stage"]), _fmt(r["jobs"]), _fmt(r["seconds"], 1),
            _fmt(r["max_seconds"], 1) if r["jobs"] > 1 else "",
            _fmt(r["max_rss_mb"], 0), _fmt(r["cpu_seconds"], 1),
        ])
    total = sum(r["seconds"] for r in rows)
    body.append(["<b>total (sum of jobs)</b>", "", f"<b>{_fmt(total, 1)}</b>", "", "", ""])
    return _table(["stage", "jobs", "wall s (sum)", "slowest job s", "max RSS MB", "CPU s"], body, "num")


def _kv_table(d: Mapping[str, Any], depth: int = 0) -> str:
    rows = []
    for k, v in d.items():
        if isinstance(v, Mapping) and depth < 2:
            cell = _kv_table(v, depth + 1) if v else "–"
        elif isinstance(v, list) and len(v) > 12 and all(not isinstance(x, Mapping | list) for x in v):
            cell = _esc(", ".join(map(str, v[:5])) + f", … ({len(v)} values) …, " + ", ".join(map(str, v[-3:])))
        elif isinstance(v, list | Mapping):
            cell = "<code>" + _esc(json.dumps(v, default=str)) + "</code>"
        elif isinstance(v, str) and len(v) > 120:
            cell = f"<details><summary>{_esc(v[:60])}…</summary><code>{_esc(v)}</code></details>"
        else:
            cell = f"{v:g}" if isinstance(v, float) else _esc(v if v is not None else "–")
        rows.append([f"<b>{_esc(k)}</b>", cell])
    return _table(["key", "value"], rows, "kv")


# --------------------------------------------------------------------------- map products
#: Error-map categories: (value, label, colour).
_ERROR_CLASSES = ((1, "right", "#1a9641"), (2, "wrong", "#d7191c"), (3, "no reference", "#e6e6e6"))


def _rgba_lut(table: Sequence[tuple[int, str, str]]) -> np.ndarray:
    """``(256, 4)`` RGBA (0..1) per class code; unknown codes and 0 transparent."""
    rgba = np.zeros((256, 4), np.float32)
    for code, _, colour in table:
        h = colour.lstrip("#")
        rgba[code] = [int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255, 1.0]
    return rgba


def error_map(map_codes: np.ndarray, truth_codes: np.ndarray, map_names: Mapping[int, str],
              truth_names: Mapping[int, str]) -> np.ndarray:
    """Per pixel 1 right / 2 wrong / 3 classified without reference / 0 unclassified.

    Codes are compared by class name (each raster's own names), as ``cropseq evaluate`` does.
    """
    m = np.asarray(map_codes, np.int64)
    t = np.asarray(truth_codes, np.int64)
    mname = np.array([map_names.get(i, f"code {i}") for i in range(256)], dtype=object)
    tname = np.array([truth_names.get(i, f"code {i}") for i in range(256)], dtype=object)
    has_ref = (t > 0) & (t < 256)
    right = has_ref & (mname[np.clip(m, 0, 255)] == tname[np.clip(t, 0, 255)])
    out = np.where(has_ref, np.where(right, 1, 2), 3)
    return np.where(m > 0, out, 0).astype(np.uint8)


def panels_preview(
    map_path: PathLike,
    *,
    confidence: PathLike | None = None,
    uncertainty: PathLike | None = None,
    truth: PathLike | None = None,
    max_size: int = 512,
    area_csv: PathLike | None = None,
) -> bytes:
    """PNG bytes: the map, confidence, uncertainty and (with a truth raster) the error map side by side.

    On one extent, with one shared legend (classes and error categories) and a 0..1 scale
    under each continuous layer.
    """
    plt = pyplot()
    from matplotlib.cm import ScalarMappable
    from matplotlib.patches import Patch

    path = Path(map_path)
    table = class_legend(path, area_csv)
    data, b, _ = _read_decimated(path, max_size)
    codes = np.asarray(data.filled(0), np.int64)
    extent = (b.left, b.right, b.bottom, b.top)
    panels: list[tuple[str, Any, dict[str, Any]]] = [("crop map", _rgba_lut(table)[np.clip(codes, 0, 255)], {})]
    for layer, title in ((confidence, "confidence"), (uncertainty, None)):
        if layer is not None:
            arr = np.ma.masked_invalid(_read_decimated(Path(layer), max_size)[0].astype(np.float32))
            label = title or Path(layer).name.split(".")[-2]
            panels.append((label + (" (1 = certain)" if title else " (1 = uncertain)"), arr,
                           {"cmap": "viridis" if title else "magma_r", "vmin": 0.0, "vmax": 1.0}))
    if truth is not None:
        tcodes = np.asarray(_read_decimated(Path(truth), max_size)[0].filled(0), np.int64)
        names = {c: n for c, n, _ in table}
        err = error_map(codes, tcodes, names, raster_class_names(truth) or names)
        lut = _rgba_lut([(v, n, c) for v, n, c in _ERROR_CLASSES])
        panels.append((f"errors vs {Path(truth).name}", lut[err], {}))
    h, w = codes.shape
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.4 * h / max(w, 1) + 1.6), dpi=100,
                             sharex=True, sharey=True, squeeze=False, layout="constrained")
    for ax, (title, arr, style) in zip(axes[0], panels, strict=True):
        im = ax.imshow(arr, interpolation="nearest", extent=extent, **style)
        # A continuous layer's 0..1 scale under the panel; an invisible one under the others
        # keeps every panel the same size.
        bar = fig.colorbar(im if style else ScalarMappable(), ax=ax, location="bottom", shrink=0.8, aspect=25, pad=0.02)
        bar.ax.set_visible(bool(style))
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    present = set(np.unique(codes).tolist())
    handles = [Patch(facecolor=c, edgecolor="0.3", label=n) for code, n, c in table if code in present]
    if truth is not None:
        handles += [Patch(facecolor=c, edgecolor="0.3", label=f"error map: {n}") for _, n, c in _ERROR_CLASSES]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(6, max(1, len(handles))), frameon=False,
               fontsize=8)
    return _savefig(fig)


def rgb_and_valid_previews(stack: PathLike, max_size: int = 512) -> tuple[bytes, bytes, str]:
    """PNG bytes of the scene's RGB composite and of the per-date share of valid pixels.

    RGB: bands by name (B04/B03/B02, else red/green/blue), else the stack's first three;
    the per-band median over the dates, 2-98 % stretched. Valid share: pixels with all
    three bands observed, per date (cloud gaps show as short bars). Both from every
    ``step``-th pixel so the read stays bounded by the preview size.

    Returns:
        ``(rgb_png, valid_png, note)`` where the note names the bands and the sampling.
    """
    plt = pyplot()

    from cropseq.io import open_stack
    from cropseq.parcels import median_composite, pick_bands, read_bands, stretch

    cube = open_stack(stack)
    names = [str(v) for v in cube["band"].values]
    bands = pick_bands(names, (("B04", "red"), ("B03", "green"), ("B02", "blue")), 3)
    if len(bands) < 3:  # one- or two-band stacks: grey
        bands = (bands * 3)[:3]
    step = max(1, math.ceil(max(cube.sizes["y"], cube.sizes["x"]) / max_size))
    values = read_bands(cube, bands, step=step)
    rgb = np.moveaxis(stretch(median_composite(cube, bands, values=values)), 0, -1)
    t = cube.rio.transform()
    extent = (t.c, t.c + cube.sizes["x"] * t.a, t.f + cube.sizes["y"] * t.e, t.f)
    fig, ax = plt.subplots(figsize=(6, max(2.5, 6 * rgb.shape[0] / max(rgb.shape[1], 1))), dpi=100)
    ax.imshow(rgb, interpolation="nearest", extent=extent)
    ax.set_title(f"median over {cube.sizes['time']} dates of {', '.join(bands)} (2-98 % stretch)", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.ticklabel_format(useOffset=False, style="plain")
    rgb_png = _savefig(fig)
    share = np.isfinite(values).all(axis=1).mean(axis=(1, 2))
    dates = [str(d)[:10] for d in cube["time"].values]
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(dates)), 3), dpi=100)
    ax.bar(range(len(dates)), 100 * share, color=["#d7191c" if s < 0.5 else "#2b83ba" for s in share])
    ax.set_xticks(range(len(dates)), dates, rotation=90, fontsize=7)
    ax.set_ylim(0, 100)
    ax.set_ylabel("valid pixels (%)")
    ax.set_title("share of valid (cloud-free, observed) pixels per date; red: under 50 %", fontsize=9)
    valid_png = _savefig(fig)
    note = f"bands {', '.join(bands)}" + (f"; every {step}th pixel in each direction" if step > 1 else "")
    return rgb_png, valid_png, note


def _map_section(map_p: Path | None, conf_p: Path | None, unc_p: Path | None, truth_p: Path | None,
                 area_p: Path | None, preview: PathLike | None, conf_png: PathLike | None, size: int) -> str:
    """The crop-map section: side-by-side panels, the previews with legends, the map's grid."""
    figs = []
    if map_p is not None and (conf_p or unc_p or truth_p):
        png = panels_preview(map_p, confidence=conf_p, uncertainty=unc_p, truth=truth_p,
                             max_size=min(size, 512), area_csv=area_p)
        what = "map, confidence" + (", uncertainty" if unc_p else "") + (", errors against the reference" if truth_p else "")
        figs.append(_figure(_img(png, "map panels"), f"{what}: one extent, one legend"))
    for path, out_png, make, alt, caption in (
        (map_p, preview, lambda p: map_preview(p, max_size=size, title="crop map", area_csv=area_p), "crop map preview",
         "class codes with the map's colours and names"),
        (conf_p, conf_png, lambda p: confidence_preview(p, max_size=size, title="confidence"), "confidence preview",
         "probability of the mapped class"),
    ):
        if path is None:
            continue
        png = make(path)
        if out_png is not None:
            with atomic_path(out_png) as tmp:
                Path(tmp).write_bytes(png)
        figs.append(_figure(_img(png, alt), f"{path.name}: {caption}"))
    body = f'<div class="figs">{"".join(figs)}</div>'
    if map_p is not None:
        import rasterio

        with rasterio.open(map_p) as src:
            info = {
                "file": map_p.name, "size": f"{src.width} x {src.height} px",
                "pixel size": f"{abs(src.transform.a):g} x {abs(src.transform.e):g}",
                "CRS": _crs_label(src.crs),
                "overviews": ", ".join(map(str, src.overviews(1))) or "none",
                "nodata": "none" if src.nodata is None else f"{src.nodata:g}",
            }
        body += _kv_table(info)
    return body


def _scene_section(stack: Path, size: int) -> str:
    """The image: RGB composite and per-date valid share."""
    rgb, valid, note = rgb_and_valid_previews(stack, max_size=min(size, 768))
    return ('<div class="figs">' + _figure(_img(rgb, "RGB composite"), f"RGB composite ({note})")
            + _figure(_img(valid, "valid pixels per date"), "valid pixels per date") + "</div>")


def _parcels_section(parcels_map: Path | None, metrics: Any, size: int) -> str:
    """The parcel map preview and, when scored, the share of reference parcels classed right."""
    body = ""
    if metrics is not None:
        share, ci = metrics.get("share_right"), metrics.get("ci95")
        body += (f"<p>Majority class right for <b>{_fmt(metrics.get('right'))} of {_fmt(metrics.get('scored'))}</b> "
                 f"reference parcels: <b>{_fmt(share)}{_ci(ci)}</b> (95 % Wilson interval; reference: "
                 f"{_esc(metrics.get('reference'))}; {_fmt(metrics.get('n_parcels'))} parcels in all).</p>")
        rows = [[_esc(name), _fmt(c.get("fields")), _fmt(c.get("right")), _fmt(c.get("share_right"))]
                for name, c in (metrics.get("per_class") or {}).items()]
        if rows:
            body += _table(["reference class", "parcels", "right", "share right"], rows, "num")
    if parcels_map is not None:
        png = map_preview(parcels_map, max_size=size, title="parcel map (majority class per parcel)")
        body += f'<div class="figs">{_figure(_img(png, "parcel map"), parcels_map.name)}</div>'
    return body


# --------------------------------------------------------------------------- the report
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1150px;
padding:1.5em 2em;color:#222;line-height:1.45}
h1{margin-bottom:.1em}h2{border-bottom:2px solid #1b7837;padding-bottom:.2em;margin-top:1.8em}
.sub{color:#666;margin-top:0}.note{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;vertical-align:top}th{background:#f0f4f0}
table.num td{text-align:right}table.num td:first-child{text-align:left}
table.kv td{text-align:left}table.kv table{margin:0}
.cards{display:flex;flex-wrap:wrap;gap:1em;margin:1em 0}
.card{border:1px solid #cde0cd;background:#f6fbf6;border-radius:6px;padding:.7em 1.1em;min-width:11em}
.card .v{font-size:1.7em;font-weight:600;color:#1b7837}.card .k{color:#555;font-size:.9em}
.figs{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.figs figure{margin:0;max-width:100%}img.fig{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9em;text-align:center}
details{margin:.5em 0}summary{cursor:pointer;color:#1b7837}
code,pre{font-size:.88em}pre{background:#f7f7f7;padding:.6em;overflow:auto;max-height:30em}
"""


def _figure(img_html: str, caption: str) -> str:
    return f"<figure>{img_html}<figcaption>{_esc(caption)}</figcaption></figure>"


@dataclass(frozen=True)
class _Inputs:
    """The report's input files, each checked to exist (``None``: not given)."""

    metrics: dict[str, Path | None]
    confusion: dict[str, Path | None]
    curves: list[Path]
    history: Path | None
    map: Path | None
    confidence: Path | None
    area: Path | None
    map_metrics: Path | None
    map_confusion: Path | None
    assess: Path | None
    assess_plot: Path | None
    stack_summary: Path | None
    uncertainty: Path | None
    truth: Path | None
    stack: Path | None
    parcels: Path | None
    parcels_metrics: Path | None
    run_config: Path | None
    benchmarks: Path | None


@dataclass(frozen=True)
class _Results:
    """The JSON results read from the inputs: model metrics, map metrics, assessment."""

    models: dict[str, Any]
    map: Any
    assess: Any


@dataclass
class _Sections:
    """The report's sections in the order they are added, and the navigation bar."""

    sections: list[str] = field(default_factory=list)
    nav: list[tuple[str, str]] = field(default_factory=list)

    def add(self, anchor: str, heading: str, body: str) -> None:
        """Append one ``<section>`` and its entry of the navigation bar."""
        self.nav.append((anchor, heading))
        self.sections.append(f'<section id="{anchor}"><h2>{_esc(heading)}</h2>\n{body}\n</section>')


def _curve_paths(curves: Sequence[PathLike] | PathLike | None) -> list[Path]:
    """The training-curve PNG(s), one path or several, each checked to exist."""
    if curves is None:
        return []
    if isinstance(curves, str | os.PathLike):
        return [_need(curves, "training curves")]  # type: ignore[list-item]
    return [_need(c, "training curves") for c in curves]  # type: ignore[misc]


def _read_results(inp: _Inputs) -> _Results:
    """Read the metrics and assessment JSONs; an assess JSON without per-class table is refused."""
    models = {k: _read_json(p, f"metrics of {k}") for k, p in inp.metrics.items() if p}
    mm = _read_json(inp.map_metrics, "map metrics") if inp.map_metrics else None
    aa = _read_json(inp.assess, "accuracy assessment") if inp.assess else None
    if aa is not None and not isinstance(aa.get("per_class"), Mapping):
        raise CropseqError("not a cropseq assess JSON (no per_class table)", inp.assess)
    return _Results(models, mm, aa)


def _card_pct(p: Any, ci: Sequence[float] | None) -> str:
    """A headline percentage with its interval in small print."""
    return _pct(p) + (f"<small>{_ci(ci, pct=True)}</small>" if ci else "")


def _cards_html(res: _Results, area_p: Path | None) -> str:
    """The headline cards: assessed OA, map OA, each model's test OA, classified area."""
    cards = []
    aa, mm = res.assess, res.map
    if aa is not None:
        oa = aa.get("overall_accuracy") or {}
        whose = "map overall accuracy" if estimates_areas(aa) else "OA of the sample points (not a map estimate)"
        cards.append((_card_pct(oa.get("estimate"), oa.get("ci95")), f"{whose} ({_fmt(aa.get('n_samples'))} reference points)"))
    if mm is not None:
        ref = _esc(Path(str(mm.get("truth", ""))).name) if mm.get("truth") else "the reference"
        oa_m = _metric(mm, "overall_accuracy", "oa")
        cards.append((_card_pct(oa_m, _wilson(oa_m, mm.get("n"))), f"map OA vs {ref}"))
    for name, m in res.models.items():
        oa_m = _metric(m, "overall_accuracy", "oa")
        cards.append((_card_pct(oa_m, _wilson(oa_m, m.get("n"))), f"{_esc(name)}: test-split OA"))
    if area_p is not None:
        rows = _read_csv(area_p)
        ha = sum(float(r.get("hectares") or 0) for r in rows)
        cards.append((f"{ha:,.0f} ha", f"classified area, {len(rows)} classes"))
    return "".join(f'<div class="card"><div class="v">{v}</div><div class="k">{k}</div></div>' for v, k in cards)


def _add_product_sections(out: _Sections, inp: _Inputs, preview: PathLike | None,
                          conf_png: PathLike | None, size: int) -> None:
    """The map (writing the preview PNGs asked for), the image and the parcel sections."""
    if inp.map is not None or inp.confidence is not None:
        body = _map_section(inp.map, inp.confidence, inp.uncertainty, inp.truth, inp.area, preview, conf_png, size)
        out.add("map", "Crop map", body)
    if inp.stack is not None:
        out.add("scene", "The image", _scene_section(inp.stack, size))
    if inp.parcels is not None or inp.parcels_metrics is not None:
        pm = _read_json(inp.parcels_metrics, "parcel metrics") if inp.parcels_metrics else None
        out.add("parcels", "Parcel map", _parcels_section(inp.parcels, pm, size))


def _area_body(area_p: Path, aa: Any) -> str:
    """Mapped areas, beside the estimated ones when the assessment estimates areas."""
    body = _area_table(area_p, aa if estimates_areas(aa) else None)
    if aa is not None and not estimates_areas(aa):
        body += f"<p class='note'>{_esc(_NON_PROBABILITY_CAVEAT)}</p>"
    elif aa is not None:
        body += ("<p class='note'>mapped = pixel counts x pixel area (biased by the map's errors); "
                 "estimated = error-adjusted area from the reference sample with its 95 % interval "
                 "(see Accuracy and area).</p>")
        if aa.get("design") == "simple_random":
            body += f"<p class='note'>{_esc(_SRS_CAVEAT)}</p>"
    return body


def _map_vs_reference_body(mm: Mapping[str, Any], map_cm_p: Path | None) -> str:
    """The map's metrics against its held-out reference, with what was left out."""
    body = _summary_table({"map": mm}) + _per_class_table({"map": mm})
    notes = ["intervals: 95 % Wilson, treating the scored pixels as independent (neighbouring "
             "pixels of a field are not, so read them as lower bounds of the uncertainty)"]
    if mm.get("truth"):
        notes.append(f"reference: {_esc(mm['truth'])}")
    if mm.get("n_unclassified"):
        notes.append(f"{_fmt(mm['n_unclassified'])} reference pixels fall on unclassified map pixels (left out)")
    if mm.get("n_outside"):
        notes.append(f"{_fmt(mm['n_outside'])} reference items outside the map (left out)")
    if notes:
        body += "<p class='note'>" + "; ".join(notes) + "</p>"
    if map_cm_p is not None:
        body += f'<div class="figs">{_figure(_img(map_cm_p, "map confusion matrix"), "map vs reference (rows = reference)")}</div>'
    return body


def _models_body(models: Mapping[str, Any], confusion: Mapping[str, Path | None]) -> str:
    """The models' test-split metrics (summary, per class) and confusion matrices."""
    body = ("<p>Each model scored on the held-out test split (samples of fields never seen in training); "
            "accuracies with their 95 % Wilson intervals.</p>")
    body += _summary_table(models)
    body += "<h3>Per class (UA = user's accuracy, PA = producer's accuracy)</h3>" + _per_class_table(models)
    if confusion:
        body += '<div class="figs">' + "".join(
            _figure(_img(p, f"confusion matrix {k}"), f"{k} (rows = reference, columns = predicted)")
            for k, p in confusion.items() if p
        ) + "</div>"
    return body


def _add_accuracy_sections(out: _Sections, inp: _Inputs, res: _Results) -> None:
    """Areas, accuracy and area from the sample, map vs reference, the models."""
    aa, mm = res.assess, res.map
    if inp.area is not None:
        out.add("area", "Area per class", _area_body(inp.area, aa))
    if aa is not None:
        source = f"Reference: {Path(str(aa['reference'])).name}." if aa.get("reference") else ""
        heading = "Accuracy and area (95 % intervals)" if estimates_areas(aa) else "Accuracy of the sample points (95 % intervals)"
        out.add("assess", heading, _assessment_section(aa, inp.assess_plot, source, held_out=mm is not None))
    if mm is not None:
        out.add("truth", "Map vs held-out reference", _map_vs_reference_body(mm, inp.map_confusion))
    if res.models:
        out.add("models", "Models on the test split", _models_body(res.models, inp.confusion))


def _stack_summary_html(stack_p: Path) -> str:
    """The stack summary JSON as a table, its CRS by name (the WKT stays in the JSON)."""
    summary = _read_json(stack_p, "stack summary")
    if isinstance(summary, Mapping) and (summary.get("crs") or summary.get("crs_wkt")):
        crs = _crs_label(summary.get("crs_wkt") or summary.get("crs"))
        summary = {k: (crs if k == "crs" else v) for k, v in summary.items() if k not in ("crs_name", "crs_wkt")}
    return "<h3>Image stack</h3>" + (_kv_table(summary) if isinstance(summary, Mapping) else f"<pre>{_esc(summary)}</pre>")


def _config_html(config_p: Path) -> str:
    """The run configuration (JSON, else YAML) as a table, and the raw text folded away."""
    text = config_p.read_text(encoding="utf-8")
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError:
        import yaml

        try:
            cfg = yaml.safe_load(text)
        except yaml.YAMLError:
            cfg = None
    body = "<h3>Configuration</h3>"
    if isinstance(cfg, Mapping):
        body += _kv_table(cfg)
    return body + f"<details><summary>raw configuration</summary><pre>{_esc(text)}</pre></details>"


def _add_run_sections(out: _Sections, inp: _Inputs) -> None:
    """Training (curves, history), inputs (stack summary, configuration) and timings."""
    if inp.curves or inp.history is not None:
        body = ""
        if inp.curves:
            body += '<div class="figs">' + "".join(_figure(_img(p, "training curves"), p.name) for p in inp.curves) + "</div>"
        if inp.history is not None:
            body += _history_table(inp.history)
        out.add("training", "Training", body)
    if inp.stack_summary is not None or inp.run_config is not None:
        body = _stack_summary_html(inp.stack_summary) if inp.stack_summary is not None else ""
        if inp.run_config is not None:
            body += _config_html(inp.run_config)
        out.add("inputs", "Inputs", body)
    if inp.benchmarks is not None:
        rows = read_benchmarks(inp.benchmarks)
        body = _timing_table(rows) if rows else "<p>No benchmark files found.</p>"
        body += "<p class='note'>From the Snakemake benchmark files; jobs may have run in parallel, so the sum exceeds the wall time of the run.</p>"
        out.add("timings", "Timings", body)


def _document(title: str, description: str, cards_html: str, report: _Sections) -> str:
    """The whole HTML page: title, version and time, cards, navigation, sections."""
    from cropseq import __version__

    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    nav_html = " · ".join(f'<a href="#{a}">{_esc(h)}</a>' for a, h in report.nav)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{_esc(title)}</h1>
<p class="sub">cropseq {_esc(__version__)} · {_esc(now)}</p>
{f"<p>{_esc(description)}</p>" if description.strip() else ""}
<div class="cards">{cards_html}</div>
<nav>{nav_html}</nav>
{"".join(report.sections)}
</body></html>
"""


def build_report(
    out: PathLike,
    *,
    title: str = "cropseq report",
    description: str = "",
    metrics: Mapping[str, PathLike] | None = None,
    confusion: Mapping[str, PathLike] | None = None,
    curves: Sequence[PathLike] | PathLike | None = None,
    history: PathLike | None = None,
    map_path: PathLike | None = None,
    confidence: PathLike | None = None,
    area: PathLike | None = None,
    map_metrics: PathLike | None = None,
    map_confusion: PathLike | None = None,
    assess: PathLike | None = None,
    assess_plot: PathLike | None = None,
    stack_summary: PathLike | None = None,
    run_config: PathLike | None = None,
    benchmarks: PathLike | None = None,
    preview: PathLike | None = None,
    confidence_preview_png: PathLike | None = None,
    preview_size: int = 1024,
    uncertainty: PathLike | None = None,
    truth: PathLike | None = None,
    stack: PathLike | None = None,
    parcels: PathLike | None = None,
    parcels_metrics: PathLike | None = None,
) -> Path:
    """Write one self-contained HTML report to ``out`` (atomically) and return its path.

    Args:
        out: The HTML file to write.
        title: Report title.
        description: Free text shown under the title (e.g. what the scene is).
        metrics: ``{model name: metrics JSON}`` of the models on the test split
            (``cropseq evaluate --samples``); the first is the headline model.
        confusion: ``{model name: confusion-matrix PNG}``.
        curves: Training-curve PNG(s) (``cropseq train`` writes ``<stem>.curves.png``).
        history: Training history CSV (``<stem>.history.csv``).
        map_path: The crop-map COG (preview with legend).
        confidence: The confidence COG (preview with colour bar).
        area: Area CSV (``code,name,pixels,hectares,share``).
        map_metrics: Metrics JSON of the map against its held-out reference
            (``cropseq evaluate --map``).
        map_confusion: Its confusion-matrix PNG.
        assess: ``cropseq assess`` JSON: accuracy and error-adjusted areas with 95 %
            intervals; the area table then shows the estimates beside the mapped areas.
        assess_plot: Its mapped-vs-estimated area PNG.
        stack_summary: ``cropseq inspect --json`` output.
        run_config: JSON (or YAML) of the run's configuration.
        benchmarks: Folder of Snakemake benchmark ``*.tsv`` files (timings per stage).
        preview: Also write the crop-map preview PNG here.
        confidence_preview_png: Also write the confidence preview PNG here.
        preview_size: Longest side in pixels of the map previews.
        uncertainty: An uncertainty COG (``predict --uncertainty``), shown beside the map.
        truth: A reference class raster on the map's grid: the error map beside the map.
        stack: The image stack: RGB composite and per-date share of valid pixels.
        parcels: The parcel map COG (``cropseq parcels``).
        parcels_metrics: Its scoring JSON (share of reference parcels classed right).

    Raises:
        CropseqError: an input that was given does not exist or cannot be read, or an
            output folder does not exist.
    """
    out = check_writable(out)
    for p in (preview, confidence_preview_png):
        if p is not None:
            check_writable(p)
    # Every given input is checked before anything is read or drawn, in this order.
    inp = _Inputs(
        metrics={str(k): _need(v, f"metrics of {k}") for k, v in (metrics or {}).items()},
        confusion={str(k): _need(v, f"confusion matrix of {k}") for k, v in (confusion or {}).items()},
        curves=_curve_paths(curves), history=_need(history, "training history"),
        map=_need(map_path, "crop map"), confidence=_need(confidence, "confidence map"),
        area=_need(area, "area statistics"), map_metrics=_need(map_metrics, "map metrics"),
        map_confusion=_need(map_confusion, "map confusion matrix"), assess=_need(assess, "accuracy assessment"),
        assess_plot=_need(assess_plot, "area plot"), stack_summary=_need(stack_summary, "stack summary"),
        uncertainty=_need(uncertainty, "uncertainty map"), truth=_need(truth, "reference raster"),
        stack=_need(stack, "image stack"), parcels=_need(parcels, "parcel map"),
        parcels_metrics=_need(parcels_metrics, "parcel metrics"), run_config=_need(run_config, "run configuration"),
        benchmarks=Path(benchmarks) if benchmarks is not None else None,
    )
    res = _read_results(inp)
    cards_html = _cards_html(res, inp.area)
    report = _Sections()
    _add_product_sections(report, inp, preview, confidence_preview_png, preview_size)
    _add_accuracy_sections(report, inp, res)
    _add_run_sections(report, inp)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(_document(title, description, cards_html, report), encoding="utf-8")
    return out
