"""Whether an old data-packed volume holds exactly what its build put there: the check
that lets a refresh delete it although a consumer mounted it read-write."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from reconciler.images import manifest
from reconciler.observe import holds_build


def context(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<p>v1</p>")
    (root / "sub" / "a.css").write_text("body {}")
    os.symlink("index.html", root / "home.html")
    return root


def test_a_copy_of_the_build_holds_it_and_any_change_does_not(tmp_path: Path) -> None:
    built = manifest(str(context(tmp_path / "ctx")))
    volume = tmp_path / "volume"
    shutil.copytree(tmp_path / "ctx", volume, symlinks=True)
    (volume / "index.html").chmod(0o600)  # modes aside: Docker's copy may differ there
    assert holds_build(str(volume), built)

    (volume / "upload.txt").write_text("mine")  # a file the consumer added
    assert not holds_build(str(volume), built)
    (volume / "upload.txt").unlink()
    (volume / "sub" / "a.css").write_text("body {color: red}")  # same path, new content
    assert not holds_build(str(volume), built)
    (volume / "sub" / "a.css").write_text("body {}")
    os.unlink(volume / "home.html")
    os.symlink("sub/a.css", volume / "home.html")  # a link pointed elsewhere
    assert not holds_build(str(volume), built)
    os.unlink(volume / "home.html")
    (volume / "home.html").write_text("<p>v1</p>")  # a file where a link was
    assert not holds_build(str(volume), built)
    (volume / "home.html").unlink()
    assert not holds_build(str(volume), built)  # a file removed
