"""Threads that fit the machine: torch, BLAS/OpenMP and Dask sized to the usable cores.

Two parts, because they act at different times:

- :func:`set_env_defaults` (run when ``cropseq`` is imported, so before anything loads
  torch): OpenMP threads must not spin-wait. By default GNU OpenMP (torch's runtime on
  Linux) keeps a thread that finished its share of a parallel loop spinning on its core
  for a while, waiting for the next loop; on a core that another process also wants,
  that spinning steals the time the work needs (a training step measured 8.8 s with 2
  threads beside other jobs against 0.6 s with 1, and a Mato Grosso fold took 5.3x its
  quiet time beside one busy process). ``OMP_WAIT_POLICY=PASSIVE`` (and
  ``KMP_BLOCKTIME=0`` for Intel OpenMP) makes waiting threads sleep. OpenMP reads these
  variables once, when its library loads, so they are set with ``setdefault`` (a value the
  user exported wins) in the process's environment before ``import torch``.
- :func:`fit_threads` (run by the CLI before a command that computes): one thread count,
  the CPUs this process may run on (``os.sched_getaffinity``, which follows ``taskset``,
  cgroup cpusets and Slurm) capped by an explicit ``--threads`` (Snakemake passes its
  ``{threads}``), applied to torch's intra-op and inter-op pools, the BLAS/OpenMP pools
  already loaded (threadpoolctl) and those loaded later (their environment variables),
  joblib (``LOKY_MAX_CPU_COUNT``) and Dask's threaded scheduler.

Code that sizes its own pools (e.g. prediction's chunk threads) should ask
:func:`usable_cpus`, which honours the cap given to :func:`fit_threads`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from cropseq.errors import CropseqError

__all__ = ["FLOP_PER_THREAD", "PASSIVE_ENV", "THREAD_ENV", "ThreadFit", "affinity_cpus", "fit_threads", "set_env_defaults",
           "step_threads", "torch_intra_op", "usable_cpus"]

#: OpenMP settings that make idle threads sleep instead of spinning (see the module docstring).
PASSIVE_ENV: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}

#: Thread-count variables read by OpenMP/BLAS libraries (and torch) when they load.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LOKY_MAX_CPU_COUNT")

#: FLOPs of a training step that make one more intra-op thread worth waking (:func:`step_threads`).
FLOP_PER_THREAD = 8e9

_cap: int | None = None  # the process-wide cap of the last fit_threads call


def set_env_defaults() -> None:
    """Make OpenMP threads wait passively, unless the user's environment says otherwise.

    Only effective before the OpenMP runtime loads (before ``import torch``).
    """
    for key, value in PASSIVE_ENV.items():
        os.environ.setdefault(key, value)


def affinity_cpus() -> int:
    """CPUs this process may run on (its affinity mask; the CPU count where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def usable_cpus(cap: int | None = None) -> int:
    """Threads worth running: the affinity CPUs, capped by ``cap`` or by :func:`fit_threads`'s cap.

    Args:
        cap: An explicit limit (e.g. ``--threads``); None = the cap of the last
            :func:`fit_threads` call, if any.
    """
    cap = _cap if cap is None else cap
    n = affinity_cpus()
    return n if cap is None else max(1, min(n, int(cap)))


@dataclass(frozen=True)
class ThreadFit:
    """What :func:`fit_threads` set.

    Attributes:
        threads: torch intra-op, BLAS/OpenMP and Dask threads.
        interop: torch inter-op threads; None when torch was not configured, or its
            inter-op pool had already started (it cannot be resized then).
        affinity: CPUs in the process's affinity mask.
        cap: The explicit cap, if any.
    """

    threads: int
    interop: int | None
    affinity: int
    cap: int | None


def fit_threads(cap: int | None = None, *, load_torch: bool = True) -> ThreadFit:
    """Size every thread pool of this process to the CPUs it may use.

    The thread-count variables of :data:`THREAD_ENV` are set to the count too, for libraries
    and worker processes that start later; they replace exported values (``--threads`` is
    the one knob).

    Args:
        cap: At most this many threads (``--threads``, Snakemake's ``{threads}``); a cap
            above the affinity CPUs is clamped to them.
        load_torch: Import torch to size its pools now. False leaves an unloaded torch
            unloaded (the CLI does not pay its import for ``--help``): it then starts with
            ``OMP_NUM_THREADS`` intra-op threads, set here, and its default inter-op pool
            (idle unless a model forks work, which cropseq's do not).

    Returns:
        A :class:`ThreadFit`.

    Raises:
        CropseqError: ``cap`` below 1.
    """
    global _cap
    if cap is not None and int(cap) < 1:
        raise CropseqError(f"--threads must be >= 1, got {cap}")
    _cap = None if cap is None else int(cap)
    n = usable_cpus()
    for key in THREAD_ENV:  # libraries (and worker processes) that start later
        os.environ[key] = str(n)
    interop = _fit_torch(n) if load_torch or "torch" in sys.modules else None
    _fit_blas(n)
    _fit_dask(n)
    return ThreadFit(threads=n, interop=interop, affinity=affinity_cpus(), cap=_cap)


def _fit_torch(n: int) -> int | None:
    """Set torch's intra-op threads, and its inter-op threads while that is still allowed."""
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # the inter-op pool has started (or was sized before): fixed for good
        return None
    return n


def _fit_blas(n: int) -> None:
    """Limit the BLAS and OpenMP pools already loaded (numpy's OpenBLAS, torch's OpenMP...)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)  # called, not used as a context manager: stays in force


def _fit_dask(n: int) -> None:
    """Size Dask's threaded scheduler (``dask.compute`` without an explicit pool)."""
    import dask

    dask.config.set(num_workers=n)


def step_threads(step_flop: float, cap: int | None = None) -> int:
    """Intra-op threads for a loop of steps of ``step_flop`` FLOPs: one per :data:`FLOP_PER_THREAD`.

    At least 1, at most :func:`usable_cpus`. With passive waiting (above) every parallel
    region wakes the other threads from sleep, which a small step does not pay back.
    Measured on 2 quiet cores (``benchmarks/contention.py``, s/step on 2 threads vs 1): the
    ``fast`` preset's step (batch 64, 0.2 GFLOP) 0.032 vs 0.013, the ``accurate`` preset's
    (4.2 GFLOP) 0.128 vs 0.098, ``accurate`` at batch 256 (17 GFLOP) 0.316 vs 0.322 (even).

    Args:
        step_flop: FLOPs of one step (e.g. forward + backward of one batch).
        cap: As :func:`usable_cpus`'s.
    """
    return max(1, min(usable_cpus(cap), int(step_flop // FLOP_PER_THREAD)))


@contextlib.contextmanager
def torch_intra_op(n: int | None) -> Iterator[None]:
    """Set torch's intra-op threads to ``n`` inside the block, restored after (None: unchanged)."""
    import torch

    old = torch.get_num_threads()
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
