"""Spec files for the engine tests: seed examples renamed per test, generated spec sets, and
small readers for what dsr and the engine report.

Seed examples name their resources ``web1``, ``vc_data`` ... in project ``seed``; two tests
applying them side by side would fight over those names. ``seed_spec`` rewrites a seed file
so that every resource key and every reference to one carries the test's prefix, the project
is the prefix, and httpd (which cannot be pulled here) becomes the busybox test image running
busybox's own httpd in the foreground.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import yaml

SEED_DIR = Path(__file__).resolve().parents[2] / "specs" / "examples" / "seed"
HTDOCS = "/usr/local/apache2/htdocs"
HTTPD_COMMAND = ["httpd", "-f", "-p", "80", "-h", HTDOCS]
# busybox sleep as PID 1 ignores SIGTERM, so every `docker stop` would wait out its timeout;
# a shell that traps TERM stops at once.
SLEEP_COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
# Files next to the seed specs that their ./relative paths name.
SEED_SIBLINGS = ("htdocs", "htdocs-extra", "datapacked-context")
ANONYMOUS = re.compile(r"[0-9a-f]{64}")  # the name Docker gives an anonymous volume
RESOURCE_SECTIONS = ("volumes", "images", "volume_containers", "containers")
# Events of a container or volume that change it; `exec_*`, `attach` and the like do not.
WRITE_EVENTS = frozenset(
    {"create", "destroy", "start", "stop", "restart", "kill", "die", "rename", "remove"}
    | {"update", "pause", "unpause", "mount", "unmount", "prune"}
)


# --- writing specs --------------------------------------------------------------------------


def write_spec(path: Path, document: Mapping[str, Any]) -> Path:
    """Dump ``document`` as YAML into ``path`` (parents made); return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False), encoding="utf-8")
    return path


@dataclass(frozen=True)
class SeedSet:
    """A renamed seed spec set: the folder to give dsr, the env it needs, the new names."""

    folder: Path
    env: dict[str, str]
    names: dict[str, str]  # seed key -> this test's name
    htdocs: Path

    def __getitem__(self, seed_name: str) -> str:
        return self.names[seed_name]


def renamed_seed(document: Mapping[str, Any], prefix: str, image: str) -> dict[str, Any]:
    """A seed spec with every key and reference prefixed, project ``prefix`` and the httpd
    image replaced by ``image`` running busybox httpd. Backups are dropped."""
    names = {
        key: f"{prefix}-{key}"
        for section in RESOURCE_SECTIONS
        for key in document.get(section) or {}
    }
    out: dict[str, Any] = {"version": document["version"], "project": prefix}
    for section in RESOURCE_SECTIONS:
        entries = document.get(section) or {}
        if entries:
            out[section] = {
                names[key]: _renamed_entry(section, dict(spec or {}), names, image)
                for key, spec in entries.items()
            }
    return out


def _renamed_entry(
    section: str, spec: dict[str, Any], names: Mapping[str, str], image: str
) -> dict[str, Any]:
    if section not in ("volume_containers", "containers"):
        return spec
    if "image" in spec:
        if str(spec["image"]).startswith("${DSR_SEED_HTTPD_IMAGE"):
            spec["image"] = image
            spec["command"] = list(HTTPD_COMMAND)
        elif spec["image"] in names:
            spec["image"] = names[spec["image"]]
    if "mounts" in spec:
        spec["mounts"] = [_renamed_mount(m, names) for m in spec["mounts"]]
    if "volumes_from" in spec:
        spec["volumes_from"] = [_renamed_source(v, names) for v in spec["volumes_from"]]
    return spec


def _renamed_mount(mount: Any, names: Mapping[str, str]) -> Any:
    if isinstance(mount, str):
        parts = mount.split(":")
        if len(parts) > 1 and parts[0] in names:  # a volume key, not a host path
            parts[0] = names[parts[0]]
        return ":".join(parts)
    mount = dict(mount)
    if mount.get("type") == "volume" and mount.get("source") in names:
        mount["source"] = names[mount["source"]]
    return mount


