"""The engine fixtures do what tests/engine/conftest.py says they do.

Every check uses fresh random content or names, so a test cannot pass by finding something an
earlier run left behind, and every "it is gone" is preceded by "it was there".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import NotFound
from docker.types import Mount
from specgen import members_of, tar_of

# The fixtures' types live in conftest.py, which tests do not import; these aliases mirror them.
Runner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]
Volumes = Mapping[str, Mapping[str, str]]


def run_busybox(
    client: docker.DockerClient,
    image: str,
    command: str,
    *,
    name: str,
    labels: Mapping[str, str],
    volumes: Volumes | None = None,
) -> str:
    """Run ``sh -c command`` to completion without network; return its output. The container
    stays for the cleanup fixture to remove."""
    container = client.containers.run(
        image,
        ["sh", "-c", command],
        name=name,
        labels=dict(labels),
        volumes={k: dict(v) for k, v in (volumes or {}).items()},
        network_mode="none",
        detach=True,
    )
    status = container.wait(timeout=60)["StatusCode"]
    output = container.logs().decode()
    assert status == 0, f"{command!r} exited {status}: {output}"
    return output


def exists(get: Callable[[str], object], name: str) -> bool:
    try:
        get(name)
    except NotFound:
        return False
    return True


# --- markers, names -----------------------------------------------------------------------


def test_engine_tests_get_the_engine_marker(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("engine") is not None


def test_run_id_and_prefix_are_unique_per_test(
    run_id: str, prefix: str, labels: dict[str, str]
) -> None:
    assert re.fullmatch(r"dsrt-[0-9a-f]{8}", run_id)
    assert re.fullmatch(rf"{run_id}-[0-9a-f]{{6}}", prefix)
    assert labels == {"dsr.test-run": run_id, "dsr.test-prefix": prefix}


# --- images -------------------------------------------------------------------------------


def test_busybox_image_runs_its_applets(
    docker_client: docker.DockerClient, busybox_image: str, prefix: str, labels: dict[str, str]
) -> None:
    config = docker_client.images.get(busybox_image).attrs["Config"]
    assert config["Cmd"] == ["/bin/sh"]
    assert "PATH=/bin" in config["Env"]

    applets = ["sh", "httpd", "cat", "ls", "sleep", "echo", "wget", "mkdir", "tar", "sha256sum"]
    token = secrets.token_hex(8)
    output = run_busybox(
        docker_client,
        busybox_image,
        f'echo "$PATH {token}"; for a in {" ".join(applets)}; do which "$a"; done',
        name=f"{prefix}-applets",
        labels=labels,
    )
    assert output.split("\n") == [f"/bin {token}", *(f"/bin/{a}" for a in applets), ""]


def test_empty_image_has_no_files(docker_client: docker.DockerClient, empty_image: str) -> None:
    image = docker_client.images.get(empty_image)
    assert image.attrs["Size"] == 0
    assert image.attrs["Config"]["Cmd"] == ["/never-started"]


# --- volumes, archives --------------------------------------------------------------------


def test_a_volume_carries_data_between_containers(
    docker_client: docker.DockerClient, busybox_image: str, prefix: str, labels: dict[str, str]
) -> None:
    volume = docker_client.volumes.create(f"{prefix}-data", labels=labels)
    mount = {volume.name: {"bind": "/data", "mode": "rw"}}
    payload = secrets.token_hex(16)

    run_busybox(
        docker_client,
        busybox_image,
        f"mkdir -p /data/sub && echo {payload} > /data/sub/hello.txt",
        name=f"{prefix}-writer",
        labels=labels,
        volumes=mount,
    )
    read = run_busybox(
        docker_client,
        busybox_image,
        "cat /data/sub/hello.txt",
        name=f"{prefix}-reader",
        labels=labels,
        volumes=mount,
    )
    assert read == f"{payload}\n"


def test_a_never_started_helper_reads_and_writes_a_volume(
    docker_client: docker.DockerClient,
    busybox_image: str,
    empty_image: str,
    prefix: str,
    labels: dict[str, str],
) -> None:
    volume = docker_client.volumes.create(f"{prefix}-data", labels=labels)
    mount = {volume.name: {"bind": "/data", "mode": "rw"}}
    payload = secrets.token_hex(16)
    run_busybox(
        docker_client,
        busybox_image,
        f"mkdir -p /data/sub && echo {payload} > /data/sub/hello.txt",
        name=f"{prefix}-writer",
        labels=labels,
        volumes=mount,
    )

    helper = docker_client.containers.create(
        empty_image, name=f"{prefix}-helper", labels=labels, volumes=mount, network_disabled=True
    )
    chunks, stat = helper.get_archive("/data/sub/hello.txt")
    assert stat is not None and stat["name"] == "hello.txt"
    assert members_of(b"".join(chunks)) == {"hello.txt": f"{payload}\n".encode()}

    new_payload = secrets.token_bytes(32)
    assert helper.put_archive("/data/sub", tar_of("new.bin", new_payload))
    listing = run_busybox(
        docker_client,
        busybox_image,
        "sha256sum /data/sub/new.bin && ls /data/sub",
        name=f"{prefix}-check",
        labels=labels,
        volumes=mount,
    )
    digest = hashlib.sha256(new_payload).hexdigest()
    assert listing == f"{digest}  /data/sub/new.bin\nhello.txt\nnew.bin\n"

    helper.reload()
    assert helper.status == "created"
    assert helper.attrs["State"]["StartedAt"].startswith("0001-01-01")


# --- cleanup ------------------------------------------------------------------------------


def test_cleanup_removes_what_the_test_owns_and_nothing_else(
    docker_client: docker.DockerClient,
    busybox_image: str,
    run_id: str,
    prefix: str,
    labels: dict[str, str],
    cleanup: Any,
) -> None:
    client = docker_client
    project_labels = {"dsr.project": prefix, "dsr.test-run": run_id}
    # Owned by name, by dsr project label, by test label.
    named_volume = client.volumes.create(f"{prefix}-named")
    project_volume = client.volumes.create(f"dsrx-{secrets.token_hex(4)}", labels=project_labels)
    labelled_volume = client.volumes.create(f"dsrx-{secrets.token_hex(4)}", labels=labels)
    named_container = client.containers.create(
        busybox_image,
        ["sleep", "300"],
        name=f"{prefix}-created",
        volumes={named_volume.name: {"bind": "/data", "mode": "rw"}},
        mounts=[Mount(target="/anon", source=None, type="volume")],
    )
    anonymous = [m["Name"] for m in named_container.attrs["Mounts"] if m["Destination"] == "/anon"]
    assert len(anonymous) == 1 and exists(client.volumes.get, anonymous[0])
    running = client.containers.run(
        busybox_image,
        ["sleep", "300"],
        name=f"dsrx-{secrets.token_hex(4)}",
        labels=project_labels,
        network_mode="none",
        detach=True,
    )
    running.reload()
    assert running.status == "running"
    assert client.images.get(busybox_image).tag(f"{prefix}-img", "v1")
    named_network = client.networks.create(f"{prefix}-net", driver="bridge")
    labelled_network = client.networks.create(f"dsrx-{secrets.token_hex(4)}", labels=labels)
    named_network.connect(named_container)  # a network in use goes after its containers
    # Not this test's: another test's name in the same run, and the session's image.
    other = f"{run_id}-{secrets.token_hex(3)}-other"
    other_volume = client.volumes.create(other, labels={"dsr.test-run": run_id})
    other_container = client.containers.create(
        busybox_image, ["true"], name=other, labels={"dsr.test-run": run_id}
    )
    other_network = client.networks.create(other, labels={"dsr.test-run": run_id})
    try:
        expected_containers = {f"{prefix}-created", str(running.name)}
        expected_volumes = {named_volume.name, project_volume.name, labelled_volume.name}
        owned = cleanup.owned()
        assert owned.containers == expected_containers
        assert owned.volumes == expected_volumes
        assert owned.images == {f"{prefix}-img:v1"}
        assert owned.networks == {f"{prefix}-net", str(labelled_network.name)}

        removed = cleanup()

        assert removed == owned
        assert cleanup.owned().is_empty
        for name in expected_containers:
            assert not exists(client.containers.get, name)
        for name in [*expected_volumes, anonymous[0]]:
            assert not exists(client.volumes.get, name)
        assert not exists(client.images.get, f"{prefix}-img:v1")
        for name in owned.networks:
            assert not exists(client.networks.get, name)
        assert exists(client.volumes.get, other)
        assert exists(client.containers.get, other)
        assert exists(client.networks.get, other)
        assert busybox_image in client.images.get(busybox_image).tags
    finally:
        other_container.remove(force=True)
        other_volume.remove()
        other_network.remove()


INNER_TESTS = """
import os
from pathlib import Path


