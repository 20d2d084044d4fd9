"""Fixtures for the engine tests: tests that talk to a real Docker engine.

Every test under tests/engine/ gets the ``engine`` marker and runs against the engine that
``deploy/test.sh`` starts (``DOCKER_HOST``, else the local socket). When no engine answers,
the tests fail rather than skip: CI must never turn green without them.

Names and ownership
-------------------
A session has a ``run_id`` (``dsrt-1a2b3c4d``) and each test a ``prefix``
(``dsrt-1a2b3c4d-5e6f70``). A test names what it creates with its prefix, or labels it with
the ``labels`` fixture, and uses the prefix as its dsr project name: ``tmp_spec`` writes spec
files into a directory named after the prefix, which dsr takes as the project name. A test
owns::

    containers, volumes   named ``<prefix>*``, or labelled ``dsr.project=<prefix>*`` or
                          ``dsr.test-prefix=<prefix>``
    images                tagged ``<prefix>*`` (any path component of the repository, or the
                          tag), or labelled as above

After every test, passed or failed, the autouse ``cleanup`` fixture removes what the test
owns: containers first (forced, with their anonymous volumes), then volumes, then images (a
shared image only loses the owned tags). At the end of the session the same sweep runs for
``<run_id>`` and the label ``dsr.test-run=<run_id>``, catching whatever a test left behind.
Nothing outside these rules is ever removed; a sweep refuses a prefix that is not ours.

Fixtures
--------
=============== ======== ================================================================
docker_client   session  ``docker.DockerClient``, pinged
run_id          session  ``"dsrt-<8 hex>"``
busybox_image   session  tag of a scratch image with static busybox: sh, httpd, cat, ...
empty_image     session  tag of an image with no files, for never-started helper containers
prefix          function ``"<run_id>-<6 hex>"``: this test's names and dsr project
labels          function ``{"dsr.test-run": run_id, "dsr.test-prefix": prefix}``
cleanup         function autouse ``Cleanup``: ``cleanup()`` sweeps now, ``.owned()`` lists
dsr_command     function argv that runs the CLI; parametrize it to run something else
dsr             function ``dsr(*args, env=None, check=None) -> CompletedProcess[str]``
tmp_spec        function ``tmp_spec(yaml_text, name="dsr.yaml") -> Path``
s3              module   ``S3Server``: a SeaweedFS on 127.0.0.1 the module's tests share
bucket          function a bucket of ``s3`` named ``prefix``
own_s3          function an ``S3Server`` of this test alone (to kill or pause), with a
                         bucket named ``prefix``
age_key         function ``(identity file, recipient)`` of a new age key
=============== ======== ================================================================
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import struct
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import docker
import pytest
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container
from docker.models.images import Image
from docker.models.networks import Network
from docker.models.volumes import Volume
from requests.exceptions import RequestException

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3server import S3Server

ENGINE_TESTS_DIR = Path(__file__).resolve().parent

PROJECT_LABEL = "dsr.project"
DSR_EMPTY_IMAGE = "dsr/empty:1"  # what dsr creates volume containers from when they name no image
TEST_RUN_LABEL = "dsr.test-run"
TEST_PREFIX_LABEL = "dsr.test-prefix"

RUN_ID_PATTERN = re.compile(r"dsrt-[0-9a-f]{8}")
PREFIX_PATTERN = re.compile(r"dsrt-[0-9a-f]{8}-[0-9a-f]{6}")

HOST_BUSYBOX = Path("/bin/busybox")
# Used when `busybox --list` does not answer; the applets the tests rely on.
FALLBACK_APPLETS = (
    *("sh", "ash", "cat", "cp", "echo", "env", "false", "find", "grep", "head", "httpd"),
    *("id", "ln", "ls", "mkdir", "mv", "rm", "rmdir", "sha256sum", "sleep", "stat", "tail"),
    *("tar", "touch", "true", "wc", "wget"),
)

DSR_TIMEOUT_SECONDS = 300


# --- markers ------------------------------------------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/engine/ as ``engine``."""
    for item in items:
        if item.path.resolve().is_relative_to(ENGINE_TESTS_DIR):
            item.add_marker(pytest.mark.engine)


