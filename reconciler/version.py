"""``dsr --version``: the distribution's version and the git commit it was built from.

An installed wheel carries the commit in ``reconciler/_commit`` (written by setup.py when it
was built); a checkout run in place (an editable install) asks git. Else ``unknown``.
"""

from __future__ import annotations

import os
import re
import subprocess
from importlib import metadata

PACKAGE = os.path.dirname(os.path.abspath(__file__))
_COMMIT = re.compile(r"[0-9a-f]{7,64}")


def version() -> str:
    try:
        return metadata.version("docker-storage-reconciler")
    except metadata.PackageNotFoundError:
        return "unknown"


def commit() -> str:
    """The commit, from the baked file, else the checkout holding this package, else unknown."""
    try:
        with open(os.path.join(PACKAGE, "_commit"), encoding="ascii") as handle:
            baked = handle.read(80).strip()
        if _COMMIT.fullmatch(baked):
            return baked
    except (OSError, UnicodeDecodeError):
        pass
    top = os.path.dirname(PACKAGE)
    # Only the checkout this package lives in: a wheel installed into a venv that happens
    # to lie inside some other repository must not report that repository's HEAD.
    if not os.path.exists(os.path.join(top, "pyproject.toml")):
        return "unknown"
    try:
        done = subprocess.run(
            ["git", "-C", top, "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 2 or not _same(lines[0], top):
        return "unknown"
    return lines[1] if _COMMIT.fullmatch(lines[1]) else "unknown"


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def describe() -> str:
    return f"dsr {version()} (commit {commit()})"
