"""Which hosts a resource belongs on: the ``hosts:`` selectors and the host they are matched to.

A selector is a host name, a glob of names (``web-*``, as ``fnmatch`` reads it, case
sensitive) or a label test ``KEY=VALUE`` (the value may be a glob too). A resource belongs on
a host when any of its selectors matches; a resource with no ``hosts`` (and in a file with
no ``hosts`` default) belongs on every host. Nothing here reads Docker: a ``Host`` is made by
the caller, from the engine (``docker info``) or from an inventory file.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from reconciler.escape import has_control

_NAME = re.compile(r"[A-Za-z0-9._\-*?\[\]!]+")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/\-]*")
SELECTOR_MAX = 253  # a DNS name's length; labels are no longer in practice


@dataclass(frozen=True)
class Host:
    """One host as selectors see it: its name and its labels."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


def selector_problem(selector: str) -> str | None:
    """Why ``selector`` is no valid host selector, or None."""
    if not selector or len(selector) > SELECTOR_MAX or has_control(selector):
        return f"{selector!r} is not a host selector (a name, a glob like web-*, or KEY=VALUE)"
    key, sep, value = selector.partition("=")
    if sep:
        if not _KEY.fullmatch(key) or not value or value != value.strip():
            return f"'{selector}': a label selector is KEY=VALUE, like role=db"
        return None
    if not _NAME.fullmatch(selector):
        return (
            f"'{selector}' is not a host name or glob (letters, digits, '.', '_', '-' and the "
            "glob characters * ? [ ])"
        )
    return None


def matches(selectors: Sequence[str] | None, host: Host) -> bool:
    """``host`` is one the selectors name; no selectors name every host."""
    if selectors is None:
        return True
    for selector in selectors:
        key, sep, value = selector.partition("=")
        if sep:
            if key in host.labels and fnmatch.fnmatchcase(host.labels[key], value):
                return True
        elif fnmatch.fnmatchcase(host.name, selector):
            return True
    return False


def _one_or_list(value: Any) -> Any:
    # `hosts: web-1` reads as one selector; YAML's numbers and booleans as text are the
    # loader's business (the field holds text).
    return [value] if isinstance(value, str) else value


def _checked(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if not value:
        raise ValueError("lists no host; leave 'hosts' out for a resource on every host")
    for selector in value:
        problem = selector_problem(selector)
        if problem:
            raise ValueError(problem)
    if len(set(value)) != len(value):
        raise ValueError("a host selector is listed twice")
    return value


# The field type of ``hosts`` on every resource model and on a spec file.
Hosts = Annotated[list[str] | None, BeforeValidator(_one_or_list), AfterValidator(_checked)]


def describe(selectors: Sequence[str] | None) -> str:
    """``[web-*, role=db]`` for messages; every host when there are none."""
    return "every host" if selectors is None else "[" + ", ".join(selectors) + "]"


def parse_labels(items: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Engine labels as ``docker info`` lists them (``KEY=VALUE`` strings) or a mapping."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    out = {}
    for item in items:
        key, _, value = str(item).partition("=")
        if key:
            out[key] = value
    return out
