"""``.dockerignore`` patterns matched in linear time.

docker-py translates a pattern into a regular expression (``**`` becomes ``(.*/)?``), and
Python's backtracking engine takes exponential time on ``**/**/**/**/**/**/**/**/zzz``:
over a minute for one path. This matcher reads the same patterns with the same meaning
(docker-py's ``fnmatch``: case-folded, ``*`` and ``?`` never cross ``/``, ``**`` any
number of folders, ``[...]`` a character class) and runs them as a set of positions in
the pattern, one step per character of the path: at most ``len(pattern)`` positions per
step, so one match costs O(len(pattern) × len(path)) whatever the pattern. A walk of a
context then costs O(paths × patterns × pattern length × path length), all bounded by the
1 MiB ``.dockerignore`` dsr reads and the context itself; and the matches of one context
together may take at most ``MAX_STEPS`` steps (``Budget``), else ``TooCostly``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Token kinds: a literal character, "?" (one character but "/"), "*" (any run without
# "/"), a class, "any" (any run at all), and "skip" (an optional group of the next tokens).
LIT, ONE, STAR, CLASS, ANY, SKIP = range(6)


class BadPattern(ValueError):
    """A pattern Docker would refuse too (a malformed character class)."""


@dataclass(frozen=True)
class Token:
    kind: int
    char: str = ""
    rx: re.Pattern[str] | None = None
    skip: int = 0


def _tokens(pattern: str) -> list[Token]:
    """docker-py's ``translate``, token by token."""
    out: list[Token] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                if i >= n:
                    out.append(Token(ANY))  # "**" at the end: anything
                else:  # "**" inside: nothing, or anything that ends with "/"
                    out += [Token(SKIP, skip=3), Token(ANY), Token(LIT, "/")]
            else:
                out.append(Token(STAR))
        elif c == "?":
            out.append(Token(ONE))
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(Token(LIT, "["))
                continue
            stuff = pattern[i:j].replace("\\", "\\\\")
            i = j + 1
            if stuff[0] == "!":
                stuff = "^" + stuff[1:]
            elif stuff[0] == "^":
                stuff = "\\" + stuff
            try:
                out.append(Token(CLASS, rx=re.compile(f"[{stuff}]")))
            except re.error as err:
                raise BadPattern(f"{pattern!r}: {err}") from err
        else:
            out.append(Token(LIT, c))
    return out


# The work all matches of one context may take, in steps (one step: one live pattern
# position, one character of a path): ``MAX_STEPS`` at once, plus ``STEPS_PER_MATCH`` more
# for each match made. A sane pattern costs a few steps per character of a path and most
# fail at their first characters (``**/*.pyc`` against a 50-character path: about 150), so
# a real context never comes near; a hostile ``*a*a*a…`` of 1,000 tokens against
# 4,000-character paths costs 4 million per path and stops at once with ``TooCostly``
# (well under a second of work).
MAX_STEPS = 2_000_000
STEPS_PER_MATCH = 1_000


class TooCostly(ValueError):
    """The patterns cost more than their budget to match against one context."""


class Budget:
    """Steps left for the matches of one context, shared by its patterns."""

    def __init__(self, steps: int = MAX_STEPS) -> None:
        self.left = steps

    def spend(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise TooCostly(
                f"matching its patterns against the context takes more than {MAX_STEPS:,} "
                f"steps plus {STEPS_PER_MATCH:,} a path; simplify them (long runs of * or **)"
            )


class Glob:
    """One pattern, matched against whole paths (case-folded, as docker-py does)."""

    def __init__(self, pattern: str, budget: Budget | None = None) -> None:
        self.pattern = pattern
        self.tokens = _tokens(pattern.lower())
        self.budget = budget

    def _close(self, states: set[int]) -> set[int]:
        """``states`` and every position reachable from them without a character."""
        todo = list(states)
        out = set(states)
        while todo:
            at = todo.pop()
            if at >= len(self.tokens):
                continue
            token = self.tokens[at]
            nexts = []
            if token.kind in (STAR, ANY):
                nexts.append(at + 1)
            elif token.kind == SKIP:
                nexts += [at + 1, at + token.skip]
            for nxt in nexts:
                if nxt not in out:
                    out.add(nxt)
                    todo.append(nxt)
        return out

    def match(self, path: str) -> bool:
        end = len(self.tokens)
        states = self._close({0})
        budget = self.budget
        if budget is not None:
            budget.left += STEPS_PER_MATCH
        for char in path.lower():
            if budget is not None:
                budget.spend(len(states))
            step: set[int] = set()
            for at in states:
                if at >= end:
                    continue
                token = self.tokens[at]
                kind = token.kind
                if kind == LIT:
                    if token.char == char:
                        step.add(at + 1)
                elif kind == ONE:
                    if char != "/":
                        step.add(at + 1)
                elif kind == STAR:
                    if char != "/":
                        step.add(at)
                elif kind == CLASS:
                    assert token.rx is not None
                    if token.rx.fullmatch(char):
                        step.add(at + 1)
                elif kind == ANY:
                    step.add(at)
            if not step:
                return False
            states = self._close(step)
        return end in states
