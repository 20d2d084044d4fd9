"""``dsr diff OLD NEW``: the plan NEW would give on an engine converged to OLD, offline.

Every test runs with ``DOCKER_HOST`` pointing at a socket that does not exist, and with the
CLI's engine constructor replaced by one that fails the test: a diff that touched Docker
could not pass. One test runs the real entry point (``python -m reconciler``) in a
subprocess, where only the unreachable ``DOCKER_HOST`` stands guard.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, NoReturn

import pytest
from click.testing import CliRunner, Result

import reconciler.cli
import reconciler.engine
from reconciler.cli import cli

NO_ENGINE = "unix:///nonexistent.sock"

OLD = """\
version: 1
project: web
volumes:
  data: {}
  cache: {}
containers:
  app:
    image: busybox:1.36
    command: [sleep, "3600"]
    mounts: [data:/data]
  worker:
    image: busybox:1.36
    state: created
    mounts: [cache:/cache]
"""


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)

    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise AssertionError("dsr diff must not talk to the Docker engine")

    monkeypatch.setattr(reconciler.engine, "Engine", refuse)


def write(folder: Path, text: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(text)
    return str(folder)


def diff(tmp_path: Path, new: str, *options: str, old: str = OLD) -> Result:
    old_path = write(tmp_path / "old", old)
    new_path = write(tmp_path / "new", new)
    return CliRunner().invoke(cli, ["diff", old_path, new_path, *options])


def expect(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def edit(old: str, new: str, spec: str = OLD) -> str:
    assert old in spec, old
    return spec.replace(old, new)


NO_CHANGES = "No changes. The engine matches the spec (project web).\n"
ADDED_VOLUME = edit("  cache: {}\n", "  cache: {}\n  logs: {driver_opts: {type: tmpfs}}\n")
READ_ONLY = edit("[data:/data]", "[data:/data:ro]")
NO_WORKER = edit(
    "  worker:\n    image: busybox:1.36\n    state: created\n    mounts: [cache:/cache]\n", ""
)


def test_same_spec_has_no_changes(tmp_path: Path) -> None:
    result = diff(tmp_path, OLD, "--detailed-exitcode")
    assert (result.exit_code, result.output) == (0, NO_CHANGES)


def test_same_spec_in_folders_of_other_names_has_no_changes(tmp_path: Path) -> None:
    """Without a project key, OLD takes NEW's project: a checkout's folder name is noise."""
    spec = edit("project: web\n", "")
    old_path = write(tmp_path / "main-checkout" / "specs", spec)
    new_path = write(tmp_path / "pr-checkout" / "pr-specs", spec)
    result = CliRunner().invoke(cli, ["diff", old_path, new_path, "--detailed-exitcode"])
    assert (result.exit_code, result.output) == (
        0,
        "No changes. The engine matches the spec (project pr-specs).\n",
    )


def test_same_spec_with_an_external_volume_has_no_changes(tmp_path: Path) -> None:
    spec = edit("data: {}", "data: {external: true}")
    result = diff(tmp_path, spec, "--detailed-exitcode", old=spec)
    assert (result.exit_code, result.output) == (0, NO_CHANGES)


def test_added_volume_is_created(tmp_path: Path) -> None:
    result = diff(tmp_path, ADDED_VOLUME)
    assert result.exit_code == 0
    assert result.output == expect("""
        dsr will perform the following actions (project web):

          + volume:logs will be created
              reason: it does not exist

        Plan: 1 to create, 0 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """)


def test_changes_exit_2_with_detailed_exitcode(tmp_path: Path) -> None:
    assert diff(tmp_path, ADDED_VOLUME, "--detailed-exitcode").exit_code == 2


def test_changed_mount_mode_replaces_with_the_reason(tmp_path: Path) -> None:
    result = diff(tmp_path, READ_ONLY)
    assert result.exit_code == 0
    # Offline, nobody can measure the writable layer, and the plan says so.
    assert result.output == expect("""
        dsr will perform the following actions (project web):

        -/+ container:app will be replaced (risk: restart)
              reason: mounts differ: /data was read-write, spec says read-only; its writable layer was not measured; stopping it may take up to 10 s
              order:  create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 0 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.
        """)


def test_removed_container_is_deleted_and_its_volume_kept(tmp_path: Path) -> None:
    new = edit("  cache: {}\n", "", NO_WORKER)
    result = diff(tmp_path, new, "--detailed-exitcode")
    assert result.exit_code == 2
    assert result.output == expect("""
        dsr will perform the following actions (project web):

          - container:worker will be deleted
              reason: it left the spec; its volumes are kept

        Orphans (managed, no longer in the spec, kept):
              volume:cache

        Plan: 0 to create, 0 to replace, 0 to update, 0 to start, 1 to delete, 0 to build, 0 blocked.
        """)


def test_added_volume_container_is_created_and_its_user_replaced(tmp_path: Path) -> None:
    new = edit(
        "containers:\n",
        "volume_containers:\n  vc:\n    mounts: [cache:/shared]\ncontainers:\n",
    )
    new = edit("mounts: [data:/data]", "mounts: [data:/data]\n    volumes_from: [vc]", new)
    result = diff(tmp_path, new)
    assert result.exit_code == 0
    assert result.output == expect("""
        dsr will perform the following actions (project web):

          * image:dsr/empty:1 will be built
              reason: volume containers without an image are created from an empty image, made locally with docker import (no registry needed)
          + volume_container:vc will be created
              reason: it does not exist
              after:  image:dsr/empty:1
        -/+ container:app will be replaced (risk: restart)
              reason: volumes_from was none, spec says vc; vc is created, and volumes_from mounts are fixed when a container is created; its writable layer was not measured; stopping it may take up to 10 s
              order:  create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts
              after:  volume_container:vc
              calls:  create-container app_dsr_new, stop-container app, rename-container app -> app_dsr_old, rename-container app_dsr_new -> app, start-container app, remove-container app_dsr_old

        Plan: 1 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 1 to build, 0 blocked.
        """)


def test_json_format(tmp_path: Path) -> None:
    new = edit("  cache: {}\n", "", NO_WORKER.replace("[data:/data]", "[data:/data:ro]"))
    result = diff(tmp_path, new, "--format", "json", "--detailed-exitcode")
    assert result.exit_code == 2
    assert json.loads(result.output) == {
        "format_version": 1,
        "changes": [
            {
                "resource": "container:worker",
                "action": "delete",
                "reason": "it left the spec; its volumes are kept",
                "reason_code": "left-spec",
                "risk": "none",
                "depends_on": [],
                "operations": [
                    {"op": "stop-container", "target": "worker"},
                    {"op": "remove-container", "target": "worker"},
                ],
            },
            {
                "resource": "container:app",
                "action": "replace",
                "reason": "mounts differ: /data was read-write, spec says read-only; "
                "its writable layer was not measured; stopping it may take up to 10 s",
                "reason_code": "config-changed",
                "risk": "restart",
                "depends_on": [],
                "order": "create-then-delete",
                "downtime": "from the old container's stop (up to 10 s) until the new one starts",
                "operations": [
                    {"op": "create-container", "target": "app_dsr_new"},
                    {"op": "stop-container", "target": "app"},
                    {"op": "rename-container", "target": "app", "to": "app_dsr_old"},
                    {"op": "rename-container", "target": "app_dsr_new", "to": "app"},
                    {"op": "start-container", "target": "app"},
                    {"op": "remove-container", "target": "app_dsr_old"},
                ],
            },
        ],
        "orphans": ["volume:cache"],
        "summary": {
            "create": 0,
            "replace": 1,
            "update": 0,
            "start": 0,
            "delete": 1,
            "build": 0,
            "adopt": 0,
            "blocked": 0,
        },
    }


def test_json_format_without_changes(tmp_path: Path) -> None:
    result = diff(tmp_path, OLD, "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.output) == {
        "format_version": 1,
        "changes": [],
        "orphans": [],
        "summary": dict.fromkeys(
            ("create", "replace", "update", "start", "delete", "build", "adopt", "blocked"), 0
        ),
    }


def test_markdown_format(tmp_path: Path) -> None:
    result = diff(tmp_path, READ_ONLY, "--format", "markdown")
    assert result.exit_code == 0
    assert result.output == expect("""
        ### dsr plan for project `web`

        **0 to create, 1 to replace, 0 to update, 0 to start, 0 to delete, 0 to build, 0 blocked.**

        | | Resource | Action | Risk | Reason | Operations |
        |---|---|---|---|---|---|
        | `-/+` | `container:app` | replace | **restart** | `mounts differ: /data was read-write, spec says read-only; its writable layer was not measured; stopping it may take up to 10 s (create-then-delete; downtime: from the old container's stop (up to 10 s) until the new one starts)` | `create-container app_dsr_new`<br>`stop-container app`<br>`rename-container app -> app_dsr_old`<br>`rename-container app_dsr_new -> app`<br>`start-container app`<br>`remove-container app_dsr_old` |
        """)


def test_volume_made_external_changes_nothing(tmp_path: Path) -> None:
    """A volume made external stays as it is on the engine: no change, nothing blocked."""
    new = edit("data: {}", "data: {external: true}")
    result = diff(tmp_path, new, "--detailed-exitcode")
    assert (result.exit_code, result.output) == (0, NO_CHANGES)


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": NO_ENGINE}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_python_m_reconciler_diff_needs_no_engine(tmp_path: Path) -> None:
    old_path = write(tmp_path / "old", OLD)
    new_path = write(tmp_path / "new", READ_ONLY)

    same = run_module("diff", old_path, old_path, "--detailed-exitcode")
    assert (same.returncode, same.stdout, same.stderr) == (0, NO_CHANGES, "")

    changed = run_module("diff", old_path, new_path, "--format", "json", "--detailed-exitcode")
    assert changed.returncode == 2, changed.stderr
    assert [c["action"] for c in json.loads(changed.stdout)["changes"]] == ["replace"]


def test_invalid_new_spec_exits_1_with_file_and_line(tmp_path: Path) -> None:
    old_path = write(tmp_path / "old", OLD)
    new_path = write(tmp_path / "new", edit("[data:/data]", "[nothere:/data]"))
    result = run_module("diff", old_path, new_path, "--detailed-exitcode")
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"{new_path}/spec.yaml:" in result.stderr
    assert "nothere" in result.stderr


PACKED = """\
version: 1
project: web
images:
  htdocs:
    context: ./htdocs
    path: /usr/local/apache2/htdocs
