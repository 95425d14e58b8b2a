"""Write outputs under a temporary name and rename them when complete.

A killed job never leaves a truncated file under the final name, and a failed write never
replaces a good earlier output.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from cropseq.errors import CropseqError


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` can be created: its folder exists and is writable.

    Raises:
        CropseqError: naming the path, when the folder is missing or read-only.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise CropseqError(f"output folder {parent} is a file, not a folder", path)
    if not parent.is_dir():
        raise CropseqError(f"output folder {parent} does not exist", path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CropseqError(f"output folder {parent} is not writable", path)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it to ``path`` if the block succeeds.

    The temporary name keeps the final suffix (``.tmp-<id>.tif``) so format drivers that
    look at the extension still work. Works for files and for folders (e.g. Zarr stores).
    On error the temporary file or folder is removed and the final path is untouched.

    Example:
        >>> with atomic_path("map.tif") as tmp:  # doctest: +SKIP
        ...     write_geotiff(tmp)
    """
    final = check_writable(path)
    tmp = final.with_name(f".{final.stem}.tmp-{uuid.uuid4().hex[:8]}{final.suffix}")
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise
