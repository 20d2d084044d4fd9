"""The applier's log events, and a pull that fails staying that container's problem alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from reconciler.apply import apply_plan
from reconciler.engine import Engine
from reconciler.reconcile import compute_plan
from reconciler.spec import load_spec


def test_one_event_per_change_and_a_failed_pull_stops_only_its_container(
    prefix: str, busybox_image: str, tmp_spec: Callable[..., Path]
) -> None:
    spec = tmp_spec(
        f"""
        version: 1
        volumes:
          {prefix}-data: {{}}
        containers:
          {prefix}-ok:
            image: {busybox_image}
            command: [sleep, "3600"]
            state: created
            mounts: ["{prefix}-data:/data"]
          {prefix}-unpullable:
            image: dsr-test-no-registry.invalid/nothing:1
            state: created
            mounts: ["{prefix}-data:/data"]
        """
    )
    desired = load_spec(str(spec), env={})
    engine = Engine()
    plan = compute_plan(engine, desired, {})
    with capture_logs() as events:
        outcomes = apply_plan(engine, plan, workers=2)

    by_resource = {o.change.resource: o for o in outcomes}
    assert by_resource[f"container:{prefix}-ok"].status == "ok"
    assert by_resource[f"volume:{prefix}-data"].status == "ok"
    failed = by_resource[f"container:{prefix}-unpullable"]
    assert failed.status == "failed"
    assert "cannot pull image dsr-test-no-registry.invalid/nothing:1" in failed.error

    changes: list[dict[str, Any]] = [e for e in events if e["event"] == "change"]
    assert sorted(e["resource"] for e in changes) == sorted(by_resource)
    for event in changes:
        assert event["outcome"] == by_resource[event["resource"]].status
        assert isinstance(event["duration_ms"], int) and event["duration_ms"] >= 0
        assert event["pass_id"] == changes[0]["pass_id"]
    assert [e["log_level"] for e in changes if e["outcome"] == "failed"] == ["error"]
    assert engine.api.inspect_container(f"{prefix}-ok")["State"]["Status"] == "created"
