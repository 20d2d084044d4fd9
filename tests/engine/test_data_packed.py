"""Data-packed images on the real engine, through the ``dsr`` CLI.

The scenario is the article's: a site's files packed into an image (``images.htdocs``), a
volume container made from it, and httpd containers that take its volume with
``volumes_from``. Each consumer must serve what the context holds, before and after a change
of the context; an unchanged context (even with new mtimes) never rebuilds; old builds go,
except the previous one and any a container still uses; a bad context is a spec error before
anything is built.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from docker.errors import NotFound

# The fixtures' types live in conftest.py, which tests do not import.
DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]

HTDOCS = "/usr/local/apache2/htdocs"
HTTPD = ["httpd", "-f", "-p", "80", "-h", HTDOCS]
PACKED_KIND = "image"  # the dsr.kind label of a data-packed build


# --- helpers --------------------------------------------------------------------------------


def page(version: str) -> str:
    return f"<html><body><h1>{version}</h1></body></html>\n"


def make_context(spec_dir: Path, files: Mapping[str, str]) -> Path:
    ctx = spec_dir / "ctx"
    ctx.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(text)
    return ctx


def htdocs_spec(
    prefix: str,
    busybox_image: str,
    *,
    consumers: int = 3,
    image: Mapping[str, Any] | None = None,
    mode: str = ":ro",
) -> dict[str, Any]:
    """The article's spec: images.htdocs, a volume container from it, httpd consumers
    (read-only by default: they serve static files)."""
    vc = f"{prefix}-vc"
    return {
        "images": {"htdocs": {"context": "./ctx", "path": HTDOCS, **(image or {})}},
        "volume_containers": {vc: {"image": "htdocs"}},
        "containers": {
            f"{prefix}-web{i}": {
                "image": busybox_image,
                "command": HTTPD,
                "volumes_from": [vc + mode],
            }
            for i in range(1, consumers + 1)
        },
    }


@pytest.fixture
def write(tmp_spec: SpecWriter, prefix: str) -> Callable[[dict[str, Any]], Path]:
    """Writes the spec of project ``prefix`` (in ``tmp_path/<prefix>/dsr.yaml``)."""

    def write(sections: dict[str, Any]) -> Path:
        return tmp_spec(yaml.safe_dump({"version": 1, "project": prefix, **sections}))

    return write


@pytest.fixture
def spec_dir(tmp_path: Path, prefix: str) -> Path:
    """The folder ``tmp_spec`` writes into; the context goes next to the spec."""
    folder = tmp_path / prefix
    folder.mkdir(exist_ok=True)
    return folder


def plan_json(dsr: DsrRunner, spec: Path, *args: str) -> dict[str, Any]:
    result = dsr("plan", spec, "--format", "json", *args, check=True)
    document: dict[str, Any] = yaml.safe_load(result.stdout)  # JSON is YAML
    return document


def by_resource(plan: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["resource"]: c for c in plan["changes"]}


def position(plan: Mapping[str, Any], resource: str) -> int:
    return [c["resource"] for c in plan["changes"]].index(resource)


def fetch(client: docker.DockerClient, name: str, path: str = "/index.html") -> str:
    """What the httpd in ``name`` serves at ``path``, fetched from inside with busybox wget;
    retried for a few seconds while httpd starts."""
    container = client.containers.get(name)
    deadline = time.monotonic() + 15
    while True:
        code, output = container.exec_run(["wget", "-qO-", f"http://127.0.0.1{path}"])
        if code == 0:
            return str(output.decode())
        if time.monotonic() > deadline:
            raise AssertionError(f"wget in {name} exited {code}: {output.decode()!r}")
        time.sleep(0.2)


def run_in(client: docker.DockerClient, name: str, *command: str) -> tuple[int, str]:
    code, output = client.containers.get(name).exec_run(list(command))
    return code, output.decode()


def packed_builds(client: docker.DockerClient, prefix: str) -> dict[str, str]:
    """This project's data-packed builds: tag -> image id."""
    out = {}
    for image in client.images.list(filters={"label": f"dsr.project={prefix}"}):
        if image.labels.get("dsr.kind") == PACKED_KIND:
            for tag in image.tags:
                out[tag] = str(image.id)
    return out


