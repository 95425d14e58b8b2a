"""Write outputs safely: under a temporary name, never over an input, with clear errors.

- :func:`atomic_path` writes under a temporary sibling name and renames it when complete:
  a killed job never leaves a truncated file under the final name, and a failed write
  never replaces a good earlier output.
- :func:`check_writable` (called by :func:`atomic_path`, and by commands before any work)
  refuses a missing or read-only folder, a symlink loop, and a path that is one of the
  command's own inputs.
- Inputs are registered by the readers (:func:`register_input`: stack rasters and masks,
  samples tables, labels, models, truth rasters) while an :func:`inputs_scope` is active;
  the CLI opens one per command. Outside a scope (the Python API) nothing is recorded.
- A write that fails because the disk is full (ENOSPC, or a library's write error on a
  file system with no space left) becomes one :class:`~cropseq.errors.CropseqError`
  ``no space left on the device`` (:func:`no_space_error`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cropseq.errors import CropseqError
from cropseq.remote import is_remote

__all__ = ["atomic_path", "check_writable", "inputs_scope", "is_out_of_space", "no_space_error", "register_input", "remove_path", "temp_sibling"]

# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class _Input:
    path: Path  # as given (for messages)
    real: str  # resolved path
    ident: tuple[int, int] | None  # (st_dev, st_ino); None if it could not be stat'ed
    what: str


_LOCK = threading.Lock()
# Inputs and declared outputs of the running command; None outside an inputs_scope().
# Process-wide rather than a context variable: readers run in Dask's worker threads too.
_INPUTS: list[_Input] | None = None
_OUTPUTS: list[Path] | None = None
# Files this command has itself completed (by identity): reading one back (cross-validation
# scores the models it trains) or rewriting it loses nothing the user had.
_WRITTEN: set[tuple[int, int]] = set()


@contextlib.contextmanager
def inputs_scope() -> Iterator[None]:
    """Record the inputs of one command; outputs that are one of them are refused.

    The CLI wraps every command in one scope; API callers may do the same. Scopes do not
    nest: an inner scope continues the outer one.
    """
    global _INPUTS, _OUTPUTS
    with _LOCK:
        outer = _INPUTS is not None
        if not outer:
            _INPUTS, _OUTPUTS = [], []
            _WRITTEN.clear()
    try:
        yield
    finally:
        if not outer:
            with _LOCK:
                _INPUTS = _OUTPUTS = None
                _WRITTEN.clear()


def _mark_written(path: Path) -> None:
    """Record that the running command completed ``path`` (see ``_WRITTEN``)."""
    ident = _identity(path)
    if ident is not None and _INPUTS is not None:
        with _LOCK:
            _WRITTEN.add(ident)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _real(path: Path) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return os.path.abspath(path)


def register_input(*paths: str | os.PathLike[str], what: str) -> None:
    """Record files (or folders) the running command reads; a no-op outside a scope.

    Remote inputs (URLs, :mod:`cropseq.remote`) are skipped: no local output can replace them.

    Raises:
        CropseqError: when one of them is an output the command already declared.
    """
    if _INPUTS is None:
        return
    for p in paths:
        if is_remote(p):
            continue
        item = _Input(Path(p), _real(Path(p)), _identity(Path(p)), what)
        with _LOCK:
            if _INPUTS is None:
                return
            _INPUTS.append(item)
            declared = list(_OUTPUTS or ())
        for out in declared:
            if _same_file(out, item):
                raise _overwrite_error(out, item)


def _same_file(out: Path, item: _Input) -> bool:
    if item.ident is not None and item.ident in _WRITTEN:
        return False  # written by this command itself: nothing of the user's is at stake
    ident = _identity(out)
    if ident is not None and item.ident is not None:
        return ident == item.ident
    return _real(out) == item.real


def _overwrite_error(out: Path, item: _Input) -> CropseqError:
    named = "" if _real(out) == item.real else f" {item.path}"  # a hard link or another name of it
    return CropseqError(f"this output is also an input ({item.what}{named}); choose another output name", out)


def _check_not_input(path: Path, *, replaces_folder: bool = False) -> None:
    """Refuse ``path`` if it is a registered input (or, for a folder, holds one)."""
    if _INPUTS is None:
        return
    with _LOCK:
        items = list(_INPUTS or ())
        if _OUTPUTS is not None and path not in _OUTPUTS:
            _OUTPUTS.append(path)
    real = _real(path)
    for item in items:
        if _same_file(path, item):
            raise _overwrite_error(path, item)
        if replaces_folder and item.real.startswith(real.rstrip(os.sep) + os.sep):
            raise _overwrite_error(path, item)


# --------------------------------------------------------------------------- checks


def _symlink_loop(path: Path) -> bool:
    try:
        path.stat()
    except OSError as e:
        return e.errno == errno.ELOOP
    except RuntimeError:  # pathlib's own loop detection
        return True
    return False


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` can be created.

    Its folder exists and is writable, and it is neither a symlink loop nor one of the
    running command's inputs.

    Raises:
        CropseqError: naming the path and the problem.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if _symlink_loop(parent) or _symlink_loop(path):
        what = f"output folder {parent} is" if _symlink_loop(parent) else "is"
        raise CropseqError(f"{what} a symbolic link loop (it leads back to itself); remove it or choose another name", path)
    if parent.exists() and not parent.is_dir():
        raise CropseqError(f"output folder {parent} is a file, not a folder", path)
    if not parent.is_dir():
        raise CropseqError(f"output folder {parent} does not exist", path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CropseqError(f"output folder {parent} is not writable", path)
    _check_not_input(path)
    return path


# --------------------------------------------------------------------------- disk full

#: Below this many free bytes a library's generic write error is taken as "disk full".
_NEARLY_FULL = 1 << 20
# Write errors of libraries that drop the errno (GDAL/libtiff, torch's zip writer, ...).
_WRITE_FAILURE = re.compile(
    r"no space left|errno 28|disk quota|write error|write failed|failed writing|error writing|"
    r"IO error|i/o error|iostream error|unexpected pos|short write|could not write|cannot write",
    re.IGNORECASE,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]


def _free_bytes(folder: Path) -> tuple[int, int] | None:
    """``(free, total)`` bytes of the file system holding ``folder``, if known."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def is_out_of_space(exc: BaseException, folder: str | os.PathLike[str]) -> bool:
    """Whether ``exc`` (raised while writing into ``folder``) means the disk is full.

    True for ENOSPC/EDQUOT anywhere in the exception chain, and for a library's generic
    write error (GDAL, torch) while the file system has (almost) no free space left.
    Call it before removing partial files: they hold the space that ran out.
    """
    if not isinstance(exc, Exception):
        return False  # KeyboardInterrupt, SystemExit: never a disk problem
    chain = list(_chain(exc))
    if any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in chain):
        return True
    if not any(_WRITE_FAILURE.search(str(e)) for e in chain):
        return False
    free = _free_bytes(Path(folder))
    return free is not None and free[0] < _NEARLY_FULL


