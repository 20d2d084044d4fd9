"""apply_plan's ``should_stop``: running changes finish, no other starts (no engine)."""

from __future__ import annotations

from typing import Any

from reconciler.apply import apply_plan
from reconciler.plan.model import Action, Change, Plan, ReasonCode, VolumeParams
from reconciler.plan.operations import with_operations


class FakeAPI:
    def __init__(self) -> None:
        self.created: list[str] = []

    def create_volume(self, name: str, **_: Any) -> None:
        self.created.append(name)


class FakeEngine:
    def __init__(self) -> None:
        self.api = FakeAPI()
        self.timeout = 30.0

    def create_volume(self, name: str, *_: Any, **__: Any) -> None:
        self.api.create_volume(name)  # the executor creates volumes through the Engine


def volume(name: str) -> Change:
    change = Change(
        f"volume:{name}",
        Action.CREATE,
        "missing",
        ReasonCode.MISSING,
        volume=VolumeParams(name, "local", {}, {}),
    )
    return with_operations(change)  # the planner's operations: what the applier runs


def test_no_change_starts_once_should_stop_is_true() -> None:
    engine = FakeEngine()
    plan = Plan("p", tuple(volume(f"v{i}") for i in range(5)))
    outcomes = apply_plan(
        engine,  # type: ignore[arg-type]
        plan,
        workers=1,
        should_stop=lambda: len(engine.api.created) >= 2,
    )
    assert engine.api.created == ["v0", "v1"]
    assert [o.status for o in outcomes] == ["ok", "ok", "skipped", "skipped", "skipped"]
    assert outcomes[-1].error == "stopped before it started"


def test_without_should_stop_everything_runs() -> None:
    engine = FakeEngine()
    plan = Plan("p", tuple(volume(f"v{i}") for i in range(3)))
    assert all(o.status == "ok" for o in apply_plan(engine, plan))  # type: ignore[arg-type]
