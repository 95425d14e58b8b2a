"""Shared pytest fixtures.

Real data lives in ``../shared/data`` beside the checkout (never copied into the repo);
tests that need it use the ``shared_data`` fixture and skip cleanly when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CROPSEQ_SHARED_DATA", REPO.parent / "shared" / "data"))

# Two cores on CI: keep torch from oversubscribing when Dask also runs threads.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the shared real data; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO
