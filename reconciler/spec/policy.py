"""The admin's host-path policy: which host paths specs may make Docker or dsr touch.

Every host path a spec names (bind sources, ``create: true`` folders, a local volume's
``device``, image contexts, backup ``paths`` and ``destination``, restore targets) goes
through ``Policy.check``, which decides on the fully resolved path (``realpath``) alone.
A path is refused when it is, lies under, or *contains* a protected path:

- ``/`` itself, ``/etc``, ``/proc``, ``/sys``, ``/dev``, ``/boot``, ``/root``,
  ``/var/lib/docker``, ``/run/docker*``, ``/run/containerd``, ``/var/run/docker.sock``;
- the engine socket dsr is configured with (``--docker-host``, ``DOCKER_HOST``), matched
  by path and by inode, so a hard link or a bind mount of it is refused too;
- dsr's state directory and backup directory, as sources (a backup ``destination`` may
  lie inside the backup directory).

An admin's policy file (``--policy FILE``, never read from the spec directory) may allow
some of those paths and may limit host paths to listed roots::

    allow: [/etc/ssl/certs]     # protected paths that specs may use after all
    bind_roots: [/srv, /home]   # when given, every host path must lie under one of these
    volume_drivers: [rexray]    # other volume drivers, whose driver_opts dsr cannot check
    local_types: [zfs]          # more mount types for the local driver (devices.TYPES)
    local_options: [shared]     # more `o` options for the local driver (devices.FLAGS...)

A path that passes through ``/proc/<pid>/`` (``/proc/self/cwd``, ``/proc/1/root``, or a
link into them) is refused whatever the policy says: dsr would resolve it in its own
process, but dockerd mounts it in its own, where it names something else.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from reconciler.errors import PolicyError
from reconciler.files import InputFileError, read_bounded
from reconciler.spec.devices import Allowances, local_host_paths, volume_problems
from reconciler.statedir import default_state_dir

PROTECTED = (
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/root",
    "/var/lib/docker",
    "/run/docker*",
    "/run/containerd",
)
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
Role = Literal["source", "destination"]


def is_under(path: str, root: str) -> bool:
    """``path`` is ``root`` or lies below it (both absolute and normalized). A last
    component of ``root`` ending in ``*`` matches any name with that start."""
    if root.endswith("*"):
        head, _, pattern = root.rpartition("/")
        if not is_under(path, head or "/") or path == (head or "/"):
            return False
        first = path[len(head) + 1 :].split("/", 1)[0]
        return fnmatch.fnmatchcase(first, pattern)
    return path == root or path.startswith(root.rstrip("/") + "/")


def _contains(path: str, root: str) -> bool:
    """``root`` (a protected path, maybe ending in ``*``) lies strictly below ``path``."""
    parent = os.path.dirname(root) if root.endswith("*") else root
    return path != root and is_under(parent, path) and (root.endswith("*") or parent != path)


def socket_path(docker_host: str | None) -> str | None:
    """The file of a ``unix://`` engine address; ``None`` for tcp, ssh and the like."""
    host = docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    if host.startswith("unix://"):
        return os.path.normpath(host[len("unix://") :]) or None
    return None


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[str] = []
    bind_roots: list[str] | None = None
    volume_drivers: list[str] = []
    local_types: list[str] = []
    local_options: list[str] = []

    @field_validator("volume_drivers", "local_types", "local_options")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:/+-]*", name):
                raise ValueError(f"{name!r} is not a driver, type or option name")
        return value

    @field_validator("allow", "bind_roots")
    @classmethod
    def _absolute(cls, value: list[str] | None) -> list[str] | None:
        for path in value or []:
            if not os.path.isabs(path) or "\0" in path:
                raise ValueError(f"'{path}' is not an absolute path")
        return None if value is None else [os.path.normpath(p) for p in value]


