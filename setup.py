"""Bakes the git commit into built wheels and sdists, for ``dsr --version``.

Everything else is in pyproject.toml. A wheel built from a git checkout (``pip install .``,
``pip install git+URL``, ``python -m build``) carries ``reconciler/_commit``; a wheel built
from an sdist takes the file the sdist carries. A checkout run in place reads git itself.
"""

from __future__ import annotations

import os
import re
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
COMMIT_FILE = os.path.join("reconciler", "_commit")


def _commit() -> str | None:
    """HEAD of the checkout this is built from, or what an sdist recorded, or None."""
    try:
        done = subprocess.run(
            ["git", "-C", HERE, "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        lines = done.stdout.split()
        if done.returncode == 0 and len(lines) == 2 and os.path.samefile(lines[0], HERE):
            return lines[1]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open(os.path.join(HERE, COMMIT_FILE), encoding="ascii") as handle:
            return handle.read(64).strip() or None
    except OSError:
        pass
    # A GitHub Action's copy has no .git: its workflow passes the ref it was used at.
    given = os.environ.get("DSR_BUILD_COMMIT", "").strip()
    return given if re.fullmatch(r"[0-9a-f]{7,64}", given) else None


def _write(folder: str) -> None:
    commit = _commit()
    if commit:
        path = os.path.join(folder, COMMIT_FILE)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="ascii") as handle:
            handle.write(commit + "\n")


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:  # an editable install reads git in place
            _write(self.build_lib)


class Sdist(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        _write(base_dir)


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
