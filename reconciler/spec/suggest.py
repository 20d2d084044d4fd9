""" "Did you mean" for names, in time linear in the number of names and of questions.

``difflib.get_close_matches`` compares the question with every name; a thousand misspelled
references against a thousand volumes made a million comparisons (over 20 s). Above a
few dozen names, candidates come from an index of every name with one character deleted,
which finds every name one edit (or one swap of neighbours) away; ``difflib`` then only
ranks those few.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Below this many names a full difflib scan is cheap and finds more distant matches.
SMALL = 50
# Names longer than this are not indexed (they would cost one entry per character).
LONGEST = 128


class Suggester:
    """The closest known name to a misspelled one, or ``None``; answers are cached."""

    def __init__(self, names: Iterable[str]) -> None:
        self.known = frozenset(names)
        self.names = sorted(self.known)
        self.index: dict[str, set[str]] | None = None
        self.cache: dict[str, str | None] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.known

    def closest(self, word: str, *, excluding: str | None = None) -> str | None:
        key = f"{word}\0{excluding or ''}"
        if key not in self.cache:
            self.cache[key] = self._closest(word, excluding)
        return self.cache[key]

    def _closest(self, word: str, excluding: str | None) -> str | None:
        candidates = self.names if len(self.names) <= SMALL else self._candidates(word)
        pool = [name for name in candidates if name != excluding]
        found = difflib.get_close_matches(word, pool, n=1)
        return found[0] if found else None

    def _candidates(self, word: str) -> list[str]:
        if self.index is None:
            self.index = {}
            for name in self.names:
                if len(name) <= LONGEST:
                    for variant in _deletions(name):
                        self.index.setdefault(variant, set()).add(name)
        if len(word) > LONGEST:
            return []
        found: set[str] = set()
        for variant in _deletions(word):
            found |= self.index.get(variant, set())
        return sorted(found)


def _deletions(word: str) -> set[str]:
    """``word`` and every string made by deleting one of its characters."""
    return {word, *(word[:i] + word[i + 1 :] for i in range(len(word)))}
