"""Whole-scene prediction throughput and memory: chunked Dask inference vs. the naive way.

Usage::

    python benchmarks/throughput.py                       # 512, 2048, 4096 px; default deep model
    python benchmarks/throughput.py --sizes 512,2048 --model rf --workers 1,2
    python benchmarks/throughput.py --model tiny --device cpu --naive-sizes 512

For each simulated scene (:func:`cropseq.simulate.simulate_scene`, ``--dates`` dates, cached
in ``benchmarks/out/scenes/``) and each worker count, one fresh Python process runs
:func:`cropseq.inference.run_prediction` from the ``stack.yaml`` to the crop-map COG (+
confidence COG, area CSV, QML) on a ``LocalCluster`` of N single-threaded worker
processes, so every row starts from the same state. A thread samples the resident memory
(RSS) of the whole process tree (the client plus the Dask nanny/worker processes) every
50 ms; the peak is reported. The *naive* reference reads the whole cube into memory in one
process and calls ``predict_image`` once on all of it (on the same pixels: those with at
least ``DEFAULT_MIN_VALID`` valid dates).

Models (``--model``):

- ``deep`` (default): the default architecture (``TrainConfig()``: CNN encoder + 2-layer
  BiGRU, hidden 128, date fed to the encoder) at patch 3, trained for ``--epochs`` epochs on random truth pixels of
  the smallest scene. Throughput does not depend on accuracy, so one epoch is enough.
- ``tiny``: the same with hidden 16 / encoder 16 / 1 layer (for CPU-only smoke runs).
- ``rf``: the RandomForest baseline (``--trees`` trees, default 100).
- a path: any model file ``load_predictor`` reads.

Reported per run: wall time of the whole call (opening the stack, starting the cluster,
loading the model in each worker, predicting, writing and converting the COGs) and the
part of it spent before the first chunk could start ("setup": cluster start, model
metadata, graph); pixel sequences per second (every pixel is one sequence of
``dates x bands`` values) end to end, after setup, and per CPU-second (user + system time
of the whole process tree: comparable even on a machine shared with other jobs); Mpx/s;
peak RSS of the process tree;
and, where the naive reference ran, its time divided by the chunked run's ("speed vs
naive" > 1: chunked is faster). The naive time includes loading the model and reading the
cube but not writing a GeoTIFF. Results: ``benchmarks/out/NAME.md`` (Markdown table) and
``benchmarks/out/NAME.jsonl`` (one JSON object per run); ``--name`` defaults to ``throughput``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------- memory sampler
class TreeRSS:
    """Peak resident memory of this process and all its descendants, sampled in a thread.

    Also accumulates the CPU time (user + system) the tree used meanwhile, per process, so
    throughput per CPU-second can be compared on a machine shared with other jobs.
    """

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._cpu0: dict[int, float] = {}
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        import psutil

        total = 0
        procs = [self.proc]
        try:
            procs += self.proc.children(recursive=True)
        except psutil.Error:
            pass
        for p in procs:
            try:
                total += p.memory_info().rss
                t = p.cpu_times()
                cpu = t.user + t.system
                self._cpu0.setdefault(p.pid, cpu if p.pid == self.proc.pid else 0.0)
                self._cpu[p.pid] = cpu
            except psutil.Error:  # a process that just exited
                pass
        return total

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds used by the tree since entering (exited processes: up to their last sample)."""
        return sum(self._cpu[p] - self._cpu0.get(p, 0.0) for p in self._cpu)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRSS:
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


# --------------------------------------------------------------------------- scenes, model
def scene_dir(size: int, dates: int) -> Path:
    return OUT / "scenes" / f"s{size}_d{dates}"


