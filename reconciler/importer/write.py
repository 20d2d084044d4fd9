"""An ``Imported`` as a spec file: YAML, with what was not carried over as comments."""

from __future__ import annotations

import os
from typing import Any

import yaml

from reconciler.escape import escape_controls
from reconciler.files import write_text
from reconciler.importer.model import Imported


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the order written, long strings kept on one line."""


def _dict(dumper: yaml.SafeDumper, value: dict[str, Any]) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items())


_Dumper.add_representer(dict, _dict)


def _flow_lists(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    # Lists of scalars read best in one line ([a, b]); lists of mappings (mounts) in blocks.
    flow = all(not isinstance(v, dict | list) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(list, _flow_lists)


def render(imported: Imported) -> str:
    """The spec file's text."""
    lines = [f"# Written by dsr import from {escape_controls(imported.source)}."]
    lines.append("# adopt: true takes over the objects of these names where they run.")
    if imported.notes:
        lines.append("#")
        lines.append("# Not carried over (dsr has no equivalent; review before applying):")
        lines += [f"#   {escape_controls(str(note))}" for note in imported.notes]
    body = yaml.dump(
        imported.document(),
        Dumper=_Dumper,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
        width=1 << 16,
    )
    return "\n".join(lines) + "\n" + body


def write(imported: Imported, folder: str) -> str:
    """Write the spec as ``FOLDER/<project>.yaml``; returns its path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{imported.project}.yaml")
    write_text(path, render(imported))
    return path
