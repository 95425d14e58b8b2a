"""Remote inputs: ``http(s)://``, ``s3://``, ``gs://``, ``az://`` URLs and GDAL ``/vsi…/`` paths.

Local files stay :class:`pathlib.Path`; a remote one is a :class:`RemotePath`, a ``str``
that keeps its URL intact (``Path("https://host/a.tif")`` would collapse it to
``https:/host/a.tif``) and offers the few ``Path`` attributes the readers use (``name``,
``stem``, ``suffix``, ``parent``, ``/``). Pixels and vectors are read through GDAL's
virtual file systems (:func:`gdal_path`), under :func:`gdal_env`'s defaults; a manifest or
dates file behind an ``http(s)`` URL is fetched with :mod:`urllib` (:func:`read_text`).
See ``docs/remote-data.md`` for GDAL's HTTP settings.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import posixpath
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePath
from typing import Any

from cropseq.errors import CropseqError

__all__ = ["GDAL_DEFAULTS", "HTTP_TIMEOUT", "RemotePath", "Source", "VSI_PREFIX", "gdal_env", "gdal_path", "glob", "is_remote", "join", "read_text", "source"]

#: URL scheme -> GDAL virtual file system.
VSI_PREFIX = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/"}
_SCHEME = re.compile(r"^(?P<vsi>/vsicurl/)?(?P<scheme>https?|s3|gs|az):/+", re.IGNORECASE)

#: GDAL settings for remote reads, applied only where neither the environment nor an
#: enclosing ``rasterio.Env`` sets them (see docs/remote-data.md).
GDAL_DEFAULTS: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing per file opened
    "GDAL_HTTP_MAX_RETRY": "3",  # retry 429/502/503/504 answers ...
    "GDAL_HTTP_RETRY_DELAY": "1",  # ... after 1 s, then longer
    "GDAL_HTTP_TIMEOUT": "60",  # seconds, so a stalled server fails instead of hanging
    "VSI_CACHE": "TRUE",  # keep recently read blocks of each file
}

#: Seconds :func:`read_text` waits for an answer.
HTTP_TIMEOUT = 60.0


class RemotePath(str):
    """A remote file's address (URL or ``/vsi…/`` path), kept verbatim as a ``str``."""

    __slots__ = ()

    @property
    def _path(self) -> str:
        """The path part (no scheme, host, query or fragment)."""
        s = str(self)
        if s.startswith("/vsi") and not _SCHEME.match(s):
            return s
        return urllib.parse.urlsplit(s.removeprefix("/vsicurl/")).path

    @property
    def name(self) -> str:
        """The file name (last path segment), as :attr:`pathlib.Path.name`."""
        return posixpath.basename(self._path.rstrip("/"))

    @property
    def suffix(self) -> str:
        """The file name's extension, as :attr:`pathlib.Path.suffix`."""
        return PurePath(self.name).suffix if self.name else ""

    @property
    def stem(self) -> str:
        """The file name without its extension, as :attr:`pathlib.Path.stem`."""
        return PurePath(self.name).stem if self.name else ""

    @property
    def parent(self) -> RemotePath:
        """The folder holding this file (ends with ``/``)."""
        return join(self, ".")

    def __truediv__(self, other: str | os.PathLike[str]) -> RemotePath:
        return join(self if self.endswith("/") else RemotePath(self + "/"), os.fspath(other))


#: A file the readers open: a local path or a remote address.
Source = Path | RemotePath


def is_remote(path: Any) -> bool:
    """Whether ``path`` names a remote file (a URL or a GDAL ``/vsi…/`` path)."""
    if isinstance(path, RemotePath):
        return True
    s = os.fspath(path) if isinstance(path, os.PathLike) else path
    return isinstance(s, str) and (bool(_SCHEME.match(s)) or s.startswith("/vsi"))


def source(path: str | os.PathLike[str]) -> Path | RemotePath:
    """A local :class:`~pathlib.Path` (``~`` expanded) or a :class:`RemotePath`.

    Repairs a URL that went through ``Path`` (``https:/host/a.tif``, as a CLI argument
    typed ``Path`` arrives) back to ``https://host/a.tif``.
    """
    if isinstance(path, RemotePath):
        return path
    s = os.fspath(path)
    if not is_remote(s):
        return Path(os.path.expanduser(s))
    m = _SCHEME.match(s)
    if m is not None:
        sep = "://" if m["scheme"].lower() in VSI_PREFIX else ":/"
        s = (m["vsi"] or "") + m["scheme"] + sep + s[m.end() :]
    return RemotePath(s)


