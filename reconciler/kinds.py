"""The kinds of object dsr manages: the ``dsr.kind`` label and the prefix of a resource."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """What an object is to dsr. A plan's resource is ``KIND:NAME``, e.g. ``container:web1``."""

    VOLUME = "volume"
    IMAGE = "image"  # a data-packed build, or dsr's empty image
    VOLUME_CONTAINER = "volume_container"
    CONTAINER = "container"
    NETWORK = "network"
    # A volume Docker named, created for one of dsr's containers (never a spec resource).
    ANONYMOUS_VOLUME = "anonymous_volume"

    def resource(self, name: str) -> str:
        return f"{self.value}:{name}"


CONTAINER_KINDS = (Kind.CONTAINER, Kind.VOLUME_CONTAINER)