def image_of(client: docker.DockerClient, name: str) -> str:
    """The tag a container was created from."""
    return str(client.api.inspect_container(name)["Config"]["Image"])


def mount_at(client: docker.DockerClient, name: str, target: str) -> dict[str, Any]:
    for mount in client.api.inspect_container(name)["Mounts"]:
        if mount["Destination"] == target:
            return dict(mount)
    raise AssertionError(f"{name} has nothing mounted at {target}")


def volume_exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.volumes.get(name)
    except NotFound:
        return False
    return True


@pytest.fixture
def anonymous_volumes(
    docker_client: docker.DockerClient, cleanup: Callable[[], object]
) -> Iterator[set[str]]:
    """Anonymous volumes a test saw on its containers. The sweep removes a container's
    anonymous volumes with it; one that outlived its containers (a replaced volume
    container's, say) carries no name or label of the test, so it is checked here: after the
    sweep, any left is removed and reported."""
    seen: set[str] = set()
    yield seen
    cleanup()
    left = sorted(v for v in seen if volume_exists(docker_client, v))
    for name in left:
        with contextlib.suppress(NotFound, docker.errors.APIError):
            docker_client.volumes.get(name).remove()
    assert not left, f"anonymous volumes outlived the test's containers: {left}"


def note_anonymous(client: docker.DockerClient, seen: set[str], *names: str) -> None:
    for name in names:
        for mount in client.api.inspect_container(name)["Mounts"]:
            if mount["Type"] == "volume" and len(mount.get("Name", "")) == 64:
                seen.add(mount["Name"])


# --- the article's scenario -----------------------------------------------------------------


