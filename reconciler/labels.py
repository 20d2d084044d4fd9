"""The labels dsr puts on what it makes, and the one test of whose an object is.

Every engine object dsr creates carries ``dsr.managed=true`` and ``dsr.project=PROJECT``;
dsr touches an object only when both say it is the project's (or the project's record says
it adopted that very object). Anything under ``dsr.`` is reserved: a spec may not set it.
"""

from __future__ import annotations

from collections.abc import Mapping

RESERVED_PREFIX = "dsr."
MANAGED = "dsr.managed"
PROJECT = "dsr.project"
CONFIG_HASH = "dsr.config-hash"
KIND = "dsr.kind"  # volume | container | volume_container | image
NAME = "dsr.name"  # the spec key; differs from the Docker name only mid-replace
# One volume's identity: a random token dsr sets when it makes a volume. A name is reused
# (a volume deleted and made again, brought back by a restore, made by a migration), and
# Docker's CreatedAt of a local volume is its folder's mtime, which every write moves.
INSTANCE = "dsr.instance"
SPEC = "dsr.spec"  # the spec file a container came from
BIND_KINDS = "dsr.bind-kinds"  # {target: "dir" | "file"} of the binds, when made

# The labels that make an object dsr's: the ones every container dsr makes carries.
OWNERSHIP = (MANAGED, PROJECT, KIND, NAME, CONFIG_HASH)


def managed(labels: Mapping[str, str] | None) -> bool:
    """Some dsr project made the object with ``labels``."""
    return (labels or {}).get(MANAGED) == "true"


def owned_by(labels: Mapping[str, str] | None, project: str) -> bool:
    """dsr made the object with ``labels`` for ``project``: the one ownership check (a
    container's labels may be inherited from its image: ``plan.context.owns`` says more)."""
    return managed(labels) and (labels or {}).get(PROJECT) == project
