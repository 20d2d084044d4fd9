"""The seed article's scenarios, applied to the real engine: bind mounts shared by a web
cluster, a volume container with a bind and a managed volume, and idempotent re-applies."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from specgen import (
    ANONYMOUS,
    HTDOCS,
    HTTPD_COMMAND,
    SeedSet,
    exec_out,
    inspect,
    mounts_by_target,
    plan_json,
    prefixed_containers,
    seed_spec,
    write_events,
)

# The fixtures' types live in conftest.py, which tests do not import.
DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SEED_FILES = ("web-cluster.yaml", "volume-container.yaml")


@pytest.fixture
def seed(tmp_path: Path, prefix: str, busybox_image: str) -> SeedSet:
    return seed_spec(SEED_FILES, prefix, busybox_image, tmp_path, index=f"{prefix} index\n")


def test_the_seed_examples_apply_with_the_mounts_they_ask_for(
    dsr: DsrRunner, docker_client: docker.DockerClient, seed: SeedSet, prefix: str
) -> None:
    planned = plan_json(dsr("plan", seed.folder, "--format", "json", env=seed.env, check=True))
    expected = {
        *(f"container:{seed[n]}" for n in ("web1", "web2", "web3", "web-about")),
        *(f"container:{seed[n]}" for n in ("web4", "web5", "web6")),
        f"volume_container:{seed['vc_data']}",
    }
    creates = {c["resource"] for c in planned["changes"] if c["action"] == "create"}
    assert creates == expected, planned
    for web in ("web4", "web5", "web6"):
        (change,) = [c for c in planned["changes"] if c["resource"] == f"container:{seed[web]}"]
        assert f"volume_container:{seed['vc_data']}" in change["depends_on"]

    dsr("apply", seed.folder, env=seed.env, check=True)

    # web1..web3: the shared htdocs bind, read-write; no volumes_from.
    for web in ("web1", "web2", "web3"):
        attrs = inspect(docker_client, seed[web])
        assert attrs["State"]["Status"] == "running", attrs["State"]
        assert attrs["Config"]["Cmd"] == HTTPD_COMMAND
        mounts = mounts_by_target(attrs)
        assert set(mounts) == {HTDOCS}
        assert mounts[HTDOCS]["Type"] == "bind"
        assert mounts[HTDOCS]["Source"] == str(seed.htdocs)
        assert mounts[HTDOCS]["RW"] is True
        assert not attrs["HostConfig"]["VolumesFrom"]
        assert attrs["Config"]["Labels"]["dsr.managed"] == "true"
        assert attrs["Config"]["Labels"]["dsr.project"] == prefix

    # web-about: one file, read-only, next to the rest of the image's htdocs.
    about = mounts_by_target(inspect(docker_client, seed["web-about"]))
    about_target = f"{HTDOCS}/about.html"
    assert set(about) == {about_target}
    assert about[about_target]["Source"] == str(seed.folder / "htdocs-extra" / "about.html")
    assert about[about_target]["RW"] is False
    code, _ = docker_client.containers.get(seed["web-about"]).exec_run(
        ["sh", "-c", f"echo x >> {about_target}"]
    )
    assert code != 0, "the read-only single-file bind took a write"

    # vc_data: created, never started; the bind and an anonymous (managed) volume.
    vc = inspect(docker_client, seed["vc_data"])
    assert vc["State"]["Status"] == "created"
    assert vc["State"]["StartedAt"].startswith("0001-01-01")
    vc_mounts = mounts_by_target(vc)
    assert set(vc_mounts) == {HTDOCS, "/opt/tools"}
    assert (vc_mounts[HTDOCS]["Type"], vc_mounts[HTDOCS]["Source"]) == ("bind", str(seed.htdocs))
    assert vc_mounts[HTDOCS]["RW"] is True
    tools = vc_mounts["/opt/tools"]
    assert tools["Type"] == "volume" and ANONYMOUS.fullmatch(tools["Name"]), tools

    # web4..web6: vc_data's mounts at the same mount points, the same volume.
    for web in ("web4", "web5", "web6"):
        attrs = inspect(docker_client, seed[web])
        assert attrs["State"]["Status"] == "running"
        assert attrs["HostConfig"]["VolumesFrom"] == [seed["vc_data"]]
        mounts = mounts_by_target(attrs)
        assert set(mounts) == {HTDOCS, "/opt/tools"}
        assert mounts[HTDOCS]["Source"] == str(seed.htdocs)
        assert mounts["/opt/tools"]["Name"] == tools["Name"]
        assert mounts[HTDOCS]["RW"] is True and mounts["/opt/tools"]["RW"] is True

    # An edit on the host shows at once in every container sharing the bind, and is served.
    token = secrets.token_hex(8)
    (seed.htdocs / "news.html").write_text(token, encoding="utf-8")
    for web in ("web1", "web2", "web3", "web4", "web5", "web6"):
        assert exec_out(docker_client, seed[web], "cat", f"{HTDOCS}/news.html") == token
    served = exec_out(docker_client, seed["web2"], "wget", "-qO-", "http://127.0.0.1/news.html")
    assert served == token
    about_text = (seed.folder / "htdocs-extra" / "about.html").read_text(encoding="utf-8")
    assert (
        exec_out(docker_client, seed["web-about"], "wget", "-qO-", "http://127.0.0.1/about.html")
        == about_text
    )

    # The managed volume is shared too: written through web4, read through web6.
    exec_out(docker_client, seed["web4"], "sh", "-c", f"echo {token} > /opt/tools/t")
    assert exec_out(docker_client, seed["web6"], "cat", "/opt/tools/t") == f"{token}\n"

    assert len(prefixed_containers(docker_client, prefix)) == len(expected)


def test_a_second_apply_makes_no_write_call(
    dsr: DsrRunner, docker_client: docker.DockerClient, seed: SeedSet, prefix: str
) -> None:
    first_since = time.time() - 1
    dsr("apply", seed.folder, env=seed.env, check=True)
    first_until = time.time() + 1
    # The watcher sees what an apply does: the first one created and started everything.
    first = write_events(docker_client, first_since, first_until, prefix)
    assert sum(e.startswith("container create ") for e in first) == 8, first
    assert sum(e.startswith("container start ") for e in first) == 7, first

    dsr("plan", seed.folder, "--detailed-exitcode", env=seed.env, check=0)
    ids = {c["Id"] for c in prefixed_containers(docker_client, prefix)}

    since = time.time() - 0.5
    result = dsr("apply", seed.folder, env=seed.env, check=True)
    time.sleep(0.5)
    until = time.time()

    assert "No changes" in result.stdout, result.stdout
    assert write_events(docker_client, since, until, prefix) == []
    assert {c["Id"] for c in prefixed_containers(docker_client, prefix)} == ids
    dsr("plan", seed.folder, "--detailed-exitcode", env=seed.env, check=0)
