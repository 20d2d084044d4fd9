"""``dsr run`` on a git checkout: each pass names its commit; ``--git-pull`` applies pushes,
and a failed pull or a broken commit leaves the last good one applied."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import docker
import yaml
from daemonproc import Starter, run_daemon
from docker.errors import NotFound

__all__ = ["run_daemon"]

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        check=True,
    )
    return done.stdout.strip()


def commit(folder: Path, text: str, message: str) -> str:
    (folder / "dsr.yaml").write_text(text)
    git(folder, "add", "dsr.yaml")
    git(folder, "commit", "-qm", message)
    git(folder, "push", "-q", "origin", "HEAD")
    return git(folder, "rev-parse", "HEAD")


def doc(prefix: str, volumes: list[str], extra: Mapping[str, object] | None = None) -> str:
    names = {f"{prefix}-{v}": {} for v in volumes}
    return yaml.safe_dump({"version": 1, "project": prefix, "volumes": names, **(extra or {})})


def exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.api.inspect_volume(name)
        return True
    except NotFound:
        return False


def test_git_pull_applies_pushes_and_keeps_the_last_good_commit(
    run_daemon: Starter, tmp_path: Path, prefix: str, docker_client: docker.DockerClient
) -> None:
    upstream = tmp_path / "upstream.git"
    subprocess.run(["git", "init", "-q", "--bare", str(upstream)], check=True)
    dev = tmp_path / "dev"
    subprocess.run(["git", "clone", "-q", str(upstream), str(dev)], check=True)
    first = commit(dev, doc(prefix, ["a"]), "a")
    checkout = tmp_path / prefix  # the daemon's folder: named after the test's project
    subprocess.run(["git", "clone", "-q", str(upstream), str(checkout)], check=True)

    daemon = run_daemon(checkout, "--git-pull", "0.3")
    daemon.wait_for(lambda: exists(docker_client, f"{prefix}-a"), what="the first commit")
    daemon.wait_for(lambda: daemon.passes(), what="the pass event")  # logged after the change
    assert daemon.passes()[0]["commit"] == first

    second = commit(dev, doc(prefix, ["a", "b"]), "b")
    daemon.wait_for(lambda: exists(docker_client, f"{prefix}-b"), what="the pushed commit")
    daemon.wait_for(lambda: daemon.passes()[-1]["commit"] == second, what="the commit logged")
    assert any("git" in p["trigger"] for p in daemon.passes())

    # A broken commit: reported, and the spec of the last good one stays in force.
    commit(dev, doc(prefix, ["a", "b"]) + "volumes: [\n", "broken")
    daemon.wait_for(lambda: daemon.named("spec error"), what="the broken commit reported")
    docker_client.api.remove_volume(f"{prefix}-b")
    daemon.wait_for(lambda: exists(docker_client, f"{prefix}-b"), what="the last good spec")

    # An unreachable upstream: the pull fails, is logged and retried.
    upstream.rename(tmp_path / "gone.git")
    daemon.wait_for(lambda: len(daemon.named("git pull failed")) >= 2, what="failed pulls")
    (tmp_path / "gone.git").rename(upstream)
    commit(dev, doc(prefix, ["a", "b", "c"]), "c")
    daemon.wait_for(lambda: exists(docker_client, f"{prefix}-c"), timeout=30, what="recovered")
    assert daemon.metric("dsr_spec_errors") == 0
