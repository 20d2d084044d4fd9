"""From a host where others made things to a host dsr runs, without moving a byte: a
compose project (Debian's docker-compose) through ``dsr import compose``, and objects made
with ``docker run -v`` through ``dsr import engine``. Each time: the plan holds only
adoptions with no data-loss risk, the apply keeps every byte of every volume, services
still reach each other by name, and the next plan has nothing to do."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]

TREE = (
    "cd /v && find . | sort | while read -r f; do "
    'if [ -f "$f" ] && [ ! -L "$f" ]; then sha256sum "$f"; fi; '
    'stat -c "%n %s %a %u %g %Y %F" "$f"; done'
)
DB_COMMAND = (
    "[ -f /data/www/ping ] || { mkdir -p /data/www && echo pong > /data/www/ping; }; "
    "exec httpd -f -p 80 -h /data/www"
)


def tree(client: docker.DockerClient, image: str, volume: str, prefix: str) -> str:
    """Every entry of ``volume``: name, size, mode, owner, mtime, kind, and file sha256."""
    out = client.containers.run(
        image,
        ["sh", "-c", TREE],
        volumes={volume: {"bind": "/v", "mode": "ro"}},
        network_mode="none",
        labels={"dsr.test-prefix": prefix},
        remove=True,
    )
    return bytes(out).decode()


def fill(client: docker.DockerClient, container: str) -> None:
    """Data nobody may lose: random bytes, nested folders, a link, odd modes."""
    script = (
        "mkdir -p /data/db/base/1 && dd if=/dev/urandom of=/data/db/base/1/heap bs=64k "
        "count=16 2>/dev/null && echo wal > /data/db/wal && chmod 600 /data/db/wal && "
        "ln -s base/1/heap /data/db/link && chown -R 999:999 /data/db"
    )
    result = client.containers.get(container).exec_run(["sh", "-c", script])
    assert result.exit_code == 0, result.output


def reach(client: docker.DockerClient, container: str, host: str) -> str:
    """The body of http://HOST/ping as ``container`` gets it (by name, through nc: the test
    image's static wget cannot resolve names)."""
    for _ in range(50):
        result = client.containers.get(container).exec_run(
            ["sh", "-c", f"printf 'GET /ping HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80"]
        )
        body = bytes(result.output).decode(errors="replace")
        if result.exit_code == 0 and "\r\n\r\n" in body:
            return body.split("\r\n\r\n", 1)[1]
        time.sleep(0.2)
    return ""


def changes(dsr: DsrRunner, spec: Path) -> list[dict[str, str]]:
    plan = json.loads(dsr("plan", spec, "--format", "json", check=0).stdout)
    found: list[dict[str, str]] = plan["changes"]
    return found


def remove_networks(client: docker.DockerClient, prefix: str) -> None:
    for network in client.networks.list(names=[prefix]):
        if not network.name.startswith(prefix):
            continue
        network.reload()
        for container in network.containers:
            if container.name.startswith(prefix):
                container.remove(force=True, v=True)
        network.remove()


@pytest.fixture
def networks_cleanup(docker_client: docker.DockerClient, prefix: str) -> Iterator[None]:
    yield
    remove_networks(docker_client, prefix)


