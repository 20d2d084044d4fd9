"""Extra Docker engines on this machine, each playing one host ("node") of a fleet.

Each node is a ``dockerd`` of its own: its own data root, exec root, socket
(``/run/dsr-swarm-test/<hostname>.sock``), pid file and containerd namespace, a Linux bridge
made for it (``dsrbr22a`` 172.31.221.1/24, ``dsrbr22b`` .222, ``dsrbr22c`` .223; never
``--bridge none``, which would delete the host's ``docker0``), ``--iptables=false``, and a
hostname of its own (a UTS namespace), which is the engine's name in ``docker info`` and its
Swarm node's hostname. They share the machine's network namespace, so a swarm of them
listens on each node's bridge address.

``Nodes`` starts them and, whatever happens, stops them again: leaves any swarm, stops each
dockerd (SIGTERM, then SIGKILL), unmounts what it left under its roots, removes the roots,
the bridges and a ``docker_gwbridge`` a swarm made. The machine's own engine is never
touched (no swarm is ever formed on it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker

SOCKET_DIR = Path("/run/dsr-swarm-test")
BRIDGES = {
    "a": ("dsrbr22a", "172.31.221.1"),
    "b": ("dsrbr22b", "172.31.222.1"),
    "c": ("dsrbr22c", "172.31.223.1"),
}
HOSTNAME = "dsr-node-{}"


@dataclass
class Node:
    """One extra engine."""

    letter: str
    root: Path
    process: subprocess.Popen[bytes] | None = None
    swarm: bool = False
    client: docker.DockerClient | None = field(default=None, repr=False)

    @property
    def hostname(self) -> str:
        return HOSTNAME.format(self.letter)

    @property
    def socket(self) -> Path:
        return SOCKET_DIR / f"{self.hostname}.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def bridge(self) -> str:
        return BRIDGES[self.letter][0]

    @property
    def address(self) -> str:
        return BRIDGES[self.letter][1]

    def api(self) -> docker.DockerClient:
        if self.client is None:
            self.client = docker.DockerClient(base_url=self.url, timeout=60)
        return self.client

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60)


def needs() -> str | None:
    """Why nodes cannot start here, or None."""
    if os.geteuid() != 0:
        return "extra engines need root"
    for tool in ("dockerd", "unshare", "ip", "hostname"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


class Nodes:
    """Start ``letters`` as nodes; a context manager that always cleans up."""

    def __init__(self, letters: str, labels: dict[str, dict[str, str]] | None = None) -> None:
        self.labels = labels or {}  # letter -> engine labels (dockerd --label)
        self.root = Path(tempfile.mkdtemp(prefix="dsrt-nodes-"))
        self.nodes = [Node(letter, self.root / letter) for letter in letters]
        self.had_gwbridge = _link_exists("docker_gwbridge")
        self.bridges: list[str] = []

    def __enter__(self) -> Nodes:
        try:
            SOCKET_DIR.mkdir(mode=0o700, exist_ok=True)
            for node in self.nodes:
                self.start(node)
            for node in self.nodes:
                self.wait(node)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getitem__(self, letter: str) -> Node:
        return next(n for n in self.nodes if n.letter == letter)

    def start(self, node: Node) -> None:
        if not _link_exists(node.bridge):
            _run("ip", "link", "add", node.bridge, "type", "bridge")
            self.bridges.append(node.bridge)
            _run("ip", "addr", "add", f"{node.address}/24", "dev", node.bridge)
        _run("ip", "link", "set", node.bridge, "up")
        node.root.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            node.socket.unlink()
        command = (
            f"hostname {node.hostname} && exec dockerd -b {node.bridge} --iptables=false "
            f"--ip-masq=false --data-root {node.root}/data --exec-root {node.root}/exec "
            f"-H {node.url} --pidfile {node.root}/dockerd.pid "
            f"--containerd-namespace dsrt{node.letter} "
            f"--containerd-plugins-namespace dsrt{node.letter}-plugins"
            + "".join(f" --label {k}={v}" for k, v in self.labels.get(node.letter, {}).items())
        )
        log = open(node.root / "dockerd.log", "wb")  # noqa: SIM115 - the child's stderr
        node.process = subprocess.Popen(
            ["unshare", "--uts", "sh", "-c", command],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait(self, node: Node, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not node.running:
                raise RuntimeError(f"dockerd of {node.hostname} exited:\n{self.log(node)}")
            with contextlib.suppress(Exception):
                if node.socket.exists() and docker.APIClient(base_url=node.url).ping():
                    return
            time.sleep(0.3)
        raise RuntimeError(f"dockerd of {node.hostname} did not answer:\n{self.log(node)}")

    def log(self, node: Node) -> str:
        with contextlib.suppress(OSError):
            return (node.root / "dockerd.log").read_text(errors="replace")[-3000:]
        return ""

    def stop(self, node: Node) -> None:
        """Stop one node's engine (as a host that goes down); its state stays."""
        if node.client is not None:
            node.client.close()
            node.client = None
        if node.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.process.pid, signal.SIGTERM)
        try:
            node.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait(timeout=10)
        node.process = None

    def close(self) -> None:
        for node in reversed(self.nodes):
            if node.swarm and node.running:
                _run("docker", "-H", node.url, "swarm", "leave", "--force", check=False)
        for node in reversed(self.nodes):
            self.stop(node)
            with contextlib.suppress(FileNotFoundError):
                node.socket.unlink()
        _unmount_below(self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        for bridge in self.bridges:
            _run("ip", "link", "del", bridge, check=False)
        if not self.had_gwbridge and _link_exists("docker_gwbridge"):
            # Made by a node's swarm (the machine's own engine is in none): gone with it.
            _run("ip", "link", "del", "docker_gwbridge", check=False)


def _link_exists(name: str) -> bool:
    return _run("ip", "link", "show", name, check=False).returncode == 0


def _unmount_below(root: Path) -> None:
    """Unmount whatever the engines left mounted below ``root`` (netns files, overlays)."""
    prefix = str(root) + "/"
    with open("/proc/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        if _run("umount", point, check=False).returncode != 0:
            _run("umount", "-l", point, check=False)


@contextlib.contextmanager
def nodes(letters: str) -> Iterator[Nodes]:
    with Nodes(letters) as made:
        yield made


def form_swarm(made: Nodes) -> None:
    """A swarm of the nodes: the first one manager, each listening on its bridge address
    (they share the machine's network namespace, so each needs its own address)."""
    first, *rest = made.nodes
    addr = first.address
    _run("docker", "-H", first.url, "swarm", "init", "--advertise-addr", addr,
         "--listen-addr", f"{addr}:2377", "--data-path-addr", addr)  # fmt: skip
    first.swarm = True
    token = _run("docker", "-H", first.url, "swarm", "join-token", "-q", "worker").stdout.strip()
    for node in rest:
        _run("docker", "-H", node.url, "swarm", "join", "--token", token,
             "--advertise-addr", node.address, "--listen-addr", f"{node.address}:2377",
             "--data-path-addr", node.address, f"{addr}:2377")  # fmt: skip
        node.swarm = True