def test_consumers_serve_the_packed_files_and_follow_a_change(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    write: Callable[[dict[str, Any]], Path],
    spec_dir: Path,
    prefix: str,
    busybox_image: str,
    anonymous_volumes: set[str],
) -> None:
    ctx = make_context(spec_dir, {"index.html": page("v1"), "about.html": "about\n"})
    spec = write(htdocs_spec(prefix, busybox_image))
    vc, webs = f"{prefix}-vc", [f"{prefix}-web{i}" for i in (1, 2, 3)]

    first = by_resource(plan_json(dsr, spec))
    assert first["image:htdocs"]["action"] == "build"
    assert first["image:htdocs"]["reason"] == "it has not been built yet"
    applied = dsr("apply", spec, check=True)
    # The build says what it does as it goes: packing, the size sent, each step, done.
    steps = [
        json.loads(line)
        for line in applied.stderr.splitlines()
        if line.startswith("{") and '"image_bu' in line
    ]
    said = [e.get("step", e["event"]) for e in steps]
    assert said[0] == "packing the context", said
    assert said[1].startswith("sending ") and said[1].endswith(" to the engine"), said
    assert any(s.startswith("Step ") for s in said) and said[-1] == "image_built", said
    note_anonymous(docker_client, anonymous_volumes, vc, *webs)
    for web in webs:
        assert fetch(docker_client, web) == page("v1")
        assert fetch(docker_client, web, "/about.html") == "about\n"
    old_tag = image_of(docker_client, vc)
    assert old_tag.startswith(f"dsr/{prefix}-htdocs:")
    assert docker_client.images.get(old_tag).labels["dsr.project"] == prefix
    old_volume = mount_at(docker_client, vc, HTDOCS)["Name"]
    assert len(old_volume) == 64  # anonymous: Docker filled it from the image
    assert all(mount_at(docker_client, w, HTDOCS)["Name"] == old_volume for w in webs)

    (ctx / "index.html").write_text(page("v2"))
    plan = plan_json(dsr, spec)
    changes = by_resource(plan)
    build = changes["image:htdocs"]
    assert build["action"] == "build"
    assert build["reason"] == f"its context changed since {old_tag}: 1 entry changed (index.html)"
    replaced_vc = changes[f"volume_container:{vc}"]
    assert replaced_vc["action"] == "replace"
    assert "1 entry changed (index.html)" in replaced_vc["reason"]
    assert "about.html" not in replaced_vc["reason"]
    assert replaced_vc["depends_on"] == ["image:htdocs"]
    for web in webs:
        change = changes[f"container:{web}"]
        assert change["action"] == "replace"
        assert change["risk"] == "restart"
        assert f"volume_container:{vc}" in change["depends_on"]
        assert vc in change["reason"]
    old_volume_change = changes[f"volume:{old_volume}"]
    assert old_volume_change["action"] == "delete"
    assert old_volume_change["risk"] == "none"
    assert set(old_volume_change["depends_on"]) == {
        f"volume_container:{vc}",
        *(f"container:{w}" for w in webs),
    }
    # In dependency order: the build, the volume container, its consumers, the clean-up.
    order = [position(plan, r) for r in ["image:htdocs", f"volume_container:{vc}"]]
    order += [position(plan, f"container:{w}") for w in webs]
    assert order[:2] == sorted(order[:2]) and max(order[:2]) < min(order[2:])
    assert position(plan, f"volume:{old_volume}") > max(order)
    assert plan["summary"] == {
        "create": 0,
        "replace": 4,
        "update": 0,
        "start": 0,
        "delete": 1,
        "build": 1,
        "adopt": 0,
        "blocked": 0,
    }

    dsr("apply", spec, check=True)
    note_anonymous(docker_client, anonymous_volumes, vc, *webs)
    for web in webs:
        assert fetch(docker_client, web) == page("v2")
    new_volume = mount_at(docker_client, vc, HTDOCS)["Name"]
    assert new_volume != old_volume
    assert not volume_exists(docker_client, old_volume)
    assert image_of(docker_client, vc) != old_tag
    # The previous build stays (a rollback needs no rebuild).
    assert set(packed_builds(docker_client, prefix)) == {old_tag, image_of(docker_client, vc)}

    # Converged: the next plan is empty, and the next apply builds nothing.
    dsr("plan", spec, "--detailed-exitcode", check=0)
    builds_before = packed_builds(docker_client, prefix)
    ids_before = {c: docker_client.containers.get(c).id for c in [vc, *webs]}
    since = int(time.time()) - 1
    result = dsr("apply", spec, check=True)
    until = int(time.time()) + 1
    assert "No changes" in result.stdout
    assert packed_builds(docker_client, prefix) == builds_before
    assert {c: docker_client.containers.get(c).id for c in [vc, *webs]} == ids_before
    events = docker_client.events(since=since, until=until, filters={"type": "image"}, decode=True)
    ours = [
        e
        for e in events
        if prefix in str(e.get("Actor", {}).get("Attributes", {}).get("name", ""))
        or e.get("id") in builds_before.values()
    ]
    assert ours == []
    for web in webs:
        assert fetch(docker_client, web) == page("v2")


def test_new_mtimes_alone_do_not_rebuild(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    write: Callable[[dict[str, Any]], Path],
    spec_dir: Path,
    prefix: str,
    busybox_image: str,
    tmp_path: Path,
    anonymous_volumes: set[str],
) -> None:
    ctx = make_context(spec_dir, {"index.html": page("v1"), "css/site.css": "body {}\n"})
    spec = write(htdocs_spec(prefix, busybox_image, consumers=1))
    dsr("apply", spec, check=True)
    note_anonymous(docker_client, anonymous_volumes, f"{prefix}-vc")
    builds = packed_builds(docker_client, prefix)
    assert len(builds) == 1

    later = time.time() + 3600
    for path in [ctx, *ctx.rglob("*")]:
        os.utime(path, (later, later))
    assert plan_json(dsr, spec)["changes"] == []
    dsr("plan", spec, "--detailed-exitcode", check=0)
    # Nor with a cold hash cache: the tag comes from content, never from mtimes.
    fresh = tmp_path / "fresh-state"
    fresh.mkdir()
    dsr("plan", spec, "--detailed-exitcode", env={"DSR_STATE_DIR": str(fresh)}, check=0)
    dsr("apply", spec, check=True)
    assert packed_builds(docker_client, prefix) == builds


