"""``dsr status`` against the real engine: after a clean apply, a stopped container, a
blocked change and an overdue backup; the JSON is the contract's, the exit says it all."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]


def status(dsr: DsrRunner, spec: Path, code: int, *flags: str) -> dict[str, Any]:
    done = dsr("status", spec, "--format", "json", *flags, check=code)
    doc: dict[str, Any] = json.loads(done.stdout)
    assert doc["format_version"] == 1
    return doc


def states(doc: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {r["resource"]: (r["state"], r.get("reason_code")) for r in doc["resources"]}


def test_status_through_apply_drift_block_and_backups(
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    docker_client: docker.DockerClient,
    busybox_image: str,
    prefix: str,
) -> None:
    data, web = f"{prefix}-data", f"{prefix}-web"
    text = f"""
        version: 1
        volumes:
          {data}: {{}}
        containers:
          {web}:
            image: {busybox_image}
            command: [sleep, "600"]
            init: true
            mounts: [{data}:/data]
        backups:
          nightly:
            volumes: [{data}]
            schedule: "0 3 * * *"
            keep: {{last: 3}}
        """
    spec = tmp_spec(text)

    # Nothing yet: both missing, never backed up (overdue), no pass recorded, no daemon.
    doc = status(dsr, spec, 2)
    assert states(doc) == {f"volume:{data}": ("missing", "missing"),
                           f"container:{web}": ("missing", "missing")}  # fmt: skip
    assert doc["last_pass"] is None and doc["daemon"] == {"pid": None, "suspended": False}
    [backup] = doc["backups"]
    assert backup["source"] == f"volume:{data}" and backup["overdue"] is True

    # A clean apply, and a backup taken now: everything in sync, exit 0.
    dsr("apply", spec, check=True)
    dsr("backup", spec, check=True)
    doc = status(dsr, spec, 0)
    assert {s for s, _ in states(doc).values()} == {"in-sync"}
    assert doc["in_sync"] is True and doc["project"] == prefix
    assert doc["last_pass"]["result"] == "ok" and doc["last_pass"]["summary"]["create"] == 2
    [backup] = doc["backups"]
    assert backup["overdue"] is False and 0 <= backup["age_s"] < 120
    text_out = dsr("status", spec, check=0).stdout
    assert "in sync" in text_out and "daemon: not running" in text_out

    # A stopped container: drifted, reason code stopped.
    docker_client.api.stop(web, timeout=0)
    doc = status(dsr, spec, 2)
    assert states(doc)[f"container:{web}"] == ("drifted", "stopped")
    assert states(doc)[f"volume:{data}"] == ("in-sync", None)
    assert f"drifted  container:{web}" in dsr("status", spec, check=2).stdout
    dsr("apply", spec, check=True)
    status(dsr, spec, 0)

    # A blocked change: a volume name taken by an object dsr does not manage.
    taken = f"{prefix}-taken"
    docker_client.api.create_volume(taken)
    spec = tmp_spec(text.replace("containers:", f"  {taken}: {{}}\n        containers:"))
    done = dsr("apply", spec)
    assert done.returncode in (1, 3), done.stderr  # 3 once the contract's exit lands
    doc = status(dsr, spec, 2)
    assert states(doc)[f"volume:{taken}"] == ("blocked", "unmanaged-clash")
    assert doc["last_pass"]["result"] == "blocked" and doc["last_pass"]["blocked"] == 1
    docker_client.api.remove_volume(taken)
    spec = tmp_spec(text)

    # An overdue backup: the newest snapshot is from three days ago (a daily schedule).
    old = (datetime.now(UTC) - timedelta(days=3)).isoformat(timespec="seconds")
    other = tmp_spec(text.replace("nightly:", "weekly:"), name="dsr.yaml")
    dsr("backup", other, "--time", old, check=True)
    doc = status(dsr, other, 2)
    [backup] = doc["backups"]
    assert backup["policy"] == "weekly" and backup["overdue"] is True
    assert backup["age_s"] >= 3 * 86400 - 120
    assert "OVERDUE" in dsr("status", other, check=2).stdout
    dsr("backup", other, check=True)
    assert status(dsr, other, 0)["backups"][0]["overdue"] is False


def test_status_is_of_this_hosts_share(
    dsr: DsrRunner, tmp_spec: Callable[..., Path], prefix: str
) -> None:
    spec = tmp_spec(f"""
        version: 1
        volumes:
          {prefix}-here: {{}}
          {prefix}-there: {{hosts: [dsr-test-some-other-host]}}
        """)
    dsr("apply", spec, check=True)
    doc = status(dsr, spec, 0)
    assert states(doc) == {f"volume:{prefix}-here": ("in-sync", None)}
    doc = status(dsr, spec, 2, "--host", "dsr-test-some-other-host")
    assert doc["host"] == "dsr-test-some-other-host"
    assert states(doc)[f"volume:{prefix}-there"] == ("missing", "missing")
