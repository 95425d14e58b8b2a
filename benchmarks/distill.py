"""A distilled student (``cropseq distill``) against its teacher: agreement, test accuracy, mapping speed.

Usage::

    python benchmarks/distill.py --teacher model.pt --stack demo/stack.yaml
    python benchmarks/distill.py --teacher model.pt --stack demo/stack.yaml --student student.pt --rows 32

Without ``--student`` the student is distilled with ``cropseq distill``'s defaults (its
wall time reported). Both models then map the whole scene with ``run_prediction`` in this
process (threaded scheduler, one thread), and each map is scored against the scene's test
fields the way ``cropseq evaluate --map`` does (:func:`cropseq.evaluation.score_map`,
``test_truth.tif`` beside the stack by default, ``--truth`` otherwise). Reported: overall
accuracy of each map, the student's OA loss in points, the share of mapped pixels where
the two maps agree, and the mapping speed: px per CPU-second of each whole map (process CPU
time, reading and writing included) and of the models alone (``predict_image`` on the first
``--rows`` rows, interleaved teacher/student ``--rounds`` times, median; one thread). On a
machine shared with other jobs the ratios are more trustworthy than the absolute numbers.
Results: ``benchmarks/out/distill.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def map_and_score(model: Path, stack: Path, truth: Path, out: Path) -> dict[str, Any]:
    """Map the scene (one thread, in process), time it in CPU seconds, score it against ``truth``."""
    from cropseq.evaluation import score_map
    from cropseq.inference import run_prediction

    t0 = time.process_time()
    res = run_prediction(model, stack, out, workers=0, threads=1, device="cpu", stac=False, qml=False, area=False)
    cpu = time.process_time() - t0
    scores = score_map(out, truth)
    return {"model": str(model), "map": str(out), "cpu_s": cpu, "px_per_cpu_s": res.pixels / cpu,
            "oa": scores["overall_accuracy"],
            "n_scored": scores.get("n")}  # fmt: skip


def agreement(a: Path, b: Path) -> float:
    """Share of pixels mapped in both maps (non-zero) where their classes agree."""
    import rasterio

    with rasterio.open(a) as sa, rasterio.open(b) as sb:
        x, y = sa.read(1), sb.read(1)
    both = (x > 0) & (y > 0)
    return float((x[both] == y[both]).mean())


def model_speed(teacher: Path, student: Path, stack: Path, rows: int, rounds: int) -> dict[str, float]:
    """Median px per CPU-second of ``predict_image`` for each model, interleaved (one thread)."""
    import torch
    from inference_speed import scene_window, timed_map

    from cropseq.predictors import load_predictor

    torch.set_num_threads(1)
    models = {"teacher": load_predictor(teacher, device="cpu"), "student": load_predictor(student, device="cpu")}
    image, doy, mask = scene_window(stack, rows, models["teacher"].patch)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            times[k].append(timed_map(m, image, doy, mask)[1])
    return {k: float(mask.sum()) / statistics.median(v) for k, v in times.items()}


def main() -> None:
    """Parse the options, distil if needed, map, score, write ``benchmarks/out/<name>.{md,json}``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--stack", type=Path, required=True)
    ap.add_argument("--student", type=Path, help="An existing student (default: distil one with the defaults).")
    ap.add_argument("--truth", type=Path, help="Test truth raster (default: test_truth.tif beside the stack).")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--name", default="distill")
    args = ap.parse_args()
    from cropseq.distill import distill

    work = OUT / args.name
    work.mkdir(parents=True, exist_ok=True)
    truth = args.truth or args.stack.parent / "test_truth.tif"
    result: dict[str, Any] = {"teacher": str(args.teacher), "stack": str(args.stack)}
    student = args.student
    if student is None:
        t0 = time.perf_counter()
        res = distill(args.teacher, args.stack, work / "student.pt")
        student = res.path
        result["distill"] = {"seconds": time.perf_counter() - t0, "pixels": res.pixels, "holdout_agreement": res.agreement}
    result["maps"] = {k: map_and_score(m, args.stack, truth, work / f"{k}.tif")
                      for k, m in (("teacher", args.teacher), ("student", student))}  # fmt: skip
    result["map_agreement"] = agreement(work / "teacher.tif", work / "student.tif")
    result["model_px_per_cpu_s"] = model_speed(args.teacher, student, args.stack, args.rows, args.rounds)
    t, s = result["maps"]["teacher"], result["maps"]["student"]
    sp = result["model_px_per_cpu_s"]
    lines = [
        "| model | OA (test fields) | map px / CPU-s | model px / CPU-s |",
        "|---|---:|---:|---:|",
        f"| teacher | {t['oa']:.4f} | {t['px_per_cpu_s']:,.0f} | {sp['teacher']:,.0f} |",
        f"| student | {s['oa']:.4f} | {s['px_per_cpu_s']:,.0f} | {sp['student']:,.0f} |",
        "",
        f"OA loss {100 * (t['oa'] - s['oa']):.2f} points; maps agree on {100 * result['map_agreement']:.2f} % of mapped "
        f"pixels; speed-up {s['px_per_cpu_s'] / t['px_per_cpu_s']:.1f}x (whole map), "
        f"{sp['student'] / sp['teacher']:.1f}x (model only)",
    ]
    if "distill" in result:
        d = result["distill"]
        lines.append(f"distilled in {d['seconds']:.0f} s on {d['pixels']} pixels (hold-out agreement {100 * d['holdout_agreement']:.1f} %)")
    (OUT / f"{args.name}.json").write_text(json.dumps(result, indent=2))
    (OUT / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
