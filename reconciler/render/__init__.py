"""Plans rendered for people (text, markdown) and for programs (JSON), from the same data."""

from __future__ import annotations

from reconciler.plan.model import Plan
from reconciler.render.json import render_json
from reconciler.render.markdown import render_markdown
from reconciler.render.text import render_text

FORMATS = ("text", "json", "markdown")


def render(plan: Plan, fmt: str, *, color: bool = False) -> str:
    """``plan`` in the format named ``fmt`` (one of ``FORMATS``)."""
    if fmt == "json":
        return render_json(plan)
    if fmt == "markdown":
        return render_markdown(plan)
    return render_text(plan, color=color)


__all__ = ["FORMATS", "render", "render_json", "render_markdown", "render_text"]
