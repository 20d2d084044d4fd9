"""An adoption killed (SIGKILL) before each of its engine calls is finished by the next
pass: the container it renamed ``NAME_dsr_old`` (not dsr's: only the project's record
says dsr renamed it) is removed once dsr's own runs, its anonymous volume carried over
with its data; nothing named ``_dsr_`` is left.

The kill is exact, not timed: dsr talks to the engine through a proxy socket that kills
it when it sends its k-th changing request (before the engine sees it), for k = 1, 2, ...
until an apply gets through without reaching k.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker

from reconciler.statedir import StateDir

SpecWriter = Callable[..., Path]
MAX_STEPS = 12  # the adoption of one container takes 6 changing calls
_REQUEST = re.compile(rb"^(POST|DELETE|PUT) (\S+) HTTP/1\.[01]\r?$", re.MULTILINE)


class KillingProxy:
    """Forwards a unix socket to the engine's; SIGKILLs ``victim`` instead of forwarding
    its ``kill_at``-th changing request (POST, PUT, DELETE)."""

    def __init__(self, path: Path) -> None:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        assert host.startswith("unix://"), "the proxy forwards a local engine socket"
        self.upstream = host.removeprefix("unix://")
        self.path = path
        self.kill_at = 0
        self.victim: subprocess.Popen[str] | None = None
        self.seen: list[str] = []
        self.lock = threading.Lock()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(64)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.upstream)
            threading.Thread(target=self.pump, args=(upstream, client, False), daemon=True).start()
            threading.Thread(target=self.pump, args=(client, upstream, True), daemon=True).start()

    def pump(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        try:
            while data := source.recv(65536):
                if requests and self.stops(data):
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def stops(self, data: bytes) -> bool:
        with self.lock:
            for match in _REQUEST.finditer(data):
                self.seen.append(f"{match.group(1).decode()} {match.group(2).decode()}")
                if len(self.seen) == self.kill_at and self.victim is not None:
                    self.victim.kill()
                    self.victim.wait()
                    return True
        return False

    def run(self, *args: str, state: Path, kill_at: int = 0) -> subprocess.CompletedProcess[str]:
        with self.lock:
            self.seen, self.kill_at = [], kill_at
            self.victim = subprocess.Popen(
                [sys.executable, "-m", "reconciler", *args],
                env={
                    **os.environ,
                    "DSR_STATE_DIR": str(state),
                    "DOCKER_HOST": f"unix://{self.path}",
                },
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            victim = self.victim
        out, err = victim.communicate(timeout=300)
        return subprocess.CompletedProcess(victim.args, victim.returncode, out, err)

    def close(self) -> None:
        self.server.close()


def test_an_adoption_killed_at_each_step_is_finished_by_the_next_pass(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    docker_client: docker.DockerClient,
    labels: dict[str, str],
    tmp_path: Path,
) -> None:
    proxy = KillingProxy(tmp_path / "engine.sock")
    label_args = [arg for k, v in labels.items() for arg in ("--label", f"{k}={v}")]
    steps: list[list[str]] = []
    try:
        for step in range(1, MAX_STEPS + 1):
            app = f"{prefix}-app{step}"
            state = tmp_path / f"state{step}"
            state.mkdir()
            subprocess.run(
                ["docker", "run", "-d", "--name", app, "--init", "--network", "none", *label_args,
                 "-v", "/anon", busybox_image, "sh", "-c",
                 f"echo data-{step} > /anon/a && exec sleep 3600"],
                check=True, capture_output=True,
            )  # fmt: skip
            anon = wait_for_file(docker_client, app)
            project = f"{prefix}-s{step}"  # one project per step: each spec is its own
            spec = tmp_spec(
                f"""
                version: 1
                project: {project}
                containers:
                  {app}:
                    image: {busybox_image}
                    command: [sh, -c, "exec sleep 3600"]
                    adopt: true
                    init: true
                    stop_timeout: 2
                    mounts: ["/anon"]
                """,
                name=f"dsr{step}.yaml",
            )
            killed = proxy.run("apply", str(spec), state=state, kill_at=step)
            steps.append(proxy.seen)
            story = f"step {step}: {proxy.seen}; {killed.stderr[-2000:]}"
            # The next pass finishes it; the one after has nothing to do.
            done = proxy.run("apply", str(spec), state=state)
            assert done.returncode == 0, f"{story}\nnext apply: {done.stdout}{done.stderr}"
            again = proxy.run("plan", str(spec), "--detailed-exitcode", state=state)
            assert again.returncode == 0, f"{story}\nsecond plan: {again.stdout}{again.stderr}"
            live = docker_client.api.inspect_container(app)
            assert live["Config"]["Labels"].get("dsr.managed") == "true", story
            assert live["State"]["Running"], story
            mount = next(m for m in live["Mounts"] if m["Destination"] == "/anon")
            assert mount["Name"] == anon, f"the anonymous volume was not carried over; {story}"
            out = docker_client.containers.get(app).exec_run(["cat", "/anon/a"]).output
            assert out == f"data-{step}\n".encode(), story
            debris = [c.name for c in docker_client.containers.list(all=True) if c.name.startswith(app + "_dsr_")]  # fmt: skip
            assert debris == [], story
            assert StateDir(str(state)).load_record(project).adopting == {}, story
            if killed.returncode != -9:  # the apply got through: every step was covered
                break
        else:
            raise AssertionError(f"the adoption never got through {MAX_STEPS} kills: {steps}")
    finally:
        proxy.close()
    # Every changing call of the adoption was a place where it was killed.
    assert step >= 6, steps
    whole = steps[-1]
    assert any(s.endswith("/rename?name=" + app + "_dsr_old") for s in whole), whole


def wait_for_file(client: docker.DockerClient, name: str) -> str:
    for _ in range(50):
        if client.containers.get(name).exec_run(["cat", "/anon/a"]).exit_code == 0:
            break
        time.sleep(0.1)
    mounts = client.api.inspect_container(name)["Mounts"]
    return str(next(m["Name"] for m in mounts if m["Destination"] == "/anon"))
