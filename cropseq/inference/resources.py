"""How big and how parallel: chunk edge, workers and threads, memory and disk.

Decided in the client before any chunk runs, from the scene's size and this machine:

- :func:`auto_chunk`: the chunk edge, so that every parallel slot gets several chunks.
- :func:`auto_workers`: one single-threaded worker per core, fewer when a worker's memory
  (chunk buffers plus the model's working memory) would not fit in half the available RAM;
  one worker with two threads when the model runs on a GPU.
- :func:`check_output_size`: outputs larger than the free disk space are refused up front.

The device is resolved once, by :func:`cropseq.predictors.resolve_device`.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from cropseq.errors import CropseqError

__all__ = [
    "CHUNKS_PER_SLOT",
    "DEFAULT_CHUNK",
    "DISK_HEADROOM",
    "MIN_AUTO_CHUNK",
    "MODEL_WORKING_BYTES",
    "auto_chunk",
    "auto_workers",
    "check_output_size",
    "cpu_count",
    "parallel_slots",
]

#: Default chunk edge in pixels (the cube contract's chunking).
DEFAULT_CHUNK = 512
#: Automatic chunks are never smaller than this (per-chunk overhead and halo re-reads).
MIN_AUTO_CHUNK = 128
#: Automatic chunks give every parallel slot (worker thread) at least this many chunks.
CHUNKS_PER_SLOT = 4
#: Working memory of one model call beyond the chunk itself. Measured: the default deep
#: model (CNN + 2-layer BiGRU 128) on the CPU works in 64 MiB feature row blocks and
#: 1,024-pixel recurrent batches, ~0.6 GiB per predict_image call (it was 2.2 GiB with
#: 16,384-pixel batches); a whole 1-worker prediction of a 512² scene peaked at 1.5 GiB for
#: the process tree. The RandomForest stays well under 1 GiB, so one bound serves both.
MODEL_WORKING_BYTES = 2**30
#: Free space wanted per byte of uncompressed output: the part files are written
#: uncompressed (blocks rewritten in place), and the compressed COGs are made beside them.
DISK_HEADROOM = 1.1


def cpu_count() -> int:
    """Cores this process may use: its CPU affinity, capped by ``cropseq --threads`` (:mod:`cropseq.threads`)."""
    from cropseq.threads import usable_cpus

    return usable_cpus()


def auto_chunk(height: int, width: int, slots: int) -> int:
    """The chunk edge for a ``height x width`` scene mapped by ``slots`` parallel threads.

    :data:`DEFAULT_CHUNK`, halved (down to :data:`MIN_AUTO_CHUNK`) until every slot gets
    :data:`CHUNKS_PER_SLOT` chunks: one 512-px chunk for two workers would leave one idle
    and the progress bar at 0/1 until the end.
    """
    chunk = DEFAULT_CHUNK
    while chunk > MIN_AUTO_CHUNK and math.ceil(height / chunk) * math.ceil(width / chunk) < CHUNKS_PER_SLOT * max(slots, 1):
        chunk //= 2
    return max(chunk, MIN_AUTO_CHUNK)


def parallel_slots(workers: int | None, threads: int | None, scheduler: str | None) -> int:
    """How many chunks run at once, as far as it is known before a cluster starts."""
    if scheduler:
        return cpu_count()  # the cluster's size is known only once connected
    if workers is None:
        return cpu_count() * int(threads or 1)  # auto_workers: one worker per core
    if workers == 0:
        return int(threads or cpu_count())
    return int(workers) * int(threads or 1)


def auto_workers(device: str, chunk_bytes: int, model_bytes: int = MODEL_WORKING_BYTES) -> tuple[int, int]:
    """``(workers, threads_per_worker)`` for a LocalCluster on this machine.

    One single-threaded worker per core, limited so that each worker's share fits in half
    the available memory: about four chunk-sized buffers (input, halo copy, features,
    output), the model's working memory and ~300 MiB of interpreter, libraries and model.
    One worker with two threads when the model runs on a GPU.

    Args:
        device: The resolved device (``cpu`` or ``cuda``).
        chunk_bytes: Input bytes of one chunk with its halo.
        model_bytes: Working memory of one model call.

    Returns:
        ``(workers, threads)``, both at least 1.
    """
    if str(device).startswith("cuda"):
        return 1, 2
    import psutil

    per_worker = 4 * chunk_bytes + model_bytes + 300 * 2**20
    fit = int(0.5 * psutil.virtual_memory().available // max(per_worker, 1))
    return max(1, min(cpu_count(), fit)), 1


def check_output_size(out: Path, pixels: int, confidence: bool, n_float: int) -> None:
    """Refuse, before any work, outputs the output folder cannot possibly hold.

    A tiny file can claim a huge raster (a VRT or TIFF header of 10^6 x 10^6 px): better one
    line now than hours of work ending in a full disk. The part files hold the outputs
    uncompressed until the end, so that is what must fit (sparse blocks of nodata-only
    chunks cost nothing, so this errs on the safe side).

    Args:
        out: The crop map (its folder is checked).
        pixels: Pixels of the map.
        confidence: Whether a float32 confidence raster is written.
        n_float: Further float32 layers (probabilities, uncertainty measures).

    Raises:
        CropseqError: naming the size needed and the space free.
    """
    per_px = 1 + (4 if confidence else 0) + 4 * n_float
    need = pixels * per_px
    try:
        free = shutil.disk_usage(out.parent if str(out.parent) else Path(".")).free
    except OSError:
        return
    if DISK_HEADROOM * need > free:
        raise CropseqError(
            f"the outputs take {_size(need)} uncompressed while they are written ({pixels:,} px x {per_px} "
            f"bytes), more than the {_size(free)} free there; predict a smaller area "
            "(cropseq tile, a smaller stack) or write to a larger disk",
            out,
        )


def _size(n: float) -> str:
    """``n`` bytes in decimal units (``1.5 GB``)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover
