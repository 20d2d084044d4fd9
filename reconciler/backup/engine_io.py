"""The Engine API calls of backups and restores: helpers, users of a volume, hooks.

A helper is a container created from dsr's empty image and never started, with
``network_mode: none`` and dsr's labels (``dsr.kind=helper``), that mounts one volume at
``/v`` so that the archive endpoint can read or write it; it is removed afterwards, also
when the work failed. Whoever started it removes it: nothing else ever does.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker.errors

from reconciler import logs
from reconciler.backup.errors import BackupError
from reconciler.backup.journal import Journal
from reconciler.engine import Engine
from reconciler.escape import escape_controls
from reconciler.kinds import Kind
from reconciler.plan.params import EMPTY_IMAGE, NEVER_STARTED
from reconciler.snapshot import KIND, MANAGED, PROJECT
from reconciler.spec.backups import Hook

log = logs.get_logger("dsr.backup")

HELPER = "helper"
MOUNT = "/v"


def ensure_empty_image(engine: Engine) -> None:
    """dsr's empty image (``docker import`` of an empty tar), made when missing."""
    try:
        engine.api.inspect_image(EMPTY_IMAGE)  # type: ignore[no-untyped-call]
        return
    except docker.errors.ImageNotFound:
        pass
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w"):
        pass
    repository, tag = EMPTY_IMAGE.rsplit(":", 1)
    engine.api.import_image_from_data(
        buffer.getvalue(),
        repository=repository,
        tag=tag,
        changes=[f"LABEL {MANAGED}=true", f"LABEL {KIND}={Kind.IMAGE.value}"],
    )


@contextlib.contextmanager
def helper(engine: Engine, project: str, volume: str, *, read_only: bool) -> Iterator[str]:
    """A never-started container mounting ``volume`` at ``/v``; yields its id."""
    ensure_empty_image(engine)
    api = engine.api
    host_config = api.create_host_config(
        binds=[f"{volume}:{MOUNT}:{'ro' if read_only else 'rw'}"], network_mode="none"
    )
    created = api.create_container(
        image=EMPTY_IMAGE,
        command=list(NEVER_STARTED),
        name=f"{project}-dsr-helper-{uuid.uuid4().hex[:8]}",
        labels={MANAGED: "true", PROJECT: project, KIND: HELPER},
        host_config=host_config,
        network_disabled=True,
    )
    helper_id = str(created["Id"])
    try:
        yield helper_id
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(helper_id, force=True, v=False)


def remove_stale_helpers(engine: Engine, project: str) -> int:
    """Remove this project's helpers left by a killed dsr. Only under the project's lock:
    then no other dsr of this project and engine is using one."""
    found = engine.api.containers(
        all=True,
        filters={"label": [f"{MANAGED}=true", f"{PROJECT}={project}", f"{KIND}={HELPER}"]},
    )
    for c in found:
        with contextlib.suppress(docker.errors.NotFound):
            engine.api.remove_container(c["Id"], force=True, v=False)
            log.info("helper_removed", container=c["Id"][:12], reason="left by a killed run")
    return len(found)


def inspect_volume(engine: Engine, name: str) -> dict[str, Any] | None:
    try:
        return dict(engine.api.inspect_volume(name))
    except docker.errors.NotFound:
        return None


def remove_made_volume(engine: Engine, name: str) -> None:
    """Remove a volume dsr has just made, best effort (an error leaves it, empty)."""
    with contextlib.suppress(docker.errors.APIError):
        engine.api.remove_volume(name)


def mounted_elsewhere(volume: dict[str, Any]) -> str:
    """Why the volume's folder under Docker's data root is not its data, or ``""``.

    A volume of another driver, or a ``local`` one with driver options (``type``, ``o``,
    ``device``: a bind, NFS, tmpfs or a block device), holds its data in storage Docker
    mounts on that folder only while a container uses it; while none does (a quiesced
    backup, a restore, a migration) the folder is empty, and what is written there is
    hidden by the mount the next container gets. Such a volume is read and written through
    a helper container that mounts it, as every container sees it."""
    driver = str(volume.get("Driver") or "local")
    if driver != "local":
        return f"its driver is {driver}"
    options = volume.get("Options") or {}
    if options:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(options.items()) if k != "o")
        return f"its driver options ({shown or 'o'}) mount its storage on use"
    return ""


