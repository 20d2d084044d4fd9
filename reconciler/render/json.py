"""The contract's JSON form of a plan."""

from __future__ import annotations

import json

from reconciler.plan.model import Plan


def render_json(plan: Plan) -> str:
    return json.dumps(
        {
            "format_version": 1,
            "changes": [change.public() for change in plan.changes],
            "orphans": list(plan.orphans),
            "summary": plan.summary(),
        },
        indent=2,
    )
