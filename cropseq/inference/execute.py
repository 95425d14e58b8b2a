"""Execution: the chunks of a plan computed and handed to the writer, here or on a cluster.

- threaded (``workers=0``): a thread pool in this process; torch's own intra-op pool is shrunk
  meanwhile so the two do not oversubscribe the cores (:func:`torch_threads`).
- distributed: a ``LocalCluster`` (:func:`dask_client`, workers started with SIGINT ignored,
  killed at once on an error or Ctrl-C) or an existing scheduler.

A plan with :attr:`~cropseq.inference.plan.PredictionPlan.direct` chunks (a manifest stack)
submits them in a bounded window (:data:`IN_FLIGHT_PER_THREAD` per thread), so start-up and
memory are flat in the chunk count; any other plan computes its Dask graph block by block.
Finished chunks (class + confidence: 5 bytes a pixel) are written as they arrive and
released, so neither side holds the scene. The main thread wakes every 0.2 s while it waits
(:func:`_reap`): a signal the kernel delivers to a worker thread is only acted upon when the
main thread runs Python.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import dask
import numpy as np

from cropseq.errors import CropseqError
from cropseq.inference.blocks import DirectBlocks, finish_block
from cropseq.inference.plan import PredictionPlan
from cropseq.inference.resources import cpu_count
from cropseq.threads import THREAD_ENV, torch_intra_op

__all__ = ["IN_FLIGHT_PER_THREAD", "dask_client", "run_distributed", "run_threaded", "torch_threads"]

#: Chunks in flight per worker thread: enough to keep every thread busy while finished
#: chunks are written, few enough that memory and start-up time do not grow with the scene.
IN_FLIGHT_PER_THREAD = 2


@contextlib.contextmanager
def torch_threads(dask_threads: int) -> Iterator[None]:
    """Shrink torch's intra-op pool while ``dask_threads`` threads each run the model."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    new = max(1, cpu_count() // max(1, dask_threads))
    with torch_intra_op(new if new < torch.get_num_threads() else None):
        yield


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int = 1,
    threads: int = 1,
) -> Iterator[Any]:
    """A ``distributed.Client``: connected to ``scheduler``, or to a new LocalCluster.

    Args:
        scheduler: Address of an existing scheduler (``tcp://host:8786``), or None.
        workers: Worker processes of the LocalCluster (when no scheduler is given).
        threads: Threads per worker of the LocalCluster.

    Raises:
        CropseqError: when the scheduler cannot be reached.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError, ValueError) as e:
            raise CropseqError(f"cannot connect to the Dask scheduler ({type(e).__name__}: {e})", scheduler) from None
        with client:
            yield client
        return
    # Dask's nanny exports MALLOC_TRIM_THRESHOLD_=65536 to its workers to return freed memory
    # promptly. Setting it also freezes glibc's mmap threshold at 128 KiB, so every tensor of
    # the recurrent batches is a fresh mmap and page-faulted in again: measured 1,339 vs
    # 1,936 px/s for the default model. The working set is bounded by the chunk size anyway.
    # (A value the user exports in the environment still wins.)
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), _workers_ignore_sigint():
        cluster = LocalCluster(
            n_workers=int(workers),
            threads_per_worker=int(threads),
            processes=True,
            dashboard_address=":0",  # any free port: never collides with another cluster on 8787
            silence_logs=logging.ERROR,
            # One BLAS/OpenMP thread per Dask thread (Dask's own default), also when this
            # process sized OMP_NUM_THREADS to all its cores (cropseq.threads.fit_threads).
            env={name: "1" for name in THREAD_ENV[:3]},
        )
    try:
        with Client(cluster) as client:
            yield client
    except BaseException:
        _close_cluster_now(cluster)
        raise
    cluster.close()


@contextlib.contextmanager
def _workers_ignore_sigint() -> Iterator[None]:
    """Start worker processes with SIGINT ignored (inherited through the spawn).

    Ctrl-C reaches every process of the terminal's process group: the workers would die
    with a traceback each. Only this process handles it, and shuts the workers down.
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _close_cluster_now(cluster: Any) -> None:
    """Shut a LocalCluster down at once after an error or interruption.

    A graceful close waits for the running chunk tasks (tens of seconds for a large chunk
    of a deep model); their results are not wanted any more, so the worker processes are
    killed first and the cluster's bookkeeping is closed after them.
    """
    import multiprocessing

    pids = {getattr(nanny, "pid", None) for nanny in getattr(cluster, "workers", {}).values()}
    for proc in multiprocessing.active_children():  # only this cluster's worker processes
        if proc.pid in pids:
            with contextlib.suppress(Exception):
                proc.kill()
    with contextlib.suppress(Exception):
        cluster.close(timeout=2)


def _write_task(writer: Any, row: int, col: int, probs: np.ndarray, codes: np.ndarray, want: tuple[str, ...]) -> None:
    cls, conf, layers = finish_block(probs, codes, want)
    writer.write_block(row, col, cls, conf, layers=layers)


