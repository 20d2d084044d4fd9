"""The applier's log events, and a pull that fails staying that container's problem alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from reconciler.engine import Engine
from reconciler.reconcile import run_pass
from reconciler.request import Request


def test_one_event_per_change_and_a_failed_pull_stops_only_its_container(
    prefix: str, busybox_image: str, tmp_spec: Callable[..., Path], tmp_path: Path
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
    request = Request(path=str(spec), apply=True, state_dir=str(tmp_path), workers=2)
    with capture_logs() as events:
        result = run_pass(request)
    outcomes = result.outcomes
    assert result.error is None and not result.converged  # one change failed

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
    passes = [e for e in events if e["event"] == "pass"]
    assert len(passes) == 1 and passes[0]["pass_id"] == changes[0]["pass_id"] == result.pass_id
    assert passes[0]["failed"] == 1 and passes[0]["calls"] == result.calls > 4
    assert set(result.seconds) >= {"load", "lock", "observe", "plan", "apply"}
    engine = Engine()
    assert engine.api.inspect_container(f"{prefix}-ok")["State"]["Status"] == "created"