def test_only_the_current_and_previous_builds_stay_and_used_ones_are_kept(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    write: Callable[[dict[str, Any]], Path],
    spec_dir: Path,
    prefix: str,
    busybox_image: str,
    labels: dict[str, str],
    anonymous_volumes: set[str],
) -> None:
    ctx = make_context(spec_dir, {"index.html": page("v1")})
    spec = write(htdocs_spec(prefix, busybox_image, consumers=0))
    vc = f"{prefix}-vc"
    dsr("apply", spec, check=True)
    note_anonymous(docker_client, anonymous_volumes, vc)
    tags = [image_of(docker_client, vc)]

    # A container outside dsr made from the first build: that build must never go. Docker
    # copies the image's labels (dsr.managed, dsr.project, dsr.kind=image) into it; it is
    # still not dsr's container, so no plan may delete or take it over.
    pin = docker_client.containers.create(
        tags[0], ["/never-started"], name=f"{prefix}-pin", labels=labels
    )
    assert pin.labels["dsr.managed"] == "true" and pin.labels["dsr.kind"] == "image"
    note_anonymous(docker_client, anonymous_volumes, str(pin.name))

    for version in ("v2", "v3", "v4"):
        (ctx / "index.html").write_text(page(version))
        plan = by_resource(plan_json(dsr, spec))
        assert not [r for r, c in plan.items() if str(pin.name) in r + c["reason"]], plan
        deleted = {r for r, c in plan.items() if r.startswith("image:") and c["action"] == "delete"}
        if version == "v4":  # v2 is now older than the previous build (v3), and unused
            assert deleted == {f"image:{tags[1]}"}
            assert plan[f"image:{tags[1]}"]["reason"] == (
                "an older build of htdocs; the current and the previous builds are kept"
            )
        else:  # v3: v1 is older than the previous one, but the pin container uses it
            assert deleted == set()
        dsr("apply", spec, check=True)
        note_anonymous(docker_client, anonymous_volumes, vc)
        tags.append(image_of(docker_client, vc))
        dsr("plan", spec, "--detailed-exitcode", check=0)

    assert len(set(tags)) == 4
    assert docker_client.containers.get(str(pin.name)).id == pin.id
    assert set(packed_builds(docker_client, prefix)) == {tags[0], tags[2], tags[3]}

    # Once nobody uses the first build, the next pass removes it.
    pin.remove(v=True)
    plan = by_resource(plan_json(dsr, spec))
    assert plan[f"image:{tags[0]}"]["action"] == "delete"
    dsr("apply", spec, check=True)
    assert set(packed_builds(docker_client, prefix)) == {tags[2], tags[3]}
    dsr("plan", spec, "--detailed-exitcode", check=0)


def test_images_key_leaving_while_used_is_blocked(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    write: Callable[[dict[str, Any]], Path],
    spec_dir: Path,
    prefix: str,
    busybox_image: str,
    anonymous_volumes: set[str],
) -> None:
    make_context(spec_dir, {"index.html": page("v1")})
    document = htdocs_spec(prefix, busybox_image, consumers=1)
    spec = write(document)
    vc, web = f"{prefix}-vc", f"{prefix}-web1"
    dsr("apply", spec, check=True)
    note_anonymous(docker_client, anonymous_volumes, vc, web)
    tag = image_of(docker_client, vc)
    builds = packed_builds(docker_client, prefix)
    ids = {c: docker_client.containers.get(c).id for c in (vc, web)}

    del document["images"]  # the volume container still says image: htdocs
    spec = write(document)
    dsr("validate", spec, check=0)  # "htdocs" alone would be a valid image reference
    plan = plan_json(dsr, spec)
    blocked = {c["resource"]: c["reason"] for c in plan["changes"] if c["action"] == "blocked"}
    assert blocked, plan
    assert any("left the spec" in r and "still use" in r for r in blocked.values()), blocked
    assert "images key left the spec while this still uses it" in blocked[f"volume_container:{vc}"]
    assert f"image:{tag}" in blocked
    assert vc in blocked[f"image:{tag}"]
    assert not [c for c in plan["changes"] if c["action"] not in ("blocked",)], plan
    dsr("plan", spec, "--detailed-exitcode", check=2)

    everything_blocked = dsr("apply", spec, check=3)
    assert "blocked." in everything_blocked.stdout  # its summary, though nothing ran
    assert packed_builds(docker_client, prefix) == builds
    assert {c: docker_client.containers.get(c).id for c in (vc, web)} == ids
    assert docker_client.containers.get(web).status == "running"
    assert fetch(docker_client, web) == page("v1")


