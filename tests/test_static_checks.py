"""The static checks CI runs beside the tests: ruff and mypy, configured in pyproject.toml.

``ruff check cropseq tests benchmarks`` (pyflakes, import order, Google docstrings, mccabe
complexity <= 15) and ``mypy`` (``files = ["cropseq"]``) must both exit 0. Each runs in a
subprocess from the repository root, as a developer would; on failure the first lines of
its output are shown. Deselect with ``-m "not slow and not static"`` (``-m`` on the command
line replaces the ``not slow`` of ``addopts``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from _paths import REPO

#: Lines of a failing tool's output shown in the assertion message.
SHOWN_LINES = 40

pytestmark = pytest.mark.static


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` from the repository root, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )


def _report(proc: subprocess.CompletedProcess[str]) -> str:
    """The exit code and the first :data:`SHOWN_LINES` lines of a tool's output."""
    lines = (proc.stdout + proc.stderr).splitlines()
    more = f"\n... ({len(lines) - SHOWN_LINES} more lines)" if len(lines) > SHOWN_LINES else ""
    return f"exit {proc.returncode}:\n" + "\n".join(lines[:SHOWN_LINES]) + more


def test_ruff_is_clean():
    proc = _run("ruff", "check", "--no-cache", "--output-format", "concise", "cropseq", "tests", "benchmarks")
    assert proc.returncode == 0, "ruff check cropseq tests benchmarks: " + _report(proc)


def test_mypy_is_clean():
    proc = _run("mypy")  # the files and options come from [tool.mypy] in pyproject.toml
    assert proc.returncode == 0, "mypy: " + _report(proc)
