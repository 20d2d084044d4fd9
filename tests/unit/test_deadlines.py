"""Deadlines: an engine that accepts connections and never answers fails a command in about
--engine-timeout, and an apply starts nothing more once a call has timed out."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from reconciler.apply import apply_plan
from reconciler.engine import Engine
from reconciler.kinds import Kind
from reconciler.plan import Action, Change, Plan
from reconciler.plan.model import ReasonCode, VolumeParams
from reconciler.plan.operations import with_operations


@pytest.fixture
def hung_socket(tmp_path: Path) -> Iterator[str]:
    """A unix socket that accepts every connection, reads, and never answers."""
    path = str(tmp_path / "hung.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)  # read nothing back, answer nothing, close nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"unix://{path}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_a_hung_engine_fails_the_command_in_about_the_timeout(
    hung_socket: str, tmp_path: Path, command: str
) -> None:
    spec = tmp_path / "web" / "dsr.yaml"
    spec.parent.mkdir()
    spec.write_text("version: 1\nvolumes:\n  data-vol: {}\n")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "--engine-timeout", "2", command, str(spec)],
        env={**os.environ, "DOCKER_HOST": hung_socket, "DSR_STATE_DIR": str(tmp_path / "state")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"the Docker engine at {hung_socket} did not answer within 2 s" in result.stderr
    assert "Traceback" not in result.stderr
    assert took < 20, f"{command} took {took:.1f} s against a 2 s deadline"


class TimingOutAPI:
    """Creates volumes; the first create of ``slow`` never answers (a read timeout)."""

    def __init__(self, slow: str) -> None:
        self.slow = slow
        self.created: list[str] = []

    def create_volume(self, name: str, **kwargs: Any) -> dict[str, str]:
        if name == self.slow:
            time.sleep(0.05)
            raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=2)")
        self.created.append(name)
        return {"Name": name}


def test_an_apply_starts_nothing_more_once_a_call_timed_out() -> None:
    names = [f"v{i}" for i in range(8)]
    changes = tuple(
        with_operations(
            Change(
                Kind.VOLUME.resource(n),
                Action.CREATE,
                "it does not exist",
                ReasonCode.MISSING,
                volume=VolumeParams(name=n, driver="local", driver_opts={}, labels={}),
            )
        )
        for n in names
    )
    engine = Engine.__new__(Engine)
    engine.url, engine.timeout, engine.calls = "unix:///fake.sock", 2.0, 0
    api = TimingOutAPI(slow="v1")
    engine.api = api  # type: ignore[assignment]
    outcomes = apply_plan(engine, Plan(project="web", changes=changes), workers=1)
    status = {o.change.name: (o.status, o.error) for o in outcomes}
    assert status["v0"] == ("ok", "")
    assert status["v1"] == ("failed", "the engine did not answer in time (--engine-timeout)")
    for name in names[2:]:
        state, error = status[name]
        assert state == "skipped" and "volume:v1 got no answer from the engine within 2 s" in error
    assert api.created == ["v0"]
