"""Data-packed images: the content hash of a build context, which names the image's tag."""

from __future__ import annotations

import hashlib
import os
import stat

from reconciler.spec.models import Image

REPOSITORY = "dsr"


def context_digest(context: str) -> str:
    """SHA-256 over every entry's relative name, type, mode and bytes (or link target)."""
    outer = hashlib.sha256()
    for root, dirs, files in os.walk(context):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, context)
            info = os.lstat(path)
            outer.update(
                f"{rel}\0{stat.S_IFMT(info.st_mode)}\0{stat.S_IMODE(info.st_mode)}\0".encode()
            )
            if stat.S_ISLNK(info.st_mode):
                outer.update(os.readlink(path).encode())
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        outer.update(block)
            outer.update(b"\0")
    return outer.hexdigest()


def image_tag(project: str, key: str, spec: Image) -> str:
    """``dsr/<project>-<key>:<content hash>``: an unchanged context keeps its tag."""
    config = f"{spec.base}\0{spec.path}\0{context_digest(spec.context)}"
    return f"{REPOSITORY}/{project}-{key}:{hashlib.sha256(config.encode()).hexdigest()[:16]}"
