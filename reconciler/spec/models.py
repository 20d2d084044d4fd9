"""The spec format as frozen pydantic models: one ``SpecFile`` per YAML file.

Models check shape and values only; whether references resolve and host paths exist is
``resolve``'s job, because it needs every file of the set. Relative host paths are made
absolute here, against the directory of the file they are written in (the ``base_dir``
of the validation context).
"""

from __future__ import annotations

import re
import signal
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from reconciler.escape import has_control
from reconciler.spec.backups import Backup
from reconciler.spec.base import (
    BackupName,
    ContainerName,
    ImageKey,
    NetworkName,
    SpecModel,
    VolumeName,
    parse_seconds,
)
from reconciler.spec.devices import KERNEL_FILESYSTEMS, local_host_paths
from reconciler.spec.fields import (
    absolute_target,
    check_labels,
    host_path,
    image_text,
    no_control,
)
from reconciler.spec.hosts import Hosts
from reconciler.spec.mounts import is_host_path, parse_short
from reconciler.spec.names import (
    PROJECT_NAME,
    is_image_reference,
    matches,
    port_problem,
)
from reconciler.spec.runtime import DependsOn, Healthcheck, depends_on_form, size_bytes

_RESTART = r"no|always|unless-stopped|on-failure(:[0-9]+)?"


# The names a replace gives the new and the old container while it swaps them.
NEW_SUFFIX = "_dsr_new"
OLD_SUFFIX = "_dsr_old"


class Volume(SpecModel):
    """A Docker named volume; its key in ``volumes`` is its name."""

    driver: str = "local"
    driver_opts: dict[str, str] = {}
    labels: dict[str, str] = {}
    external: StrictBool = Field(
        False, description="must exist; dsr never creates, changes or removes it"
    )
    reclaim: Literal["retain", "delete", "backup-then-delete"] = Field(
        "retain", description="what happens to the data when the volume leaves the spec"
    )
    on_change: Literal["block", "migrate", "recreate"] = Field(
        "block", description="what happens when driver, driver_opts or labels change"
    )
    adopt: StrictBool = Field(
        False, description="take over an existing object of this name that is not dsr's"
    )
    hosts: Hosts = Field(None, description="the hosts it belongs on (default: every host)")

    _check_labels = field_validator("labels")(check_labels)

    @field_validator("driver")
    @classmethod
    def _driver(cls, value: str) -> str:
        # "Local" or " local" would slip past the local driver's host-path checks.
        if not value or has_control(value) or value != value.strip():
            raise ValueError(f"{value!r} is not a volume driver name")
        return "local" if value.lower() == "local" else value

    @field_validator("driver_opts")
    @classmethod
    def _driver_opts(cls, value: dict[str, str]) -> dict[str, str]:
        for key, option in value.items():
            if has_control(key) or has_control(option):
                raise ValueError(f"driver_opts {key!r}: control characters are not allowed")
        return value

    @model_validator(mode="after")
    def _absolute_devices(self) -> Volume:
        if self.adopt and self.external:
            raise ValueError(
                "adopt: an external volume is never dsr's; adopt: true takes one over (use one)"
            )
        fstype = self.driver_opts.get("type", "").lower()
        if self.driver == "local" and fstype in KERNEL_FILESYSTEMS:
            raise ValueError(
                f"driver_opts.type: '{fstype}' is a kernel filesystem; the engine would mount "
                "the host's own, so dsr refuses it"
            )
        for option, path in volume_host_paths(self):
            if not path.startswith("/") or "\0" in path:
                raise ValueError(
                    f"driver_opts.{option}: '{path}' must be an absolute host path (the local "
                    "driver mounts it from the host)"
                )
        return self


def volume_host_paths(volume: Volume) -> list[tuple[str, str]]:
    """The host paths a volume of the spec mounts: (driver_opts key, path)."""
    return local_host_paths(volume.driver, volume.driver_opts)


class Image(SpecModel):
    """A data-packed image: files of ``context`` copied to ``path``, declared as a VOLUME."""

    context: str = Field(description="a folder, relative to this file")
    path: str = Field(description="absolute path in the image where the files land")
    base: str = "scratch"
    hosts: Hosts = Field(None, description="the hosts it belongs on (default: every host)")

    _check_context = field_validator("context")(host_path)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        # It becomes Dockerfile text: the builder substitutes $VARS and reads \ as an escape.
        if any(c in value for c in "$\\"):
            raise ValueError(f"'{value}': a data-packed image's path cannot hold '$' or '\\'")
        return absolute_target(value)

    @field_validator("base")
    @classmethod
    def _base(cls, value: str) -> str:
        if value != "scratch" and not is_image_reference(value):
            raise ValueError(f"{value!r} is not an image reference (or scratch)")
        return value


