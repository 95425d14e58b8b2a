"""Dense (segmentation) models against the per-pixel default and the RandomForest: maps, scores, isolated pixels.

Usage::

    python benchmarks/dense.py [--scenes slovenia,demo] [--models gru,convlstm,pixel,rf] [--threads 1] [--keep DIR]

Two scenes, four models each, every step the real ``cropseq`` command (run in process):

- **slovenia**: the eo-learn patch as ``benchmarks/slovenia.py`` prepares it (NDVI, 68 dates,
  cloud mask by value; ``lulc.tif`` cut in two): trained on the west half's labels, scored on
  the east half's (``evaluate --map --truth east.tif``).
- **demo**: ``cropseq simulate DIR --size 256 --dates 24 --seed 0`` (256 px, not the workflow's
  512, to fit the shared 2-core machine): trained on ``labels.gpkg``, scored on the held-out
  fields as the workflow does (``evaluate --map --truth test_truth.tif``).

Models: ``train-dense --arch gru --decoder cnn`` and ``--arch convlstm --decoder cnn`` (trained
on the label raster / polygons directly, 20 % of the fields held out for their validation), the
per-pixel default (``cropseq samples`` then ``cropseq train`` with the package defaults but
``--epochs``) and ``cropseq train --arch rf`` on the same samples table. Each map comes from
``cropseq predict`` and gets OA, kappa and macro F1 from ``cropseq evaluate`` and its share of
isolated pixels (:func:`cropseq.smoothing.isolated_share`: a classified pixel whose 8
neighbours all carry another class), and the training command's CPU seconds (``--threads 1``
by default: every command runs on one thread). Settings: :data:`SETTINGS` (about 20 CPU-minutes
for both scenes). Prints a Markdown table; writes ``benchmarks/out/dense/dense.csv`` and
``dense.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import slovenia  # noqa: E402

from cropseq.cli import main as cropseq  # noqa: E402

OUT = HERE / "out" / "dense"
#: Per scene: the dense models' ``train-dense`` options, the samples and per-pixel ``train`` options.
#: Chosen on the validation fields of the training labels only (never the scored half): the
#: package defaults (20 epochs x 64 random windows in batches of 4: 320 AdamW steps, one-cycle
#: rate, sqrt class weights, season pooling, the best epoch on validation) with a 16-px window
#: for the per-pixel GRU core (hidden 16). Validation loss / pixel accuracy of the GRU, mean-max
#: pooling -> season -> season + date augmentation: Slovenia 1.19 / 0.61 -> 1.13 / 0.58 ->
#: 1.07 / 0.63, demo 1.08 / 0.66 -> 0.90 / 0.80 -> 1.07 / 0.78; so the demo trains without the
#: augmentation. The ConvLSTM's halo is ``dates + 2`` px (70 on Slovenia), so a window computes
#: a region of ``window + 2 halo`` px: one or two windows per step.
SETTINGS: dict[str, dict[str, list[Any]]] = {
    "slovenia": {
        "gru": ["--hidden", 16, "--window", 16],
        "convlstm": ["--hidden", 8, "--window", 32, "--epochs", 10, "--windows-per-epoch", 16, "--batch-size", 1,
                     "--lr", 5e-3, "--date-dropout", 0, "--doy-shift", 0],  # fmt: skip
        "samples": [],
        "train": ["--epochs", 30],
    },
    "demo": {
        "gru": ["--hidden", 16, "--window", 16, "--date-dropout", 0, "--doy-shift", 0],
        "convlstm": ["--hidden", 8, "--window", 32, "--epochs", 20, "--windows-per-epoch", 32, "--batch-size", 2,
                     "--lr", 5e-3, "--date-dropout", 0, "--doy-shift", 0],  # fmt: skip
        "samples": ["--patch", 3, "--max-per-group", 100],
        "train": ["--epochs", 30],
    },
}


#: ``cropseq --threads`` of every command (``--threads``): 1 on the shared 2-core machine.
THREADS = [1]


def _run(*args: Any) -> None:
    rc = cropseq(["--threads", str(THREADS[0]), *[str(a) for a in args]])
    if rc != 0:
        raise SystemExit(f"cropseq {' '.join(map(str, args))} failed (exit {rc})")


def prepare(name: str, work: Path) -> dict[str, Path]:
    """The scene's ``stack``, training ``labels``, scoring ``truth`` and ``classes`` table in ``work``."""
    if name == "slovenia":
        stack, west, east = slovenia.write_inputs(work)
        return {"stack": stack, "labels": west, "truth": east, "classes": work / "classes.yaml"}
    _run("simulate", work, "--size", 256, "--dates", 24, "--seed", 0)
    return {"stack": work / "stack.yaml", "labels": work / "labels.gpkg", "truth": work / "test_truth.tif",
            "classes": work / "classes.yaml"}  # fmt: skip


