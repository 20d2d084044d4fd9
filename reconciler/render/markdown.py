"""A plan as a pull-request comment.

Every text that comes from a spec or the engine (project, resource names, reasons, orphans,
errors) goes into a code span: GitHub renders no HTML, link, image or @mention there.
"""

from __future__ import annotations

import re

from reconciler.escape import escape_controls
from reconciler.plan.model import Action, Plan, Risk
from reconciler.render.words import SYMBOL, summary_line


def code(text: str, *, cell: bool = False) -> str:
    """``text`` as one inline code span whatever backticks it holds (CommonMark: a fence
    longer than any run inside, padded when the text starts or ends with a backtick)."""
    text = escape_controls(text)
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    span = f"{fence}{pad}{text}{pad}{fence}"
    # GitHub splits table cells at '|' even inside code spans; '\|' keeps it in the cell.
    return span.replace("|", "\\|") if cell else span


def render_markdown(plan: Plan) -> str:
    lines = [f"### dsr plan for project {code(plan.project)}", ""]
    if not plan.changes:
        lines.append("No changes. The engine matches the spec.")
    else:
        lines.append(f"**{summary_line(plan)}**")
        lines.append("")
        lines.append("| | Resource | Action | Risk | Reason | Operations |")
        lines.append("|---|---|---|---|---|---|")
        for change in plan.changes:
            risk = change.risk.value if change.risk is Risk.NONE else f"**{change.risk.value}**"
            reason = change.reason
            if change.order is not None:
                reason += f" ({change.order.value}; downtime: {change.downtime or 'none'})"
            calls = "<br>".join(code(str(o), cell=True) for o in change.operations)
            lines.append(
                f"| `{SYMBOL[change.action]}` | {code(change.resource, cell=True)} "
                f"| {change.action.value} | {risk} | {code(reason, cell=True)} | {calls} |"
            )
    blocked = [c for c in plan.changes if c.action is Action.BLOCKED]
    if blocked:
        lines += [
            "",
            "> [!WARNING]",
            f"> {len(blocked)} change{' is' if len(blocked) == 1 else 's are'} blocked and "
            "will not be applied.",
        ]
    for change in plan.kept:
        lines += ["", f"Kept ({change.code.value}): {code(change.resource)}: {code(change.reason)}"]
    if plan.orphans:
        lines += ["", "<details><summary>Orphans kept</summary>", ""]
        lines += [f"- {code(orphan)}" for orphan in plan.orphans]
        lines += ["", "</details>"]
    for error in plan.errors:
        lines += ["", f"**Error:** {code(error)}"]
    return "\n".join(lines)
