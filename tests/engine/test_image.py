"""dsr's container image, built here with no registry (deploy/image.sh: an mmdebstrap base
and wheels built on this machine), running ``dsr run`` against this host's engine:

- the spec checkout is mounted at the same path inside as on the host, so a relative bind
  names the host's folder, which the engine (on the host) binds;
- the checkout's remote is a git repository over real ssh (sshd on 127.0.0.1 with its own
  keys): a commit pushed there is pulled by the daemon inside the container and applied;
- the state directory is a volume.

The base image is kept between runs (``dsr-base:bookworm``); the dsr image is the test's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from daemonproc import free_port
from sshgit import SshRemote

ROOT = Path(__file__).resolve().parents[2]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}

pytestmark = pytest.mark.skipif(
    shutil.which("mmdebstrap") is None, reason="mmdebstrap is missing (deploy/setup-docker.sh)"
)


def git(folder: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), *args],
        env={**os.environ, **GIT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def image(prefix: str) -> str:
    tag = f"{prefix}-dsr:test"
    # The wheels are built with this test's python (it has pip; Debian's python3 may not).
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "deploy/image.sh"), tag],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip() == tag
    return tag


@pytest.fixture
def ssh_remote(tmp_path: Path) -> Iterator[SshRemote]:
    remote = SshRemote.start(tmp_path / "sshd")
    yield remote
    remote.stop()


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError as err:
        return 0, str(err)


def wait(condition: object, what: str, timeout: float = 60, logs: object = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}\n{logs() if logs else ''}")  # type: ignore[operator]


def test_the_image_runs_the_daemon_on_the_hosts_engine(
    image: str,
    ssh_remote: SshRemote,
    tmp_path: Path,
    prefix: str,
    busybox_image: str,
    docker_client: docker.DockerClient,
) -> None:
    # The spec repository: a bare remote served over ssh, and the host's checkout of it.
    bare, checkout = tmp_path / "remote.git", tmp_path / "checkout"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    ssh_env = {"GIT_SSH_COMMAND": SshRemote.ssh_command(ssh_remote.keys)}
    seed = tmp_path / "seed"
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True)
    spec_dir = seed / prefix
    (spec_dir / "htdocs").mkdir(parents=True)
    (spec_dir / "htdocs" / "index.html").write_text("served from the host\n")
    spec = f"""version: 1
volumes:
  {prefix}-data: {{}}
containers:
  {prefix}-web:
    image: {busybox_image}
    command: [sleep, "600"]
    init: true
    mounts:
      - ./htdocs:/www:ro
      - {prefix}-data:/data
"""
    (spec_dir / "dsr.yaml").write_text(spec)
    git(seed, "add", ".")
    git(seed, "commit", "-qm", "first")
    git(seed, "remote", "add", "origin", ssh_remote.url(bare))
    git(seed, "push", "-q", "-u", "origin", "main", env=ssh_env)
    subprocess.run(
        ["git", "clone", "-q", ssh_remote.url(bare), str(checkout)],
        env={**os.environ, **ssh_env},
        check=True,
        timeout=60,
    )
    specs = checkout / prefix

    port = free_port()
    keys = "/run/dsr-ssh"
    name = f"{prefix}-dsr"
    container = docker_client.containers.run(
        image,
        [
            "run",
            str(specs),
            "--git-pull",
            "1s",
            "--interval",
            "5",
            "--metrics-addr",
            f"127.0.0.1:{port}",
        ],
        name=name,
        detach=True,
        network_mode="host",  # the ssh remote and the metrics port on the host's 127.0.0.1
        environment={"GIT_SSH_COMMAND": SshRemote.ssh_command(Path(keys))},
        volumes={
            "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
            str(checkout): {"bind": str(checkout), "mode": "rw"},  # the same path inside
            f"{prefix}-state": {"bind": "/var/lib/dsr", "mode": "rw"},
            str(ssh_remote.keys): {"bind": keys, "mode": "ro"},
        },
    )

    def logs() -> str:
        return container.logs().decode(errors="replace")[-6000:]

    wait(lambda: get(port, "/readyz")[0] == 200, "the daemon in the image to be ready", 90, logs)
    web = docker_client.api.inspect_container(f"{prefix}-web")
    [bind] = [m for m in web["Mounts"] if m["Type"] == "bind"]
    assert bind["Source"] == str(specs / "htdocs")  # the host's folder, not /specs/...
    out = docker_client.containers.get(f"{prefix}-web").exec_run(["cat", "/www/index.html"])
    assert out.output == b"served from the host\n"
    doc = json.loads(get(port, "/status.json")[1])
    assert doc["project"] == prefix and doc["in_sync"] is True, doc
    assert {r["state"] for r in doc["resources"]} == {"in-sync"}

    # A commit pushed to the ssh remote is pulled inside the container and applied.
    (spec_dir / "dsr.yaml").write_text(
        spec.replace("volumes:\n", f"volumes:\n  {prefix}-more: {{}}\n")
    )
    git(seed, "commit", "-qam", "second")
    git(seed, "push", "-q", "origin", "main", env=ssh_env)
    names = lambda: {v["Name"] for v in docker_client.api.volumes()["Volumes"] or []}  # noqa: E731
    wait(lambda: f"{prefix}-more" in names(), "the pulled commit to be applied", 60, logs)
    assert git(checkout, "rev-parse", "HEAD") == git(seed, "rev-parse", "HEAD")
    assert '"git pull"' in logs()

    # The state lives in its volume; dsr status there reads what the daemon recorded.
    container.stop(timeout=15)
    assert container.wait(timeout=30)["StatusCode"] == 0, logs()
    done = docker_client.containers.run(
        image,
        ["status", str(specs), "--format", "json"],
        volumes={
            "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
            str(checkout): {"bind": str(checkout), "mode": "ro"},
            f"{prefix}-state": {"bind": "/var/lib/dsr", "mode": "ro"},
        },
        remove=True,
        stdout=True,
        stderr=False,
    )
    status = json.loads(done)
    assert status["last_pass"]["by"] == "dsr run" and status["in_sync"] is True
    # The image declares VOLUME /var/lib/dsr: without a mount there, the run would make an
    # anonymous volume that remove=True (docker rm without -v) leaves on the engine.
    version = docker_client.containers.run(
        image, ["--version"], tmpfs={"/var/lib/dsr": ""}, remove=True
    ).decode()
    assert version.startswith("dsr ") and "(commit " in version
