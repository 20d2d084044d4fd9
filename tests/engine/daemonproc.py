"""``dsr run`` as a subprocess for the engine tests: its JSON events, metrics and probes.

``DaemonProcess.start(...)`` runs ``python -m reconciler --log-format json run ...`` with the
test's state directory; a thread reads stderr into ``events``. Tests wait on conditions
(``wait_for``) rather than sleeping, and always ``stop()`` it (the fixture does).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DaemonProcess:
    """One ``dsr run``; ``events`` holds every JSON line it logged."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int) -> None:
        self.argv = argv
        self.port = port
        self.events: list[dict[str, Any]] = []
        self.other_lines: list[str] = []
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.other_lines.append(line.rstrip())

    # -- reading what it did -----------------------------------------------------------------
    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e.get("event") == event]

    def passes(self) -> list[dict[str, Any]]:
        return self.named("pass")

    def wait_for(
        self, condition: Callable[[], object], timeout: float = 20.0, what: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.proc.poll() is not None:
                pytest.fail(
                    f"dsr run exited {self.proc.returncode} while waiting for {what}\n"
                    + self.describe(),
                    pytrace=False,
                )
            time.sleep(0.02)
        pytest.fail(
            f"timed out after {timeout} s waiting for {what}\n" + self.describe(), pytrace=False
        )

    def wait_idle(self, quiet: float = 0.5, timeout: float = 20.0) -> None:
        """Until no pass started for ``quiet`` seconds (the burst's passes are all done)."""
        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline:
            count = len(self.passes())
            if count == seen:
                return
            seen = count
            time.sleep(quiet)
        pytest.fail("dsr run never went idle\n" + self.describe(), pytrace=False)

    def describe(self) -> str:
        tail = [json.dumps(e) for e in self.events[-40:]]
        return "\n".join([" ".join(self.argv), *tail, *self.other_lines[-20:]])

    # -- probes ----------------------------------------------------------------------------
    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError as err:
            return 0, str(err)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of /metrics (0 when absent)."""
        _, text = self.get("/metrics")
        wanted = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
        )
        total = 0.0
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            if _same_sample(key, wanted):
                total += float(value)
        return total

    # -- stopping ----------------------------------------------------------------------------
    def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took)."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(5)
        return code, time.monotonic() - started


def _same_sample(key: str, wanted: str) -> bool:
    if "{" not in wanted:
        return key == wanted or key.startswith(wanted + "{")
    name, _, labels = wanted.partition("{")
    if not key.startswith(name + "{"):
        return False
    have = set(key[len(name) + 1 : -1].split(","))
    return set(labels[:-1].split(",")) <= have


Starter = Callable[..., DaemonProcess]


@pytest.fixture
def run_daemon(dsr_state_dir: Path) -> Iterator[Starter]:
    """``run_daemon(path, *flags, env=None) -> DaemonProcess``; all are stopped afterwards."""
    started: list[DaemonProcess] = []

    def start(
        path: str | os.PathLike[str],
        *flags: str,
        env: dict[str, str] | None = None,
        global_flags: Sequence[str] = (),
    ) -> DaemonProcess:
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "reconciler",
            "--log-format",
            "json",
            *global_flags,
            "run",
            os.fspath(path),
            "--metrics-addr",
            f"127.0.0.1:{port}",
            *flags,
        ]
        environment = {**os.environ, "DSR_STATE_DIR": str(dsr_state_dir), **(env or {})}
        daemon = DaemonProcess(argv, environment, port)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.terminate()