def storage_outlives(volume: dict[str, Any]) -> bool:
    """Whether the volume's data survives removing the volume: a ``device`` (a bind, NFS,
    a block device) keeps its files when Docker removes and makes the volume again; only a
    plain local volume or a tmpfs is emptied that way. Another driver: not known, so yes."""
    if str(volume.get("Driver") or "local") != "local":
        return True
    options = volume.get("Options") or {}
    return bool(options.get("device")) and options.get("type") != "tmpfs"


def local_mountpoint(engine: Engine, volume: dict[str, Any], *, write: bool) -> str | None:
    """The volume's directory when dsr can use it directly: a local engine, a readable dir,
    and the directory is where the volume's data lives (``mounted_elsewhere``)."""
    if not engine.url.startswith("unix://") or mounted_elsewhere(volume):
        return None
    path = volume.get("Mountpoint") or ""
    mode = os.R_OK | os.X_OK | (os.W_OK if write else 0)
    if path and os.path.isdir(path) and not os.path.islink(path) and os.access(path, mode):
        return str(path)
    return None


@dataclass(frozen=True)
class User:
    """A container that mounts a volume (or a host folder), and whether it was running."""

    id: str
    name: str
    running: bool


def users(engine: Engine, *, volume: str = "", path: str = "") -> list[User]:
    """Containers that use ``volume`` or bind ``path`` (or a folder above or below it): one
    list call, helpers excluded."""
    out = []
    for c in engine.api.containers(all=True):
        if (c.get("Labels") or {}).get(KIND) == HELPER:
            continue
        for m in c.get("Mounts") or []:
            if (volume and m.get("Type") == "volume" and m.get("Name") == volume) or (
                path and m.get("Type") == "bind" and _overlaps(m.get("Source", ""), path)
            ):
                name = (c.get("Names") or ["/" + c["Id"][:12]])[0].lstrip("/")
                out.append(User(c["Id"], name, c.get("State") == "running"))
                break
    return out


def quiet_users(engine: Engine, volume: str) -> dict[str, str]:
    """Each container that mounts ``volume`` (helpers aside), with when it last started;
    refused while one runs: a backup taken then may miss what it writes."""
    found = {}
    for c in engine.api.containers(all=True, filters={"volume": volume}):
        if (c.get("Labels") or {}).get(KIND) == HELPER:
            continue
        state = engine.api.inspect_container(c["Id"])["State"]
        name = (c.get("Names") or ["/" + c["Id"][:12]])[0].lstrip("/")
        if state.get("Running") or state.get("Restarting"):
            raise BackupError(
                f"{name} runs on {volume}, so a backup could miss what it writes; nothing "
                "was removed"
            )
        found[c["Id"]] = f"{name} {state.get('StartedAt')}"
    return found


def still_quiet(engine: Engine, volume: str, quiet: dict[str, str]) -> None:
    """Nothing started on ``volume`` since ``quiet`` was taken (``restart: always`` after an
    engine restart, or anyone): else a backup taken meanwhile may lack its writes, and
    restoring it would lose them."""
    now = quiet_users(engine, volume)
    if now != quiet:
        moved = sorted({v.split(" ")[0] for v in set(now.values()) ^ set(quiet.values())})
        raise BackupError(
            f"{', '.join(moved)} started on {volume} during its backup, which may lack what "
            "it wrote; nothing was removed, the next pass backs it up again"
        )


def uncarried(engine: Engine, volume: str, skipped: list[str], most: int = 5) -> str:
    """What a backup of ``volume`` (users stopped) did not carry, said for a migration that
    would lose it, or ``""``: entries no restore writes (``skipped``: links leading out of
    the volume, sockets, devices), and extended attributes (xattrs, ACLs, capabilities),
    which archives do not hold. xattrs are seen only in a volume's folder read directly;
    through the Engine API (driver options, a remote engine) they cannot be seen."""
    out = []
    if skipped:
        out.append(f"{len(skipped)} entries no restore writes ({', '.join(skipped[:most])})")
    live = inspect_volume(engine, volume)
    root = local_mountpoint(engine, live, write=False) if live else None
    found = with_xattrs(root, most) if root else []
    if found:
        out.append(f"the extended attributes of {', '.join(found)}")
    return "; ".join(out)


