"""Peak training memory (and time) of one batch vs. the TBPTT gradient span ``k2``.

Usage::

    python benchmarks/tbptt_memory.py [--dates 150] [--batch 256] [--patch 3] [--k2 150,75,50,25,10]

Each configuration runs in a fresh subprocess (so allocator state and earlier peaks cannot
leak between rows): it builds the default architecture (``TrainConfig()``'s model, here with
a ``p x p`` patch), makes one batch of ``--batch`` random sequences of ``--dates`` dates x 6
bands (10 % missing observations), then measures one training step -- every TBPTT window's
forward, backward and AdamW update, i.e. exactly what :func:`cropseq.training.train_model`
does per batch. Reported memory is the process's peak resident set size during the step
minus its resident size just before it (``ru_maxrss`` / ``psutil``), i.e. the memory the step
itself needed (graph + activations + gradients + optimizer state on first use).

Two series: ``k1 = k2`` (non-overlapping windows, full gradient inside each) and
``k1 = T`` (one window per batch, gradient over the last ``k2`` steps only; the first
``T - k2`` steps run without a graph). ``k2 = T`` is full BPTT.

Prints a Markdown table and writes ``benchmarks/out/tbptt_memory.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _child(args: argparse.Namespace) -> None:
    import resource

    import psutil
    import torch

    from cropseq.models.recurrent import SequenceClassifier
    from cropseq.models.tbptt import is_full_bptt, tbptt_windows
    from cropseq.training import TrainConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    d = TrainConfig()
    arch = d.arch_config(n_bands=6, n_classes=9, patch=args.patch, period_steps=23)
    model = SequenceClassifier(arch).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.dates, 6, args.patch, args.patch, generator=g)
    x[torch.rand(args.batch, args.dates, generator=g) < 0.1] = float("nan")
    doy = ((torch.arange(args.dates) * 5) % 365 + 1).float().repeat(args.batch, 1)
    y = torch.randint(0, 9, (args.batch,), generator=g)
    proc = psutil.Process()
    before = proc.memory_info().rss
    t0 = time.perf_counter()
    updates = 0
    if is_full_bptt(args.dates, args.k1, args.k2):
        loss = torch.nn.functional.cross_entropy(model(x, doy), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        updates = 1
    else:
        for w in tbptt_windows(model, x, doy, args.k1, args.k2):
            loss = torch.nn.functional.cross_entropy(w.logits, y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            updates += 1
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"peak_mib": (peak - before) / 2**20, "seconds": seconds, "updates": updates}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dates", type=int, default=150)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--patch", type=int, default=3)
    p.add_argument("--k2", default="150,75,50,25,10")
    p.add_argument("--threads", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--k1", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--k2-one", type=int, default=None, dest="k2_one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.k2 = args.k2_one
        _child(args)
        return

    rows = []
    t = args.dates
    for series in ("k1=k2", "k1=T"):
        for k2 in [int(v) for v in args.k2.split(",")]:
            k2 = min(k2, t)
            k1 = k2 if series == "k1=k2" else t
            if series == "k1=T" and k2 == t:
                continue  # identical to the full-BPTT row of the first series
            cmd = [sys.executable, __file__, "--child", "--dates", str(t), "--batch", str(args.batch),
                   "--patch", str(args.patch), "--threads", str(args.threads), "--k1", str(k1), "--k2-one", str(k2)]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            row = {"series": series if k2 < t else "full BPTT", "k1": k1, "k2": k2, **res}
            rows.append(row)
            print(f"{row['series']:9s} k1={k1:4d} k2={k2:4d}  peak {res['peak_mib']:8.1f} MiB  "
                  f"{res['seconds']:.2f}s  {res['updates']} updates", flush=True)

    out = HERE / "out"
    out.mkdir(exist_ok=True)
    with open(out / "tbptt_memory.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"\nOne training batch: {args.batch} sequences x {t} dates x 6 bands, patch {args.patch}, "
          f"default architecture, {args.threads} CPU threads.\n")
    print("| series | k1 | k2 | peak step memory (MiB) | seconds | updates |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['series']} | {r['k1']} | {r['k2']} | {r['peak_mib']:.0f} | {r['seconds']:.2f} | {r['updates']} |")


if __name__ == "__main__":
    main()
