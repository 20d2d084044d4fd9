"""What every spec model shares: frozen, no unknown keys, YAML scalars as written; the
name types and the duration parser the sections use."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from reconciler.spec.fields import text_fields, written_values
from reconciler.spec.names import BACKUP_NAME, DOCKER_NAME, IMAGE_KEY
from reconciler.spec.yamlload import Plain

_CONTAINERS = (Plain, list, dict)  # what may hold a ``Plain``: other values pass as they are


class SpecModel(BaseModel):
    """Frozen, no unknown keys; YAML scalars taken as written where text is wanted."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    @model_validator(mode="before")
    @classmethod
    def _written(cls, value: Any) -> Any:
        # YAML typed `0755` as a number: a text field takes the text written, others the value.
        if isinstance(value, Plain):
            return value.value
        if not isinstance(value, dict):
            return value
        text = text_fields(cls)
        out = None
        for k, v in value.items():
            if type(v) in _CONTAINERS:
                new = written_values(v, k in text)
                if new is not v:
                    out = out if out is not None else dict(value)
                    out[k] = new
        return value if out is None else out


VolumeName = Annotated[str, StringConstraints(pattern=DOCKER_NAME)]
ContainerName = Annotated[str, StringConstraints(pattern=DOCKER_NAME)]
NetworkName = Annotated[str, StringConstraints(pattern=DOCKER_NAME)]
ImageKey = Annotated[str, StringConstraints(pattern=IMAGE_KEY)]
BackupName = Annotated[str, StringConstraints(pattern=BACKUP_NAME)]
Count = Annotated[int, Field(ge=-1, description="how many to keep; -1 keeps all")]


_SECONDS = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_seconds(value: str) -> int:
    """``1h2m3s``, ``90s``, ``5m`` as seconds, as compose and Go write durations."""
    match = _SECONDS.fullmatch(value)
    if not value or not match or not any(match.groups()):
        raise ValueError(f"'{value}' is not a duration like 30s, 5m or 1h30m")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds
