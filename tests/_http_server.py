"""A tiny range-capable HTTP server on 127.0.0.1 for tests (no fixtures, no network).

GDAL's ``/vsicurl/`` reads files with ``Range: bytes=a-b`` requests and refuses (or
downloads whole) files from servers that ignore them; Python's
``SimpleHTTPRequestHandler`` does ignore them, so this handler answers single
ranges with ``206 Partial Content``.  Usage::

    with serve(tmp_path) as base_url:       # e.g. "http://127.0.0.1:41234"
        rasterio.open(f"{base_url}/a.tif")

``serve`` also records every request path in ``base_url.requests`` (a list) so a
test can check what was fetched.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class BaseURL(str):
    """The server's base URL (``http://127.0.0.1:PORT``) plus the request log."""

    requests: list[str]


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory, answering ``Range: bytes=a-b`` (one range) with 206."""

    log: list[str]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Keeps test output quiet."""

    def send_head(self):  # type: ignore[override]
        self.log.append(self.path)
        range_header = self.headers.get("Range")
        path = self.translate_path(self.path)
        if range_header is None or not os.path.isfile(path):
            return super().send_head()
        match = _RANGE.match(range_header.strip())
        size = os.path.getsize(path)
        if match is None or match.groups() == ("", ""):
            self.send_error(416, "unsupported range")
            return None
        first, last = match.groups()
        if first == "":  # suffix range: the last N bytes
            start, end = max(0, size - int(last)), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
        if start >= size or start > end:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return None
        handle = open(path, "rb")  # noqa: SIM115 - closed by copyfile's caller
        handle.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        return _Limited(handle, end - start + 1)

    def end_headers(self) -> None:
        """Advertises range support on every response (GDAL checks for it)."""
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()


class _Limited:
    """A file object that yields at most ``length`` bytes (for ``copyfile``)."""

    def __init__(self, handle, length: int) -> None:
        self._handle, self._left = handle, length

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data = self._handle.read(size)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._handle.close()


@contextlib.contextmanager
def serve(directory: str | os.PathLike[str]) -> Iterator[BaseURL]:
    """Serves ``directory`` over HTTP on 127.0.0.1 (a free port) while the block runs.

    Args:
        directory: The folder to serve; files are read at request time, so a test
            may write more files into it after the server started.

    Yields:
        The base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``,
        with ``.requests`` listing each request path seen.
    """
    log: list[str] = []
    handler = type("Handler", (_RangeHandler,), {"log": log})
    factory = functools.partial(handler, directory=str(Path(directory)))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), factory)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = BaseURL(f"http://127.0.0.1:{server.server_address[1]}")
    base.requests = log
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