@dataclass(frozen=True)
class Policy:
    """What host paths a spec may name. ``Policy()`` is the safe default: it protects the
    engine socket of ``DOCKER_HOST`` and the default state directory."""

    allow: tuple[str, ...] = ()
    bind_roots: tuple[str, ...] | None = None
    source: str = "the default host-path policy"
    docker_socket: str | None = field(default_factory=lambda: socket_path(None))
    state_dir: str = field(default_factory=default_state_dir)
    backup_dir: str | None = None  # default: <state_dir>/backups
    allowances: Allowances = field(default_factory=Allowances)

    def volume_problems(self, driver: str, opts: Mapping[str, str]) -> list[tuple[str, str]]:
        """Why a volume's ``driver_opts`` are refused: (driver_opts key, reason) each, from
        the allow-list and from this policy's check of every host path they name."""
        out = volume_problems(driver, opts, self.allowances)
        for key, path in local_host_paths(driver, opts):
            if not path.startswith("/"):
                out.append((key, f"'{path}' must be an absolute host path (the local driver "
                                 "mounts it from the host)"))  # fmt: skip
                continue
            refused = self.check(path)
            if refused:
                out.append((key, refused))
        return out

    def check(self, path: str, *, role: Role = "source") -> str | None:
        """Why ``path`` is refused, or ``None`` when it may be used. ``role="destination"``
        is a backup destination, which may lie inside dsr's own backup directory."""
        if "\0" in path:  # no such path can exist, and os.path calls raise on it
            return f"{path!r} contains a NUL character"
        through = through_proc(path)
        if through:
            return (
                f"{path} passes through {through}, a per-process link that dockerd would "
                "resolve in its own process; refused whatever the policy says"
            )
        # realpath resolves links before "..", as the kernel does (/lib/.. is /usr where
        # /lib links to usr/lib); abspath would drop "lib/.." as text first.
        real = os.path.realpath(path if os.path.isabs(path) else os.path.join(os.getcwd(), path))
        via = f" resolves to {real}, which" if real != path else ""
        what = self._exposes(real, role)
        if what:
            return (
                f"{path}{via} {what}; refused by {self.source} "
                "(an admin --policy file can allow it)"
            )
        roots = self.bind_roots
        if roots is not None and not any(is_under(real, _real(root)) for root in roots):
            return f"{path}{via} is outside the allowed roots {', '.join(roots)} ({self.source})"
        return None

    @functools.cached_property
    def _allowed_roots(self) -> tuple[str, ...]:
        return tuple({r for root in self.allow for r in _both(root)})

    def _allowed(self, path: str) -> bool:
        return any(is_under(path, root) for root in self._allowed_roots)

    def _exposes(self, real: str, role: Role) -> str | None:
        """What protected thing the resolved path ``real`` is, lies under or contains,
        worded to follow "PATH"; the part both share must not be allowed."""
        if real == "/" and not self._allowed("/"):
            return "is the host's root"
        if self._is_socket(real) and not self._allowed(real):
            return "is the Docker socket"
        for root, label in self._protected(real, role):
            if is_under(real, root) and not self._allowed(real):
                return f"is under the protected {label}"
            if _contains(real, root) and not self._allowed(root):
                return f"contains the protected {label}"
        return None

    def _protected(self, real: str, role: Role) -> tuple[tuple[str, str], ...]:
        if role == "destination" and any(is_under(real, b) for b, _ in self._backups):
            return self._system
        return self._system + self._state + self._backups

    @functools.cached_property
    def _system(self) -> tuple[tuple[str, str], ...]:
        out = [(root, root) for root in PROTECTED]
        out += [(s, f"Docker socket {s}") for s in self._sockets]
        return _resolved(out)

    @functools.cached_property
    def _sockets(self) -> tuple[str, ...]:
        sockets = {*DOCKER_SOCKETS, *([self.docker_socket] if self.docker_socket else [])}
        return tuple(sorted({r for s in sockets for r in _both(s)}))

    @functools.cached_property
    def _state(self) -> tuple[tuple[str, str], ...]:
        return _resolved([(self.state_dir, f"dsr state directory {self.state_dir}")])

    @functools.cached_property
    def _backups(self) -> tuple[tuple[str, str], ...]:
        backups = self.backup_dir or os.path.join(self.state_dir, "backups")
        return _resolved([(backups, f"dsr backup directory {backups}")])

    @functools.cached_property
    def _socket_inode(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.docker_socket) if self.docker_socket else None
        except (OSError, ValueError):
            return None
        return None if info is None else (info.st_dev, info.st_ino)

    def _is_socket(self, real: str) -> bool:
        """``real`` is an engine socket, or the very socket file dsr talks to by inode: a
        hard link to it or a bind mount of it elsewhere gives the same access."""
        if real in self._sockets:
            return True
        if self._socket_inode is None:
            return False
        try:
            info = os.stat(real)
        except (OSError, ValueError):
            return False
        return (info.st_dev, info.st_ino) == self._socket_inode


