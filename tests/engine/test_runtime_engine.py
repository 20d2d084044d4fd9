"""depends_on with service_healthy, health checks and limits against the engine."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import docker

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]


def when(text: str) -> datetime:
    # Docker writes nanoseconds; Python reads microseconds.
    head, _, rest = text.partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    return datetime.fromisoformat(f"{head}.{fraction or '0'}+00:00")


def test_a_dependent_starts_once_its_dependency_is_healthy(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    db, app = f"{prefix}-db", f"{prefix}-app"
    spec = tmp_spec(
        f"""
        version: 1
        containers:
          {db}:
            image: {busybox_image}
            command: [sh, -c, "sleep 2; mkdir -p /run/ok; exec sleep 3600"]
            init: true
            healthcheck: {{test: [CMD, test, -d, /run/ok], interval: 1s, retries: 30}}
            memory: 64m
            shm_size: 16m
          {app}:
            image: {busybox_image}
            command: [sh, -c, "exec sleep 3600"]
            init: true
            depends_on: {{{db}: {{condition: service_healthy}}}}
        """
    )
    dsr("apply", spec.parent, check=0)
    db_info = docker_client.api.inspect_container(db)
    app_info = docker_client.api.inspect_container(app)
    assert db_info["State"]["Health"]["Status"] == "healthy"
    healthy_at = min(
        when(entry["End"]) for entry in db_info["State"]["Health"]["Log"] if entry["ExitCode"] == 0
    )
    assert when(app_info["Created"]) >= healthy_at
    assert db_info["HostConfig"]["Memory"] == 64 << 20
    assert db_info["HostConfig"]["ShmSize"] == 16 << 20
    dsr("plan", spec.parent, "--detailed-exitcode", check=0)