# --- ownership and sweeping ---------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """What one sweep owns: names and tags starting with ``prefix``, dsr projects starting
    with ``prefix``, and objects carrying the label ``label_key=label_value``."""

    prefix: str
    label_key: str
    label_value: str

    def __post_init__(self) -> None:
        # A guard, not a formality: a sweep with a short or foreign prefix would remove other
        # people's objects.
        if not (RUN_ID_PATTERN.fullmatch(self.prefix) or PREFIX_PATTERN.fullmatch(self.prefix)):
            raise ValueError(f"refusing to sweep with a prefix that is not a test's: {self!r}")

    def owns_name(self, name: str | None) -> bool:
        return bool(name) and str(name).lstrip("/").startswith(self.prefix)

    def owns_labels(self, labels: Mapping[str, Any] | None) -> bool:
        labels = labels or {}
        project = labels.get(PROJECT_LABEL)
        return (isinstance(project, str) and project.startswith(self.prefix)) or labels.get(
            self.label_key
        ) == self.label_value

    def owns_tag(self, tag: str) -> bool:
        repository, _, version = tag.rpartition(":")
        parts = [*repository.split("/"), version]
        return any(part.startswith(self.prefix) for part in parts)

    def list_filters(self, *, by_name: bool) -> list[dict[str, str | list[str] | bool]]:
        """Engine-side filters whose union is a superset of what this scope owns."""
        filters: list[dict[str, str | list[str] | bool]] = [
            {"label": PROJECT_LABEL},
            {"label": f"{self.label_key}={self.label_value}"},
        ]
        if by_name:
            filters.append({"name": self.prefix})
        return filters


@dataclass(frozen=True)
class Owned:
    """Names of Docker objects, by kind: what a scope owns, or what a sweep removed.

    ``images`` holds the tags (or ids, for untagged images) that belong to the scope."""

    containers: frozenset[str] = frozenset()
    volumes: frozenset[str] = frozenset()
    images: frozenset[str] = frozenset()
    networks: frozenset[str] = frozenset()

    @property
    def is_empty(self) -> bool:
        return not (self.containers or self.volumes or self.images or self.networks)


class SweepError(AssertionError):
    """A sweep could not remove everything its scope owns."""


@dataclass
class _Found:
    containers: list[Container] = field(default_factory=list)
    volumes: list[Volume] = field(default_factory=list)
    # image -> the references to remove (owned tags; the id for an owned untagged image)
    images: list[tuple[Image, list[str]]] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)

    def names(self) -> Owned:
        return Owned(
            containers=frozenset(c.name or str(c.id) for c in self.containers),
            volumes=frozenset(v.name for v in self.volumes),
            images=frozenset(ref for _, refs in self.images for ref in refs),
            networks=frozenset(str(n.name) for n in self.networks),
        )


def _find(client: docker.DockerClient, scope: Scope) -> _Found:
    found = _Found()
    containers: dict[str, Container] = {}
    for filters in scope.list_filters(by_name=True):
        for c in client.containers.list(all=True, filters=filters, ignore_removed=True):
            if scope.owns_name(c.name) or scope.owns_labels(c.labels):
                containers[str(c.id)] = c
    found.containers = list(containers.values())

    volumes: dict[str, Volume] = {}
    for filters in scope.list_filters(by_name=True):
        for v in client.volumes.list(filters=filters):
            if scope.owns_name(v.name) or scope.owns_labels(v.attrs.get("Labels")):
                volumes[v.name] = v
    found.volumes = list(volumes.values())

    networks: dict[str, Network] = {}
    for filters in scope.list_filters(by_name=True):
        for n in client.networks.list(filters=filters):
            if scope.owns_name(n.name) or scope.owns_labels(n.attrs.get("Labels")):
                networks[str(n.id)] = n
    found.networks = list(networks.values())

    # The engine cannot filter images by a tag prefix, so read the list and decide here.
    images: dict[str, Image] = {}
    for filters in [*scope.list_filters(by_name=False), {}]:
        for image in _list_images(client, filters):
            images[str(image.id)] = image
    for image in images.values():
        if scope.owns_labels(image.labels):
            refs = list(image.tags) or [str(image.id)]
        else:
            refs = [tag for tag in image.tags if scope.owns_tag(tag)]
        if refs:
            found.images.append((image, refs))
    return found


def _list_images(client: docker.DockerClient, filters: dict[str, Any]) -> list[Image]:
    """``images.list`` inspects each image it lists: one removed in between (by another
    test session on the same engine) is not an error, so list again."""
    for _ in range(5):
        try:
            return list(client.images.list(filters=filters))
        except NotFound:
            time.sleep(0.1)
    return list(client.images.list(filters=filters))


def find_owned(client: docker.DockerClient, scope: Scope) -> Owned:
    """What ``scope`` owns in Docker right now."""
    return _find(client, scope).names()


def sweep(client: docker.DockerClient, scope: Scope) -> Owned:
    """Remove what ``scope`` owns: containers, then networks, volumes and images. Returns what was
    removed. Tries everything, then raises ``SweepError`` if anything owned remains."""
    found = _find(client, scope)
    errors: list[str] = []

    def attempt(what: str, remove: Callable[[], object]) -> None:
        try:
            remove()
        except NotFound:
            pass  # already gone: that is what we wanted
        except APIError as exc:
            errors.append(f"{what}: {exc}")

    for c in found.containers:
        attempt(f"container {c.name}", partial(c.remove, force=True, v=True))
    for n in found.networks:
        attempt(f"network {n.name}", n.remove)
    for v in found.volumes:
        attempt(f"volume {v.name}", v.remove)
    for _, refs in found.images:
        for ref in refs:
            attempt(f"image {ref}", partial(client.images.remove, ref))

    left = find_owned(client, scope)
    if errors or not left.is_empty:
        raise SweepError(f"sweep of {scope.prefix} left {left}; errors: {errors}")
    return found.names()


class Cleanup:
    """One test's share of Docker. ``cleanup()`` removes what the test owns now (it also runs
    after the test); ``cleanup.owned()`` lists it without removing anything."""

    def __init__(self, client: docker.DockerClient, scope: Scope) -> None:
        self.client = client
        self.scope = scope

    def __call__(self) -> Owned:
        return sweep(self.client, self.scope)

    def owned(self) -> Owned:
        return find_owned(self.client, self.scope)


# --- engine, names, labels ----------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client for the engine, pinged. No engine is a failure, never a skip."""
    try:
        client = docker.from_env()
        client.ping()
    except (DockerException, RequestException) as exc:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        pytest.fail(
            f"no Docker engine answers at {host} ({exc}). The engine tests need one: "
            "run deploy/test.sh, which starts dockerd (deploy/setup-docker.sh).",
            pytrace=False,
        )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def run_id() -> str:
    """This session's unique prefix, ``dsrt-<8 hex>``."""
    return f"dsrt-{secrets.token_hex(4)}"


