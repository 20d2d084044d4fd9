"""The admin's host-path policy: which host paths specs may bind or back up.

Without a policy file, binds of ``/`` itself, of anything under ``/etc``, ``/proc``,
``/sys``, ``/dev``, ``/boot``, ``/root`` and ``/var/lib/docker``, and of the Docker socket are
refused. An admin's policy file (``--policy FILE``, never read from the spec directory)
may allow some of those paths and may limit binds to listed roots::

    allow: [/etc/ssl/certs]     # protected paths that specs may use after all
    bind_roots: [/srv, /home]   # when given, every host path must lie under one of these
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from reconciler.errors import PolicyError
from reconciler.files import InputFileError, read_bounded

PROTECTED = ("/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/var/lib/docker")
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


def is_under(path: str, root: str) -> bool:
    """``path`` is ``root`` or lies below it (both absolute and normalized)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[str] = []
    bind_roots: list[str] | None = None

    @field_validator("allow", "bind_roots")
    @classmethod
    def _absolute(cls, value: list[str] | None) -> list[str] | None:
        for path in value or []:
            if not os.path.isabs(path):
                raise ValueError(f"'{path}' is not an absolute path")
        return None if value is None else [os.path.normpath(p) for p in value]


@dataclass(frozen=True)
class Policy:
    """What host paths a spec may name. ``Policy()`` is the safe default."""

    allow: tuple[str, ...] = ()
    bind_roots: tuple[str, ...] | None = None
    source: str = "the default host-path policy"

    def check(self, path: str) -> str | None:
        """Why ``path`` (absolute, normalized) is refused, or ``None`` when it may be used."""
        # The path as written first, so that the message names what the user wrote.
        candidates = list(dict.fromkeys((path, os.path.realpath(path))))
        if any(is_under(c, a) for c in candidates for a in self.allow):
            return None
        for candidate in candidates:
            what = self._protected(candidate)
            if what:
                via = f" resolves to {candidate}, which" if candidate != path else ""
                return (
                    f"{path}{via} is {what}; refused by {self.source} "
                    "(an admin --policy file can allow it)"
                )
        if self.bind_roots is not None and not any(
            is_under(c, root) for c in candidates for root in self.bind_roots
        ):
            return (
                f"{path} is outside the allowed roots {', '.join(self.bind_roots)} ({self.source})"
            )
        return None

    @staticmethod
    def _protected(path: str) -> str | None:
        """What protected thing ``path`` is, worded to follow "PATH is"."""
        if path == "/":
            return "the host's root"
        if path in DOCKER_SOCKETS:
            return "the Docker socket"
        for root in PROTECTED:
            if is_under(path, root):
                return f"under the protected {root}"
        return None


def load_policy(file: str | None, spec_paths: tuple[str, ...] = ()) -> Policy:
    """Read an admin policy file; refuse one that lives among the specs it would govern."""
    if file is None:
        return Policy()
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
        parsed = _PolicyFile.model_validate(unwrap(doc.data, text=True) or {})
    except ValidationError as err:
        first = err.errors()[0]
        loc = tuple(first["loc"])
        raise PolicyError(str(doc.issue(loc, first["msg"]))) from err
    return Policy(
        allow=tuple(parsed.allow),
        bind_roots=None if parsed.bind_roots is None else tuple(parsed.bind_roots),
        source=f"the policy {file}",
    )