def test_a_compose_project_is_taken_over_without_moving_a_byte(
    prefix: str,
    busybox_image: str,
    tmp_path: Path,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    networks_cleanup: None,
) -> None:
    # deploy/setup-docker.sh installs it; a missing one is a failure, never a skip.
    assert shutil.which("docker-compose"), "docker-compose is not installed"
    project = prefix
    folder = tmp_path / "stack"
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "Dockerfile").write_text(
        f'FROM {busybox_image}\nCMD ["sh", "-c", "exec sleep 3600"]\n'
    )
    compose_file = folder / "docker-compose.yml"
    compose_file.write_text(
        textwrap.dedent(
            f"""
            version: "2.4"
            services:
              db:
                image: {busybox_image}
                command: ["sh", "-c", "{DB_COMMAND}"]
                init: true
                volumes: ["dbdata:/data"]
                stop_grace_period: 5s
                expose: ["80"]
                healthcheck:
                  test: ["CMD", "test", "-f", "/data/www/ping"]
                  interval: 2s
              app:
                build: ./app
                init: true
                environment:
                  DB_HOST: db
                depends_on:
                  db: {{condition: service_healthy}}
            volumes:
              dbdata: {{}}
            """
        )
    )
    # Debian ships the Python docker-compose 1.x: it names containers PROJECT_SERVICE_1
    # (Compose v2: PROJECT-SERVICE-1), volumes PROJECT_VOLUME and the network PROJECT_default.
    up = subprocess.run(
        ["docker-compose", "-p", project, "-f", str(compose_file), "up", "-d", "--build"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert up.returncode == 0, up.stderr
    db, app, volume = f"{project}_db_1", f"{project}_app_1", f"{project}_dbdata"
    assert reach(docker_client, app, "db") == "pong\n"
    fill(docker_client, db)
    before = tree(docker_client, busybox_image, volume, prefix)

    out = tmp_path / "spec"
    imported = dsr(
        "import", "compose", compose_file, "--project-name", project, "--naming", "v1",
        "--out", out, check=0,
    )  # fmt: skip
    assert "services.db.expose: not carried over" in imported.stderr
    spec = out / f"{project}.yaml"
    assert "services.db.expose: not carried over" in spec.read_text()  # in the file too
    dsr("validate", spec, check=0)
    planned = changes(dsr, spec)
    assert {(c["resource"], c["action"], c["risk"]) for c in planned} == {
        (f"volume:{volume}", "adopt", "none"),
        (f"network:{project}_default", "adopt", "none"),
        (f"container:{db}", "adopt", "restart"),
        (f"container:{app}", "adopt", "restart"),
    }
    dsr("apply", spec, check=0)

    assert tree(docker_client, busybox_image, volume, prefix) == before
    for name in (db, app):
        labels = docker_client.containers.get(name).labels
        assert labels["dsr.managed"] == "true" and labels["dsr.project"] == project
    assert reach(docker_client, app, "db") == "pong\n"
    dsr("plan", spec, "--detailed-exitcode", check=0)


def test_docker_run_objects_are_taken_over_through_import_engine(
    prefix: str,
    busybox_image: str,
    tmp_path: Path,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    labels: dict[str, str],
    networks_cleanup: None,
) -> None:
    net, data = f"{prefix}-net", f"{prefix}-data"
    db, app, vc = f"{prefix}-db", f"{prefix}-app", f"{prefix}-vc"
    tag = [arg for k, v in labels.items() for arg in ("--label", f"{k}={v}")]

    def docker_cli(*args: str) -> None:
        result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr

    docker_cli("network", "create", *tag, net)
    docker_cli("volume", "create", *tag, data)
    # A volume container (never started) whose anonymous volume holds data.
    docker_cli("create", "--name", vc, *tag, "-v", "/shared", busybox_image, "true")
    docker_cli(
        "run", "-d", "--name", db, *tag, "--init", "--network", net, "--network-alias", "db",
        "-v", f"{data}:/data", "--volumes-from", vc, "-e", "MODE=$plain", "-p", "127.0.0.1::80",
        busybox_image, "sh", "-c", f"[ -f /shared/s ] || echo shared > /shared/s; {DB_COMMAND}",
    )  # fmt: skip
    docker_cli(
        "run", "-d", "--name", app, *tag, "--init", "--network", net, busybox_image,
        "sh", "-c", "exec sleep 3600",
    )  # fmt: skip
    assert reach(docker_client, app, "db") == "pong\n"
    fill(docker_client, db)
    anonymous = next(
        m["Name"] for m in docker_client.api.inspect_container(vc)["Mounts"]
        if m["Destination"] == "/shared"
    )  # fmt: skip
    before = tree(docker_client, busybox_image, data, prefix)
    shared = tree(docker_client, busybox_image, anonymous, prefix)

    out = tmp_path / "spec"
    dsr("--project", prefix, "import", "engine", db, app, "--out", out, check=0)
    spec = out / f"{prefix}.yaml"
    text = spec.read_text()
    assert "MODE: $$plain" in text  # a literal $ stays literal
    planned = changes(dsr, spec)
    assert {(c["resource"], c["action"], c["risk"]) for c in planned} == {
        (f"volume:{data}", "adopt", "none"),
        (f"network:{net}", "adopt", "none"),
        (f"volume_container:{vc}", "adopt", "restart"),
        (f"container:{db}", "adopt", "restart"),
        (f"container:{app}", "adopt", "restart"),
    }
    dsr("apply", spec, check=0)

    assert tree(docker_client, busybox_image, data, prefix) == before
    assert tree(docker_client, busybox_image, anonymous, prefix) == shared
    mounts = {
        m["Destination"]: m["Name"] for m in docker_client.api.inspect_container(db)["Mounts"]
    }
    assert mounts == {"/data": data, "/shared": anonymous}
    assert reach(docker_client, app, "db") == "pong\n"
    dsr("plan", spec, "--detailed-exitcode", check=0)