def join(base: str, relative: str) -> RemotePath:
    """``relative`` resolved against the remote file or folder ``base`` (as a browser does).

    A remote ``relative`` is returned as is. ``base`` ending with ``/`` is a folder, else
    a file whose folder is used.
    """
    if is_remote(relative):
        return source(relative)  # type: ignore[return-value]
    prefix, url = ("/vsicurl/", base[len("/vsicurl/") :]) if base.startswith("/vsicurl/") else ("", base)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("http", "https"):
        return RemotePath(prefix + urllib.parse.urljoin(url, relative))
    # urljoin ignores schemes it does not know (s3, gs, az, /vsi paths): join the path part.
    head, path = (f"{parts.scheme}://{parts.netloc}", parts.path) if parts.scheme else ("", url)
    folder = path if path.endswith("/") else posixpath.dirname(path) + "/"
    joined = posixpath.normpath(posixpath.join(folder, relative))
    if relative in (".", "") or relative.endswith("/"):
        joined += "/"
    return RemotePath(prefix + head + joined)


def gdal_path(path: str | os.PathLike[str]) -> str:
    """The path GDAL (rasterio, pyogrio) opens, e.g. ``/vsicurl/https://…`` or ``/vsis3/bucket/key``.

    Local paths are returned as strings, unchanged.
    """
    src = source(path)
    if not isinstance(src, RemotePath):
        return str(src)
    m = _SCHEME.match(src)
    if m is None or m["vsi"]:
        return str(src)
    scheme = m["scheme"].lower()
    return VSI_PREFIX[scheme] + (str(src) if scheme in ("http", "https") else str(src)[m.end() :])


def gdal_env(*paths: str | os.PathLike[str]) -> contextlib.AbstractContextManager[Any]:
    """``rasterio.Env`` with :data:`GDAL_DEFAULTS` when any of ``paths`` is remote.

    Settings the user gave (environment variables or an enclosing ``rasterio.Env``) win:
    only the others are set. A no-op context for local files.
    """
    if not any(is_remote(p) for p in paths):
        return contextlib.nullcontext()
    import rasterio
    import rasterio.env

    outer = rasterio.env.getenv() if rasterio.env.hasenv() else {}
    options = {k: v for k, v in GDAL_DEFAULTS.items() if k not in os.environ and k not in outer}
    return rasterio.Env(**options)


def read_text(url: str, what: str = "file") -> str:
    """The text (UTF-8, BOM stripped) of an ``http(s)`` URL, fetched with one GET.

    Raises:
        CropseqError: naming the URL, with the HTTP status or the network error.
    """
    plain = url.removeprefix("/vsicurl/")
    if urllib.parse.urlsplit(plain).scheme not in ("http", "https"):
        raise CropseqError(
            f"cannot fetch a {what} from this address (only http(s) URLs; for a bucket give its https address "
            "or a local copy)",
            url,
        )
    try:
        with urllib.request.urlopen(plain, timeout=HTTP_TIMEOUT) as answer:  # the scheme is checked above
            data = answer.read()
    except urllib.error.HTTPError as e:
        raise CropseqError(f"cannot fetch {what} (HTTP {e.code} {e.reason})", url) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CropseqError(f"cannot fetch {what} ({getattr(reason, 'strerror', None) or reason})", url) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CropseqError(f"{what} is not UTF-8 text", url) from None


def glob(root: str, pattern: str) -> list[RemotePath]:
    """Remote files matching ``pattern`` (relative to the folder ``root``, or a full URL).

    A pattern without wildcards is returned as one file (not checked here: opening it
    reports a missing file). Wildcards are listed through GDAL on ``s3://``, ``gs://``,
    ``az://`` and ``/vsi…/`` paths; plain HTTP has no listing, so they are refused.
    """
    full = join(root, pattern)
    if not any(ch in full for ch in "*?["):
        return [full]
    if urllib.parse.urlsplit(full.removeprefix("/vsicurl/")).scheme in ("http", "https"):
        raise CropseqError(
            f"files glob {pattern!r}: a folder behind an http(s) URL cannot be listed; list the files instead",
            root,
        )
    return _list_matching(full)


def _list_matching(full: RemotePath) -> list[RemotePath]:
    """Files under a VSI path's literal folder whose relative path matches the rest."""
    import pyogrio

    vsi = gdal_path(full)
    first = min(i for i, ch in enumerate(vsi) if ch in "*?[")
    folder = vsi[: vsi.rfind("/", 0, first) + 1]
    try:
        with gdal_env(full):
            found = pyogrio.vsi_listtree(folder)
    except Exception as e:  # noqa: BLE001 - pyogrio raises bare errors for any VSI failure
        raise CropseqError(f"cannot list remote folder ({str(e).splitlines()[0] if str(e) else type(e).__name__})", folder) from None
    rest = vsi[len(folder) :]
    names = sorted(str(f).removeprefix(folder) for f in found)
    base = str(full)[: len(str(full)) - len(rest)]
    return [RemotePath(base + n) for n in names if fnmatch.fnmatchcase(n, rest)]