def test_leaks_then_fails(docker_client, empty_image, prefix, labels):
    Path(os.environ["INNER_RECORD"]).write_text(prefix)
    volume = docker_client.volumes.create(f"{prefix}-leak")
    docker_client.volumes.create(f"leak-{prefix}", labels=labels)
    docker_client.networks.create(f"{prefix}-leak")
    docker_client.containers.create(
        empty_image, name=f"{prefix}-leak", volumes={volume.name: {"bind": "/data"}}
    )
    raise AssertionError("failing on purpose")


def test_the_failed_tests_objects_are_gone(docker_client):
    leaked = Path(os.environ["INNER_RECORD"]).read_text()
    assert leaked
    assert not docker_client.containers.list(all=True, filters={"name": leaked})
    assert not docker_client.volumes.list(filters={"name": leaked})
    assert not docker_client.networks.list(filters={"name": leaked})
"""


def run_inner_pytest(tmp_path: Path, tests: str, env: Mapping[str, str]) -> str:
    """Run ``tests`` in a separate pytest with a copy of the engine conftest; return output."""
    inner = tmp_path / "inner"
    inner.mkdir()
    shutil.copy(Path(__file__).with_name("conftest.py"), inner / "conftest.py")
    # The conftest imports the S3 server helper from its parent folder, as from tests/.
    shutil.copy(Path(__file__).parents[1] / "s3server.py", tmp_path / "s3server.py")
    (inner / "test_inner.py").write_text(textwrap.dedent(tests))
    (inner / "pytest.ini").write_text("[pytest]\nmarkers =\n    engine: engine test\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-c", "pytest.ini"],
        cwd=inner,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    return result.stdout + result.stderr


def test_cleanup_runs_even_when_the_test_fails(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    record = tmp_path / "record"
    output = run_inner_pytest(tmp_path, INNER_TESTS, {"INNER_RECORD": str(record)})

    assert re.search(r"\b1 failed, 1 passed\b", output), output
    assert "failing on purpose" in output
    leaked = record.read_text()
    assert re.fullmatch(r"dsrt-[0-9a-f]{8}-[0-9a-f]{6}", leaked)
    inner_run_id = leaked.rsplit("-", 1)[0]
    assert not docker_client.containers.list(all=True, filters={"name": inner_run_id})
    assert not docker_client.volumes.list(filters={"name": inner_run_id})
    assert not docker_client.networks.list(filters={"name": inner_run_id})
    assert not [
        tag for image in docker_client.images.list() for tag in image.tags if inner_run_id in tag
    ]


def test_no_engine_is_a_failure_not_a_skip(tmp_path: Path) -> None:
    output = run_inner_pytest(
        tmp_path,
        "def test_needs_engine(docker_client):\n    pass\n",
        {"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"},
    )
    assert re.search(r"\b1 error\b", output), output
    assert "deploy/test.sh" in output
    assert "skipped" not in output


# --- running dsr --------------------------------------------------------------------------

FAKE_CLI = (
    "import json, os, sys;"
    "print(json.dumps({'args': sys.argv[1:], 'state': os.environ.get('DSR_STATE_DIR'),"
    " 'x': os.environ.get('DSR_TEST_X'), 'home': 'HOME' in os.environ}));"
    "sys.exit(int(sys.argv[1]))"
)


@pytest.mark.parametrize("dsr_command", [[sys.executable, "-c", FAKE_CLI]])
def test_dsr_runs_the_command_with_state_dir_and_env(
    dsr: Runner, dsr_state_dir: Path, tmp_path: Path
) -> None:
    result = dsr("3", tmp_path / "spec.yaml", env={"DSR_TEST_X": "yes", "HOME": None})
    assert result.returncode == 3
    assert json.loads(result.stdout) == {
        "args": ["3", str(tmp_path / "spec.yaml")],
        "state": str(dsr_state_dir),
        "x": "yes",
        "home": False,
    }
    assert dsr_state_dir.is_dir() and dsr_state_dir.is_relative_to(tmp_path)

    assert dsr("0", check=True).returncode == 0
    assert dsr("2", check=2).returncode == 2
    with pytest.raises(pytest.fail.Exception, match=r"expected exit 0(.|\n)*exit: 1"):
        dsr("1", check=True)
    with pytest.raises(pytest.fail.Exception, match="expected exit 2"):
        dsr("0", check=2)


def test_dsr_runs_the_reconciler_module(dsr_command: list[str]) -> None:
    assert dsr_command == [sys.executable, "-m", "reconciler"]


def test_tmp_spec_writes_into_a_directory_named_after_the_prefix(
    tmp_spec: SpecWriter, prefix: str
) -> None:
    path = tmp_spec(
        """
        volumes:
          data: {}
        """
    )
    assert path.parent.name == prefix
    assert path.name == "dsr.yaml"
    assert path.read_text() == "volumes:\n  data: {}\n"
    other = tmp_spec("containers: {}\n", name="more.yaml")
    assert other.parent == path.parent
