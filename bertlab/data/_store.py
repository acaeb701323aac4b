"""Small helpers shared by the loaders: where processed data is cached, and how it is written.

Processed results (the cleaned sentiment splits, sentence-split documents) are plain JSON in
``cache_dir() / "processed"``: safe to load (nothing is unpickled) and written atomically, so an
interrupted run never leaves a half-written file that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bertlab.data.fetch import cache_dir


def processed_dir() -> Path:
    """Folder for derived data; rebuilt from the fetched sources whenever it is missing."""
    return cache_dir() / "processed"


def stable_hash(*parts: object) -> str:
    """A sha256 hex digest of the parts: the same on every machine, Python and library version.

    Python's own ``hash()`` of a string changes from run to run, so it cannot order a split.
    """
    return hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or unreadable (then it is rebuilt)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` as JSON to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, ensure_ascii=False, separators=(",", ":"))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
