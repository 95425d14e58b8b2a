"""Open rasters for windowed reads, keep the costly ones open per thread, keep rasterio quiet.

A cube is read one spatial chunk per Dask task, and each task reads every raster of the
stack in its window (:mod:`cropseq.io` opens each file once per window, whatever bands and
dates it holds). Between windows, :func:`open_raster` keeps a dataset open **in the same
thread** (a GDAL dataset must not be used by two threads at once, so threads never share
one) when opening it again would cost more than it saves, that is for VRTs:

- a VRT: XML to parse, then its sources to open (some remote), which GDAL keeps in its own
  bounded pool of datasets. Kept. Measured on the read benchmark
  (``benchmarks/read_throughput.py``, 1024² x 24 dates x 6 bands, per-date VRTs of
  ``/vsicurl/`` COGs): 15-25 % less CPU per read, +70-100 MB peak RSS.
- a GeoTIFF (or any other single file), local or remote: opened and closed per window.
  Opening a local one costs ~1 ms, and a dataset kept open keeps its decoded tiles in GDAL's
  block cache (up to ``GDAL_CACHEMAX``, 5 % of RAM by default) where closing frees them: kept
  open, the same benchmark read no faster and peaked at 800 instead of 380 MB. A remote one
  is re-opened from GDAL's process-wide cache of file sizes and headers (``/vsicurl/``), and
  kept open it would also keep its ``VSI_CACHE`` (up to 25 MB per file handle, see
  :data:`cropseq.remote.GDAL_DEFAULTS`) for as long as it stays open.

Nothing here travels with a pickled reader: the datasets are the process's (and thread's),
found by path. Bounded: each thread keeps its datasets in least-recently-used order, and
the process holds at most :data:`MAX_OPEN` (half the soft limit on open files, at most
8192); a thread that would pass it closes its own oldest first (never another thread's,
which may be reading), or, holding none, reads without keeping. A local file (a VRT)
rewritten since it was opened (other inode, size or modification time) is opened afresh;
a remote VRT is kept by URL (GDAL caches remote files by URL anyway). A thread's
datasets are closed when the thread ends, by :func:`close_rasters`, or at exit.

Why by hand: xarray's ``CachingFileManager`` shares one handle between threads and its LRU
(128 files, an xarray-wide option) is smaller than one chunk's files (every date of every
band), which a cyclic scan turns into no hit at all; rioxarray's per-thread manager is
unbounded and private; odc-stac opens a file per read (``odc/loader/_rio.py``: "TODO: open
file handle cache goes here") and keeps only its GDAL session per thread.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

__all__ = ["MAX_OPEN", "close_rasters", "open_count", "open_raster", "quiet_rasterio", "worth_keeping"]


def _default_max_open() -> int:
    """Half the soft limit on open files (leaving room for everything else), 32 to 8192."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY:
            soft = 16384
    except (ImportError, OSError, ValueError):  # no resource module (Windows)
        soft = 512
    return max(32, min(soft // 2, 8192))


#: Datasets the process keeps open at most (all threads together).
MAX_OPEN = _default_max_open()

_COUNT_LOCK = threading.Lock()
_count = 0  # datasets kept open by all threads


def open_count() -> int:
    """How many datasets all threads of this process keep open now."""
    return _count


def _counted(delta: int) -> int:
    global _count
    with _COUNT_LOCK:
        _count += delta
        return _count


class _Kept:
    """One thread's open datasets, least recently used first; closes them when dropped."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.datasets: OrderedDict[str, tuple[Any, Any]] = OrderedDict()  # path -> (signature, dataset)

    def drop(self, path: str) -> None:
        """Close the dataset kept for ``path`` (if any)."""
        entry = self.datasets.pop(path, None)
        if entry is not None:
            _counted(-1)
            entry[1].close()

    def make_room(self) -> bool:
        """Close this thread's oldest datasets until one more fits; False: none of ours is left."""
        while _count >= MAX_OPEN and self.datasets:
            self.drop(next(iter(self.datasets)))
        return _count < MAX_OPEN

    def clear(self) -> None:
        """Close every dataset of this thread."""
        while self.datasets:
            self.drop(next(iter(self.datasets)))

    def __del__(self) -> None:  # the thread ended (its local storage is released), or at exit
        try:
            if self.pid == os.getpid():
                self.clear()
        except Exception:  # noqa: BLE001, S110 - at interpreter exit the module may be half gone
            pass


class _ThreadLocal(threading.local):
    kept: _Kept | None = None
    env_started = False


_local = _ThreadLocal()


def _kept() -> _Kept:
    """This thread's datasets."""
    kept = _local.kept
    if kept is None:
        kept = _local.kept = _Kept()
    return kept


def _thread_env() -> None:
    """Start rasterio's GDAL environment once in this thread.

    Else ``rasterio.open`` starts and stops one per call (~0.1 ms, a tenth of opening a
    GeoTIFF). A ``rasterio.Env`` entered later nests inside it (and one entered before is
    used as it is); GDAL settings of remote reads still come per read from
    :func:`cropseq.remote.gdal_env`, so local files never get them.
    """
    if not _local.env_started:
        import rasterio.env

        if not rasterio.env.hasenv():
            rasterio.env.defenv()
        _local.env_started = True


def _forget_after_fork() -> None:
    """In a forked child: the parent's datasets are not ours to count or to use."""
    global _count
    _count = 0
    _local.kept = None  # the forking thread's (the child's only thread); dropped without counting


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _signature(path: str) -> Any:
    """What tells a rewritten local file from the one opened (None for remote paths)."""
    try:
        st = os.stat(path)
    except OSError:
        return None  # a /vsi…/ path, a URL, or a file gone: rasterio reports it
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def worth_keeping(path: str) -> bool:
    """Whether :func:`open_raster` keeps ``path`` open between reads: a VRT, local or remote."""
    return path.lower().split("?")[0].endswith(".vrt")


@contextlib.contextmanager
def open_raster(path: str) -> Iterator[Any]:
    """The rasterio dataset of ``path`` (a GDAL path: see :func:`cropseq.remote.gdal_path`).

    Opened with rasterio's warnings kept quiet (:func:`quiet_rasterio`). A file
    :func:`worth_keeping` stays open in this thread for the next call (closed now if
    reading it fails: a damaged file is not kept); any other is closed when the block ends.

    Raises:
        rasterio.errors.RasterioError: the file cannot be opened (or read, inside the block).
    """
    import rasterio

    _thread_env()
    if not worth_keeping(path):
        with quiet_rasterio():
            src = rasterio.open(path, sharing=False)
        with src:
            yield src
        return
    kept = _kept()
    sig = _signature(path)
    entry = kept.datasets.get(path)
    if entry is not None and entry[0] != sig:  # rewritten since it was opened
        kept.drop(path)
        entry = None
    if entry is None:
        with quiet_rasterio():
            src = rasterio.open(path, sharing=False)
        if not kept.make_room():  # the other threads hold every place: read without keeping
            with src:
                yield src
            return
        kept.datasets[path] = (sig, src)
        _counted(1)
    else:
        kept.datasets.move_to_end(path)
        src = entry[1]
    try:
        yield src
    except BaseException:
        kept.drop(path)
        raise


def close_rasters() -> None:
    """Close the datasets this thread keeps open (other threads close theirs when they end)."""
    _kept().clear()


@contextlib.contextmanager
def quiet_rasterio() -> Iterator[None]:
    """Keep the warnings rasterio and odc-stac give per file off the terminal.

    rasterio's NotGeoreferencedWarning (a damaged header, or odc-stac's in-memory
    reprojection buffers: cropseq checks georeferencing itself and reports problems as one
    :class:`~cropseq.errors.CropseqError` line), affine's and odc-stac's deprecation
    warnings. Python's warning filters are process-wide and ``catch_warnings`` is not
    thread-safe: use it around opens and whole loads, not per read.
    """
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        yield
