"""Training steps on a quiet CPU vs beside one CPU-bound process, by OpenMP wait policy.

Usage::

    python benchmarks/contention.py [--steps 20] [--threads N] [--batch 64] [--dates 23]

Each case runs in a fresh child process (OpenMP reads its wait policy once, when torch
loads): a preset's model (``--preset``, default ``fast``: :class:`cropseq.training.TrainConfig`'s
architecture, CNN encoder + 1-layer BiLSTM 32; ``accurate``: 2-layer BiGRU 128) trains ``--steps`` AdamW steps on random Mato-Grosso-shaped
batches (64 sequences x 23 dates x 6 bands), threads sized by
:func:`cropseq.threads.fit_threads`. Cases:

- policy ``default``: torch imported before cropseq, without ``OMP_WAIT_POLICY`` — what
  cropseq did before :mod:`cropseq.threads` (GNU OpenMP spins a while before sleeping);
- policy ``passive``: ``import cropseq`` first, so ``OMP_WAIT_POLICY=PASSIVE``;
- policy ``spin`` (a study): a short spin, ``GOMP_SPINCOUNT=--spincount``, then sleep;

each quiet and with one ``while True: pass`` Python process running beside it, with the
affinity's thread count and with one thread. Prints per-step wall and CPU seconds and the
ratio busy / quiet (the issue's target: <= ~2.5x with one busy process beside it).
A shared machine makes every number noisy: rerun on a quiet one before quoting it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

BUSY_LOOP = "while True: pass"


def worker(args: argparse.Namespace) -> None:
    """One case, in this (fresh) process: print a JSON line of per-step timings."""
    if args.policy == "passive":
        import cropseq  # noqa: F401 - sets OMP_WAIT_POLICY=PASSIVE before torch loads
    elif args.policy == "spin":
        os.environ["GOMP_SPINCOUNT"] = str(args.spincount)
    seen = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ}
    import torch  # OpenMP reads its wait policy now, once

    from cropseq.models import build_model
    from cropseq.threads import fit_threads
    from cropseq.training import TrainConfig

    fit = fit_threads(args.threads)
    torch.manual_seed(0)
    n, t, c, k = args.batch, args.dates, 6, 9
    model = build_model(TrainConfig(preset=args.preset).arch_config(n_bands=c, n_classes=k, patch=1, period_steps=t))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(n, t, c, 1, 1)
    doy = torch.linspace(1, 365, t).repeat(n, 1)
    y = torch.randint(0, k, (n,))

    walls, cpus = [], []
    for i in range(args.warmup + args.steps):
        w0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x, doy), y)
        loss.backward()
        opt.step()
        if i >= args.warmup:
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
    print(json.dumps({
        "policy": args.policy,
        "omp_env": " ".join(f"{k}={v}" for k, v in seen.items()) or "unset",
        "threads": fit.threads,
        "torch_threads": torch.get_num_threads(),
        "step_s": statistics.median(walls),
        "step_s_mean": statistics.fmean(walls),
        "cpu_s": statistics.median(cpus),
    }))


def run_case(args: argparse.Namespace, policy: str, threads: int, busy: bool) -> dict:
    """Run one case in a child process, with a busy process beside it if asked."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, __file__, "--worker", "--policy", policy, "--threads", str(threads),
           "--spincount", str(args.spincount), "--steps", str(args.steps), "--preset", args.preset, "--warmup", str(args.warmup), "--batch", str(args.batch), "--dates", str(args.dates)]
    hog = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if busy else None
    try:
        if hog is not None:
            time.sleep(0.5)  # let it reach its loop
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return {**json.loads(out.strip().splitlines()[-1]), "busy": busy}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="timed steps per case")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dates", type=int, default=23)
    p.add_argument("--preset", default="fast", help="the model: a TrainConfig preset (fast, accurate)")
    p.add_argument("--threads", type=int, default=None, help="cap (default: the affinity CPUs), plus a 1-thread run")
    p.add_argument("--policies", default="default,passive",
                   help="comma-separated: default (GNU OpenMP's own), passive (cropseq's), spin (GOMP_SPINCOUNT)")
    p.add_argument("--spincount", type=int, default=10_000, help="GOMP_SPINCOUNT of the spin policy")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--policy", default="passive", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    sys.path.insert(0, str(REPO))
    from cropseq.threads import usable_cpus

    n = usable_cpus(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.machine()}, {n} usable CPUs, load average {load:.2f} at start; "
          f"{args.steps} steps of batch {args.batch} x {args.dates} dates, {args.preset} preset")
    print("| policy | threads | quiet s/step | busy s/step | busy / quiet | CPU s/step quiet | busy |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for threads in sorted({n, 1}, reverse=True):
        for policy in args.policies.split(","):
            quiet = run_case(args, policy, threads, busy=False)
            busy = run_case(args, policy, threads, busy=True)
            rows += [quiet, busy]
            print(f"| {policy} ({quiet['omp_env']}) | {quiet['torch_threads']} | "
                  f"{quiet['step_s']:.3f} | {busy['step_s']:.3f} | {busy['step_s'] / quiet['step_s']:.2f}x | "
                  f"{quiet['cpu_s']:.3f} | {busy['cpu_s']:.3f} |", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.2f} at the end (other jobs on the machine inflate every number)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