def ensure_scene(size: int, dates: int, seed: int = 0) -> Path:
    """Simulate the scene once; later runs reuse it."""
    d = scene_dir(size, dates)
    if (d / "scene.json").is_file() and (d / "stack.yaml").is_file():
        return d / "stack.yaml"
    from cropseq.simulate import simulate_scene

    d.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    simulate_scene(d, size=size, n_dates=dates, seed=seed)
    print(f"simulated {size} px x {dates} dates in {time.perf_counter() - t0:.0f} s -> {d}", file=sys.stderr)
    return d / "stack.yaml"


def train_benchmark_model(kind: str, stack: Path, out_dir: Path, epochs: int, trees: int = 100, n_pixels: int = 2000) -> Path:
    """Train the benchmark model on random truth pixels of ``stack``'s scene."""
    import numpy as np
    import rasterio

    from cropseq.classes import ClassTable
    from cropseq.inference import day_of_year
    from cropseq.io import open_stack
    from cropseq.sequences import SequenceArrays

    # The deep file name carries the default cell and pooling, so a change of defaults retrains it.
    from cropseq.training import TrainConfig as _TC

    path = out_dir / (f"rf{trees}.skops" if kind == "rf" else f"{kind}_{_TC().arch}_{_TC().pooling}_e{epochs}.pt")
    if path.is_file():
        return path
    scene = stack.parent
    classes = ClassTable.from_yaml(scene / "classes.yaml")
    cube = open_stack(stack)
    with rasterio.open(scene / "truth.tif") as src:
        truth = src.read(1)
    rng = np.random.default_rng(0)
    rows, cols = np.nonzero(truth)
    pick = rng.choice(len(rows), size=min(n_pixels, len(rows)), replace=False)
    rows, cols = rows[pick], cols[pick]
    p = 1 if kind == "rf" else 3
    h = p // 2
    img = np.pad(cube.values, ((0, 0), (0, 0), (h, h), (h, h)), constant_values=np.nan)
    x = np.stack([img[:, :, r : r + p, c : c + p] for r, c in zip(rows, cols)]).astype(np.float32)
    doy = np.broadcast_to(day_of_year(cube), (len(rows), cube.sizes["time"])).copy()
    names = {c.code: c.name for c in classes.classes}
    arrays = SequenceArrays(
        x=x, doy=doy, present=np.ones(doy.shape, bool), bands=[str(b) for b in cube["band"].values],
        labels=np.array([names[int(v)] for v in truth[rows, cols]]),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if kind == "rf":
        from cropseq.baseline import train_random_forest

        train_random_forest(arrays, path, classes=classes, n_estimators=trees, n_jobs=2)
    else:
        from cropseq.training import TrainConfig, train_model

        small = {"hidden_size": 16, "num_layers": 1, "encoder_width": 16, "encoder_dim": 16} if kind == "tiny" else {}
        cfg = TrainConfig(epochs=epochs, device="cpu", threads=2, plot="", val_fraction=0.0, **small)
        train_model(arrays, None, cfg, path, classes=classes, progress=False)
    print(f"trained {kind} model in {time.perf_counter() - t0:.0f} s -> {path}", file=sys.stderr)
    return path


# --------------------------------------------------------------------------- one run (child)
def run_one(cfg: dict[str, Any]) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    import numpy as np

    from cropseq.io import open_stack
    from cropseq.predictors import load_predictor

    stack, model, size = Path(cfg["stack"]), Path(cfg["model"]), int(cfg["size"])
    out = Path(cfg["out"])
    result: dict[str, Any] = {**cfg}
    if cfg["mode"] == "naive":
        with TreeRSS() as mem:
            t0 = time.perf_counter()
            pred = load_predictor(model, device=cfg["device"])
            cube = open_stack(stack).sel(band=pred.bands)
            img = cube.values  # the whole cube in memory
            h = pred.patch // 2
            if h:
                img = np.pad(img, ((0, 0), (0, 0), (h, h), (h, h)), constant_values=np.nan)
            from cropseq.inference import DEFAULT_MIN_VALID, day_of_year

            # The same work as the chunked path: only pixels with enough valid dates.
            n_valid = np.isfinite(img[:, :, h : img.shape[2] - h, h : img.shape[3] - h]).all(axis=1).sum(axis=0)
            probs = pred.predict_image(img, day_of_year(cube), mask=n_valid >= min(DEFAULT_MIN_VALID, img.shape[0]))
            cls = np.where(np.isnan(probs[0]), 0, np.asarray(pred.classes.codes, np.uint8)[np.nan_to_num(probs).argmax(axis=0)])
            seconds = time.perf_counter() - t0
        result.update(seconds=seconds, peak_rss=mem.peak, classified=int((cls > 0).sum()), chunks=1, setup_seconds=0.0,
                      cpu_seconds=mem.cpu_seconds)
    else:
        from cropseq.inference import run_prediction

        ready: list[float] = []

        def progress(done: int, total: int) -> None:
            if not ready:
                ready.append(time.perf_counter())  # cluster up, model metadata loaded, graph built

        with TreeRSS() as mem:
            t0 = time.perf_counter()
            res = run_prediction(
                model, stack, out, workers=int(cfg["workers"]), threads=int(cfg["threads"]), chunk=int(cfg["chunk"]),
                device=cfg["device"], progress=progress,
            )
            seconds = time.perf_counter() - t0
        result.update(seconds=seconds, peak_rss=mem.peak, classified=res.classified, chunks=res.chunks,
                      setup_seconds=ready[0] - t0, cpu_seconds=mem.cpu_seconds)
        for p in (out, out.with_name(f"{out.stem}.confidence.tif"), out.with_name(f"{out.stem}.area.csv"),
                  out.with_name(f"{out.stem}.qml")):
            p.unlink(missing_ok=True)  # keep benchmarks/out small
    px = size * size
    compute = max(seconds - result["setup_seconds"], 1e-9)
    result.update(pixels=px, px_per_s=px / seconds, mpx_per_s=px / seconds / 1e6, px_per_s_compute=px / compute,
                  px_per_cpu_s=px / max(result["cpu_seconds"], 1e-9))
    return result


# --------------------------------------------------------------------------- orchestration
def fmt_row(r: dict[str, Any], ref: dict[str, float]) -> str:
    what = "naive (whole cube, 1 process)" if r["mode"] == "naive" else f"chunked, {r['workers']} worker(s)"
    ratio = ""
    if r["mode"] != "naive" and (r["size"], r["workers"]) in ref:
        ratio = f"{ref[(r['size'], r['workers'])]:.2f}"
    cpu = f"{r['px_per_cpu_s']:,.0f}" if "px_per_cpu_s" in r else ""
    return (
        f"| {r['size']}² | {what} | {r['chunks']} | {r['seconds']:.1f} | {r['setup_seconds']:.1f} | {r['px_per_s']:,.0f} | "
        f"{r['px_per_s_compute']:,.0f} | {cpu} | {r['mpx_per_s']:.4f} | {r['peak_rss'] / 2**20:,.0f} | {ratio} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="512,2048,4096", help="Scene sizes in pixels (comma-separated).")
    ap.add_argument("--workers", default="1,2", help="Worker counts to compare (comma-separated).")
    ap.add_argument("--naive-sizes", default="512,2048", help="Sizes that also run the naive reference ('' = none).")
    ap.add_argument("--model", default="deep", help="deep | tiny | rf | a model file.")
    ap.add_argument("--dates", type=int, default=24, help="Dates per simulated scene.")
    ap.add_argument("--chunk", type=int, default=512, help="Chunk edge in pixels.")
    ap.add_argument("--threads", type=int, default=1, help="Threads per worker.")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda.")
    ap.add_argument("--epochs", type=int, default=1, help="Training epochs of the benchmark model.")
    ap.add_argument("--trees", type=int, default=100, help="Trees of the rf benchmark model.")
    ap.add_argument("--name", default="throughput", help="Result file names: benchmarks/out/NAME.md and NAME.jsonl.")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one measurement (JSON config)
    args = ap.parse_args()

    if args.one:
        print("RESULT " + json.dumps(run_one(json.loads(args.one))), flush=True)
        return

    OUT.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    workers = [int(w) for w in args.workers.split(",") if w]
    naive_sizes = {int(s) for s in args.naive_sizes.split(",") if s}
    stacks = {s: ensure_scene(s, args.dates) for s in sizes}
    if args.model in ("deep", "tiny", "rf"):
        model = train_benchmark_model(args.model, stacks[min(sizes)], OUT / "models" / f"d{args.dates}", args.epochs, args.trees)
    else:
        model = Path(args.model)
    runs: list[dict[str, Any]] = []
    for s in sizes:
        for w in workers:
            runs.append({"mode": "chunked", "size": s, "workers": w})
        if s in naive_sizes:
            runs.append({"mode": "naive", "size": s, "workers": 0})
    results = []
    load_before = os.getloadavg()
    for r in runs:
        cfg = {
            **r, "stack": str(stacks[r["size"]]), "model": str(model), "threads": args.threads, "chunk": args.chunk,
            "device": args.device, "out": str(OUT / f"throughput_{r['size']}.tif"), "model_kind": args.model,
        }
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)], capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"run {r} failed (exit {proc.returncode})")
        res = json.loads(line[len("RESULT "):])
        res["loadavg_1min"] = os.getloadavg()[0]
        results.append(res)
        print(f"{r}: {res['seconds']:.1f} s, {res['px_per_s']:,.0f} px/s, peak RSS {res['peak_rss'] / 2**20:,.0f} MiB "
              f"(run incl. process start {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        with open(OUT / f"{args.name}.jsonl", "a") as f:
            f.write(json.dumps(res) + "\n")

    naive = {(r["size"]): r["seconds"] for r in results if r["mode"] == "naive"}
    ref = {(r["size"], r["workers"]): naive[r["size"]] / r["seconds"] for r in results if r["mode"] != "naive" and r["size"] in naive}
    import torch

    lines = [
        f"Model: `{args.model}` ({model.name}); {args.dates} dates x 6 bands; chunk {args.chunk} px; "
        f"{args.threads} thread(s) per worker; device {args.device}.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"load average at start {load_before[0]:.1f} (1 min).",
        "",
        "| scene | run | chunks | seconds (end to end) | of which setup | pixel-sequences/s (end to end) "
        "| pixel-sequences/s (after setup) | pixel-sequences per CPU-second | Mpx/s (end to end) "
        "| peak RSS (MiB, process tree) | speed vs naive |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[fmt_row(r, ref) for r in results],
    ]
    for w in workers:
        rows = [r for r in results if r["mode"] != "naive" and r["workers"] == w]
        if len(rows) >= 2:
            lo, hi = min(rows, key=lambda r: r["size"]), max(rows, key=lambda r: r["size"])
            growth = hi["peak_rss"] / lo["peak_rss"] - 1
            line = (
                f"Peak RSS with {w} worker(s): {lo['peak_rss'] / 2**20:,.0f} MiB at {lo['size']}² -> "
                f"{hi['peak_rss'] / 2**20:,.0f} MiB at {hi['size']}² ({(hi['size'] / lo['size']) ** 2:.0f}x the pixels): "
                f"{growth:+.0%}."
            )
            busy = [r for r in rows if r["chunks"] >= w]
            if lo["chunks"] < w and len(busy) >= 2:
                b0 = min(busy, key=lambda r: r["size"])
                line += (
                    f" The {lo['size']}² scene has fewer chunks than workers, so not all of them worked; from "
                    f"{b0['size']}² (all busy) to {hi['size']}²: {hi['peak_rss'] / b0['peak_rss'] - 1:+.0%}."
                )
            lines += ["", line]
    text = "\n".join(lines) + "\n"
    (OUT / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
