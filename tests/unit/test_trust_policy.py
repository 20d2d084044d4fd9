"""Issue 8, classes 1-3: every host path goes through one policy, decided on its resolved
form, refusing parents of protected paths, dsr's own socket and folders, and symlinks
through allowed places.

Each case writes ``specs/spec.yaml`` in a fresh temporary directory (``$TMP`` in texts),
runs ``dsr validate`` in-process with ``DSR_STATE_DIR=$TMP/state`` and
``DOCKER_HOST=unix://$TMP/engine/docker.sock`` (a real socket the test binds), and compares
the printed lines exactly; each must take under 2 s, print no traceback and change nothing.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main

F = "specs/spec.yaml"
REFUSED = "refused by the default host-path policy (an admin --policy file can allow it)"
BY_ADMIN = "refused by the policy admin/policy.yaml (an admin --policy file can allow it)"
SHM = f"/dev/shm/dsr-t8-{uuid.uuid4().hex[:8]}"  # a link the /dev/shm cases make


@dataclass(frozen=True)
class Case:
    spec: str
    expected: list[str]
    setup: Callable[[Path], None] = lambda root: None
    policy: str | None = None
    absent: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)  # more files below $TMP


def case(case_id: str, spec: str, expected: list[str], **options: Any) -> Any:
    return pytest.param(Case(spec, expected, **options), id=case_id)


def bind(source: str, create: bool = False) -> str:
    return (
        "version: 1\nproject: t8x\ncontainers:\n  web:\n    image: httpd:2.4\n    mounts:\n"
        f"      - type: bind\n        source: {source}\n        target: /data\n"
        + ("        create: true\n" if create else "")
    )


def volume(opts: str) -> str:
    return f"version: 1\nproject: t8x\nvolumes:\n  data:\n    driver_opts: {opts}\n"


def backup(paths: str, destination: str | None = None) -> str:
    text = f"version: 1\nproject: t8x\nbackups:\n  nightly:\n    paths: [{paths}]\n"
    return text + (f"    destination: {destination}\n" if destination else "")


def image(context: str) -> str:
    return f"version: 1\nproject: t8x\nimages:\n  site:\n    context: {context}\n    path: /srv\n"


def mkdirs(*paths: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        for path in paths:
            (root / path).mkdir(parents=True, exist_ok=True)

    return make


def links(**pairs: str) -> Callable[[Path], None]:
    """``name=target``; ``$TMP`` in a target is the temp dir, ``__`` in a name is ``/``."""

    def make(root: Path) -> None:
        for name, target in pairs.items():
            link = root / name.replace("__", "/")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target.replace("$TMP", str(root)))

    return make


def both(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        for step in steps:
            step(root)

    return make


def hard_link_to_socket(root: Path) -> None:
    os.link(root / "engine" / "docker.sock", root / "data" / "innocent")


def shm_link(root: Path) -> None:
    os.symlink("/etc", SHM)


CLASS_1 = [  # host paths the policy never saw
    case(
        "device-bind-of-etc",
        volume("{type: none, o: bind, device: /etc}"),
        [f"{F}:5: volumes.data.driver_opts.device: /etc is under the protected /etc; {REFUSED}"],
    ),
    case(
        "device-through-dotdot",
        volume("{type: none, o: rbind, device: /srv/../root}"),
        [
            f"{F}:5: volumes.data.driver_opts.device: /srv/../root resolves to /root, which "
            f"is under the protected /root; {REFUSED}"
        ],
    ),
    case(
        "device-is-a-disk",
        volume("{type: ext4, device: /dev/sda1}"),
        [
            f"{F}:5: volumes.data.driver_opts.device: /dev/sda1 is under the protected /dev; {REFUSED}"
        ],
    ),
    case(
        "device-relative",
        volume("{type: none, o: bind, device: etc}"),
        [
            f"{F}:4: volumes.data: driver_opts.device: 'etc' must be an absolute host path "
            "(the local driver mounts it from the host)"
        ],
    ),
    case(
        "overlay-lowerdir-of-etc",
        volume("{type: overlay, device: overlay, o: 'lowerdir=/etc:/srv,upperdir=/tmp/u'}"),
        [f"{F}:5: volumes.data.driver_opts.o: /etc is under the protected /etc; {REFUSED}"],
    ),
    case(
        "device-with-the-driver-in-capitals",
        volume("{type: none, o: bind, device: /etc}").replace(
            "    driver_opts", "    driver: Local\n    driver_opts"
        ),
        [f"{F}:6: volumes.data.driver_opts.device: /etc is under the protected /etc; {REFUSED}"],
    ),
    case(
        "driver-name-with-a-space",
        volume("{type: none, o: bind, device: /etc}").replace(
            "    driver_opts", "    driver: ' local'\n    driver_opts"
        ),
        [f"{F}:5: volumes.data.driver: ' local' is not a volume driver name"],
    ),
    case(
        "volume-of-the-hosts-proc",
        volume("{type: proc, device: proc}"),
        [
            f"{F}:4: volumes.data: driver_opts.type: 'proc' is a kernel filesystem; the engine "
            "would mount the host's own, so dsr refuses it"
        ],
    ),
    case(
        "image-context-etc-skel",
        image("/etc/skel"),
        [f"{F}:5: images.site.context: /etc/skel is under the protected /etc; {REFUSED}"],
    ),
    case(
        "image-context-climbs-to-root",
        image("../../../../../../../../root"),
        [f"{F}:5: images.site.context: /root is under the protected /root; {REFUSED}"],
    ),
    case(
        "backup-destination-in-docker",
        backup("./specs", "/var/lib/docker/volumes"),
        [
            f"{F}:6: backups.nightly.destination: /var/lib/docker/volumes is under the "
            f"protected /var/lib/docker; {REFUSED}"
        ],
    ),
    case(
        "create-under-etc-creates-nothing",
        bind("/etc/dsr-t8-new", create=True),
        [
            f"{F}:8: containers.web.mounts[0].source: /etc/dsr-t8-new is under the "
            f"protected /etc; {REFUSED}"
        ],
        absent=("/etc/dsr-t8-new",),
    ),
]

CLASS_2 = [  # parents of protected paths, dsr's own socket and folders
    case(
        "bind-run",
        bind("/run"),
        [
            f"{F}:8: containers.web.mounts[0].source: /run contains the protected "
            f"/run/docker*; {REFUSED}"
        ],
    ),
    case(
        "bind-var-lib",
        bind("/var/lib"),
        [
            f"{F}:8: containers.web.mounts[0].source: /var/lib contains the protected "
            f"/var/lib/docker; {REFUSED}"
        ],
    ),
    case(
        "bind-var-with-trailing-slash",
        bind("/var/"),
        [
            f"{F}:8: containers.web.mounts[0].source: /var contains the protected "
            f"/var/lib/docker; {REFUSED}"
        ],
    ),
    case(
        "bind-run-containerd",
        bind("/run/containerd"),
        [
            f"{F}:8: containers.web.mounts[0].source: /run/containerd is under the protected "
            f"/run/containerd; {REFUSED}"
        ],
    ),
    case(
        "backup-of-root-through-double-slash",
        backup("//"),
        [f"{F}:5: backups.nightly.paths[0]: / is the host's root; {REFUSED}"],
    ),
    case(
        "bind-the-configured-socket",
        bind("$TMP/engine/docker.sock"),
        [
            f"{F}:8: containers.web.mounts[0].source: $TMP/engine/docker.sock is the Docker socket; {REFUSED}"
        ],
    ),
    case(
        "bind-the-folder-of-the-configured-socket",
        bind("$TMP/engine"),
        [
            f"{F}:8: containers.web.mounts[0].source: $TMP/engine contains the protected "
            f"Docker socket $TMP/engine/docker.sock; {REFUSED}"
        ],
    ),
    case(
        "bind-a-hard-link-to-the-socket",
        bind("$TMP/data/innocent"),
        [
            f"{F}:8: containers.web.mounts[0].source: $TMP/data/innocent is the Docker socket; {REFUSED}"
        ],
        setup=both(mkdirs("data"), hard_link_to_socket),
    ),
    case(
        "bind-the-state-dir",
        bind("$TMP/state", create=True),
        [
            f"{F}:8: containers.web.mounts[0].source: $TMP/state is under the protected dsr "
            f"state directory $TMP/state; {REFUSED}"
        ],
        absent=("state",),
    ),
    case(
        "backup-of-the-backups",
        backup("$TMP/state/backups/nightly"),
        [
            f"{F}:5: backups.nightly.paths[0]: $TMP/state/backups/nightly is under the "
            f"protected dsr state directory $TMP/state; {REFUSED}"
        ],
    ),
    case(
        "backup-of-a-folder-holding-the-state-dir",
        backup("$TMP"),
        [
            f"{F}:5: backups.nightly.paths[0]: $TMP contains the protected Docker socket "
            f"$TMP/engine/docker.sock; {REFUSED}"
        ],
    ),
    case(
        "destination-in-the-backup-dir-is-fine",
        backup("./specs", "$TMP/state/backups/site"),
        [],
    ),
    case(
        "destination-the-state-dir-itself",
        backup("./specs", "$TMP/state"),
        [
            f"{F}:6: backups.nightly.destination: $TMP/state is under the protected dsr "
            f"state directory $TMP/state; {REFUSED}"
        ],
    ),
]

CLASS_3 = [  # symlinks through allowed places
    case(
        "allowed-shm-link-to-etc",
        bind(SHM),
        [
            f"{F}:8: containers.web.mounts[0].source: {SHM} resolves to /etc, which is under "
            f"the protected /etc; {BY_ADMIN}"
        ],
        setup=lambda root: shm_link(root),
        policy="allow: [/dev/shm]\n",
    ),
    case(
        "bind-roots-escaped-by-a-link",
        bind("$TMP/srv/out"),
        [
            f"{F}:8: containers.web.mounts[0].source: $TMP/srv/out resolves to $TMP/other, "
            "which is outside the allowed roots $TMP/srv (the policy admin/policy.yaml)"
        ],
        setup=both(mkdirs("srv", "other"), links(srv__out="$TMP/other")),
        policy="bind_roots: [$TMP/srv]\n",
    ),
    case(
        "written-outside-resolved-inside-the-roots",
        bind("$TMP/elsewhere"),
        [],
        setup=both(mkdirs("srv/data"), links(elsewhere="$TMP/srv/data")),
        policy="bind_roots: [$TMP/srv]\n",
    ),
    case(
        "link-chain-to-var-lib",
        bind("$TMP/a"),
        [
            f"{F}:8: containers.web.mounts[0].source: $TMP/a resolves to /var/lib, which "
            f"contains the protected /var/lib/docker; {REFUSED}"
        ],
        setup=links(a="$TMP/b", b="/var/lib"),
    ),
    case(
        "relative-link-to-root",
        bind("./up"),
        [
            f"{F}:8: containers.web.mounts[0].source: $TMP/specs/up resolves to /, which is "
            f"the host's root; {REFUSED}"
        ],
        setup=links(specs__up="../../../../../../../.."),
    ),
    case(
        "allowed-folder-holding-a-link-to-the-socket",
        bind("$TMP/ok/sock"),
        [
            f"{F}:8: containers.web.mounts[0].source: $TMP/ok/sock resolves to "
            f"$TMP/engine/docker.sock, which is the Docker socket; {BY_ADMIN}"
        ],
        setup=both(mkdirs("ok"), links(ok__sock="$TMP/engine/docker.sock")),
        policy="allow: [$TMP/ok]\n",
    ),
    case(
        "create-true-below-a-link-to-etc",
        bind("$TMP/cfg/new", create=True),
        [
            f"{F}:8: containers.web.mounts[0].source: $TMP/cfg/new resolves to /etc/new, "
            f"which is under the protected /etc; {REFUSED}"
        ],
        setup=links(cfg="/etc"),
        absent=("/etc/new",),
    ),
]


def snapshot(root: Path) -> dict[str, tuple[bool, int]]:
    return {
        str(p.relative_to(root)): (p.is_dir(), p.lstat().st_size)
        for p in root.rglob("*")
        if not p.is_socket()
    }


@pytest.fixture
def engine_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A listening unix socket that plays the engine's, named by DOCKER_HOST."""
    (tmp_path / "engine").mkdir()
    path = tmp_path / "engine" / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    monkeypatch.setenv("DSR_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    try:
        yield path
    finally:
        server.close()
        if os.path.islink(SHM):
            os.unlink(SHM)


def run_validate(root: Path, c: Case, capsys: pytest.CaptureFixture[str]) -> list[str]:
    (root / "specs").mkdir()
    (root / "specs" / "spec.yaml").write_text(c.spec.replace("$TMP", str(root)))
    c.setup(root)
    args = ["validate", "specs"]
    if c.policy is not None:
        (root / "admin").mkdir()
        (root / "admin" / "policy.yaml").write_text(c.policy.replace("$TMP", str(root)))
        args[1:1] = ["--policy", "admin/policy.yaml"]
    before = snapshot(root)
    start = time.perf_counter()
    with pytest.raises(SystemExit) as done:
        main(args)
    assert time.perf_counter() - start < 2.0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert snapshot(root) == before, "validating changed the host"
    for path in c.absent:
        assert not os.path.lexists(path if path.startswith("/") else root / path)
    if not c.expected:
        assert done.value.code == 0, out + err
        return []
    assert done.value.code == 1
    return [line.replace(str(root), "$TMP") for line in (out + err).splitlines()]


@pytest.mark.parametrize("c", CLASS_1 + CLASS_2 + CLASS_3)
def test_host_path_is_refused(
    c: Case, tmp_path: Path, engine_socket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_validate(tmp_path, c, capsys) == c.expected


def test_an_edited_saved_plan_passes_the_same_host_path_check(tmp_path: Path) -> None:
    from reconciler.errors import PlanError
    from reconciler.plan.model import (
        Action,
        Change,
        ContainerParams,
        ImageParams,
        MountParams,
        Plan,
        ReasonCode,
        VolumeParams,
    )
    from reconciler.saved import check_saved, read_saved_plan
    from reconciler.snapshot import Observed
    from reconciler.spec.policy import Policy

    ours = {"dsr.managed": "true", "dsr.project": "p"}
    bind = MountParams(type="bind", target="/data", source="/var/lib")
    container = ContainerParams(
        name="web", image="busybox", labels=ours, mounts=(bind,), make_dirs=("/etc/new",)
    )
    volume = VolumeParams(
        name="v",
        driver="local",
        driver_opts={"type": "none", "o": "bind", "device": "/root"},
        labels=ours,
    )
    image = ImageParams(
        tag="dsr/p-x:1", labels=ours, context="/etc/skel", path="/srv", base="scratch"
    )
    missing = ReasonCode.MISSING
    saved = Plan(
        project="p",
        changes=(
            Change("container:web", Action.CREATE, "", missing, container=container),
            Change("volume:v", Action.CREATE, "", missing, volume=volume),
            Change("image:x", Action.BUILD, "", missing, image=image),
        ),
    )
    with pytest.raises(PlanError) as refused:
        check_saved("plan.json", saved, Observed(), Policy(state_dir=str(tmp_path / "state")))
    problems = [
        p.split(";")[0]
        for p in str(refused.value).split(": the saved plan is refused: ")[1].split("; ")
    ]
    for expected in (
        "container:web: /var/lib contains the protected /var/lib/docker",
        "container:web: /etc/new is under the protected /etc",
        "volume:v: /root is under the protected /root",
        "image:x: /etc/skel is under the protected /etc",
    ):
        assert any(p.startswith(expected) for p in problems), (expected, problems)
    fifo = tmp_path / "plan.json"
    os.mkfifo(fifo)
    assert read_saved_plan(str(fifo), b"k" * 64) is None  # not a regular file: never opened
