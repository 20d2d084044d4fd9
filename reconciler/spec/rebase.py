"""``dsr diff``: the same spec set checked out in two folders names the same host paths.

A relative path in a spec (``./htdocs``) is resolved against its file's folder when it is
loaded, so OLD checked out in ``/tmp/x/base/specs`` and NEW in ``/work/repo/specs`` would
bind two different folders, and every container with a relative bind would look
replaced. ``roots`` finds the folders that correspond (the spec folders, widened while
their names agree, so ``../shared`` maps too), and ``rebase`` moves every host path of OLD
under its root to the same place under NEW's root: binds, their kinds and resolved forms,
a local volume's ``device``, backup paths and folder destinations. Image contexts stay
where they are: OLD's files must be hashed where OLD's checkout has them (a data-packed
image's tag comes from its content, not from its folder).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from typing import TypeVar

from reconciler.spec.backups import Backup, s3_parts
from reconciler.spec.desired import Desired
from reconciler.spec.models import Container, Mount, Volume, VolumeContainer

Mapper = Callable[[str], str]
Owner = TypeVar("Owner", Container, VolumeContainer)


def spec_folder(path: str) -> str:
    path = os.path.abspath(path)
    return path if os.path.isdir(path) else os.path.dirname(path)


def roots(old_path: str, new_path: str) -> tuple[str, str]:
    """The folders of OLD and NEW that hold the same files: the spec folders, then their
    parents for as long as the names agree (``.../base/specs`` and ``.../repo/specs`` give
    ``.../base`` and ``.../repo``)."""
    old, new = spec_folder(old_path), spec_folder(new_path)
    while (
        os.path.basename(old) == os.path.basename(new)
        and os.path.dirname(old) not in ("/", old)
        and os.path.dirname(new) not in ("/", new)
        and old != new
    ):
        old, new = os.path.dirname(old), os.path.dirname(new)
    return old, new


def mapper(old_root: str, new_root: str) -> Mapper:
    """A path under ``old_root`` (as written or as resolved) moved under ``new_root``."""
    pairs = [(old_root, new_root)]
    real_old, real_new = os.path.realpath(old_root), os.path.realpath(new_root)
    if (real_old, real_new) != (old_root, new_root):
        pairs.append((real_old, real_new))

    def move(path: str) -> str:
        for old, new in pairs:
            if path == old:
                return new
            if path.startswith(old.rstrip("/") + "/"):
                return new.rstrip("/") + path[len(old.rstrip("/")) :]
        return path

    return move


def rebase(desired: Desired, move: Mapper) -> Desired:
    """``desired`` with every host path (except image contexts) passed through ``move``."""
    return dataclasses.replace(
        desired,
        volumes={k: _volume(v, move) for k, v in desired.volumes.items()},
        volume_containers={k: _owner(v, move) for k, v in desired.volume_containers.items()},
        containers={k: _owner(v, move) for k, v in desired.containers.items()},
        backups={k: _backup(v, move) for k, v in desired.backups.items()},
        bind_kinds={move(k): v for k, v in desired.bind_kinds.items()},
        bind_real=_real(desired.bind_real, move),
    )


def _real(real: Mapping[str, str], move: Mapper) -> dict[str, str]:
    out = {}
    for source, resolved in real.items():
        moved, moved_real = move(source), move(resolved)
        if moved != moved_real:
            out[moved] = moved_real
    return out


def _owner(owner: Owner, move: Mapper) -> Owner:
    mounts = [_mount(m, move) for m in owner.mounts]
    return owner.model_copy(update={"mounts": mounts}) if mounts != owner.mounts else owner


def _mount(mount: Mount, move: Mapper) -> Mount:
    if mount.type != "bind" or not mount.source:
        return mount
    moved = move(mount.source)
    return mount if moved == mount.source else mount.model_copy(update={"source": moved})


def _volume(volume: Volume, move: Mapper) -> Volume:
    device = volume.driver_opts.get("device")
    if not device or not device.startswith("/") or move(device) == device:
        return volume
    options = {**volume.driver_opts, "device": move(device)}
    return volume.model_copy(update={"driver_opts": options})


def _backup(backup: Backup, move: Mapper) -> Backup:
    update: dict[str, object] = {}
    paths = [move(p) for p in backup.paths]
    if paths != backup.paths:
        update["paths"] = paths
    destination = backup.destination
    if isinstance(destination, str) and s3_parts(destination) is None:
        update["destination"] = move(destination)
    elif isinstance(destination, list):
        update["destination"] = [d if s3_parts(d) else move(d) for d in destination]
    return backup.model_copy(update=update) if update else backup


def relative_to(text: str, *folders: str) -> str:
    """``text`` with each of ``folders`` (and its resolved form) written relative to it,
    so that no runner's checkout path lands in a pull-request comment."""
    forms = [f.rstrip("/") for d in folders for f in (d, os.path.realpath(d))]
    # Longest first: a root inside another root is rewritten before its parent.
    for form in sorted(dict.fromkeys(f for f in forms if f), key=len, reverse=True):
        pattern = re.compile(re.escape(form) + r"(/|(?![\w.-]))")
        text = pattern.sub(lambda m: "" if m.group(1) == "/" else ".", text)
    return text