def no_space_error(exc: BaseException, path: str | os.PathLike[str]) -> CropseqError | None:
    """The one-line error for a write to ``path`` that failed with ``exc``, if the disk is full.

    Call it before removing the partial files (they hold the space that ran out), and
    raise the result (``from None``) after the cleanup.

    Returns:
        ``CropseqError("no space left on the device (...)", path)``, or None when ``exc``
        is another failure.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if isinstance(exc, CropseqError) or not is_out_of_space(exc, folder):
        return None
    free = _free_bytes(folder)
    detail = f"{_human(free[0])} free of {_human(free[1])} in {folder}" if free else f"writing into {folder}"
    return CropseqError(f"no space left on the device ({detail}); free some space or write elsewhere", path)


def temp_sibling(final: Path, tag: str, suffix: str | None = None) -> Path:
    """A hidden, unique name beside ``final`` (same file system: renames never copy).

    ``.STEM.TAG-xxxxxxxx.SUFFIX``; the suffix defaults to ``final``'s so format drivers
    that look at the extension still work.
    """
    suffix = final.suffix if suffix is None else suffix
    return final.with_name(f".{final.stem}.{tag}-{uuid.uuid4().hex[:8]}{suffix}")


def remove_path(path: Path) -> None:
    """Remove a file or folder if it exists (cleanup of temporary outputs)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _replace(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``.

    An existing folder (a Zarr store) is moved aside first and removed only once the new
    one is in place, so an interruption never loses both.
    """
    if not (final.is_dir() and not final.is_symlink()):
        os.replace(tmp, final)
        return
    old = temp_sibling(final, "old")
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it to ``path`` if the block succeeds.

    The temporary name keeps the final suffix (``.tmp-<id>.tif``) so format drivers that
    look at the extension still work. Works for files and for folders (e.g. Zarr stores).
    On error the temporary file or folder is removed and the final path is untouched; a
    full disk is reported as one :class:`~cropseq.errors.CropseqError` naming ``path``.

    Raises:
        CropseqError: from :func:`check_writable` (before anything is written), or when
            the disk runs out of space.

    Example:
        >>> with atomic_path("map.tif") as tmp:  # doctest: +SKIP
        ...     write_geotiff(tmp)
    """
    final = check_writable(path)
    replaces_folder = final.is_dir() and not final.is_symlink()
    if replaces_folder:
        _check_not_input(final, replaces_folder=True)
    tmp = temp_sibling(final, "tmp")
    try:
        yield tmp
        _replace(tmp, final)
        _mark_written(final)
    except BaseException as e:
        full = no_space_error(e, final)
        remove_path(tmp)
        if full is not None:
            raise full from None
        raise
