"""The observed snapshot: what the engine holds, as plain frozen values (the planner's input).

No Docker here: ``observe`` fills these from the Engine API; tests write them as literals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# The labels dsr puts on everything it creates (reconciler.labels), named here too.
from reconciler.labels import CONFIG_HASH, INSTANCE, KIND, MANAGED, NAME, PROJECT, managed

__all__ = ["CONFIG_HASH", "INSTANCE", "KIND", "MANAGED", "NAME", "PROJECT"]


def new_instance() -> str:
    import secrets

    return secrets.token_hex(8)


@dataclass(frozen=True)
class LiveMount:
    """One mount of a live container, as ``docker inspect`` shows it."""

    type: str  # bind | volume | tmpfs
    target: str
    source: str = ""  # host path (bind) or the volume's mount point
    name: str = ""  # the volume's name (volume)
    read_only: bool = False


class _Labelled:
    """An engine object whose labels say whether dsr manages it, and for which project."""

    labels: Mapping[str, str]

    @property
    def managed(self) -> bool:
        return managed(self.labels)

    @property
    def project(self) -> str | None:
        return self.labels.get(PROJECT)


@dataclass(frozen=True)
class LiveConfig:
    """The settings a spec sets that only ``docker inspect`` reports, as Docker holds them:
    what drift is compared against, field by field (the label hash says only what dsr
    asked for when it made the container)."""

    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""
    stop_timeout: int | None = None
    init: bool = False
    restart: str = "no"  # as specs write it: no | always | unless-stopped | on-failure[:N]
    # Host port bindings, each CONTAINER_PORT/PROTO=HOST_IP:HOST_PORT (IP or port may be "").
    bindings: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LiveContainer(_Labelled):
    """A container of any owner; ``labels`` tell whether dsr manages it."""

    id: str
    name: str
    image: str  # the reference it was created from
    image_id: str
    state: str  # created | running | exited | paused | restarting | dead
    labels: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[LiveMount, ...] = ()
    size_rw: int | None = None  # bytes in the writable layer; None when not measured
    networks: tuple[str, ...] = ()  # the networks it is attached to, by name
    # The host ports it holds now (running), as PORT/PROTO: what a new container must wait
    # for when it publishes one of them.
    ports: tuple[str, ...] = ()
    # Read with docker inspect for this project's own containers; None when not read.
    config: LiveConfig | None = None

    def mount_at(self, target: str) -> LiveMount | None:
        for mount in self.mounts:
            if mount.target == target:
                return mount
        return None


@dataclass(frozen=True)
class LiveVolume(_Labelled):
    """A named (or anonymous) Docker volume."""

    name: str
    driver: str = "local"
    options: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: str = ""
    # Where this host can see the volume's own folder: its inode and mtime (see
    # ``volume_origin``); "" for a remote engine or another driver.
    origin: str = ""

    @property
    def identity(self) -> str:
        """What tells this volume from one made again under its name later: its origin on
        this host, else the engine's CreatedAt ("" when neither is known)."""
        return self.origin or self.created_at

    @property
    def instance(self) -> str:
        """The token dsr set when it made this volume (``""``: not made by this dsr)."""
        return self.labels.get(INSTANCE, "")


@dataclass(frozen=True)
class LiveNetwork(_Labelled):
    """A Docker network."""

    id: str
    name: str
    driver: str = "bridge"
    internal: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LiveImage:
    """A local image with its tags."""

    id: str
    tags: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    created: int = 0  # seconds since the epoch


@dataclass(frozen=True)
class Observed:
    """One snapshot of the engine, taken before planning; the planner asks nothing more."""

    containers: Mapping[str, LiveContainer] = field(default_factory=dict)  # by Docker name
    volumes: Mapping[str, LiveVolume] = field(default_factory=dict)
    images: Mapping[str, LiveImage] = field(default_factory=dict)  # by tag and by id
    # By name; only listed when the spec or the project's record has networks (a spec
    # without any keeps its plan at three list calls).
    networks: Mapping[str, LiveNetwork] = field(default_factory=dict)
    # Anonymous volumes of data-packed volume containers a refresh replaces, compared with
    # the files their build put there: True holds exactly those, False differs (or could
    # not be read). Only those a consumer mounted read-write are compared.
    packed_volumes: Mapping[str, bool] = field(default_factory=dict)

    def volume_users(self, volume: str) -> list[str]:
        """Names of the containers (of any owner) that mount ``volume``."""
        return sorted(
            c.name for c in self.containers.values() if any(m.name == volume for m in c.mounts)
        )

    def network_users(self, network: str) -> list[str]:
        """Names of the containers (of any owner) attached to ``network``."""
        return sorted(c.name for c in self.containers.values() if network in c.networks)

    def image_id(self, reference: str) -> str | None:
        image = self.images.get(normalize_reference(reference))
        return image.id if image else None


def normalize_reference(reference: str) -> str:
    """The form images are keyed by in ``Observed.images``: ``busybox`` is ``busybox:latest``."""
    last = reference.rsplit("/", 1)[-1]
    if "@" in reference or ":" in last or reference.startswith("sha256:"):
        return reference
    return f"{reference}:latest"