def train_commands(scene: dict[str, Path], settings: dict[str, list[Any]], work: Path) -> dict[str, tuple[str, Path, list[Any]]]:
    """``{key: (model name, model file, cropseq arguments that train it)}``; keys as ``--models`` takes them."""
    dense = ["train-dense", "--stack", scene["stack"], "--labels", scene["labels"], "--classes", scene["classes"],
             "--decoder", "cnn", "--device", "cpu", "--seed", 0, "--quiet"]  # fmt: skip
    table = work / "samples.csv"
    return {
        "gru": ("dense GRU + CNN decoder", work / "gru.pt",
                [*dense, "--arch", "gru", "--out", work / "gru.pt", *settings["gru"]]),
        "convlstm": ("dense ConvLSTM + CNN decoder", work / "convlstm.pt",
                     [*dense, "--arch", "convlstm", "--out", work / "convlstm.pt", *settings["convlstm"]]),
        "pixel": ("per-pixel default", work / "pixel.pt", ["train", "--samples", table, "--out", work / "pixel.pt",
                                                           "--device", "cpu", "--seed", 0, "--quiet", *settings["train"]]),
        "rf": ("RandomForest", work / "rf.skops", ["train", "--samples", table, "--out", work / "rf.skops", "--arch", "rf",
                                                  "--seed", 0, "--quiet"]),
    }


def _dense_record(model: Path) -> dict[str, Any]:
    """``best_epoch`` and ``val_accuracy`` (validation fields) of a dense checkpoint; None for the other models."""
    from cropseq.checkpoint import load_checkpoint

    meta = load_checkpoint(model).meta if model.suffix == ".pt" else {}
    training = meta.get("training", {}) if meta.get("kind") == "dense" else {}
    return {"best_epoch": training.get("best_epoch"), "val_accuracy": training.get("val_accuracy")}


def score(model: Path, scene: dict[str, Path], work: Path) -> dict[str, Any]:
    """Map the scene with ``model``, score the map on the held-out truth; metrics and seconds."""
    import rasterio

    from cropseq.smoothing import isolated_share

    out = work / f"{model.stem}.map.tif"
    t0 = time.perf_counter()
    _run("predict", "--model", model, "--stack", scene["stack"], "--out", out, "--device", "cpu", "--workers", 0,
         "--no-stac", "--quiet")  # fmt: skip
    seconds = time.perf_counter() - t0
    _run("evaluate", "--map", out, "--truth", scene["truth"], "--out", work / f"{model.stem}.json")
    metrics = json.loads((work / f"{model.stem}.json").read_text())
    with rasterio.open(out) as src:
        isolated = isolated_share(src.read(1), nodata=int(src.nodata) if src.nodata is not None else 0)
    return {"oa": metrics["overall_accuracy"], "kappa": metrics["kappa"], "macro_f1": metrics["macro_f1"],
            "n": metrics["n"], "isolated": isolated, "predict_s": seconds}  # fmt: skip


