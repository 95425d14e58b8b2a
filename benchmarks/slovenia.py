"""The eo-learn Slovenia patch end to end: a map trained on one half of ``lulc.tif``, scored on the other.

Usage::

    python benchmarks/slovenia.py [--epochs 15] [--keep DIR]

Data: ``../shared/data/eolearn_testeopatch_slovenia/converted`` (101 x 100 px, 10 m, EPSG:32633):
``ndvi_68dates.tif`` (68 dates as band descriptions; 2015-12-08 holds two acquisitions, 10:04
and 10:11, kept as two time steps since the descriptions are full timestamps), its cloud mask
``clm_68dates.tif`` given *by value* (``mask: {band: CLM, invalid: [1]}``), and the land-cover
raster ``lulc.tif`` (codes 1 cultivated land, 2 forest, 3 grassland, 4 shrubland, 8 artificial
surface; 0 = no label).

Every step is the real ``cropseq`` command (run in process): ``inspect``; ``samples --labels
west.tif`` (the west half's labelled pixels, grouped by patch; the east half is 0); ``train``
(a small bidirectional GRU: hidden 16, 1 layer, ``--epochs``; and ``--arch rf``); ``predict``
over the whole patch; ``evaluate --map MAP --truth east.tif`` (the held-out east half's
pixels). Prints a Markdown table of OA, kappa and macro F1 per model.

Land cover, not crops, and mostly forest (7601 of 9945 labelled pixels; 11 cultivated): the
numbers check the path real data take, not crop-mapping skill.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cropseq.cli import main as cropseq  # noqa: E402

SHARED_DATA = Path(os.environ.get("CROPSEQ_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
DATA = SHARED_DATA / "eolearn_testeopatch_slovenia" / "converted"
#: eo-learn's LULC codes present in the patch (SOURCE.md).
CLASSES = [
    {"code": 1, "name": "cultivated land", "color": "#fdae61"},
    {"code": 2, "name": "forest", "color": "#1b7837"},
    {"code": 3, "name": "grassland", "color": "#d9ef8b"},
    {"code": 4, "name": "shrubland", "color": "#a6761d"},
    {"code": 8, "name": "artificial surface", "color": "#8c8c8c"},
]
#: The small deep model (CPU, seconds per epoch on this patch).
DEEP_CONFIG = {"hidden_size": 16, "num_layers": 1, "batch_size": 128, "device": "cpu", "threads": 1, "plot": ""}


def _run(*args: Any) -> None:
    rc = cropseq([str(a) for a in args])
    if rc != 0:
        raise SystemExit(f"cropseq {' '.join(map(str, args))} failed (exit {rc})")


def write_inputs(work: Path, data: Path = DATA) -> tuple[Path, Path, Path]:
    """``stack.yaml`` (NDVI, cloud mask by value) and the west/east label halves in ``work``."""
    import rasterio

    (work / "stack.yaml").write_text(yaml.safe_dump({
        "layout": "per-band",
        "bands": {"NDVI": str(data / "ndvi_68dates.tif"), "CLM": str(data / "clm_68dates.tif")},
        "dates": "descriptions",
        "mask": {"band": "CLM", "invalid": [1]},
    }))  # fmt: skip
    with rasterio.open(data / "lulc.tif") as src:
        lulc, profile = src.read(1), src.profile
    half = lulc.shape[1] // 2
    for name, keep in (("west", slice(0, half)), ("east", slice(half, None))):
        part = np.zeros_like(lulc)
        part[:, keep] = lulc[:, keep]
        with rasterio.open(work / f"{name}.tif", "w", **profile) as dst:
            dst.write(part, 1)
    (work / "classes.yaml").write_text(yaml.safe_dump({"classes": CLASSES}, sort_keys=False))
    return work / "stack.yaml", work / "west.tif", work / "east.tif"


def run(work: Path, data: Path = DATA, epochs: int = 15, seed: int = 0) -> dict[str, Any]:
    """Run the whole chain in ``work``; returns ``{summary, samples, models: {name: metrics}}``."""
    stack, west, east = write_inputs(work, data)
    from cropseq.io import open_stack, stack_summary

    summary = stack_summary(open_stack(stack))
    _run("samples", "--stack", stack, "--labels", west, "--out", work / "west.csv")
    (work / "deep.yaml").write_text(yaml.safe_dump({**DEEP_CONFIG, "seed": seed}))
    models = {"deep (BiGRU h16)": ("train", "--samples", work / "west.csv", "--out", work / "deep.pt",
                                    "--config", work / "deep.yaml", "--epochs", epochs, "--quiet"),
              "RandomForest": ("train", "--samples", work / "west.csv", "--out", work / "rf.skops", "--arch", "rf",
                               "--seed", seed, "--quiet")}  # fmt: skip
    out: dict[str, Any] = {"summary": summary, "models": {}}
    for name, train in models.items():
        t0 = time.perf_counter()
        _run(*train)
        model = Path(train[4])
        _run("predict", "--model", model, "--stack", stack, "--out", work / f"{model.stem}.map.tif", "--quiet")
        _run("evaluate", "--map", work / f"{model.stem}.map.tif", "--truth", east, "--out", work / f"{model.stem}.json")
        metrics = json.loads((work / f"{model.stem}.json").read_text())
        metrics["seconds"] = time.perf_counter() - t0
        out["models"][name] = metrics
    import pandas as pd

    table = pd.read_csv(work / "west.csv")
    out["samples"] = {"train_px": int(table["sample_id"].nunique()), "patches": int(table["group"].nunique())}
    return out


def table(result: dict[str, Any]) -> str:
    """The Markdown table of the run."""
    lines = ["| model | OA | kappa | macro F1 | east px scored | train+predict+score s |", "|---|---|---|---|---|---|"]
    for name, m in result["models"].items():
        lines.append(f"| {name} | {m['overall_accuracy']:.3f} | {m['kappa']:.3f} | {m['macro_f1']:.3f} | {m['n']} | "
                     f"{m['seconds']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    """Command line: run and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15, help="Deep model epochs (default 15).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="Folder to keep the outputs in (default: a temporary one).")
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"eo-learn Slovenia data not found at {DATA}")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(work, epochs=args.epochs, seed=args.seed)
    s = result["summary"]
    print(f"stack: {len(s['dates'])} dates {s['dates'][0]} .. {s['dates'][-1]}, bands {', '.join(s['bands'])}, "
          f"{100 * s['missing_fraction']['NDVI']:.1f} % NDVI masked as cloud (CLM = 1)")  # fmt: skip
    print(f"training: {result['samples']['train_px']} labelled west-half pixels in {result['samples']['patches']} patches; "
          "scored on the east half's labelled pixels\n")  # fmt: skip
    print(table(result))


if __name__ == "__main__":
    main()
