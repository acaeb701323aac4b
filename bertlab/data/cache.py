"""The cache of processed data: where it lives, and the stable hash that names and splits it.

Processed results (the cleaned sentiment splits, sentence-split documents) are plain JSON in
``cache_dir() / "processed"``: safe to load (nothing is unpickled) and written atomically by
``bertlab.files.write_json``, so an interrupted run never leaves a half-written file that a later
run would trust.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bertlab.data.sources import cache_dir


def processed_dir() -> Path:
    """Folder for derived data; rebuilt from the fetched sources whenever it is missing."""
    return cache_dir() / "processed"


def stable_hash(*parts: object) -> str:
    """A sha256 hex digest of the parts: the same on every machine, Python and library version.

    Python's own ``hash()`` of a string changes from run to run, so it cannot order a split.
    """
    return hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()