def run_scene(name: str, work: Path, models: list[str] | None = None) -> list[dict[str, Any]]:
    """The models (default all four) on one scene.

    Returns rows ``{scene, model, oa, kappa, macro_f1, n, isolated, train_s, train_cpu_s, best_epoch,
    val_accuracy, predict_s}`` (``train_cpu_s``: CPU seconds of the training command, all its
    threads; ``best_epoch``, ``val_accuracy``: the delivered epoch of a dense model and its pixel
    accuracy on the validation fields of the training labels).
    """
    work.mkdir(parents=True, exist_ok=True)
    scene = prepare(name, work)
    settings = SETTINGS[name]
    _run("samples", "--stack", scene["stack"], "--labels", scene["labels"], "--classes", scene["classes"],
         "--out", work / "samples.csv", *settings["samples"])  # fmt: skip
    rows = []
    for key, (model_name, model, args) in train_commands(scene, settings, work).items():
        if models is not None and key not in models:
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        _run(*args)
        train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        row = {"scene": name, "model": model_name, **score(model, scene, work), "train_s": train_s,
               "train_cpu_s": train_cpu_s, **_dense_record(model)}  # fmt: skip
        print(f"  {name}: {model_name}: OA {row['oa']:.3f} kappa {row['kappa']:.3f}, train {train_cpu_s:.0f} CPU-s",
              file=sys.stderr, flush=True)  # fmt: skip
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of the run."""
    lines = ["| scene | model | OA | kappa | macro F1 | isolated px | train CPU-s | best epoch (val acc) | predict s |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        best = "" if r.get("best_epoch") is None else f"{r['best_epoch']} ({r['val_accuracy']:.3f})"
        lines.append(f"| {r['scene']} | {r['model']} | {r['oa']:.3f} | {r['kappa']:.3f} | {r['macro_f1']:.3f} | "
                     f"{100 * r['isolated']:.2f} % | {r['train_cpu_s']:.0f} | {best} | {r['predict_s']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def write_outputs(rows: list[dict[str, Any]], out: Path = OUT) -> None:
    """``dense.csv`` (one row per scene and model) and ``dense.json`` (rows and settings) under ``out``."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "dense.csv", index=False)
    settings = {s: {k: [str(a) for a in v] for k, v in d.items()} for s, d in SETTINGS.items()}
    (out / "dense.json").write_text(json.dumps({"rows": rows, "settings": settings}, indent=1))


def main() -> None:
    """Command line: run the scenes, print the table, write CSV and JSON."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--scenes", default="slovenia,demo", help="Comma-separated: slovenia, demo.")
    ap.add_argument("--models", default="gru,convlstm,pixel,rf", help="Comma-separated: gru, convlstm, pixel, rf.")
    ap.add_argument("--threads", type=int, default=1, help="cropseq --threads of every command (default 1).")
    ap.add_argument("--keep", type=Path, help="Folder to keep models and maps in (default: a temporary one).")
    ap.add_argument("--out", type=Path, default=OUT, help=f"Folder of dense.csv and dense.json (default {OUT}).")
    args = ap.parse_args()
    THREADS[0] = args.threads
    names = [s for s in args.scenes.split(",") if s]
    models = [m for m in args.models.split(",") if m]
    if unknown := sorted(set(names) - set(SETTINGS)):
        raise SystemExit(f"unknown scene(s) {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
    if "slovenia" in names and not slovenia.DATA.is_dir():
        raise SystemExit(f"eo-learn Slovenia data not found at {slovenia.DATA}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        rows: list[dict[str, Any]] = []
        for name in names:
            rows += run_scene(name, root / name, models)
            write_outputs(rows, args.out)  # after each scene: a later failure keeps the finished ones
    print(table(rows))
    print(f"\n{time.perf_counter() - t0:.0f} s in all; rows in {args.out / 'dense.csv'}")


if __name__ == "__main__":
    main()
