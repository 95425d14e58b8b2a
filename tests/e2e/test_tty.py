"""``cropseq train`` and ``cropseq predict`` in an interactive terminal (a pseudo-terminal).

Code paths that run only when stderr is a TTY (live progress bars) are invisible to tests
that capture output through pipes: ``train`` once imported an undeclared ``tqdm`` there
and crashed in every real terminal. These tests run the real commands with stdin, stdout
and stderr on a pty and check that they succeed and show a progress display.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX only")

FAST_YAML = "hidden_size: 8\nnum_layers: 1\nencoder_width: 8\nencoder_dim: 8\nthreads: 1\nbatch_size: 256\n"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_pty(argv: list[str], cwd: Path, timeout: float = 180.0) -> tuple[int, str]:
    """Run ``argv`` with stdin/stdout/stderr on a fresh pseudo-terminal.

    Returns:
        ``(exit code, everything written to the terminal)`` with escape sequences removed.
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # rows, cols
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal, the command has ended
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
            pytest.fail(f"{' '.join(argv)} did not finish in {timeout} s")
        rc = proc.wait(timeout=30)
    finally:
        os.close(master)
    return rc, ANSI.sub("", b"".join(chunks).decode("utf-8", "replace")).replace("\r", "\n")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48 px simulated scene with its samples table, made in-process."""
    from cropseq.cli import main

    root = tmp_path_factory.mktemp("tty")
    assert main(["simulate", str(root / "scene"), "--size", "48", "--dates", "8", "--seed", "2"]) == 0
    assert main(["samples", "--stack", str(root / "scene" / "stack.yaml"), "--labels", str(root / "scene" / "labels.gpkg"),
                 "--out", str(root / "samples.parquet"), "--max-per-group", "20"]) == 0
    (root / "fast.yaml").write_text(FAST_YAML)
    return root


def cropseq(*args: str) -> list[str]:
    """The ``cropseq`` command line, run by this interpreter (the package under test)."""
    return [sys.executable, "-m", "cropseq", *args]


def test_train_then_predict_in_a_terminal(scene: Path) -> None:
    rc, out = run_in_pty(cropseq("train", "--samples", "samples.parquet", "--out", "model.pt", "--config", "fast.yaml",
                                 "--epochs", "1", "--device", "cpu"), scene)
    assert rc == 0, out
    assert "Traceback" not in out, out
    assert re.search(r"epoch 1/1 .*━.*\d+/\d+ batches", out), out  # the live bar was drawn
    assert re.search(r"epoch +1/1 +train_loss", out), out  # and the plain per-epoch line stays
    assert (scene / "model.pt").is_file()

    rc, out = run_in_pty(cropseq("predict", "--model", "model.pt", "--stack", "scene/stack.yaml", "--out", "map.tif",
                                 "--workers", "0", "--chunk", "32", "--device", "cpu"), scene)
    assert rc == 0, out
    assert "Traceback" not in out, out
    assert re.search(r"predict map\.tif .*━.*4/4 chunks", out), out
    assert (scene / "map.tif").is_file()


def test_quiet_train_in_a_terminal_shows_no_bar(scene: Path) -> None:
    rc, out = run_in_pty(cropseq("train", "--samples", "samples.parquet", "--out", "quiet.pt", "--config", "fast.yaml",
                                 "--epochs", "1", "--device", "cpu", "-q"), scene)
    assert rc == 0, out
    assert "batches" not in out and "epoch" not in out.replace("epochs 1", ""), out
