"""What each operation of a plan needs to run: one frozen payload class per kind of call.

The planner (``plan.operations``) makes these; the applier runs each through the one
executor of its class (``reconciler.execute``), in order, and decides nothing. Names are
engine names or ids, never spec keys. Values here are the real ones (an image reference from
``${VAR}``, say): what the plan prints is the ``Operation``'s own target, redacted.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.plan.model import (
    ContainerParams,
    HandoffParams,
    ImageParams,
    NetworkParams,
    VolumeParams,
)


@dataclass(frozen=True)
class CreateVolume:
    """``docker volume create`` (``if_missing``: not when a volume of that name exists,
    the end of an interrupted migration or a handoff)."""

    params: VolumeParams
    if_missing: bool = False


@dataclass(frozen=True)
class RemoveVolume:
    """``docker volume rm`` (refused by Docker while in use; already gone is done)."""

    name: str


@dataclass(frozen=True)
class BackUpVolume:
    """A verified snapshot of ``volume`` in ``destination`` (the change remembers its
    folder for a later restore or handoff). ``if_present``: a volume already gone is done
    (a delete's backup was taken before it went). ``migration``: the volume's users must
    stay stopped while it is read and nothing may be left out (a migration's backup)."""

    volume: str
    destination: str
    if_present: bool = False
    migration: bool = False


@dataclass(frozen=True)
class RecordMigration:
    """Write in the project record that ``volume`` is migrating, from the backup this
    change just took: the next run finishes it from there if this one is cut short."""

    volume: str


@dataclass(frozen=True)
class RestoreVolume:
    """Make ``volume`` hold exactly the snapshot in ``folder`` ("": the one this change
    took), checked against its digest. ``hint`` is added to a failure's message."""

    volume: str
    folder: str = ""
    hint: str = ""


@dataclass(frozen=True)
class EndMigration:
    """Remove ``volume``'s migration from the project record: it is over."""

    volume: str


@dataclass(frozen=True)
class AdoptVolume:
    """Record the adoption of ``name``, checked to be the very volume the plan saw
    (``identity``) when the apply runs."""

    name: str
    identity: str


@dataclass(frozen=True)
class AdoptNetwork:
    """Record the adoption of the network ``target`` (an id), by its name and id."""

    target: str


@dataclass(frozen=True)
class RecordAdopting:
    """Write in the project record that the adoption of ``name`` renames ``container``
    (its id) ``name_dsr_old``: that container has no dsr labels, so a pass killed before
    it is removed finishes the adoption from the record (``plan.leftovers``)."""

    name: str
    container: str


@dataclass(frozen=True)
class ForgetAdopting:
    """Remove that record once the renamed ``container`` is gone or has its name back
    (only when the record names that very container)."""

    name: str
    container: str


@dataclass(frozen=True)
class StateHandoff:
    """Write this host's statement about a volume moving between hosts (``handoff``);
    ``with_backup``: it names the snapshot this change just took."""

    volume: str
    params: HandoffParams
    with_backup: bool = False


@dataclass(frozen=True)
class BuildImage:
    """``docker build`` of a data-packed image (its context checked to make ``tag``)."""

    params: ImageParams


@dataclass(frozen=True)
class ImportImage:
    """``docker import`` of an image with no files (the base of volume containers)."""

    params: ImageParams


@dataclass(frozen=True)
class PullImage:
    """``docker pull``."""

    image: str


@dataclass(frozen=True)
class RemoveImage:
    """``docker rmi`` (already gone is done)."""

    target: str


@dataclass(frozen=True)
class CreateContainer:
    """``docker create`` as ``name`` (waits for ``params.wait_healthy`` first, makes the
    bind folders asked for, joins the networks beyond the first before anything starts)."""

    params: ContainerParams
    name: str


@dataclass(frozen=True)
class StartContainer:
    """``docker start``. ``if_stopped_here``: only when this change stopped it while it
    ran (starting again what a failed change stopped)."""

    target: str
    if_stopped_here: bool = False


@dataclass(frozen=True)
class UnpauseContainer:
    """``docker unpause``."""

    target: str


@dataclass(frozen=True)
class StopContainer:
    """``docker stop`` with the container's own signal, then SIGKILL after ``timeout``
    seconds (``None``: the container's own stop timeout). A paused one is unpaused first;
    one that does not run, or is gone, is done."""

    target: str
    timeout: int | None = None


@dataclass(frozen=True)
class RenameContainer:
    """``docker rename``."""

    target: str
    to: str


@dataclass(frozen=True)
class RemoveContainer:
    """``docker rm`` of a stopped container, never its volumes. ``force``: only to drop a
    container this change created and could not start. Already gone is done."""

    target: str
    force: bool = False


@dataclass(frozen=True)
class UpdateContainer:
    """``docker update --restart`` in place: no new container, no restart."""

    target: str
    restart: str


@dataclass(frozen=True)
class CreateNetwork:
    """``docker network create``."""

    params: NetworkParams


@dataclass(frozen=True)
class RemoveNetwork:
    """``docker network rm`` (refused by Docker while in use; already gone is done)."""

    target: str


Payload = (
    CreateVolume
    | RemoveVolume
    | BackUpVolume
    | RecordMigration
    | RestoreVolume
    | EndMigration
    | AdoptVolume
    | AdoptNetwork
    | RecordAdopting
    | ForgetAdopting
    | StateHandoff
    | BuildImage
    | ImportImage
    | PullImage
    | RemoveImage
    | CreateContainer
    | StartContainer
    | UnpauseContainer
    | StopContainer
    | RenameContainer
    | RemoveContainer
    | UpdateContainer
    | CreateNetwork
    | RemoveNetwork
)
