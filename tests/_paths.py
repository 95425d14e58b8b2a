"""Where things are, for every test module (one place, whatever folder a test lives in).

``REPO`` is the repository root (``tests/``'s parent); ``SHARED_DATA`` the real data beside
the checkout (``../shared/data``, or ``$CROPSEQ_SHARED_DATA``), used through the
``shared_data`` fixture, which skips when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CROPSEQ_SHARED_DATA", REPO.parent / "shared" / "data"))