def test_a_named_volume_at_path_keeps_its_data_and_nocopy_is_passed(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    write: Callable[[dict[str, Any]], Path],
    spec_dir: Path,
    prefix: str,
    busybox_image: str,
    anonymous_volumes: set[str],
) -> None:
    ctx = make_context(spec_dir, {"index.html": page("v1")})
    site, empty = f"{prefix}-site", f"{prefix}-empty"
    direct, nocopy, nocopy_short = (f"{prefix}-{n}" for n in ("direct", "nocopy", "nocopy2"))
    spec = write(
        {
            "volumes": {site: {}, empty: {}},
            # On busybox, so that the image runs httpd itself.
            "images": {"htdocs": {"context": "./ctx", "path": HTDOCS, "base": busybox_image}},
            "containers": {
                direct: {"image": "htdocs", "command": HTTPD, "mounts": [f"{site}:{HTDOCS}"]},
                nocopy: {
                    "image": "htdocs",
                    "command": HTTPD,
                    "mounts": [
                        {"type": "volume", "source": empty, "target": HTDOCS, "nocopy": True}
                    ],
                },
                nocopy_short: {
                    "image": "htdocs",
                    "command": HTTPD,
                    "mounts": [f"{empty}:{HTDOCS}:ro,nocopy"],
                },
            },
        }
    )
    dsr("apply", spec, check=True)
    note_anonymous(docker_client, anonymous_volumes, direct, nocopy, nocopy_short)
    # Docker filled the new, empty named volume from the image: the packed page is there.
    assert fetch(docker_client, direct) == page("v1")
    # nocopy: Docker left the volume empty.
    for name in (nocopy, nocopy_short):
        host_mounts = docker_client.api.inspect_container(name)["HostConfig"]["Mounts"]
        assert [(m["Target"], m.get("VolumeOptions", {}).get("NoCopy")) for m in host_mounts] == [
            (HTDOCS, True)
        ]
        assert run_in(docker_client, name, "ls", "-A", HTDOCS) == (0, "")

    (ctx / "index.html").write_text(page("v2"))
    changes = by_resource(plan_json(dsr, spec))
    reason = changes[f"container:{direct}"]["reason"]
    assert changes[f"container:{direct}"]["action"] == "replace"
    assert "the data-packed image htdocs changed: 1 entry changed (index.html)" in reason
    assert (
        f"volume {site} at {HTDOCS} already holds data, so Docker will not copy the new "
        "image's files into it"
    ) in reason
    for name in (nocopy, nocopy_short):
        assert changes[f"container:{name}"]["action"] == "replace"
        assert "will not copy" not in changes[f"container:{name}"]["reason"]

    dsr("apply", spec, check=True)
    # As the reason warned: the volume still holds the first version.
    assert fetch(docker_client, direct) == page("v1")
    assert image_of(docker_client, direct).startswith(f"dsr/{prefix}-htdocs:")
    assert docker_client.api.inspect_container(nocopy)["HostConfig"]["Mounts"][0][
        "VolumeOptions"
    ] == {"NoCopy": True}
    dsr("plan", spec, "--detailed-exitcode", check=0)


