"""Read one YAML file into plain Python values, remembering the line of every spec path.

PyYAML's C parser composes the node tree; we build the values ourselves so that each
mapping key and list item keeps its line (for ``FILE:LINE: spec.path: message`` errors),
so that duplicate keys are errors rather than silently overwritten, and so that
``${VAR}`` / ``${VAR:-default}`` expansion happens where the line is still known (and the
text as written is kept, so that plans and errors can show ``${VAR}`` instead of a secret).

Values follow YAML 1.2's core schema, as compose reads them; a plain scalar that types as a
number, boolean or null keeps its written text too (``Plain``). What one file can make us
build is bounded: alias expansion (``MAX_ALIAS_NODES``) and nesting (``MAX_DEPTH``).
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
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_VAR = re.compile(r"\$(?:\$|\{([^}]*)\})")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Bounds on what one file may make us build: a 500-byte "billion laughs" of nested aliases
# expands to 10^9 nodes, and libyaml nests 1,000 levels, more than Python's recursion.
MAX_ALIAS_NODES = 100_000
MAX_DEPTH = 64
# What ${VAR} expansion may add to one file: `${BIG}` written 100,000 times would otherwise
# build gigabytes from a 1 MiB file.
MAX_EXPANSION = 1 << 20
# Tags compose gives a meaning to when files are merged; recorded (Document.tags), never
# typed: the value under them is built as if untagged.
MERGE_TAGS = ("!reset", "!override")


class _Yaml12Loader(_Loader):
    """PyYAML's parser with the YAML 1.2 core schema's implicit types, as compose reads
    files: booleans are only true/false, integers only decimal, 0o and 0x (so 0755 is
    755 and 12:30 is text), no timestamps; the merge key << is kept, as compose keeps it."""

    yaml_implicit_resolvers = {}  # noqa: RUF012 - PyYAML reads it from the class

    # PyYAML's resolve, without what this loader never has (path and wildcard resolvers):
    # called once per node by libyaml's composer, it was a tenth of a large spec's load.
    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            if implicit[0]:
                for tag, regexp in self.yaml_implicit_resolvers.get(value[:1], ()):
                    if regexp.match(value):
                        return str(tag)
            return _STR
        return _SEQ if kind is yaml.SequenceNode else _MAP

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass  # no path resolvers

    def ascend_resolver(self) -> None:
        pass


for _tag, _regexp, _first in (
    (_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)\Z", "tTfF"),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z", "-+0123456789"),
    (
        _FLOAT,
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z",
        "-+.0123456789",
    ),
    (_NULL, r"^(?:~|null|Null|NULL|)\Z", ["~", "n", "N", ""]),
    (_MERGE, r"^(?:<<)\Z", "<"),
):
    _Yaml12Loader.add_implicit_resolver(_tag, re.compile(_regexp), list(_first))


def _core_value(tag: str, text: str) -> Any:
    """A plain scalar's value under the YAML 1.2 core schema (its tag already resolved)."""
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return text.lower() == "true"
    if tag == _INT:
        if text.startswith(("0o", "0x")):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text, 10)
    lowered = text.lower()
    if lowered.endswith((".inf", ".nan")):
        return float(lowered.replace(".", ""))
    return float(text)


@dataclass(frozen=True)
class Plain:
    """A plain scalar that YAML types as a number, boolean or null, with the text written.

    The models take ``text`` where they want text (env, labels, command, driver_opts...)
    and ``value`` elsewhere, so that ``MODE: 0755`` stays ``0755`` and ``keep: {last: 3}``
    is a number.
    """

    text: str
    value: Any


def unwrap(data: Any, *, text: bool = False) -> Any:
    """``data`` with every ``Plain`` replaced by its text (``text``) or its value."""
    if isinstance(data, Plain):
        return data.text if text else data.value
    if isinstance(data, list):
        return [unwrap(item, text=text) for item in data]
    if isinstance(data, dict):
        return {key: unwrap(value, text=text) for key, value in data.items()}
    return data


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


@dataclass(frozen=True)
class Templated:
    """A scalar written with ``${VAR}``: the text as written, and the values that came from
    the environment (value -> ``${NAME}``), which plans and errors must never print."""

    written: str
    expanded: str
    values: Mapping[str, str]


@dataclass
class Document(Located):
    """One loaded file: its values, the line of each spec path, and problems found."""

    file: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    issues: list[SpecIssue] = field(default_factory=list)
    templated: dict[Loc, Templated] = field(default_factory=dict)
    # Values tagged with compose's merge tags (``!reset``, ``!override``): loc -> tag.
    tags: dict[Loc, str] = field(default_factory=dict)


