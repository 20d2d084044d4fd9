"""The contract's JSON form of a plan."""

from __future__ import annotations

import json
from typing import Any

from reconciler.plan.model import Plan


def plan_dict(plan: Plan) -> dict[str, Any]:
    """The plan as the contract's JSON object (also one host's part of a fleet plan)."""
    return {
        "format_version": 1,
        "changes": [change.public() for change in plan.changes],
        "orphans": list(plan.orphans),
        "summary": plan.summary(),
    }


def render_json(plan: Plan) -> str:
    return json.dumps(plan_dict(plan), indent=2)