def _renamed_source(source: Any, names: Mapping[str, str]) -> Any:
    if isinstance(source, str):
        name, sep, mode = source.partition(":")
        return f"{names.get(name, name)}{sep}{mode}"
    source = dict(source)
    source["name"] = names.get(source["name"], source["name"])
    return source


def seed_spec(
    files: Iterable[str], prefix: str, image: str, folder: Path, *, index: str = "seed index\n"
) -> SeedSet:
    """Write the seed ``files`` (e.g. ``web-cluster.yaml``), renamed for ``prefix``, into
    ``folder/spec`` with copies of the files their relative paths name. ``DSR_SEED_HTDOCS``
    (in ``env``) points at ``folder/htdocs``, which holds ``index.html``."""
    spec_dir = folder / "spec"
    spec_dir.mkdir(parents=True)
    for sibling in SEED_SIBLINGS:
        if (SEED_DIR / sibling).is_dir():
            shutil.copytree(SEED_DIR / sibling, spec_dir / sibling)
    htdocs = folder / "htdocs"
    htdocs.mkdir()
    (htdocs / "index.html").write_text(index, encoding="utf-8")
    names: dict[str, str] = {}
    for file in files:
        document = yaml.safe_load((SEED_DIR / file).read_text(encoding="utf-8"))
        renamed = renamed_seed(document, prefix, image)
        names.update({k: f"{prefix}-{k}" for s in RESOURCE_SECTIONS for k in document.get(s) or {}})
        write_spec(spec_dir / file, renamed)
    return SeedSet(spec_dir, {"DSR_SEED_HTDOCS": str(htdocs)}, names, htdocs)


# --- generated spec sets --------------------------------------------------------------------


@dataclass(frozen=True)
class BigSpec:
    """The shape of a generated spec set; ``generation`` changes what forces replaces."""

    prefix: str
    image: str
    volumes: int = 60
    volume_containers: int = 5
    containers: int = 30

    def volume(self, i: int) -> str:
        return f"{self.prefix}-v{i:02d}"

    def volume_container(self, i: int) -> str:
        return f"{self.prefix}-vc{i}"

    def container(self, i: int) -> str:
        return f"{self.prefix}-c{i:02d}"

    def volumes_of(self, i: int) -> list[str]:
        """The two named volumes container ``i`` mounts (at /data0 and /data1)."""
        return [self.volume((2 * i) % self.volumes), self.volume((2 * i + 1) % self.volumes)]

    def source_of(self, i: int) -> int | None:
        """The volume container that container ``i`` takes volumes from, if any."""
        return i % self.volume_containers if i % 3 == 0 else None

    def has_anonymous(self, i: int) -> bool:
        return i % 2 == 1

    def document(self, generation: int) -> dict[str, Any]:
        """The spec at ``generation``: every generation changes the env of most containers
        (a replace) and, every other one, a volume container's extra anonymous volume."""
        rng = random.Random(generation)
        volumes = {self.volume(i): {} for i in range(self.volumes)}
        vcs = {}
        for v in range(self.volume_containers):
            mounts: list[Any] = [f"{self.volume(v)}:/shared", "/vc-anon"]
            if generation % 2 == 1 and v == generation % self.volume_containers:
                mounts.append(f"/vc-extra{generation}")
            vcs[self.volume_container(v)] = {"mounts": mounts}
        containers = {}
        for i in range(self.containers):
            first, second = self.volumes_of(i)
            mounts = [f"{first}:/data0", {"type": "volume", "source": second, "target": "/data1"}]
            if self.has_anonymous(i):
                mounts.append("/anon")
            spec: dict[str, Any] = {
                "image": self.image,
                "command": list(SLEEP_COMMAND),
                "env": {"GENERATION": str(generation if rng.random() < 0.8 else 0)},
                "mounts": mounts,
            }
            source = self.source_of(i)
            if source is not None:
                spec["volumes_from"] = [self.volume_container(source)]
            containers[self.container(i)] = spec
        return {
            "version": 1,
            "project": self.prefix,
            "volumes": volumes,
            "volume_containers": vcs,
            "containers": containers,
        }


