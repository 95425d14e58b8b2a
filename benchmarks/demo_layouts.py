"""The demo map through the STAC path beside the one-grid layout, over several training seeds.

Issue 13 asks that the demo, now read through STAC (per-band COGs at 10 and 20 m, the SCL cloud
mask at 20 m), map the held-out test fields as well as the one-grid demo did. One deep run per
layout cannot say it: the deep model's seed moves the map's accuracy by about as much as the
difference seen. This script runs the workflow's steps with the CLI, for each layout, one scene
(same simulation seed), one samples table and split, and several training seeds:

    simulate (--layout) -> samples (patch 3, 25 per field) -> split (seed 0)
    -> train (--preset, --seed S) -> predict -> evaluate --map ... --truth test_truth.tif

and the RandomForest (seed 0) beside them. It prints and writes (``--json``) the map's overall
accuracy and kappa against the simulated truth of the held-out fields, per layout and seed, with
the mean and standard deviation over seeds.

Usage::

    python benchmarks/demo_layouts.py                           # fast preset, seeds 0 1 2
    python benchmarks/demo_layouts.py --preset accurate --epochs 8 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LAYOUTS = ("one-grid", "stac")


def _run(*args: str) -> None:
    """Run one ``cropseq`` command; stop with its output when it fails."""
    cmd = [sys.executable, "-m", "cropseq", "--threads", "2", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")


def _prepare(root: Path, layout: str) -> Path:
    """Simulate the demo in ``layout`` and cut its samples and split; returns the scene folder."""
    scene = root / layout / "scene"
    _run("simulate", str(scene), *(["--layout", "one-grid"] if layout == "one-grid" else []))
    t = root / layout
    _run("samples", "--stack", str(scene / "stack.yaml"), "--labels", str(scene / "labels.gpkg"),
         "--out", str(t / "samples.parquet"), "--patch", "3", "--max-per-group", "25")  # fmt: skip
    _run("split", "--samples", str(t / "samples.parquet"), "--train", str(t / "train.parquet"),
         "--val", str(t / "val.parquet"), "--test", str(t / "test.parquet"), "--test-fraction", "0.2",
         "--val-fraction", "0.2", "--seed", "0")  # fmt: skip
    return scene


def _score_map(root: Path, layout: str, model: Path, name: str) -> dict[str, Any]:
    """Predict the scene with ``model`` and score the map against ``test_truth.tif``."""
    t, scene = root / layout, root / layout / "scene"
    out = t / f"{name}.tif"
    t0 = time.perf_counter()
    _run("predict", "--model", str(model), "--stack", str(scene / "stack.yaml"), "--out", str(out), "--quiet")
    predict_s = time.perf_counter() - t0
    metrics = t / f"{name}.metrics.json"
    _run("evaluate", "--model", str(model), "--map", str(out), "--truth", str(scene / "test_truth.tif"), "--out", str(metrics))
    m = json.loads(metrics.read_text())
    return {"oa": m["overall_accuracy"], "kappa": m["kappa"], "predict_s": round(predict_s, 1)}


def _train(root: Path, layout: str, name: str, extra: list[str]) -> tuple[Path, float]:
    """Train one model on the layout's training table; returns its path and wall seconds."""
    t = root / layout
    model = t / (f"{name}.skops" if "rf" in extra else f"{name}.pt")
    t0 = time.perf_counter()
    _run("train", "--samples", str(t / "train.parquet"), "--val-samples", str(t / "val.parquet"), "--out", str(model), "--quiet", *extra)
    return model, time.perf_counter() - t0


def run(root: Path, preset: str, epochs: int | None, seeds: list[int], layouts: list[str]) -> dict[str, Any]:
    """Every layout asked for, the RandomForest and every seed of the deep model."""
    rows: dict[str, Any] = {}
    for layout in layouts:
        _prepare(root, layout)
        rf, rf_s = _train(root, layout, "rf", ["--arch", "rf", "--seed", "0"])
        rows[layout] = {"rf": {**_score_map(root, layout, rf, "rf"), "train_s": round(rf_s, 1)}, "deep": {}}
        for s in seeds:
            extra = ["--preset", preset, "--seed", str(s), *(["--epochs", str(epochs)] if epochs else [])]
            model, train_s = _train(root, layout, f"deep{s}", extra)
            rows[layout]["deep"][s] = {**_score_map(root, layout, model, f"deep{s}"), "train_s": round(train_s, 1)}
            print(layout, "seed", s, rows[layout]["deep"][s], flush=True)
        oas = [r["oa"] for r in rows[layout]["deep"].values()]
        rows[layout]["deep_mean"] = statistics.fmean(oas)
        rows[layout]["deep_sd"] = statistics.stdev(oas) if len(oas) > 1 else 0.0
    return rows


def main() -> None:
    """Parse arguments, run, print the table and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="fast", choices=("fast", "accurate"))
    ap.add_argument("--epochs", type=int, default=None, help="override the preset's epochs (the workflow's demo: 8)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cropseq-layouts-") as tmp:
        rows = run(Path(tmp), a.preset, a.epochs, a.seeds, a.layouts)
    print(f"\n| layout | deep map OA per seed ({a.preset}) | mean ± sd | RandomForest map OA |\n|---|---|---|---|")
    for layout, r in rows.items():
        per_seed = ", ".join(f"{d['oa']:.4f}" for d in r["deep"].values())
        print(f"| {layout} | {per_seed} | {r['deep_mean']:.4f} ± {r['deep_sd']:.4f} | {r['rf']['oa']:.4f} |")
    if a.json:
        a.json.write_text(json.dumps({"preset": a.preset, "epochs": a.epochs, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