def _direct_write(direct: DirectBlocks, writer: Any, i: int, j: int, r: int, c: int, codes: np.ndarray, want: tuple[str, ...]) -> None:
    cls, conf, layers = direct.finish(i, j, codes, want)
    writer.write_block(r, c, cls, conf, layers=layers)


def _reap(pending: set[Any]) -> set[Any]:
    """Wait a little for chunk futures; re-raise a finished chunk's error; return the rest.

    The short timeout keeps the main thread waking up: a signal (Ctrl-C, SIGTERM) that the
    kernel delivers to a worker thread is only acted upon when the main thread runs Python.
    """
    import concurrent.futures as cf

    done, rest = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
    for f in done:
        f.result()
    return rest


def _run_threaded_direct(plan: PredictionPlan, writer: Any, threads: int, want: tuple[str, ...]) -> None:
    """Chunks through a thread pool, at most ``IN_FLIGHT_PER_THREAD * threads`` at a time."""
    import concurrent.futures as cf

    assert plan.direct is not None
    limit = max(1, IN_FLIGHT_PER_THREAD * threads)
    pool = cf.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cropseq-chunk")
    pending: set[cf.Future[None]] = set()
    try:
        with torch_threads(threads):
            for i, j, r, c in plan.offsets():
                while len(pending) >= limit:
                    pending = _reap(pending)
                pending.add(pool.submit(_direct_write, plan.direct, writer, i, j, r, c, plan.codes, want))
            while pending:
                pending = _reap(pending)
    except BaseException:
        # Do not wait for the chunks being computed (seconds each): the writer's lock keeps
        # a late block from racing its close, and the CLI ends the process after cleanup.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_distributed_direct(client: Any, plan: PredictionPlan, writer: Any, want: tuple[str, ...], retries: int) -> None:
    """Chunks on a cluster, a bounded window of them in flight (two per worker thread)."""
    from distributed import as_completed

    assert plan.direct is not None
    threads = sum(int(w.get("nthreads", 1)) for w in client.scheduler_info().get("workers", {}).values())
    limit = max(2, IN_FLIGHT_PER_THREAD * max(threads, 1))
    direct = client.scatter(plan.direct, broadcast=True)  # shipped once, not with every task
    offsets = plan.offsets()
    pos: dict[str, tuple[int, int]] = {}
    flying = as_completed()

    def submit_next() -> bool:
        nxt = next(offsets, None)
        if nxt is None:
            return False
        i, j, r, c = nxt
        fut = client.submit(DirectBlocks.finish, direct, i, j, plan.codes, want, retries=retries, pure=False)
        pos[fut.key] = (r, c)
        flying.add(fut)
        return True

    try:
        for _ in range(limit):
            if not submit_next():
                break
        # Finished chunks (class + confidence: 5 bytes a pixel) are written as they arrive
        # and released; each one frees a slot for the next chunk.
        for fut in flying:
            cls, conf, layers = fut.result()
            r, c = pos.pop(fut.key)
            writer.write_block(r, c, cls, conf, layers=layers)
            fut.release()
            submit_next()
    except BaseException:
        client.cancel(list(flying.futures))
        raise


def run_threaded(plan: PredictionPlan, writer: Any, threads: int, want: tuple[str, ...]) -> None:
    """Compute every chunk of ``plan`` on ``threads`` threads of this process into ``writer``."""
    if plan.direct is not None:
        _run_threaded_direct(plan, writer, threads, want)
        return
    blocks = plan.probs.to_delayed()  # one optimised graph shared by all blocks
    codes = plan.codes
    write = dask.delayed(_write_task, pure=False)
    tasks = [write(writer, r, c, blocks[0, i, j], codes, want) for i, j, r, c in plan.offsets()]
    with torch_threads(threads):
        # Write tasks return None, so nothing accumulates: each chunk is written by the
        # thread that computed it and then dropped.
        dask.compute(*tasks, scheduler="threads", num_workers=threads)


def run_distributed(client: Any, plan: PredictionPlan, writer: Any, want: tuple[str, ...], retries: int) -> None:
    """Compute every chunk of ``plan`` on the cluster of ``client``; the client writes them."""
    from distributed import as_completed

    if plan.direct is not None:
        _run_distributed_direct(client, plan, writer, want, retries)
        return
    blocks = plan.probs.to_delayed()
    codes = plan.codes
    finish = dask.delayed(finish_block, pure=False)
    where = []
    tasks = []
    for i, j, r, c in plan.offsets():
        tasks.append(finish(blocks[0, i, j], codes, want))
        where.append((r, c))
    futures = client.compute(tasks, retries=retries)
    pos = {f.key: rc for f, rc in zip(futures, where)}
    try:
        # Only finished chunks come back (class + confidence: 5 bytes a pixel); the client
        # writes them as they arrive and releases them, so neither side holds the scene.
        for fut in as_completed(futures):
            cls, conf, layers = fut.result()
            r, c = pos[fut.key]
            writer.write_block(r, c, cls, conf, layers=layers)
            fut.release()
    except BaseException:
        client.cancel(futures)
        raise