def test_dockerignored_files_are_not_packed_and_do_not_rebuild(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    write: Callable[[dict[str, Any]], Path],
    spec_dir: Path,
    prefix: str,
    busybox_image: str,
    anonymous_volumes: set[str],
) -> None:
    ctx = make_context(
        spec_dir,
        {
            ".dockerignore": "secret.txt\n*.log\ndrafts/\n",
            "index.html": page("v1"),
            "secret.txt": "password\n",
            "debug.log": "log\n",
            "drafts/next.html": page("draft"),
        },
    )
    spec = write(htdocs_spec(prefix, busybox_image, consumers=1))
    web = f"{prefix}-web1"
    dsr("apply", spec, check=True)
    note_anonymous(docker_client, anonymous_volumes, f"{prefix}-vc", web)
    assert fetch(docker_client, web) == page("v1")
    assert run_in(docker_client, web, "cat", f"{HTDOCS}/index.html") == (0, page("v1"))
    for ignored in ("secret.txt", "debug.log", "drafts/next.html"):
        code, output = run_in(docker_client, web, "cat", f"{HTDOCS}/{ignored}")
        assert code != 0 and "No such file" in output, (ignored, code, output)
    code, listing = run_in(docker_client, web, "ls", "-A", HTDOCS)
    assert code == 0 and sorted(listing.split()) == [".dockerignore", "index.html"]

    builds = packed_builds(docker_client, prefix)
    (ctx / "secret.txt").write_text("another, longer password\n")
    (ctx / "new.log").write_text("more\n")
    (ctx / "drafts" / "next.html").write_text(page("draft 2"))
    dsr("plan", spec, "--detailed-exitcode", check=0)
    dsr("apply", spec, check=True)
    assert packed_builds(docker_client, prefix) == builds


def test_a_saved_plan_never_builds_a_context_edited_since(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    write: Callable[[dict[str, Any]], Path],
    spec_dir: Path,
    prefix: str,
    busybox_image: str,
    tmp_path: Path,
    anonymous_volumes: set[str],
) -> None:
    """The tag names the content the plan saw. Building the edited context under it would
    leave a tag naming other files: reverting the edit would then find that tag, build
    nothing, and serve the edited files for good."""
    ctx = make_context(spec_dir, {"index.html": page("X")})
    spec = write(htdocs_spec(prefix, busybox_image, consumers=1))
    web = f"{prefix}-web1"
    saved = tmp_path / "plan.json"
    dsr("plan", spec, "--out", saved, check=True)
    (ctx / "index.html").write_text(page("Y"))

    result = dsr("apply", saved, check=1)
    assert "changed since the plan was made" in result.stdout + result.stderr
    assert packed_builds(docker_client, prefix) == {}

    dsr("apply", spec, check=True)
    note_anonymous(docker_client, anonymous_volumes, f"{prefix}-vc", web)
    assert fetch(docker_client, web) == page("Y")
    (ctx / "index.html").write_text(page("X"))  # the revert builds X for real
    assert by_resource(plan_json(dsr, spec))["image:htdocs"]["action"] == "build"
    dsr("apply", spec, check=True)
    note_anonymous(docker_client, anonymous_volumes, f"{prefix}-vc", web)
    assert fetch(docker_client, web) == page("X")


# --- bad input: spec errors, nothing built --------------------------------------------------


CONTEXT_LINE, PATH_LINE = 5, 6


def bad_spec_text(prefix: str, context: str, path: str) -> str:
    # Lines matter: the errors name them (context: line 5, path: line 6).
    return (
        "version: 1\n"
        f"project: {prefix}\n"
        "images:\n"
        "  htdocs:\n"
        f"    context: {context}\n"
        f"    path: {path}\n"
        "volume_containers:\n"
        f"  {prefix}-vc: {{image: htdocs}}\n"
    )


def _missing(ctx: Path) -> tuple[str, str, str]:
    shutil.rmtree(ctx)
    return HTDOCS, "context", f"{ctx} does not exist"


def _relative_path(ctx: Path) -> tuple[str, str, str]:
    return "usr/local/apache2/htdocs", "path", "'usr/local/apache2/htdocs' is not an absolute path"


def _link_to_passwd(ctx: Path) -> tuple[str, str, str]:
    (ctx / "passwd").symlink_to("/etc/passwd")
    return HTDOCS, "context", "passwd is a symlink to /etc/passwd, outside the context"


