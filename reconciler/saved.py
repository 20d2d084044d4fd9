"""Saved plans: ``dsr plan --out FILE`` writes one, ``dsr apply FILE`` reads it back.

A saved plan is input like a spec: it is refused when damaged, and when the engine moved
since it was made (the fingerprint of every object it depends on).
"""

from __future__ import annotations

import json
import os
from typing import Any

from reconciler.errors import PlanError, StalePlanError
from reconciler.files import write_json
from reconciler.plan import Plan
from reconciler.snapshot import Observed

SAVED_KIND = "dsr-saved-plan"


def save_plan(path: str, saved: Plan, names: set[str], public: dict[str, Any]) -> None:
    """Write a plan to apply later: the contract's JSON plus what applying it needs."""
    document = {**public, "kind": SAVED_KIND, "names": sorted(names), "plan": saved.to_dict()}
    write_json(path, document, indent=2)


def read_saved_plan(path: str) -> tuple[Plan, set[str]] | None:
    """The saved plan in ``path``, or ``None`` when ``path`` is not one (a spec, a folder)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            head = handle.read(1)
            if head != "{":
                return None
            document = json.loads(head + handle.read())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict) or document.get("kind") != SAVED_KIND:
        return None
    try:
        return Plan.from_dict(document["plan"]), set(document["names"])
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        # AttributeError: a change (or its parameters) that is not a mapping at all
        raise PlanError(f"{path}: the saved plan is damaged: {err}") from err


def check_fresh(observed: Observed, saved: Plan, names: set[str]) -> None:
    """Refuse a saved plan when anything it depends on moved since it was made."""
    now = observed.fingerprint(saved.project, names)
    before = saved.fingerprint
    moved = []
    for key in sorted(before.keys() | now.keys()):
        if key not in now:
            moved.append(f"{key} is gone")
        elif key not in before:
            moved.append(f"{key} appeared")
        elif before[key] != now[key]:
            moved.append(f"{key} changed")
    if moved:
        raise StalePlanError(
            "the saved plan is stale: the engine changed since it was made ("
            + "; ".join(moved)
            + "); run dsr plan again"
        )
