"""Shared pytest fixtures and the test tiers.

Real data lives in ``../shared/data`` beside the checkout (never copied into the repo);
tests that need it use the ``shared_data`` fixture and skip cleanly when it is absent.

Every test under ``tests/e2e/`` is marked ``e2e`` here (whole workflow, README, terminal,
signals, subprocess-heavy runs); slow tests elsewhere carry ``@pytest.mark.e2e`` themselves.
The fast tier deselects them: ``python -m pytest -m "not slow and not e2e and not static"``
(tests/README.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from _paths import SHARED_DATA

E2E_DIR = Path(__file__).resolve().parent / "e2e"

# Two cores on CI: keep torch from oversubscribing when Dask also runs threads.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the shared real data; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by ``-m``
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under ``tests/e2e/`` as ``e2e``."""
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)