def _link_up(ctx: Path) -> tuple[str, str, str]:
    (ctx / "css").mkdir()
    (ctx / "css" / "up").symlink_to("../../x")
    return HTDOCS, "context", "css/up is a symlink to ../../x, outside the context"


def _fifo(ctx: Path) -> tuple[str, str, str]:
    os.mkfifo(ctx / "pipe")
    return HTDOCS, "context", "pipe is not a regular file, folder or symlink"


@pytest.mark.parametrize(
    "breakage",
    [_missing, _relative_path, _link_to_passwd, _link_up, _fifo],
    ids=["missing-context", "relative-path", "symlink-to-etc-passwd", "symlink-up", "fifo"],
)
def test_a_bad_context_or_path_is_a_spec_error_and_nothing_is_built(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    tmp_spec: SpecWriter,
    spec_dir: Path,
    prefix: str,
    cleanup: Any,
    breakage: Callable[[Path], tuple[str, str, str]],
) -> None:
    ctx = make_context(spec_dir, {"index.html": page("v1")})
    path, field, problem = breakage(ctx)
    context = "./ctx"
    spec = tmp_spec(bad_spec_text(prefix, context, path))
    line = CONTEXT_LINE if field == "context" else PATH_LINE
    expected = f"{spec}:{line}: images.htdocs.{field}: {problem}"

    result = dsr("validate", spec, check=1)
    assert expected in result.stdout + result.stderr
    result = dsr("plan", spec, check=1)
    assert expected in result.stdout + result.stderr
    result = dsr("apply", spec, check=1)
    assert expected in result.stdout + result.stderr
    assert packed_builds(docker_client, prefix) == {}
    owned = cleanup.owned()
    assert owned.is_empty, owned


# --- unreadable entries: dsr validate as an unprivileged user -------------------------------


NOBODY = 65534


