"""A fleet plan (one plan per host) as text, markdown and JSON, from the same data.

Hosts with changes or problems get a section each; the hosts a change does not touch are
listed on one line, so a reviewer of a pull request sees at once which hosts it touches.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from reconciler.escape import escape_controls
from reconciler.render.json import plan_dict
from reconciler.render.markdown import code, render_markdown
from reconciler.render.text import render_text

if TYPE_CHECKING:
    from reconciler.fleet import FleetPlan, HostPlan


def _labels(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _headline(fleet: FleetPlan) -> tuple[list[HostPlan], list[HostPlan], str]:
    touched = [h for h in fleet.hosts if h.touched]
    quiet = [h for h in fleet.hosts if not h.touched]
    line = (
        f"{len(fleet.hosts)} host{'s' if len(fleet.hosts) != 1 else ''}, "
        f"{len(touched)} with changes or problems, {len(quiet)} unchanged"
    )
    return touched, quiet, line


def render_fleet_text(fleet: FleetPlan, *, color: bool = False) -> str:
    e = escape_controls
    touched, quiet, line = _headline(fleet)
    lines = [f"Fleet plan for project {e(fleet.project)}: {line}", ""]
    for part in touched:
        labels = _labels(part.host.labels)
        lines.append(f"== host {e(part.host.name)}" + (f" ({e(labels)})" if labels else "") + " ==")
        if part.plan is not None:
            lines.append(render_text(part.plan, color=color))
        for issue in part.issues:
            lines.append(f"Error: {issue}")
        lines.append("")
    if quiet:
        lines.append("No changes on: " + ", ".join(e(h.host.name) for h in quiet))
    return "\n".join(lines).rstrip("\n")


def render_fleet_markdown(fleet: FleetPlan) -> str:
    touched, quiet, line = _headline(fleet)
    lines = [f"### dsr fleet plan for project {code(fleet.project)}", "", f"**{line}**", ""]
    if touched:
        lines += ["| Host | Changes | Blocked | Errors |", "|---|---|---|---|"]
        for part in touched:
            summary = part.plan.summary() if part.plan else {}
            changes = sum(v for k, v in summary.items() if k != "blocked")
            errors = len(part.issues) + (len(part.plan.errors) if part.plan else 0)
            lines.append(
                f"| {code(part.host.name, cell=True)} | {changes} | {summary.get('blocked', 0)} "
                f"| {errors} |"
            )
    for part in touched:
        lines += ["", f"#### Host {code(part.host.name)}", ""]
        if part.plan is not None:
            # The host's plan as `dsr diff` renders it, under the host's own heading.
            lines += render_markdown(part.plan).split("\n")[2:]
        lines += [f"**Error:** {code(str(issue))}" for issue in part.issues]
    if quiet:
        names = ", ".join(code(h.host.name) for h in quiet)
        lines += ["", f"<details><summary>No changes on {len(quiet)} hosts</summary>", ""]
        lines += [names, "", "</details>"]
    return "\n".join(lines)


def fleet_dict(fleet: FleetPlan) -> dict[str, Any]:
    hosts = []
    for part in fleet.hosts:
        entry: dict[str, Any] = {"host": part.host.name, "labels": dict(part.host.labels)}
        if part.plan is not None:
            entry.update(plan_dict(part.plan))
            entry.pop("format_version", None)
            entry["errors"] = list(part.plan.errors)
        else:
            entry.update({"changes": [], "orphans": [], "summary": {}, "errors": []})
        entry["errors"] += [str(issue) for issue in part.issues]
        hosts.append(entry)
    return {
        "format_version": 1,
        "project": fleet.project,
        "hosts": hosts,
        "summary": fleet.summary(),
    }


def render_fleet_json(fleet: FleetPlan) -> str:
    return json.dumps(fleet_dict(fleet), indent=2)


def render_fleet(fleet: FleetPlan, fmt: str, *, color: bool = False) -> str:
    """``fleet`` in the format named ``fmt`` (text, markdown or json)."""
    if fmt == "json":
        return render_fleet_json(fleet)
    if fmt == "markdown":
        return render_fleet_markdown(fleet)
    return render_fleet_text(fleet, color=color)
