"""CPU inference engines of a deep model: speed, map agreement, FLOPs and share of the matmul peak.

Usage::

    python benchmarks/inference_speed.py                          # demo-like scene, default model
    python benchmarks/inference_speed.py --model model.pt --stack demo/stack.yaml --rows 64
    python benchmarks/inference_speed.py --engines torch,int8 --rounds 3

For each engine of ``cropseq predict --engine`` (``torch`` float32, ``bf16`` autocast,
``int8`` dynamic quantisation, ``onnx`` ONNX Runtime on ``<model>.onnx``, exported first
when missing) the model's ``predict_image`` maps the same window of the scene (the first
``--rows`` rows, all columns, pixels with at least 3 valid dates) in this one process, with
one thread (torch and ONNX Runtime), so the numbers are per core. Engines run interleaved
(A/B/C/D, A/B/C/D, ... ``--rounds`` times) and the median is kept: on a machine shared with
other jobs the ratios between engines are more trustworthy than the absolute numbers.

Reported per engine: pixel sequences per CPU-second (process CPU time), the ratio to
``torch``, the share of map pixels whose class equals the float32 torch map's, the largest
probability difference, and the achieved GFLOP/s = FLOPs per pixel (counted on the float32
model by :class:`torch.utils.flop_counter.FlopCounterMode`) x px per CPU-second, as a share
of this machine's measured matmul peak (a 2048 x 2048 float32 ``torch.mm`` on one thread,
best of 3; also bf16 where the CPU has AMX/AVX512-BF16). Without ``--model`` the
benchmark model of ``benchmarks/throughput.py`` (default architecture, patch 3, 1 epoch on
truth pixels) is trained on the scene. Results: ``benchmarks/out/inference_speed.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

ENGINES = ("torch", "bf16", "int8", "onnx")


def matmul_peak(dtype: str = "float32", n: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of an ``n x n`` ``torch.mm`` on this thread (best of ``repeats``, CPU time)."""
    import torch

    a = torch.randn(n, n).to(getattr(torch, dtype))
    b = torch.randn(n, n).to(getattr(torch, dtype))
    torch.mm(a, b)  # warm-up (allocations, kernel choice)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        torch.mm(a, b)
        best = min(best, time.process_time() - t0)
    return 2 * n**3 / best / 1e9


def flops_per_pixel(predictor: Any, image: np.ndarray, doy: np.ndarray, edge: int = 16) -> float:
    """FLOPs of ``predict_image`` per core pixel (FlopCounterMode, on an ``edge``² window)."""
    from torch.utils.flop_counter import FlopCounterMode

    h = predictor.patch // 2
    win = image[:, :, : edge + 2 * h, : edge + 2 * h]
    with FlopCounterMode(display=False) as counter:
        predictor.predict_image(win, doy)
    return counter.get_total_flops() / edge**2


