"""A plan as a pull-request comment."""

from __future__ import annotations

from reconciler.plan.model import Action, Plan, Risk
from reconciler.render.words import SYMBOL, summary_line


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(plan: Plan) -> str:
    lines = [f"### dsr plan for project `{plan.project}`", ""]
    if not plan.changes:
        lines.append("No changes. The engine matches the spec.")
    else:
        lines.append(f"**{summary_line(plan)}**")
        lines.append("")
        lines.append("| | Resource | Action | Risk | Reason |")
        lines.append("|---|---|---|---|---|")
        for change in plan.changes:
            risk = change.risk.value if change.risk is Risk.NONE else f"**{change.risk.value}**"
            lines.append(
                f"| `{SYMBOL[change.action]}` | `{change.resource}` | {change.action.value} "
                f"| {risk} | {_cell(change.reason)} |"
            )
    blocked = [c for c in plan.changes if c.action is Action.BLOCKED]
    if blocked:
        lines += [
            "",
            "> [!WARNING]",
            f"> {len(blocked)} change(s) are blocked and will not be applied.",
        ]
    if plan.orphans:
        lines += ["", "<details><summary>Orphans kept</summary>", ""]
        lines += [f"- `{orphan}`" for orphan in plan.orphans]
        lines += ["", "</details>"]
    for error in plan.errors:
        lines += ["", f"**Error:** {_cell(error)}"]
    return "\n".join(lines)