# --- reading results ------------------------------------------------------------------------


def plan_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON plan a ``dsr plan --format json`` printed."""
    try:
        document: dict[str, Any] = json.loads(result.stdout)
    except ValueError as err:
        raise AssertionError(f"not a JSON plan: {err}\n{result.stdout}\n{result.stderr}") from err
    return document


def changes_by_resource(plan: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["resource"]: c for c in plan["changes"]}


def inspect(client: docker.DockerClient, name: str) -> dict[str, Any]:
    attrs: dict[str, Any] = client.api.inspect_container(name)
    return attrs


def mounts_by_target(attrs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["Destination"]: m for m in attrs["Mounts"]}


def exec_out(client: docker.DockerClient, name: str, *command: str) -> str:
    """Run ``command`` in the running container ``name``; fail unless it exits 0."""
    code, output = client.containers.get(name).exec_run(list(command))
    text = output.decode(errors="replace")
    assert code == 0, f"{command} in {name} exited {code}: {text}"
    return text


def prefixed_containers(client: docker.DockerClient, prefix: str) -> list[dict[str, Any]]:
    """Every container whose name starts with ``prefix`` (the list call's raw entries)."""
    raw = client.api.containers(all=True, filters={"name": prefix})
    return [c for c in raw if c["Names"][0].lstrip("/").startswith(prefix)]


def prefixed_volumes(client: docker.DockerClient, prefix: str) -> list[str]:
    """Names of the volumes named ``prefix*`` or labelled with project ``prefix``."""
    names = {v["Name"] for v in client.api.volumes(filters={"name": prefix})["Volumes"] or []}
    labelled = client.api.volumes(filters={"label": f"dsr.project={prefix}"})["Volumes"] or []
    return sorted({n for n in names if n.startswith(prefix)} | {v["Name"] for v in labelled})


def write_events(client: docker.DockerClient, since: float, until: float, prefix: str) -> list[str]:
    """The write events (create, start, rename, ...) between ``since`` and ``until`` on
    containers and volumes named ``prefix*`` or of dsr project ``prefix``."""
    found = []
    events: Iterator[dict[str, Any]] = client.events(since=since, until=until, decode=True)
    for event in events:
        if event.get("Type") not in ("container", "volume"):
            continue
        action = str(event.get("Action", "")).split(":", 1)[0]
        attributes = event.get("Actor", {}).get("Attributes", {})
        name = attributes.get("name") or event.get("Actor", {}).get("ID", "")
        ours = str(name).startswith(prefix) or attributes.get("dsr.project") == prefix
        if ours and action in WRITE_EVENTS:
            found.append(f"{event['Type']} {action} {name}")
    return found


# --- tar streams (the Engine API's archive endpoints) ---------------------------------------


def tar_of(name: str, content: bytes) -> bytes:
    """A tar stream holding one file, for ``put_archive``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def members_of(archive: bytes) -> dict[str, bytes]:
    """Regular files in a tar stream (from ``get_archive``), by name."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member) if member.isfile() else None
            if extracted is not None:
                files[member.name] = extracted.read()
    return files


def kill_apply_after(spec: Path, state_dir: Path, delay: float) -> tuple[bool, str]:
    """Start ``dsr apply``; SIGKILL it ``delay`` seconds after it showed its plan, that is
    while it applies, whatever this machine's speed. Returns (was it still running, output)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "apply", str(spec)],
        env={**os.environ, "DSR_STATE_DIR": str(state_dir), "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:  # the plan's last line comes just before the first change
        lines.append(line)
        if line.startswith("Plan:"):
            break
    time.sleep(delay)
    running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    rest, _ = process.communicate(timeout=60)
    return running, "".join(lines) + rest
