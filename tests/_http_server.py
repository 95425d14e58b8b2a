"""A tiny range-capable HTTP server on 127.0.0.1 for tests (no fixtures, no network).

GDAL's ``/vsicurl/`` reads files with ``Range: bytes=a-b`` requests; Python's
``SimpleHTTPRequestHandler`` ignores them, so this handler answers single ranges with
``206 Partial Content``. Usage::

    with serve(tmp_path) as base_url:       # e.g. "http://127.0.0.1:41234"
        rasterio.open(f"{base_url}/a.tif")
        base_url.requests                   # ["/a.tif", ...]: every request path so far

The server runs in a **child process**, not a thread: some GDAL callers (pyogrio reading
a GeoPackage through ``/vsicurl/``) hold the GIL while they wait for the answer, so a
server thread in the test's own process never gets to send it (a deadlock). The child
exits when the block ends, or when the test process dies (its stdin closes).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class BaseURL(str):
    """The server's base URL (``http://127.0.0.1:PORT``, no trailing slash)."""

    _log: str

    @property
    def requests(self) -> list[str]:
        """The path of every request the server received so far, in order."""
        return Path(self._log).read_text().splitlines()


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory, answering ``Range: bytes=a-b`` (one range) with 206."""

    log_path: str
    log_lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:
        """Keeps test output quiet (requests are logged to :attr:`log_path`)."""

    def send_head(self) -> Any:
        with self.log_lock, open(self.log_path, "a") as log:
            log.write(self.path + "\n")
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
        handle = open(path, "rb")  # noqa: SIM115 - closed by SimpleHTTPRequestHandler.do_GET
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

    def __init__(self, handle: IO[bytes], length: int) -> None:
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
        The base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``, with
        ``.requests`` listing the request paths seen.
    """
    fd, log = tempfile.mkstemp(prefix="cropseq-http-", suffix=".log")
    os.close(fd)
    proc = subprocess.Popen(
        [sys.executable, __file__, str(Path(directory).resolve()), log],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"test HTTP server did not start (exit code {proc.poll()})")
        base = BaseURL(f"http://127.0.0.1:{port}")
        base._log = log
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        os.unlink(log)


def _main(directory: str, log: str) -> None:
    """The child process: serve until terminated or until the parent's pipe closes."""
    handler = type("Handler", (_RangeHandler,), {"log_path": log})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=directory))
    server.daemon_threads = True
    # Exit with the parent: its end of our stdin closes when it dies, whatever the reason.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