@pytest.fixture(scope="session", autouse=True)
def _session_sweep(docker_client: docker.DockerClient, run_id: str) -> Iterator[None]:
    """At session end, remove whatever this run left (names ``<run_id>*``, label
    ``dsr.test-run=<run_id>``, dsr projects ``<run_id>*``), and dsr's shared empty image
    for volume containers when this run made it and nothing uses it any more."""
    try:
        docker_client.images.get(DSR_EMPTY_IMAGE)
        had_empty_image = True
    except NotFound:
        had_empty_image = False
    yield
    sweep(docker_client, Scope(run_id, TEST_RUN_LABEL, run_id))
    if not had_empty_image:
        with contextlib.suppress(APIError):  # absent, or in use by somebody's container
            docker_client.images.remove(DSR_EMPTY_IMAGE)


@pytest.fixture
def prefix(run_id: str) -> str:
    """This test's prefix, ``<run_id>-<6 hex>``: for names, tags and the dsr project."""
    return f"{run_id}-{secrets.token_hex(3)}"


@pytest.fixture
def labels(run_id: str, prefix: str) -> dict[str, str]:
    """Labels for objects a test creates directly (not through dsr); they make the object
    this test's, so the per-test cleanup removes it."""
    return {TEST_RUN_LABEL: run_id, TEST_PREFIX_LABEL: prefix}