def expand_vars(
    text: str,
    env: Mapping[str, str],
    used: dict[str, str] | None = None,
    budget: list[int] | None = None,
) -> tuple[str, list[str]]:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``${VAR-default}``; ``$$`` is a ``$``.

    Returns the text and the problems (unset variables without a default, bad syntax);
    ``used`` collects each value taken from ``env`` as value -> ``${NAME}``; ``budget``
    (one number, shared by a file's scalars) is how many characters values may still add.
    """
    problems: list[str] = []

    def one(match: re.Match[str]) -> str:
        body = match.group(1)
        if body is None:
            return "$"
        if budget is not None and budget[0] < 0:
            return ""
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
        if budget is not None:
            budget[0] -= len(value)
            if budget[0] < 0:
                if budget[0] + len(value) >= 0:  # said once
                    problems.append(f"variables expand to more than {MAX_EXPANSION} characters")
                return ""
        if used is not None and value:
            used.setdefault(value, f"${{{name}}}")
        return value

    return _VAR.sub(one, text), problems


class _Builder:
    def __init__(self, doc: Document, env: Mapping[str, str]) -> None:
        self.doc = doc
        self.env = env
        self.active: set[int] = set()
        self.seen: set[int] = set()
        self.expanded = 0  # nodes built a second time or more, through aliases
        self.replaying = 0  # > 0 while building an alias's copy
        self.sizes: dict[int, int] = {}
        self.budget = [MAX_EXPANSION]
        self.stopped = False

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        if self.stopped:
            return None
        if type(node) is yaml.ScalarNode:  # the most common node: no alias bookkeeping,
            return self.scalar(node, loc)  # an alias of a scalar builds one value
        if id(node) in self.seen and not self.replaying:
            # An alias: count what it expands to before building any of it, so that a
            # "billion laughs" is refused at once.
            self.expanded += self.size(node)
            if self.expanded > MAX_ALIAS_NODES:
                return self.stop(loc, f"YAML aliases expand to more than {MAX_ALIAS_NODES} values")
            self.replaying += 1
            try:
                return self.build(node, loc)
            finally:
                self.replaying -= 1
        self.seen.add(id(node))
        if node.tag in MERGE_TAGS:
            self.doc.tags[loc] = node.tag
        if isinstance(node, yaml.ScalarNode):  # a subclass, should one ever come
            return self.scalar(node, loc)
        if len(loc) >= MAX_DEPTH:
            return self.stop(loc, f"values nest more than {MAX_DEPTH} levels deep")
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

    def size(self, node: yaml.Node) -> int:
        """How many values ``node`` builds, aliases inside it expanded (memoized)."""
        known = self.sizes.get(id(node))
        if known is None:
            # While it is counted, a node that contains itself (``&r [1, *r]``) counts as
            # more than any alias may expand to: refused, never an endless count.
            self.sizes[id(node)] = MAX_ALIAS_NODES + 1
            if isinstance(node, yaml.SequenceNode):
                known = 1 + sum(self.size(item) for item in node.value)
            elif isinstance(node, yaml.MappingNode):
                known = 1 + sum(self.size(k) + self.size(v) for k, v in node.value)
            else:
                known = 1
            self.sizes[id(node)] = known
        return known

    def stop(self, loc: Loc, message: str) -> None:
        """Give up on the file: one issue (at the top of the value: the full path may be as
        long as the problem), and nothing more built."""
        self.doc.issues.append(self.doc.issue(loc[:2], message))
        self.stopped = True

    def scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        if node.tag in MERGE_TAGS:  # build and mapping call this directly for scalars
            self.doc.tags[loc] = node.tag
        text = str(node.value)
        if node.tag == _STR:
            if "$" in text:
                used: dict[str, str] = {}
                value, problems = expand_vars(text, self.env, used, self.budget)
                self.doc.issues.extend(self.doc.issue(loc, p) for p in problems)
                if "${" in text:
                    self.doc.templated[loc] = Templated(text, value, used)
                return value
            return text
        if node.tag in (_NULL, _BOOL, _INT, _FLOAT):
            try:
                value = _core_value(node.tag, text)
            except ValueError:  # an integer of over 4,300 digits: no number, its text
                return Plain(text, text)
            return Plain(text, value) if node.style in (None, "") else value
        return text  # other tags stay text, as written

    def mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, int] = {}
        lines = self.doc.lines
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
            here = (*loc, key)
            lines[here] = line
            if type(value_node) is yaml.ScalarNode and not self.stopped:  # no call to build
                out[key] = self.scalar(value_node, here)
            else:
                out[key] = self.build(value_node, here)
        return out


def load_yaml(text: str, file: str, env: Mapping[str, str] | None = None) -> Document:
    """Parse ``text`` (named ``file`` in messages); never raises on bad input."""
    doc = Document(file=file, data=None)
    try:
        node = yaml.compose(text, Loader=_Yaml12Loader)
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
    except RecursionError:  # the parser recurses per level: thousands of "[" end here
        doc.issues.append(SpecIssue(file, 1, "", f"values nest more than {MAX_DEPTH} levels deep"))
        return doc
    if node is None:
        return doc
    # A plain dict: os.environ decodes (and the value is hashed) anew on every lookup.
    builder = _Builder(doc, dict(os.environ if env is None else env))
    data = builder.build(node, ())
    doc.data = None if builder.stopped else data
    return doc
