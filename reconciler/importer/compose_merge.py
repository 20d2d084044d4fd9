"""Compose files merged as ``docker compose -f a -f b`` merges them.

The rules are the compose specification's "merge" section as compose-go's ``override``
package applies them:

- a mapping merges key by key (an ``x-`` key is replaced whole); a later scalar wins, a
  later ``null`` leaves the earlier value;
- a sequence is appended to, except where compose keeps one entry per unique key (the
  later entry replaces the earlier one in its place): ``volumes``, ``secrets`` and
  ``configs`` by target, ``ports`` by (ip, published, target, protocol), ``expose``,
  ``dns``, ``tmpfs``, ``env_file``, ``cap_add``/``cap_drop``, ``profiles``, ``links``,
  network ``aliases`` by value;
- ``environment``, ``labels``, ``annotations``, ``sysctls``, ``build.args`` (and the
  top-level volumes' and networks' labels) merge per key across list and map forms;
- ``depends_on`` and a service's ``networks`` merge per key across list and map forms,
  ``build`` across its string and mapping forms; ``logging`` merges only with the same
  driver;
- ``command``, ``entrypoint``, ``healthcheck.test`` and ``ulimits.*`` are replaced;
- ``!reset`` removes a key from what the earlier files made, ``!override`` replaces it.

Each merged value keeps the file and line it came from (``Origins``), so that messages
about it name the right file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from reconciler.errors import SpecIssue
from reconciler.spec.yamlload import Loc, Plain, format_loc

Origin = tuple[str, int]
Origins = dict[Loc, Origin]
Pattern = tuple[str, ...]

_REPLACED: tuple[Pattern, ...] = (
    ("services", "*", "command"),
    ("services", "*", "entrypoint"),
    ("services", "*", "healthcheck", "test"),
    ("services", "*", "ulimits", "*"),
)
_PER_KEY: tuple[Pattern, ...] = (
    ("services", "*", "environment"),
    ("services", "*", "labels"),
    ("services", "*", "annotations"),
    ("services", "*", "sysctls"),
    ("services", "*", "build", "args"),
    ("services", "*", "build", "labels"),
    ("services", "*", "deploy", "labels"),
    ("volumes", "*", "labels"),
    ("networks", "*", "labels"),
)
_AS_MAPPING: dict[Pattern, Callable[[Any], Any]] = {
    ("services", "*", "depends_on"): lambda _: {
        "condition": "service_started",
        "required": True,
    },
    ("services", "*", "networks"): lambda _: None,
}


def _target(item: Any) -> str:
    if isinstance(item, dict):
        return _key(item.get("target"))
    parts = _key(item).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _port(item: Any) -> str:
    if isinstance(item, dict):
        host = _key(item.get("host_ip")) or "0.0.0.0"
        proto = _key(item.get("protocol")) or "tcp"
        return f"{host}:{_key(item.get('published'))}:{_key(item.get('target'))}/{proto}"
    return _key(item)


def _mount(default: str) -> Callable[[Any], str]:
    def index(item: Any) -> str:
        if isinstance(item, dict):
            if item.get("target") is not None:
                return _key(item["target"])
            return f"{default}/{_key(item.get('source'))}"
        return f"{default}/{_key(item)}"

    return index


def _env_file(item: Any) -> str:
    return _key(item.get("path")) if isinstance(item, dict) else _key(item)


def _before_equals(item: Any) -> str:
    return _key(item).partition("=")[0]


_UNIQUE: dict[Pattern, Callable[[Any], str]] = {
    ("services", "*", "volumes"): _target,
    ("services", "*", "devices"): _target,
    ("services", "*", "ports"): _port,
    ("services", "*", "secrets"): _mount("/run/secrets"),
    ("services", "*", "configs"): _mount(""),
    ("services", "*", "expose"): lambda item: _key(item),
    ("services", "*", "env_file"): _env_file,
    ("services", "*", "dns"): _before_equals,
    ("services", "*", "dns_opt"): _before_equals,
    ("services", "*", "dns_search"): _before_equals,
    ("services", "*", "tmpfs"): _before_equals,
    ("services", "*", "cap_add"): _before_equals,
    ("services", "*", "cap_drop"): _before_equals,
    ("services", "*", "profiles"): _before_equals,
    ("services", "*", "links"): _before_equals,
    ("services", "*", "extra_hosts"): _before_equals,
    ("services", "*", "networks", "*", "aliases"): _before_equals,
}
# Written either as one string or as a list of them.
_STRING_OR_LIST: tuple[Pattern, ...] = tuple(
    ("services", "*", key) for key in ("dns", "dns_opt", "dns_search", "tmpfs", "env_file")
)


def _key(value: Any) -> str:
    if isinstance(value, Plain):
        return value.text
    return "" if value is None else str(value)


def _kind(value: Any) -> str:
    return "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, list) else "a value"  # fmt: skip


def _other_driver(base: dict[str, Any], over: dict[str, Any]) -> bool:
    """logging options merge only when both files name the same driver (or one none)."""
    if "driver" not in base or "driver" not in over:
        return False
    return _key(base["driver"]) != _key(over["driver"])


def _matches(loc: Loc, pattern: Pattern) -> bool:
    return len(loc) == len(pattern) and all(
        p == "*" or p == part for part, p in zip(loc, pattern, strict=True)
    )


def _find(loc: Loc, patterns: Any) -> Any:
    for pattern in patterns:
        if _matches(loc, pattern):
            return pattern
    return None


def subpaths(value: Any) -> Iterator[Loc]:
    """Every path inside ``value`` (itself first), relative to it."""
    yield ()
    if isinstance(value, dict):
        for key, item in value.items():
            for sub in subpaths(item):
                yield (key, *sub)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for sub in subpaths(item):
                yield (index, *sub)


class Merger:
    """Merges one file (``over``) into what the earlier files made (``base``)."""

    def __init__(self, base_origins: Origins, over_origins: Origins) -> None:
        self.base_origins = base_origins
        self.over_origins = over_origins
        self.origins: Origins = {}
        self.issues: list[SpecIssue] = []

    # -- where values came from -----------------------------------------------------------
    def carry(self, value: Any, origins: Origins, src: Loc, dst: Loc) -> Any:
        """``value`` moved from ``src`` (in ``origins``) to ``dst`` of the result."""
        for sub in subpaths(value):
            found = origins.get((*src, *sub))
            if found is not None:
                self.origins[(*dst, *sub)] = found
        return value

    def mark(self, loc: Loc) -> None:
        found = self.over_origins.get(loc) or self.base_origins.get(loc)
        if found is not None:
            self.origins[loc] = found

    # -- the rules ------------------------------------------------------------------------
    def merge(self, base: Any, over: Any, loc: Loc) -> Any:
        self.mark(loc)
        if _find(loc, _REPLACED):
            return self.carry(over, self.over_origins, loc, loc)
        if _find(loc, _PER_KEY):
            return self.per_key(base, over, loc)
        pattern = _find(loc, _AS_MAPPING)
        if pattern is not None:
            default = _AS_MAPPING[pattern]
            return self.mapping(
                self.as_mapping(base, self.base_origins, loc, default),
                self.as_mapping(over, self.over_origins, loc, default),
                loc,
            )
        if loc[:1] == ("services",) and loc[2:] == ("build",):
            return self.mapping(self.as_build(base), self.as_build(over), loc)
        if over is None:
            return self.carry(base, self.base_origins, loc, loc)
        if base is None:
            return self.carry(over, self.over_origins, loc, loc)
        if loc[-1:] != ("extra_hosts",) and isinstance(base, dict) != isinstance(over, dict):
            return self.cannot(loc, base, over)
        if _find(loc, _UNIQUE) or _find(loc, _STRING_OR_LIST):
            return self.sequence(base, over, loc)
        if isinstance(base, dict):
            if loc[:1] == ("services",) and loc[2:] == ("logging",) and _other_driver(base, over):
                return self.carry(over, self.over_origins, loc, loc)
            return self.mapping(base, over, loc)
        if isinstance(base, list):
            if not isinstance(over, list):
                return self.cannot(loc, base, over)
            return self.sequence(base, over, loc)
        return self.carry(over, self.over_origins, loc, loc)

    def cannot(self, loc: Loc, base: Any, over: Any) -> Any:
        file, line = self.over_origins.get(loc) or ("", 1)
        message = f"cannot merge {_kind(over)} into {_kind(base)} of an earlier file"
        self.issues.append(SpecIssue(file, line, format_loc(loc), message))
        return self.carry(over, self.over_origins, loc, loc)

    def mapping(self, base: dict[str, Any], over: dict[str, Any], loc: Loc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in base.items():
            if key in over and not str(key).startswith("x-"):
                out[key] = self.merge(value, over[key], (*loc, key))
            elif key not in over:
                out[key] = self.carry(value, self.base_origins, (*loc, key), (*loc, key))
        for key, value in over.items():
            if key not in base or str(key).startswith("x-"):
                out[key] = self.carry(value, self.over_origins, (*loc, key), (*loc, key))
        return out

    @staticmethod
    def as_mapping(
        value: Any, origins: Origins, loc: Loc, default: Callable[[Any], Any]
    ) -> dict[str, Any]:
        """A list of names as the mapping it stands for (each name keeps its line)."""
        if isinstance(value, list):
            out = {}
            for index, item in enumerate(value):
                if (*loc, index) in origins:
                    origins[(*loc, _key(item))] = origins[(*loc, index)]
                out[_key(item)] = default(item)
            return out
        return value if isinstance(value, dict) else {}

    @staticmethod
    def as_build(value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        return {} if value is None else {"context": value}

    def items(self, value: Any, origins: Origins, loc: Loc) -> list[tuple[Any, Origins, Loc]]:
        """A sequence's entries with where each lies (one string counts as a list of it)."""
        if isinstance(value, list):
            return [(item, origins, (*loc, index)) for index, item in enumerate(value)]
        if isinstance(value, dict):  # extra_hosts written as a mapping
            return [(f"{_key(k)}:{_key(v)}", origins, (*loc, k)) for k, v in value.items()]
        return [] if value is None else [(value, origins, loc)]

    def sequence(self, base: Any, over: Any, loc: Loc) -> list[Any]:
        entries = self.items(base, self.base_origins, loc)
        entries += self.items(over, self.over_origins, loc)
        pattern = _find(loc, _UNIQUE)
        return self.place(unique(entries, _UNIQUE[pattern]) if pattern else entries, loc)

    def place(self, entries: list[tuple[Any, Origins, Loc]], loc: Loc) -> list[Any]:
        out = []
        for index, (item, origins, src) in enumerate(entries):
            out.append(self.carry(item, origins, src, (*loc, index)))
        return out

    def per_key(self, base: Any, over: Any, loc: Loc) -> dict[str, Any]:
        """KEY=VALUE entries (list or map form) merged per key; ``KEY`` alone is None."""
        out: dict[str, Any] = {}
        for value, origins in ((base, self.base_origins), (over, self.over_origins)):
            for key, item, src in key_values(value, loc):
                out[key] = item
                found = origins.get(src)
                if found is not None:
                    self.origins[(*loc, key)] = found
        return out