@pytest.fixture(autouse=True)
def cleanup(docker_client: docker.DockerClient, prefix: str) -> Iterator[Cleanup]:
    """Removes what this test owns after it ran, whatever its outcome.

    That includes the anonymous volumes its containers used: ``docker rm -v`` keeps an
    anonymous volume that is mounted by name, as dsr mounts the ones it carries over to a
    replacement, and one whose container dsr itself removed is left behind by design."""
    tracker = Cleanup(docker_client, Scope(prefix, TEST_PREFIX_LABEL, prefix))
    since = time.time() - 1
    yield tracker
    volumes = _anonymous_volumes_used(docker_client, prefix, since, tracker)
    tracker()
    for name in sorted(volumes):
        with contextlib.suppress(APIError):  # gone already, or still in use by someone
            if not docker_client.api.inspect_volume(name).get("Labels"):
                docker_client.api.remove_volume(name)


ANONYMOUS_VOLUME = re.compile(r"[0-9a-f]{64}")


def _event_is_ours(attributes: Mapping[str, str], prefix: str) -> bool:
    return (
        attributes.get("name", "").startswith(prefix)
        or attributes.get(PROJECT_LABEL, "").startswith(prefix)
        or attributes.get(TEST_PREFIX_LABEL) == prefix
    )


def _anonymous_volumes_used(
    client: docker.DockerClient, prefix: str, since: float, tracker: Cleanup
) -> set[str]:
    """Anonymous volumes mounted by this test's containers, gone ones included (by events)."""
    events = list(client.events(since=since, until=time.time() + 0.1, decode=True))
    ours = {
        e["Actor"]["ID"]
        for e in events
        if e.get("Type") == "container" and _event_is_ours(e["Actor"].get("Attributes", {}), prefix)
    }
    volumes = {
        e["Actor"]["ID"]
        for e in events
        if e.get("Type") == "volume" and e["Actor"].get("Attributes", {}).get("container") in ours
    }
    for container in tracker.owned().containers:
        with contextlib.suppress(APIError):
            volumes |= {
                m.get("Name", "") for m in client.api.inspect_container(container)["Mounts"]
            }
    return {v for v in volumes if ANONYMOUS_VOLUME.fullmatch(v)}


# --- images -------------------------------------------------------------------------------


