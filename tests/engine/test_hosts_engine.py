"""Hosts against real engines: two extra dockerd on this machine play hosts ``a`` and ``b``.

A volume with data moves from one to the other (its ``hosts`` change): the new host waits
until the old one offered it, restores and verifies it, and only then the old one deletes
its copy (``reclaim: delete``). Every byte, mode, owner and link is kept.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import busybox_rootfs, import_image
from nodes import Nodes, needs

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
IMAGE = "dsr-test/busybox:nodes"
FILL = (
    "mkdir -p /v/sub/empty && echo one > /v/a.txt && echo two > /v/sub/b.txt && "
    "head -c 2000000 /dev/urandom > /v/sub/big.bin && chmod 4755 /v/a.txt && "
    "chown 123:456 /v/sub/b.txt && ln -s a.txt /v/link && ln /v/a.txt /v/hard"
)
LISTING = (
    "cd /v && find . | sort | while read f; do ls -ld \"$f\" | awk '{print $1,$3,$4,$5,$9}'; "
    'if [ -f "$f" ]; then md5sum "$f"; fi; done'
)


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Nodes]:
    problem = needs()
    if problem:
        pytest.fail(f"cannot start extra engines: {problem}", pytrace=False)
    with Nodes("ab") as made:
        rootfs = busybox_rootfs()
        for node in made.nodes:
            import_image(node.api(), rootfs, IMAGE, ['CMD ["/bin/sh"]', "ENV PATH=/bin"])
        yield made


def spec(folder: Path, host: str, shared: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dsr.yaml").write_text(
        textwrap.dedent(f"""\
            version: 1
            project: moving
            volumes:
              data: {{hosts: [{host}], reclaim: delete}}
            containers:
              app:
                image: {IMAGE}
                command: [sleep, "3600"]
                hosts: [{host}]
                mounts: [data:/v]
            backups:
              nightly: {{volumes: [data], destination: {shared}}}
            """)
    )
    return folder


def run_in(node_url: str, command: str) -> str:
    done = subprocess.run(
        ["docker", "-H", node_url, "run", "--rm", "-v", "data:/v", IMAGE, "sh", "-c", command],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout


def test_a_volume_moves_between_hosts_with_every_byte(
    two_nodes: Nodes, dsr: DsrRunner, tmp_path: Path
) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    shared = tmp_path / "shared"
    old = spec(tmp_path / "v1", a.hostname, shared)
    new = spec(tmp_path / "v2", b.hostname, shared)
    state_a, state_b = tmp_path / "state-a", tmp_path / "state-b"
    # The fleet's one backup-key (a Swarm secret in deploy/swarm): b trusts a's snapshot.
    key = tmp_path / "backup-key"
    key.write_bytes(os.urandom(64))

    def on(node_url: str, state: Path, *args: object, check: int = 0) -> str:
        done = dsr(
            "--docker-host", node_url, "--state-dir", state, *args, check=check,
            env={"DSR_BACKUP_KEY_FILE": str(key)},
        )  # fmt: skip
        return done.stdout + done.stderr

    # Host a: the engine's own name (docker info) selects its share.
    on(a.url, state_a, "apply", old)
    run_in(a.url, FILL)
    before = run_in(a.url, LISTING)
    on(a.url, state_a, "apply", old)  # a later pass: nothing to do, "held" stays stated
    held = json.loads((shared / ".dsr-handoff/moving/data" / f"{a.hostname}.json").read_text())
    assert held["state"] == "held"
    assert not b.api().volumes.list(filters={"name": "data"})

    # b has the new commit first: it waits, and makes no empty volume meanwhile.
    out = on(b.url, state_b, "apply", new, check=3)
    assert "has not handed it over yet" in out
    assert not b.api().volumes.list(filters={"name": "data"})

    # a applies it: its container goes, the volume is offered and kept.
    out = on(a.url, state_a, "apply", new)
    assert "offered to the new host" in out
    assert a.api().volumes.get("data")
    offered = json.loads((shared / ".dsr-handoff/moving/data" / f"{a.hostname}.json").read_text())
    assert offered["state"] == "offered" and offered["snapshot"]
    on(a.url, state_a, "apply", new)  # offered: nothing happens until b restored it
    assert a.api().volumes.get("data")

    # b restores the offer, verified, and starts its container on it.
    out = on(b.url, state_b, "apply", new)
    assert "moved here from host dsr-node-a" in out
    restored = json.loads((shared / ".dsr-handoff/moving/data" / f"{b.hostname}.json").read_text())
    assert (restored["state"], restored["source"]) == ("restored", a.hostname)
    assert b.api().containers.get("app").status == "running"

    # Only now a reclaims its copy, by its policy (delete).
    out = on(a.url, state_a, "apply", new)
    assert "volume:data" in out
    assert not a.api().volumes.list(filters={"name": "data"})
    b.api().containers.get("app").stop(timeout=1)
    assert run_in(b.url, LISTING) == before
    on(b.url, state_b, "apply", new)  # converged: app running again, nothing else
    on(a.url, state_a, "plan", new, "--detailed-exitcode")
