"""Agents on Docker Swarm: three extra engines form a swarm and run deploy/swarm/stack.yml.

The stack runs ``dsr run --git`` as a global service from the image deploy/image.sh builds
(loaded into each engine with docker save | docker load), each task binding its own node's
engine socket through a mount template and cloning a bare repository on this machine.
Checked: each host converges exactly its share; a commit reaches all three (the time is
printed against 2 x --git-pull); an agent whose task is killed is replaced by Swarm; with
one engine stopped the other two still converge and ``dsr status --fleet`` reports it down.

``DSR_TEST_DSR_IMAGE=TAG`` uses an image already on the machine's engine instead of
building one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import busybox_rootfs, import_image
from nodes import Node, Nodes, form_swarm, needs

REPO = Path(__file__).resolve().parents[2]
BUSYBOX = "dsr-test/busybox:nodes"
GIT_PULL = 3.0  # seconds: --git-pull of the agents
STACK = "dsrt"
PORT = 9464
WAIT = 120.0


def sh(*args: str, stdin: int | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        args, capture_output=True, text=True, stdin=stdin, timeout=timeout, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"$ {' '.join(args)}\n{done.stdout}\n{done.stderr}", pytrace=False)
    return done.stdout


@pytest.fixture(scope="module")
def dsr_image(run_id: str) -> Iterator[str]:
    given = os.environ.get("DSR_TEST_DSR_IMAGE")
    if given:
        yield given
        return
    tag = f"dsr-test/dsr:{run_id}"
    sh("bash", str(REPO / "deploy" / "image.sh"), tag, timeout=900)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


@pytest.fixture(scope="module")
def swarm(dsr_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    problem = needs()
    if problem:
        pytest.fail(f"cannot start extra engines: {problem}", pytrace=False)
    saved = tmp_path_factory.mktemp("image") / "dsr.tar"
    sh("docker", "save", "-o", str(saved), dsr_image)
    with Nodes("abc", labels={"c": {"role": "db"}}) as made:
        rootfs = busybox_rootfs()
        for node in made.nodes:
            import_image(node.api(), rootfs, BUSYBOX, ['CMD ["/bin/sh"]', "ENV PATH=/bin"])
            sh("docker", "-H", node.url, "load", "-q", "-i", str(saved))
        form_swarm(made)
        yield made


class Repo:
    """A bare repository on this machine and a work tree that pushes to it."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "fleet.git"
        self.work = root / "work"
        sh("git", "init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        sh("git", "clone", "--quiet", str(self.bare), str(self.work))

    def commit(self, text: str) -> float:
        (self.work / "specs").mkdir(exist_ok=True)
        (self.work / "specs" / "fleet.yaml").write_text(text)
        git = ["git", "-C", str(self.work), "-c", "user.email=t@t", "-c", "user.name=t"]
        sh(*git, "add", ".")
        sh(*git, "commit", "--quiet", "-m", "spec")
        sh(*git, "push", "--quiet", "origin", "HEAD:main")
        return time.monotonic()


def spec(*extra_volumes: str) -> str:
    """The fleet's spec; each of ``extra_volumes`` is one more line under ``volumes``."""
    extra = "".join(f"  {line}\n" for line in extra_volumes)
    return (
        "version: 1\nproject: fleet\nvolumes:\n"
        "  common: {}\n"
        "  web-data: {hosts: [dsr-node-a, dsr-node-b]}\n"
        "  db-data: {hosts: [role=db]}\n"
        f"{extra}"
        "containers:\n"
        "  web:\n"
        f"    image: {BUSYBOX}\n"
        "    command: [sleep, '3600']\n"
        "    init: true\n"
        "    hosts: ['dsr-node-[ab]']\n"
        "    mounts: [web-data:/data]\n"
    )


def holds(node: Node) -> set[str]:
    """What the project ``fleet`` has on this node's engine."""
    api = node.api()
    labels = {"label": "dsr.project=fleet"}
    found = {f"volume:{v.name}" for v in api.volumes.list(filters=labels)}
    found |= {
        f"container:{c.name}" for c in api.containers.list(filters=labels) if c.status == "running"
    }
    return found


LOGS: list[str] = []  # the manager's socket, to show the agents' logs when a wait fails


def wait_for(check: Callable[[], bool], what: str, timeout: float = WAIT) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic()
        except Exception:
            pass
        time.sleep(0.25)
    logs = ""
    if LOGS:
        logs = subprocess.run(
            ["docker", "-H", LOGS[0], "service", "logs", "--tail", "40", f"{STACK}_agent"],
            capture_output=True, text=True, timeout=60, check=False,
        ).stdout[-6000:]  # fmt: skip
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{logs}", pytrace=False)


def tasks(manager: Node) -> dict[str, str]:
    """Running agent tasks: node hostname -> container id."""
    out = sh(
        "docker", "-H", manager.url, "service", "ps", f"{STACK}_agent",
        "--filter", "desired-state=running", "--format", "{{.Node}} {{.CurrentState}} {{.ID}}",
    )  # fmt: skip
    running = {}
    for line in out.splitlines():
        host, state, *_ = line.split()
        if state == "Running":
            running[host] = line.split()[-1]
    return running


def deploy(swarm: Nodes, repo: Repo, image: str, tmp_path: Path) -> None:
    a = swarm["a"]
    key = tmp_path / "backup-key"
    key.write_bytes(os.urandom(64))
    sh("docker", "-H", a.url, "secret", "create", "dsr-backup-key", str(key))
    override = tmp_path / "override.yml"
    hosts = [f"{n.hostname}:{n.address}" for n in swarm.nodes]
    override.write_text(
        json.dumps(
            {
                "version": "3.8",
                "services": {
                    "agent": {
                        # The bare repository, at the same path in every task (file://).
                        "volumes": [
                            {"type": "bind", "source": str(repo.bare), "target": str(repo.bare)}
                        ],
                        # Each agent listens on its node's own address (they share one
                        # network namespace here): the node's name must resolve to it.
                        "extra_hosts": hosts,
                    }
                },
            }
        )
    )
    env = {
        **os.environ,
        "DSR_IMAGE": image,
        "DSR_GIT_URL": f"file://{repo.bare}",
        "DSR_GIT_REF": "main",
        "DSR_GIT_PULL": f"{GIT_PULL:g}s",
        "DSR_INTERVAL": "30s",
        "DSR_SPEC_PATH": "specs",
        "DSR_ENGINE_SOCKET": "/run/dsr-swarm-test/{{.Node.Hostname}}.sock",
        "DSR_METRICS_ADDR": "{{.Node.Hostname}}:" + str(PORT),
    }
    done = subprocess.run(
        ["docker", "-H", a.url, "stack", "deploy", "--resolve-image", "never",
         "-c", str(REPO / "deploy" / "swarm" / "stack.yml"), "-c", str(override), STACK],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def fleet_status(swarm: Nodes, tmp_path: Path) -> tuple[int, dict[str, dict[str, object]]]:
    inventory = tmp_path / "hosts.yaml"
    lines = ["version: 1", "hosts:"]
    for n in swarm.nodes:
        lines.append(f"  {n.hostname}: {{address: 'http://{n.address}:{PORT}'}}")
    inventory.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "status", "--fleet", str(inventory),
         "--format", "json", "--timeout", "3"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    data = json.loads(done.stdout)
    return done.returncode, {h["host"]: h for h in data["hosts"]}


SHARE_V1 = {
    "a": {"volume:common", "volume:web-data", "container:web"},
    "b": {"volume:common", "volume:web-data", "container:web"},
    "c": {"volume:common", "volume:db-data"},
}


def test_agents_on_swarm_converge_their_shares(
    swarm: Nodes, dsr_image: str, tmp_path: Path
) -> None:
    a, b, c = swarm["a"], swarm["b"], swarm["c"]
    repo = Repo(tmp_path)
    repo.commit(spec())
    deploy(swarm, repo, dsr_image, tmp_path)
    LOGS[:] = [a.url]

    # Each host converges exactly its share.
    wait_for(lambda: all(holds(swarm[x]) == SHARE_V1[x] for x in "abc"), "the first shares")
    wait_for(lambda: set(tasks(a)) == {a.hostname, b.hostname, c.hostname}, "three agents")

    # A commit reaches all three agents and is converged.
    pushed = repo.commit(spec("v2-marker: {}", "cache: {hosts: [dsr-node-c]}"))
    done = wait_for(
        lambda: (
            all("volume:v2-marker" in holds(swarm[x]) for x in "abc") and "volume:cache" in holds(c)
        ),
        "the second commit on every host",
    )
    took = done - pushed
    print(
        f"\nswarm: a commit reached all three agents and converged in {took:.1f} s "
        f"(target < 2 x --git-pull = {2 * GIT_PULL:g} s: {'met' if took < 2 * GIT_PULL else 'MISSED'})"
    )
    assert "volume:cache" not in holds(a) | holds(b)

    # The fleet's status: every agent answers, names its host, and is in sync.
    code, by_host = wait_for_status(
        swarm, tmp_path, lambda h: all(x["in_sync"] for x in h.values())
    )
    assert code == 0
    assert {h: s["status"]["host"] for h, s in by_host.items()} == {  # type: ignore[index]
        n.hostname: n.hostname for n in swarm.nodes
    }

    # Killing one agent's task: Swarm starts another, which goes on converging.
    before = tasks(a)[b.hostname]
    [agent] = b.api().containers.list(
        filters={"label": f"com.docker.swarm.service.name={STACK}_agent"}
    )
    agent.kill()
    wait_for(lambda: tasks(a).get(b.hostname, before) != before, "Swarm to replace b's agent")
    repo.commit(spec("v2-marker: {}", "v3-marker: {}", "cache: {hosts: [dsr-node-c]}"))
    wait_for(lambda: all("volume:v3-marker" in holds(swarm[x]) for x in "abc"), "the third commit")

    # One engine stops: the other two converge, and dsr status --fleet says c is down.
    swarm.stop(c)
    repo.commit(
        spec("v2-marker: {}", "v3-marker: {}", "v4-marker: {}", "cache: {hosts: [dsr-node-c]}")
    )
    wait_for(lambda: all("volume:v4-marker" in holds(swarm[x]) for x in "ab"), "a and b")
    code, by_host = wait_for_status(swarm, tmp_path, lambda h: h[c.hostname]["state"] == "down")
    assert code == 2
    assert by_host[a.hostname]["state"] == "up" and by_host[b.hostname]["state"] == "up"


def wait_for_status(
    swarm: Nodes, tmp_path: Path, good: Callable[[dict[str, dict[str, object]]], bool]
) -> tuple[int, dict[str, dict[str, object]]]:
    seen: list[tuple[int, dict[str, dict[str, object]]]] = []

    def check() -> bool:
        seen.append(fleet_status(swarm, tmp_path))
        return good(seen[-1][1])

    wait_for(check, "dsr status --fleet", timeout=60)
    return seen[-1]