def key_values(value: Any, loc: Loc) -> Iterator[tuple[str, Any, Loc]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key), item, (*loc, key)
    elif isinstance(value, list):
        for index, entry in enumerate(value):
            key, sep, rest = _key(entry).partition("=")
            # A value written with ${VAR} stays so (the entry's type carries that).
            item = type(entry)(rest) if sep and isinstance(entry, str) else rest if sep else None
            yield key, item, (*loc, index)


def unique(
    entries: list[tuple[Any, Origins, Loc]], index: Callable[[Any], str]
) -> list[tuple[Any, Origins, Loc]]:
    """One entry per key: a later entry takes the place of the first with its key."""
    out: list[tuple[Any, Origins, Loc]] = []
    seen: dict[str, int] = {}
    for entry in entries:
        key = index(entry[0])
        if key in seen:
            out[seen[key]] = entry
        else:
            seen[key] = len(out)
            out.append(entry)
    return out


def normalize(data: Any, origins: Origins) -> tuple[Any, Origins]:
    """One file on its own: its unique-keyed lists made unique, as compose does."""
    merger = Merger({}, origins)

    def walk(value: Any, loc: Loc) -> Any:
        merger.mark(loc)
        pattern = _find(loc, _UNIQUE)
        if pattern is not None and isinstance(value, list):
            entries = unique(merger.items(value, origins, loc), _UNIQUE[pattern])
            return merger.place(entries, loc)
        if isinstance(value, dict):
            return {key: walk(item, (*loc, key)) for key, item in value.items()}
        return merger.carry(value, origins, loc, loc)

    return walk(data, ()), merger.origins


def drop(data: Any, loc: Loc) -> None:
    """Remove the mapping key at ``loc`` (compose removes no list entries by tag)."""
    for part in loc[:-1]:
        if not isinstance(data, dict) or part not in data:
            return
        data = data[part]
    if isinstance(data, dict):
        data.pop(loc[-1], None)


def merge_file(
    base: Any, base_origins: Origins, over: Any, over_origins: Origins, tags: dict[Loc, str]
) -> tuple[Any, Origins, list[SpecIssue]]:
    """``over`` merged into ``base`` (both mappings); its ``!reset`` and ``!override``
    applied first: each tagged key is removed from ``base``, and a reset one from ``over``."""
    for loc, tag in sorted(tags.items(), key=lambda item: len(item[0]), reverse=True):
        if not loc or not isinstance(loc[-1], str):
            continue
        drop(base, loc)
        if tag == "!reset":
            drop(over, loc)
    over, over_origins = normalize(over, over_origins)
    merger = Merger(base_origins, over_origins)
    merged = merger.merge(base, over, ())
    return merged, merger.origins, merger.issues
