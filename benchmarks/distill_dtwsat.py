"""A distilled student on dtwSat: the ``accurate`` teacher vs its student over the 20 resamples.

Usage::

    python benchmarks/distill_dtwsat.py [--resamples 20] [--threads 1]

For each of the authors' resamples (``benchmarks/crossval.py``'s splits, samples through
cropseq's own loader): the teacher is ``cropseq train --preset accurate`` on the resample's
training sequences (:func:`cropseq.crossval.fit_deep`); the student is
:func:`cropseq.distill.distill_sequences` with ``cropseq distill``'s defaults on the
teacher's probabilities over **unlabelled** sequences: every pixel of the stack (27 x 37)
over each of its six agricultural seasons (2007/08 .. 2012/13, 5,994 sequences,
:func:`_realdata.dtwsat_scene_sequences`), none of the labels. Both are scored on the
resample's held-out sequences (:func:`cropseq.evaluation.evaluate_samples`). Reported per
resample and as mean ± sd: teacher OA, student OA, the loss in points, the students'
agreement with the teacher on the held-out sequences and on the pixels it did not train on;
and the speed of each model on the first resample: px per CPU-second over the 5,994 scene
sequences (``predict_proba``, the model's share of mapping the stack) and over the held-out
sequences repeated to 8,192 (as ``benchmarks/pareto.py``). Torch runs ``--threads`` threads
(default 1). Results: ``benchmarks/out/distill_dtwsat.{md,json,csv}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import cropseq  # noqa: E402,F401 - first: OpenMP's passive wait policy before torch loads

# isort: split
from _realdata import dtwsat_scene_sequences, load_dtwsat_package  # noqa: E402
from crossval import dtwsat_splits  # noqa: E402
from pareto import measured, px_per_cpu_second  # noqa: E402

from cropseq.classes import ClassTable  # noqa: E402
from cropseq.crossval import fit_deep, format_mean_sd, mean_sd  # noqa: E402
from cropseq.distill import DistillConfig, distill_sequences  # noqa: E402
from cropseq.evaluation import align_arrays, evaluate_samples  # noqa: E402
from cropseq.predictors import load_predictor  # noqa: E402
from cropseq.sequences import SequenceArrays  # noqa: E402
from cropseq.threads import fit_threads  # noqa: E402
from cropseq.training import TrainConfig  # noqa: E402


def run_resample(k: int, train: SequenceArrays, test: SequenceArrays, classes: ClassTable, pool: tuple[np.ndarray, np.ndarray],
                 threads: int, timed: bool) -> dict[str, Any]:  # fmt: skip
    """Teacher, student, scores (and, if ``timed``, speeds) of one resample."""
    x_pool, doy_pool = pool
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        cfg = TrainConfig(preset="accurate", device="cpu", threads=threads, seed=0, plot="")
        teacher_path, teacher_cpu, _ = measured(lambda: fit_deep(train, Path(tmp), cfg, classes))
        res, student_cpu, _ = measured(lambda: distill_sequences(teacher_path, x_pool, doy_pool, Path(tmp) / "student.pt",
                                                                 DistillConfig(threads=threads), source="dtwSat scene, 6 seasons"))  # fmt: skip
        teacher, student = load_predictor(teacher_path, device="cpu"), load_predictor(res.path, device="cpu")
        t_scores, s_scores = evaluate_samples(teacher, test), evaluate_samples(student, test)
        xt = align_arrays(teacher, test)
        agree = float((teacher.predict_proba(xt, test.doy).argmax(1) == student.predict_proba(xt, test.doy).argmax(1)).mean())
        row = {"resample": k, "teacher_oa": t_scores["overall_accuracy"], "student_oa": s_scores["overall_accuracy"],
               "teacher_kappa": t_scores["kappa"], "student_kappa": s_scores["kappa"], "test_agreement": agree,
               "holdout_pixel_agreement": res.agreement, "teacher_train_cpu_s": teacher_cpu, "distill_cpu_s": student_cpu}  # fmt: skip
        if timed:
            for name, model in (("teacher", teacher), ("student", student)):
                row[f"{name}_scene_px_per_cpu_s"] = px_per_cpu_second(model, x_pool, doy_pool, len(x_pool))
                row[f"{name}_test_px_per_cpu_s"] = px_per_cpu_second(model, xt, test.doy, 8192)
    return row


def summary(df: pd.DataFrame, header: str) -> str:
    """The per-resample table and the means, as Markdown."""
    ms = lambda col: format_mean_sd(mean_sd(df[col].tolist()), 4)  # noqa: E731
    first = df.iloc[0]
    speed = {k: first[f"{k}_scene_px_per_cpu_s"] for k in ("teacher", "student")}
    lines = [header, "", "| | OA mean ± sd | kappa mean | scene px / CPU-s | held-out px / CPU-s |", "|---|---|---|---|---|"]
    for k in ("teacher", "student"):
        lines.append(f"| {k} | {ms(k + '_oa')} | {df[k + '_kappa'].mean():.4f} | {speed[k]:,.0f} | {first[k + '_test_px_per_cpu_s']:,.0f} |")
    loss = 100 * (df["teacher_oa"] - df["student_oa"])
    lines += ["", f"OA loss {loss.mean():.2f} points on average (worst resample {loss.max():.2f}); student = teacher on "
              f"{100 * df['test_agreement'].mean():.2f} % of held-out sequences, {100 * df['holdout_pixel_agreement'].mean():.2f} % "
              f"of the scene pixels it did not train on; speed-up {speed['student'] / speed['teacher']:.1f}x over the scene "
              f"sequences, {first['student_test_px_per_cpu_s'] / first['teacher_test_px_per_cpu_s']:.1f}x over the held-out ones; "
              f"teacher {df['teacher_train_cpu_s'].mean():.1f} CPU-s to train, student {df['distill_cpu_s'].mean():.1f} CPU-s to distil.",
              "", df.round(4).to_markdown(index=False)]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run every resample, write ``benchmarks/out/distill_dtwsat.{csv,json,md}``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resamples", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    fit_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = load_dtwsat_package(workdir=OUT)
    classes = ClassTable.from_names(data.arrays.labels)
    pool = dtwsat_scene_sequences()
    rows = []
    for i, (k, tr, te, _) in enumerate(dtwsat_splits(data, args.resamples)):
        rows.append(run_resample(k, data.arrays.subset(tr), data.arrays.subset(te), classes, pool, args.threads, timed=i == 0))
        r = rows[-1]
        print(f"resample {k}: teacher {r['teacher_oa']:.4f} student {r['student_oa']:.4f} agreement {r['test_agreement']:.4f}", flush=True)
        pd.DataFrame(rows).to_csv(OUT / "distill_dtwsat.csv", index=False)
    df = pd.DataFrame(rows)
    header = (f"dtwSat, {len(df)} resamples, {args.threads} thread(s), {pool[0].shape[0]} unlabelled scene sequences; "
              f"{time.perf_counter() - t0:.0f} s wall")
    text = summary(df, header)
    (OUT / "distill_dtwsat.md").write_text(text)
    (OUT / "distill_dtwsat.json").write_text(json.dumps(df.to_dict("records"), indent=2))
    print(text)


if __name__ == "__main__":
    main()