def as_nobody(argv: list[str]) -> list[str]:
    """``argv`` run as nobody: root reads every file whatever its mode, so an unreadable
    file can only be shown to a user that is not root."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to run dsr as nobody")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A folder under /tmp that nobody can read (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(dir="/tmp", prefix="dsr-nobody-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for path in [folder, *folder.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IRWXU)
        shutil.rmtree(folder)


def _unreadable_file(ctx: Path) -> str:
    (ctx / "locked.html").write_text("secret\n")
    (ctx / "locked.html").chmod(0)
    return "locked.html is not readable"


def _unreadable_folder(ctx: Path) -> str:
    (ctx / "private").mkdir()
    (ctx / "private" / "a.html").write_text("a\n")
    (ctx / "private").chmod(0)
    return "private is not readable (Permission denied)"


def _unreadable_folder_with_dockerignore(ctx: Path) -> str:
    (ctx / ".dockerignore").write_text("*.log\n")
    return _unreadable_folder(ctx)


def _unreadable_dockerignore(ctx: Path) -> str:
    (ctx / ".dockerignore").write_text("*.log\n")
    (ctx / ".dockerignore").chmod(0)
    return ".dockerignore is not readable (Permission denied)"


@pytest.mark.parametrize(
    "breakage",
    [
        _unreadable_file,
        _unreadable_folder,
        _unreadable_folder_with_dockerignore,
        _unreadable_dockerignore,
    ],
    ids=["file", "folder", "folder-with-dockerignore", "dockerignore"],
)
def test_an_unreadable_entry_is_a_spec_error(
    world_readable_dir: Path, prefix: str, breakage: Callable[[Path], str]
) -> None:
    folder = world_readable_dir
    ctx = folder / "ctx"
    ctx.mkdir()
    (ctx / "index.html").write_text(page("v1"))
    for path in [ctx, ctx / "index.html"]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    problem = breakage(ctx)
    spec = folder / "dsr.yaml"
    spec.write_text(bad_spec_text(prefix, "./ctx", HTDOCS))
    spec.chmod(0o644)

    argv = as_nobody([sys.executable, "-m", "reconciler", "validate", str(spec)])
    probe = subprocess.run(
        as_nobody([sys.executable, "-c", "import os, reconciler; print(os.geteuid())"]),
        capture_output=True,
        text=True,
        cwd="/",
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot run dsr as an unprivileged user here: {probe.stderr.strip()}")
    assert int(probe.stdout) != 0
    result = subprocess.run(argv, capture_output=True, text=True, cwd="/", check=False, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"{spec}:{CONTEXT_LINE}: images.htdocs.context: {problem}" in output
    assert "Traceback" not in output


def test_a_refresh_keeps_the_old_volume_a_consumer_wrote_to(
    prefix: str,
    busybox_image: str,
    write: Callable[[dict[str, Any]], Path],
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    """A consumer that takes the packed volume read-write and wrote into it: the refresh
    moves everyone to the new build, and the old volume is kept (reason code
    consumer-data) with the consumer's file still in it; the apply does not fail for it."""
    spec = write(htdocs_spec(prefix, busybox_image, consumers=1, mode=""))
    ctx = make_context(spec.parent, {"index.html": page("v1")})
    vc, web = f"{prefix}-vc", f"{prefix}-web1"
    dsr("apply", spec, check=True)
    old_volume = mount_at(docker_client, vc, HTDOCS)["Name"]
    docker_client.containers.get(web).exec_run(["sh", "-c", f"echo mine > {HTDOCS}/upload.txt"])

    (ctx / "index.html").write_text(page("v2"))
    planned = plan_json(dsr, spec)
    assert f"volume:{old_volume}" not in by_resource(planned)
    (kept,) = planned["kept"]
    assert (kept["resource"], kept["reason_code"]) == (f"volume:{old_volume}", "consumer-data")
    assert f"{web} mounted it read-write and changed what the build put there" in kept["reason"]
    assert f"volume:{old_volume}" in planned["orphans"]
    dsr("apply", spec, check=0)
    assert fetch(docker_client, web) == page("v2")
    assert volume_exists(docker_client, old_volume)
    docker_client.volumes.get(old_volume)  # still there, with the upload in it
    reader = docker_client.containers.run(
        busybox_image,
        ["cat", "/old/upload.txt"],
        volumes={old_volume: {"bind": "/old", "mode": "ro"}},
        network_mode="none",
        labels={"dsr.test-prefix": prefix},
        remove=True,
    )
    assert reader == b"mine\n"
    dsr("plan", spec, "--detailed-exitcode", check=0)  # the refresh is over; it is an orphan


def test_a_refresh_deletes_the_old_volume_a_read_write_consumer_left_as_built(
    prefix: str,
    busybox_image: str,
    write: Callable[[dict[str, Any]], Path],
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    """The seed's own form (--volumes-from read-write) with a consumer that wrote nothing:
    the old volume holds exactly what the build put there, so it goes; exit 0, no extra
    volume left."""
    spec = write(htdocs_spec(prefix, busybox_image, consumers=1, mode=""))
    ctx = make_context(spec.parent, {"index.html": page("v1"), "sub/a.css": "body {}"})
    vc, web = f"{prefix}-vc", f"{prefix}-web1"
    dsr("apply", spec, check=True)
    old_volume = mount_at(docker_client, vc, HTDOCS)["Name"]

    def project_volumes() -> set[str]:
        listed = docker_client.volumes.list(filters={"label": f"dsr.project={prefix}"})
        return {v.name for v in listed}

    volumes_before = project_volumes()
    assert old_volume in volumes_before

    (ctx / "index.html").write_text(page("v2"))
    changes = by_resource(plan_json(dsr, spec))
    gone = changes[f"volume:{old_volume}"]
    assert (gone["action"], gone["reason_code"]) == ("delete", "replaced-volume")
    assert "holds exactly the files the build put there" in gone["reason"]
    dsr("apply", spec, check=0)
    assert fetch(docker_client, web) == page("v2")
    assert not volume_exists(docker_client, old_volume)
    new_volume = mount_at(docker_client, vc, HTDOCS)["Name"]
    assert project_volumes() == volumes_before - {old_volume} | {new_volume}
    dsr("plan", spec, "--detailed-exitcode", check=0)
