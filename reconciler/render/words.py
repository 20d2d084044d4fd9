"""Words and symbols shared by the human renderers."""

from __future__ import annotations

from reconciler.plan.model import Action, Change, Op, Plan

SYMBOL = {
    Action.CREATE: "+",
    Action.REPLACE: "-/+",
    Action.UPDATE: "~",
    Action.START: ">",
    Action.DELETE: "-",
    Action.BUILD: "*",
    Action.ADOPT: "<=",
    Action.BLOCKED: "!",
}
VERB = {
    Action.CREATE: "will be created",
    Action.REPLACE: "will be replaced",
    Action.UPDATE: "will be updated in place",
    Action.START: "will be started",
    Action.DELETE: "will be deleted",
    Action.BUILD: "will be built",
    Action.ADOPT: "will be adopted",
    Action.BLOCKED: "is blocked",
}
COLOR = {
    Action.CREATE: "green",
    Action.REPLACE: "yellow",
    Action.UPDATE: "yellow",
    Action.START: "cyan",
    Action.DELETE: "red",
    Action.BUILD: "blue",
    Action.ADOPT: "cyan",
    Action.BLOCKED: "magenta",
}


def summary_line(plan: Plan) -> str:
    s = plan.summary()
    # Adoptions are named only when there are some: most plans never adopt anything.
    adopt = f"{s['adopt']} to adopt, " if s["adopt"] else ""
    return (
        f"{s['create']} to create, {s['replace']} to replace, {s['update']} to update, "
        f"{s['start']} to start, {s['delete']} to delete, {s['build']} to build, "
        f"{adopt}{s['blocked']} blocked."
    )


# Calls a change's action does not already say: a plan that shows them tells how it is done.
_TELLING = frozenset(
    {Op.RENAME_CONTAINER, Op.BACK_UP_VOLUME, Op.RESTORE_VOLUME, Op.RECORD, Op.UPDATE_CONTAINER}
)


def telling(change: Change) -> bool:
    """Whether the text form lists the change's calls (JSON and markdown always do): a
    replace, a migration, a backup before a delete; not a plain create or delete."""
    return change.order is not None or any(o.op in _TELLING for o in change.operations)
