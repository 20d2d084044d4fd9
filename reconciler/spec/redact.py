"""Values that came from the environment, and how to show text without them.

A spec arrives through a pull request and ``dsr diff --format markdown`` runs in CI with
the CI's secrets in its environment: a plan or an error that printed an expanded
``${VAR}`` would post the secret in a public comment. The loader records every templated
scalar (``yamlload.Templated``); a ``Redaction`` turns text holding their values back into
what was written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel

from reconciler.escape import escape_controls
from reconciler.spec.yamlload import Templated

# Below this length a value taken from the environment is only replaced where it is a whole
# text (a label value of "80"); inside longer texts it would replace ordinary words and
# numbers. Such values are shown through the display copy (``Desired.shown``) only.
MIN_INNER = 4


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

    def text(self, text: str) -> str:
        """``text`` with every expanded value written as in the spec."""
        if text in self.exact:
            return self.exact[text]
        for value in sorted(self.exact, key=len, reverse=True):
            if len(value) >= MIN_INNER and value in text:
                text = text.replace(value, self.exact[value])
        for value in sorted(self.values, key=len, reverse=True):
            if len(value) >= MIN_INNER and value in text:
                text = text.replace(value, self.values[value])
        return text

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
    a newline as \\n) and with control characters escaped."""
    return {value, repr(value)[1:-1], escape_controls(value)}