def with_xattrs(root: str, most: int) -> list[str]:
    """Up to ``most`` paths under ``root`` (links not followed) that carry xattrs."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                if os.listxattr(path, follow_symlinks=False):
                    found.append(os.path.relpath(path, root))
                    if len(found) >= most:
                        return found
    return found


def _overlaps(source: str, path: str) -> bool:
    a, b = source.rstrip("/") + "/", path.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


@contextlib.contextmanager
def stopped(engine: Engine, running: list[User], journal: Journal | None = None) -> Iterator[None]:
    """Stop ``running`` for the block; start again exactly those, also when it failed.
    ``journal`` records them first, so that a run killed meanwhile is undone by the next."""
    done: list[User] = []
    if journal is not None:
        journal.stopping({u.id: u.name for u in running})
    try:
        for user in running:
            engine.api.stop(user.id)
            done.append(user)
            log.info("container_stopped", container=user.name)
        yield
    finally:
        errors, started = [], [u.id for u in running if u not in done]
        for user in done:
            try:
                engine.api.start(user.id)
                log.info("container_started", container=user.name)
                started.append(user.id)
            except docker.errors.APIError as err:
                errors.append(f"{user.name}: {err.explanation or err}")
        if journal is not None:
            journal.started(started)
        if errors:
            raise BackupError("could not start again: " + "; ".join(errors))


# The most of a hook's output dsr keeps (its end, where the reason of a failure is): shown
# in the error of a failed hook, so it passes the edge's redaction like every error.
HOOK_OUTPUT = 2048


def run_hook(engine: Engine, hook: Hook) -> str | None:
    """Run one hook (argv, no shell) in its container; the error text (with the end of its
    output), or ``None`` when it exited 0 within its timeout."""
    api = engine.api
    started = time.monotonic()
    try:
        exec_id = api.exec_create(hook.container, list(hook.command))["Id"]
        output = _Output(api, exec_id)
    except docker.errors.APIError as err:
        return f"cannot run {hook.command[0]} in {hook.container}: {err.explanation or err}"
    deadline = started + hook.seconds
    while True:
        state = api.exec_inspect(exec_id)
        if not state.get("Running"):
            code = state.get("ExitCode")
            if code == 0:
                return None
            return f"{hook.command[0]} in {hook.container} exited {code}{output.tail()}"
        if time.monotonic() > deadline:
            _kill(engine, state)
            return f"{hook.command[0]} in {hook.container} ran longer than {hook.timeout}"
        time.sleep(0.1)


class _Output:
    """The output of an exec, read in a thread; its last ``HOOK_OUTPUT`` bytes kept."""

    def __init__(self, api: Any, exec_id: str) -> None:
        self.kept = b""
        self._done = threading.Event()
        stream = api.exec_start(exec_id, stream=True)  # starts it; APIError raised here
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Iterator[bytes]) -> None:
        with contextlib.suppress(Exception):  # a broken stream loses output, not the hook
            for chunk in stream:
                self.kept = (self.kept + chunk)[-HOOK_OUTPUT:]
        self._done.set()

    def tail(self) -> str:
        """``: <the end of its output>`` in one escaped line, or ``""``."""
        self._done.wait(2)
        text = " | ".join(
            line.strip() for line in self.kept.decode("utf-8", "replace").splitlines()
        ).strip(" |")
        return f": {escape_controls(text)[-HOOK_OUTPUT:]}" if text else ""


def _kill(engine: Engine, state: dict[str, Any]) -> None:
    """The Engine API cannot stop an exec; on a local engine its host process id can."""
    pid = state.get("Pid")
    if engine.url.startswith("unix://") and isinstance(pid, int) and pid > 1:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