class Mount(SpecModel):
    """One mount: the long form, or the ``docker -v`` short form read into it."""

    type: Literal["bind", "volume", "tmpfs"]
    source: str | None = Field(None, description="host path (bind) or a key of volumes (volume)")
    target: str
    read_only: StrictBool = False
    create: StrictBool = Field(False, description="bind only: create a missing host directory")
    propagation: Literal["private", "rprivate", "shared", "rshared", "slave", "rslave"] | None = (
        None
    )
    selinux: Literal["z", "Z"] | None = None
    nocopy: StrictBool = Field(False, description="volume only: do not copy image data into it")
    tmpfs_size: int | None = Field(None, ge=1, description="tmpfs only: size in bytes")

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return parse_short(value) if isinstance(value, str) else value

    _check_target = field_validator("target")(absolute_target)

    @field_validator("source")
    @classmethod
    def _resolve_bind(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and info.data.get("type") == "bind":
            return host_path(value, info)
        return value

    @model_validator(mode="after")
    def _fits_type(self) -> Mount:
        kind = self.type
        if kind == "bind" and not self.source:
            raise ValueError("a bind mount needs a source (a host path)")
        if kind == "tmpfs" and self.source:
            raise ValueError("a tmpfs mount has no source")
        if kind == "volume" and self.source and is_host_path(self.source):
            raise ValueError(f"'{self.source}' is a host path: use type: bind")
        for name, applies in (
            ("create", "bind"),
            ("propagation", "bind"),
            ("nocopy", "volume"),
            ("tmpfs_size", "tmpfs"),
        ):
            if getattr(self, name) not in (None, False) and kind != applies:
                raise ValueError(f"'{name}' applies to {applies} mounts only")
        return self

    @property
    def anonymous(self) -> bool:
        """A volume mount with no source: a managed volume Docker names."""
        return self.type == "volume" and not self.source


_ALIAS = r"[a-zA-Z0-9][a-zA-Z0-9_.-]*"


class Network(SpecModel):
    """A user-defined network (as compose makes one per project); its key is its name."""

    driver: Literal["bridge"] = "bridge"
    internal: StrictBool = Field(False, description="no route out of the host")
    labels: dict[str, str] = {}
    adopt: StrictBool = Field(
        False, description="take over an existing network of this name that is not dsr's"
    )
    hosts: Hosts = Field(None, description="the hosts it belongs on (default: every host)")

    _check_labels = field_validator("labels")(check_labels)


class NetworkAttachment(SpecModel):
    """How a container joins a network: the other names it answers to there."""

    aliases: list[str] = []

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        for alias in value:
            if not matches(_ALIAS, alias) or len(alias) > 253:
                raise ValueError(f"'{alias}' is not a host name")
        return value


class VolumesFrom(SpecModel):
    """``name`` or ``name:ro`` / ``name:rw``, as ``docker --volumes-from`` reads it."""

    name: ContainerName
    read_only: StrictBool | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        name, sep, mode = value.partition(":")
        if sep and mode not in ("ro", "rw"):
            raise ValueError(f"'{value}': the mode after ':' must be 'ro' or 'rw'")
        return {"name": name, "read_only": {"ro": True, "rw": False}.get(mode)}


def _unique_targets(mounts: list[Mount]) -> list[Mount]:
    seen: set[str] = set()
    for mount in mounts:
        if mount.target in seen:
            raise ValueError(f"two mounts have the target {mount.target}")
        seen.add(mount.target)
    return mounts


class VolumeContainer(SpecModel):
    """A container that is created and never started; others use it through volumes_from."""

    image: str | None = Field(None, description="a key of images, or any image reference")
    mounts: list[Mount] = []
    labels: dict[str, str] = {}
    adopt: StrictBool = Field(
        False, description="take over an existing object of this name that is not dsr's"
    )
    hosts: Hosts = Field(None, description="the hosts it belongs on (default: every host)")

    _check_labels = field_validator("labels")(check_labels)
    _check_mounts = field_validator("mounts")(_unique_targets)
    _check_image = field_validator("image")(image_text)


class Container(SpecModel):
    """A container that uses the storage."""

    image: str = Field(description="a key of images, or any image reference")
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: dict[str, str] = {}
    ports: list[str] = []
    restart: str = "no"
    labels: dict[str, str] = {}
    working_dir: str | None = None
    user: str | None = None
    state: Literal["running", "created"] = "running"
    stop_signal: str | None = Field(
        None, description="the signal that stops it (default: the image's, else SIGTERM)"
    )
    stop_timeout: int = Field(
        10, ge=0, le=86400, description="seconds from the stop signal to SIGKILL (Docker's 10)"
    )
    init: bool = Field(False, description="Docker's init as PID 1, so shells stop on SIGTERM")
    writable_layer: Literal["discard", "protect"] = Field(
        "discard",
        description="discard: a replace drops files written inside the container (the plan "
        "says how much); protect: such a replace is blocked while the layer holds data",
    )
    mounts: list[Mount] = []
    volumes_from: list[VolumesFrom] = []
    networks: dict[NetworkName, NetworkAttachment] = Field(
        {}, description="networks keys to join (a list, or a map with aliases)"
    )
    healthcheck: Healthcheck | None = None
    depends_on: dict[ContainerName, DependsOn] = Field(
        {}, description="containers made and started first (service_healthy: once healthy)"
    )
    memory: int | None = Field(None, ge=6 << 20, description="memory limit: bytes, or 512m, 1g")
    cpus: float | None = Field(None, gt=0, le=1024, description="CPU limit, like 0.5 or 2")
    shm_size: int | None = Field(None, ge=1, description="size of /dev/shm: bytes, or 64m")
    adopt: StrictBool = Field(
        False, description="take over an existing object of this name that is not dsr's"
    )
    hosts: Hosts = Field(None, description="the hosts it belongs on (default: every host)")

    _check_labels = field_validator("labels")(check_labels)
    _check_mounts = field_validator("mounts")(_unique_targets)
    _sizes = field_validator("memory", "shm_size", mode="before")(size_bytes)
    _depends_form = field_validator("depends_on", mode="before")(depends_on_form)
    _check_image = field_validator("image")(image_text)
    _check_text = field_validator("working_dir", "user")(no_control)

    @field_validator("stop_signal")
    @classmethod
    def _signal(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value if value.startswith("SIG") else f"SIG{value}"
        if name in signal.Signals.__members__ or re.fullmatch(r"SIGRTM(IN|AX)([+-]\d{1,2})?", name):
            return name
        if value.isdigit() and 1 <= int(value) <= 64:
            return value
        raise ValueError(f"'{value}' is not a signal name (like SIGTERM or SIGUSR1) or number")

    @field_validator("stop_timeout", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        # compose writes durations ("1m30s"); a bare number is seconds.
        if isinstance(value, str) and value and not value.isdigit():
            return parse_seconds(value)
        return value

    @field_validator("command", "entrypoint", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # A plain string runs through a shell, as in a Dockerfile's shell form.
        return ["/bin/sh", "-c", value] if isinstance(value, str) else value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if isinstance(value, list):
            pairs = {}
            for item in value:
                if not isinstance(item, str) or "=" not in item:
                    raise ValueError(f"env item {item!r} is not KEY=VALUE")
                key, _, val = item.partition("=")
                pairs[key] = val
            return pairs
        if isinstance(value, dict):
            return {k: _scalar_text(v) for k, v in value.items()}
        return value

    @field_validator("env")
    @classmethod
    def _env_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not key or "=" in key or has_control(key):
                raise ValueError(f"env key {key!r} must be non-empty, without '=' or controls")
            if "\0" in val:
                raise ValueError(f"env {key}: a value cannot hold a NUL character")
        return value

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: list[str]) -> list[str]:
        for port in value:
            problem = port_problem(port)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("restart")
    @classmethod
    def _restart(cls, value: str) -> str:
        if not matches(_RESTART, value):
            raise ValueError(f"'{value}': expected no, always, unless-stopped or on-failure[:N]")
        return value

    @field_validator("networks", mode="before")
    @classmethod
    def _network_list(cls, value: Any) -> Any:
        # compose's two forms: a list of names, or a map whose entries may be empty.
        if isinstance(value, list):
            if not all(isinstance(item, str) for item in value):
                return value  # pydantic names the bad item
            if len(set(value)) != len(value):
                raise ValueError("a network is listed twice")
            return {key: {} for key in value}
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @field_validator("volumes_from")
    @classmethod
    def _unique_sources(cls, value: list[VolumesFrom]) -> list[VolumesFrom]:
        names = [v.name for v in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"'{name}' is listed twice")
        return value


def _scalar_text(value: Any) -> Any:
    # YAML reads `DEBUG: true` and `PORT: 80` as bool and int; env values are text.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


class SpecFile(SpecModel):
    """One spec file. All files of a spec set merge into one desired state."""

    version: Literal[1]
    project: Annotated[str, StringConstraints(pattern=PROJECT_NAME)] | None = None
    volumes: dict[VolumeName, Volume] = {}
    images: dict[ImageKey, Image] = {}
    volume_containers: dict[ContainerName, VolumeContainer] = {}
    containers: dict[ContainerName, Container] = {}
    backups: dict[BackupName, Backup] = {}
    networks: dict[NetworkName, Network] = {}
    hosts: Hosts = Field(None, description="default hosts of this file's resources")

    @field_validator(
        "volumes",
        "images",
        "volume_containers",
        "containers",
        "backups",
        "networks",
        mode="before",
    )
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("volumes", "volume_containers", "containers", "networks", mode="before")
    @classmethod
    def _empty_entries(cls, value: Any) -> Any:
        # `data:` with nothing under it means "a volume with every default".
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value


SECTIONS = ("volumes", "images", "volume_containers", "containers", "backups", "networks")
