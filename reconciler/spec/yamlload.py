"""Read one YAML file into plain Python values, remembering the line of every spec path.

PyYAML's C parser composes the node tree; we build the values ourselves so that each
mapping key and list item keeps its line (for ``FILE:LINE: spec.path: message`` errors),
so that duplicate keys are errors rather than silently overwritten, and so that
``${VAR}`` / ``${VAR:-default}`` expansion happens where the line is still known.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

try:  # the C parser is much faster; fall back quietly where libyaml is missing
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

from reconciler.errors import SpecIssue

Loc = tuple[str | int, ...]

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
# Scalars whose Python form we build with PyYAML's own constructors.
_CONSTRUCTED = {
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_VAR = re.compile(r"\$(?:\$|\{([^}]*)\})")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def format_loc(loc: Loc) -> str:
    """``('containers', 'web1', 'mounts', 0)`` -> ``containers.web1.mounts[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


class Located:
    """Read from one spec file: knows the line of each spec path it holds."""

    file: str
    lines: Mapping[Loc, int]

    def line_of(self, loc: Loc) -> int:
        """The line of ``loc``, or of its nearest ancestor that has one."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return 1

    def issue(self, loc: Loc, message: str) -> SpecIssue:
        return SpecIssue(self.file, self.line_of(loc), format_loc(loc), message)


@dataclass
class Document(Located):
    """One loaded file: its values, the line of each spec path, and problems found."""

    file: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    issues: list[SpecIssue] = field(default_factory=list)


def expand_vars(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``${VAR-default}``; ``$$`` is a ``$``.

    Returns the text and the problems (unset variables without a default, bad syntax).
    """
    problems: list[str] = []

    def one(match: re.Match[str]) -> str:
        body = match.group(1)
        if body is None:
            return "$"
        name, op, default = body, "", ""
        for candidate in (":-", "-"):
            if candidate in body:
                name, default = body.split(candidate, 1)
                op = candidate
                break
        if not _VAR_NAME.fullmatch(name):
            problems.append(f"invalid variable reference '${{{body}}}'")
            return match.group(0)
        value = env.get(name)
        if op == ":-" and not value:
            return default
        if op == "-" and value is None:
            return default
        if value is None:
            problems.append(f"variable {name} is not set and has no default (use ${{{name}:-…}})")
            return ""
        return value

    return _VAR.sub(one, text), problems


class _Builder:
    def __init__(self, doc: Document, env: Mapping[str, str]) -> None:
        self.doc = doc
        self.env = env
        self.constructor = yaml.constructor.SafeConstructor()
        self.active: set[int] = set()

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, loc)
        if id(node) in self.active:
            self.doc.issues.append(self.doc.issue(loc, "recursive YAML alias"))
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                out: list[Any] = []
                for index, item in enumerate(node.value):
                    self.doc.lines[(*loc, index)] = item.start_mark.line + 1
                    out.append(self.build(item, (*loc, index)))
                return out
            assert isinstance(node, yaml.MappingNode)
            return self.mapping(node, loc)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        if node.tag == _STR:
            value = str(node.value)
            if "$" in value:
                value, problems = expand_vars(value, self.env)
                self.doc.issues.extend(self.doc.issue(loc, p) for p in problems)
            return value
        if node.tag in _CONSTRUCTED:
            return self.constructor.construct_object(node)
        return str(node.value)  # timestamps and other tags stay text, as written

    def mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged = self.build(value_node, loc)
                for source in merged if isinstance(merged, list) else [merged]:
                    if isinstance(source, dict):
                        for key, value in source.items():
                            out.setdefault(key, value)
                continue
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.doc.issues.append(
                    SpecIssue(
                        self.doc.file,
                        line,
                        format_loc(loc),
                        "a key must be plain text, not a list or a mapping",
                    )
                )
                continue
            key = str(key_node.value)
            if key in seen:  # reported at the second one: the first has its line already
                self.doc.issues.append(
                    SpecIssue(
                        self.doc.file,
                        line,
                        format_loc((*loc, key)),
                        f"key '{key}' is defined twice (first at line {seen[key]})",
                    )
                )
            seen[key] = line
            self.doc.lines[(*loc, key)] = line
            out[key] = self.build(value_node, (*loc, key))
        return out


def load_yaml(text: str, file: str, env: Mapping[str, str] | None = None) -> Document:
    """Parse ``text`` (named ``file`` in messages); never raises on bad input."""
    doc = Document(file=file, data=None)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = err.problem or err.context or "invalid YAML"
        message = f"YAML syntax error: {what} (column {column})"
        start = err.context_mark
        if err.problem and err.context and start and start.line + 1 != line:
            # Where the unclosed bracket or quote began, often far above the problem.
            message += f", {err.context} at line {start.line + 1}, column {start.column + 1}"
        doc.issues.append(SpecIssue(file, line, "", message))
        return doc
    except yaml.reader.ReaderError as err:  # control characters and the like
        line = text.count("\n", 0, err.position) + 1
        what = f"character #x{err.character:04x}" if isinstance(err.character, int) else "text"
        doc.issues.append(SpecIssue(file, line, "", f"YAML error: {err.reason} ({what})"))
        return doc
    except yaml.YAMLError as err:
        doc.issues.append(SpecIssue(file, 1, "", f"YAML error: {' '.join(str(err).split())}"))
        return doc
    if node is None:
        return doc
    doc.data = _Builder(doc, os.environ if env is None else env).build(node, ())
    return doc