volume_containers:
  vc_site:
    image: htdocs
containers:
  web:
    image: busybox:1.36
    volumes_from: [vc_site]
"""


def packed_spec(folder: Path, index_html: str, mode: str = "") -> str:
    (folder / "htdocs").mkdir(parents=True)
    (folder / "htdocs" / "index.html").write_text(index_html)
    return write(folder, PACKED.replace("[vc_site]", f"[vc_site{mode}]"))


def test_unchanged_data_packed_image_has_no_changes(tmp_path: Path) -> None:
    old_path = packed_spec(tmp_path / "old", "hello\n")
    new_path = packed_spec(tmp_path / "new", "hello\n")
    result = CliRunner().invoke(cli, ["diff", old_path, new_path, "--detailed-exitcode"])
    assert (result.exit_code, result.output) == (0, NO_CHANGES)


def test_changed_data_packed_image_is_rebuilt_from_the_old_build(tmp_path: Path) -> None:
    """OLD's build is on the simulated engine, labelled: NEW's build says what changed."""
    old_path = packed_spec(tmp_path / "old", "hello\n", ":ro")
    new_path = packed_spec(tmp_path / "new", "hello, world\n", ":ro")
    result = CliRunner().invoke(cli, ["diff", old_path, new_path, "--format", "json"])
    assert result.exit_code == 0, result.output
    changes = json.loads(result.output)["changes"]
    assert [(c["resource"].split(":")[0], c["action"]) for c in changes] == [
        ("image", "build"),
        ("volume_container", "replace"),
        ("container", "replace"),
        ("volume", "delete"),  # the old build's volume, once the consumer has moved
    ]
    assert changes[3]["depends_on"] == ["volume_container:vc_site", "container:web"]
    assert changes[3]["risk"] == "none" and "mounted it read-only" in changes[3]["reason"]
    assert re.fullmatch(
        r"its context changed since dsr/web-htdocs:[0-9a-f]{16}: 1 entry changed \(index.html\)",
        changes[0]["reason"],
    ), changes[0]["reason"]


def test_a_refresh_keeps_the_old_volume_a_consumer_could_write(tmp_path: Path) -> None:
    """volumes_from without :ro mounts the packed volume read-write: offline, what the
    consumer may have written there cannot be compared with the build, so the old volume
    is kept (consumer-data) and listed as an orphan; no change is blocked for it."""
    old_path = packed_spec(tmp_path / "old", "hello\n")
    new_path = packed_spec(tmp_path / "new", "hello, world\n")
    result = CliRunner().invoke(cli, ["diff", old_path, new_path, "--format", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    changes = document["changes"]
    assert [(c["resource"].split(":")[0], c["action"], c["risk"]) for c in changes] == [
        ("image", "build", "none"),
        ("volume_container", "replace", "restart"),
        ("container", "replace", "restart"),
    ]
    (kept,) = document["kept"]
    assert kept["reason_code"] == "consumer-data"
    assert "web mounted it read-write and what it holds could not be compared" in kept["reason"]
    assert kept["resource"] in document["orphans"]


def test_old_checked_out_in_a_folder_that_names_no_project(tmp_path: Path) -> None:
    """CI checks the base revision out in a temporary folder (tmp.Xy12): OLD takes NEW's
    project, and the folder's name is no error."""
    old = tmp_path / "tmp.Xy12"
    new = tmp_path / "web"
    for folder, volumes in ((old, "data: {}"), (new, "data: {}\n  more: {}")):
        folder.mkdir()
        (folder / "spec.yaml").write_text(f"version: 1\nvolumes:\n  {volumes}\n")
    result = CliRunner().invoke(cli, ["diff", str(old), str(new), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert [c["resource"] for c in json.loads(result.output)["changes"]] == ["volume:more"]