def scene_window(stack: Path, rows: int, patch: int, min_valid: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image with halo, doy, mask)`` of the first ``rows`` rows of the scene, in memory."""
    from cropseq.inference import day_of_year
    from cropseq.io import open_stack

    cube = open_stack(stack)
    h = patch // 2
    values = cube.isel(y=slice(0, rows + 2 * h)).values.astype(np.float32)
    image = np.pad(values, ((0, 0), (0, 0), (h, h), (h, h)), constant_values=np.nan)[:, :, : rows + 2 * h]
    core = image[:, :, h : h + rows, h : image.shape[3] - h]
    mask = np.isfinite(core).all(axis=1).sum(axis=0) >= min(min_valid, core.shape[0])
    return image, day_of_year(cube), mask


def load_engine(model: Path, engine: str, dates: int) -> Any:
    """The predictor of ``model`` under ``engine`` (``onnx``: exporting ``<model>.onnx`` for ``dates`` first if missing)."""
    from cropseq.predictors import load_predictor

    if engine == "onnx":
        from cropseq.export import export_onnx
        from cropseq.predictors.onnx import onnx_path

        if not onnx_path(model).is_file():
            t0 = time.perf_counter()
            export_onnx(model, onnx_path(model), dates)
            print(f"exported {onnx_path(model)} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return load_predictor(model, device="cpu", engine=engine)


def timed_map(predictor: Any, image: np.ndarray, doy: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
    """``(probabilities (K, H, W), process CPU seconds)`` of one ``predict_image`` call."""
    t0 = time.process_time()
    probs = predictor.predict_image(image, doy, mask)
    return probs, time.process_time() - t0


def compare(probs: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """``(share of mapped pixels with the reference's class, max |p - p_ref|)`` over ``mask``."""
    a, b = probs[:, mask], ref[:, mask]
    return float((a.argmax(0) == b.argmax(0)).mean()), float(np.abs(a - b).max())


def measure(model: Path, stack: Path, engines: list[str], rounds: int, rows: int) -> dict[str, Any]:
    """Every engine, interleaved ``rounds`` times, against the float32 torch map."""
    import torch

    torch.set_num_threads(1)
    from cropseq.predictors import read_model_info

    image, doy, mask = scene_window(stack, rows, read_model_info(model).patch)
    predictors = {e: load_engine(model, e, len(doy)) for e in engines}
    ref_pred = predictors.get("torch") or load_engine(model, "torch", len(doy))
    ref, _ = timed_map(ref_pred, image, doy, mask)  # warm-up + the reference map
    times: dict[str, list[float]] = {e: [] for e in engines}
    agree: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for e in engines:
            probs, cpu = timed_map(predictors[e], image, doy, mask)
            times[e].append(cpu)
            agree[e] = compare(probs, ref, mask)
    flops = flops_per_pixel(ref_pred, image, doy)
    peak = {"float32": matmul_peak("float32")}
    if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        peak["bfloat16"] = matmul_peak("bfloat16")
    px = int(mask.sum())
    rows_out = []
    for e in engines:
        rate = px / statistics.median(times[e])
        rows_out.append({"engine": e, "px_per_cpu_s": rate, "cpu_s": times[e], "identical": agree[e][0],
                         "max_abs_dp": agree[e][1], "gflops": flops * rate / 1e9,
                         "peak_share": flops * rate / 1e9 / peak["float32"]})  # fmt: skip
    base = next((r["px_per_cpu_s"] for r in rows_out if r["engine"] == "torch"), rows_out[0]["px_per_cpu_s"])
    for r in rows_out:
        r["speedup"] = r["px_per_cpu_s"] / base
    return {"model": str(model), "stack": str(stack), "pixels": px, "rounds": rounds, "flops_per_px": flops,
            "matmul_gflops": peak, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "rows": rows_out}  # fmt: skip


def table(res: dict[str, Any]) -> str:
    """Markdown table of :func:`measure`'s result."""
    peak = ", ".join(f"{k} {v:.1f}" for k, v in res["matmul_gflops"].items())
    lines = [
        f"model `{res['model']}`, {res['pixels']} px, median of {res['rounds']} interleaved rounds, 1 thread; "
        f"{res['flops_per_px'] / 1e6:.2f} MFLOP/px; matmul peak (GFLOP/s, 2048² mm): {peak}; "
        f"CPU {res['cpu_capability']}, torch {res['torch']}",
        "",
        "| engine | px / CPU-s | vs torch | map identical | max abs Δp | GFLOP/s | share of fp32 mm peak |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(f"| {r['engine']} | {r['px_per_cpu_s']:,.0f} | {r['speedup']:.2f}x | {100 * r['identical']:.3f} % | "
                     f"{r['max_abs_dp']:.2g} | {r['gflops']:.2f} | {100 * r['peak_share']:.1f} % |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse the options, measure, write ``benchmarks/out/<name>.{md,json}``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="Deep checkpoint (default: the throughput benchmark's model).")
    ap.add_argument("--stack", type=Path, help="stack.yaml (default: a simulated --size scene).")
    ap.add_argument("--size", type=int, default=256, help="Simulated scene edge (without --stack).")
    ap.add_argument("--dates", type=int, default=24, help="Simulated scene dates (without --stack).")
    ap.add_argument("--engines", default=",".join(ENGINES), help="Comma-separated engines to compare.")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved rounds (median kept).")
    ap.add_argument("--rows", type=int, default=32, help="Rows of the scene mapped per round.")
    ap.add_argument("--name", default="inference_speed", help="Output name under benchmarks/out/.")
    args = ap.parse_args()
    from throughput import ensure_scene, train_benchmark_model

    stack = args.stack or ensure_scene(args.size, args.dates)
    model = args.model or train_benchmark_model("deep", stack, OUT / "models" / f"d{args.dates}", epochs=1)
    res = measure(model, stack, [e.strip() for e in args.engines.split(",") if e.strip()], args.rounds, args.rows)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.name}.json").write_text(json.dumps(res, indent=2))
    (OUT / f"{args.name}.md").write_text(table(res))
    print(table(res))


if __name__ == "__main__":
    main()
