"""Writing dsr's own files (saved plans, manifests, hash caches) so a crash never halves one."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def write_json(path: str, value: Any, *, indent: int | None = None) -> None:
    """Write ``value`` as JSON to ``path`` atomically: a whole new file or the old one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as handle:
        json.dump(value, handle, indent=indent)
    os.replace(handle.name, path)
