"""The contract's JSON form of a plan."""

from __future__ import annotations

import json
from typing import Any

from reconciler.plan.model import Change, Plan


def kept(change: Change) -> dict[str, str]:
    """What a plan keeps on purpose: the resource, why, and the reason's code."""
    return {"resource": change.resource, "reason": change.reason, "reason_code": change.code}


def plan_dict(plan: Plan) -> dict[str, Any]:
    """The plan as the contract's JSON object (also one host's part of a fleet plan)."""
    return {
        "format_version": 1,
        "changes": [change.public() for change in plan.changes],
        "orphans": list(plan.orphans),
        **({"kept": [kept(c) for c in plan.kept]} if plan.kept else {}),
        "summary": plan.summary(),
    }


def render_json(plan: Plan) -> str:
    return json.dumps(plan_dict(plan), indent=2)
