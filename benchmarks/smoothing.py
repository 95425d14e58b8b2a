"""Spatial smoothing measured: OA and isolated-pixel share before/after ``--smooth bayes|edge``.

For each workflow scene folder given (outputs of ``snakemake``: ``models/``, ``run_config.json``
and the reference the workflow scores the map against), each model there (deep ``.pt`` and
RandomForest ``.skops``) maps the scene three times with ``cropseq predict`` (``--smooth none``,
``bayes``, ``edge``; default window 5, variance 10, edge sigma 0.5). Each map is scored against
the scene's held-out reference (a demo: ``test_truth.tif``, the fields never in a training
table; a scene without a truth raster, such as dtwSat: the held-out test points
``samples/test_points.csv``) with :func:`cropseq.evaluation.score_map`, and its isolated-pixel
share (a classified pixel whose 8 neighbours all carry another class) is computed with
:func:`cropseq.smoothing.isolated_share`. Prints one table; writes it as JSON too.

    snakemake --cores 2                                  # results/demo (the default config)
    snakemake --cores 2 --configfile config/dtwsat.yaml  # results/dtwsat
    python benchmarks/smoothing.py results/demo results/dtwsat [--models deep,rf] [--threads 2]

A tiny check of the script itself: ``snakemake --cores 2 --configfile config/test.yaml`` then
``python benchmarks/smoothing.py results/tiny``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out" / "smoothing.json"
MODEL_FILES = {"deep": "deep.pt", "rf": "rf.skops"}
METHODS = ("none", "bayes", "edge")


def _resolve(path: str, folder: Path) -> Path:
    """A path of run_config.json: relative to the workflow's working directory (the first
    folder above the scene folder where it exists), else to the repository."""
    p = Path(path)
    if p.is_absolute():
        return p
    for base in (*folder.parents, REPO):
        if (base / p).exists():
            return base / p
    return p


def scene_inputs(folder: Path) -> dict:
    """Stack, season, reference and class column of a workflow scene (from run_config.json)."""
    cfg = json.loads((folder / "run_config.json").read_text())["scene"]
    truth = cfg.get("truth")
    cfg["stack"] = _resolve(cfg["stack"], folder)
    if truth and str(truth).lower().endswith((".tif", ".tiff", ".vrt")):
        reference, column = _resolve(truth, folder), "label"
    else:
        reference, column = folder / "samples" / "test_points.csv", "label"
    return {"stack": cfg["stack"], "start": cfg.get("start"), "end": cfg.get("end"),
            "reference": reference, "class_column": column}


def predict(model: Path, scene: dict, out: Path, smooth: str, threads: int) -> float:
    """``cropseq predict`` one map (no side outputs beyond the defaults); returns seconds."""
    cmd = [sys.executable, "-m", "cropseq", "predict", "--model", str(model), "--stack", str(scene["stack"]),
           "--out", str(out), "--smooth", smooth, "--workers", "0", "--threads", str(threads), "--quiet",
           "--no-stac", "--device", "auto"]
    for flag, key in (("--start", "start"), ("--end", "end")):
        if scene[key]:
            cmd += [flag, str(scene[key])]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"cropseq predict failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return time.perf_counter() - t0


def measure(folder: Path, models: list[str], threads: int, tmp: Path) -> list[dict]:
    """Rows ``{scene, model, smooth, oa, n, isolated, seconds}`` of one scene folder."""
    from cropseq.evaluation import score_map
    from cropseq.smoothing import isolated_share

    scene = scene_inputs(folder)
    rows = []
    for name in models:
        model = folder / "models" / MODEL_FILES[name]
        if not model.is_file():
            print(f"skip {folder.name}/{name}: no {model}", file=sys.stderr)
            continue
        for smooth in METHODS:
            out = tmp / f"{folder.name}_{name}_{smooth}.tif"
            seconds = predict(model, scene, out, smooth, threads)
            m = score_map(out, scene["reference"], class_column=scene["class_column"])
            with rasterio.open(out) as src:
                iso = isolated_share(src.read(1))
            rows.append({"scene": folder.name, "model": name, "smooth": smooth, "oa": m["overall_accuracy"],
                         "n": m["n"], "isolated": iso, "seconds": round(seconds, 1),
                         "reference": scene["reference"].name})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'scene':<10} {'model':<6} {'smooth':<7} {'OA':>7} {'n':>8} {'isolated px':>12} {'s':>7}  reference")
    for r in rows:
        print(f"{r['scene']:<10} {r['model']:<6} {r['smooth']:<7} {r['oa']:>7.4f} {r['n']:>8} "
              f"{100 * r['isolated']:>11.2f}% {r['seconds']:>7.1f}  {r['reference']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", nargs="+", type=Path, help="workflow scene folders (results/demo, results/dtwsat)")
    ap.add_argument("--models", default="deep,rf", help="comma-separated: deep, rf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="cropseq-smoothing-") as tmp:
        for folder in args.scenes:
            rows += measure(folder.resolve(), [m.strip() for m in args.models.split(",") if m.strip()], args.threads,
                            Path(tmp))
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "methods": list(METHODS),
                                    "isolated": "share of classified pixels whose 8 neighbours all carry another class"},
                                   indent=2, default=float) + "\n")
    print(f"wrote {args.out}")
    return 0 if rows else 1


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
