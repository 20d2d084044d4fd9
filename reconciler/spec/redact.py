"""Values that came from the environment, and how to show text without them.

A spec arrives through a pull request and ``dsr diff --format markdown`` runs in CI with
the CI's secrets in its environment: a plan or an error that printed an expanded
``${VAR}`` would post the secret in a public comment. The loader records every templated
scalar (``yamlload.Templated``); a ``Redaction`` turns text holding their values back into
what was written.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from pydantic import BaseModel

from reconciler.escape import escape_controls
from reconciler.spec.yamlload import Templated

# Below this length a value taken from the environment is only replaced where it is a whole
# text (a label value of "80"); inside longer texts it would replace ordinary words and
# numbers. Such values are shown through the display copy (``Desired.shown``) only.
MIN_INNER = 4
_WORD = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Redaction:
    """Expanded scalar -> written text, and environment value -> ``${NAME}``."""

    exact: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, templated: Iterable[Templated]) -> Redaction:
        exact: dict[str, str] = {}
        values: dict[str, str] = {}
        for item in templated:
            if item.expanded and item.expanded != item.written:
                for form in _forms(item.expanded):
                    exact.setdefault(form, item.written)
            for value, name in item.values.items():
                for form in _forms(value):
                    values.setdefault(form, name)
        return cls(exact, values)

    def __bool__(self) -> bool:
        return bool(self.exact or self.values)

    def merge(self, other: Redaction) -> Redaction:
        return Redaction({**other.exact, **self.exact}, {**other.values, **self.values})

    def text(self, text: str, min_inner: int = MIN_INNER) -> str:
        """``text`` with every expanded value written as in the spec (inside longer text,
        values of at least ``min_inner`` characters)."""
        if text in self.exact:
            return self.exact[text]
        for value in sorted(self.exact, key=len, reverse=True):
            if len(value) >= min_inner and value in text:
                text = text.replace(value, self.exact[value])
        for value in sorted(self.values, key=len, reverse=True):
            if len(value) >= min_inner and value in text:
                text = text.replace(value, self.values[value])
        return text

    @functools.cached_property
    def _short(self) -> tuple[dict[str, str], re.Pattern[str] | None]:
        """Values of ``MIN_TOKEN`` to ``MIN_ENV - 1`` characters (dsr's own words aside):
        those made of word characters only, looked up token by token in a dict (linear in
        the text, however many values: a spec with 7,000 env values must not build one
        regex of 7,000 branches), and a small regex for the others (``pa-5``)."""
        words: dict[str, str] = {}
        other: dict[str, str] = {}
        for source in (self.values, self.exact):
            for value, shown in source.items():
                if MIN_TOKEN <= len(value) < MIN_ENV and value.lower() not in OWN_WORDS:
                    (words if _WORD.fullmatch(value) else other).setdefault(value, shown)
        pattern = None
        if other:
            alternatives = "|".join(re.escape(v) for v in sorted(other, key=len, reverse=True))
            pattern = re.compile(rf"(?<![A-Za-z0-9_])(?:{alternatives})(?![A-Za-z0-9_])")
        return {**other, **words}, pattern

    def tokens(self, text: str) -> str:
        """``text`` with every value of ``MIN_TOKEN`` to ``MIN_ENV - 1`` characters that is
        a whole token there written as in the spec."""
        table, pattern = self._short
        if not table:
            return text
        if pattern is not None:
            text = pattern.sub(lambda m: table[m.group(0)], text)
        hits = table.keys() & set(_WORD.findall(text))  # C loops; most texts have none
        if not hits:
            return text
        alternatives = "|".join(re.escape(v) for v in sorted(hits, key=len, reverse=True))
        found = re.compile(rf"(?<![A-Za-z0-9_])(?:{alternatives})(?![A-Za-z0-9_])")
        return found.sub(lambda m: table[m.group(0)], text)

    def model(self, model: BaseModel) -> BaseModel:
        """A copy of ``model`` (nested models too) whose texts show what was written."""
        update = {name: self._value(getattr(model, name)) for name in type(model).model_fields}
        return model.model_copy(update=update)

    def _value(self, value: object) -> object:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, BaseModel):
            return self.model(value)
        if isinstance(value, list):
            return [self._value(v) for v in value]
        if isinstance(value, dict):
            return {k: self._value(v) for k, v in value.items()}
        return value


def _forms(value: str) -> set[str]:
    """``value`` as messages may quote it: as is, inside a ``repr`` (a backslash doubled,
    a newline as \\n), inside JSON, with control characters escaped, percent-encoded as
    in a URL, and as a path after normalisation (``/a//b/`` is printed ``/a/b``)."""
    forms = {
        value,
        repr(value)[1:-1],
        escape_controls(value),
        json.dumps(value)[1:-1],
        html.escape(value),  # the status page
    }
    # As a URL carries it: an S3 error quotes the request's URL, whose path and query hold
    # the bucket's prefix (or an endpoint's path) percent-encoded, and an AWS secret key
    # has "/", "+" and "=" in it.
    for safe in ("", "/", "/~", "-_.~"):
        forms |= {urllib.parse.quote(value, safe=safe), urllib.parse.quote_plus(value, safe=safe)}
    if "/" in value and "\0" not in value:
        normal = os.path.normpath(value)
        forms |= {normal, "/" + normal.lstrip("/") if value.startswith("/") else normal}
    return {f for f in forms if f}


# -- the edge -------------------------------------------------------------------------------
# Every spec loaded in this process adds what it knows (``remember``); every string that
# leaves dsr (stdout, stderr, logs, metrics labels) passes ``scrub``. One step, at the
# edge: a path that forgot the display copy still prints no secret, whichever spec (OLD
# or NEW of a diff) it came from.

# At the edge (the rule, and why):
# - a value of MIN_ENV (8) characters or more is replaced wherever it occurs, even inside
#   a longer word: a secret is usually long, and a long value is rarely an ordinary word;
# - a value of MIN_TOKEN (4) to 7 characters is replaced where it is a whole token (no
#   letter, digit or ``_`` on either side): a short password or a port-like id still goes,
#   but not every "test" inside "latest" nor every "other" inside "container:others";
#   dsr's own vocabulary (``OWN_WORDS``: actions, statuses, log levels, kinds, JSON
#   literals) is never replaced, or one ``MODE=create`` would rewrite every plan's actions
#   and JSON consumers would break; such a word is no secret, dsr prints it anyway;
# - a value of 1 to 3 characters is replaced only where it is a whole write (one line the
#   CLI prints, one log field): a secret that short is guessed in a second whatever dsr
#   hides, and replacing "1" or "on" inside text would make every number unreadable;
# - a literal ``env`` value (written in the spec, not taken from the environment) shorter
#   than MIN_ENV without a letter (``PORT: "8080"``, ``WORKERS: "16"``) is not hidden at
#   all: it is in the spec for all to read, and every 8080 of a plan would go.
# The display copies (``Desired.shown``) keep values of 4+ characters out of plans and
# reasons before they reach the edge; the edge is the net for what forgot them.
MIN_ENV = 8
MIN_TOKEN = 4
OWN_WORDS = frozenset(
    [
        "info",
        "warning",
        "error",
        "debug",
        "critical",
        "true",
        "false",
        "null",
        "none",
        "create",
        "delete",
        "update",
        "replace",
        "remove",
        "adopt",
        "keep",
        "noop",
        "skip",
        "plan",
        "apply",
        "diff",
        "text",
        "json",
        "markdown",
        "yaml",
        "volume",
        "volumes",
        "container",
        "containers",
        "network",
        "networks",
        "image",
        "images",
        "service",
        "services",
        "backup",
        "backups",
        "local",
        "bind",
        "tmpfs",
        "latest",
        "complete",
        "damaged",
        "drift",
        "status",
        "changed",
        "unchanged",
        "running",
        "stopped",
        "exited",
        "created",
        "restart",
        "always",
        "never",
        "ok",
    ]
)
_EDGE: list[Redaction] = [Redaction()]
_LOCK = threading.Lock()


def remember(redaction: Redaction, env: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """Add ``redaction`` and the ``env`` values of a spec's containers (name -> env) to
    what ``scrub`` hides."""
    values: dict[str, str] = {}
    for owner, variables in (env or {}).items():
        for name, value in variables.items():
            if len(value) < MIN_ENV and not any(c.isalpha() for c in value):
                continue  # a literal PORT: "8080" is no secret, and every 8080 would go
            for form in _forms(value):
                values.setdefault(form, f"(env {name} of {owner})")
    with _LOCK:
        _EDGE[0] = _EDGE[0].merge(redaction).merge(Redaction({}, values))


def scrub(text: str) -> str:
    """``text`` with every value ``remember`` was told of written as in the spec (the rule
    above)."""
    edge = _EDGE[0]
    if not edge or not text:
        return text
    core = text.strip()
    whole = edge.exact.get(core) or edge.values.get(core)
    if whole is not None:  # the whole write (or line), whatever its length
        return text.replace(core, whole, 1)
    return edge.tokens(edge.text(text, MIN_ENV))


def forget() -> None:
    """Forget every value (tests, and a daemon before it loads its spec again)."""
    with _LOCK:
        _EDGE[0] = Redaction()


class Scrubbed:
    """A text stream whose every write passes ``scrub`` (stdout and stderr of a command)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(scrub(text) if isinstance(text, str) else text)
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
