"""Long series: full BPTT against truncated BPTT (the ``long_series_k1`` switch) on real data.

Usage::

    python benchmarks/long_series.py                          # fast preset, full vs k1=32, 20 epochs
    python benchmarks/long_series.py --configs full,k32,k64 --epochs 30 --train 260

The check is the dtwSat MODIS stack's **whole** timeline (137 dates, 2007-2013, 6 bands) at
each of the 603 field points, instead of each sample's own 23-date season: a grouped,
stratified split (:func:`cropseq.samples.assign_split`, by pixel) keeps ``--train`` sequences
for training (260 by default, the size of the issue's unseen 149-date set) and scores the
rest. The label belongs to one season of the six, and the model sees day of year but not
the year, so absolute accuracy here is lower than on seasons: compare the rows with each
other (same split, same seed, same epochs).

Configurations (``--configs``; all on top of ``--preset``):

- ``full``: full backpropagation through time (``long_series_k1=None``);
- ``kN``: truncated BPTT, windows of N steps, ``k2 = k1`` (``k32`` is the fast preset's
  automatic choice above 60 dates).

Reported per row: OA on the held-out points, training wall seconds and CPU-seconds
(``resource.getrusage``, this process), epochs. Torch runs ``--threads`` threads (default 1).
Written to ``benchmarks/out/long_series.md`` and printed. On a shared machine keep runs short
(few epochs, one split) and treat times as upper bounds.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _realdata import DTW_BANDS, DTW_DIR, _doy, _read_stack  # noqa: E402

import cropseq  # noqa: E402,F401 - first: OpenMP's passive wait policy before torch loads
from cropseq.classes import ClassTable  # noqa: E402
from cropseq.sequences import SequenceArrays  # noqa: E402

OUT = HERE / "out" / "long_series.md"


def load_dtwsat_whole_series(folder: Path = DTW_DIR) -> SequenceArrays:
    """The 603 dtwSat points over the stack's whole timeline (137 dates), p = 1."""
    import pandas as pd
    import rasterio.transform
    from pyproj import Transformer

    stack, crs, transform = _read_stack(folder / "raw")
    timeline = pd.to_datetime((folder / "raw" / "timeline").read_text().split()).to_numpy().astype("datetime64[D]")
    s = pd.read_csv(folder / "raw" / "samples.csv")
    xs, ys = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(s.longitude.values, s.latitude.values)
    rows, cols = (np.asarray(v) for v in rasterio.transform.rowcol(transform, xs, ys))
    cube = np.stack([stack[b] for b in DTW_BANDS], axis=1)  # (D, C, H, W)
    x = np.ascontiguousarray(np.moveaxis(cube[:, :, rows, cols], 2, 0))  # (N, D, C)
    n, t = x.shape[:2]
    dates = np.tile(timeline, (n, 1))
    return SequenceArrays(
        x=x[..., None, None].astype(np.float32), doy=_doy(dates), present=np.ones((n, t), bool), bands=list(DTW_BANDS),
        labels=s["label"].astype(str).to_numpy(), sample_ids=np.arange(n, dtype=np.int64),
        groups=np.array([f"r{r}c{c}" for r, c in zip(rows, cols, strict=True)]), dates=dates,
    )  # fmt: skip


def grouped_split(data: SequenceArrays, n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """About ``n_train`` training rows and the rest as test rows, grouped and stratified."""
    from cropseq.samples import assign_split

    side = assign_split(np.asarray(data.labels).astype(str), np.asarray(data.groups), val_fraction=1 - n_train / data.n, seed=seed)
    return np.flatnonzero(side == "train"), np.flatnonzero(side == "val")


def cpu_seconds() -> float:
    """User + system CPU time of this process."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_config(name: str, data: SequenceArrays, tr: np.ndarray, te: np.ndarray, args: argparse.Namespace) -> dict[str, object]:
    """Train configuration ``name`` (``full`` or ``kN``) on ``tr``; OA on ``te`` and the cost."""
    from cropseq.evaluation import evaluate_samples
    from cropseq.predictors import load_predictor
    from cropseq.training import TrainConfig, train_model

    k1 = None if name == "full" else int(name.lstrip("k"))
    cfg = TrainConfig(preset=args.preset, long_series_k1=k1, epochs=args.epochs, threads=args.threads, seed=args.seed,
                      device="cpu", plot="")  # fmt: skip
    classes = ClassTable.from_names(list(data.labels))
    with tempfile.TemporaryDirectory() as tmp:
        c0, w0 = cpu_seconds(), time.perf_counter()
        res = train_model(data.subset(tr), None, cfg, Path(tmp) / "m.pt", classes=classes, progress=False)
        cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
        scores = evaluate_samples(load_predictor(res.path, device="cpu"), data.subset(te))
    return {"config": name, "k1": k1, "oa": float(scores["overall_accuracy"]), "train_s": wall, "train_cpu_s": cpu,
            "epochs": res.epochs_run}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the configurations and write the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", default="full,k32", help="Comma-separated: full, kN (truncated BPTT, windows of N).")
    p.add_argument("--preset", default="fast")
    p.add_argument("--epochs", type=int, default=20, help="Fixed epochs (the automatic count would be 80 for 260 sequences).")
    p.add_argument("--train", type=int, default=260, help="Training sequences (about; grouped split).")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    data = load_dtwsat_whole_series()
    tr, te = grouped_split(data, args.train, args.seed)
    head = (f"dtwSat whole series: {len(tr)} training x {data.x.shape[1]} dates x {len(data.bands)} bands, {len(te)} test;"
            f" preset {args.preset}, {args.epochs} epochs, {args.threads} thread(s), seed {args.seed}")  # fmt: skip
    print(head, flush=True)
    lines = [head, "", "| config | OA | train s | train CPU-s | epochs |", "|---|---|---|---|---|"]
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        r = run_config(name, data, tr, te, args)
        lines.append(f"| {r['config']} | {r['oa']:.4f} | {r['train_s']:.1f} | {r['train_cpu_s']:.1f} | {r['epochs']} |")
        print(lines[-1], flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
