"""A plan as ``terraform plan`` shows one: a symbol, the resource, what happens and why."""

from __future__ import annotations

import click

from reconciler.escape import escape_controls
from reconciler.plan.model import Plan, Risk
from reconciler.render.words import COLOR, SYMBOL, VERB, summary_line, telling


def render_text(plan: Plan, *, color: bool = False) -> str:
    # Names, reasons and errors come from specs and the engine: each is escaped (`e`) so
    # that it stays on its line and never drives the terminal; colours come after.
    e = escape_controls

    def paint(text: str, fg: str, bold: bool = False) -> str:
        return click.style(text, fg=fg, bold=bold) if color else text

    lines: list[str] = []
    if not plan.changes:
        lines.append(f"No changes. The engine matches the spec (project {e(plan.project)}).")
    else:
        lines.append(f"dsr will perform the following actions (project {e(plan.project)}):")
        lines.append("")
        for change in plan.changes:
            head = f"{SYMBOL[change.action]:>3} {e(change.resource)} {VERB[change.action]}"
            if change.risk is not Risk.NONE:
                head += f" (risk: {change.risk.value})"
            lines.append(paint(head, COLOR[change.action], bold=True))
            lines.append(f"      reason: {e(change.reason)}")
            if change.order is not None:
                downtime = change.downtime or "none"
                lines.append(f"      order:  {change.order.value}; downtime: {e(downtime)}")
            if change.depends_on:
                lines.append(f"      after:  {e(', '.join(change.depends_on))}")
            if telling(change):
                calls = ", ".join(str(o) for o in change.operations)
                lines.append(f"      calls:  {e(calls)}")
        lines.append("")
    if plan.orphans:
        lines.append("Orphans (managed, no longer in the spec, kept):")
        lines.extend(f"      {e(orphan)}" for orphan in plan.orphans)
        lines.append("")
    for change in plan.kept:
        lines.append(f"    = {e(change.resource)} is kept ({change.code.value})")
        lines.append(f"      reason: {e(change.reason)}")
    if plan.kept:
        lines.append("")
    for error in plan.errors:
        lines.append(paint(f"Error: {e(error)}", "red", bold=True))
    if plan.changes:
        lines.append(paint(f"Plan: {summary_line(plan)}", "white", bold=True))
    return "\n".join(lines).rstrip("\n")
