"""``dsr run`` while its engine restarts: unready, then recovered and converged.

The test runs its own second ``dockerd`` (own socket, data root, exec root, pidfile and
bridge) so that stopping it touches nobody else; it is torn down in a finally.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
import yaml
from conftest import busybox_rootfs, import_image
from daemonproc import Starter, run_daemon
from docker.errors import NotFound
from specgen import SLEEP_COMMAND

__all__ = ["run_daemon"]

SpecWriter = Callable[..., Path]
BRIDGE, BRIDGE_ADDRESS = "dsrbr2", "172.31.250.1/24"


class SecondEngine:
    """A dockerd of the test's own, started and stopped at will."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = open(folder / "dockerd.log", "ab")  # noqa: SIM115 (closed in teardown)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *("dockerd", "-b", BRIDGE, "--iptables=false", "--ip-masq=false"),
                *("--data-root", str(self.folder / "data")),
                *("--exec-root", str(self.folder / "exec")),
                *("--pidfile", str(self.folder / "dockerd.pid")),
                *("-H", self.url),
            ],
            stdout=self.log,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                client = docker.APIClient(base_url=self.url, timeout=5)
                client.ping()
                client.close()
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"the second dockerd did not start: {self.tail()}", pytrace=False)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self) -> str:
        return (self.folder / "dockerd.log").read_text(errors="replace")[-3000:]


@pytest.fixture
def second_engine(prefix: str) -> Iterator[SecondEngine]:
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed")
    made_bridge = subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode
    if made_bridge:
        for args in (
            ["link", "add", BRIDGE, "type", "bridge"],
            ["addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE],
            ["link", "set", BRIDGE, "up"],
        ):
            subprocess.run(["ip", *args], check=True)
    folder = Path(tempfile.mkdtemp(prefix="dsrd-"))  # short: a socket path has 108 bytes
    engine = SecondEngine(folder)
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()
        engine.log.close()
        if made_bridge:
            subprocess.run(["ip", "link", "del", BRIDGE], check=False)
        shutil.rmtree(folder, ignore_errors=True)


def test_engine_restart_unready_then_recovered(
    run_daemon: Starter,
    tmp_spec: SpecWriter,
    prefix: str,
    second_engine: SecondEngine,
) -> None:
    client = docker.DockerClient(base_url=second_engine.url, timeout=30)
    image = import_image(
        client, busybox_rootfs(), f"dsr-test/busybox:{prefix}", ['CMD ["/bin/sh"]', "ENV PATH=/bin"]
    )
    document = {
        "version": 1,
        "project": prefix,
        "volumes": {f"{prefix}-data": {}},
        "containers": {
            f"{prefix}-web": {
                "image": image,
                "command": SLEEP_COMMAND,
                "mounts": [f"{prefix}-data:/data"],
            }
        },
    }
    spec = tmp_spec(yaml.safe_dump(document))
    daemon = run_daemon(
        spec.parent, "--interval", "1", global_flags=("--docker-host", second_engine.url)
    )
    web = f"{prefix}-web"

    def running() -> bool:
        try:
            return bool(client.api.inspect_container(web)["State"]["Running"])
        except (NotFound, docker.errors.DockerException, OSError):
            return False

    daemon.wait_for(running, what="the container in the second engine")
    daemon.wait_for(lambda: daemon.get("/readyz")[0] == 200, what="ready")

    second_engine.stop()  # stops the container too: it has no restart policy
    daemon.wait_for(lambda: daemon.get("/readyz")[0] == 503, what="unready")
    assert "engine" in daemon.get("/readyz")[1]
    time.sleep(2)  # a few failed passes, backing off
    second_engine.start()
    daemon.wait_for(running, timeout=60, what="the container started again")
    daemon.wait_for(lambda: daemon.get("/readyz")[0] == 200, what="ready again")
    # The listener retries on its own backoff (at most 5 s), so it may come back after a pass.
    daemon.wait_for(lambda: daemon.metric("dsr_events_reconnects_total") >= 1, what="reconnect")
    assert daemon.metric("dsr_reconcile_total", result="engine_error") >= 1
    daemon.wait_for(lambda: any("reconnect" in p["trigger"] for p in daemon.passes()), what="")
    assert daemon.terminate()[0] == 0
    client.api.remove_container(web, force=True)
    client.close()
