"""The daemon's say before each apply: suspend file, refuse-empty, backoff; no engine."""

from __future__ import annotations

import time
from pathlib import Path

from reconciler.apply import Outcome
from reconciler.daemon import Daemon, DaemonOptions
from reconciler.plan.model import Action, Change, Plan, ReasonCode
from reconciler.request import Request
from reconciler.spec import Desired


def daemon(tmp_path: Path, **options: object) -> Daemon:
    request = Request(path=str(tmp_path), state_dir=str(tmp_path / "state"))
    return Daemon(DaemonOptions(request=request, **options), backup_runner=lambda rule: True)  # type: ignore[arg-type]


DELETE = Change(
    "container:old", Action.DELETE, "left the spec", ReasonCode.LEFT_SPEC, target_id="1"
)
CREATE = Change("volume:a", Action.CREATE, "missing", ReasonCode.MISSING)
USER = Change("container:b", Action.CREATE, "missing", ReasonCode.MISSING, depends_on=("volume:a",))


def test_the_suspend_file_vetoes_the_apply(tmp_path: Path) -> None:
    suspend = tmp_path / "suspend"
    d = daemon(tmp_path, suspend_file=str(suspend))
    d._desired = Desired(project="p", volumes={"a": None})  # type: ignore[dict-item]
    plan = Plan("p", (CREATE,))
    assert d._gate(plan) is True
    suspend.touch()
    assert d._gate(plan) is False and d._gate_result == "suspended"


def test_an_empty_spec_may_not_delete_the_project_unless_allowed(tmp_path: Path) -> None:
    plan = Plan("p", (DELETE,))
    d = daemon(tmp_path)
    d._desired = Desired(project="p")
    assert d._gate(plan) is False and d._gate_result == "refused"
    d._desired = Desired(project="p", volumes={"a": None})  # type: ignore[dict-item]
    assert d._gate(plan) is True  # a spec that still declares something deletes the rest
    allowing = daemon(tmp_path, allow_empty=True)
    allowing._desired = Desired(project="p")
    assert allowing._gate(plan) is True


def test_changes_backing_off_are_left_out_with_their_dependents(tmp_path: Path) -> None:
    d = daemon(tmp_path)
    d._desired = Desired(project="p", volumes={"a": None})  # type: ignore[dict-item]
    d.backoff.record([Outcome(CREATE, "failed", error="boom")], now=time.monotonic())
    other = Change("volume:c", Action.CREATE, "missing", ReasonCode.MISSING)
    narrowed = d._gate(Plan("p", (CREATE, USER, other)))
    assert isinstance(narrowed, Plan) and narrowed.changes == (other,)
    assert d._gate_result == "deferred"
    assert d._gate(Plan("p", (CREATE, USER))) is False
