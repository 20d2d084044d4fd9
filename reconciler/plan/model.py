"""A plan is a value: changes in dependency order, each with action, reason and risk.

The applier executes changes without deciding anything; everything it needs is in the
change's parameters. Plans serialize to JSON (``to_dict``/``from_dict``) so a saved plan
can be applied later, exactly as it was shown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from reconciler.kinds import Kind

if TYPE_CHECKING:
    from reconciler.plan.payloads import Payload


class Action(StrEnum):
    """What a change does."""

    CREATE = "create"
    REPLACE = "replace"
    UPDATE = "update"
    START = "start"
    DELETE = "delete"
    BUILD = "build"
    ADOPT = "adopt"  # take over an existing object that is not dsr's (spec: adopt: true)
    BLOCKED = "blocked"


class Status(StrEnum):
    """How applying one change went (the applier's outcome of it)."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # not run: what it depends on failed, or the apply stopped


class Risk(StrEnum):
    """What a change may cost."""

    NONE = "none"
    RESTART = "restart"  # a container is recreated; its volumes are kept
    DATA_LOSS = "data-loss"  # volume data or a container's writable layer is destroyed


class ReasonCode(StrEnum):
    """Why a change is planned, as a stable word for machines (bots, metrics). The human
    ``reason`` says the same in words; nothing in dsr branches on either. The README's
    table documents each. Drift (the engine moved) is told apart from spec changes."""

    MISSING = "missing"  # the object does not exist: create (or build)
    CONFIG_CHANGED = "config-changed"  # the spec changed since the object was made
    IMAGE_CHANGED = "image-changed"  # drift: the image reference points to another image
    MOUNTS_DRIFTED = "mounts-drifted"  # drift: live mounts differ from what dsr made
    VOLUMES_FROM_REPLACED = "volumes-from-replaced"  # a volumes_from source is new/replaced
    CONTEXT_CHANGED = "context-changed"  # a data-packed image's files changed
    STOPPED = "stopped"  # drift: a container that should run does not
    PAUSED = "paused"  # drift: a container that should run is paused
    RENAMED = "renamed"  # drift: the container of a spec name was renamed by hand
    LEFT_SPEC = "left-spec"  # the object left the spec
    LEFTOVER = "leftover"  # what an interrupted replace left behind
    OLD_BUILD = "old-build"  # a data-packed build older than the previous one
    REPLACED_VOLUME = "replaced-volume"  # the volume of a refreshed data-packed container
    UNMANAGED_CLASH = "unmanaged-clash"  # the name is taken by an object dsr does not manage
    OTHER_PROJECT = "other-project"  # the name is taken by another dsr project's object
    WRITABLE_LAYER_DATA = "writable-layer-data"  # blocked: the writable layer holds data
    VOLUME_DATA = "volume-data"  # blocked: a volume's data would be lost
    DEPENDENCY_BLOCKED = "dependency-blocked"  # blocked: it depends on a blocked change
    IMAGE_IN_USE = "image-in-use"  # blocked: an image to remove is still used
    IMAGE_KEY_REMOVED = "image-key-removed"  # blocked: a former data-packed key still used
    EXTERNAL_MISSING = "external-missing"  # blocked: an external volume does not exist
    NOT_HASHED = "not-hashed"  # blocked: a data-packed image could not be hashed
    VOLUME_IN_USE = "volume-in-use"  # blocked: a volume to reclaim is still used
    VOLUME_REPLACED = "volume-replaced"  # made again after the volume it uses was replaced
    MIGRATION = "migration"  # the rest of a volume migration that was interrupted
    NETWORKS_DRIFTED = "networks-drifted"  # drift: attached to other networks than the spec's
    NETWORK_IN_USE = "network-in-use"  # blocked: a network to remove or remake has users
    CONSUMER_DATA = "consumer-data"  # kept: a consumer changed a replaced data-packed volume
    SETTINGS_DRIFTED = "settings-drifted"  # drift: a live setting differs from the spec
    RESTART_DRIFTED = "restart-drifted"  # drift: the restart policy was changed in place
    ADOPT = "adopt"  # an object that is not dsr's, taken over because the spec says adopt
    HANDOFF = "handoff"  # a volume moving between hosts (its `hosts` changed)

    @property
    def drift(self) -> bool:
        """The engine moved behind dsr's back (not the spec): what dsr_drift_total counts."""
        return self in DRIFT


DRIFT = frozenset(
    {
        ReasonCode.IMAGE_CHANGED,
        ReasonCode.MOUNTS_DRIFTED,
        ReasonCode.STOPPED,
        ReasonCode.PAUSED,
        ReasonCode.RENAMED,
        ReasonCode.NETWORKS_DRIFTED,
        ReasonCode.SETTINGS_DRIFTED,
        ReasonCode.RESTART_DRIFTED,
    }
)


@dataclass(frozen=True)
class VolumeParams:
    """``docker volume create``."""

    name: str
    driver: str
    driver_opts: Mapping[str, str]
    labels: Mapping[str, str]


@dataclass(frozen=True)
class MountParams:
    """One entry of a container's ``Mounts`` (or ``Binds`` when SELinux relabelling is asked)."""

    type: str  # bind | volume | tmpfs
    target: str
    source: str = ""
    read_only: bool = False
    propagation: str = ""
    selinux: str = ""
    nocopy: bool = False
    tmpfs_size: int | None = None
    # For a volume Docker creates (an anonymous one): labels that make it dsr's, so that it
    # is never mistaken for somebody else's and shows as an orphan once nothing uses it.
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkParams:
    """``docker network create``."""

    name: str
    labels: Mapping[str, str]
    driver: str = "bridge"
    internal: bool = False


@dataclass(frozen=True)
class EndpointParams:
    """A network a container joins, with the other names it answers to there."""

    network: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class HealthParams:
    """A container's health check, as the Engine API takes it (durations in ns; 0: Docker's
    default)."""

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    retries: int = 0
    start_period: int = 0


@dataclass(frozen=True)
class ContainerParams:
    """``docker create`` (and ``docker start`` when ``start``)."""

    name: str
    image: str
    labels: Mapping[str, str]
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    restart: str = "no"
    working_dir: str | None = None
    user: str | None = None
    stop_signal: str = ""  # empty: the image's (SIGTERM unless it says otherwise)
    stop_timeout: int | None = None
    init: bool = False
    mounts: tuple[MountParams, ...] = ()
    volumes_from: tuple[str, ...] = ()
    network_disabled: bool = False
    start: bool = True
    pull: bool = False  # the image is not on the engine yet
    make_dirs: tuple[str, ...] = ()  # bind sources with create: true
    # User-defined networks to join (none: Docker's default bridge, as before networks).
    networks: tuple[EndpointParams, ...] = ()
    healthcheck: HealthParams | None = None
    memory: int | None = None  # bytes
    nano_cpus: int | None = None
    shm_size: int | None = None  # bytes
    # Containers that must be healthy before this one starts (depends_on: service_healthy).
    wait_healthy: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageParams:
    """An image dsr makes itself: empty (``docker import``) or data-packed (``docker build``)."""

    tag: str
    labels: Mapping[str, str]
    context: str = ""  # data-packed: the folder copied to ``path`` and declared a VOLUME
    path: str = ""
    base: str = ""


class Op(StrEnum):
    """One engine or backup call: what a change is made of, in order."""

    CREATE_VOLUME = "create-volume"
    REMOVE_VOLUME = "remove-volume"
    BACK_UP_VOLUME = "back-up-volume"
    RESTORE_VOLUME = "restore-volume"
    RECORD = "record"  # a write of the project's record in the state directory
    BUILD_IMAGE = "build-image"
    IMPORT_IMAGE = "import-image"
    PULL_IMAGE = "pull-image"
    REMOVE_IMAGE = "remove-image"
    CREATE_CONTAINER = "create-container"
    START_CONTAINER = "start-container"
    UNPAUSE_CONTAINER = "unpause-container"
    STOP_CONTAINER = "stop-container"
    RENAME_CONTAINER = "rename-container"
    REMOVE_CONTAINER = "remove-container"
    UPDATE_CONTAINER = "update-container"
    CREATE_NETWORK = "create-network"
    REMOVE_NETWORK = "remove-network"


@dataclass(frozen=True)
class Operation:
    """One call of a change: ``op`` on the object named ``target``; ``to`` is a rename's
    new name, a backup's destination or a restore's snapshot folder. Those are what the
    plan shows (redacted); ``payload`` is what the applier runs (``plan.payloads``), and
    ``rollback`` what it runs when this operation fails, before the change fails."""

    op: Op
    target: str
    to: str = ""
    payload: Payload | None = None
    rollback: tuple[Operation, ...] = ()

    def public(self) -> dict[str, str]:
        return {"op": self.op.value, "target": self.target, **({"to": self.to} if self.to else {})}

    def __str__(self) -> str:
        target = self.target[:12] if _ID.fullmatch(self.target) else self.target
        return f"{self.op.value} {target}" + (f" -> {self.to}" if self.to else "")


_ID = re.compile(r"[0-9a-f]{64}")  # a container's id: shown short, as docker ps shows it


class Order(StrEnum):
    """How a replace (or a create that takes what another change frees) is sequenced."""

    # The new object is made before the old one goes (the old one only stops first).
    CREATE_THEN_DELETE = "create-then-delete"
    # The old object goes first: the new one needs its host port or name free.
    DELETE_THEN_CREATE = "delete-then-create"


@dataclass(frozen=True)
class HandoffParams:
    """What this host states about a volume moving between hosts once the change
    succeeded (``reconciler.handoff``): in ``destination``, as ``host``."""

    destination: str
    host: str
    state: str  # offered | restored | released
    placement: str = ""  # digest of the volume's hosts in the spec planned
    snapshot: str = ""  # restored: the snapshot restored (an offer names the one it takes)
    source: str = ""  # restored: the host that offered it


@dataclass(frozen=True)
class Change:
    """One step of a plan. ``target_id`` is the live object acted on, when there is one."""

    resource: str  # kind:name, e.g. container:web1
    action: Action
    reason: str
    code: ReasonCode
    risk: Risk = Risk.NONE
    depends_on: tuple[str, ...] = ()
    target_id: str | None = None
    # How the live object acted on stops (a replace or delete of a container): its own
    # signal was set when it was created; this is the time Docker gives it before SIGKILL.
    stop_timeout: int = 10
    # A volume's delete or migration backs it up here first ("": the state directory's).
    backup_to: str | None = None
    # A migration's create or update restores the volume from this snapshot folder.
    restore_from: str | None = None
    # The containers a volume's replace stops and removes (they are made again after it).
    removes: tuple[str, ...] = ()
    # An adoption of a volume: the creation time of the one adopted, recorded with its
    # name, so that a volume made again under that name behind dsr's back is not taken.
    identity: str = ""
    # The container whose interrupted adoption this delete finishes: its record goes too.
    adoption: str = ""
    # A replace's sequence, and the downtime it implies ("": none), as the plan shows them.
    order: Order | None = None
    downtime: str = ""
    # Each engine or backup call the change makes, in order (plan.operations fills them).
    operations: tuple[Operation, ...] = ()
    # A volume moving between hosts: the statement written once this change succeeded.
    handoff: HandoffParams | None = None
    volume: VolumeParams | None = None
    container: ContainerParams | None = None
    image: ImageParams | None = None
    network: NetworkParams | None = None

    @property
    def kind(self) -> Kind:
        return Kind(self.resource.split(":", 1)[0])

    @property
    def name(self) -> str:
        return self.resource.split(":", 1)[1]

    def public(self) -> dict[str, Any]:
        """The change as the contract's JSON shows it."""
        return {
            "resource": self.resource,
            "action": self.action.value,
            "reason": self.reason,
            "reason_code": self.code.value,
            "risk": self.risk.value,
            "depends_on": list(self.depends_on),
            **({"order": self.order.value} if self.order else {}),
            **({"downtime": self.downtime} if self.downtime else {}),
            "operations": [o.public() for o in self.operations],
        }


SUMMARY_ORDER = ("create", "replace", "update", "start", "delete", "build", "adopt", "blocked")


@dataclass(frozen=True)
class Plan:
    """Every change needed to make the engine match the spec, in the order to apply them."""

    project: str
    changes: tuple[Change, ...] = ()
    orphans: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    # Objects the plan keeps on purpose, each with why (action blocked: nothing is done to
    # them, and they are no blocked change: an apply does not fail for them).
    kept: tuple[Change, ...] = ()
    # What the plan depends on, token by token: set when it is saved (saved.fingerprint).
    fingerprint: Mapping[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(SUMMARY_ORDER, 0)
        for change in self.changes:
            counts[change.action.value] += 1
        return counts

    @property
    def actionable(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action is not Action.BLOCKED)

    def to_dict(self) -> dict[str, Any]:
        """Everything, parameters included: the saved-plan form."""
        return {
            "project": self.project,
            "changes": [_change_dict(c) for c in self.changes],
            "orphans": list(self.orphans),
            "errors": list(self.errors),
            "kept": [_change_dict(c) for c in self.kept],
            "fingerprint": dict(self.fingerprint),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """The plan ``to_dict`` wrote; each operation gets the payload its planner gives
        it again (the file holds them as shown), checked to be the very calls shown."""
        from reconciler.plan.operations import with_payloads

        return cls(
            project=data["project"],
            changes=tuple(with_payloads(_change_from(c)) for c in data["changes"]),
            orphans=tuple(data.get("orphans", ())),
            errors=tuple(data.get("errors", ())),
            kept=tuple(_change_from(c) for c in data.get("kept", ())),
            fingerprint=dict(data.get("fingerprint", {})),
        )


def _change_dict(change: Change) -> dict[str, Any]:
    out = asdict(change)
    out["action"] = change.action.value
    out["code"] = change.code.value
    out["risk"] = change.risk.value
    out["order"] = change.order.value if change.order else None
    out["operations"] = [o.public() for o in change.operations]
    return out


def _change_from(data: Mapping[str, Any]) -> Change:
    container = data.get("container")
    if container is not None:
        container = dict(container)
        container["mounts"] = tuple(MountParams(**m) for m in container["mounts"])
        for key in ("command", "entrypoint"):
            if container[key] is not None:
                container[key] = tuple(container[key])
        for key in ("env", "ports", "volumes_from", "make_dirs"):
            container[key] = tuple(container[key])
        container["networks"] = tuple(
            EndpointParams(network=e["network"], aliases=tuple(e["aliases"]))
            for e in container.get("networks", ())
        )
        health = container.get("healthcheck")
        if health is not None:
            container["healthcheck"] = HealthParams(**{**health, "test": tuple(health["test"])})
        container["wait_healthy"] = tuple(container.get("wait_healthy", ()))
        container = ContainerParams(**container)
    volume = data.get("volume")
    image = data.get("image")
    network = data.get("network")
    handoff = data.get("handoff")
    return Change(
        resource=data["resource"],
        action=Action(data["action"]),
        reason=data["reason"],
        code=ReasonCode(data["code"]),
        risk=Risk(data["risk"]),
        depends_on=tuple(data["depends_on"]),
        target_id=data.get("target_id"),
        stop_timeout=int(data.get("stop_timeout", 10)),
        backup_to=data.get("backup_to"),
        restore_from=data.get("restore_from"),
        removes=tuple(data.get("removes", ())),
        identity=str(data.get("identity", "")),
        adoption=str(data.get("adoption", "")),
        order=Order(data["order"]) if data.get("order") else None,
        downtime=str(data.get("downtime", "")),
        operations=tuple(
            Operation(Op(o["op"]), str(o["target"]), str(o.get("to", "")))
            for o in data.get("operations", ())
        ),
        handoff=HandoffParams(**handoff) if handoff else None,
        volume=VolumeParams(**volume) if volume else None,
        container=container,
        image=ImageParams(**image) if image else None,
        network=NetworkParams(**network) if network else None,
    )
