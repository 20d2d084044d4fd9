"""The spec format as JSON Schema, for editors (``dsr schema``)."""

from __future__ import annotations

from typing import Any

from reconciler.spec.models import SpecFile

SCHEMA_ID = "https://dsr.invalid/schema/spec-v1.json"

_SHORT_MOUNT = {
    "type": "string",
    "description": "docker -v form: SOURCE:TARGET[:OPTIONS] or TARGET alone",
    "pattern": r"^[^:]+(:[^:]+(:[^:]+)?)?$",
}
_SHORT_VOLUMES_FROM = {
    "type": "string",
    "description": "a container or volume container, optionally with :ro or :rw",
    "pattern": r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+(:(ro|rw))?$",
}


def spec_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one spec file, short forms included."""
    schema = SpecFile.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "dsr spec file"
    schema["patternProperties"] = {"^x-": {"description": "extension field, ignored by dsr"}}
    defs = schema.get("$defs", {})
    for name in ("Container", "VolumeContainer"):
        props = defs[name]["properties"]
        props["mounts"]["items"] = {"anyOf": [_SHORT_MOUNT, {"$ref": "#/$defs/Mount"}]}
    volumes_from = defs["Container"]["properties"]["volumes_from"]
    volumes_from["items"] = {"anyOf": [_SHORT_VOLUMES_FROM, {"$ref": "#/$defs/VolumesFrom"}]}
    for prop in ("command", "entrypoint"):
        field = defs["Container"]["properties"][prop]
        field["anyOf"] = [{"type": "string"}, *field.get("anyOf", [])]
    env = defs["Container"]["properties"]["env"]
    defs["Container"]["properties"]["env"] = {
        "anyOf": [
            {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
            {"type": "array", "items": {"type": "string", "pattern": "^[^=]+=.*$"}},
        ],
        "default": env.get("default", {}),
        "title": env.get("title", "Env"),
    }
    return schema