_PROC_PID = re.compile(r"^/proc/(self|thread-self|[0-9]+)(/|$)")


def through_proc(path: str, limit: int = 40) -> str | None:
    """The ``/proc/<pid>`` path that resolving ``path`` passes through, if any: resolved
    one component at a time as the kernel does (links before ``..``), at most ``limit``
    links (the kernel's own bound), so a link to /proc/self/cwd is found too."""
    base = os.getcwd() if not path.startswith("/") else "/"
    parts = [p for p in path.split("/") if p]
    done = "/" if base == "/" else base
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            done = os.path.dirname(done) or "/"
            continue
        here = os.path.join(done, part)
        if _PROC_PID.match(here):
            return here
        try:
            target = os.readlink(here)
        except (OSError, ValueError):
            done = here
            continue
        links += 1
        if links > limit:
            return None  # a loop: the realpath check that follows refuses nothing worse
        if target.startswith("/"):
            done = "/"
        parts[:0] = [p for p in target.split("/") if p]
    return None


def _real(path: str) -> str:
    return os.path.realpath(path) if "*" not in path else path


def _both(path: str) -> list[str]:
    real = _real(path)
    return [path] if real == path else [path, real]


def _resolved(entries: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Each protected path also as resolved, so /var/run/docker.sock guards /run/docker.sock."""
    return tuple((resolved, label) for root, label in entries for resolved in _both(root))


def load_policy(
    file: str | None,
    spec_paths: tuple[str, ...] = (),
    *,
    docker_host: str | None = None,
    state_dir: str | None = None,
) -> Policy:
    """Read an admin policy file; refuse one that lives among the specs it would govern.

    ``docker_host`` and ``state_dir`` are what dsr runs with (``--docker-host``,
    ``--state-dir``); ``None`` means their defaults (``DOCKER_HOST`` or the local socket,
    ``DSR_STATE_DIR`` or the per-user default). Their socket and folders are protected.
    """
    mine = {
        "docker_socket": socket_path(docker_host),
        "state_dir": os.path.abspath(state_dir or default_state_dir()),
    }
    if file is None:
        return Policy(**mine)  # type: ignore[arg-type]
    real = os.path.realpath(file)
    for spec in spec_paths:
        # A path that does not exist is taken as a folder: its own error comes later, and
        # its parent (often the current folder) is not a spec directory.
        is_file = os.path.exists(spec) and not os.path.isdir(spec)
        spec_root = os.path.realpath(os.path.dirname(spec) if is_file else spec)
        if is_under(real, spec_root):
            raise PolicyError(
                f"{file}: the policy file lies in the spec directory {spec}; an admin policy "
                "must live outside the specs it governs"
            )
    parsed = _read(file)
    return Policy(
        allow=tuple(parsed.allow),
        bind_roots=None if parsed.bind_roots is None else tuple(parsed.bind_roots),
        source=f"the policy {file}",
        allowances=Allowances(
            frozenset(parsed.volume_drivers),
            frozenset(parsed.local_types),
            frozenset(parsed.local_options),
        ),
        **mine,  # type: ignore[arg-type]
    )


def _read(file: str) -> _PolicyFile:
    from reconciler.spec.yamlload import load_yaml, unwrap

    try:
        text = read_bounded(file).decode("utf-8")
    except InputFileError as err:
        raise PolicyError(f"{file}: cannot read the policy file: {err}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise PolicyError(f"{file}: cannot read the policy file: {err}") from err
    doc = load_yaml(text, file, env={})
    if doc.issues:
        raise PolicyError("\n".join(str(i) for i in doc.issues))
    try:
        return _PolicyFile.model_validate(unwrap(doc.data, text=True) or {})
    except ValidationError as err:
        first = err.errors()[0]
        loc = tuple(first["loc"])
        raise PolicyError(str(doc.issue(loc, first["msg"]))) from err
