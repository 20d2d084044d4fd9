"""The applier's scheduler, without Docker: what runs when, what a failure skips, and what
a stalled engine stops. Each change "runs" through a recording function given as ``run``."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from reconciler.apply import apply_plan
from reconciler.engine import Engine
from reconciler.plan.model import Action, Change, Plan, ReasonCode, Status


def change(name: str, *depends_on: str) -> Change:
    return Change(
        f"volume:{name}",
        Action.CREATE,
        "it does not exist",
        ReasonCode.MISSING,
        depends_on=tuple(f"volume:{d}" for d in depends_on),
    )


class Recorder:
    """Runs changes by recording them; fails those named in ``failing``."""

    def __init__(self, failing: dict[str, BaseException] | None = None, pause: float = 0) -> None:
        self.failing = failing or {}
        self.pause = pause
        self.started: list[str] = []
        self.finished: list[str] = []
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, change: Change) -> None:
        with self.lock:
            self.started.append(change.name)
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.pause)
            if change.name in self.failing:
                raise self.failing[change.name]
        finally:
            with self.lock:
                self.running -= 1
                self.finished.append(change.name)


def engine() -> Engine:
    fake = Engine.__new__(Engine)
    fake.url, fake.timeout, fake.calls = "unix:///nowhere.sock", 2.0, 0
    return fake


def apply(changes: list[Change], recorder: Recorder, workers: int = 4) -> dict[str, tuple[Status, str]]:  # fmt: skip
    outcomes = apply_plan(engine(), Plan("web", tuple(changes)), workers=workers, run=recorder)
    assert [o.change for o in outcomes] == changes  # in plan order, whatever ran first
    return {o.change.name: (o.status, o.error) for o in outcomes}


def test_a_change_starts_only_once_what_it_depends_on_succeeded() -> None:
    recorder = Recorder(pause=0.01)
    result = apply([change("a"), change("b", "a"), change("c", "b"), change("d")], recorder)
    assert all(status is Status.OK for status, _ in result.values())
    finished = recorder.finished
    assert recorder.started.index("b") > finished.index("a")
    assert recorder.started.index("c") > finished.index("b")


def test_a_failure_skips_its_dependents_transitively_and_nothing_else() -> None:
    recorder = Recorder(failing={"a": RuntimeError("boom")})
    result = apply(
        [change("a"), change("b", "a"), change("c", "b"), change("d"), change("e", "d")],
        recorder,
    )
    assert result["a"] == (Status.FAILED, "boom")
    assert result["b"] == (Status.SKIPPED, "volume:a did not succeed")
    assert result["c"] == (Status.SKIPPED, "volume:b did not succeed")
    assert result["d"] == result["e"] == (Status.OK, "")
    assert sorted(recorder.started) == ["a", "d", "e"]


def test_a_dependency_outside_the_plan_does_not_hold_a_change_back() -> None:
    """Blocked changes are not actionable: what depends on them is blocked by the planner;
    a dependency the plan does not hold is already so."""
    result = apply([change("a", "elsewhere")], Recorder())
    assert result["a"] == (Status.OK, "")


def test_a_dependency_cycle_is_skipped_not_run() -> None:
    recorder = Recorder()
    result = apply([change("a", "b"), change("b", "a"), change("c")], recorder)
    assert result["a"] == result["b"] == (Status.SKIPPED, "dependency cycle")
    assert recorder.started == ["c"]


@pytest.mark.parametrize("workers", [1, 3])
def test_no_more_than_the_workers_run_at_once(workers: int) -> None:
    recorder = Recorder(pause=0.02)
    apply([change(f"v{i}") for i in range(9)], recorder, workers=workers)
    assert recorder.most <= workers
    assert recorder.most > 1 or workers == 1


def test_once_the_engine_stops_answering_nothing_more_starts() -> None:
    recorder = Recorder(failing={"v1": requests.exceptions.ReadTimeout("read timed out")})
    result = apply([change(f"v{i}") for i in range(6)], recorder, workers=1)
    assert result["v0"] == (Status.OK, "")
    assert result["v1"] == (Status.FAILED, "the engine did not answer in time (--engine-timeout)")
    for name in ("v2", "v3", "v4", "v5"):
        status, error = result[name]
        assert status is Status.SKIPPED
        assert error.startswith("not started: volume:v1 got no answer from the engine within 2 s")
    assert recorder.started == ["v0", "v1"]


def test_every_payload_class_has_its_one_executor() -> None:
    """The applier runs each operation through the executor of its payload's class."""
    from typing import get_args

    from reconciler.execute import EXECUTORS
    from reconciler.plan.payloads import Payload

    assert set(EXECUTORS) == set(get_args(Payload))
