"""Checks that many fields of the spec models share.

The spec models take YAML's ``Plain`` scalars as the model wants them: the text written in
a text field (so ``MODE: 0755`` stays ``0755``), the typed value elsewhere.
"""

from __future__ import annotations

import functools
import os
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationInfo

from reconciler.escape import has_control
from reconciler.spec.yamlload import Plain

RESERVED_LABEL_PREFIX = "dsr."


@functools.cache
def text_fields(model: type[BaseModel]) -> frozenset[str]:
    """Fields that hold text, or lists or mappings of text."""
    return frozenset(name for name, info in model.model_fields.items() if _is_text(info.annotation))


def _is_text(annotation: Any) -> bool:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if annotation is str:
        return True
    if origin is typing.Annotated:
        return _is_text(args[0])
    if origin in (list, dict, typing.Union, types.UnionType):
        return bool(args) and _is_text(args[-1])
    return False


def written_values(value: Any, text: bool) -> Any:
    """``value``'s own ``Plain`` scalars and those of its items (nested models do theirs);
    ``value`` itself when it holds none (the usual case: no copy)."""
    kind = type(value)
    if kind is list:
        if any(type(v) is Plain for v in value):
            return [_one(v, text) for v in value]
        return value
    if kind is dict:
        if any(type(v) is Plain for v in value.values()):
            return {k: _one(v, text) for k, v in value.items()}
        return value
    return _one(value, text) if kind is Plain else value


def _one(value: Any, text: bool) -> Any:
    if isinstance(value, Plain):
        # null stays null, also in a text field: `KEY: ~` is no text, whatever its spelling
        return value.text if text and value.value is not None else value.value
    return value


def host_path(value: str, info: ValidationInfo) -> str:
    """Absolute, normalized host path: ``~`` expanded, relative to the spec file's folder."""
    if has_control(value):  # NUL breaks os.path calls; others rewrite terminals
        raise ValueError(f"{value!r} contains a control character")
    path = os.path.expanduser(value)
    if path.startswith("~"):
        raise ValueError(f"cannot expand '{value}': no such user")
    base = (info.context or {}).get("base_dir")
    if not os.path.isabs(path):
        if base is None:
            return value  # no file to resolve against (schema generation, bare models)
        path = os.path.join(base, path)
    # POSIX keeps a leading "//" through normpath; Linux reads it as "/".
    return "/" + os.path.normpath(path).lstrip("/")


def check_labels(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not key or has_control(key):
            raise ValueError(f"label key {key!r} is empty or contains a control character")
    reserved = sorted(k for k in value if k.startswith(RESERVED_LABEL_PREFIX))
    if reserved:
        raise ValueError(f"label '{reserved[0]}' uses the prefix 'dsr.', which dsr reserves")
    return value


def absolute_target(value: str) -> str:
    if has_control(value):
        raise ValueError(f"{value!r} contains a control character")
    if not value.startswith("/"):
        raise ValueError(f"'{value}' is not an absolute path in the container")
    # POSIX keeps a leading "//" through normpath; Linux (and Docker) read it as "/", so
    # //data and /data are one target.
    path = "/" + os.path.normpath(value).lstrip("/")
    if path == "/":
        raise ValueError("a mount cannot replace the container's root '/'")
    return path


def no_control(value: str | None) -> str | None:
    if value is not None and has_control(value):
        raise ValueError(f"{value!r} contains a control character")
    return value


def image_text(value: str | None) -> str | None:
    if value is not None and (not value or has_control(value)):
        raise ValueError(f"{value!r} is not an image: give a key of images or a reference")
    return value