def _is_static_elf(data: bytes) -> bool:
    """True for an ELF executable without a program interpreter (PT_INTERP)."""
    if data[:4] != b"\x7fELF":
        return False
    is_64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    if is_64:
        (phoff,) = struct.unpack_from(endian + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    else:
        (phoff,) = struct.unpack_from(endian + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x2A)
    pt_interp = 3
    return all(
        struct.unpack_from(endian + "I", data, phoff + i * phentsize)[0] != pt_interp
        for i in range(phnum)
    )


def _busybox_applets(busybox: Path) -> list[str]:
    try:
        listed = subprocess.run(
            [str(busybox), "--list"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        listed = []
    names = {name for name in listed if re.fullmatch(r"[\w.\[\]-]+", name)} or set(FALLBACK_APPLETS)
    names.discard("busybox")
    return sorted(names)


def _tar(
    *,
    dirs: Mapping[str, int] | None = None,
    files: Mapping[str, tuple[bytes, int]] | None = None,
    symlinks: Mapping[str, str] | None = None,
) -> bytes:
    """An uncompressed tar of root-owned entries: dirs (path -> mode), files (path ->
    (content, mode)) and symlinks (path -> target). No arguments: an empty tar."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, mode in (dirs or {}).items():
            info = tarfile.TarInfo(path)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        for path, (content, mode) in (files or {}).items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
        for path, target in (symlinks or {}).items():
            info = tarfile.TarInfo(path)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)
    return buffer.getvalue()


def busybox_rootfs(busybox: Path = HOST_BUSYBOX) -> bytes:
    """A root filesystem (as a tar) holding a static busybox and a link per applet."""
    binary = busybox.read_bytes()
    if not _is_static_elf(binary):
        pytest.fail(
            f"{busybox} is not a statically linked busybox, so it cannot run in a scratch "
            "image; run deploy/setup-docker.sh (installs Debian's busybox-static)",
            pytrace=False,
        )
    links = {f"bin/{name}": "busybox" for name in _busybox_applets(busybox)}
    links |= {"sbin": "bin", "usr/bin": "../bin", "usr/sbin": "../bin"}
    passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
    group = b"root:x:0:\nnogroup:x:65534:\n"
    return _tar(
        dirs={"bin": 0o755, "etc": 0o755, "root": 0o700, "tmp": 0o1777, "usr": 0o755},
        files={
            "bin/busybox": (binary, 0o755),
            "etc/passwd": (passwd, 0o644),
            "etc/group": (group, 0o644),
        },
        symlinks=links,
    )


def import_image(
    client: docker.DockerClient, rootfs: bytes, tag: str, changes: Sequence[str]
) -> str:
    """``docker import`` a root filesystem tar with Dockerfile ``changes``; returns ``tag``."""
    repository, _, version = tag.rpartition(":")
    response = client.api.import_image_from_data(
        rootfs, repository=repository, tag=version, changes=list(changes)
    )
    try:
        client.images.get(tag)
    except NotFound:
        pytest.fail(f"docker import of {tag} failed: {response}", pytrace=False)
    return tag


def remove_image(client: docker.DockerClient, tag: str) -> None:
    """Remove the containers made from ``tag`` (a run-unique test image), then the tag."""
    for container in client.containers.list(
        all=True, filters={"ancestor": tag}, ignore_removed=True
    ):
        container.remove(force=True, v=True)
    with contextlib.suppress(NotFound):
        client.images.remove(tag)


@pytest.fixture(scope="session")
def busybox_image(docker_client: docker.DockerClient, run_id: str) -> Iterator[str]:
    """Tag of a runnable image: static busybox in /bin with a link per applet (sh, httpd,
    cat, ls, sleep, echo, wget, mkdir, tar, sha256sum, ...), ``Cmd ["/bin/sh"]``,
    ``PATH=/bin``. Built with ``docker import``: no registry needed."""
    tag = import_image(
        docker_client,
        busybox_rootfs(),
        f"dsr-test/busybox:{run_id}",
        ['CMD ["/bin/sh"]', "ENV PATH=/bin", f"LABEL {TEST_RUN_LABEL}={run_id}"],
    )
    yield tag
    remove_image(docker_client, tag)


@pytest.fixture(scope="session")
def empty_image(docker_client: docker.DockerClient, run_id: str) -> Iterator[str]:
    """Tag of an image with no files at all, for containers that are created and never
    started (e.g. to read or write a volume with get_archive/put_archive). Its command,
    ``/never-started``, exists only so that ``create`` needs none; it would fail to start."""
    tag = import_image(
        docker_client,
        _tar(),
        f"dsr-test/empty:{run_id}",
        ['CMD ["/never-started"]', f"LABEL {TEST_RUN_LABEL}={run_id}"],
    )
    yield tag
    remove_image(docker_client, tag)


# --- running dsr --------------------------------------------------------------------------


class DsrRunner(Protocol):
    """``dsr(*args, env=None, check=None)``: run the CLI, capture its output.

    ``env`` overlays the environment (a ``None`` value removes a variable). ``check``: None
    or False returns whatever happened; True requires exit 0; an int requires that exit code.
    A wrong exit code or a timeout fails the test with the command's output."""

    def __call__(
        self,
        *args: str | os.PathLike[str],
        env: Mapping[str, str | None] | None = None,
        check: bool | int | None = None,
    ) -> subprocess.CompletedProcess[str]: ...


class SpecWriter(Protocol):
    """``tmp_spec(yaml_text, name="dsr.yaml") -> Path``: see the ``tmp_spec`` fixture."""

    def __call__(self, text: str, name: str = "dsr.yaml") -> Path: ...


def _describe(argv: Iterable[str], returncode: object, stdout: str, stderr: str) -> str:
    return (
        f"$ {' '.join(argv)}\nexit: {returncode}\n"
        f"--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    )


def _expected_exit(check: bool | int | None) -> int | None:
    if check is None or check is False:
        return None
    if check is True:
        return 0
    return check


@pytest.fixture
def dsr_state_dir(tmp_path: Path) -> Path:
    """This test's dsr state directory (``DSR_STATE_DIR`` for the ``dsr`` runner)."""
    path = tmp_path / "dsr-state"
    path.mkdir()
    return path


@pytest.fixture
def dsr_command() -> list[str]:
    """The argv that starts the CLI; the ``dsr`` runner appends its arguments."""
    return [sys.executable, "-m", "reconciler"]


@pytest.fixture
def dsr(dsr_command: list[str], dsr_state_dir: Path) -> DsrRunner:
    """Runs the CLI in a subprocess with this test's state directory; see ``DsrRunner``."""

    def run(
        *args: str | os.PathLike[str],
        env: Mapping[str, str | None] | None = None,
        check: bool | int | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [*dsr_command, *(os.fspath(arg) for arg in args)]
        environment = {**os.environ, "DSR_STATE_DIR": str(dsr_state_dir)}
        for key, value in (env or {}).items():
            if value is None:
                environment.pop(key, None)
            else:
                environment[key] = value
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=environment,
                timeout=DSR_TIMEOUT_SECONDS,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            out, err = (
                s.decode(errors="replace") if isinstance(s, bytes) else (s or "")
                for s in (exc.stdout, exc.stderr)
            )
            pytest.fail(_describe(argv, f"timeout after {exc.timeout}s", out, err), pytrace=False)
        expected = _expected_exit(check)
        if expected is not None and result.returncode != expected:
            pytest.fail(
                f"expected exit {expected}\n"
                + _describe(argv, result.returncode, result.stdout, result.stderr),
                pytrace=False,
            )
        return result

    return run


@pytest.fixture
def tmp_spec(tmp_path: Path, prefix: str) -> SpecWriter:
    """Writes a YAML spec and returns its path: ``tmp_path/<prefix>/<name>``.

    The directory is named after the test's prefix, so dsr's default project name (the spec
    directory's name) is the prefix and everything dsr creates is this test's. The text is
    dedented and one leading newline dropped, so ``\"\"\"\\n    volumes: ...`` starts at line 1.
    Call it several times with different names for a multi-file spec set; pass the returned
    path's ``.parent`` to dsr for the whole set."""
    spec_dir = tmp_path / prefix

    def write(text: str, name: str = "dsr.yaml") -> Path:
        path = spec_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).removeprefix("\n"), encoding="utf-8")
        return path

    return write


# -- S3 (SeaweedFS) and age ----------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS on 127.0.0.1 for the module's tests (each uses buckets of its own)."""
    server = S3Server.start(tmp_path_factory.mktemp("s3"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(s3: S3Server, prefix: str) -> str:
    """A bucket of ``s3`` for this test, named after its prefix."""
    s3.make_bucket(prefix)
    return prefix


@pytest.fixture
def own_s3(tmp_path: Path, prefix: str) -> Iterator[S3Server]:
    """A SeaweedFS of this test alone, which it may kill or pause; a bucket named after the
    test's prefix is made in it."""
    server = S3Server.start(tmp_path / "own-s3")
    try:
        server.make_bucket(prefix)
        yield server
    finally:
        server.stop()


@pytest.fixture
def age_key(tmp_path: Path) -> tuple[Path, str]:
    """A new age identity file and its recipient."""
    key = tmp_path / "key.txt"
    out = subprocess.run(
        ["age-keygen", "-o", str(key)], capture_output=True, text=True, check=True
    ).stderr
    return key, out.split("Public key: ")[1].strip()
