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


#: Issue 17: a function that does not fit a screen is split into named steps.
MAX_FUNCTION_LINES = 100


def test_no_two_modules_share_a_file_name_and_no_function_exceeds_a_screen() -> None:
    """One name per module (``__init__.py`` aside) and no function in ``cropseq/`` over 100 lines."""
    import ast
    from collections import Counter

    modules = [p for p in (REPO / "cropseq").rglob("*.py") if p.name != "__init__.py"]
    shared = sorted(name for name, n in Counter(p.name for p in modules).items() if n > 1)
    assert not shared, f"module file names used twice in cropseq/: {shared}"
    long = [
        f"{p.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for p in modules + list((REPO / "cropseq").rglob("__init__.py"))
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (node.end_lineno or 0) - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
