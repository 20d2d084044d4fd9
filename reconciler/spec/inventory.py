"""An inventory of hosts: their names, labels and (for ``dsr status --fleet``) agent addresses.

``dsr diff OLD NEW --hosts FILE`` plans each host's share with it, and ``dsr status --fleet
FILE`` asks each listed agent. It is a YAML file::

    version: 1
    hosts:
      web-1: {labels: {role: web}, address: http://10.0.0.11:9180}
      db-1:
        labels: {role: db}

Bad input is reported like a spec's: file, line and path, and nothing runs.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationError, field_validator

from reconciler.errors import SpecError, SpecIssue
from reconciler.files import InputFileError, read_bounded
from reconciler.spec.base import SpecModel
from reconciler.spec.fields import check_labels
from reconciler.spec.hosts import Host
from reconciler.spec.load import _issue as issue_of
from reconciler.spec.yamlload import Document, load_yaml

HOST_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$"
_ADDRESS = re.compile(r"https?://[A-Za-z0-9._\-\[\]:]+(/[A-Za-z0-9._~\-/]*)?")
HostName = Annotated[str, StringConstraints(pattern=HOST_NAME)]


class InventoryHost(SpecModel):
    """One host: the labels its selectors see and where its agent's status server listens."""

    labels: dict[str, str] = {}
    address: str | None = Field(None, description="http://HOST:PORT of the agent's --metrics-addr")

    _check_labels = field_validator("labels")(check_labels)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not _ADDRESS.fullmatch(value):
            raise ValueError(
                f"'{value}' is not an http:// or https:// address (like http://h:9180)"
            )
        return value


class Inventory(SpecModel):
    """The hosts of a fleet, by name."""

    version: Literal[1] = 1
    hosts: dict[HostName, InventoryHost] = Field(min_length=1)

    @field_validator("hosts", mode="before")
    @classmethod
    def _empty_entries(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    def host_list(self) -> list[Host]:
        return [Host(name, dict(h.labels)) for name, h in sorted(self.hosts.items())]


def load_inventory(file: str) -> Inventory:
    """The inventory in ``file``; ``SpecError`` names each problem's line and path."""
    try:
        text = read_bounded(file).decode("utf-8")
    except (OSError, InputFileError, UnicodeDecodeError) as err:
        raise SpecError([SpecIssue(file, 1, "", f"cannot read the inventory: {err}")]) from err
    doc = load_yaml(text, file, env={})
    if doc.issues:
        raise SpecError(doc.issues)
    if not isinstance(doc.data, dict):
        raise SpecError([SpecIssue(file, 1, "", "an inventory is a mapping with 'hosts:'")])
    try:
        return Inventory.model_validate(doc.data)
    except ValidationError as err:
        raise SpecError([_issue(doc, e) for e in err.errors(include_url=False)]) from err


def _issue(doc: Document, error: Any) -> SpecIssue:
    loc = tuple(error["loc"])
    if loc and loc[-1] == "[key]":
        return doc.issue(
            loc[:-1],
            f"'{error.get('input')}' is not a host name (letters, digits, '.', '_' and '-')",
        )
    if error["type"] == "extra_forbidden" and len(loc) == 3:
        close = difflib.get_close_matches(str(loc[-1]), list(InventoryHost.model_fields), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "; valid keys: labels, address"
        issue = doc.issue(loc[:-1], f"unknown key '{loc[-1]}'{hint}")
        return SpecIssue(issue.file, doc.line_of(loc), issue.path, issue.message)
    return issue_of(doc, error)
